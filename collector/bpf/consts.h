/* Constants of the collector's XDP receive path. The Go side mirrors them in
 * xdprecv.go ("keep in sync with bpf/consts.h"). */
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
#define XM_COL_RECEIVED 0    /* handed to user space */
#define XM_COL_SHORT 1       /* UDP payload shorter than a VXLAN header */
#define XM_COL_BAD_FLAGS 2   /* VXLAN I flag not set */
#define XM_COL_SHORT_INNER 3 /* inner frame shorter than an Ethernet header */
#define XM_COL_BAD_LENGTH 4  /* UDP length disagrees with the packet */
#define XM_COL_FRAGMENT 5    /* first IPv4 fragments to the listener: passed to the kernel */
#define XM_COL_RING_FULL 6   /* no room in the ring: user space is behind */
#define XM_COL_NCOUNTERS 8

#endif
