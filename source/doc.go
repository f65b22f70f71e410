// SPDX-License-Identifier: Apache-2.0

// Package source is xmirror's mirror source. tc (TCX) BPF programs on the
// source interfaces classify packets against the sessions' filter rules and
// hand the first session that accepts a packet to one of three datapaths,
// which cut it to the session length and send it as VXLAN to the session's
// target:
//
//   - ring (the default, ring.go): the program writes the cut frame with
//     its outer IPv4/UDP/VXLAN headers into a BPF ring buffer; a goroutine
//     sends batches of them through AF_PACKET (UDP GSO runs) or raw sockets.
//   - perf (perfbuf.go): the program copies the cut frame to a perf buffer;
//     a goroutine puts the outer headers in front and sends.
//   - kernel (kernel.go): the program clones the packet to a VXLAN device in
//     external mode, where a second program cuts it and sets the tunnel key.
//
// The control plane (source.go) resolves the configuration against the
// system (resolve.go), compiles it for the maps (compile.go), writes it into
// the idle half of the double-buffered maps and flips, so that a reload never
// detaches; it exports per-session counters (stats.go). The outer header
// layout lives in outer.go; the sockets, batching and GSO of the user-space
// datapaths in sockets.go, batch.go and gso.go.
package source
