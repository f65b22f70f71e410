// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* xmirror collector receive path (collector.receive: xdp).
 *
 * xm_collect runs on the interfaces that hold the listen address. UDP to the
 * listen address and port is taken off the wire here: the VXLAN header is
 * checked and the inner frame goes to user space through a BPF ring buffer,
 * with the VNI, the outer source address and the receive time, so the
 * kernel's IP and UDP stack never sees it. Malformed VXLAN is counted by
 * reason and dropped. Everything else (ARP, SSH, /metrics, other UDP, IPv4
 * fragments, which the kernel reassembles for the collector's socket) passes
 * to the kernel untouched. */

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Puts struct col_rec into the BTF for bpf2go (it only travels through the
 * ring). */
const struct col_rec *unused_col_rec __attribute__((unused));

/* Puts enum xm_col_counter into the BTF for bpf2go: count() takes it, but
 * an inlined function leaves no type behind. */
const enum xm_col_counter *unused_col_counter __attribute__((unused));

/* The listener, set by the loader: family 4 or 6, the address in network
 * order (IPv4 in word 0) and the UDP port in network order. */
volatile const __u32 listen_family = 4;
volatile const __u32 listen_addr[4] = {};
volatile const __u16 listen_port = 0;

/* Unread bytes in the ring at which the program wakes the reader; below it
 * records wait for the reader's timer, so that under load one wakeup
 * carries a batch of records. */
volatile const __u32 ring_wake = 64 << 10;

/* Set by the reader when it sleeps without a timer because nothing came for
 * a while: the next record then wakes it at once. */
volatile __u32 ring_idle = 0;

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The outer headers of a packet for the listener. */
struct outer {
	__u32 saddr[4];
	__u32 udp; /* offset of the UDP header */
	__u8 family;
};

static __always_inline void count(enum xm_col_counter counter)
{
	__u32 idx = counter;
	__u64 *c = bpf_map_lookup_elem(&xm_col_counters, &idx);

	if (c)
		*c += 1;
}

/* parse_ip4 matches an IPv4 header at off against the listener. It returns
 * 1 for UDP to the listen address and port, 0 for anything else, and -1
 * for the first fragment of a datagram to the listener: fragments pass to
 * the kernel, which reassembles them for the collector's socket. */
static __always_inline int parse_ip4(void *data, void *end, __u32 off, struct outer *o)
{
	struct iphdr *ip = data + off;
	struct udphdr *udp;
	__u32 ihl;

	if ((void *)(ip + 1) > end || listen_family != 4)
		return 0;
	if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP || ip->daddr != listen_addr[0])
		return 0;
	/* A later fragment has no UDP header: it passes, like the first. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	ihl = ip->ihl * 4;
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > end || udp->dest != listen_port)
		return 0;
	if (ip->frag_off & bpf_htons(0x2000))
		return -1;
	o->saddr[0] = ip->saddr;
	o->udp = off + ihl;
	o->family = 4;
	return 1;
}

/* parse_ip6 matches an IPv6 header at off whose next header is UDP. */
static __always_inline int parse_ip6(void *data, void *end, __u32 off, struct outer *o)
{
	struct ipv6hdr *ip6 = data + off;
	struct udphdr *udp = (void *)(ip6 + 1);

	if ((void *)(udp + 1) > end || listen_family != 6 || ip6->nexthdr != IPPROTO_UDP)
		return 0;
	if (ip6->daddr.in6_u.u6_addr32[0] != listen_addr[0] || ip6->daddr.in6_u.u6_addr32[1] != listen_addr[1] ||
	    ip6->daddr.in6_u.u6_addr32[2] != listen_addr[2] || ip6->daddr.in6_u.u6_addr32[3] != listen_addr[3])
		return 0;
	if (udp->dest != listen_port)
		return 0;
	__builtin_memcpy(o->saddr, ip6->saddr.in6_u.u6_addr32, sizeof(o->saddr));
	o->udp = off + sizeof(*ip6);
	o->family = 6;
	return 1;
}

/* parse_outer skips the Ethernet header and up to XM_COL_MAX_VLANS tags and
 * matches the IP header against the listener (see parse_ip4). */
static __always_inline int parse_outer(struct xdp_md *ctx, struct outer *o)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 off = XM_COL_ETH_HLEN;
	__u16 proto;

	if (data + XM_COL_ETH_HLEN > end)
		return 0;
	proto = *(__u16 *)(data + 12);
#pragma unroll
	for (int i = 0; i < XM_COL_MAX_VLANS; i++) {
		struct vlan_hdr *vh = data + off;

		if (proto != bpf_htons(XM_COL_ETH_P_8021Q) && proto != bpf_htons(XM_COL_ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return 0;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(XM_COL_ETH_P_IP))
		return parse_ip4(data, end, off, o);
	if (proto == bpf_htons(XM_COL_ETH_P_IPV6))
		return parse_ip6(data, end, off, o);
	return 0;
}

/* ring_put reserves a record of size bytes (a constant: the verifier wants
 * one per call site), fills its header and copies the inner frame at off
 * behind it with bpf_xdp_load_bytes, which also reads the fragments of a
 * multi-buffer (jumbo) frame. */
static __always_inline int ring_put(struct xdp_md *ctx, const struct outer *o, __u64 ts, __u32 vni, __u32 off,
				    __u32 len, const __u32 size)
{
	const __u32 room = size - sizeof(struct col_rec);
	struct col_rec *r;
	__u64 n, avail, flags = BPF_RB_NO_WAKEUP;

	r = bpf_ringbuf_reserve(&xm_col_ring, size, 0);
	if (!r)
		return -1;
	r->tstamp = ts;
	__builtin_memcpy(r->saddr, o->saddr, sizeof(r->saddr));
	r->vni = vni;
	r->caplen = len;
	r->family = o->family;
	r->pad = 0;
	/* Bound the length again in the register the verifier checks. */
	n = len;
	asm volatile("" : "+r"(n));
	if (n > room || n < XM_COL_ETH_HLEN || bpf_xdp_load_bytes(ctx, off, (void *)(r + 1), n)) {
		bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);
		return -1;
	}
	avail = bpf_ringbuf_query(&xm_col_ring, BPF_RB_AVAIL_DATA);
	if (ring_idle || (avail >= ring_wake && avail < ring_wake + size + 8))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(r, flags);
	return 0;
}

/* emit picks the smallest record size that holds the frame: a 96-byte cut
 * (the default packet length) takes 128 bytes, a 128-byte one 160, a full
 * 1500-byte frame 1600, a 9001-byte jumbo 9216. Classes close together for
 * small frames keep the ring's bytes per packet near the frame's own: with
 * only 128 and 1600, a 100-byte frame took 1600 bytes and the ring held a
 * tenth of the packets. */
static __always_inline int emit(struct xdp_md *ctx, const struct outer *o, __u64 ts, __u32 vni, __u32 off, __u32 len)
{
	__u32 total = sizeof(struct col_rec) + len;

	if (total <= 128)
		return ring_put(ctx, o, ts, vni, off, len, 128);
	if (total <= 160)
		return ring_put(ctx, o, ts, vni, off, len, 160);
	if (total <= 224)
		return ring_put(ctx, o, ts, vni, off, len, 224);
	if (total <= 320)
		return ring_put(ctx, o, ts, vni, off, len, 320);
	if (total <= 576)
		return ring_put(ctx, o, ts, vni, off, len, 576);
	if (total <= 1088)
		return ring_put(ctx, o, ts, vni, off, len, 1088);
	if (total <= 1600)
		return ring_put(ctx, o, ts, vni, off, len, 1600);
	if (total <= 9216)
		return ring_put(ctx, o, ts, vni, off, len, 9216);
	return ring_put(ctx, o, ts, vni, off, len, sizeof(struct col_rec) + 0xffff);
}

SEC("xdp.frags")
int xm_collect(struct xdp_md *ctx)
{
	__u64 ts = bpf_ktime_get_boot_ns();
	struct outer o = {};
	struct udphdr udp;
	__u32 vx[2], ulen, inner;
	int m;

	m = parse_outer(ctx, &o);
	if (m == 0)
		return XDP_PASS;
	if (m < 0) {
		count(XM_COL_FRAGMENT);
		return XDP_PASS;
	}
	if (bpf_xdp_load_bytes(ctx, o.udp, &udp, sizeof(udp)))
		return XDP_PASS; /* not reached: parse_outer read it */
	/* The UDP length, not the frame's: Ethernet may pad short frames. */
	ulen = bpf_ntohs(udp.len);
	if (ulen < XM_COL_UDP_HLEN || o.udp + ulen > bpf_xdp_get_buff_len(ctx)) {
		count(XM_COL_BAD_LENGTH);
		return XDP_DROP;
	}
	if (ulen < XM_COL_UDP_HLEN + XM_COL_VXLAN_HLEN || bpf_xdp_load_bytes(ctx, o.udp + XM_COL_UDP_HLEN, vx, sizeof(vx))) {
		count(XM_COL_SHORT);
		return XDP_DROP;
	}
	/* RFC 7348: only the I flag is checked, the reserved bits are ignored. */
	if (!(bpf_ntohl(vx[0]) & (XM_COL_VXLAN_FLAG_I << 24))) {
		count(XM_COL_BAD_FLAGS);
		return XDP_DROP;
	}
	inner = ulen - XM_COL_UDP_HLEN - XM_COL_VXLAN_HLEN;
	if (inner < XM_COL_ETH_HLEN) {
		count(XM_COL_SHORT_INNER);
		return XDP_DROP;
	}
	if (emit(ctx, &o, ts, bpf_ntohl(vx[1]) >> 8, o.udp + XM_COL_UDP_HLEN + XM_COL_VXLAN_HLEN, inner)) {
		count(XM_COL_RING_FULL);
		return XDP_DROP;
	}
	count(XM_COL_RECEIVED);
	return XDP_DROP;
}
