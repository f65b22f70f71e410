// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Structures shared by the benchmark BPF programs and their Go loaders. */
#ifndef XMIRROR_BENCH_STRUCTS_H
#define XMIRROR_BENCH_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* Generator settings, written once by Go before the run. keep in sync with bench/gen.go */
struct gen_config {
	__u8 hdr[GEN_HDR_MAX];  /* headers of flow 0, hdr_len of them; varying fields are patched */
	__u64 interval_ns;      /* gap between packets; 0 sends on every run */
	__u64 count;            /* packets to send; 0 = no limit */
	__u64 duration_ns;      /* stop after this long from the first run; 0 = no limit */
	__u32 flows;            /* distinct flows, >= 1 */
	__u32 ids;              /* distinct session ids from the template's, >= 1 */
	__u32 id_base;          /* the template's session id (VNI, ERSPAN session id, GRE key) */
	__u32 ip_csum_base;     /* 16-bit one's complement sum of the inner IPv4 header, saddr zero */
	__u32 tcp_csum_base;    /* sum of pseudo header + TCP header + payload, saddr and sport zero */
	__u32 inner_saddr;      /* inner source address of flow 0, host order */
	__u16 hdr_len;          /* bytes of hdr written on every send, GEN_HDR_MIN..GEN_HDR_MAX */
	__u16 off_inner;        /* offset of the inner Ethernet header */
	__u16 off_id;           /* offset of the session id field */
	__u16 off_sport;        /* offset of the outer UDP source port; 0 = none (GRE) */
	__u16 off_seq;          /* offset of the GRE sequence number; 0 = none */
	__u16 off_ts;           /* offset of the ERSPAN III timestamp (100 ns units); 0 = none */
	enum gen_id_kind id_kind;
};

/* Generator progress, read by Go between calls. */
struct gen_state {
	__u64 runs;     /* program runs */
	__u64 sent;     /* XDP_TX verdicts */
	__u64 start_ns; /* first run */
	__u64 last_ns;  /* last packet sent */
	__u64 next_ns;  /* when the pacer sends next */
	__u64 done;     /* 1 once count or duration is reached */
};

/* Minimal forwarder settings; Go writes them through the generated peerFwdConfig (bench/peer.go). */
struct fwd_config {
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u32 vip;     /* network order */
	__u32 backend; /* network order */
};

/* Packet counter, one per CPU; Go reads the generated peerCountValue (bench/peer.go). */
struct count_value {
	__u64 packets;
	__u64 bytes;
};

#endif
