// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The outer IPv4, UDP and VXLAN headers of a mirrored packet, written in one
 * place for the ring's records (ring_put) and the direct sends (direct.h).
 * source/outer.go knows the same layout (TestOuterLayout). */
#ifndef XM_SOURCE_OUTER_H
#define XM_SOURCE_OUTER_H

#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"

/* The outer headers, 4-byte aligned. */
struct outer_hdrs {
	struct iphdr ip;
	struct udphdr udp;
	__u32 vx[2];
};

_Static_assert(sizeof(struct outer_hdrs) == XM_OUTER_LEN, "outer_hdrs is not XM_OUTER_LEN bytes");

/* outer_fill writes every field of the outer headers of a frame of len
 * bytes: IPv4 with DF, the mirror DSCP, ID and checksum 0 (the senders fill
 * them in), UDP from port to the VXLAN port with checksum 0 (RFC 7348),
 * VXLAN with the I flag and the session's VNI. */
static __always_inline void outer_fill(struct outer_hdrs *o, const struct session *s, __u32 local, __u16 port,
				       __u32 len)
{
	o->ip.version = 4;
	o->ip.ihl = 5;
	o->ip.tos = XM_MIRROR_TOS;
	o->ip.tot_len = bpf_htons(XM_OUTER_LEN + len);
	o->ip.id = 0;
	o->ip.frag_off = bpf_htons(0x4000); /* DF */
	o->ip.ttl = s->ttl ? s->ttl : 64;
	o->ip.protocol = IPPROTO_UDP;
	o->ip.check = 0;
	o->ip.saddr = local;
	o->ip.daddr = s->remote;
	o->udp.source = bpf_htons(port);
	o->udp.dest = bpf_htons(XM_VXLAN_PORT);
	o->udp.len = bpf_htons(XM_OUTER_LEN - sizeof(struct iphdr) + len);
	o->udp.check = 0;
	o->vx[0] = bpf_htonl(0x08000000);
	o->vx[1] = bpf_htonl(s->vni << 8);
}

/* ipv4_csum is the IPv4 header checksum of the 20 bytes at ip: direct sends
 * fill it in themselves, where the ring's senders leave it to their socket. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u32 *w = (const __u32 *)ip;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 5; i++)
		sum += w[i];
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

#endif
