// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Direct sends of the ring datapath: a whole-frame copy that needs no
 * segmentation leaves from the kernel instead of through the ring.
 *
 * The source program clones the packet straight to the egress of the
 * target's next-hop interface (direct_clone), the clone marked with
 * XM_MARK_DIRECT and carrying its outer UDP source port in tc_index. There
 * xm_source_egress (xm_direct_egress on an interface that is not a source)
 * meets it first (direct_encap): it cuts it to the session's length,
 * inserts the outer IPv4/UDP/VXLAN headers behind its Ethernet header and
 * writes the next hop's in front (direct_push), and lets it go to the
 * driver. The packet on the wire is byte for byte what the ring's sender
 * would have sent (Ethernet header of the resolved neighbour, IPv4 with DF,
 * ID 0 and the mirror DSCP, UDP checksum 0).
 *
 * An outbound TCP aggregate (GSO) that the interface segments in software,
 * and whose segments need no cut, is sent the same way as one aggregate:
 * direct_push marks it a UDP tunnel GSO packet, and the kernel cuts it into
 * exactly the segments the original becomes, each in its own outer
 * headers, as it does for the vxlan driver's packets.
 *
 * Against the ring this saves the copy into the ring, the copy into a socket
 * buffer and the software segmentation of the sender's runs; against tc
 * mirred, the vxlan driver's route and neighbour work and the IP layer. The
 * one copy left is the clone's head, made private by the cut or the push. */
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
#include "outer.h"

/* What direct sends write at the start of the packet, built on the stack
 * without packing: from eth on, the bytes are contiguous (eth ends where
 * hdrs starts, 4-byte aligned): the next hop's Ethernet header, the outer
 * headers, and the frame's own Ethernet header behind them (inner). */
struct direct_frame {
	__u16 pad;
	struct ethhdr eth;
	struct outer_hdrs hdrs;
	struct ethhdr inner;
};

_Static_assert(__builtin_offsetof(struct direct_frame, hdrs) == 2 + XM_ETH_HLEN, "direct_frame has a gap before hdrs");
_Static_assert(__builtin_offsetof(struct direct_frame, inner) == 2 + XM_ETH_HLEN + XM_OUTER_LEN,
	       "direct_frame has a gap before inner");

/* Bytes a copy grows by: the outer IPv4, UDP and VXLAN headers and one
 * more Ethernet header. */
#define DIRECT_PUSH (XM_OUTER_LEN + XM_ETH_HLEN)

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
 * or IPv6 frame (not a GSO aggregate, which needs the ring's cut or the
 * replica's segmentation), the programs go with the process (TCX links),
 * and user space wrote the target's next hop (direct.go: resolved, with an
 * egress program that finishes the clones there). NULL: use the ring.
 * Tagged frames take the ring: one with its tag in metadata would leave
 * with it, and the driver would tag the outer frame (the ring puts it in
 * the copy, vlan.h); one with tags in its data has skb->protocol 0x8100 or
 * 0x88a8, and direct_push knows only an untagged Ethernet header. */
static __always_inline struct hop *direct_hop(struct __sk_buff *skb, const struct state *st, const struct session *s)
{
	if (!s->direct || !st->direct || st->datapath != XM_DATAPATH_RING || skb->gso_segs > 1 || skb->vlan_present ||
	    (skb->protocol != bpf_htons(XM_ETH_P_IP) && skb->protocol != bpf_htons(XM_ETH_P_IPV6)))
		return NULL;
	return bpf_map_lookup_elem(&xm_hops, &s->remote);
}

/* rx_aggregates tells an inbound packet of an interface that receives
 * aggregates: GRO or LRO (compile.go then sends none of its inbound copies
 * directly), or a virtual peer's segmentation offload, which a veth passes
 * whole whatever its own GRO says. An aggregate takes the ring and waits
 * there up to --max-delay, so from the first one on every inbound copy of
 * the interface takes the ring too: a single frame sent directly would
 * overtake the aggregate before it in the collector's file. */
static __always_inline int rx_aggregates(struct __sk_buff *skb, __u32 dir)
{
	__u32 ifindex = skb->ifindex;
	__u8 seen = 1;

	if (dir != XM_DIR_IN)
		return 0;
	if (skb->gso_segs > 1) {
		if (!bpf_map_lookup_elem(&xm_rx_aggr, &ifindex))
			bpf_map_update_elem(&xm_rx_aggr, &ifindex, &seen, BPF_ANY);
		return 1;
	}
	return bpf_map_lookup_elem(&xm_rx_aggr, &ifindex) != NULL;
}

/* direct_hop_segments is direct_hop for an outbound TCP aggregate whose
 * segments fit the session's length whole (header and gso_size), so the
 * copies of its segments are the segments themselves: the caller knows
 * the interface segments in software (it has a replica), where tcpdump
 * sees the segments. NULL: the replica segments it first. */
