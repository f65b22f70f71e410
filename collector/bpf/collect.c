// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* xmirror collector receive path (collector.receive: xdp).
 *
 * xm_collect runs on the interfaces that hold the listen address. What is
 * for one of the collector's inputs there — UDP to the VXLAN port or a
 * GENEVE port, GRE (ERSPAN, bridging) — is taken off the wire here: the
 * tunnel header is checked (tunnels.h) and the inner frame goes to user
 * space through a BPF ring buffer (ring.h), with the session id, the outer
 * source address and the receive time, so the kernel's IP and UDP stack
 * never sees it. Malformed headers are counted by reason and dropped.
 * Everything else (ARP, SSH, /metrics, other UDP, IP fragments, which the
 * kernel reassembles for the collector's sockets) passes to the kernel
 * untouched. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "listener.h"
#include "parsing.h"
#include "tunnels.h"
#include "ring.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Puts struct col_rec into the BTF for bpf2go (it only travels through the
 * ring). */
const struct col_rec *unused_col_rec __attribute__((unused));

/* Puts enum xm_col_counter and xm_col_proto into the BTF for bpf2go:
 * count() and the records take them, but an inlined function leaves no
 * type behind. */
const enum xm_col_counter *unused_col_counter __attribute__((unused));
const enum xm_col_proto *unused_col_proto __attribute__((unused));

static __always_inline void count(enum xm_col_counter counter)
{
	__u32 idx = counter;
	__u64 *c = bpf_map_lookup_elem(&xm_col_counters, &idx);

	if (c)
		*c += 1;
}

/* check_udp checks the UDP length against the IP packet (not the frame:
 * Ethernet may pad short frames, and a UDP length that runs into the
 * padding is one the kernel drops), the IP packet against the frame, and
 * the VXLAN or GENEVE header behind it. */
static __always_inline int check_udp(struct xdp_md *ctx, const struct outer *o, int kind, struct take *t)
{
	struct udphdr udp;
	__u32 ulen;

	if (bpf_xdp_load_bytes(ctx, o->l4, &udp, sizeof(udp)))
		return XM_COL_BAD_LENGTH; /* not reached: parse_outer read it */
	ulen = bpf_ntohs(udp.len);
	if (o->end > bpf_xdp_get_buff_len(ctx) || ulen < XM_COL_UDP_HLEN || o->l4 + ulen > o->end)
		return XM_COL_BAD_LENGTH;
	if (kind == XM_COL_KIND_VXLAN)
		return check_vxlan(ctx, o->l4 + XM_COL_UDP_HLEN, ulen - XM_COL_UDP_HLEN, t);
	return check_geneve(ctx, o->l4 + XM_COL_UDP_HLEN, ulen - XM_COL_UDP_HLEN, t);
}

/* check_ip_gre checks the IP packet's length against the frame, then the
 * GRE header. */
static __always_inline int check_ip_gre(struct xdp_md *ctx, const struct outer *o, struct take *t)
{
	if (o->end < o->l4 || o->end > bpf_xdp_get_buff_len(ctx))
		return XM_COL_BAD_LENGTH;
	return check_gre(ctx, o->l4, o->end - o->l4, t);
}

SEC("xdp.frags")
int xm_collect(struct xdp_md *ctx)
{
	__u64 ts = bpf_ktime_get_boot_ns();
	struct outer o = {};
	struct take t = {};
	int kind, r;

	kind = parse_outer(ctx, &o);
	if (kind == XM_COL_KIND_NONE)
		return XDP_PASS;
	if (kind == XM_COL_KIND_FRAGMENT) {
		count(XM_COL_FRAGMENT);
		return XDP_PASS;
	}
	r = kind == XM_COL_KIND_GRE ? check_ip_gre(ctx, &o, &t) : check_udp(ctx, &o, kind, &t);
	if (r == XM_COL_RECEIVED && emit(ctx, &o, ts, &t))
		r = XM_COL_RING_FULL;
	count(r);
	return XDP_DROP;
}
