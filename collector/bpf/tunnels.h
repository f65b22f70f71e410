// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Tunnel headers of the collector's XDP receive path: VXLAN, GENEVE and
 * GRE (ERSPAN type I, II, III and transparent Ethernet bridging). Each
 * check says where the bytes for user space start, how many there are and
 * the session id, or returns the drop counter; it refuses exactly what
 * collector/decap.go, decap_geneve.go and decap_gre.go refuse (FuzzXDPDecap
 * checks they agree). Headers are read with bpf_xdp_load_bytes, which also
 * reads the fragments of a multi-buffer frame. */
#ifndef XM_COLLECT_TUNNELS_H
#define XM_COLLECT_TUNNELS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

/* What goes to user space: len bytes at off, the session id, and what the
 * bytes are (enum xm_col_proto). */
struct take {
	__u32 off, len, id;
	__u8 proto;
};

/* check_vxlan: a VXLAN header at off, len bytes to the datagram's end.
 * RFC 7348: only the I flag is checked, the reserved bits are ignored. */
static __always_inline int check_vxlan(struct xdp_md *ctx, __u32 off, __u32 len, struct take *t)
{
	__u32 vx[2];

	if (len < XM_COL_VXLAN_HLEN || bpf_xdp_load_bytes(ctx, off, vx, sizeof(vx)))
		return XM_COL_SHORT;
	if (!(bpf_ntohl(vx[0]) & (XM_COL_VXLAN_FLAG_I << 24)))
		return XM_COL_BAD_FLAGS;
	if (len - XM_COL_VXLAN_HLEN < XM_COL_ETH_HLEN)
		return XM_COL_SHORT_INNER;
	t->off = off + XM_COL_VXLAN_HLEN;
	t->len = len - XM_COL_VXLAN_HLEN;
	t->id = bpf_ntohl(vx[1]) >> 8;
	t->proto = XM_COL_PROTO_VXLAN;
	return XM_COL_RECEIVED;
}

/* check_geneve: a GENEVE header at off (RFC 8926). User space gets the
 * header with its options and the payload: an Ethernet frame, or an IPv4 or
 * IPv6 packet that it writes behind a synthesized Ethernet header. */
static __always_inline int check_geneve(struct xdp_md *ctx, __u32 off, __u32 len, struct take *t)
{
	__u8 g[XM_COL_GENEVE_HLEN];
	__u32 hlen;
	__u16 ptype;

	if (len < XM_COL_GENEVE_HLEN || bpf_xdp_load_bytes(ctx, off, g, sizeof(g)))
		return XM_COL_GENEVE_SHORT;
	if (g[0] & 0xc0)
		return XM_COL_GENEVE_VERSION;
	hlen = XM_COL_GENEVE_HLEN + (g[0] & 0x3f) * 4;
	if (len < hlen)
		return XM_COL_GENEVE_SHORT;
	ptype = (__u16)g[2] << 8 | g[3];
	if (ptype == XM_COL_ETH_P_TEB) {
		if (len - hlen < XM_COL_ETH_HLEN)
			return XM_COL_SHORT_INNER;
	} else if (ptype == XM_COL_ETH_P_IP || ptype == XM_COL_ETH_P_IPV6) {
		if (len == hlen)
			return XM_COL_SHORT_INNER;
	} else {
		return XM_COL_GENEVE_PROTOCOL;
	}
	t->off = off;
	t->len = len;
	t->id = (__u32)g[4] << 16 | (__u32)g[5] << 8 | g[6];
	t->proto = XM_COL_PROTO_GENEVE;
	return XM_COL_RECEIVED;
}

/* check_erspan: an ERSPAN type II (version 1) or III (version 2) header at
 * off, hlen its fixed length; rest is the bytes from off to the end. The
 * session id goes to t->id. */
static __always_inline int check_erspan(struct xdp_md *ctx, __u32 off, __u32 rest, __u32 hlen, __u8 version,
					struct take *t)
{
	__u8 e[XM_COL_ERSPAN3_HLEN];

	if (rest < hlen || bpf_xdp_load_bytes(ctx, off, e, XM_COL_ERSPAN2_HLEN))
		return XM_COL_ERSPAN_SHORT;
	if (e[0] >> 4 != version)
		return XM_COL_ERSPAN_VERSION;
	if (version == 2) {
		if (bpf_xdp_load_bytes(ctx, off, e, XM_COL_ERSPAN3_HLEN))
			return XM_COL_ERSPAN_SHORT;
		if (e[11] & 1)
			hlen += XM_COL_ERSPAN3_SUBHLEN;
		if (rest < hlen)
			return XM_COL_ERSPAN_SHORT;
	}
	if (rest - hlen < XM_COL_ETH_HLEN)
		return XM_COL_SHORT_INNER;
	t->id = ((__u32)e[2] & 0x03) << 8 | e[3];
	return XM_COL_RECEIVED;
}

/* check_gre: a GRE header at off (RFC 2784, 2890), len bytes to the end of
 * its IP packet. User space gets the GRE header, the ERSPAN header behind
 * it and the frame. */
static __always_inline int check_gre(struct xdp_md *ctx, __u32 off, __u32 len, struct take *t)
{
	__u8 h[XM_COL_GRE_HLEN];
	__u32 hlen = XM_COL_GRE_HLEN, key = 0;
	__u16 flags, ptype;
	int r;

	if (len < XM_COL_GRE_HLEN || bpf_xdp_load_bytes(ctx, off, h, sizeof(h)))
		return XM_COL_GRE_SHORT;
	flags = (__u16)h[0] << 8 | h[1];
	ptype = (__u16)h[2] << 8 | h[3];
	if (flags & XM_COL_GRE_REFUSED)
		return XM_COL_GRE_HEADER;
	hlen += (flags & XM_COL_GRE_C) ? 4 : 0;
	if (flags & XM_COL_GRE_K) {
		if (len < hlen + 4 || bpf_xdp_load_bytes(ctx, off + hlen, &key, sizeof(key)))
			return XM_COL_GRE_SHORT;
		hlen += 4;
	}
	hlen += (flags & XM_COL_GRE_S) ? 4 : 0;
	if (len < hlen)
		return XM_COL_GRE_SHORT;
	t->id = 0;
	if (ptype == XM_COL_ETH_P_TEB || (ptype == XM_COL_GRE_P_ERSPAN && !(flags & XM_COL_GRE_S))) {
		if (len - hlen < XM_COL_ETH_HLEN)
			return XM_COL_SHORT_INNER;
		if (ptype == XM_COL_ETH_P_TEB)
			t->id = bpf_ntohl(key);
	} else if (ptype == XM_COL_GRE_P_ERSPAN) {
		r = check_erspan(ctx, off + hlen, len - hlen, XM_COL_ERSPAN2_HLEN, 1, t);
		if (r != XM_COL_RECEIVED)
			return r;
	} else if (ptype == XM_COL_GRE_P_ERSPAN3) {
		r = check_erspan(ctx, off + hlen, len - hlen, XM_COL_ERSPAN3_HLEN, 2, t);
		if (r != XM_COL_RECEIVED)
			return r;
	} else {
		return XM_COL_GRE_PROTOCOL;
	}
	t->off = off;
	t->len = len;
	t->proto = XM_COL_PROTO_GRE;
	return XM_COL_RECEIVED;
}

#endif
