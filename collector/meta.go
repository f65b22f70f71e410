// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// What a frame's tunnel header puts into the files. The receive path keeps
// the header beside the frame (Frame.Tunnel); the writer reads it here when
// it writes the packet, so that nothing is formatted for a packet that is
// dropped, and VXLAN, which has no header to keep, costs nothing.
//
// pcapng keeps it: the direction of an ERSPAN type III frame in the
// enhanced packet block's flags (epb_flags: inbound for ingress, outbound
// for egress) and the rest as a packet comment (opt_comment). A classic
// pcap record has no room for either; both formats take an absolute ERSPAN
// III timestamp as the packet's time.

// meta is what one packet's block carries beside the frame.
type meta struct {
	flags   uint32 // epb_flags: epbInbound or epbOutbound; 0 = not known
	time    int64  // the sender's absolute time in unix ns; 0 = the receive time
	comment []byte // opt_comment; nil = none
}

// epb_flags direction values (pcapng, section 4.3.1).
const (
	epbInbound  = 1
	epbOutbound = 2
)

// ERSPAN type III timestamp granularities (the Gra field).
const (
	gra100us = 0
	gra100ns = 1
	gra1588  = 2
	graUser  = 3
)

var graNames = [4]string{"100us", "100ns", "ieee1588", "user"}

// erspanPlatfTime is the platform-specific sub-header's Platf ID whose last
// 32 bits are the upper half (seconds) of an IEEE 1588 timestamp whose lower
// half (nanoseconds) is in the header's Timestamp field.
const erspanPlatfTime = 3

// frameMeta reads the metadata of fr's tunnel header, formatting the
// comment into dst (reused; the caller keeps it per writer).
func frameMeta(dst []byte, fr *Frame) meta {
	t := fr.Tunnel
	if len(t) == 0 {
		return meta{}
	}
	switch fr.Key.Proto {
	case ProtoGENEVE:
		return meta{comment: appendGeneveComment(dst[:0], t)}
	case ProtoERSPAN, ProtoGRE:
		return greMeta(dst[:0], t)
	}
	return meta{}
}

// appendGeneveComment describes a GENEVE header (as DecapGENEVE accepted
// it): "geneve vni=7 oam critical proto=0x0800 opt=class:0x0101,type:0x80,len:4,data:0a0b0c0d".
func appendGeneveComment(b, h []byte) []byte {
	b = append(b, "geneve vni="...)
	b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(h[4:])>>8), 10)
	if h[1]&geneveFlagOAM != 0 {
		b = append(b, " oam"...)
	}
	if h[1]&geneveFlagCrit != 0 {
		b = append(b, " critical"...)
	}
	if p := binary.BigEndian.Uint16(h[2:]); p != etherTypeTEB {
		b = append(b, " proto=0x"...)
		b = appendHex16(b, p)
	}
	for opts := h[geneveHeaderLen:]; len(opts) > 0; {
		if len(opts) < geneveOptHeader {
			return append(b, " opt=truncated"...)
		}
		n := geneveOptHeader + int(opts[3]&0x1f)*4
		if n > len(opts) {
			return append(b, " opt=truncated"...)
		}
		b = append(b, " opt=class:0x"...)
		b = appendHex16(b, binary.BigEndian.Uint16(opts))
		b = append(b, ",type:0x"...)
		b = hex.AppendEncode(b, opts[2:3])
		b = append(b, ",len:"...)
		b = strconv.AppendInt(b, int64(n-geneveOptHeader), 10)
		if n > geneveOptHeader {
			b = append(b, ",data:"...)
			b = hex.AppendEncode(b, opts[geneveOptHeader:n])
		}
		opts = opts[n:]
	}
	return b
}

func appendHex16(b []byte, v uint16) []byte {
	return hex.AppendEncode(b, []byte{byte(v >> 8), byte(v)})
}

