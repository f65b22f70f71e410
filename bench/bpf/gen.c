// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Traffic generator. Go runs xdp_gen under BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES, so every XDP_TX verdict transmits the frame out of the
 * context's ingress interface. The program paces itself inside one long call: on each
 * run it either sends (rewriting the headers for the next flow) or returns XDP_DROP.
 * The frame is any tunnel of bench/frame.go (VXLAN, GENEVE, ERSPAN, GRE): Go says
 * in struct gen_config where its varying fields are. The headers are written on
 * every send because the kernel recycles the frame pages without copying the input
 * again, and a receiver that rewrites frames in place (an XDP load balancer on the
 * veth peer) would otherwise change later packets. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "structs.h"
#include "csum.h"
#include "gen_maps.h"

/* pace decides whether this run sends; it updates the state's clock. */
static __always_inline int pace(struct gen_config *cfg, struct gen_state *st)
{
	__u64 now = bpf_ktime_get_ns();

	if (st->start_ns == 0) {
		st->start_ns = now;
		st->next_ns = now;
	}
	if ((cfg->count && st->sent >= cfg->count) ||
	    (cfg->duration_ns && now - st->start_ns >= cfg->duration_ns)) {
		st->done = 1;
		return 0;
	}
	if (cfg->interval_ns == 0) {
		st->last_ns = now;
		return 1;
	}
	if (now < st->next_ns)
		return 0;
	if (now - st->next_ns > GEN_MAX_LAG_NS)
		st->next_ns = now;
	st->next_ns += cfg->interval_ns;
	st->last_ns = now;
	return 1;
}

/* field returns a pointer to n bytes at off in the packet, or NULL when they
 * are not inside it; off 0 means the frame has no such field. */
static __always_inline __u8 *field(__u8 *pkt, void *data_end, __u32 off, __u32 n)
{
	if (off == 0 || off > GEN_HDR_MAX)
		return 0;
	__u8 *p = pkt + off;
	if ((void *)(p + n) > data_end)
		return 0;
	return p;
}

/* put_id writes a flow's session id the way its tunnel carries it. */
static __always_inline void put_id(__u8 *p, enum gen_id_kind kind, __u32 id)
{
	switch (kind) {
	case GEN_ID_ERSPAN:
		p[0] = (p[0] & 0xfc) | ((id >> 8) & 0x03);
		p[1] = id;
		break;
	case GEN_ID_KEY:
		*(__u32 *)p = bpf_htonl(id);
		break;
	default:
		p[0] = id >> 16;
		p[1] = id >> 8;
		p[2] = id;
	}
}

/* put_inner varies the inner flow: source address and port walk through the
 * flows, and both checksums are patched from the sums Go precomputed. */
static __always_inline void put_inner(__u8 *in, struct gen_config *cfg, __u32 flow)
{
	__u32 saddr = cfg->inner_saddr + flow / GEN_PORTS_PER_ADDR;
	__u16 sport = GEN_PORT_BASE + flow % GEN_PORTS_PER_ADDR;
	*(__u32 *)(in + IN_OFF_SADDR) = bpf_htonl(saddr);
	*(__u16 *)(in + IN_OFF_SPORT) = bpf_htons(sport);

	__u64 words = (saddr >> 16) + (saddr & 0xffff);
	*(__u16 *)(in + IN_OFF_IP_CSUM) = bpf_htons((__u16)~csum_fold32(cfg->ip_csum_base + words));
	*(__u16 *)(in + IN_OFF_TCP_CSUM) = bpf_htons((__u16)~csum_fold32(cfg->tcp_csum_base + words + sport));
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	struct gen_config *cfg = bpf_map_lookup_elem(&gen_cfg, &zero);
	struct gen_state *st = bpf_map_lookup_elem(&gen_progress, &zero);
	if (!cfg || !st)
		return XDP_ABORTED;
	st->runs++;
	if (!pace(cfg, st))
		return XDP_DROP;

	__u32 len = cfg->hdr_len;
	if (len < GEN_HDR_MIN || len > GEN_HDR_MAX || data + len > data_end)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, cfg->hdr, len))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u32 ids = cfg->ids ? cfg->ids : 1;
	__u32 flow = st->sent % flows;
	__u8 *pkt = data;
	__u8 *p;

	__u8 *in = field(pkt, data_end, cfg->off_inner, INNER_HDR_LEN);
	__u8 *idp = field(pkt, data_end, cfg->off_id, 4);
	if (!in || !idp)
		return XDP_ABORTED;
	put_inner(in, cfg, flow);
	put_id(idp, cfg->id_kind, cfg->id_base + flow % ids);

	/* Outer source port: flow entropy, as a mirror source derives it. */
	if ((p = field(pkt, data_end, cfg->off_sport, 2)))
		*(__u16 *)p = bpf_htons(GEN_OUTER_PORT_BASE + ((flow * 2654435761u) >> 18 & GEN_OUTER_PORT_MASK));
	/* ERSPAN numbers its packets; type III stamps them (100 ns units). */
	if ((p = field(pkt, data_end, cfg->off_seq, 4)))
		*(__u32 *)p = bpf_htonl((__u32)st->sent);
	if ((p = field(pkt, data_end, cfg->off_ts, 4)))
		*(__u32 *)p = bpf_htonl((__u32)(st->last_ns / 100));

	st->sent++;
	return XDP_TX;
}

char __license[] SEC("license") = "Dual MIT/GPL";
