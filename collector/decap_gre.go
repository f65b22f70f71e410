// SPDX-License-Identifier: Apache-2.0

package collector

import "encoding/binary"

// GRE header (RFC 2784, RFC 2890): 16 bits of flags and version, the
// protocol type, then 4 bytes each for the checksum (with a reserved half),
// the key and the sequence number when their flags are set.
const (
	greBaseLen = 4
	greFlagC   = 0x8000 // checksum present
	greFlagK   = 0x2000 // key present
	greFlagS   = 0x1000 // sequence number present
	// greRefused are the bits RFC 2784 says a receiver that does not
	// implement RFC 1701 must discard a packet for (routing, strict source
	// route, recursion) and the version, which must be 0. Bits 6-12 are
	// reserved, "MUST be ignored on receipt".
	greRefused = 0x4000 | 0x0800 | 0x0400 | 0x0007
)

// GRE protocol types of mirrored frames.
const (
	greProtoERSPAN  = 0x88be // ERSPAN type II (type I: without the S bit)
	greProtoERSPAN3 = 0x22eb // ERSPAN type III
)

// ERSPAN headers (draft-foschiano-erspan-03):
//
//	type II   Ver=1 (4) VLAN (12) | COS (3) En (2) T (1) Session ID (10) |
//	          reserved (12) Index (20)                            8 bytes
//	type III  Ver=2 (4) VLAN (12) | COS (3) BSO (2) T (1) Session ID (10) |
//	          Timestamp (32) | SGT (16) P (1) FT (5) Hw ID (6) D (1) Gra (2) O (1)
//	                                                              12 bytes
//	          + an 8-byte platform-specific sub-header when O is set
const (
	erspan2Len      = 8
	erspan3Len      = 12
	erspan3SubLen   = 8
	erspanVersion2  = 1 // the version field of type II
	erspanVersion3  = 2 // the version field of type III
	erspanSessionID = 0x03ff
	erspan3FlagO    = 0x01
	// erspan3FrameIP is the type III frame type (FT) of an IP packet
	// without its link-layer header; 0 is an Ethernet frame.
	erspan3FrameIP = 2
)

// DecapGRE parses a GRE packet, from its header to the end of its IP
// packet: ERSPAN type I, II or III (the session id is the key; type I has
// none: 0) or transparent Ethernet bridging (the GRE key is the key, 0
// without one). Tunnel is the GRE header with the ERSPAN header behind it.
// It never panics and never allocates.
func DecapGRE(pkt []byte) (Frame, Reason) {
	if len(pkt) < greBaseLen {
		return Frame{}, ReasonGREShort
	}
	flags := binary.BigEndian.Uint16(pkt)
	if flags&greRefused != 0 {
		return Frame{}, ReasonGREHeader
	}
	hlen := greHeaderLen(flags)
	if len(pkt) < hlen {
		return Frame{}, ReasonGREShort
	}
	switch binary.BigEndian.Uint16(pkt[2:]) {
	case etherTypeTEB:
		var key uint32
		if flags&greFlagK != 0 {
			key = binary.BigEndian.Uint32(pkt[greKeyOffset(flags):])
		}
		return ethernetFrame(Key{Proto: ProtoGRE, ID: key}, pkt, hlen)
	case greProtoERSPAN:
		if flags&greFlagS == 0 { // type I: the frame follows the GRE header
			return ethernetFrame(Key{Proto: ProtoERSPAN}, pkt, hlen)
		}
		return decapERSPAN(pkt, hlen, erspan2Len, erspanVersion2)
	case greProtoERSPAN3:
		return decapERSPAN(pkt, hlen, erspan3Len, erspanVersion3)
	}
	return Frame{}, ReasonGREProtocol
}

// greHeaderLen is the GRE header's length with the fields flags announce.
func greHeaderLen(flags uint16) int {
	n := greBaseLen
	for _, f := range [...]uint16{greFlagC, greFlagK, greFlagS} {
		if flags&f != 0 {
			n += 4
		}
	}
	return n
}

// greKeyOffset is where the key is: after the checksum, if there is one.
func greKeyOffset(flags uint16) int {
	if flags&greFlagC != 0 {
		return greBaseLen + 4
	}
	return greBaseLen
}

// decapERSPAN parses the ERSPAN header of type II or III at pkt[off:].
func decapERSPAN(pkt []byte, off, hlen int, version byte) (Frame, Reason) {
	e := pkt[off:]
	if len(e) < hlen {
		return Frame{}, ReasonERSPANShort
	}
	if e[0]>>4 != version {
		return Frame{}, ReasonERSPANVersion
	}
	if version == erspanVersion3 && e[11]&erspan3FlagO != 0 {
		if hlen += erspan3SubLen; len(e) < hlen {
			return Frame{}, ReasonERSPANShort
		}
	}
	id := uint32(binary.BigEndian.Uint16(e[2:]) & erspanSessionID)
	if version == erspanVersion3 && e[10]>>2&0x1f == erspan3FrameIP {
		return ipFrame(Key{Proto: ProtoERSPAN, ID: id}, pkt, off+hlen)
	}
	return ethernetFrame(Key{Proto: ProtoERSPAN, ID: id}, pkt, off+hlen)
}

// ipFrame is the IP packet at pkt[off:] (an ERSPAN III frame of type IP),
// to be written behind a synthesized Ethernet header whose type the IP
// version says, as GENEVE's IP payloads are. It is held to the Ethernet
// frame's minimum of 14 bytes, as the XDP program holds every frame; a
// packet that is neither IPv4 nor IPv6 is written as it came, as a frame.
func ipFrame(k Key, pkt []byte, off int) (Frame, Reason) {
	fr, r := ethernetFrame(k, pkt, off)
	if r != ReasonNone {
		return fr, r
	}
	switch fr.Inner[0] >> 4 {
	case 4:
		fr.EtherType = etherTypeIPv4
	case 6:
		fr.EtherType = etherTypeIPv6
	default:
		return fr, ReasonNone
	}
	fr.OrigLen = ethHeaderLen + packetLength(fr.EtherType, fr.Inner)
	return fr, ReasonNone
}

// ethernetFrame is the Ethernet frame at pkt[off:], with pkt[:off] as the
// tunnel header.
func ethernetFrame(k Key, pkt []byte, off int) (Frame, Reason) {
	inner := pkt[off:]
	if len(inner) < ethHeaderLen {
		return Frame{}, ReasonShortInner
	}
	return Frame{Key: k, Inner: inner, OrigLen: OriginalLength(inner), Tunnel: pkt[:off]}, ReasonNone
}

// ipv4HeaderMin is the length of an IPv4 header without options.
const ipv4HeaderMin = 20

// DecapIPv4GRE parses what a raw IPv4 socket of protocol 47 reads: the IPv4
// header, then GRE up to the header's total length (Ethernet padding and
// anything past the total length is not the packet's). A header that does
// not fit the packet is ReasonBadLength.
func DecapIPv4GRE(pkt []byte) (Frame, Reason) {
	if len(pkt) < ipv4HeaderMin || pkt[0]>>4 != 4 {
		return Frame{}, ReasonBadLength
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < ipv4HeaderMin || total < ihl || total > len(pkt) {
		return Frame{}, ReasonBadLength
	}
	return DecapGRE(pkt[ihl:total])
}
