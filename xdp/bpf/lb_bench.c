// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Benchmark programs for xdp/bench_test.go, in an object of their own so the
 * production object (lb.c) carries only xmirror_lb. Tests load this object
 * over the maps and globals of a loaded load balancer (map replacements), so
 * the wrappers run the production data path, lb_process, on its tables. */

#include "lb_datapath.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* The cheapest forwarder: the baseline benchmarks compare xmirror_lb with. */
SEC("xdp")
int xmirror_bare_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* Benchmarks repeat a program over one frame (BPF_PROG_TEST_RUN with
 * repeat) and the kernel does not restore it between runs: these wrappers
 * save the headers the data path rewrites and put them back, so every run
 * sees the original frame. Both pay the same save/restore, so their
 * difference is the cost of the data path. */
/* 48 bytes cover Ethernet, IPv4 and UDP of an untagged frame; copied as
 * 64-bit words (memcpy on packet data compiles to single bytes). */
#define LB_BENCH_WORDS 6

static __always_inline int lb_bench(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 saved[LB_BENCH_WORDS], *w = data;
	int ret, i;

	if ((void *)(w + LB_BENCH_WORDS) > data_end)
		return XDP_ABORTED;
	for (i = 0; i < LB_BENCH_WORDS; i++)
		saved[i] = w[i];
	ret = lb_process(ctx);
	w = (void *)(long)ctx->data;
	if ((void *)(w + LB_BENCH_WORDS) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	for (i = 0; i < LB_BENCH_WORDS; i++)
		w[i] = saved[i];
	return ret;
}

SEC("xdp")
int xmirror_lb_bench(struct xdp_md *ctx)
{
	return lb_bench(ctx);
}

SEC("xdp")
int xmirror_bare_bench(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 saved[LB_BENCH_WORDS], *w = data;
	int i;

	if ((void *)(w + LB_BENCH_WORDS) > data_end)
		return XDP_ABORTED;
	for (i = 0; i < LB_BENCH_WORDS; i++)
		saved[i] = w[i];
	/* keep the copy from being optimised away, as the real wrapper's is used */
	asm volatile("" : : "r"(saved) : "memory");
	for (i = 0; i < LB_BENCH_WORDS; i++)
		w[i] = saved[i];
	return XDP_TX;
}

/* Many flows, as the live benchmark sends them: every run rewrites the inner
 * TCP source port from a counter of this CPU, so consecutive runs are
 * consecutive ones of N round-robin flows, and the tables are read where
 * those flows put them (caches miss as they do under load). N is a power of
 * two the benchmark writes at key 1 (as N - 1), the counter is key 0. */
/* Ethernet, IPv4, UDP, VXLAN, inner Ethernet, inner IPv4 */
#define LB_BENCH_INNER_SPORT (14 + 20 + 8 + 8 + 14 + 20)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} lb_bench_flow SEC(".maps");

/* lb_next_flow points the frame at the next flow; -1 when the frame is too
 * short to carry an inner port. */
static __always_inline int lb_next_flow(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *sport = data + LB_BENCH_INNER_SPORT;
	__u32 zero = 0, one = 1, *n, *mask;

	if ((void *)(sport + 1) > data_end)
		return -1;
	n = bpf_map_lookup_elem(&lb_bench_flow, &zero);
	mask = bpf_map_lookup_elem(&lb_bench_flow, &one);
	if (!n || !mask)
		return -1;
	*sport = bpf_htons(1024 + (*n & *mask & 0xffff));
	*n += 1;
	return 0;
}

SEC("xdp")
int xmirror_lb_bench_flows(struct xdp_md *ctx)
{
	if (lb_next_flow(ctx))
		return XDP_ABORTED;
	return lb_bench(ctx);
}

/* The baseline of the above: the same flow rewrite, no data path. */
SEC("xdp")
int xmirror_bare_bench_flows(struct xdp_md *ctx)
{
	if (lb_next_flow(ctx))
		return XDP_ABORTED;
	return xmirror_bare_bench(ctx);
}
