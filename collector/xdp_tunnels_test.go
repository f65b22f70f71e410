// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

// xdpCase is one golden frame of the GENEVE or GRE branches of xm_collect.
type xdpCase struct {
	name    string
	frame   []byte
	verdict uint32
	counter int // index of xm_col_counters that must move by one (-1: none)
	key     Key
	inner   []byte // the frame as written (GENEVE IP payloads behind a synthesized header)
	tunnel  int    // bytes of tunnel header kept
	origLen int
}

// runXDPCases runs each frame through the program: verdict, counter and,
// for frames handed to user space, the record as the collector reads it.
func runXDPCases(t *testing.T, p *xdpProgram, cases []xdpCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := p.counters(t)
			if got := p.run(t, tc.frame); got != tc.verdict {
				t.Fatalf("verdict %d, want %d", got, tc.verdict)
			}
			after := p.counters(t)
			for i := range after {
				want := before[i]
				if i == tc.counter {
					want++
				}
				if after[i] != want {
					t.Errorf("counter %d (%s): %d -> %d", i, colCounterReasons[i], before[i], after[i])
				}
			}
			recs := p.records(t)
			if tc.inner == nil {
				if len(recs) != 0 {
					t.Fatalf("%d records for a frame that is not received", len(recs))
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
			if r.key != tc.key || !bytes.Equal(r.inner, tc.inner) || len(r.tunnel) != tc.tunnel || r.origLen != tc.origLen {
				t.Errorf("record %v, %d-byte frame (equal %v), %d-byte tunnel header, original length %d; want %v, %d, %d, %d",
					r.key, len(r.inner), bytes.Equal(r.inner, tc.inner), len(r.tunnel), r.origLen, tc.key, len(tc.inner), tc.tunnel, tc.origLen)
			}
		})
	}
}

var xdpGeneveDst = netip.AddrPortFrom(xdpListen.Addr(), xdpGenevePort)

// TestXDPGoldenGENEVE: GENEVE with 0, 1 and many options, the critical
// and OAM bits, IPv4 and IPv6 payloads, and every malformed header.
func TestXDPGoldenGENEVE(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello, collector"))
	ip := full[ethHeaderLen:]
	synth := append(binary.BigEndian.AppendUint16(make([]byte, 12), etherTypeIPv4), ip...)
	opt := []geneveOpt{{0x0101, 0x80, []byte{1, 2, 3, 4}}}
	many := []geneveOpt{{1, 1, make([]byte, 124)}, {2, 2, make([]byte, 120)}} // 252 bytes, the most
	g := func(payload []byte) []byte { return outerFrame(t, outerOpts{dst: xdpGeneveDst}, payload) }
	k7 := Key{ProtoGENEVE, 7}
	cases := []xdpCase{
		{"no options", g(geneve(7, etherTypeTEB, 0, nil, full)), xdpDrop, colReceived, k7, full, 8, len(full)},
		{"one option", g(geneve(7, etherTypeTEB, 0, opt, full)), xdpDrop, colReceived, k7, full, 16, len(full)},
		{"252 bytes of options", g(geneve(7, etherTypeTEB, 0, many, full)), xdpDrop, colReceived, k7, full, 260, len(full)},
		{"critical bit", g(geneve(7, etherTypeTEB, geneveFlagCrit, opt, full)), xdpDrop, colReceived, k7, full, 16, len(full)},
		{"OAM bit", g(geneve(7, etherTypeTEB, geneveFlagOAM, nil, full)), xdpDrop, colReceived, k7, full, 8, len(full)},
		{"largest VNI", g(geneve(0xffffff, etherTypeTEB, 0, nil, full)), xdpDrop, colReceived, Key{ProtoGENEVE, 0xffffff}, full, 8, len(full)},
		{"cut frame", g(geneve(7, etherTypeTEB, 0, nil, full[:40])), xdpDrop, colReceived, k7, full[:40], 8, len(full)},
		{"IPv4 payload", g(geneve(8, etherTypeIPv4, 0, opt, ip)), xdpDrop, colReceived, Key{ProtoGENEVE, 8}, synth, 16, len(full)},
		{"Ethernet padding is not frame", outerFrame(t, outerOpts{dst: xdpGeneveDst, padTo: 300}, geneve(7, etherTypeTEB, 0, nil, full[:20])),
			xdpDrop, colReceived, k7, full[:20], 8, len(full)},
		{"version 1", g(append([]byte{0x40, 0, 0x65, 0x58, 0, 0, 7, 0}, full...)), xdpDrop, colCounter(ReasonGeneveVersion), Key{}, nil, 0, 0},
		{"options past the end", g([]byte{2, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4}), xdpDrop, colCounter(ReasonGeneveShort), Key{}, nil, 0, 0},
		{"short header", g([]byte{0, 0, 0x65, 0x58}), xdpDrop, colCounter(ReasonGeneveShort), Key{}, nil, 0, 0},
		{"MPLS payload", g(geneve(7, 0x8847, 0, nil, full)), xdpDrop, colCounter(ReasonGeneveProtocol), Key{}, nil, 0, 0},
		{"empty IP payload", g(geneve(7, etherTypeIPv4, 0, nil, nil)), xdpDrop, colCounter(ReasonShortInner), Key{}, nil, 0, 0},
		{"short Ethernet payload", g(geneve(7, etherTypeTEB, 0, opt, full[:13])), xdpDrop, colCounter(ReasonShortInner), Key{}, nil, 0, 0},
		{"UDP length past the packet", outerFrame(t, outerOpts{dst: xdpGeneveDst, udpLen: 3000}, geneve(7, etherTypeTEB, 0, nil, full)),
			xdpDrop, colCounter(ReasonBadLength), Key{}, nil, 0, 0},
		{"UDP length past the IP packet, into the padding", outerFrame(t, outerOpts{dst: xdpGeneveDst, padTo: 300, udpLen: 8 + 8 + 20 + 10}, geneve(7, etherTypeTEB, 0, nil, full[:20])),
			xdpDrop, colCounter(ReasonBadLength), Key{}, nil, 0, 0},
		{"another port passes", outerFrame(t, outerOpts{dst: netip.AddrPortFrom(xdpListen.Addr(), 6082)}, geneve(7, etherTypeTEB, 0, nil, full)),
			xdpPass, -1, Key{}, nil, 0, 0},
		{"first fragment passes", outerFrame(t, outerOpts{dst: xdpGeneveDst, mf: true}, geneve(7, etherTypeTEB, 0, nil, full)), xdpPass, colFragment, Key{}, nil, 0, 0},
	}
	runXDPCases(t, loadXDPProgram(t, xdpListen, 0), cases)
}

