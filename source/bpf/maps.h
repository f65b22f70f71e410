// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Maps of the source data path. */
#ifndef XM_SOURCE_MAPS_H
#define XM_SOURCE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

/* Global state: active buffer, VXLAN device, tunnel mark, rule counts. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state);
} xm_state SEC(".maps");

/* Compiled rules: index ((buffer * 2) + direction) * XM_MAX_RULES + i, in
 * evaluation order (sessions by priority, then rules by priority). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 2 * XM_MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule);
} xm_rules SEC(".maps");

/* Sessions: index buffer * XM_MAX_SESSIONS + session id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XM_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct session);
} xm_sessions SEC(".maps");

/* Source interfaces by ifindex: the outer source address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XM_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface);
} xm_ifaces SEC(".maps");

/* IPv4 addresses of the targets: UDP to them on port 4789 is our own tunnel
 * traffic even when it lost its mark. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XM_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u32);
} xm_targets SEC(".maps");

/* Next hops of the targets by IPv4 address (network order), for direct
 * sends (datapath ring): only targets whose neighbour is resolved on an
 * interface where an egress program finishes the clones (xm_source_egress,
 * or xm_direct_egress attached for it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XM_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct hop);
} xm_hops SEC(".maps");

/* Source interfaces that have received an aggregate (a GSO packet) at
 * ingress, by ifindex: their inbound copies take the ring from then on
 * (rx_aggregates, direct.h). The programs write it; user space never does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XM_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u8);
} xm_rx_aggr SEC(".maps");

/* Counters: index session id * 2 + direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XM_MAX_SESSIONS * 2);
	__type(key, __u32);
	__type(value, struct counters);
} xm_counters SEC(".maps");

/* Token buckets by session id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XM_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct bucket);
} xm_buckets SEC(".maps");

/* Cut frames for user-space encapsulation (datapath perf), one ring per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xm_events SEC(".maps");

/* Cut frames with their outer headers for user space to send (datapath
 * ring): one ring shared by all CPUs, read by one goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XM_RING_SIZE);
} xm_ring SEC(".maps");

/* Last classification (tests only, see record_decision). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct decision);
} xm_decision SEC(".maps");

#endif
