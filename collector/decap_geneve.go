// SPDX-License-Identifier: Apache-2.0

package collector

import "encoding/binary"

// GENEVE header layout (RFC 8926 section 3.4):
//
//	byte 0     Ver (2 bits) | Opt Len (6 bits, 4-byte words of options)
//	byte 1     O (OAM) | C (critical options present) | reserved
//	bytes 2-3  protocol type of the payload (an EtherType)
//	bytes 4-6  VNI; byte 7 reserved
//
// then Opt Len × 4 bytes of options, each: class (16 bits), type (8; its
// top bit is the critical bit), reserved (3 bits) and length (5 bits, in
// 4-byte words) and that much data.
const (
	geneveHeaderLen   = 8
	geneveOptHeader   = 4
	geneveOptLenMask  = 0x3f
	geneveFlagOAM     = 0x80
	geneveFlagCrit    = 0x40
	etherTypeTEB      = 0x6558 // transparent Ethernet bridging: an Ethernet payload
	geneveVersionMask = 0xc0
)

// DefaultGenevePort is the GENEVE UDP port (IANA).
const DefaultGenevePort = 6081

// DecapGENEVE parses the UDP payload of one GENEVE datagram. An Ethernet
// payload (protocol type 0x6558) is the frame; an IPv4 or IPv6 payload
// (what AWS Gateway Load Balancer sends) comes back with EtherType set, to
// be written behind a synthesized Ethernet header. The O (OAM) and C
// (critical) bits do not stop a capture: a monitor keeps what it is sent,
// and the comment in the file says they were set. It never panics and never
// allocates.
func DecapGENEVE(payload []byte) (Frame, Reason) {
	if len(payload) < geneveHeaderLen {
		return Frame{}, ReasonGeneveShort
	}
	if payload[0]&geneveVersionMask != 0 {
		return Frame{}, ReasonGeneveVersion
	}
	hlen := geneveHeaderLen + int(payload[0]&geneveOptLenMask)*4
	if len(payload) < hlen {
		return Frame{}, ReasonGeneveShort
	}
	fr := Frame{
		Key:    Key{Proto: ProtoGENEVE, ID: binary.BigEndian.Uint32(payload[4:8]) >> 8},
		Inner:  payload[hlen:],
		Tunnel: payload[:hlen],
	}
	switch ptype := binary.BigEndian.Uint16(payload[2:]); ptype {
	case etherTypeTEB:
		if len(fr.Inner) < ethHeaderLen {
			return Frame{}, ReasonShortInner
		}
		fr.OrigLen = OriginalLength(fr.Inner)
	case etherTypeIPv4, etherTypeIPv6:
		if len(fr.Inner) == 0 {
			return Frame{}, ReasonShortInner
		}
		fr.EtherType = ptype
		fr.OrigLen = ethHeaderLen + packetLength(ptype, fr.Inner)
	default:
		return Frame{}, ReasonGeneveProtocol
	}
	return fr, ReasonNone
}
