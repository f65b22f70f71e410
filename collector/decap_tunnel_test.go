// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tunnelCase is one golden frame for a tunnel's decapsulation.
type tunnelCase struct {
	name   string
	in     []byte
	reason Reason
	key    Key
	inner  []byte // the frame as written (with a synthesized Ethernet header)
	tunnel int    // bytes of tunnel header kept
	orig   int
}

func checkTunnelCases(t *testing.T, decap Decapper, cases []tunnelCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr, r := decap(tc.in)
			if r != tc.reason {
				t.Fatalf("reason %v, want %v", r, tc.reason)
			}
			if r != ReasonNone {
				return
			}
			flat := fr.flatten(nil)
			if fr.Key != tc.key || !bytes.Equal(flat.Inner, tc.inner) || len(fr.Tunnel) != tc.tunnel || fr.OrigLen != tc.orig {
				t.Errorf("got key %v, %d-byte frame (equal: %v), %d-byte tunnel header, original length %d; want %v, %d, %d, %d",
					fr.Key, len(flat.Inner), bytes.Equal(flat.Inner, tc.inner), len(fr.Tunnel), fr.OrigLen,
					tc.key, len(tc.inner), tc.tunnel, tc.orig)
			}
		})
	}
}

// TestDecapGENEVE: golden GENEVE datagrams for every branch.
func TestDecapGENEVE(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("source to test\n"))
	ip := full[ethHeaderLen:]
	withEth := func(etype uint16, pkt []byte) []byte {
		return append(binary.BigEndian.AppendUint16(make([]byte, 12), etype), pkt...)
	}
	opt1 := []geneveOpt{{class: 0x0101, typ: 0x80, data: []byte{1, 2, 3, 4}}}
	many := []geneveOpt{{0x0101, 0x01, []byte{1, 2, 3, 4}}, {0x0102, 0x02, nil}, {0xffff, 0x7f, make([]byte, 124)}}
	key7 := Key{Proto: ProtoGENEVE, ID: 7}
	cases := []tunnelCase{
		{"empty", nil, ReasonGeneveShort, Key{}, nil, 0, 0},
		{"short header", []byte{0, 0, 0x65, 0x58, 0, 0, 7}, ReasonGeneveShort, Key{}, nil, 0, 0},
		{"version 1", append([]byte{0x40, 0, 0x65, 0x58, 0, 0, 7, 0}, full...), ReasonGeneveVersion, Key{}, nil, 0, 0},
		{"options past the end", []byte{2, 0, 0x65, 0x58, 0, 0, 7, 0, 0, 1, 2, 3}, ReasonGeneveShort, Key{}, nil, 0, 0},
		{"no options", geneve(7, etherTypeTEB, 0, nil, full), ReasonNone, key7, full, 8, len(full)},
		{"one option", geneve(7, etherTypeTEB, 0, opt1, full), ReasonNone, key7, full, 16, len(full)},
		{"many options (252 bytes)", geneve(7, etherTypeTEB, 0, append(many, geneveOpt{1, 1, make([]byte, 108)}), full), ReasonNone, key7, full, 8 + 252, len(full)},
		{"critical bit kept", geneve(7, etherTypeTEB, geneveFlagCrit, opt1, full), ReasonNone, key7, full, 16, len(full)},
		{"OAM kept", geneve(7, etherTypeTEB, geneveFlagOAM, nil, full), ReasonNone, key7, full, 8, len(full)},
		{"max VNI", geneve(0xffffff, etherTypeTEB, 0, nil, full), ReasonNone, Key{ProtoGENEVE, 0xffffff}, full, 8, len(full)},
		{"cut frame", geneve(7, etherTypeTEB, 0, nil, full[:40]), ReasonNone, key7, full[:40], 8, len(full)},
		{"IPv4 payload (AWS GWLB)", geneve(7, etherTypeIPv4, 0, opt1, ip), ReasonNone, key7, withEth(etherTypeIPv4, ip), 16, len(full)},
		{"IPv4 payload cut", geneve(7, etherTypeIPv4, 0, nil, ip[:30]), ReasonNone, key7, withEth(etherTypeIPv4, ip[:30]), 8, len(full)},
		{"IPv6 payload", geneve(9, etherTypeIPv6, 0, nil, []byte{0x60, 0, 0, 0, 0, 4, 17, 64}), ReasonNone, Key{ProtoGENEVE, 9},
			withEth(etherTypeIPv6, []byte{0x60, 0, 0, 0, 0, 4, 17, 64}), 8, 14 + 44},
		{"empty IP payload", geneve(7, etherTypeIPv4, 0, nil, nil), ReasonShortInner, Key{}, nil, 0, 0},
		{"short Ethernet", geneve(7, etherTypeTEB, 0, nil, full[:13]), ReasonShortInner, Key{}, nil, 0, 0},
		{"MPLS payload", geneve(7, 0x8847, 0, nil, full), ReasonGeneveProtocol, Key{}, nil, 0, 0},
	}
	checkTunnelCases(t, DecapGENEVE, cases)
}

