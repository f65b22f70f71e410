// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// outerPacket is a packet as the ring program writes it: outer IPv4 (DF, no
// ID, no checksum), UDP to 4789 from sport (checksum 0), VXLAN with vni and
// a frame of frameLen bytes whose content tells records apart.
func outerPacket(sport uint16, dst byte, vni uint32, frameLen int, seed byte) []byte {
	n := outerLen + frameLen
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[6] = 0x40
	p[8], p[9] = 64, unix.IPPROTO_UDP
	copy(p[12:], []byte{192, 168, 0, 230, 192, 168, 0, dst})
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], 4789)
	binary.BigEndian.PutUint16(p[24:], uint16(n-20))
	binary.BigEndian.PutUint32(p[28:], 0x08000000)
	binary.BigEndian.PutUint32(p[32:], vni<<8)
	for i := outerLen; i < n; i++ {
		p[i] = seed + byte(i)
	}
	return p
}

func testHop(ifindex int32, mac byte) *nextHop {
	h := &nextHop{ok: true}
	h.ll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	h.ll.Addr[5] = mac
	h.eth = [ethLen]byte{5: mac, 11: 1, 12: 0x08}
	return h
}

// iovBytes is what the kernel reads for a message: its iovecs one after the
// other.
func iovBytes(m *mmsghdr) []byte {
	var out []byte
	iovs := unsafe.Slice(m.hdr.Iov, m.hdr.Iovlen)
	for _, v := range iovs {
		out = append(out, unsafe.Slice(v.Base, v.Len)...)
	}
	return out
}

