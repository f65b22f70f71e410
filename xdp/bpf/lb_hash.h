/* Flow hashing: the Linux jhash final mix over three words. Mirrored in
 * xdp/hash.go; a change here must be made there too. */
#ifndef XMIRROR_LB_HASH_H
#define XMIRROR_LB_HASH_H

#include <linux/types.h>

#define LB_JHASH_INITVAL 0xdeadbeefu

static __always_inline __u32 lb_rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

static __always_inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += LB_JHASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* An IPv6 address folded to one word, so the IPv6 flow hash has the IPv4 shape. */
static __always_inline __u32 lb_hash_in6(const __u32 *w)
{
	return lb_jhash_3words(w[0], w[1], lb_jhash_3words(w[2], w[3], 0, LB_HASH_SEED), LB_HASH_SEED);
}

/* Direction-independent: the unordered pair of addresses and of ports. */
static __always_inline __u32 lb_hash_symmetric(__u32 a, __u32 b, __u16 pa, __u16 pb, __u8 proto)
{
	__u32 lo = a < b ? a : b, hi = a < b ? b : a;
	__u32 plo = pa < pb ? pa : pb, phi = pa < pb ? pb : pa;

	return lb_jhash_3words(lo, hi, (plo << 16) | phi, LB_HASH_SEED + proto);
}

/* Directional outer 5-tuple (always UDP). */
static __always_inline __u32 lb_hash_outer(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport)
{
	return lb_jhash_3words(saddr, daddr, ((__u32)sport << 16) | dport, LB_HASH_SEED + 17);
}

/* Every fragment of one datagram carries (src, dst, id). */
static __always_inline __u32 lb_hash_frag(__u32 saddr, __u32 daddr, __u16 id)
{
	return lb_jhash_3words(saddr, daddr, id, LB_HASH_SEED_FRAG);
}

#endif /* XMIRROR_LB_HASH_H */
