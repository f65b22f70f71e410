// SPDX-License-Identifier: Apache-2.0

// Package xdp is xmirror's XDP load balancer: VXLAN sent to a listener
// (VIP:port) is spread over collector backends by smooth weighted round robin
// with a connection table, or by weighted Maglev, with the mirror source kept
// as the outer source. The package holds the BPF program (bpf/), its generated
// bindings, the loader with pinning, the control plane (tables, health checks,
// hitless reloads) and the counters.
package xdp
