// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The GENEVE listener (RFC 8926, UDP 6081): the header check that drops a
 * datagram whose options run past its end, and the inner flow hash read past
 * the variable-length options. The balancer forwards GENEVE as it does VXLAN
 * (outer destination and port rewritten, header and options untouched), so
 * the option classes and the critical (C) and OAM (O) bits do not matter to
 * it: only a tunnel endpoint acts on them. */
#ifndef XMIRROR_LB_GENEVE_H
#define XMIRROR_LB_GENEVE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "lb_parsing.h"

/* Fixed part of the GENEVE header:
 *   byte 0  Ver (2 bits) | Opt Len (6 bits, in 4-byte words)
 *   byte 1  O | C | reserved
 *   bytes 2-3  protocol type of the payload (an EtherType)
 *   bytes 4-6  VNI, byte 7 reserved */
#define LB_GENEVE_HLEN 8
#define LB_GENEVE_OPTLEN_MASK 0x3f
#define LB_GENEVE_VER_SHIFT 6

/* Transparent Ethernet Bridging: the payload is an Ethernet frame. */
#ifndef ETH_P_TEB
#define ETH_P_TEB 0x6558
#endif

/* lb_geneve_hlen is the length of the GENEVE header with its options. */
static __always_inline __u32 lb_geneve_hlen(const __u8 *gh)
{
	return LB_GENEVE_HLEN + (gh[0] & LB_GENEVE_OPTLEN_MASK) * 4;
}

/* lb_geneve_ok reports whether a whole datagram to the GENEVE listener holds
 * the header and all the options it announces. Its UDP length was checked
 * against the IP packet and the frame before. A header of another version is
 * not judged (its layout is unknown): it is forwarded, hashed by the outer
 * flow. */
static __always_inline int lb_geneve_ok(struct udphdr *udp, void *data_end)
{
	__u8 *gh = (void *)(udp + 1);

	if ((void *)(gh + LB_GENEVE_HLEN) > data_end)
		return 0;
	if (gh[0] >> LB_GENEVE_VER_SHIFT)
		return 1;
	return sizeof(*udp) + lb_geneve_hlen(gh) <= bpf_ntohs(udp->len);
}

/* lb_geneve_inner_hash hashes the flow a GENEVE payload carries: an Ethernet
 * frame (protocol type 0x6558) as VXLAN's, an IPv4 or IPv6 packet without
 * Ethernet from its IP header; any other protocol type, or another version,
 * is LB_INNER_NONE (the caller hashes the outer flow). lb_geneve_ok passed. */
static __always_inline int lb_geneve_inner_hash(void *payload, void *data_end, __u32 *hash)
{
	__u8 *gh = payload;
	void *inner;
	__be16 ptype;

	if ((void *)(gh + LB_GENEVE_HLEN) > data_end || (gh[0] >> LB_GENEVE_VER_SHIFT))
		return LB_INNER_NONE;
	ptype = *(__be16 *)(gh + 2);
	inner = gh + lb_geneve_hlen(gh);
	if (ptype == bpf_htons(ETH_P_TEB))
		return lb_inner_hash_eth(inner, data_end, hash);
	if (ptype == bpf_htons(ETH_P_IP) || ptype == bpf_htons(ETH_P_IPV6))
		return lb_inner_hash_l3(ptype, inner, data_end, hash);
	return LB_INNER_NONE;
}

#endif /* XMIRROR_LB_GENEVE_H */
