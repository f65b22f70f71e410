// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Flow hash for the outer UDP source port. The vxlan driver derives the
 * source port from skb->hash (udp_flow_src_port), so the program sets the hash
 * instead of writing headers. */
#ifndef XM_SOURCE_HASH_H
#define XM_SOURCE_HASH_H

#include "parsing.h"

static __always_inline __u32 xm_mix(__u32 h, __u32 v)
{
	v *= 0xcc9e2d51;
	v = (v << 15) | (v >> 17);
	v *= 0x1b873593;
	h ^= v;
	h = (h << 13) | (h >> 19);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 xm_fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* flow_hash hashes the 5-tuple. Symmetric: the endpoints are ordered first so
 * both directions of a flow get the same value; directional: as sent (what
 * AWS does). IPv4 mixes only the address words it uses: the hash runs for
 * every mirrored packet. */
static __always_inline __u32 flow_hash(const struct flow *f, int symmetric)
{
	const __u32 *a = f->src, *b = f->dst;
	__u16 pa = f->sport, pb = f->dport;
	__u32 h = 0x9e3779b9 ^ f->proto;
	int words = f->ethertype == XM_ETH_P_IP ? 1 : 4;

	if (symmetric) {
		int swap = 0, same = 1;

#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (i < words && a[i] != b[i]) {
				swap = a[i] > b[i];
				same = 0;
				break;
			}
		}
		if (same)
			swap = pa > pb;
		if (swap) {
			a = f->dst;
			b = f->src;
			pa = f->dport;
			pb = f->sport;
		}
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < words)
			h = xm_mix(h, a[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < words)
			h = xm_mix(h, b[i]);
	h = xm_mix(h, ((__u32)pa << 16) | pb);
	return xm_fmix(h);
}

/* outer_port is the kernel's udp_flow_src_port() for a flow hash over the
 * local port range (port_min, port_range), so the ring path picks the port
 * the vxlan driver would. */
static __always_inline __u16 outer_port(__u32 port_min, __u32 port_range, __u32 hash)
{
	hash ^= hash << 16;
	return (__u16)((((__u64)hash * port_range) >> 32) + port_min);
}

#endif
