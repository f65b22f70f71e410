// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Limits and wire constants of the benchmark BPF programs. */
#ifndef XMIRROR_BENCH_CONSTS_H
#define XMIRROR_BENCH_CONSTS_H

/* keep in sync with bench/frame.go */
#ifndef VXLAN_PORT
#define VXLAN_PORT 4789
#endif
#ifndef GENEVE_PORT
#define GENEVE_PORT 6081
#endif

/* The most header bytes the generator rewrites on every packet: outer Ethernet,
 * IPv4, UDP, GENEVE with 31 eight-byte options, inner Ethernet, IPv4, TCP; the
 * least: GRE with a key (42) and the inner headers.
 * keep in sync with bench/frame.go (genHdrMax) */
#define GEN_HDR_MAX 352
#define GEN_HDR_MIN 96

/* The inner Ethernet/IPv4/TCP headers and the offsets, from the inner Ethernet
 * header, of the fields the generator varies per flow. keep in sync with bench/frame.go */
#define INNER_HDR_LEN 54
#define IN_OFF_IP_CSUM 24
#define IN_OFF_SADDR 26
#define IN_OFF_SPORT 34
#define IN_OFF_TCP_CSUM 50

/* How the generator writes a flow's session id. keep in sync with bench/frame.go (idVNI...) */
enum gen_id_kind {
	GEN_ID_VNI = 0,    /* 24 bits: VXLAN, GENEVE */
	GEN_ID_ERSPAN = 1, /* low 10 bits of a 16-bit word: ERSPAN session id */
	GEN_ID_KEY = 2,    /* 32 bits: GRE key */
};

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
