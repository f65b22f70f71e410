// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Maps of the benchmark peers: the minimal forwarder and the packet counter. */
#ifndef XMIRROR_BENCH_PEER_MAPS_H
#define XMIRROR_BENCH_PEER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"

/* Where the minimal forwarder sends VXLAN to the VIP: one fixed backend. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fwd_config);
} fwd_cfg SEC(".maps");

/* VXLAN packets seen by the counter (index 0) and forwarded by the forwarder
 * (index 1), per CPU so that receive queues never share a cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct count_value);
} counters SEC(".maps");

/* VXLAN packets seen by the counter per outer destination address (network
 * order), so that one counter behind a load balancer tells its backends apart. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, COUNT_MAX_DESTS);
	__type(key, __u32);
	__type(value, struct count_value);
} by_dst SEC(".maps");

#endif
