// SPDX-License-Identifier: Apache-2.0

package xdp

import "encoding/binary"

// The Go mirror of bpf/lb_geneve.h (RFC 8926): what the data path checks of a
// GENEVE header and where it finds the inner flow.
const (
	geneveHeaderLen = 8
	geneveVersion0  = 0
	// Protocol types of the payload the inner hash reads.
	geneveEthernet = 0x6558 // Transparent Ethernet Bridging
	geneveIPv4     = 0x0800
	geneveIPv6     = 0x86dd
)

// geneveHeaderSize is the header's length with its options; b holds at
// least the fixed 8 bytes.
func geneveHeaderSize(b []byte) int { return geneveHeaderLen + int(b[0]&0x3f)*4 }

// geneveOK mirrors lb_geneve_ok: udp starts at the UDP header of a whole
// datagram. A version other than 0 is not judged.
func geneveOK(udp []byte) bool {
	if len(udp) < 8+geneveHeaderLen {
		return false
	}
	g := udp[8:]
	if g[0]>>6 != geneveVersion0 {
		return true
	}
	return 8+geneveHeaderSize(g) <= int(binary.BigEndian.Uint16(udp[4:]))
}

// geneveInnerHash mirrors lb_geneve_inner_hash: g starts at the GENEVE
// header, which geneveOK accepted.
func geneveInnerHash(g []byte) (uint32, int) {
	if len(g) < geneveHeaderLen || g[0]>>6 != geneveVersion0 {
		return 0, innerNone
	}
	n := geneveHeaderSize(g)
	if len(g) < n {
		return 0, innerNone
	}
	switch ptype := binary.BigEndian.Uint16(g[2:]); ptype {
	case geneveEthernet:
		return innerHashEth(g[n:])
	case geneveIPv4, geneveIPv6:
		return innerHashL3(ptype, g[n:])
	}
	return 0, innerNone
}
