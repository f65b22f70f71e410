// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Header parsing: outer Ethernet/802.1Q/IPv4/UDP, and the inner flow inside
 * VXLAN for the symmetric hash. Every access is bounds-checked against data_end. */
#ifndef XMIRROR_LB_PARSING_H
#define XMIRROR_LB_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "lb_hash.h"
#include "lb_csum.h"

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define LB_IP_MF 0x2000
#define LB_IP_OFFSET 0x1fff

#define LB_VXLAN_HLEN 8
#define LB_VXLAN_FLAG_I 0x08

/* VLAN tags skipped in an inner frame (lb_parse_eth). */
#define LB_INNER_VLAN_TAGS 3

struct lb_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* parse_eth skips Ethernet and at most three VLAN tags (802.1Q, or QinQ:
 * 802.1ad or 802.1Q outside 802.1Q), as the collector does: a copy from
 * xmirror source carries up to two tags of the frame's data and, at ingress,
 * the outermost one the kernel kept in metadata. Returns the EtherType
 * (network order) and sets *l3, or 0 when the frame is truncated. */
static __always_inline __be16 lb_parse_eth(void *data, void *data_end, void **l3)
{
	struct ethhdr *eth = data;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return 0;
	proto = eth->h_proto;
	*l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < LB_INNER_VLAN_TAGS; i++) {
		struct lb_vlan_hdr *vh = *l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return 0;
		proto = vh->proto;
		*l3 = vh + 1;
	}
	return proto;
}

/* The common shape of a frame, checked with a few word compares instead of
 * a header walk: untagged Ethernet, IPv4 without options, not a fragment,
 * and (outer) UDP or (inner) TCP/UDP. Words are loaded little-endian, as on
 * bpfel: bytes 12-15 hold EtherType, version/IHL and TOS; bytes 20-23 of the
 * frame (6-9 of the IP header) hold the fragment field, TTL and protocol. */
#define LB_PLAIN_L2_MASK 0x00ffffffu
#define LB_PLAIN_L2_IPV4 0x00450008u   /* EtherType 0x0800, version 4, IHL 5 */
#define LB_PLAIN_FRAG_PROTO_MASK 0xff00ff3fu /* protocol, MF and offset */
#define LB_PLAIN_UDP 0x11000000u
#define LB_PLAIN_TCP 0x06000000u
#define LB_PLAIN_TTL_MASK 0x00ff0000u
#define LB_PLAIN_TTL_1 0x00010000u
#define LB_PLAIN_HLEN (ETH_HLEN + 20) /* Ethernet + IPv4 without options */

/* lb_plain_listener vouches for the common case, a whole, well-formed UDP
 * datagram to vip:port with a TTL above 1, in an untagged frame without IP
 * options, and sets the header pointers. 0 = not vouched for: the general
 * parser decides, and counts what is wrong. */
static __always_inline int lb_plain_listener(void *data, void *data_end, __be32 vip, __be16 port,
					     struct iphdr **ipp, struct udphdr **udpp)
{
	struct udphdr *udp = data + LB_PLAIN_HLEN;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 fpt, tot, ulen;

	if ((void *)(udp + 1) > data_end)
		return 0;
	fpt = *(__u32 *)(data + 20);
	if ((*(__u32 *)(data + 12) & LB_PLAIN_L2_MASK) != LB_PLAIN_L2_IPV4 ||
	    (fpt & LB_PLAIN_FRAG_PROTO_MASK) != LB_PLAIN_UDP)
		return 0;
	if (vip == 0 || ip->daddr != vip || udp->dest != port)
		return 0;
	tot = bpf_ntohs(ip->tot_len);
	ulen = bpf_ntohs(udp->len);
	if ((fpt & LB_PLAIN_TTL_MASK) <= LB_PLAIN_TTL_1 || (void *)ip + tot > data_end ||
	    ulen < sizeof(*udp) || ulen + sizeof(*ip) > tot || !lb_ipv4_csum_ok20((__u32 *)ip))
		return 0;
	*ipp = ip;
	*udpp = udp;
	return 1;
}

/* Result of lb_inner_hash: how much of the inner flow was hashed. */
enum lb_inner_kind {
	LB_INNER_NONE = 0,  /* nothing usable: caller falls back to the outer flow */
	LB_INNER_ADDRS = 1, /* inner addresses only (L4 cut short or absent) */
	LB_INNER_FULL = 2,  /* addresses, protocol and ports */
};

/* L4 "ports" of an inner packet for the symmetric hash; ICMP echo uses its id
 * on both sides so a request and its reply agree. Returns 0 when cut short. */
static __always_inline int lb_inner_ports(void *l4, void *data_end, __u8 proto, __u16 *pa, __u16 *pb)
{
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		__u16 *ports = l4;

		if ((void *)(ports + 2) > data_end)
			return 0;
		*pa = ports[0];
		*pb = ports[1];
		return 1;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		__u8 *icmp = l4;

		if ((void *)(icmp + 8) > data_end)
			return 0;
		/* echo request/reply: 8/0 (ICMP), 128/129 (ICMPv6) */
		if (icmp[0] == 8 || icmp[0] == 0 || icmp[0] == 128 || icmp[0] == 129) {
			*pa = *(__u16 *)(icmp + 4);
			*pb = *pa;
		}
		return 1;
	}
	return 1; /* no ports: addresses and protocol */
}

/* lb_flow_hash_ip4 hashes an IPv4 packet's flow: addresses, protocol and
 * ports (ICMP echo id); addresses only for a fragment or a header cut short.
 * Direction-independent. */