// TestXDPGoldenGRE: ERSPAN I, II, III with and without the platform
// sub-header, bridging with checksum, key and sequence, and every malformed
// header; GRE passes when the input is off.
func TestXDPGoldenGRE(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello, collector"))
	o := func(payload []byte) []byte { return outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE}, payload) }
	sub := []byte{erspanPlatfTime << 2, 0, 0, 1, 0x65, 0x8f, 0x2b, 0x00}
	e3 := erspan3(t, 5, erspan3Hdr{id: 100, vlan: 10, hwid: 3, egress: true}, full)
	e3sub := erspan3(t, 5, erspan3Hdr{id: 1023, gra: gra1588, ts: 5, sub: sub}, full)
	badVer := erspan2(t, 1, 100, 0, 0, 0, full)
	badVer[8] = 0x20
	long := o(erspan2(t, 1, 100, 0, 0, 0, full))
	binary.BigEndian.PutUint16(long[14+2:], uint16(len(long)-14+10)) // IPv4 total length past the frame
	cases := []xdpCase{
		{"ERSPAN I", o(gre(t, false, nil, nil, greProtoERSPAN, full)), xdpDrop, colReceived, Key{Proto: ProtoERSPAN}, full, 4, len(full)},
		{"ERSPAN II", o(erspan2(t, 1, 100, 10, 3, 77, full)), xdpDrop, colReceived, Key{ProtoERSPAN, 100}, full, 16, len(full)},
		{"ERSPAN II cut", o(erspan2(t, 1, 100, 10, 3, 77, full[:40])), xdpDrop, colReceived, Key{ProtoERSPAN, 100}, full[:40], 16, len(full)},
		{"ERSPAN III", o(e3), xdpDrop, colReceived, Key{ProtoERSPAN, 100}, full, 20, len(full)},
		{"ERSPAN III with sub-header", o(e3sub), xdpDrop, colReceived, Key{ProtoERSPAN, 1023}, full, 28, len(full)},
		{"ERSPAN III frame type IP", o(erspan3(t, 5, erspan3Hdr{id: 100, ft: erspan3FrameIP}, full[ethHeaderLen:])), xdpDrop, colReceived,
			Key{ProtoERSPAN, 100}, append(binary.BigEndian.AppendUint16(make([]byte, 12), etherTypeIPv4), full[ethHeaderLen:]...), 20, len(full)},
		{"bridging, checksum, key, sequence", o(gre(t, true, u32p(42), u32p(9), etherTypeTEB, full)), xdpDrop, colReceived, Key{ProtoGRE, 42}, full, 16, len(full)},
		{"bridging, key", o(gre(t, false, u32p(7), nil, etherTypeTEB, full)), xdpDrop, colReceived, Key{ProtoGRE, 7}, full, 8, len(full)},
		{"bridging", o(gre(t, false, nil, nil, etherTypeTEB, full)), xdpDrop, colReceived, Key{Proto: ProtoGRE}, full, 4, len(full)},
		{"IPv4 options", outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE, options: true}, erspan2(t, 1, 100, 0, 0, 0, full)),
			xdpDrop, colReceived, Key{ProtoERSPAN, 100}, full, 16, len(full)},
		{"Ethernet padding is not frame", outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE, padTo: 300}, erspan2(t, 1, 100, 0, 0, 0, full[:20])),
			xdpDrop, colReceived, Key{ProtoERSPAN, 100}, full[:20], 16, len(full)},
		{"routing bit", o([]byte{0x40, 0, 0x65, 0x58}), xdpDrop, colCounter(ReasonGREHeader), Key{}, nil, 0, 0},
		{"version 1 (PPTP)", o([]byte{0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0}), xdpDrop, colCounter(ReasonGREHeader), Key{}, nil, 0, 0},
		{"short", o([]byte{0, 0, 0x65}), xdpDrop, colCounter(ReasonGREShort), Key{}, nil, 0, 0},
		{"key past the end", o([]byte{0x20, 0, 0x65, 0x58, 0, 0}), xdpDrop, colCounter(ReasonGREShort), Key{}, nil, 0, 0},
		{"sequence past the end", o([]byte{0x10, 0, 0x88, 0xbe, 0, 0}), xdpDrop, colCounter(ReasonGREShort), Key{}, nil, 0, 0},
		{"IPv4 in GRE", o(gre(t, false, nil, nil, etherTypeIPv4, full[14:])), xdpDrop, colCounter(ReasonGREProtocol), Key{}, nil, 0, 0},
		{"ERSPAN II short", o(gre(t, false, nil, u32p(1), greProtoERSPAN, []byte{0x10, 0, 0, 100})), xdpDrop, colCounter(ReasonERSPANShort), Key{}, nil, 0, 0},
		{"ERSPAN II version 2", o(badVer), xdpDrop, colCounter(ReasonERSPANVersion), Key{}, nil, 0, 0},
		{"ERSPAN III sub-header past the end", o(e3sub[:8+12+4]), xdpDrop, colCounter(ReasonERSPANShort), Key{}, nil, 0, 0},
		{"ERSPAN III version 1", o(gre(t, false, nil, nil, greProtoERSPAN3, append([]byte{0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, full...))),
			xdpDrop, colCounter(ReasonERSPANVersion), Key{}, nil, 0, 0},
		{"bridging short inner", o(gre(t, false, nil, nil, etherTypeTEB, full[:10])), xdpDrop, colCounter(ReasonShortInner), Key{}, nil, 0, 0},
		{"IPv4 length past the frame", long, xdpDrop, colCounter(ReasonBadLength), Key{}, nil, 0, 0},
		{"first fragment passes", outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE, mf: true}, erspan2(t, 1, 100, 0, 0, 0, full)),
			xdpPass, colFragment, Key{}, nil, 0, 0},
		{"to another address passes", outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE, dst: netip.MustParseAddrPort("10.0.0.3:0")}, erspan2(t, 1, 100, 0, 0, 0, full)),
			xdpPass, -1, Key{}, nil, 0, 0},
	}
	runXDPCases(t, loadXDPProgram(t, xdpListen, 0), cases)

	off := loadXDPProgramWith(t, xdpListen, 0, programInputs{vxlan: xdpListen.Port()})
	runXDPCases(t, off, []xdpCase{
		{"GRE passes without the input", o(erspan2(t, 1, 100, 0, 0, 0, full)), xdpPass, -1, Key{}, nil, 0, 0},
		{"GENEVE passes without the input", outerFrame(t, outerOpts{dst: xdpGeneveDst}, geneve(7, etherTypeTEB, 0, nil, full)), xdpPass, -1, Key{}, nil, 0, 0},
	})
}

