// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Structures shared by the collector's XDP program and Go (bpf2go generates
 * the Go types: keep the field order and padding explicit). */
#ifndef XM_COLLECT_STRUCTS_H
#define XM_COLLECT_STRUCTS_H

#include <linux/types.h>

/* Header of a ring record; caplen bytes follow it: the inner Ethernet frame
 * (VXLAN), or the tunnel header and the frame (GENEVE, GRE). The record is
 * what the socket path learns from one datagram: the frame, the mirror
 * source and the receive time. */
struct col_rec {
	__u64 tstamp;   /* bpf_ktime_get_boot_ns() at receive */
	__u32 saddr[4]; /* outer source address, network order; IPv4 in word 0 */
	__u32 vni;      /* the session id: VNI, ERSPAN session id or GRE key */
	__u16 caplen;   /* bytes in the record after this header */
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* enum xm_col_proto: what the bytes are */
};

#endif
