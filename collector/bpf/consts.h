// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Constants of the collector's XDP receive path. Go takes enum
 * xm_col_counter from the object's BTF (bpf2go -type); TestContract checks
 * the rest of the boundary. */
#ifndef XM_COLLECT_CONSTS_H
#define XM_COLLECT_CONSTS_H

/* Bytes of the BPF ring buffer when the loader does not size it (it does:
 * Options.RingSize): a power of two. */
#ifndef XM_COL_RING_SIZE
#define XM_COL_RING_SIZE (16 << 20)
#endif

/* VLAN tags skipped in front of the outer IP header. */
#define XM_COL_MAX_VLANS 2

#define XM_COL_ETH_HLEN 14
#define XM_COL_VXLAN_HLEN 8
#define XM_COL_UDP_HLEN 8
#define XM_COL_VXLAN_FLAG_I 0x08

#define XM_COL_ETH_P_IP 0x0800
#define XM_COL_ETH_P_IPV6 0x86DD
#define XM_COL_ETH_P_8021Q 0x8100
#define XM_COL_ETH_P_8021AD 0x88A8

/* Indexes of xm_col_counters. Every packet for the listener ends in exactly
 * one of them; the drop reasons carry the names of the socket path's
 * ("short", "bad_flags", …) so both paths report the same metrics. */
enum xm_col_counter {
	XM_COL_RECEIVED = 0, /* handed to user space */
	XM_COL_SHORT,        /* UDP payload shorter than a VXLAN header */
	XM_COL_BAD_FLAGS,    /* VXLAN I flag not set */
	XM_COL_SHORT_INNER,  /* inner frame shorter than an Ethernet header */
	XM_COL_BAD_LENGTH,   /* UDP length disagrees with the packet */
	XM_COL_FRAGMENT,     /* first IPv4 fragments to the listener: passed to the kernel */
	XM_COL_RING_FULL,    /* no room in the ring: user space is behind */
	XM_COL_NCOUNTERS,
};

#endif