static __always_inline int lb_flow_hash_ip4(struct iphdr *ip, void *data_end, __u32 *hash)
{
	__u16 pa = 0, pb = 0;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end)
		return LB_INNER_NONE;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return LB_INNER_NONE;
	/* non-first fragments have no ports: hash what every fragment has */
	if ((ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) ||
	    !lb_inner_ports((void *)ip + ihl, data_end, ip->protocol, &pa, &pb)) {
		*hash = lb_hash_symmetric(ip->saddr, ip->daddr, 0, 0, 0);
		return LB_INNER_ADDRS;
	}
	*hash = lb_hash_symmetric(ip->saddr, ip->daddr, pa, pb, ip->protocol);
	return LB_INNER_FULL;
}

/* lb_flow_hash_ip6 is lb_flow_hash_ip4 for IPv6. */
static __always_inline int lb_flow_hash_ip6(struct ipv6hdr *ip6, void *data_end, __u32 *hash)
{
	__u16 pa = 0, pb = 0;
	__u32 a, b;

	if ((void *)(ip6 + 1) > data_end)
		return LB_INNER_NONE;
	a = lb_hash_in6((__u32 *)&ip6->saddr);
	b = lb_hash_in6((__u32 *)&ip6->daddr);
	/* extension headers are not walked: the pair of addresses and the
	 * next header still agree in both directions */
	if (!lb_inner_ports(ip6 + 1, data_end, ip6->nexthdr, &pa, &pb)) {
		*hash = lb_hash_symmetric(a, b, 0, 0, 0);
		return LB_INNER_ADDRS;
	}
	*hash = lb_hash_symmetric(a, b, pa, pb, ip6->nexthdr);
	return LB_INNER_FULL;
}

/* ICMP errors (destination unreachable, source quench, redirect, time
 * exceeded, parameter problem; ICMPv6 destination unreachable, packet too
 * big, time exceeded, parameter problem) quote the header of the packet
 * they are about, 8 bytes behind their own. */
static __always_inline int lb_icmp4_error(__u8 type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

static __always_inline int lb_icmp6_error(__u8 type)
{
	return type >= 1 && type <= 4;
}

/* lb_inner_hash_l3 hashes an inner IPv4 or IPv6 packet (proto, network
 * order) at l3. Direction-independent. An ICMP error is hashed as the packet
 * it quotes, so it lands with the flow it is about (a port unreachable with
 * its UDP datagram, a packet too big with its TCP connection). */
static __always_inline int lb_inner_hash_l3(__be16 proto, void *l3, void *data_end, __u32 *hash)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		__u8 *icmp;

		if ((void *)(ip + 1) > data_end)
			return LB_INNER_NONE;
		icmp = (void *)ip + ip->ihl * 4;
		/* one hash call for either header: two would double what the
		 * verifier walks */
		if (ip->protocol == IPPROTO_ICMP && ip->ihl >= 5 && !(ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) &&
		    (void *)(icmp + 8 + sizeof(struct iphdr)) <= data_end && lb_icmp4_error(icmp[0]))
			ip = (void *)(icmp + 8);
		return lb_flow_hash_ip4(ip, data_end, hash);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		__u8 *icmp = (void *)(ip6 + 1);

		if ((void *)(icmp + 8 + sizeof(struct ipv6hdr)) <= data_end && ip6->nexthdr == IPPROTO_ICMPV6 &&
		    lb_icmp6_error(icmp[0]))
			ip6 = (void *)(icmp + 8);
		return lb_flow_hash_ip6(ip6, data_end, hash);
	}
	return LB_INNER_NONE;
}

/* lb_inner_hash_plain hashes the common inner frame, untagged IPv4 without
 * options carrying TCP or UDP, in a few compares. Returns 1 when it did. */
static __always_inline int lb_inner_hash_plain(void *in, void *data_end, __u32 *hash)
{
	__u32 fp;

	if (in + LB_PLAIN_HLEN + 4 > data_end)
		return 0;
	fp = *(__u32 *)(in + 20) & LB_PLAIN_FRAG_PROTO_MASK;
	if ((*(__u32 *)(in + 12) & LB_PLAIN_L2_MASK) == LB_PLAIN_L2_IPV4 && (fp == LB_PLAIN_TCP || fp == LB_PLAIN_UDP)) {
		struct iphdr *ip = in + ETH_HLEN;
		__u16 *ports = in + LB_PLAIN_HLEN;

		*hash = lb_hash_symmetric(ip->saddr, ip->daddr, ports[0], ports[1], fp >> 24);
		return 1;
	}
	return 0;
}

/* lb_inner_hash_eth hashes the inner Ethernet frame at in (a VXLAN or
 * GENEVE payload). Direction-independent. */
static __always_inline int lb_inner_hash_eth(void *in, void *data_end, __u32 *hash)
{
	void *l3;
	__be16 proto;

	if (lb_inner_hash_plain(in, data_end, hash))
		return LB_INNER_FULL;
	proto = lb_parse_eth(in, data_end, &l3);
	return lb_inner_hash_l3(proto, l3, data_end, hash);
}

/* lb_inner_hash hashes the frame carried in a VXLAN payload starting at vx.
 * Direction-independent. */
static __always_inline int lb_inner_hash(void *vx, void *data_end, __u32 *hash)
{
	__u8 *vxh = vx;

	if ((void *)(vxh + LB_VXLAN_HLEN) > data_end)
		return LB_INNER_NONE;
	if (!(vxh[0] & LB_VXLAN_FLAG_I))
		return LB_INNER_NONE;
	return lb_inner_hash_eth(vxh + LB_VXLAN_HLEN, data_end, hash);
}

#endif /* XMIRROR_LB_PARSING_H */