// onesSum is the folded one's-complement sum of 16-bit words.
func onesSum(words ...uint16) uint16 {
	var s uint32
	for _, w := range words {
		s += uint32(w)
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// outerFrame wraps an inner frame as the ring program would: outer IPv4,
// UDP from sport to 4789, VXLAN with VNI 1.
func outerFrame(sport uint16, dst byte, inner []byte) []byte {
	p := outerPacket(sport, dst, 1, len(inner), 0)
	copy(p[outerLen:], inner)
	return p
}

// TestRuns: packets of one flow, direction and kind with the same size leave
// as one UDP GSO packet (a shorter one ends a run); the packets of one flow
// and direction keep their order, and a pure acknowledgement only ever waits
// behind packets of the other direction. Each message is the virtio-net
// header, the Ethernet header, outer headers that cover the run and the
// payloads in ring order.
func TestRuns(t *testing.T) {
	a, b := testHop(2, 0xaa), testHop(3, 0xbb)
	const in, out = 0, 1
	data := func(n int) []byte { return tcp4(t, "10.0.0.1", "10.0.0.2", 1000, 80, n)[:min(96, 54+n)] }
	ack := tcp4(t, "10.0.0.2", "10.0.0.1", 80, 1000, 0)
	other := make([]byte, 96) // not IP: never a pure acknowledgement
	type rec struct {
		hop   *nextHop
		sport uint16
		dst   byte
		dir   int
		inner []byte
	}
	d := func(dir int) rec { return rec{a, 1000, 147, dir, data(200)} }
	k := func(dir int) rec { return rec{a, 1000, 147, dir, ack} }
	many := func(n int, r rec) []rec {
		out := make([]rec, n)
		for i := range out {
			out[i] = r
		}
		return out
	}
	seq := func(from, to int) []int {
		var s []int
		for i := from; i < to; i++ {
			s = append(s, i)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		recs []rec
		msgs [][]int // records of each message, in the order they leave
	}{
		{"one packet", []rec{d(out)}, [][]int{{0}}},
		{"equal sizes", many(3, d(out)), [][]int{{0, 1, 2}}},
		{"shorter last ends the run", []rec{d(out), {a, 1000, 147, out, data(20)}, d(out), d(out)}, [][]int{{0, 1}, {2, 3}}},
		{"longer starts a run", []rec{{a, 1000, 147, out, data(20)}, d(out), d(out)}, [][]int{{0}, {1, 2}}},
		{"data passes acknowledgements of the other direction", []rec{d(out), k(in), d(out), k(in), d(out), k(in)}, [][]int{{0, 2, 4}, {1, 3, 5}}},
		{"acknowledgements wait behind data of the other direction", []rec{k(in), d(out), k(in), d(out)}, [][]int{{1, 3}, {0, 2}}},
		{"data both ways keeps its order", []rec{d(out), d(in), d(out), d(in)}, [][]int{{0}, {1}, {2}, {3}}},
		{"an acknowledgement of the same direction ends a run", []rec{d(out), k(out), d(out), k(out), k(out)}, [][]int{{0}, {1}, {2}, {3, 4}}},
		{"other flows in between", []rec{d(out), {a, 1001, 147, out, data(200)}, d(out), {a, 1000, 148, out, data(200)}, d(out)}, [][]int{{0, 2, 4}, {1}, {3}}},
		{"other next hop", []rec{d(out), {b, 1000, 147, out, data(200)}, d(out)}, [][]int{{0, 2}, {1}}},
		{"not TCP", []rec{{a, 1000, 147, out, other}, {a, 1000, 147, in, other}, {a, 1000, 147, out, other}}, [][]int{{0}, {1}, {2}}},
		{"64 KiB at most", many(50, rec{a, 1000, 147, out, make([]byte, 1500-50)}), [][]int{seq(0, 44), seq(44, 50)}},
		{"128 segments at most", many(200, k(in)), [][]int{seq(0, maxRunSegs), seq(maxRunSegs, 200)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bt := &batch{link: true, runs: &runs{}}
			var pkts [][]byte
			for i, r := range tc.recs {
				p := outerFrame(r.sport, r.dst, r.inner)
				pkts = append(pkts, bytes.Clone(p))
				bt.pkts[i], bt.keys[i], bt.lls[i] = p, 2+r.dir, r.hop.ll
				bt.runs.eths[i] = &r.hop.eth
				bt.runs.admit(bt, i)
				bt.n++
			}
			m := bt.runs.build(bt)
			var got [][]int
			for k := 0; k < m; k++ {
				var recs []int
				for r := bt.runs.list[bt.runs.order[k]].head; r >= 0; r = bt.runs.next[r] {
					recs = append(recs, r)
				}
				got = append(got, recs)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.msgs) {
				t.Fatalf("messages %v, want %v", got, tc.msgs)
			}
			for k, recs := range got {
				msg := &bt.msgs[k]
				hop := tc.recs[recs[0]].hop
				if ll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(msg.hdr.Name)); *ll != hop.ll {
					t.Errorf("message %d to %+v, want %+v", k, *ll, hop.ll)
				}
				var want [][]byte
				for _, r := range recs {
					want = append(want, pkts[r])
				}
				checkMessage(t, iovBytes(msg), hop, want)
			}
		})
	}
}

func TestRecordKind(t *testing.T) {
	vlan := func(f []byte) []byte {
		return append(append(append([]byte{}, f[:12]...), 0x81, 0, 0, 7), f[12:]...)
	}
	flags := func(set func(*layers.TCP)) []byte {
		ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
		tc := &layers.TCP{ACK: true, SrcPort: 1, DstPort: 2, Window: 512}
		set(tc)
		tc.SetNetworkLayerForChecksum(ip)
		return frame(t, eth(layers.EthernetTypeIPv4), ip, tc)
	}
	ack6 := func(n int) []byte {
		ip := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolTCP)
		tc := &layers.TCP{ACK: true, SrcPort: 1, DstPort: 2, Window: 512}
		tc.SetNetworkLayerForChecksum(ip)
		return frame(t, eth(layers.EthernetTypeIPv6), ip, tc, payload(n))
	}
	syn := flags(func(tc *layers.TCP) { tc.SYN = true })
	fin := flags(func(tc *layers.TCP) { tc.FIN = true })
	rst := flags(func(tc *layers.TCP) { tc.RST = true })
	for _, c := range []struct {
		name  string
		frame []byte
		want  int
	}{
		{"IPv4 pure ACK", tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 0), kindAck},
		{"IPv4 ACK cut to 54 bytes", tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)[:54], kindAck},
		{"IPv4 ACK cut to 50 bytes", tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)[:50], kindOther},
		{"VLAN IPv4 pure ACK", vlan(tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 0)), kindAck},
		{"IPv6 pure ACK", ack6(0), kindAck},
		{"IPv6 data", ack6(20), kindOther},
		{"IPv4 data", tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 1), kindOther},
		{"IPv4 data cut to 96 bytes", tcp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 1000)[:96], kindOther},
		{"SYN ACK", syn, kindOther},
		{"FIN", fin, kindOther},
		{"RST", rst, kindOther},
		{"UDP", udp4(t, "10.0.0.1", "10.0.0.2", 1, 2, 0), kindOther},
		{"fragment", frag4(t, "10.0.0.1", "10.0.0.2"), kindOther},
		{"ARP", arp(t), kindOther},
		{"empty", nil, kindOther},
	} {
		if got := recordKind(c.frame); got != c.want {
			t.Errorf("%s: kind %d, want %d", c.name, got, c.want)
		}
	}
}

