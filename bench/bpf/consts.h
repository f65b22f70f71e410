// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Limits and wire constants of the benchmark BPF programs. */
#ifndef XMIRROR_BENCH_CONSTS_H
#define XMIRROR_BENCH_CONSTS_H

/* keep in sync with bench/frame.go */
#ifndef VXLAN_PORT
#define VXLAN_PORT 4789
#endif

/* Bytes of headers the generator rewrites on every packet: outer Ethernet, IPv4,
 * UDP, VXLAN, inner Ethernet, IPv4, TCP. keep in sync with bench/frame.go (hdrLen). */
#define GEN_HDR_LEN 104

/* Byte offsets of the fields the generator varies per flow.
 * keep in sync with bench/frame.go */
#define OFF_OUTER_SPORT 34
#define OFF_VNI 46
#define OFF_INNER_IP_CSUM 74
#define OFF_INNER_SADDR 76
#define OFF_INNER_SPORT 84
#define OFF_TCP_CSUM 100

/* How far the pacer may fall behind before it forgets the missed time. Each new
 * BPF_PROG_TEST_RUN call costs ~25 ms of setup; catching all of that up would send
 * a burst at line rate that overflows receivers' backlogs (measured: ~0.4% loss at
 * a third of their capacity). The offered rate is measured, not assumed. */
#ifndef GEN_MAX_LAG_NS
#define GEN_MAX_LAG_NS 1000000ULL
#endif

/* Inner flows: source address advances every GEN_PORTS_PER_ADDR flows, the source
 * port walks through GEN_PORTS_PER_ADDR ports from GEN_PORT_BASE.
 * keep in sync with bench/frame.go */
#define GEN_PORTS_PER_ADDR 4096
#define GEN_PORT_BASE 20000
/* Outer UDP source ports are spread over the ephemeral range like a mirror source's
 * flow entropy. */
#define GEN_OUTER_PORT_BASE 49152
#define GEN_OUTER_PORT_MASK 0x3fff

/* Destinations the counter tells apart; more are counted in the total only. */
#ifndef COUNT_MAX_DESTS
#define COUNT_MAX_DESTS 256
#endif

#endif
