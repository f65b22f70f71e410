// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Builders of tunnel headers as senders write them: GENEVE (RFC 8926),
// GRE (RFC 2784/2890) and ERSPAN type II (through gopacket, a serializer
// nobody here wrote) and III (by hand: gopacket has none).

// geneveOpt is one GENEVE option: class, type (the top bit is the critical
// bit) and data (a multiple of 4 bytes).
type geneveOpt struct {
	class uint16
	typ   uint8
	data  []byte
}

// geneve builds a GENEVE header (version 0, flags byte flags, protocol
// type ptype) with options and the payload behind it.
func geneve(vni uint32, ptype uint16, flags byte, opts []geneveOpt, payload []byte) []byte {
	var o []byte
	for _, op := range opts {
		o = binary.BigEndian.AppendUint16(o, op.class)
		o = append(o, op.typ, byte(len(op.data)/4))
		o = append(o, op.data...)
	}
	h := []byte{byte(len(o) / 4), flags, byte(ptype >> 8), byte(ptype), byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	return append(append(h, o...), payload...)
}

// gre builds a GRE header with the optional fields whose pointers are not
// nil, protocol ptype, and the payload (gopacket's serializer).
func gre(tb testing.TB, csum bool, key, seq *uint32, ptype uint16, payload []byte) []byte {
	tb.Helper()
	g := &layers.GRE{ChecksumPresent: csum, Protocol: layers.EthernetType(ptype)}
	if key != nil {
		g.KeyPresent, g.Key = true, *key
	}
	if seq != nil {
		g.SeqPresent, g.Seq = true, *seq
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, g, gopacket.Payload(payload)); err != nil {
		tb.Fatalf("serialize gre: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func u32p(v uint32) *uint32 { return &v }

// erspan2 is a GRE packet (with the sequence number ERSPAN II requires)
// carrying an ERSPAN type II header built by gopacket and the frame.
func erspan2(tb testing.TB, seq uint32, id, vlan uint16, cos uint8, index uint32, inner []byte) []byte {
	tb.Helper()
	e := &layers.ERSPANII{Version: layers.ERSPANIIVersion, SessionID: id, VLANIdentifier: vlan, CoS: cos, Index: index}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, e, gopacket.Payload(inner)); err != nil {
		tb.Fatalf("serialize erspan2: %v", err)
	}
	return gre(tb, false, nil, &seq, greProtoERSPAN, buf.Bytes())
}

// erspan3Hdr are the fields of an ERSPAN type III header.
type erspan3Hdr struct {
	id, vlan  uint16
	cos       uint8
	ts        uint32
	sgt       uint16
	hwid      uint8
	egress    bool
	gra       uint8
	sub       []byte // the 8-byte platform-specific sub-header, nil for none
	truncated bool
	ft        uint8 // frame type: 0 Ethernet, 2 IP
}

// erspan3 is a GRE packet carrying an ERSPAN type III header and the frame.
func erspan3(tb testing.TB, seq uint32, h erspan3Hdr, inner []byte) []byte {
	tb.Helper()
	e := make([]byte, erspan3Len)
	binary.BigEndian.PutUint16(e, 2<<12|h.vlan&0x0fff)
	w := uint16(h.cos)<<13 | h.id&0x3ff
	if h.truncated {
		w |= 1 << 10
	}
	binary.BigEndian.PutUint16(e[2:], w)
	binary.BigEndian.PutUint32(e[4:], h.ts)
	binary.BigEndian.PutUint16(e[8:], h.sgt)
	last := uint16(h.ft&0x1f)<<10 | uint16(h.hwid&0x3f)<<4 | uint16(h.gra&3)<<1
	if h.egress {
		last |= 1 << 3
	}
	if h.sub != nil {
		last |= 1
		e = append(e, h.sub...)
	}
	binary.BigEndian.PutUint16(e[10:], last)
	return gre(tb, false, nil, &seq, greProtoERSPAN3, append(e, inner...))
}

// ipv4GRE puts a GRE packet in an IPv4 header as a raw socket reads it.
func ipv4GRE(tb testing.TB, src, dst [4]byte, g []byte) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolGRE, SrcIP: src[:], DstIP: dst[:]}
	return serialize(tb, ip, gopacket.Payload(g))
}
