// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* One's complement checksum helpers. */
#ifndef XMIRROR_BENCH_CSUM_H
#define XMIRROR_BENCH_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* csum_replace4 updates a network-order checksum for a 32-bit field changing from
 * from to to (RFC 1624), both given as network-order words. */
static __always_inline void csum_replace4(__u16 *csum, __u32 from, __u32 to)
{
	__u64 sum = (__u16)~*csum;
	sum += (__u16)~(from & 0xffff) + (__u16)~(from >> 16);
	sum += (to & 0xffff) + (to >> 16);
	*csum = ~csum_fold32(sum);
}

#endif