// TestXDPGoldenTunnelsIPv6: GENEVE and GRE to an IPv6 listener.
func TestXDPGoldenTunnelsIPv6(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("six"))
	p := loadXDPProgram(t, xdpListen6, 0)
	runXDPCases(t, p, []xdpCase{
		{"GENEVE", outerFrame(t, outerOpts{dst: netip.AddrPortFrom(xdpListen6.Addr(), xdpGenevePort), src: xdpSender6}, geneve(7, etherTypeTEB, 0, nil, full)),
			xdpDrop, colReceived, Key{ProtoGENEVE, 7}, full, 8, len(full)},
		{"ERSPAN III", outerFrame(t, outerOpts{dst: xdpListen6, src: xdpSender6, protocol: layers.IPProtocolGRE}, erspan3(t, 1, erspan3Hdr{id: 3}, full)),
			xdpDrop, colReceived, Key{ProtoERSPAN, 3}, full, 20, len(full)},
	})
}

// checkXDPAgrees runs frame (carrying payload to an input) through the
// program and payload through the socket path's decap: both must agree on
// the drop reason, or on the session, the tunnel header and the frame.
func checkXDPAgrees(t *testing.T, p *xdpProgram, frame, payload []byte, decap Decapper) {
	t.Helper()
	before := p.counters(t)
	if got := p.run(t, frame); got != xdpDrop {
		t.Fatalf("verdict %d for a packet to the input", got)
	}
	after := p.counters(t)
	fr, reason := decap(payload)
	recs := p.records(t)
	if reason != ReasonNone {
		if len(recs) != 0 || after[colCounter(reason)] != before[colCounter(reason)]+1 {
			t.Fatalf("decap drops as %s; XDP made %d records, counters %v -> %v", reason, len(recs), before, after)
		}
		return
	}
	flat := fr.flatten(nil)
	if len(recs) != 1 || recs[0].key != fr.Key || !bytes.Equal(recs[0].inner, flat.Inner) ||
		!bytes.Equal(recs[0].tunnel, fr.Tunnel) || recs[0].origLen != fr.OrigLen {
		t.Fatalf("decap accepts %v, %d bytes; XDP records %+v", fr.Key, len(flat.Inner), recs)
	}
}

