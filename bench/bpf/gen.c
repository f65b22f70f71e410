// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Traffic generator. Go runs xdp_gen under BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES, so every XDP_TX verdict transmits the frame out of the
 * context's ingress interface. The program paces itself inside one long call: on each
 * run it either sends (rewriting the headers for the next flow) or returns XDP_DROP.
 * The headers are written on every send because the kernel recycles the frame pages
 * without copying the input again, and a receiver that rewrites frames in place
 * (an XDP load balancer on the veth peer) would otherwise change later packets. */
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
	if (data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;

	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u32 vnis = cfg->vnis ? cfg->vnis : 1;
	__u32 flow = st->sent % flows;
	__u8 *pkt = data;

	__builtin_memcpy(pkt, cfg->hdr, GEN_HDR_LEN);

	/* Outer source port: flow entropy, as a mirror source derives it. */
	__u16 oport = GEN_OUTER_PORT_BASE + ((flow * 2654435761u) >> 18 & GEN_OUTER_PORT_MASK);
	*(__u16 *)(pkt + OFF_OUTER_SPORT) = bpf_htons(oport);

	__u32 vni = cfg->vni_base + flow % vnis;
	pkt[OFF_VNI] = vni >> 16;
	pkt[OFF_VNI + 1] = vni >> 8;
	pkt[OFF_VNI + 2] = vni;

	/* Inner flow: the source address and port walk through the flows. */
	__u32 saddr = cfg->inner_saddr + flow / GEN_PORTS_PER_ADDR;
	__u16 sport = GEN_PORT_BASE + flow % GEN_PORTS_PER_ADDR;
	*(__u32 *)(pkt + OFF_INNER_SADDR) = bpf_htonl(saddr);
	*(__u16 *)(pkt + OFF_INNER_SPORT) = bpf_htons(sport);

	__u64 words = (saddr >> 16) + (saddr & 0xffff);
	*(__u16 *)(pkt + OFF_INNER_IP_CSUM) = bpf_htons((__u16)~csum_fold32(cfg->ip_csum_base + words));
	*(__u16 *)(pkt + OFF_TCP_CSUM) = bpf_htons((__u16)~csum_fold32(cfg->tcp_csum_base + words + sport));

	st->sent++;
	return XDP_TX;
}

char __license[] SEC("license") = "Dual MIT/GPL";
