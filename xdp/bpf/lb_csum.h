// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Incremental Internet checksum updates (RFC 1624, eqn. 3). One's complement
 * sums do not depend on byte order, so raw network-order words are used. */
#ifndef XMIRROR_LB_CSUM_H
#define XMIRROR_LB_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

/* The checksum after fields changed by a precomputed one's complement
 * difference (sum of the new words and the complements of the old ones). */
static __always_inline __u16 lb_csum_add(__u16 check, __u16 diff)
{
	__u32 s = (__u32)(__u16)~check + diff;

	/* two 16-bit words: one end-around carry is enough */
	return (__u16)~((s & 0xffff) + (s >> 16));
}

/* What lowering the TTL by one adds to the IPv4 header checksum: the word
 * (TTL, protocol) loses 0x0100, which is adding its complement 0xfeff. The
 * control plane folds this into lb_backend.csum_ip, so the forward path pays
 * nothing for it; LB_CSUM_TTL_INC undoes it where the kernel forwards the
 * packet instead (and lowers the TTL itself). Network order, as loaded. */
#define LB_CSUM_TTL_INC bpf_htons(0x0100)

/* lb_csum_sum_ok: a sum of a header's 32-bit words, checksum included,
 * folds to 0xffff (the header is intact) exactly when it is a non-zero
 * multiple of 0xffff (2^16 is 1 mod 0xffff). For an odd d, x is a multiple of d
 * exactly when x * d^-1 mod 2^64 <= (2^64-1)/d: one multiplication where a
 * fold takes four dependent steps. */
#define LB_CSUM_INV 0xfffefffefffeffffULL /* 0xffff^-1 mod 2^64 */
#define LB_CSUM_MAX 0x0001000100010001ULL /* (2^64-1) / 0xffff */

static __always_inline int lb_csum_sum_ok(__u64 s)
{
	return s != 0 && s * LB_CSUM_INV <= LB_CSUM_MAX;
}

/* lb_ipv4_csum_ok20 checks the checksum of an IPv4 header without options:
 * its five words, checksum included, sum to 0xffff. */
static __always_inline int lb_ipv4_csum_ok20(const __u32 *w)
{
	return lb_csum_sum_ok((__u64)w[0] + w[1] + w[2] + w[3] + w[4]);
}

/* lb_ipv4_csum_ok checks the checksum of an IPv4 header of words 32-bit
 * words (5-15) whose first 20 bytes are known to be in the packet. Each
 * option word is bounds-checked at a constant offset, which the verifier
 * follows where a loop's moving pointer loses it. */
static __always_inline int lb_ipv4_csum_ok(const __u32 *w, __u32 words, void *data_end)
{
	__u64 s = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

	/* Hide what the caller's length check told the compiler, or it drops
	 * the last word's bounds check, which the verifier needs. */
	asm volatile("" : "+r"(words));
#define LB_CSUM_OPT_WORD(k)                                  \
	if (words > (k)) {                                   \
		if ((void *)(w + (k) + 1) > data_end)        \
			return 0;                            \
		s += w[k];                                   \
	}
	LB_CSUM_OPT_WORD(5) LB_CSUM_OPT_WORD(6) LB_CSUM_OPT_WORD(7) LB_CSUM_OPT_WORD(8)
	LB_CSUM_OPT_WORD(9) LB_CSUM_OPT_WORD(10) LB_CSUM_OPT_WORD(11) LB_CSUM_OPT_WORD(12)
	LB_CSUM_OPT_WORD(13) LB_CSUM_OPT_WORD(14)
#undef LB_CSUM_OPT_WORD
	return lb_csum_sum_ok(s);
}

#endif /* XMIRROR_LB_CSUM_H */
