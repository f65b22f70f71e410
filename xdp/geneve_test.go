// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xmirror/xmirror/config"
)

// geneveSpec is the GENEVE header of a test frame (RFC 8926 section 3.4).
type geneveSpec struct {
	options  int    // options of 4 data bytes each (8 bytes with their header)
	words    int    // options as one option of this many 4-byte words (header included); overrides options
	critical bool   // C bit, and the critical bit of every option's type
	oam      bool   // O bit
	version  uint8  // 0 today
	ptype    uint16 // protocol type; 0: Ethernet (0x6558)
	optLen   int    // Opt Len field when > 0, whatever the options are
}

// geneveHeader builds the header and its options.
func geneveHeader(g geneveSpec, vni uint32) []byte {
	var opts []byte
	typ := byte(0x01)
	if g.critical {
		typ |= 0x80
	}
	if g.words > 0 {
		// one option of class 0x0103 (Linux) filling words*4 bytes
		opts = append(opts, 0x01, 0x03, typ, byte(g.words-1))
		opts = append(opts, bytes.Repeat([]byte{0xab}, (g.words-1)*4)...)
	}
	for i := range g.options {
		opts = append(opts, 0x01, 0x08, typ, 1, 0xde, 0xad, byte(i), 0xef)
	}
	ptype := g.ptype
	if ptype == 0 {
		ptype = geneveEthernet
	}
	optLen := len(opts) / 4
	if g.optLen > 0 {
		optLen = g.optLen
	}
	h := make([]byte, geneveHeaderLen, geneveHeaderLen+len(opts))
	h[0] = g.version<<6 | byte(optLen)
	if g.oam {
		h[1] |= 0x80
	}
	if g.critical {
		h[1] |= 0x40
	}
	binary.BigEndian.PutUint16(h[2:], ptype)
	h[4], h[5], h[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	return append(h, opts...)
}

// geneveFrame is the frame vxlanFrame builds for f, with the VXLAN header
// replaced by g's GENEVE header and the destination port 6081 (unless
// f.dport says otherwise). A non-Ethernet protocol type carries the inner
// packet without its Ethernet header.
func geneveFrame(tb testing.TB, f frameSpec, g geneveSpec) []byte {
	tb.Helper()
	vx := vxlanFrame(tb, f)
	u := udpOffset(vx)
	inner := vx[u+16:]
	if g.ptype != 0 && g.ptype != geneveEthernet {
		inner = inner[14:]
	}
	payload := append(geneveHeader(g, f.vni), inner...)
	out := append(append([]byte(nil), vx[:u+8]...), payload...)
	l3 := l3Offset(out)
	binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
	fixIPChecksum(out)
	dport := f.dport
	if dport == 0 {
		dport = config.DefaultGENEVEPort
	}
	binary.BigEndian.PutUint16(out[u+2:], dport)
	binary.BigEndian.PutUint16(out[u+4:], uint16(len(out)-u))
	setUDPChecksum(out, f.zeroUDPChecksum)
	return out
}

func geneveConfig(algo, aff string, backends ...config.Backend) *config.LoadBalancer {
	return protocolConfig(config.ProtocolGENEVE, algo, aff, backends...)
}

// TestGoldenGENEVE runs GENEVE header variants through BPF_PROG_TEST_RUN on
// a GENEVE listener: the verdict, the exact output bytes (for Maglev, at the
// backend the Go mirror of the hash predicts) and the counter that explains
// it. hashed says how: "inner" (no fallback), "outer" (the fallback event).
func TestGoldenGENEVE(t *testing.T) {
	g := newGoldenLab(t)
	maglev := geneveConfig("maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	outer := geneveConfig("maglev", "outer", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	if err := g.bal.Apply(maglev); err != nil {
		t.Fatal(err)
	}
	predict := g.maglevPredictor(1, 1)
	base := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 7, ipID: 9}
	gen := func(gs geneveSpec) []byte { return geneveFrame(t, base, gs) }
	v6 := base
	v6.innerSrc, v6.inDst, v6.innerSP, v6.innerDP = netip.MustParseAddr("fd00::230"), netip.MustParseAddr("fd00::161"), 1234, 80
	// forwarded to the backend the Go mirror's hash (on a GENEVE listener) picks
	toPredicted := func(in []byte) []byte {
		dst, mac := g.predictedBackend(t, in, config.ProtocolGENEVE, predict)
		return expectForward(in, mac, g.lb.MAC, dst, 0)
	}
	toB1 := func(in []byte) []byte { return expectForward(in, g.b1MAC, g.lb.MAC, b1Addr, 0) }
	same := func(in []byte) []byte { return in }

	// fragments carry the whole datagram's UDP checksum: the expected bytes
	// are the fragments of the expected whole frame
	whole := gen(geneveSpec{options: 2})
	frag1, frag2 := fragment(whole, 24)
	fragOf := func(i int) func([]byte) []byte {
		return func([]byte) []byte {
			// a later fragment goes where its first fragment went (lb_frags)
			dst, mac := g.predictedBackend(t, frag1, config.ProtocolGENEVE, predict)
			f1, f2 := fragment(expectForward(whole, mac, g.lb.MAC, dst, 0), 24)
			return [][]byte{f1, f2}[i]
		}
	}
	cases := []protocolCase{
		{"first fragment: placed by what it holds, options not judged", maglev, frag1, 3, fragOf(0), StatFragment, ""},
		{"later fragment follows", maglev, frag2, 3, fragOf(1), StatFragment, ""},
		{"no options", maglev, gen(geneveSpec{}), 3, toPredicted, StatTX, "inner"},
		{"one option", maglev, gen(geneveSpec{options: 1}), 3, toPredicted, StatTX, "inner"},
		{"many options", maglev, gen(geneveSpec{options: 7}), 3, toPredicted, StatTX, "inner"},
		{"options of the most length (252 bytes)", maglev, gen(geneveSpec{words: 63}), 3, toPredicted, StatTX, "inner"},
		{"critical bit: forwarded like any other", maglev, gen(geneveSpec{options: 2, critical: true}), 3, toPredicted, StatTX, "inner"},
		{"OAM bit: forwarded like any other", maglev, gen(geneveSpec{oam: true}), 3, toPredicted, StatTX, "inner"},
		{"inner IPv4 without Ethernet (protocol type 0x0800)", maglev, gen(geneveSpec{options: 1, ptype: 0x0800}), 3, toPredicted, StatTX, "inner"},
		{"inner IPv6 without Ethernet (protocol type 0x86dd)", maglev, geneveFrame(t, v6, geneveSpec{options: 3, ptype: 0x86dd}), 3, toPredicted, StatTX, "inner"},
		{"inner IPv6 frame", maglev, geneveFrame(t, v6, geneveSpec{options: 1}), 3, toPredicted, StatTX, "inner"},
		{"non-Ethernet protocol type (MPLS): outer hash", maglev, gen(geneveSpec{options: 1, ptype: 0x8847}), 3, toPredicted, StatHashFallback, "outer"},
		{"version 1: not judged, outer hash", maglev, gen(geneveSpec{options: 1, version: 1}), 3, toPredicted, StatHashFallback, "outer"},
		{"inner frame cut short: outer hash", maglev, shorten(gen(geneveSpec{options: 2}), 14+20+8+8+16+10), 3, toPredicted, StatHashFallback, "outer"},
		{"zero UDP checksum stays zero", maglev, geneveFrame(t, frameSpec{src: mirror, dst: vip, sport: 3, vni: 7, zeroUDPChecksum: true}, geneveSpec{options: 1}), 3, toPredicted, StatTX, "inner"},
		{"backend port differs: port and checksum rewritten", geneveConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 6082, 1)), gen(geneveSpec{options: 1}), 3,
			func(in []byte) []byte { return expectForward(in, g.b1MAC, g.lb.MAC, b1Addr, 6082) }, StatTX, "inner"},
		{"wrr outer affinity", geneveConfig("wrr", "outer", backend("b1", b1Addr, 0, 1)), gen(geneveSpec{options: 1}), 3, toB1, StatTX, ""},
		{"options past the datagram: dropped", maglev, gen(geneveSpec{options: 1, optLen: 63}), 1, nil, StatDropMalformed, ""},
		{"most options announced, none there: dropped", maglev, shorten(gen(geneveSpec{optLen: 63}), 14+20+8+8+40), 1, nil, StatDropMalformed, ""},
		{"options past the datagram with outer affinity: dropped", outer, gen(geneveSpec{options: 1, optLen: 63}), 1, nil, StatDropMalformed, ""},
		{"options past the datagram with affinity none: dropped", geneveConfig("wrr", "none", backend("b1", b1Addr, 0, 1)), gen(geneveSpec{options: 1, optLen: 63}), 1, nil, StatDropMalformed, ""},
		{"header cut short: dropped", maglev, shorten(gen(geneveSpec{}), 14+20+8+6), 1, nil, StatDropMalformed, ""},
		{"VXLAN port on a GENEVE listener: not the listener", maglev, vxlanFrame(t, base), 2, same, StatPassNotListener, ""},
	}
	runProtocolCases(t, g, cases, nil)
}

