/* Incremental Internet checksum updates (RFC 1624, eqn. 3). One's complement
 * sums do not depend on byte order, so raw network-order words are used. */
#ifndef XMIRROR_LB_CSUM_H
#define XMIRROR_LB_CSUM_H

#include <linux/types.h>

static __always_inline __u16 lb_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* The checksum after a 32-bit field changed from `from` to `to`. */
static __always_inline __u16 lb_csum_replace4(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~(__u16)from + (__u16)~(__u16)(from >> 16);
	s += (__u16)to + (__u16)(to >> 16);
	return (__u16)~lb_csum_fold(s);
}

/* The checksum after a 16-bit field changed from `from` to `to`. */
static __always_inline __u16 lb_csum_replace2(__u16 check, __u16 from, __u16 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~from + to;
	return (__u16)~lb_csum_fold(s);
}

#endif /* XMIRROR_LB_CSUM_H */