static __always_inline struct hop *direct_hop_segments(struct __sk_buff *skb, const struct state *st,
						       const struct session *s, const struct flow *f)
{
	__u8 doff;

	if (!s->direct || !st->direct || st->datapath != XM_DATAPATH_RING || skb->gso_size == 0 || skb->vlan_present ||
	    skb->protocol != bpf_htons(XM_ETH_P_IP) || f->proto != IPPROTO_TCP)
		return NULL;
	if (bpf_skb_load_bytes(skb, f->l4 + 12, &doff, 1))
		return NULL;
	if (f->l4 + (doff >> 4) * 4 + skb->gso_size > s->snaplen)
		return NULL;
	return bpf_map_lookup_elem(&xm_hops, &s->remote);
}

/* direct_clone sends a copy of the packet to the next hop's egress, where
 * direct_encap finishes it; a failed clone counts an error. The clone
 * inherits mark and tc_index (the outer port of the flow hash); the
 * original gets its own back at once. */
static __always_inline void direct_clone(struct __sk_buff *skb, const struct state *st, struct counters *c,
					 const struct hop *h, __u32 mark, __u32 hash)
{
	__u32 old_mark = skb->mark, old_index = skb->tc_index;

	skb->mark = mark;
	skb->tc_index = outer_port(st->port_min, st->port_range, hash);
	if (bpf_clone_redirect(skb, h->ifindex, 0))
		c->errors++;
	skb->mark = old_mark;
	skb->tc_index = old_index;
}

/* direct_fill writes the next hop's Ethernet header and the outer headers
 * for a frame of len bytes, with the IPv4 checksum (of an aggregate, the
 * kernel sets lengths, ID and checksum per segment). */
static __always_inline void direct_fill(struct direct_frame *o, const struct hop *h, const struct session *s,
					__u32 local, __u16 port, __u32 len)
{
	__builtin_memcpy(o->eth.h_dest, h->dst, ETH_ALEN);
	__builtin_memcpy(o->eth.h_source, h->src, ETH_ALEN);
	o->eth.h_proto = bpf_htons(XM_ETH_P_IP);
	outer_fill(&o->hdrs, s, local, port, len);
	o->hdrs.ip.check = ipv4_csum(&o->hdrs.ip);
}

/* direct_push puts the tunnel in front of the packet: room behind its
 * Ethernet header for the outer IPv4, UDP and VXLAN headers and the frame's
 * own Ethernet header, which moves behind them; the next hop's Ethernet
 * header in front. Marked as encapsulated (the skb's protocol becomes the
 * outer IPv4, inner headers set), so that an aggregate is a UDP tunnel GSO
 * packet whose segment size stays: the kernel cuts its inner TCP exactly as
 * it would have cut the original and gives every segment its own outer
 * headers. len is the frame's length for the outer headers (of an
 * aggregate, the kernel sets them per segment). Returns 0 or an error. */
static __always_inline long direct_push(struct __sk_buff *skb, const struct session *s, const struct hop *h,
					__u32 local, __u16 port, __u32 len)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			    BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(XM_ETH_HLEN);
	struct direct_frame o = {};

	if (bpf_skb_load_bytes(skb, 0, &o.inner, sizeof(o.inner)))
		return -1;
	if (bpf_skb_adjust_room(skb, DIRECT_PUSH, BPF_ADJ_ROOM_MAC, flags))
		return -1;
	direct_fill(&o, h, s, local, port, len);
	return bpf_skb_store_bytes(skb, 0, &o.eth, DIRECT_PUSH + XM_ETH_HLEN, 0);
}

/* direct_encap turns a direct clone, met at the next hop's egress, into the
 * mirrored packet. Anything wrong drops the clone and counts an error: the
 * original went on long ago. */
static __always_inline int direct_encap(struct __sk_buff *skb, const struct state *st)
{
	__u32 mark = skb->mark, id, dir, ifindex, skey, len, cap;
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
	if (skb->gso_size) {
		__u32 segs = skb->gso_segs ? skb->gso_segs : 1;

		if (direct_push(skb, s, h, ifc->local, port, len > 0xffff - XM_OUTER_LEN ? 0 : len)) {
			c->errors++;
			return XM_TC_SHOT;
		}
		skb->mark = st->tunnel_mark;
		skb->tc_index = 0;
		c->packets += segs;
		c->direct += segs;
		c->bytes += len;
		return XM_TC_OK;
	}
	cap = len;
	if (s->snaplen && cap > s->snaplen)
		cap = s->snaplen;
	if (cap > 0xffff - XM_OUTER_LEN || cap < XM_ETH_HLEN) {
		c->errors++;
		return XM_TC_SHOT;
	}
	/* Cut first: the cut makes the clone's head private (the one copy) and
	 * cannot be made once the packet is marked as encapsulated; the push
	 * after it only copies again where the headroom is short of 50 bytes. */
	if ((cap < len && bpf_skb_change_tail(skb, cap, 0)) || direct_push(skb, s, h, ifc->local, port, cap)) {
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

/* direct_finish is direct_encap with the state looked up: the whole work of
 * an egress program that meets a direct clone. */
static __always_inline int direct_finish(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct state *st = bpf_map_lookup_elem(&xm_state, &zero);

	if (!st)
		return XM_TC_SHOT;
	return direct_encap(skb, st);
}

#endif
