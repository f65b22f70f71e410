// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The ring of the collector's XDP receive path: records of a few size
 * classes, and when to wake the reader. */
#ifndef XM_COLLECT_RING_H
#define XM_COLLECT_RING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "maps.h"
#include "parsing.h"
#include "tunnels.h"

/* Unread bytes in the ring at which the program wakes the reader; below it
 * records wait for the reader's timer, so that under load one wakeup
 * carries a batch of records. */
volatile const __u32 ring_wake = 64 << 10;

/* Set by the reader when it sleeps without a timer because nothing came for
 * a while: the next record then wakes it at once. */
volatile __u32 ring_idle = 0;

/* ring_put reserves a record of size bytes (a constant: the verifier wants
 * one per call site), fills its header and copies the inner frame at off
 * behind it with bpf_xdp_load_bytes, which also reads the fragments of a
 * multi-buffer (jumbo) frame. */
static __always_inline int ring_put(struct xdp_md *ctx, const struct outer *o, __u64 ts, const struct take *t,
				    const __u32 size)
{
	const __u32 room = size - sizeof(struct col_rec);
	struct col_rec *r;
	__u64 n, avail, flags = BPF_RB_NO_WAKEUP;

	r = bpf_ringbuf_reserve(&xm_col_ring, size, 0);
	if (!r)
		return -1;
	r->tstamp = ts;
	__builtin_memcpy(r->saddr, o->saddr, sizeof(r->saddr));
	r->vni = t->id;
	r->caplen = t->len;
	r->family = o->family;
	r->proto = t->proto;
	/* Bound the length again in the register the verifier checks. */
	n = t->len;
	asm volatile("" : "+r"(n));
	if (n > room || n < 1 || bpf_xdp_load_bytes(ctx, t->off, (void *)(r + 1), n)) {
		bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);
		return -1;
	}
	avail = bpf_ringbuf_query(&xm_col_ring, BPF_RB_AVAIL_DATA);
	if (ring_idle || (avail >= ring_wake && avail < ring_wake + size + 8))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(r, flags);
	return 0;
}

/* emit picks the smallest record size that holds the frame: a 96-byte cut
 * (the default packet length) takes 128 bytes, a 128-byte one 160, a full
 * 1500-byte frame 1600, a 9001-byte jumbo 9216. Classes close together for
 * small frames keep the ring's bytes per packet near the frame's own: with
 * only 128 and 1600, a 100-byte frame took 1600 bytes and the ring held a
 * tenth of the packets. */
static __always_inline int emit(struct xdp_md *ctx, const struct outer *o, __u64 ts, const struct take *t)
{
	__u32 total = sizeof(struct col_rec) + t->len;

	if (total <= 128)
		return ring_put(ctx, o, ts, t, 128);
	if (total <= 160)
		return ring_put(ctx, o, ts, t, 160);
	if (total <= 224)
		return ring_put(ctx, o, ts, t, 224);
	if (total <= 320)
		return ring_put(ctx, o, ts, t, 320);
	if (total <= 576)
		return ring_put(ctx, o, ts, t, 576);
	if (total <= 1088)
		return ring_put(ctx, o, ts, t, 1088);
	if (total <= 1600)
		return ring_put(ctx, o, ts, t, 1600);
	if (total <= 9216)
		return ring_put(ctx, o, ts, t, 9216);
	return ring_put(ctx, o, ts, t, sizeof(struct col_rec) + 0xffff);
}

#endif
