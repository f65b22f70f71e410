// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/config"
)

// greSpec is the GRE (and ERSPAN) encapsulation of a test frame.
type greSpec struct {
	csum, key, seq bool
	erspan         int    // 0: none (bridging or IP), 1, 2 or 3: ERSPAN type
	sub            bool   // ERSPAN III: O bit and an 8-byte platform sub-header
	ptype          uint16 // protocol type; 0: from erspan (or bridging)
	extraFlags     uint16 // ORed into the first 16 bits (R, version, ...)
	session        uint16 // ERSPAN session id
	ipFrame        bool   // ERSPAN III: frame type IP (FT 2), the IP packet without Ethernet
}

// erspanHeader is the ERSPAN type II or III header (with the sub-header).
func erspanHeader(g greSpec) []byte {
	switch g.erspan {
	case 2:
		h := make([]byte, erspan2HeaderLen)
		binary.BigEndian.PutUint16(h, 1<<12|100)            // version 1, VLAN 100
		binary.BigEndian.PutUint16(h[2:], 0x0800|g.session) // COS, En, T, session id
		return h
	case 3:
		h := make([]byte, erspan3HeaderLen)
		binary.BigEndian.PutUint16(h, 2<<12|100) // version 2, VLAN 100
		binary.BigEndian.PutUint16(h[2:], g.session)
		binary.BigEndian.PutUint32(h[4:], 0x12345678) // timestamp
		h[10] = 0x02                                  // D (direction) and Gra bits
		if g.ipFrame {
			h[10] |= erspan3FrameIP << 2 // FT, bits 14-10 of the last 16
		}
		if g.sub {
			h[11] |= 0x01
			h = append(h, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1)
		}
		return h
	}
	return nil
}

// greFrame is the frame vxlanFrame builds for f, its tunnel replaced by
// GRE as g says: outer IPv4 protocol 47, GRE with the optional fields and a
// correct GRE checksum, the ERSPAN header, then the inner Ethernet frame (or
// its IP packet, for an IP protocol type).
func greFrame(tb testing.TB, f frameSpec, g greSpec) []byte {
	tb.Helper()
	inner := innerFrame(tb, f)
	ptype := g.ptype
	switch {
	case ptype == 0 && g.erspan == 3:
		ptype = greERSPAN3
	case ptype == 0 && g.erspan > 0:
		ptype = greERSPAN
	case ptype == 0:
		ptype = greEthernet
	case ptype == geneveIPv4 || ptype == geneveIPv6:
		inner = inner[14:]
	}
	if g.ipFrame {
		inner = inner[14:]
	}
	flags := g.extraFlags
	var opt []byte
	if g.csum {
		flags |= greC
		opt = append(opt, 0, 0, 0, 0)
	}
	if g.key {
		flags |= greK
		opt = append(opt, 0, 0, 0x01, 0x2c)
	}
	if g.seq || g.erspan == 2 || g.erspan == 3 {
		flags |= greS
		opt = append(opt, 0, 0, 0x30, 0x39)
	}
	gre := binary.BigEndian.AppendUint16(nil, flags)
	gre = binary.BigEndian.AppendUint16(gre, ptype)
	gre = append(append(append(gre, opt...), erspanHeader(g)...), inner...)
	if g.csum {
		binary.BigEndian.PutUint16(gre[4:], checksum(gre))
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: f.ipID, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolGRE,
		SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: senderMAC, DstMAC: lbMACFake, EthernetType: layers.EthernetTypeIPv4}, ip, gopacket.Payload(gre)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// expectGREForward is a GRE frame as the load balancer sends it on: next-hop
// MACs, destination address, TTL one lower, IPv4 checksum recomputed in
// full; GRE header and payload byte for byte as they came.
func expectGREForward(frame []byte, dstMAC, srcMAC net.HardwareAddr, dst netip.Addr) []byte {
	out := append([]byte(nil), frame...)
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC)
	d := dst.As4()
	copy(out[14+16:14+20], d[:])
	out[14+8]--
	fixIPChecksum(out)
	return out
}

func greConfig(algo, aff string, backends ...config.Backend) *config.LoadBalancer {
	return protocolConfig(config.ProtocolGRE, algo, aff, backends...)
}

