// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Maps of the collector's XDP receive path. */
#ifndef XM_COLLECT_MAPS_H
#define XM_COLLECT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"

/* Inner frames for user space: one ring shared by every CPU and interface,
 * so its order is the order packets were received in (one reader). The
 * loader may resize it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XM_COL_RING_SIZE);
} xm_col_ring SEC(".maps");

/* Packets received and dropped by reason (XM_COL_* indexes). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XM_COL_NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} xm_col_counters SEC(".maps");

#endif
