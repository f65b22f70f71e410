// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Direct sends of the ring datapath: a whole-frame copy that needs no
 * segmentation leaves from the kernel instead of through the ring.
 *
 * The source program clones the packet straight to the egress of the
 * target's next-hop interface (direct_clone), the clone marked with
 * XM_MARK_DIRECT and carrying its outer UDP source port in tc_index. There
 * xm_source_egress meets it first (direct_encap): it pushes the outer
 * Ethernet/IPv4/UDP/VXLAN headers in front of the frame, cuts it to the
 * session's length and lets it go to the driver. The packet on the wire is
 * byte for byte what the ring's sender would have sent (Ethernet header of
 * the resolved neighbour, IPv4 with DF, ID 0 and the mirror DSCP, UDP
 * checksum 0).
 *
 * Against the ring this saves the copy into the ring, the copy into a socket
 * buffer and the software segmentation of the sender's runs; against tc
 * mirred, the vxlan driver's route and neighbour work and the IP layer. The
 * one copy left is the clone's head, made writable when the headers are
 * pushed. */
#ifndef XM_SOURCE_DIRECT_H
#define XM_SOURCE_DIRECT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parsing.h"
#include "hash.h"

/* The headers pushed in front of the frame. */
struct direct_outer {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	__u32 vx[2];
} __attribute__((packed));

_Static_assert(sizeof(struct direct_outer) == XM_ETH_HLEN + XM_OUTER_LEN, "direct_outer is not 50 bytes");

/* direct_mark is the mark of a direct clone: session, direction and the
 * source interface (whose address is the outer source) in the layout of
 * clone_mark, under the direct magic. */
static __always_inline __u32 direct_mark(__u32 session, __u32 dir, __u32 ifindex)
{
	return XM_MARK_DIRECT | (dir << XM_MARK_DIR_SHIFT) | ((session & XM_MARK_SESS_MASK) << XM_MARK_SESS_SHIFT) |
	       (ifindex & XM_MARK_IF_MASK);
}

/* direct_hop is the next hop of a session's target when its copies may be
 * sent directly: the session mirrors whole frames, the packet is one IPv4
 * frame (not a GSO aggregate, which needs the ring's cut or the replica's
 * segmentation) and user space resolved the target's neighbour on an
 * interface the source programs are attached to, by links that go with the
 * process. NULL: use the ring. */
static __always_inline struct hop *direct_hop(struct __sk_buff *skb, const struct state *st, const struct session *s)
{
	if (!s->direct || !st->direct || st->datapath != XM_DATAPATH_RING || skb->gso_segs > 1 ||
	    skb->protocol != bpf_htons(XM_ETH_P_IP))
		return NULL;
	return bpf_map_lookup_elem(&xm_hops, &s->remote);
}

/* direct_clone sends a copy of the packet to the next hop's egress, where
 * direct_encap finishes it. The clone inherits mark and tc_index; the
 * original gets its own back at once. */
static __always_inline long direct_clone(struct __sk_buff *skb, const struct hop *h, __u32 mark, __u16 port)
{
	__u32 old_mark = skb->mark, old_index = skb->tc_index;
	long ret;

	skb->mark = mark;
	skb->tc_index = port;
	ret = bpf_clone_redirect(skb, h->ifindex, 0);
	skb->mark = old_mark;
	skb->tc_index = old_index;
	return ret;
}

/* ipv4_csum is the IPv4 header checksum of the 20 bytes at ip, read as
 * 16-bit words: behind Ethernet the header is only 2-byte aligned. */
