// SPDX-License-Identifier: Apache-2.0

// Package collector is the receiving end of xmirror: it reads the VXLAN that
// `xmirror source`, `xmirror lb`, AWS VPC Traffic Mirroring or Huawei Cloud
// traffic mirroring send (RFC 7348, UDP 4789), and as its inputs say the
// GENEVE of AWS Gateway Load Balancer (RFC 8926, UDP 6081) and the ERSPAN
// (type I, II, III) and GRE bridging of switches (IP protocol 47), takes the
// inner Ethernet frames out, and writes one rotating pcapng (or pcap) file
// series per mirror session (protocol and id: VNI, ERSPAN session id, GRE
// key), with the tunnel's metadata in pcapng.
//
// The receive path uses SO_REUSEPORT sockets read with recvmmsg, kernel
// timestamps (SO_TIMESTAMPNS) and the socket drop counter (SO_MEMINFO, read
// once a second); it does not allocate per packet. Files are created below
// the output directory without following links (outdir.go), written under a
// hidden temporary name and renamed when closed (series.go), flushed at least
// every second, rotated by size, by wall-clock-aligned interval and when a
// session is idle; closed files are compressed, pruned by retention and free
// space and handed to a post-rotate command off the receive path (closed.go,
// retention.go). Live outputs (export.go) stream the packets as one pcapng
// and to a TAP device. Every packet that is not written is counted under a
// drop reason.
package collector
