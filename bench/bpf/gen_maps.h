// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Maps of the traffic generator program. */
#ifndef XMIRROR_BENCH_GEN_MAPS_H
#define XMIRROR_BENCH_GEN_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"

/* The one generator configuration, written by Go before the first run. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_cfg SEC(".maps");

/* Progress of the run. A plain array is enough: BPF_PROG_TEST_RUN runs the program
 * on the calling CPU only, one run after another. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_state);
} gen_progress SEC(".maps");

#endif