// TestGENEVEHashReadsPastOptions: a GENEVE frame hashes exactly as the VXLAN
// frame carrying the same inner packet, whatever its options, so a flow
// keeps its collector when its tunnel changes, and the two directions of an
// inner flow hash alike.
func TestGENEVEHashReadsPastOptions(t *testing.T) {
	fwd := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 7}
	rev := fwd
	rev.sport = 51000
	rev.innerSrc, rev.inDst, rev.innerSP, rev.innerDP = netip.MustParseAddr("192.168.0.161"), netip.MustParseAddr("192.168.0.230"), 57032, 1234
	specs := []geneveSpec{{}, {options: 1}, {options: 9, critical: true}, {words: 63}, {ptype: 0x0800}}
	checkHashesLikeVXLAN(t, config.ProtocolGENEVE, fwd, rev, specs, geneveFrame)
}

// TestGENEVEBothDirections sends both directions of several inner flows, each
// packet with other outer ports and options, to a GENEVE listener with WRR
// over two backends: every flow's packets reach one backend, and the flows
// use both.
func TestGENEVEBothDirections(t *testing.T) {
	g := newGoldenLab(t)
	if err := g.bal.Apply(geneveConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))); err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("192.168.0.230"), netip.MustParseAddr("192.168.0.161")
	checkOneBackendPerFlow(t, g, 8, func(flow int) [][]byte {
		port := uint16(2000 + flow)
		var frames [][]byte
		for i, s := range []frameSpec{
			{innerSrc: a, inDst: b, innerSP: port, innerDP: 80, sport: 1000},
			{innerSrc: b, inDst: a, innerSP: 80, innerDP: port, sport: 1001},
			{innerSrc: a, inDst: b, innerSP: port, innerDP: 80, sport: 1002},
			{innerSrc: b, inDst: a, innerSP: 80, innerDP: port, sport: 1003},
		} {
			s.src, s.dst, s.vni = mirror, vip, 7
			frames = append(frames, geneveFrame(t, s, geneveSpec{options: i, critical: i == 3}))
		}
		return frames
	})
}

