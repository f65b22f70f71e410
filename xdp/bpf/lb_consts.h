// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Limits and constants of the xmirror XDP load balancer. Go takes the enums
 * from the generated bindings (bpf2go -type); the limits are checked against
 * the maps' sizes by xdp/contract_test.go. */
#ifndef XMIRROR_LB_CONSTS_H
#define XMIRROR_LB_CONSTS_H

/* Backends per load balancer; backend ids index per-backend maps. */
#ifndef LB_MAX_BACKENDS
#define LB_MAX_BACKENDS 64
#endif

/* Entries of one smooth-WRR schedule slot: sum of weights (<= 64 * 100). */
#ifndef LB_WRR_MAX
#define LB_WRR_MAX 8192
#endif

/* Entries of one Maglev table slot; the table size in use is a prime <= this. */
#ifndef LB_MAGLEV_MAX
#define LB_MAGLEV_MAX 131071
#endif

/* Maglev entries per lb_maglev value (struct lb_maglev_line), and the values
 * of one slot. */
#define LB_MAGLEV_LINE 64
#define LB_MAGLEV_LINES ((LB_MAGLEV_MAX + LB_MAGLEV_LINE - 1) / LB_MAGLEV_LINE)

/* Connection table (lb_flows) of wrr: 2^LB_CT_BUCKET_BITS buckets of 4
 * bytes, LB_CT_LINE to a cache line (256 KiB). A flow's bucket is the low
 * bits of its hash; the bucket, not the flow, holds the backend, so flows
 * that share a bucket share a backend and no table is ever full. Small
 * enough to stay in L2 when every packet is another of 65,536 flows. */
#ifndef LB_CT_BUCKET_BITS
#define LB_CT_BUCKET_BITS 16
#endif
#define LB_CT_BUCKETS (1u << LB_CT_BUCKET_BITS)
#define LB_CT_LINE 16
#define LB_CT_LINES (LB_CT_BUCKETS / LB_CT_LINE)

/* A bucket's last-seen time is kept in units of 2^24 ns (about 17 ms). */
#define LB_CT_TIME_SHIFT 24

/* Outer datagrams whose first fragment's backend is remembered for the
 * later fragments (lb_frags, least recently used out first). */
#ifndef LB_FRAGS_MAX
#define LB_FRAGS_MAX 8192
#endif

/* Allowlist prefixes per slot. */
#ifndef LB_ACL_MAX
#define LB_ACL_MAX 1024
#endif

/* Listener interfaces' MACs, by ifindex % LB_IFACE_SLOTS (lb_listener_macs). */
#define LB_IFACE_SLOTS 64

/* Ports redirect may send to. */
#ifndef LB_TX_PORTS_MAX
#define LB_TX_PORTS_MAX 64
#endif

/* A bucket's last-seen time is rewritten at most this often, so packets of
 * busy flows do not bounce its cache line between CPUs. */
#ifndef LB_CT_TOUCH_NS
#define LB_CT_TOUCH_NS 1000000000ULL
#endif

/* A cached next hop (from bpf_fib_lookup) is used for this long, so route and
 * neighbour changes take effect within it while the fast path skips the
 * lookup. */
#ifndef LB_NH_TTL_NS
#define LB_NH_TTL_NS 100000000ULL
#endif

/* Double-buffered tables: the control plane writes the idle slot, then flips
 * lb_active, so the data path never sees a half-written table. */
#define LB_SLOTS 2

enum lb_algo {
	LB_ALGO_WRR = 0,
	LB_ALGO_MAGLEV = 1,
};

enum lb_affinity {
	LB_AFF_INNER_SYMMETRIC = 0,
	LB_AFF_OUTER = 1,
	LB_AFF_NONE = 2,
};

/* The listener's encapsulation (lb_slot.encap): how the inner flow is found
 * for the symmetric hash. */
enum lb_encap {
	LB_ENCAP_VXLAN = 0,  /* RFC 7348, UDP 4789 */
	LB_ENCAP_GENEVE = 1, /* RFC 8926, UDP 6081: lb_geneve.h */
	LB_ENCAP_GRE = 2,    /* IP protocol 47, ERSPAN and bridging: lb_gre.h */
};

enum lb_acl_mode {
	LB_ACL_ALL = 0,
	LB_ACL_ALLOWLIST = 1,
};

/* lb_backend.flags */
enum lb_backend_flag {
	LB_BACKEND_ALIVE = 0x1, /* configured and healthy: existing flows stay */
	/* alive only because every weighted backend fails its health checks and
	 * all_unhealthy is fail-open: for status readers, the data path does not
	 * look at it */
	LB_BACKEND_FAILING = 0x2,
	/* not alive: added by a reload while other backends take the traffic,
	 * it waits for its first health check; for status readers */
	LB_BACKEND_PENDING = 0x4,
};

/* Hash seeds: distinct per kind so an outer and an inner hash of the same
 * numbers do not collide on purpose. */
enum lb_hash_seed {
	LB_HASH_SEED = 0x6d697272,      /* "mirr" */
	LB_HASH_SEED_FRAG = 0x66726167, /* "frag" */
};

/* Indexes into lb_cpu.stats. The verdicts come first: every packet counts
 * exactly one of them, so they sum to the packets seen. Events follow; a
 * packet counts any number of them (none, or a fragment that missed the
 * connection table, ...). */
enum lb_stat {
	LB_STAT_TX = 0,            /* forwarded with XDP_TX */
	LB_STAT_REDIRECT,          /* forwarded with a devmap redirect */
	LB_STAT_PASS_NOT_LISTENER, /* not for the VIP:port: kernel handles it */
	LB_STAT_PASS_NO_NEIGH,     /* next hop unresolved: kernel forwards and resolves */
	LB_STAT_PASS_MTU,          /* larger than the egress MTU: kernel fragments or answers */
	LB_STAT_PASS_VLAN,         /* VLAN-tagged: the kernel's VLAN device handles it */
	LB_STAT_PASS_OTHER_HOST,   /* to the VIP but another host's MAC (flooded): the kernel drops it */
	LB_STAT_DROP_ACL,          /* source outside the allowlist */
	LB_STAT_DROP_NO_BACKEND,   /* no healthy backend with weight */
	LB_STAT_DROP_NO_ROUTE,     /* fib lookup failed or the egress port is unknown */
	LB_STAT_DROP_MALFORMED,    /* truncated or invalid Ethernet/IPv4/UDP, bad IPv4 checksum,
				    * GENEVE options or a GRE header past the packet's end */
	LB_STAT_DROP_TTL,          /* TTL 1 or 0: it would expire on the way to the backend */
	LB_STAT_VERDICTS,          /* the number of verdicts: events follow */
	LB_STAT_FRAGMENT = LB_STAT_VERDICTS, /* outer fragments placed by (src, dst, id) */
	LB_STAT_CT_HIT,            /* connection table hit: the bucket is live */
	LB_STAT_CT_MISS,           /* bucket empty, expired or its backend left: taken */
	LB_STAT_HASH_FALLBACK,     /* inner headers cut short: hashed less of the flow */
	LB_STAT_MAX,
};

#endif /* XMIRROR_LB_CONSTS_H */
