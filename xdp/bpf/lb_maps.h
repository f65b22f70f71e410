// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Maps of the load balancer. All are pinned by name under the pin path so a
 * restarted control plane reuses them with their state. */
#ifndef XMIRROR_LB_MAPS_H
#define XMIRROR_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_structs.h"

/* Which slot (0 or 1) of every double-buffered map is live; written last.
 * The data path reads its copy, the global lb_active_slot; this pinned map
 * is what status readers and a restarted control plane go by. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_active SEC(".maps");

/* Listener and table sizes, one entry per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_slots SEC(".maps");

/* Backends per slot: slot * LB_MAX_BACKENDS + backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SLOTS * LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* Smooth weighted round-robin schedule per slot: slot * LB_WRR_MAX + i -> id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SLOTS * LB_WRR_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_wrr SEC(".maps");

/* Weighted Maglev lookup table per slot, LB_MAGLEV_LINE entries a value:
 * entry i of slot s is id[i % LB_MAGLEV_LINE] of value
 * s * LB_MAGLEV_LINES + i / LB_MAGLEV_LINE. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SLOTS * LB_MAGLEV_LINES);
	__type(key, __u32);
	__type(value, struct lb_maglev_line);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_maglev SEC(".maps");

/* Connection table for wrr: flow hash -> bucket -> backend (struct
 * lb_ct_line). Shared by all CPUs because the two directions of a mirrored
 * flow may arrive on different CPUs. An array, so a lookup is inlined and
 * touches one cache line, where a hash map is a helper call and two lines. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_CT_LINES);
	__type(key, __u32);
	__type(value, struct lb_ct_line);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_flows SEC(".maps");

/* Source allowlist per slot (longest prefix match on slot + address). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LB_SLOTS * LB_ACL_MAX);
	__type(key, struct lb_acl_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_acl SEC(".maps");

/* The backend id each outer datagram's first fragment went to, by (src,
 * dst, IP id), for its later fragments, which carry no inner headers: the
 * first is placed by its flow like a whole datagram, so a flow's fragmented
 * datagrams land with its others. Shared by the CPUs (the fragments of a
 * datagram may arrive on several). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FRAGS_MAX);
	__type(key, struct lb_frag_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_frags SEC(".maps");

/* Egress ports for redirect, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, LB_TX_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_tx_ports SEC(".maps");

/* This CPU's counters, next hops and WRR cursor (struct lb_cpu): one
 * lookup per packet. Pinned for the counters; cached next hops of a previous
 * run are checked (address, expiry) like any other. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_cpu);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_percpu SEC(".maps");

/* What each backend id's traffic counters (lb_cpu.traffic, summed over the
 * CPUs) held when the id was given to its current backend: status readers
 * subtract it. Written by the control plane only, never by the program, so
 * reusing an id needs no write racing with the data path's increments. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_traffic);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_traffic_base SEC(".maps");

#endif /* XMIRROR_LB_MAPS_H */