// TestGoldenGRE runs GRE, ERSPAN I/II/III and bridging frames through
// BPF_PROG_TEST_RUN on a GRE listener: verdict, exact output bytes at the
// backend the Go mirror of the hash predicts (GRE checksum, key and
// sequence untouched and the checksum still valid), and the counter.
func TestGoldenGRE(t *testing.T) {
	g := newGoldenLab(t)
	maglev := greConfig("maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	if err := g.bal.Apply(maglev); err != nil {
		t.Fatal(err)
	}
	predict := g.maglevPredictor(1, 1)
	base := frameSpec{src: mirror, dst: vip, ipID: 11}
	gen := func(gs greSpec) []byte { return greFrame(t, base, gs) }
	toPredicted := func(in []byte) []byte {
		dst, mac := g.predictedBackend(t, in, config.ProtocolGRE, predict)
		return expectGREForward(in, mac, g.lb.MAC, dst)
	}
	// a later fragment goes where its first fragment went (lb_frags)
	toFirstFragments := func(first []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			dst, mac := g.predictedBackend(t, first, config.ProtocolGRE, predict)
			return expectGREForward(in, mac, g.lb.MAC, dst)
		}
	}
	same := func(in []byte) []byte { return in }
	v6 := base
	v6.innerSrc, v6.inDst, v6.innerSP, v6.innerDP = netip.MustParseAddr("fd00::230"), netip.MustParseAddr("fd00::161"), 1234, 80
	cutGRE := func(in []byte, n int) []byte { // the IP packet ends n bytes into GRE
		out := append([]byte(nil), in[:14+20+n]...)
		binary.BigEndian.PutUint16(out[14+2:], uint16(20+n))
		fixIPChecksum(out)
		return out
	}
	frag1, frag2 := fragment(gen(greSpec{erspan: 2, csum: true}), 24)
	cases := []protocolCase{
		{"first fragment: placed by what it holds", maglev, frag1, 3, toPredicted, StatFragment, ""},
		{"later fragment follows", maglev, frag2, 3, toFirstFragments(frag1), StatFragment, ""},
		{"bridging (0x6558), no optional fields", maglev, gen(greSpec{}), 3, toPredicted, StatTX, "inner"},
		{"bridging with checksum, key and sequence", maglev, gen(greSpec{csum: true, key: true, seq: true}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type I (no sequence, no header)", maglev, gen(greSpec{erspan: 1}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type II", maglev, gen(greSpec{erspan: 2, session: 42}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type II, inner IPv6", maglev, greFrame(t, v6, greSpec{erspan: 2, session: 42}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type III", maglev, gen(greSpec{erspan: 3, session: 7}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type III with the platform sub-header", maglev, gen(greSpec{erspan: 3, sub: true, session: 7}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type III, frame type IP", maglev, gen(greSpec{erspan: 3, session: 7, ipFrame: true}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type III, frame type IP, sub-header, inner IPv6", maglev, greFrame(t, v6, greSpec{erspan: 3, sub: true, ipFrame: true}), 3, toPredicted, StatTX, "inner"},
		{"ERSPAN type II with a GRE checksum", maglev, gen(greSpec{erspan: 2, csum: true}), 3, toPredicted, StatTX, "inner"},
		{"IPv4 payload (0x0800)", maglev, gen(greSpec{ptype: 0x0800, key: true}), 3, toPredicted, StatTX, "inner"},
		{"MPLS payload: outer hash", maglev, gen(greSpec{ptype: 0x8847}), 3, toPredicted, StatHashFallback, "outer"},
		{"version 1 (PPTP): not read, outer hash", maglev, gen(greSpec{extraFlags: 1, key: true}), 3, toPredicted, StatHashFallback, "outer"},
		{"routing bit: not read, outer hash", maglev, gen(greSpec{extraFlags: 0x4000}), 3, toPredicted, StatHashFallback, "outer"},
		{"ERSPAN III header cut short: outer hash", maglev, cutGRE(gen(greSpec{erspan: 3, sub: true}), 8+10), 3, toPredicted, StatHashFallback, "outer"},
		{"outer affinity", greConfig("wrr", "outer", backend("b1", b1Addr, 0, 1)), gen(greSpec{erspan: 2}), 3,
			func(in []byte) []byte { return expectGREForward(in, g.b1MAC, g.lb.MAC, b1Addr) }, StatTX, ""},
		{"GRE header past the packet: dropped", maglev, cutGRE(gen(greSpec{csum: true, key: true, seq: true}), 8), 1, nil, StatDropMalformed, ""},
		{"GRE header past the packet, affinity none: dropped", greConfig("wrr", "none", backend("b1", b1Addr, 0, 1)), cutGRE(gen(greSpec{seq: true}), 6), 1, nil, StatDropMalformed, ""},
		{"GRE shorter than 4 bytes: dropped", maglev, cutGRE(gen(greSpec{}), 2), 1, nil, StatDropMalformed, ""},
		{"VXLAN to the VIP on a GRE listener: not the listener", maglev, vxlanFrame(t, frameSpec{src: mirror, dst: vip, sport: 1, vni: 1}), 2, same, StatPassNotListener, ""},
		{"GRE to another address", maglev, greFrame(t, frameSpec{src: mirror, dst: netip.MustParseAddr("10.0.0.99")}, greSpec{}), 2, same, StatPassNotListener, ""},
		{"GRE on a VXLAN listener", lbConfig("wrr", "outer", backend("b1", b1Addr, 0, 1)), gen(greSpec{}), 2, same, StatPassNotListener, ""},
		{"TTL 1", maglev, withTTL(gen(greSpec{erspan: 2}), 1), 1, nil, StatDropTTL, ""},
	}
	runProtocolCases(t, g, cases, func(t *testing.T, c protocolCase, out []byte) {
		if c.verdict == 3 && c.stat != StatFragment && binary.BigEndian.Uint16(out[34:])&greC != 0 && checksum(out[34:]) != 0 {
			t.Errorf("forwarded GRE checksum is not valid")
		}
	})
}

// TestGREHashReadsPastHeaders: every GRE variant carrying the same inner
// frame hashes as the VXLAN frame does, in both directions, so a flow's
// mirror from a switch and from a host agree.
func TestGREHashReadsPastHeaders(t *testing.T) {
	fwd := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 7}
	rev := fwd
	rev.innerSrc, rev.inDst, rev.innerSP, rev.innerDP = netip.MustParseAddr("192.168.0.161"), netip.MustParseAddr("192.168.0.230"), 57032, 1234
	specs := []greSpec{{}, {csum: true, key: true, seq: true}, {erspan: 1}, {erspan: 2}, {erspan: 3}, {erspan: 3, sub: true}, {ptype: 0x0800},
		{erspan: 3, ipFrame: true}, {erspan: 3, sub: true, ipFrame: true}}
	checkHashesLikeVXLAN(t, config.ProtocolGRE, fwd, rev, specs, greFrame)
}

// TestGREBothDirections: WRR over two backends on a GRE listener, both
// directions of several inner flows as ERSPAN II and III (also of frame
// type IP) from two switches (other outer sources): one backend per flow,
// both backends used.
func TestGREBothDirections(t *testing.T) {
	g := newGoldenLab(t)
	if err := g.bal.Apply(greConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))); err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("192.168.0.230"), netip.MustParseAddr("192.168.0.161")
	sw2 := netip.MustParseAddr("10.0.0.231")
	checkOneBackendPerFlow(t, g, 8, func(flow int) [][]byte {
		port := uint16(3000 + flow)
		var frames [][]byte
		for i, s := range []frameSpec{
			{innerSrc: a, inDst: b, innerSP: port, innerDP: 443, src: mirror},
			{innerSrc: b, inDst: a, innerSP: 443, innerDP: port, src: sw2},
			{innerSrc: b, inDst: a, innerSP: 443, innerDP: port, src: mirror},
			{innerSrc: b, inDst: a, innerSP: 443, innerDP: port, src: sw2}, // ERSPAN III of frame type IP
		} {
			s.dst = vip
			frames = append(frames, greFrame(t, s, greSpec{erspan: 2 + i%2, sub: i == 1, ipFrame: i == 3}))
		}
		return frames
	})
}

// FuzzGREFlowHash: the Go mirror of the GRE parser never panics and is
// deterministic, on frames and on bare GRE headers.
func FuzzGREFlowHash(f *testing.F) {
	base := frameSpec{src: mirror, dst: vip}
	for _, gs := range []greSpec{{}, {csum: true, key: true, seq: true}, {erspan: 2}, {erspan: 3, sub: true}, {ptype: 0x86dd}, {extraFlags: 1}, {erspan: 3, ipFrame: true}} {
		fr := greFrame(f, base, gs)
		f.Add(fr)
		f.Add(fr[34:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDeterministic(t, func(aff string) (uint32, bool) { return ListenerFlowHash(b, config.ProtocolGRE, aff) })
		greOK(b)
		greInnerHash(b)
	})
}

// FuzzGREDataPath runs arbitrary frames through the BPF program on a GRE
// listener: one verdict per packet; what it forwards goes to the backend
// the Go mirror predicts, with everything past the outer IP header as it
// came.
func FuzzGREDataPath(f *testing.F) {
	base := frameSpec{src: mirror, dst: vip}
	for _, gs := range []greSpec{{}, {csum: true, key: true, seq: true}, {erspan: 1}, {erspan: 2}, {erspan: 3, sub: true}, {ptype: 0x0800}, {extraFlags: 0x4000}, {erspan: 3, sub: true, ipFrame: true}} {
		f.Add(greFrame(f, base, gs))
	}
	fuzzProtocolDataPath(f, config.ProtocolGRE, func(t *testing.T, frame, out []byte) {
		l3 := l3Offset(out)
		ihl := int(frame[l3]&0xf) * 4
		if !bytes.Equal(out[l3+ihl:], frame[l3+ihl:]) {
			t.Fatalf("bytes past the outer IP header changed")
		}
	})
}

// TestGREFramesDecode: gopacket, a dissector xmirror did not write, finds
// the inner TCP flow in the bridging and ERSPAN II frames the GRE tests
// build, so their layout is the standard one.
func TestGREFramesDecode(t *testing.T) {
	for _, gs := range []greSpec{{}, {csum: true, key: true, seq: true}, {erspan: 2, session: 42}} {
		p := gopacket.NewPacket(greFrame(t, frameSpec{src: mirror, dst: vip}, gs), layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("%+v: %v", gs, el.Error())
		}
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || tcp.SrcPort != 1234 || tcp.DstPort != 57032 {
			t.Errorf("%+v: no inner TCP 1234 -> 57032 in %v", gs, p)
		}
		if gs.erspan == 2 {
			if e, _ := p.Layer(layers.LayerTypeERSPANII).(*layers.ERSPANII); e == nil || e.SessionID != 42 {
				t.Errorf("ERSPAN II session: %v", p)
			}
		}
	}
}