func FuzzRecordKind(f *testing.F) {
	f.Add(tcp4(f, "10.0.0.1", "10.0.0.2", 1, 2, 0))
	f.Add(tcp6(f, "2001:db8::1", "2001:db8::2", 1, 2))
	f.Fuzz(func(t *testing.T, frame []byte) {
		recordKind(frame) // must not panic on any input
	})
}

// checkMessage checks one message against the packets it carries, as the
// kernel would cut it.
func checkMessage(t *testing.T, raw []byte, hop *nextHop, want [][]byte) {
	t.Helper()
	vnet, eth, ip := raw[:vnetHdrLen], raw[vnetHdrLen:vnetHdrLen+ethLen], raw[vnetHdrLen+ethLen:]
	if !bytes.Equal(eth, hop.eth[:]) {
		t.Errorf("Ethernet header % x, want % x", eth, hop.eth)
	}
	if ipv4Checksum(ip[:20]) != binary.BigEndian.Uint16(ip[10:]) {
		t.Errorf("IPv4 checksum %#04x, want %#04x", binary.BigEndian.Uint16(ip[10:]), ipv4Checksum(ip[:20]))
	}
	if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || int(binary.BigEndian.Uint16(ip[24:])) != len(ip)-20 {
		t.Errorf("IPv4 length %d, UDP length %d for %d bytes", binary.BigEndian.Uint16(ip[2:]), binary.BigEndian.Uint16(ip[24:]), len(ip))
	}
	if len(want) == 1 {
		if !bytes.Equal(vnet, make([]byte, vnetHdrLen)) {
			t.Errorf("single packet with virtio-net header % x", vnet)
		}
		if !bytes.Equal(ip[12:], want[0][12:]) || binary.BigEndian.Uint16(ip[26:]) != 0 {
			t.Errorf("single packet changed:\n % x\n % x", ip, want[0])
		}
		return
	}
	seg := len(want[0]) - ipUDPLen
	wantVnet := []byte{vnetNeedsCsum, vnetGSOUDPL4, byte(ethLen + ipUDPLen), 0, byte(seg), byte(seg >> 8), byte(ethLen + 20), 0, udpCsumOff, 0}
	if !bytes.Equal(vnet, wantVnet) {
		t.Errorf("virtio-net header % x, want % x", vnet, wantVnet)
	}
	// The partial checksum is the pseudo-header's sum for the run's length.
	pseudo := onesSum(0xc0a8, 0x00e6, 0xc0a8, uint16(ip[18])<<8|uint16(ip[19]), unix.IPPROTO_UDP, uint16(len(ip)-20))
	if got := binary.BigEndian.Uint16(ip[26:]); got != pseudo {
		t.Errorf("UDP checksum field %#04x, want the pseudo-header sum %#04x", got, pseudo)
	}
	if !bytes.Equal(ip[12:24], want[0][12:24]) {
		t.Errorf("outer addresses and ports % x, want % x", ip[12:24], want[0][12:24])
	}
	payload := ip[ipUDPLen:]
	for i, w := range want {
		n := min(seg, len(payload))
		if i == len(want)-1 && n != len(payload) {
			t.Fatalf("%d bytes left after the last segment", len(payload)-n)
		}
		if !bytes.Equal(payload[:n], w[ipUDPLen:]) {
			t.Fatalf("segment %d differs from packet %d", i, i)
		}
		payload = payload[n:]
	}
}

