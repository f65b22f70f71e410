/* Incremental Internet checksum updates (RFC 1624, eqn. 3). One's complement
 * sums do not depend on byte order, so raw network-order words are used. */
#ifndef XMIRROR_LB_CSUM_H
#define XMIRROR_LB_CSUM_H

#include <linux/types.h>

/* The checksum after fields changed by a precomputed one's complement
 * difference (sum of the new words and the complements of the old ones). */
static __always_inline __u16 lb_csum_add(__u16 check, __u16 diff)
{
	__u32 s = (__u32)(__u16)~check + diff;

	/* two 16-bit words: one end-around carry is enough */
	return (__u16)~((s & 0xffff) + (s >> 16));
}

#endif /* XMIRROR_LB_CSUM_H */