// TestDecapGRE: golden GRE packets for every branch: ERSPAN I, II, III
// with and without the platform sub-header, bridging with checksum, key
// and sequence, and the malformed ones.
func TestDecapGRE(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("source to test\n"))
	sub := []byte{erspanPlatfTime << 2, 0, 0, 1, 0x65, 0x8f, 0x2b, 0x00}
	e3 := erspan3(t, 5, erspan3Hdr{id: 100, vlan: 10, hwid: 3, egress: true}, full)
	e3sub := erspan3(t, 5, erspan3Hdr{id: 1023, gra: gra1588, ts: 5, sub: sub}, full)
	teb := gre(t, true, u32p(42), u32p(9), etherTypeTEB, full)
	routed := append([]byte{}, teb...)
	routed[0] |= 0x40
	reserved := append([]byte{}, gre(t, false, nil, nil, etherTypeTEB, full)...)
	reserved[1] |= 0x08 // bits 6-12 are ignored (RFC 2784)
	badVer := append([]byte{}, erspan2(t, 1, 100, 0, 0, 0, full)...)
	badVer[8] = 0x20
	ip := full[ethHeaderLen:]
	ip6h := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = udp.SetNetworkLayerForChecksum(ip6h)
	ip6 := serialize(t, ip6h, udp, gopacket.Payload("v6"))
	withEth := func(etype uint16, pkt []byte) []byte {
		return append(binary.BigEndian.AppendUint16(make([]byte, 12), etype), pkt...)
	}
	cases := []tunnelCase{
		{"empty", nil, ReasonGREShort, Key{}, nil, 0, 0},
		{"short", []byte{0, 0, 0x65}, ReasonGREShort, Key{}, nil, 0, 0},
		{"key past the end", []byte{0x20, 0, 0x65, 0x58, 0, 0}, ReasonGREShort, Key{}, nil, 0, 0},
		{"routing bit", routed, ReasonGREHeader, Key{}, nil, 0, 0},
		{"version 1 (PPTP)", []byte{0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0}, ReasonGREHeader, Key{}, nil, 0, 0},
		{"reserved bits ignored", reserved, ReasonNone, Key{Proto: ProtoGRE}, full, 4, len(full)},
		{"IPv4 in GRE", gre(t, false, nil, nil, etherTypeIPv4, full[14:]), ReasonGREProtocol, Key{}, nil, 0, 0},
		{"bridging", gre(t, false, nil, nil, etherTypeTEB, full), ReasonNone, Key{Proto: ProtoGRE}, full, 4, len(full)},
		{"bridging, checksum, key, sequence", teb, ReasonNone, Key{ProtoGRE, 42}, full, 16, len(full)},
		{"bridging, key only", gre(t, false, u32p(7), nil, etherTypeTEB, full), ReasonNone, Key{ProtoGRE, 7}, full, 8, len(full)},
		{"bridging short inner", gre(t, false, nil, nil, etherTypeTEB, full[:10]), ReasonShortInner, Key{}, nil, 0, 0},
		{"ERSPAN I", gre(t, false, nil, nil, greProtoERSPAN, full), ReasonNone, Key{Proto: ProtoERSPAN}, full, 4, len(full)},
		{"ERSPAN II", erspan2(t, 1, 100, 10, 3, 77, full), ReasonNone, Key{ProtoERSPAN, 100}, full, 8 + 8, len(full)},
		{"ERSPAN II cut", erspan2(t, 1, 100, 10, 3, 77, full[:40]), ReasonNone, Key{ProtoERSPAN, 100}, full[:40], 16, len(full)},
		{"ERSPAN II short", gre(t, false, nil, u32p(1), greProtoERSPAN, []byte{0x10, 0, 0, 100}), ReasonERSPANShort, Key{}, nil, 0, 0},
		{"ERSPAN II version 2", badVer, ReasonERSPANVersion, Key{}, nil, 0, 0},
		{"ERSPAN III", e3, ReasonNone, Key{ProtoERSPAN, 100}, full, 8 + 12, len(full)},
		{"ERSPAN III with sub-header", e3sub, ReasonNone, Key{ProtoERSPAN, 1023}, full, 8 + 20, len(full)},
		{"ERSPAN III sub-header past the end", e3sub[:8+12+4], ReasonERSPANShort, Key{}, nil, 0, 0},
		{"ERSPAN III short", e3[:8+11], ReasonERSPANShort, Key{}, nil, 0, 0},
		{"ERSPAN III frame type IP", erspan3(t, 5, erspan3Hdr{id: 100, ft: erspan3FrameIP}, ip), ReasonNone, Key{ProtoERSPAN, 100},
			withEth(etherTypeIPv4, ip), 8 + 12, len(full)},
		{"ERSPAN III frame type IP, cut", erspan3(t, 5, erspan3Hdr{id: 100, ft: erspan3FrameIP, sub: sub}, ip[:30]), ReasonNone,
			Key{ProtoERSPAN, 100}, withEth(etherTypeIPv4, ip[:30]), 8 + 20, len(full)},
		{"ERSPAN III frame type IP, IPv6", erspan3(t, 5, erspan3Hdr{id: 100, ft: erspan3FrameIP}, ip6), ReasonNone, Key{ProtoERSPAN, 100},
			withEth(etherTypeIPv6, ip6), 8 + 12, 14 + len(ip6)},
		{"ERSPAN III frame type IP, short", erspan3(t, 5, erspan3Hdr{id: 100, ft: erspan3FrameIP}, ip[:13]), ReasonShortInner, Key{}, nil, 0, 0},
		{"ERSPAN III version 1", gre(t, false, nil, nil, greProtoERSPAN3, append([]byte{0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, full...)),
			ReasonERSPANVersion, Key{}, nil, 0, 0},
	}
	checkTunnelCases(t, DecapGRE, cases)
}