static __always_inline __u16 ipv4_csum(const void *ip)
{
	const __u16 *w = ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* direct_encap turns a direct clone, met at the next hop's egress, into the
 * mirrored packet. Anything wrong drops the clone and counts an error: the
 * original went on long ago. */
static __always_inline int direct_encap(struct __sk_buff *skb, const struct state *st)
{
	__u32 mark = skb->mark, id, dir, ifindex, skey, len, cap;
	struct direct_outer o = {};
	struct counters *c;
	struct session *s;
	struct iface *ifc;
	struct hop *h;
	__u32 key;
	__u16 port;

	id = ((mark >> XM_MARK_SESS_SHIFT) & XM_MARK_SESS_MASK) % XM_MAX_SESSIONS;
	dir = (mark >> XM_MARK_DIR_SHIFT) & 1;
	ifindex = mark & XM_MARK_IF_MASK;
	skey = (st->active & 1) * XM_MAX_SESSIONS + id;
	key = id * 2 + dir;
	s = bpf_map_lookup_elem(&xm_sessions, &skey);
	c = bpf_map_lookup_elem(&xm_counters, &key);
	if (!s || !c)
		return XM_TC_SHOT;
	ifc = bpf_map_lookup_elem(&xm_ifaces, &ifindex);
	h = bpf_map_lookup_elem(&xm_hops, &s->remote);
	/* The hop changed between clone and here (a reload, a route): drop. */
	if (!ifc || !h || h->ifindex != skb->ifindex) {
		c->errors++;
		return XM_TC_SHOT;
	}
	port = skb->tc_index;
	if (port == 0) {
		/* Nothing on the way should clear tc_index, but a port is never 0:
		 * hash the frame again rather than send port 0. */
		struct flow f = {};

		if (parse_flow(skb, &f) < 0) {
			c->errors++;
			return XM_TC_SHOT;
		}
		port = outer_port(st->port_min, st->port_range, flow_hash(&f, s->hash_mode == XM_HASH_SYMMETRIC));
	}
	len = skb->len;
	cap = len;
	if (s->snaplen && cap > s->snaplen)
		cap = s->snaplen;
	if (cap > 0xffff - XM_OUTER_LEN || cap < XM_ETH_HLEN) {
		c->errors++;
		return XM_TC_SHOT;
	}
	/* Push first: it makes the clone's head private (the one copy), so the
	 * cut after it trims without copying again. */
	if (bpf_skb_change_head(skb, sizeof(o), 0) ||
	    (cap < len && bpf_skb_change_tail(skb, sizeof(o) + cap, 0))) {
		c->errors++;
		return XM_TC_SHOT;
	}
	__builtin_memcpy(o.eth.h_dest, h->dst, ETH_ALEN);
	__builtin_memcpy(o.eth.h_source, h->src, ETH_ALEN);
	o.eth.h_proto = bpf_htons(XM_ETH_P_IP);
	o.ip.version = 4;
	o.ip.ihl = 5;
	o.ip.tos = XM_MIRROR_TOS;
	o.ip.tot_len = bpf_htons(XM_OUTER_LEN + cap);
	o.ip.frag_off = bpf_htons(0x4000); /* DF */
	o.ip.ttl = s->ttl ? s->ttl : 64;
	o.ip.protocol = IPPROTO_UDP;
	o.ip.saddr = ifc->local;
	o.ip.daddr = s->remote;
	o.ip.check = ipv4_csum((__u8 *)&o + XM_ETH_HLEN);
	o.udp.source = bpf_htons(port);
	o.udp.dest = bpf_htons(XM_VXLAN_PORT);
	o.udp.len = bpf_htons(XM_OUTER_LEN - sizeof(struct iphdr) + cap);
	o.vx[0] = bpf_htonl(0x08000000);
	o.vx[1] = bpf_htonl(s->vni << 8);
	if (bpf_skb_store_bytes(skb, 0, &o, sizeof(o), 0)) {
		c->errors++;
		return XM_TC_SHOT;
	}
	/* Ours from here on: no source program mirrors it. */
	skb->mark = st->tunnel_mark;
	skb->tc_index = 0;
	c->packets++;
	c->bytes += cap;
	c->direct++;
	if (cap < len)
		c->cut++;
	return XM_TC_OK;
}

#endif
