// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* xmirror XDP load balancer: VXLAN to a VIP:port is spread over backends by
 * weighted round robin (with a connection table) or weighted Maglev, the outer
 * destination is rewritten to the backend and the frame is sent back out with
 * XDP_TX or a devmap redirect. Everything else passes to the kernel untouched.
 * This object holds only the production program; lb_bench.c holds the
 * benchmark wrappers, in an object of its own that only tests load. */

#include "lb_datapath.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

SEC("xdp")
int xmirror_lb(struct xdp_md *ctx)
{
	return lb_process(ctx);
}