// FuzzXDPDecapGENEVE: xm_collect and DecapGENEVE agree on every UDP
// payload to the GENEVE port.
func FuzzXDPDecapGENEVE(f *testing.F) {
	full := tcpFrame(f, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	f.Add(geneve(7, etherTypeTEB, geneveFlagCrit, []geneveOpt{{1, 0x80, []byte{1, 2, 3, 4}}}, full))
	f.Add(geneve(7, etherTypeIPv6, 0, nil, []byte{0x60, 0, 0, 0, 0, 0, 17, 64}))
	f.Add([]byte{1, 0, 0x65, 0x58, 0, 0, 7, 0, 0, 1, 2, 0x1f})
	f.Add([]byte{})
	p := loadXDPProgram(f, xdpListen, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 8000 {
			return
		}
		checkXDPAgrees(t, p, outerFrame(t, outerOpts{dst: xdpGeneveDst}, payload), payload, DecapGENEVE)
	})
}

// FuzzXDPDecapGRE: xm_collect and DecapGRE agree on every GRE packet to
// the listen address.
func FuzzXDPDecapGRE(f *testing.F) {
	full := tcpFrame(f, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	f.Add(erspan2(f, 1, 100, 10, 3, 7, full))
	f.Add(erspan3(f, 1, erspan3Hdr{id: 5, sub: make([]byte, 8), gra: gra1588}, full))
	f.Add(erspan3(f, 1, erspan3Hdr{id: 5, ft: erspan3FrameIP}, full[ethHeaderLen:]))
	f.Add(gre(f, true, u32p(1), u32p(2), etherTypeTEB, full))
	f.Add(gre(f, false, nil, nil, greProtoERSPAN, full))
	f.Add([]byte{0xb0, 0, 0x65, 0x58})
	p := loadXDPProgram(f, xdpListen, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 8000 {
			return
		}
		checkXDPAgrees(t, p, outerFrame(t, outerOpts{protocol: layers.IPProtocolGRE}, payload), payload, DecapGRE)
	})
}