// greMeta describes a GRE header and the ERSPAN header behind it (as
// DecapGRE accepted them).
func greMeta(b, t []byte) meta {
	flags := binary.BigEndian.Uint16(t)
	hlen := greHeaderLen(flags)
	var m meta
	switch proto := binary.BigEndian.Uint16(t[2:]); {
	case proto == greProtoERSPAN3:
		b, m = appendERSPAN3(b, t[hlen:])
	case proto == greProtoERSPAN && flags&greFlagS != 0:
		b = appendERSPAN2(b, t[hlen:])
	case proto == greProtoERSPAN:
		b = append(b, "erspan1"...)
	default:
		b = append(b, "gre"...)
	}
	if flags&greFlagK != 0 {
		b = append(b, " key="...)
		b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(t[greKeyOffset(flags):])), 10)
	}
	if flags&greFlagS != 0 {
		b = append(b, " seq="...)
		b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(t[hlen-4:])), 10)
	}
	m.comment = b
	return m
}

// appendERSPANCommon describes the first 4 bytes, shared by types II and
// III: session id, VLAN, COS, the 2-bit En/BSO field and the T bit.
func appendERSPANCommon(b, e []byte, name, field2 string) []byte {
	b = append(b, name...)
	b = append(b, " id="...)
	b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(e[2:])&erspanSessionID), 10)
	b = append(b, " vlan="...)
	b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(e)&0x0fff), 10)
	b = append(b, " cos="...)
	b = strconv.AppendUint(b, uint64(e[2]>>5), 10)
	b = append(b, ' ')
	b = append(b, field2...)
	b = append(b, '=')
	b = strconv.AppendUint(b, uint64(e[2]>>3&0x3), 10)
	if e[2]&0x04 != 0 {
		b = append(b, " truncated"...)
	}
	return b
}

// appendERSPAN2 describes a type II header: "erspan2 id=100 vlan=10 cos=3
// en=2 index=7".
func appendERSPAN2(b, e []byte) []byte {
	b = appendERSPANCommon(b, e, "erspan2", "en")
	b = append(b, " index="...)
	return strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(e[4:])&0xfffff), 10)
}

// appendERSPAN3 describes a type III header and its sub-header: "erspan3
// id=100 vlan=10 cos=0 bso=0 dir=ingress hwid=3 sgt=0 ft=0 gra=100us
// ts=123456 platf=3 info=0x…", and finds its direction and absolute time.
func appendERSPAN3(b, e []byte) ([]byte, meta) {
	var m meta
	b = appendERSPANCommon(b, e, "erspan3", "bso")
	ts := binary.BigEndian.Uint32(e[4:])
	w := binary.BigEndian.Uint16(e[10:]) // P | FT(5) | HwID(6) | D | Gra(2) | O
	dir, gra := w>>3&1, int(w>>1&3)
	m.flags = epbInbound
	b = append(b, " dir=ingress"...)
	if dir == 1 {
		m.flags = epbOutbound
		b = b[:len(b)-len("ingress")]
		b = append(b, "egress"...)
	}
	b = append(b, " hwid="...)
	b = strconv.AppendUint(b, uint64(w>>4&0x3f), 10)
	b = append(b, " sgt="...)
	b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint16(e[8:])), 10)
	if w&0x8000 != 0 {
		b = append(b, " p=1"...)
	}
	b = append(b, " ft="...)
	b = strconv.AppendUint(b, uint64(w>>10&0x1f), 10)
	b = append(b, " gra="...)
	b = append(b, graNames[gra]...)
	b = append(b, " ts="...)
	b = strconv.AppendUint(b, uint64(ts), 10)
	if w&erspan3FlagO != 0 {
		sub := e[erspan3Len : erspan3Len+erspan3SubLen]
		platf := sub[0] >> 2
		b = append(b, " platf="...)
		b = strconv.AppendUint(b, uint64(platf), 10)
		b = append(b, " info=0x"...)
		b = hex.AppendEncode(b, sub)
		if gra == gra1588 && platf == erspanPlatfTime && ts < 1e9 {
			m.time = int64(binary.BigEndian.Uint32(sub[4:]))*1e9 + int64(ts)
		}
	}
	return b, m
}
