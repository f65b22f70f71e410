// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Packet parsing into the fields filter rules match on. Uses
 * bpf_skb_load_bytes so non-linear skbs parse without pulling (the original
 * packet is never touched). */
#ifndef XM_SOURCE_PARSING_H
#define XM_SOURCE_PARSING_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

struct flow {
	__u32 src[4];
	__u32 dst[4];
	__u16 ethertype; /* host order */
	__u8 proto;
	__u8 has_ports;
	__u16 sport; /* host order */
	__u16 dport;
	__u8 tos;   /* IPv4 only */
	__u8 pad;
	__u16 l4;   /* offset of the IPv4 payload (VLAN tags in the data included) */
};

#define IPV6_NEXTHDR_HOP 0
#define IPV6_NEXTHDR_ROUTING 43
#define IPV6_NEXTHDR_FRAGMENT 44
#define IPV6_NEXTHDR_DEST 60

/* load_ports reads the ports at off, in place when the linear part of the
 * packet holds them (no helper call), else with bpf_skb_load_bytes. */
static __always_inline int load_ports(struct __sk_buff *skb, __u32 off, struct flow *f)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u16 buf[2], *ports = buf;

	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	/* The bound lets the verifier accept the pointer arithmetic. */
	if (off <= 0xfff && data + off + sizeof(buf) <= end)
		ports = data + off;
	else if (bpf_skb_load_bytes(skb, off, buf, sizeof(buf)) < 0)
		return 0; /* truncated: match on addresses only */
	f->sport = bpf_ntohs(ports[0]);
	f->dport = bpf_ntohs(ports[1]);
	f->has_ports = 1;
	return 0;
}

/* skip_vlan_tags walks the VLAN tags in the frame's data (a frame sent
 * tagged through a packet socket has skb->protocol 0x8100 or 0x88a8, and
 * the inner tag of QinQ stays in the data at ingress): it returns the
 * offset of the header behind them and sets *proto to its ethertype (host
 * order), or -1 for a tag cut off. A frame with more than XM_MAX_VLAN_TAGS
 * keeps a VLAN ethertype, which no rule matches. */
static __always_inline int skip_vlan_tags(struct __sk_buff *skb, __u16 *proto)
{
	__u32 off = XM_ETH_HLEN;

#pragma unroll
	for (int i = 0; i < XM_MAX_VLAN_TAGS; i++) {
		__u16 next;

		if (*proto != XM_ETH_P_8021Q && *proto != XM_ETH_P_8021AD)
			break;
		/* The TCI, then the ethertype of what follows the tag. */
		if (bpf_skb_load_bytes(skb, off + 2, &next, sizeof(next)) < 0)
			return -1;
		*proto = bpf_ntohs(next);
		off += XM_VLAN_HLEN;
	}
	return off;
}

/* parse_flow fills f; returns -1 for frames that are neither IPv4 nor IPv6 or
 * whose IP header is truncated (never mirrored). The IP header may sit
 * behind VLAN tags (skip_vlan_tags); offsets count them. */
static __always_inline int parse_flow(struct __sk_buff *skb, struct flow *f)
{
	__u16 proto = bpf_ntohs(skb->protocol);
	int l3 = skip_vlan_tags(skb, &proto);

	if (l3 < 0)
		return -1;
	f->ethertype = proto;
	if (proto == XM_ETH_P_IP) {
		void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
		struct iphdr buf, *ip = data + l3;

		/* In place when the linear part holds the header (no helper call:
		 * this runs for every packet). */
		if ((void *)(ip + 1) > end) {
			if (bpf_skb_load_bytes(skb, l3, &buf, sizeof(buf)) < 0)
				return -1;
			ip = &buf;
		}
		if (ip->version != 4 || ip->ihl < 5)
			return -1;
		f->src[0] = ip->saddr;
		f->dst[0] = ip->daddr;
		f->proto = ip->protocol;
		f->tos = ip->tos;
		f->l4 = l3 + ip->ihl * 4;
		/* Only the first fragment carries ports. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return 0;
		return load_ports(skb, f->l4, f);
	}
	if (proto == XM_ETH_P_IPV6) {
		struct ipv6hdr ip6;
		__u32 off = l3 + sizeof(ip6);
		__u8 nh;

		if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)) < 0)
			return -1;
		__builtin_memcpy(f->src, &ip6.saddr, 16);
		__builtin_memcpy(f->dst, &ip6.daddr, 16);
		nh = ip6.nexthdr;
#pragma unroll
		for (int i = 0; i < XM_MAX_V6_EXT; i++) {
			__u8 ext[2];

			if (nh != IPV6_NEXTHDR_HOP && nh != IPV6_NEXTHDR_ROUTING &&
			    nh != IPV6_NEXTHDR_DEST && nh != IPV6_NEXTHDR_FRAGMENT)
				break;
			if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
				return -1;
			if (nh == IPV6_NEXTHDR_FRAGMENT) {
				__u16 frag;

				if (bpf_skb_load_bytes(skb, off + 2, &frag, sizeof(frag)) < 0)
					return -1;
				f->proto = ext[0];
				/* A non-first fragment has no ports. */
				if (bpf_ntohs(frag) & 0xfff8)
					return 0;
				nh = ext[0];
				off += 8;
				continue;
			}
			nh = ext[0];
			off += (ext[1] + 1) * 8;
		}
		f->proto = nh;
		return load_ports(skb, off, f);
	}
	return -1;
}

#endif
