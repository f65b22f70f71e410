// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Benchmark peers. xdp_count counts tunnel packets (VXLAN, GENEVE, GRE) and drops them (xdp_drop_all: every frame): the backends and
 * collectors of a scenario use it to measure what arrives without the cost of the
 * stack. xdp_fwd is the XDP ceiling: the least an XDP load balancer can do (rewrite
 * the destination to one fixed backend, fix the IPv4 checksum, send it back out). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "csum.h"
#include "parsing.h"
#include "peer_maps.h"

static __always_inline void count(__u32 idx, void *data, void *data_end)
{
	struct count_value *c = bpf_map_lookup_elem(&counters, &idx);
	if (!c)
		return;
	c->packets++;
	c->bytes += data_end - data;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = parse_tunnel(data, data_end);

	if (!ip)
		return XDP_PASS;
	count(0, data, data_end);

	__u32 dst = ip->daddr;
	struct count_value *c = bpf_map_lookup_elem(&by_dst, &dst);
	if (c) {
		c->packets++;
		c->bytes += data_end - data;
	} else {
		struct count_value first = {.packets = 1, .bytes = data_end - data};
		bpf_map_update_elem(&by_dst, &dst, &first, BPF_NOEXIST);
	}
	return XDP_DROP;
}

/* xdp_drop_all counts and drops every frame: the receiving end of a link that
 * carries nothing but copies (the source scenario's floor). */
SEC("xdp")
int xdp_drop_all(struct xdp_md *ctx)
{
	count(0, (void *)(long)ctx->data, (void *)(long)ctx->data_end);
	return XDP_DROP;
}

SEC("xdp")
int xdp_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct vxlan_pkt p;
	__u32 zero = 0;

	if (!parse_vxlan(data, data_end, &p))
		return XDP_PASS;
	struct fwd_config *cfg = bpf_map_lookup_elem(&fwd_cfg, &zero);
	if (!cfg || p.ip->daddr != cfg->vip)
		return XDP_PASS;

	__builtin_memcpy(p.eth->h_dest, cfg->dst_mac, ETH_ALEN);
	__builtin_memcpy(p.eth->h_source, cfg->src_mac, ETH_ALEN);
	csum_replace4(&p.ip->check, p.ip->daddr, cfg->backend);
	p.ip->daddr = cfg->backend;
	/* A zero UDP checksum is valid over IPv4 and what VXLAN senders use. */
	p.udp->check = 0;
	count(1, data, data_end);
	return XDP_TX;
}

char __license[] SEC("license") = "Dual MIT/GPL";