// FuzzGENEVEFlowHash: the Go mirror of the GENEVE parser never panics and
// is deterministic on any bytes, as a frame or as a header.
func FuzzGENEVEFlowHash(f *testing.F) {
	base := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 7}
	for _, gs := range []geneveSpec{{}, {options: 3}, {words: 63}, {ptype: 0x86dd}, {optLen: 5}, {version: 2}} {
		fr := geneveFrame(f, base, gs)
		f.Add(fr)
		f.Add(fr[udpOffset(fr)+8:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDeterministic(t, func(aff string) (uint32, bool) { return ListenerFlowHash(b, config.ProtocolGENEVE, aff) })
		geneveInnerHash(b)
		if len(b) >= 8 {
			geneveOK(b)
		}
	})
}

// FuzzGENEVEDataPath runs arbitrary frames through the BPF program on a
// GENEVE listener: one verdict per packet, and what it forwards goes to the
// backend the Go mirror of the hash predicts (ok false: dropped).
func FuzzGENEVEDataPath(f *testing.F) {
	base := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 7}
	for _, gs := range []geneveSpec{{}, {options: 3, critical: true}, {words: 63}, {ptype: 0x0800}, {optLen: 5}, {version: 1}} {
		f.Add(geneveFrame(f, base, gs))
	}
	fuzzProtocolDataPath(f, config.ProtocolGENEVE, nil)
}