// FuzzRuns builds runs from arbitrary sequences of records (four flows, two
// next hops, both directions, pure acknowledgements and data of three
// sizes) and checks what the capture at the target relies on: every record
// leaves once; two records of one flow leave out of ring order only when the
// earlier is a pure acknowledgement and the later goes the other way; a
// run's records share flow and next hop, and all but the last have the
// first one's size.
func FuzzRuns(f *testing.F) {
	f.Add([]byte{0x00, 0x12, 0x00, 0x12, 0x00, 0x12})
	f.Add([]byte{0x12, 0x00, 0x13, 0x01, 0x45, 0x88, 0xff})
	hops := []*nextHop{testHop(2, 0xaa), testHop(3, 0xbb)}
	ack := tcp4(f, "10.0.0.2", "10.0.0.1", 80, 1000, 0)
	data := tcp4(f, "10.0.0.1", "10.0.0.2", 1000, 80, 200)
	f.Fuzz(func(t *testing.T, spec []byte) {
		if len(spec) > batchSize {
			spec = spec[:batchSize]
		}
		type rec struct {
			flow, dir, kind int
			hop             *nextHop
		}
		bt := &batch{link: true, runs: &runs{}}
		var recs []rec
		for i, c := range spec {
			// bits: 0-1 flow, 2 direction, 3 acknowledgement, 4-5 size, 6 next hop
			r := rec{flow: int(c & 3), dir: int(c>>2) & 1, hop: hops[c>>6&1]}
			inner := data[:[]int{96, 80, 60, 96}[c>>4&3]]
			if c&8 != 0 {
				inner, r.kind = ack, kindAck
			}
			p := outerFrame(uint16(1000+r.flow), 147, inner)
			bt.pkts[i], bt.keys[i], bt.lls[i] = p, 2+r.dir, r.hop.ll
			bt.runs.eths[i] = &r.hop.eth
			bt.runs.admit(bt, i)
			bt.n++
			recs = append(recs, r)
		}
		m := bt.runs.build(bt)
		at := make([]int, len(recs)) // position each record leaves at
		for i := range at {
			at[i] = -1
		}
		pos := 0
		for k := 0; k < m; k++ {
			head := bt.runs.list[bt.runs.order[k]].head
			seg := len(bt.pkts[head]) - ipUDPLen
			for r := head; r >= 0; r = bt.runs.next[r] {
				if at[r] >= 0 {
					t.Fatalf("record %d leaves twice", r)
				}
				at[r] = pos
				pos++
				if recs[r].flow != recs[head].flow || recs[r].hop != recs[head].hop {
					t.Fatalf("record %d in the run of record %d: other flow or next hop", r, head)
				}
				if s := len(bt.pkts[r]) - ipUDPLen; s > seg || (s < seg && bt.runs.next[r] >= 0) {
					t.Fatalf("record %d of %d bytes in a run of %d-byte segments, not last", r, s, seg)
				}
			}
		}
		for i := range recs {
			if at[i] < 0 {
				t.Fatalf("record %d never leaves", i)
			}
			for j := i + 1; j < len(recs); j++ {
				if recs[i].flow != recs[j].flow || recs[i].hop != recs[j].hop || at[i] < at[j] {
					continue
				}
				if recs[i].kind != kindAck || recs[i].dir == recs[j].dir {
					t.Fatalf("records %d and %d of one flow leave in the other order (%+v, %+v)", i, j, recs[i], recs[j])
				}
			}
		}
	})
}

