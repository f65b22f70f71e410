// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The GRE listener (RFC 2784/2890, IP protocol 47): switch port mirrors as
 * ERSPAN type I, II and III and transparent Ethernet bridging. The balancer
 * rewrites only the outer IPv4 destination: the GRE checksum covers the GRE
 * header and payload, not the outer IP header, so it stays valid as it came;
 * the key and sequence number are kept. This file finds the inner flow for
 * the symmetric hash and checks that the header fits the packet. */
#ifndef XMIRROR_LB_GRE_H
#define XMIRROR_LB_GRE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include "lb_parsing.h"

#ifndef IPPROTO_GRE
#define IPPROTO_GRE 47
#endif

/* First 16 bits of the GRE header: C, R, K, S flags, reserved, version. */
#define LB_GRE_C 0x8000
#define LB_GRE_K 0x2000
#define LB_GRE_S 0x1000
/* Any bit but C, K and S (R, strict source route, recursion, reserved, the
 * version): a header xmirror does not read (RFC 1701 routing, PPTP's
 * enhanced GRE); it is forwarded and hashed by the outer flow. */
#define LB_GRE_UNREAD 0x4fffu

#define LB_GRE_P_ERSPAN 0x88BE    /* ERSPAN type I (no S bit) and II */
#define LB_GRE_P_ERSPAN3 0x22EB   /* ERSPAN type III */
#ifndef ETH_P_TEB
#define ETH_P_TEB 0x6558
#endif

#define LB_ERSPAN2_HLEN 8
#define LB_ERSPAN3_HLEN 12
#define LB_ERSPAN3_SUBHLEN 8      /* platform-specific sub-header, when O */
#define LB_ERSPAN3_O 0x01         /* byte 11 of the type III header */
#define LB_ERSPAN3_FT_IP 2        /* frame type (FT, bits 6-2 of byte 10): an IP packet without Ethernet */

/* lb_gre_hlen is the length of the GRE header: 4 bytes, and 4 for each of
 * the checksum (with its reserved half), key and sequence number. */
static __always_inline __u32 lb_gre_hlen(__u16 flags)
{
	return 4 + ((flags & LB_GRE_C) ? 4 : 0) + ((flags & LB_GRE_K) ? 4 : 0) + ((flags & LB_GRE_S) ? 4 : 0);
}

/* lb_gre_ok reports whether the GRE header, with the optional fields its
 * flags announce, fits the IP packet (ip_end: its end by total length). */
static __always_inline int lb_gre_ok(void *gre, void *ip_end, void *data_end)
{
	__be16 *g = gre;
	__u16 flags;

	if ((void *)(g + 2) > data_end || (void *)(g + 2) > ip_end)
		return 0;
	flags = bpf_ntohs(g[0]);
	if (flags & LB_GRE_UNREAD)
		return 1; /* not judged: its layout is not read */
	return gre + lb_gre_hlen(flags) <= ip_end;
}

/* lb_erspan_inner is where the mirrored Ethernet frame starts behind an
 * ERSPAN header at e (GRE protocol ptype; type I has none), or NULL. */
static __always_inline void *lb_erspan_inner(void *e, void *data_end, __u16 ptype, __u16 flags)
{
	__u8 *b = e;

	if (ptype == LB_GRE_P_ERSPAN)
		return (flags & LB_GRE_S) ? b + LB_ERSPAN2_HLEN : b;
	if ((void *)(b + LB_ERSPAN3_HLEN) > data_end)
		return NULL;
	return b + LB_ERSPAN3_HLEN + ((b[11] & LB_ERSPAN3_O) ? LB_ERSPAN3_SUBHLEN : 0);
}

/* lb_erspan3_ip_type is the EtherType of the IP packet that follows a type
 * III header at e whose frame type is IP (FT 2), by the packet's version;
 * 0 for an Ethernet frame (FT 0, or anything but IPv4 and IPv6), which the
 * collector writes as it came. */
static __always_inline __u16 lb_erspan3_ip_type(__u8 *e, __u8 *in, void *data_end)
{
	if ((void *)(e + LB_ERSPAN3_HLEN) > data_end || ((e[10] >> 2) & 0x1f) != LB_ERSPAN3_FT_IP)
		return 0;
	if ((void *)(in + 1) > data_end)
		return 0;
	if (in[0] >> 4 == 4)
		return ETH_P_IP;
	if (in[0] >> 4 == 6)
		return ETH_P_IPV6;
	return 0;
}

/* lb_gre_inner_hash hashes the flow a GRE payload carries: an Ethernet frame
 * (transparent Ethernet bridging, or ERSPAN I/II/III behind its header) or
 * an IPv4/IPv6 packet (an IP protocol type, or ERSPAN III of frame type IP).
 * Anything else is LB_INNER_NONE (the caller hashes the outer flow).
 * lb_gre_ok passed. */
static __always_inline int lb_gre_inner_hash(void *gre, void *data_end, __u32 *hash)
{
	__be16 *g = gre;
	__u16 flags, ptype;
	void *in;

	if ((void *)(g + 2) > data_end)
		return LB_INNER_NONE;
	flags = bpf_ntohs(g[0]);
	ptype = bpf_ntohs(g[1]);
	if (flags & LB_GRE_UNREAD)
		return LB_INNER_NONE;
	in = gre + lb_gre_hlen(flags);
	if (ptype == ETH_P_TEB)
		return lb_inner_hash_eth(in, data_end, hash);
	if (ptype == LB_GRE_P_ERSPAN || ptype == LB_GRE_P_ERSPAN3) {
		void *e = in;

		in = lb_erspan_inner(in, data_end, ptype, flags);
		if (!in)
			return LB_INNER_NONE;
		if (ptype == LB_GRE_P_ERSPAN3)
			ptype = lb_erspan3_ip_type(e, in, data_end);
		if (ptype != ETH_P_IP && ptype != ETH_P_IPV6)
			return lb_inner_hash_eth(in, data_end, hash);
	}
	if (ptype == ETH_P_IP || ptype == ETH_P_IPV6)
		return lb_inner_hash_l3(bpf_htons(ptype), in, data_end, hash);
	return LB_INNER_NONE;
}

#endif /* XMIRROR_LB_GRE_H */
