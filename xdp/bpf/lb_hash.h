// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Flow hashing: three words multiplied by 64-bit odd constants side by side,
 * summed, folded and multiplied once more (multiply-shift hashing). BPF has
 * no rotate instruction, so jhash's seven rotations cost about 60
 * instructions; this is about 15 with two multiplications on the critical
 * path, and maglev and the connection table only need an even spread, not
 * resistance to chosen keys. Mirrored in xdp/hash.go; a change here must be
 * made there too. */
#ifndef XMIRROR_LB_HASH_H
#define XMIRROR_LB_HASH_H

#include <linux/types.h>

static __always_inline __u32 lb_hash_3words(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	/* three independent products the CPU computes side by side, summed,
	 * then folded and multiplied once more: the high half of the last
	 * product depends on every input bit */
	__u64 h = (__u64)(a ^ seed) * 0x9e3779b97f4a7c15ULL +
		  (__u64)b * 0xc2b2ae3d27d4eb4fULL +
		  (__u64)c * 0x165667b19e3779f9ULL;

	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	return h >> 32;
}

/* An IPv6 address folded to one word, so the IPv6 flow hash has the IPv4 shape. */
static __always_inline __u32 lb_hash_in6(const __u32 *w)
{
	return lb_hash_3words(w[0], w[1], lb_hash_3words(w[2], w[3], 0, LB_HASH_SEED), LB_HASH_SEED);
}

/* Direction-independent: the unordered pair of addresses and of ports. */
static __always_inline __u32 lb_hash_symmetric(__u32 a, __u32 b, __u16 pa, __u16 pb, __u8 proto)
{
	__u32 lo = a < b ? a : b, hi = a < b ? b : a;
	__u32 plo = pa < pb ? pa : pb, phi = pa < pb ? pb : pa;

	return lb_hash_3words(lo, hi, (plo << 16) | phi, LB_HASH_SEED + proto);
}

/* Directional outer 5-tuple (always UDP). */
static __always_inline __u32 lb_hash_outer(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport)
{
	return lb_hash_3words(saddr, daddr, ((__u32)sport << 16) | dport, LB_HASH_SEED + 17);
}

/* Every fragment of one datagram carries (src, dst, id). */
static __always_inline __u32 lb_hash_frag(__u32 saddr, __u32 daddr, __u16 id)
{
	return lb_hash_3words(saddr, daddr, id, LB_HASH_SEED_FRAG);
}

#endif /* XMIRROR_LB_HASH_H */
