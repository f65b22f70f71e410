/* Map key and value layouts shared with Go (bpf2go generates the Go types). */
#ifndef XMIRROR_LB_STRUCTS_H
#define XMIRROR_LB_STRUCTS_H

#include <linux/types.h>
#include "lb_consts.h"

/* Per-slot listener and table description. */
struct lb_slot {
	__be32 vip;
	__be16 port;
	__u8 algorithm;   /* LB_ALGO_* */
	__u8 affinity;    /* LB_AFF_* */
	__u8 acl_mode;    /* LB_ACL_* */
	__u8 xdp_mode;    /* informational, for `xmirror lb status` */
	__u16 gen;        /* bumped by every table change: invalidates lb_ct_cache */
	__u32 wrr_len;    /* entries of this slot's schedule; 0 = no backend */
	__u32 maglev_size;/* entries of this slot's Maglev table; 0 = no backend */
	__u64 flow_timeout_ns;
};

/* One backend as seen by one slot, indexed by slot * LB_MAX_BACKENDS + id.
 * The id is stable while the backend exists, so connection-table entries and
 * counters survive reconfiguration. */
struct lb_backend {
	__be32 addr;
	__be16 port;
	__u8 flags;       /* LB_BACKEND_* */
	__u8 weight;      /* 0-100, informational (the schedule encodes it) */
	/* One's complement sums (RFC 1624) the rewrite adds to the checksums,
	 * computed by the control plane: VIP -> addr for the IP header, and
	 * also listener port -> port for UDP. */
	__u16 csum_ip;
	__u16 csum_udp;
	char name[32];    /* informational */
};

/* Connection-table entry, keyed by the flow hash. */
struct lb_flow {
	__u32 backend;    /* backend id */
	__u32 pad;
	__u64 last_seen;  /* lb_now() */
};

/* Per-CPU front cache of the connection table (lb_ct_cache), direct-mapped
 * by flow hash. Valid while gen matches the active slot's and until expires. */
struct lb_flow_cache {
	__u32 hash;       /* the flow hash it holds (the slot is hash % size) */
	__u16 backend;    /* backend id */
	__u16 gen;        /* lb_slot.gen it was filled under */
	__u64 expires;    /* lb_now(); 0 = empty */
};

/* Allowlist key: prefixlen covers slot + pad (32 bits) plus the prefix. */
struct lb_acl_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 pad[3];
	__be32 addr;
};

/* Per-CPU next-hop cache entry for one backend id. */
struct lb_nexthop {
	__be32 daddr;      /* the backend address it was looked up for */
	__u32 ifindex;     /* egress */
	__u8 smac[6];
	__u8 dmac[6];
	__u16 mtu;         /* egress MTU */
	__u16 pad;
	__u64 expires;     /* lb_now(); 0 = empty */
};

/* Everything one CPU touches on every packet besides the tables: verdict
 * counters, the next-hop cache and the WRR cursor, in one per-CPU value so a
 * packet pays one map lookup for all of them (lb_percpu). The cursor sits first
 * with the counters of a forwarded packet next to it. */
struct lb_cpu {
	__u32 wrr_cursor;  /* position in the WRR schedule */
	__u32 pad;
	__u64 stats[LB_STAT_MAX];              /* verdict counters (enum lb_stat) */
	struct lb_nexthop nh[LB_MAX_BACKENDS]; /* next hop per backend id */
};

/* Per-CPU per-backend traffic. */
struct lb_traffic {
	__u64 packets;
	__u64 bytes;
};

#endif /* XMIRROR_LB_STRUCTS_H */
