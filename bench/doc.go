// SPDX-License-Identifier: Apache-2.0

// Package bench measures xmirror against the systems users would pick instead, side
// by side in one run on one machine, inside network namespaces built by netlab.
//
// Traffic comes from an in-kernel generator (gen.go): an XDP program run under
// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, which transmits real tunnel frames
// (VXLAN, GENEVE, ERSPAN II and III, GRE; frame.go) of many flows at a paced rate. Receivers count with an XDP program (peer.go) or a
// recvmmsg loop (sink.go). The scenarios (lb, collector, source, e2e) compare xmirror
// with a ceiling and with kernel and user-space alternatives, and the report
// (report.go) writes a terminal table, report.md, results.json and SVG charts.
package bench

//go:generate go tool bpf2go -target bpfel -type gen_config -type gen_state -type gen_id_kind gen bpf/gen.c
//go:generate go tool bpf2go -target bpfel -type fwd_config -type count_value peer bpf/peer.c
