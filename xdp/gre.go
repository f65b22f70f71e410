// SPDX-License-Identifier: Apache-2.0

package xdp

import "encoding/binary"

// The Go mirror of bpf/lb_gre.h: what the data path checks of a GRE header
// (RFC 2784, 2890) and where it finds the inner flow behind ERSPAN or
// bridging.
const (
	greC      = 0x8000 // checksum present
	greK      = 0x2000 // key present
	greS      = 0x1000 // sequence number present
	greUnread = 0x4fff // routing, recursion, reserved, version: not read

	greEthernet = 0x6558 // transparent Ethernet bridging
	greERSPAN   = 0x88be // ERSPAN type I (no S bit) and II
	greERSPAN3  = 0x22eb // ERSPAN type III

	erspan2HeaderLen = 8
	erspan3HeaderLen = 12
	erspan3SubLen    = 8 // platform-specific sub-header, when the O bit is set
	erspan3FrameIP   = 2 // frame type (FT) of an IP packet without Ethernet header
)

// greHeaderLen is the GRE header's length with the fields flags announce.
func greHeaderLen(flags uint16) int {
	n := 4
	for _, f := range []uint16{greC, greK, greS} {
		if flags&f != 0 {
			n += 4
		}
	}
	return n
}

// greOK mirrors lb_gre_ok: g runs from the GRE header to the end of its IP
// packet.
func greOK(g []byte) bool {
	if len(g) < 4 {
		return false
	}
	flags := binary.BigEndian.Uint16(g)
	return flags&greUnread != 0 || greHeaderLen(flags) <= len(g)
}

// greInnerHash mirrors lb_gre_inner_hash: g starts at the GRE header and
// runs to the end of the frame.
func greInnerHash(g []byte) (uint32, int) {
	if len(g) < 4 {
		return 0, innerNone
	}
	flags, ptype := binary.BigEndian.Uint16(g), binary.BigEndian.Uint16(g[2:])
	if flags&greUnread != 0 {
		return 0, innerNone
	}
	n := greHeaderLen(flags)
	if len(g) < n {
		return 0, innerNone
	}
	in := g[n:]
	switch ptype {
	case greEthernet:
		return innerHashEth(in)
	case greERSPAN:
		if flags&greS != 0 {
			if len(in) < erspan2HeaderLen {
				return 0, innerNone
			}
			in = in[erspan2HeaderLen:]
		}
		return innerHashEth(in)
	case greERSPAN3:
		if len(in) < erspan3HeaderLen {
			return 0, innerNone
		}
		skip := erspan3HeaderLen
		if in[11]&0x01 != 0 {
			skip += erspan3SubLen
		}
		if len(in) < skip {
			return 0, innerNone
		}
		if t := erspan3IPType(in[10], in[skip:]); t != 0 {
			return innerHashL3(t, in[skip:])
		}
		return innerHashEth(in[skip:])
	case geneveIPv4, geneveIPv6:
		return innerHashL3(ptype, in)
	}
	return 0, innerNone
}

// erspan3IPType mirrors lb_erspan3_ip_type: the EtherType of the IP packet
// behind a type III header whose byte 10 (b10) says frame type IP, by its
// version; 0 when the frame is Ethernet.
func erspan3IPType(b10 byte, in []byte) uint16 {
	if b10>>2&0x1f != erspan3FrameIP || len(in) == 0 {
		return 0
	}
	switch in[0] >> 4 {
	case 4:
		return geneveIPv4
	case 6:
		return geneveIPv6
	}
	return 0
}
