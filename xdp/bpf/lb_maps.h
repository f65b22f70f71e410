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

/* Weighted Maglev lookup table per slot: slot * LB_MAGLEV_MAX + i -> id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SLOTS * LB_MAGLEV_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_maglev SEC(".maps");

/* Connection table for wrr: flow hash -> backend. Shared by all CPUs because
 * the two directions of a mirrored flow may arrive on different CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_CT_MAX);
	__type(key, __u32);
	__type(value, struct lb_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_conntrack SEC(".maps");

/* Per-CPU front cache of lb_conntrack: a steady flow's packets find their
 * backend with one inlined array lookup instead of a shared hash-table call.
 * Entries expire after LB_CT_CACHE_NS and die with any table change (gen), so
 * every CPU agrees with the shared table within that time (not pinned: a
 * cache). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_CT_CACHE_SIZE);
	__type(key, __u32);
	__type(value, struct lb_flow_cache);
} lb_ct_cache SEC(".maps");

/* Source allowlist per slot (longest prefix match on slot + address). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LB_SLOTS * LB_ACL_MAX);
	__type(key, struct lb_acl_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_acl SEC(".maps");

/* Egress ports for redirect, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, LB_TX_PORTS_MAX);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_tx_ports SEC(".maps");

/* This CPU's counters, next-hop cache and WRR cursor (struct lb_cpu): one
 * lookup per packet. Pinned for the counters; a cached next hop of a previous
 * run is checked (address, expiry) like any other. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_cpu);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_percpu SEC(".maps");

/* Forwarded packets and bytes per backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_traffic);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backend_stats SEC(".maps");

#endif /* XMIRROR_LB_MAPS_H */
