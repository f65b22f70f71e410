// SPDX-License-Identifier: MIT OR GPL-2.0-only
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
	__u16 pad0;
	__u32 wrr_len;    /* entries of this slot's schedule; 0 = no backend */
	__u32 maglev_size;/* entries of this slot's Maglev table; 0 = no backend */
	__u8 encap;       /* LB_ENCAP_*: the listener's tunnel protocol */
	__u8 pad[3];
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

/* LB_MAGLEV_LINE consecutive entries of a Maglev table, one cache line. An id
 * fits a byte (ids are below LB_MAX_BACKENDS), so the default table of
 * 65,537 entries takes 64 KiB; as one id per array element (the kernel
 * rounds values up to 8 bytes) it took 512 KiB, which the rest of a busy
 * machine keeps evicting from L2. */
struct lb_maglev_line {
	__u8 id[LB_MAGLEV_LINE];
};

/* LB_CT_LINE buckets of the connection table, one cache line. A bucket is
 * one 32-bit word, so CPUs claim and refresh it with a compare-and-swap and
 * never take a lock:
 *   bits 31-25  backend id + 1 (0: empty)
 *   bits 24-0   last seen, lb_now() >> LB_CT_TIME_SHIFT; wraps after 2^49
 *               ns (6.5 days), so a longer flow_timeout never expires */
struct lb_ct_line {
	__u32 bucket[LB_CT_LINE];
};

/* Allowlist key: prefixlen covers slot + pad (32 bits) plus the prefix. */
struct lb_acl_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 pad[3];
	__be32 addr;
};

/* lb_frags key: what every fragment of one outer datagram carries. */
struct lb_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 pad[2];
};

/* A listener interface's MAC (lb_listener_macs): ifindex 0 = unknown. The
 * MAC is two words as loaded from the frame: bytes 0-3 and 4-5. */
struct lb_ifmac {
	__u32 ifindex;
	__u32 mac_lo;
	__u16 mac_hi;
	__u16 pad;
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

/* Traffic of one backend (on one CPU, in struct lb_cpu). */
struct lb_traffic {
	__u64 packets;
	__u64 bytes;
};

/* Everything one CPU touches on every packet besides the tables: verdict
 * counters, next hops, traffic per backend and the WRR cursor, in one
 * per-CPU value so a packet pays one map lookup for all of them
 * (lb_percpu). */
struct lb_cpu {
	__u32 wrr_cursor;  /* position in the WRR schedule */
	__u32 pad;
	__u64 stats[LB_STAT_MAX];                    /* verdict counters (enum lb_stat) */
	struct lb_nexthop nh[LB_MAX_BACKENDS];       /* next hop per backend id */
	struct lb_traffic traffic[LB_MAX_BACKENDS];  /* forwarded per backend id */
};

/* The kernel refuses per-CPU values over 32 KiB (PCPU_MIN_UNIT_SIZE). */
_Static_assert(sizeof(struct lb_cpu) <= 32768, "struct lb_cpu exceeds the per-CPU value limit");

#endif /* XMIRROR_LB_STRUCTS_H */
