// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Outer headers of the collector's XDP receive path: Ethernet, up to
 * XM_COL_MAX_VLANS tags, IPv4 (with options) or IPv6, matched against the
 * listener: UDP to its VXLAN or a GENEVE port, or GRE to its address. */
#ifndef XM_COLLECT_PARSING_H
#define XM_COLLECT_PARSING_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "listener.h"

#ifndef IPPROTO_GRE
#define IPPROTO_GRE 47
#endif

/* What a packet is to the listener (parse_outer). */
enum xm_col_kind {
	XM_COL_KIND_FRAGMENT = -1, /* the first fragment of one: the kernel reassembles it */
	XM_COL_KIND_NONE = 0,      /* not the listener's: passed */
	XM_COL_KIND_VXLAN,
	XM_COL_KIND_GENEVE,
	XM_COL_KIND_GRE,
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The outer headers of a packet for the listener. */
struct outer {
	__u32 saddr[4];
	__u32 l4;  /* offset of the UDP or GRE header */
	__u32 end; /* offset of the IP packet's end, by its header */
	__u8 family;
};

/* match_l4 says which input a transport header at off is for: UDP to the
 * VXLAN port or a GENEVE port, or GRE. */
static __always_inline int match_l4(void *data, void *end, __u32 off, __u8 proto)
{
	struct udphdr *udp = data + off;

	if (proto == IPPROTO_GRE)
		return gre_on ? XM_COL_KIND_GRE : XM_COL_KIND_NONE;
	if (proto != IPPROTO_UDP || (void *)(udp + 1) > end)
		return XM_COL_KIND_NONE;
	if (vxlan_on && udp->dest == listen_port)
		return XM_COL_KIND_VXLAN;
#pragma unroll
	for (int i = 0; i < XM_COL_MAX_GENEVE; i++)
		if (geneve_ports[i] && udp->dest == geneve_ports[i])
			return XM_COL_KIND_GENEVE;
	return XM_COL_KIND_NONE;
}

/* parse_ip4 matches an IPv4 header at off against the listener. Fragments
 * pass to the kernel, which reassembles them for the collector's socket: a
 * later one has no transport header, the first is reported as
 * XM_COL_KIND_FRAGMENT. */
static __always_inline int parse_ip4(void *data, void *end, __u32 off, struct outer *o)
{
	struct iphdr *ip = data + off;
	__u32 ihl;
	int kind;

	if ((void *)(ip + 1) > end || listen_family != 4)
		return XM_COL_KIND_NONE;
	if (ip->version != 4 || ip->ihl < 5 || ip->daddr != listen_addr[0])
		return XM_COL_KIND_NONE;
	if (ip->frag_off & bpf_htons(0x1fff))
		return XM_COL_KIND_NONE;
	ihl = ip->ihl * 4;
	kind = match_l4(data, end, off + ihl, ip->protocol);
	if (kind == XM_COL_KIND_NONE)
		return kind;
	if (ip->frag_off & bpf_htons(0x2000))
		return XM_COL_KIND_FRAGMENT;
	o->saddr[0] = ip->saddr;
	o->l4 = off + ihl;
	o->end = off + bpf_ntohs(ip->tot_len);
	o->family = 4;
	return kind;
}

/* parse_ip6 matches an IPv6 header at off whose next header is UDP or GRE. */
static __always_inline int parse_ip6(void *data, void *end, __u32 off, struct outer *o)
{
	struct ipv6hdr *ip6 = data + off;
	int kind;

	if ((void *)(ip6 + 1) > end || listen_family != 6)
		return XM_COL_KIND_NONE;
	if (ip6->daddr.in6_u.u6_addr32[0] != listen_addr[0] || ip6->daddr.in6_u.u6_addr32[1] != listen_addr[1] ||
	    ip6->daddr.in6_u.u6_addr32[2] != listen_addr[2] || ip6->daddr.in6_u.u6_addr32[3] != listen_addr[3])
		return XM_COL_KIND_NONE;
	kind = match_l4(data, end, off + sizeof(*ip6), ip6->nexthdr);
	if (kind == XM_COL_KIND_NONE)
		return kind;
	__builtin_memcpy(o->saddr, ip6->saddr.in6_u.u6_addr32, sizeof(o->saddr));
	o->l4 = off + sizeof(*ip6);
	o->end = o->l4 + bpf_ntohs(ip6->payload_len);
	o->family = 6;
	return kind;
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
		return XM_COL_KIND_NONE;
	proto = *(__u16 *)(data + 12);
#pragma unroll
	for (int i = 0; i < XM_COL_MAX_VLANS; i++) {
		struct vlan_hdr *vh = data + off;

		if (proto != bpf_htons(XM_COL_ETH_P_8021Q) && proto != bpf_htons(XM_COL_ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return XM_COL_KIND_NONE;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(XM_COL_ETH_P_IP))
		return parse_ip4(data, end, off, o);
	if (proto == bpf_htons(XM_COL_ETH_P_IPV6))
		return parse_ip6(data, end, off, o);
	return XM_COL_KIND_NONE;
}

#endif