// TestDecapIPv4GRE: what a raw IPv4 socket reads: the IP header (options
// too) is skipped by its IHL, the packet ends at its total length.
func TestDecapIPv4GRE(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	g := erspan2(t, 1, 100, 0, 0, 0, full)
	pkt := ipv4GRE(t, [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, g)
	withOpts := append([]byte{0x46}, pkt[1:20]...)
	binary.BigEndian.PutUint16(withOpts[2:], uint16(24+len(g)))
	withOpts = append(append(withOpts, 1, 1, 1, 0), g...) // NOP NOP NOP EOL
	padded := append(append([]byte{}, pkt...), 0, 0, 0, 0)
	long := append([]byte{}, pkt...)
	binary.BigEndian.PutUint16(long[2:], uint16(len(pkt)+1))
	cases := []tunnelCase{
		{"plain", pkt, ReasonNone, Key{ProtoERSPAN, 100}, full, 16, len(full)},
		{"IP options", withOpts, ReasonNone, Key{ProtoERSPAN, 100}, full, 16, len(full)},
		{"padding after the packet", padded, ReasonNone, Key{ProtoERSPAN, 100}, full, 16, len(full)},
		{"total length past the end", long, ReasonBadLength, Key{}, nil, 0, 0},
		{"not IPv4", append([]byte{0x60}, pkt[1:]...), ReasonBadLength, Key{}, nil, 0, 0},
		{"short", pkt[:19], ReasonBadLength, Key{}, nil, 0, 0},
	}
	checkTunnelCases(t, DecapIPv4GRE, cases)
}

// checkDecapInvariants holds for every frame a decapsulation accepts: the
// tunnel header and the frame are the input, back to back, and the
// original length is at least what is written.
func checkDecapInvariants(t *testing.T, in []byte, fr Frame) {
	t.Helper()
	if !bytes.Contains(in, append(append([]byte{}, fr.Tunnel...), fr.Inner...)) {
		t.Fatalf("tunnel header and frame are not the input's")
	}
	if fr.capLen() < ethHeaderLen && fr.EtherType == 0 || fr.OrigLen < fr.capLen() {
		t.Fatalf("frame of %d bytes, original length %d", fr.capLen(), fr.OrigLen)
	}
	m := frameMeta(nil, &fr) // never panics on what was accepted
	if fr.Key.Proto != ProtoVXLAN && len(m.comment) == 0 {
		t.Fatalf("no comment for %v", fr.Key)
	}
}

// FuzzDecapGENEVE: DecapGENEVE and the comment never panic, and what is
// accepted is consistent.
func FuzzDecapGENEVE(f *testing.F) {
	full := tcpFrame(f, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	f.Add(geneve(7, etherTypeTEB, geneveFlagCrit, []geneveOpt{{1, 0x80, []byte{1, 2, 3, 4}}}, full))
	f.Add(geneve(7, etherTypeIPv4, 0, nil, full[14:]))
	f.Add([]byte{1, 0, 0x65, 0x58, 0, 0, 7, 0, 0, 1, 2, 0x1f})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, r := DecapGENEVE(b)
		if r != ReasonNone {
			return
		}
		if fr.Key.Proto != ProtoGENEVE || fr.Key.ID > 0xffffff || len(fr.Tunnel)+len(fr.Inner) != len(b) {
			t.Fatalf("key %v, %d + %d bytes of %d", fr.Key, len(fr.Tunnel), len(fr.Inner), len(b))
		}
		checkDecapInvariants(t, b, fr)
	})
}

// FuzzDecapGRE: DecapIPv4GRE (and through it DecapGRE) and the metadata
// never panic, and what is accepted is consistent.
func FuzzDecapGRE(f *testing.F) {
	full := tcpFrame(f, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	for _, g := range [][]byte{
		erspan2(f, 1, 100, 10, 3, 7, full),
		erspan3(f, 1, erspan3Hdr{id: 5, sub: make([]byte, 8), gra: gra1588}, full),
		erspan3(f, 1, erspan3Hdr{id: 5, ft: erspan3FrameIP}, full[ethHeaderLen:]),
		gre(f, true, u32p(1), u32p(2), etherTypeTEB, full),
		gre(f, false, nil, nil, greProtoERSPAN, full),
	} {
		f.Add(ipv4GRE(f, [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, g))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, r := DecapIPv4GRE(b)
		if r != ReasonNone {
			return
		}
		if p := fr.Key.Proto; p != ProtoERSPAN && p != ProtoGRE || p == ProtoERSPAN && fr.Key.ID > erspanSessionID {
			t.Fatalf("key %v", fr.Key)
		}
		checkDecapInvariants(t, b, fr)
	})
}
