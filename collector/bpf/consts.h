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

#define XM_COL_GENEVE_HLEN 8
#define XM_COL_GRE_HLEN 4
#define XM_COL_ERSPAN2_HLEN 8
#define XM_COL_ERSPAN3_HLEN 12
#define XM_COL_ERSPAN3_SUBHLEN 8 /* platform-specific sub-header, when O */

/* GENEVE UDP ports the program takes (collector.inputs may list several). */
#define XM_COL_MAX_GENEVE 4

#define XM_COL_ETH_P_TEB 0x6558     /* transparent Ethernet bridging */
#define XM_COL_GRE_P_ERSPAN 0x88BE  /* ERSPAN type I (no S bit) and II */
#define XM_COL_GRE_P_ERSPAN3 0x22EB /* ERSPAN type III */
#define XM_COL_GRE_C 0x8000
#define XM_COL_GRE_K 0x2000
#define XM_COL_GRE_S 0x1000
/* Routing, strict source route, recursion and version: refused, as
 * collector/decap_gre.go refuses them (RFC 2784). */
#define XM_COL_GRE_REFUSED 0x4C07

#define XM_COL_ETH_P_IP 0x0800
#define XM_COL_ETH_P_IPV6 0x86DD
#define XM_COL_ETH_P_8021Q 0x8100
#define XM_COL_ETH_P_8021AD 0x88A8

/* Indexes of xm_col_counters. Every packet for the listener ends in exactly
 * one of them; the drop reasons carry the names of the socket path's
 * ("short", "bad_flags", …) so both paths report the same metrics. New
 * ones go last: the indexes are the Go side's too. */
enum xm_col_counter {
	XM_COL_RECEIVED = 0, /* handed to user space */
	XM_COL_SHORT,        /* UDP payload shorter than a VXLAN header */
	XM_COL_BAD_FLAGS,    /* VXLAN I flag not set */
	XM_COL_SHORT_INNER,  /* inner frame shorter than an Ethernet header */
	XM_COL_BAD_LENGTH,   /* UDP length disagrees with the packet */
	XM_COL_FRAGMENT,     /* first IPv4 fragments to the listener: passed to the kernel */
	XM_COL_RING_FULL,    /* no room in the ring: user space is behind */
	XM_COL_GENEVE_SHORT,    /* shorter than the GENEVE header and its options */
	XM_COL_GENEVE_VERSION,  /* GENEVE version other than 0 */
	XM_COL_GENEVE_PROTOCOL, /* GENEVE payload neither Ethernet nor IP */
	XM_COL_GRE_SHORT,       /* GRE header past the packet */
	XM_COL_GRE_HEADER,      /* GRE routing, recursion or version bits */
	XM_COL_GRE_PROTOCOL,    /* GRE payload neither ERSPAN nor bridging */
	XM_COL_ERSPAN_SHORT,    /* the packet ends inside the ERSPAN header */
	XM_COL_ERSPAN_VERSION,  /* ERSPAN version not that of its GRE type */
	XM_COL_NCOUNTERS,
};

/* What a ring record holds (struct col_rec.proto): the inner frame of a
 * VXLAN datagram, or, for GENEVE and GRE, the tunnel header and the frame
 * behind it, which user space decapsulates again (collector/decap_*.go) to
 * keep the header's metadata. */
enum xm_col_proto {
	XM_COL_PROTO_VXLAN = 0,
	XM_COL_PROTO_GENEVE = 1,
	XM_COL_PROTO_GRE = 2,
};

#endif