// TestRunsRefused: a run the kernel refuses counts once per record, in the
// record's session and direction, and the runs after it are still tried.
func TestRunsRefused(t *testing.T) {
	hop := testHop(2, 0xaa)
	bt := &batch{link: true, runs: &runs{}}
	data := tcp4(t, "10.0.0.1", "10.0.0.2", 1000, 80, 200)[:96]
	for i, key := range []int{2, 2, 5, 2} { // a run of two, then one of each direction
		sport := uint16(1000)
		if i > 1 {
			sport = uint16(2000 + i)
		}
		bt.pkts[i], bt.keys[i], bt.lls[i] = outerFrame(sport, 147, data), key, hop.ll
		bt.runs.eths[i] = &hop.eth
		bt.runs.admit(bt, i)
		bt.n++
	}
	var errs sendErrors
	bt.runs.send(-1, bt, &errs) // every send fails: not a socket
	if errs[2].Load() != 3 || errs[5].Load() != 1 || bt.n != 0 || bt.runs.sent.Load() != 3 {
		t.Errorf("errors %d (key 2) and %d (key 5), batch %d, sent %d; want 3, 1, 0, 3 packets", errs[2].Load(), errs[5].Load(), bt.n, bt.runs.sent.Load())
	}
}

// BenchmarkRuns measures what grouping a batch into runs costs per record
// in user space (admit and build, no send): a bulk transfer mirrored both
// ways, seven data records of one direction to each acknowledgement of the
// other, as iperf3 gives.
//
//	go test -run XXX -bench Runs ./source/
func BenchmarkRuns(b *testing.B) {
	hop := testHop(2, 0xaa)
	ack := outerFrame(1000, 147, tcp4(b, "10.0.0.2", "10.0.0.1", 80, 1000, 0))
	data := outerFrame(1000, 147, tcp4(b, "10.0.0.1", "10.0.0.2", 1000, 80, 200)[:96])
	bt := &batch{link: true, runs: &runs{}}
	b.ResetTimer()
	for range b.N {
		for i := range batchSize {
			p, key := data, 2
			if i%8 == 7 {
				p, key = ack, 3
			}
			bt.pkts[i], bt.keys[i], bt.lls[i] = p, key, hop.ll
			bt.runs.eths[i] = &hop.eth
			bt.runs.admit(bt, i)
			bt.n++
		}
		bt.runs.build(bt)
		bt.n, bt.runs.n = 0, 0
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/record")
}

// TestRunsAcrossHopRefresh: a next hop looked up again (a new nextHop with
// the same address) does not split a flow: its records still form one run,
// so they keep their order.
func TestRunsAcrossHopRefresh(t *testing.T) {
	old, refreshed, other := testHop(2, 0xaa), testHop(2, 0xaa), testHop(2, 0xbb)
	data := tcp4(t, "10.0.0.1", "10.0.0.2", 1000, 80, 200)[:96]
	bt := &batch{link: true, runs: &runs{}}
	for i, h := range []*nextHop{old, old, refreshed, other} {
		bt.pkts[i], bt.keys[i], bt.lls[i] = outerFrame(1000, 147, data), 2, h.ll
		bt.runs.eths[i] = &h.eth
		bt.runs.admit(bt, i)
		bt.n++
	}
	if bt.runs.n != 2 || bt.runs.list[0].segs != 3 || bt.runs.list[1].head != 3 {
		t.Fatalf("%d runs, the first of %d records; want a run of 3 (both lookups) and one for the other next hop", bt.runs.n, bt.runs.list[0].segs)
	}
}
