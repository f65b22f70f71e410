// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/ringbuf"
)

// XDP verdicts (linux/bpf.h).
const (
	xdpDrop = 1
	xdpPass = 2
)

var (
	xdpListen  = netip.MustParseAddrPort("10.0.0.2:4789")
	xdpSender  = netip.MustParseAddr("10.0.0.1")
	xdpListen6 = netip.MustParseAddrPort("[fd00::2]:4789")
	xdpSender6 = netip.MustParseAddr("fd00::1")
	macOuterA  = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macOuterB  = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// xdpProgram loads xm_collect for listen without attaching it; the test
// runs frames through it with BPF_PROG_TEST_RUN and reads its ring.
type xdpProgram struct {
	x    *xdpReceiver
	c    *Collector
	ring *ringbuf.Reader
	w    *writer // records go through a sink into its batches
}

// xdpGenevePort is the GENEVE port of the golden tests' program.
const xdpGenevePort = DefaultGenevePort

// loadXDPProgram loads xm_collect taking VXLAN on listen's port, GENEVE on
// xdpGenevePort and GRE.
func loadXDPProgram(t testing.TB, listen netip.AddrPort, ringSize int) *xdpProgram {
	t.Helper()
	return loadXDPProgramWith(t, listen, ringSize, programInputs{vxlan: listen.Port(), geneve: []uint16{xdpGenevePort}, gre: true})
}

func loadXDPProgramWith(t testing.TB, listen netip.AddrPort, ringSize int, in programInputs) *xdpProgram {
	t.Helper()
	labtest.RequireRoot(t)
	c, err := New(Options{Listen: "127.0.0.1:0", Readers: 1, OutputDir: t.TempDir(), Receive: ReceiveSocket,
		RingSize: ringSize, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	x := &xdpReceiver{c: c}
	if err := x.load(listen.Addr(), in); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.close() })
	rd, err := ringbuf.New(x.objs.XmColRing)
	if err != nil {
		t.Fatal(err)
	}
	x.ring = rd
	return &xdpProgram{x: x, c: c, ring: rd, w: newWriter(1)}
}

// run passes one frame through the program and returns its verdict.
func (p *xdpProgram) run(t *testing.T, frame []byte) uint32 {
	t.Helper()
	ret, err := p.x.objs.XmCollect.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run %d-byte frame: %v", len(frame), err)
	}
	return ret
}

// gotRecord is a ring record as the collector reads it.
type gotRecord struct {
	src     netip.Addr
	vni     uint32
	key     Key
	tunnel  []byte
	inner   []byte
	origLen int
	ts      int64
}

// records takes every record in the ring through the receiver's own
// parsing (xdpReceiver.record) into a sink, and returns them.
func (p *xdpProgram) records(t *testing.T) []gotRecord {
	t.Helper()
	w := p.w
	k := &sink{c: p.c, writers: []*writer{w}, cur: make([]*hbatch, 1)}
	var out []gotRecord
	for {
		rec, ok := p.ring.Next()
		if !ok {
			break
		}
		p.x.record(k, rec, 0)
	}
	p.ring.Release()
	k.flush()
	for len(w.in) > 0 {
		b := <-w.in
		for _, h := range b.pkts {
			out = append(out, gotRecord{src: h.src, vni: h.key.ID, key: h.key, inner: bytes.Clone(b.data[h.off : h.off+h.n]),
				tunnel: bytes.Clone(b.data[h.off-int32(h.tunnel) : h.off]), origLen: int(h.origLen), ts: h.ts})
		}
		b.pkts, b.data = b.pkts[:0], b.data[:0]
		w.free <- b
	}
	return out
}

// counters sums the program's per-CPU counters.
func (p *xdpProgram) counters(t testing.TB) [colNCounters]uint64 {
	t.Helper()
	var out [colNCounters]uint64
	for i := range colNCounters {
		var perCPU []uint64
		if err := p.x.objs.XmColCounters.Lookup(uint32(i), &perCPU); err != nil {
			t.Fatal(err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out
}

// outerOpts shape an outer frame.
type outerOpts struct {
	vlans    []layers.EthernetType // tag ethertypes, outermost first
	dst      netip.AddrPort
	src      netip.Addr
	mf       bool   // IPv4 "more fragments"
	fragOff  uint16 // IPv4 fragment offset (8-byte units)
	options  bool   // an IPv4 option (IHL 6)
	udpLen   int    // overrides the UDP length field when non-zero
	padTo    int    // Ethernet padding up to this frame length
	protocol layers.IPProtocol
}

// outerFrame builds Ethernet [VLAN…] IPv4|IPv6 / UDP / payload.
func outerFrame(t testing.TB, o outerOpts, payload []byte) []byte {
	t.Helper()
	if !o.dst.IsValid() {
		o.dst = xdpListen
	}
	if !o.src.IsValid() {
		o.src = xdpSender
	}
	if o.protocol == 0 {
		o.protocol = layers.IPProtocolUDP
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: macOuterA, DstMAC: macOuterB}
	ls = append(ls, eth)
	next := &eth.EthernetType
	for i, tpid := range o.vlans {
		*next = tpid
		tag := &layers.Dot1Q{VLANIdentifier: uint16(100 + i)}
		ls = append(ls, tag)
		next = &tag.Type
	}
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(o.dst.Port())}
	if o.dst.Addr().Is4() {
		*next = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: o.protocol, SrcIP: o.src.AsSlice(), DstIP: o.dst.Addr().AsSlice(),
			FragOffset: o.fragOff}
		if o.mf {
			ip.Flags = layers.IPv4MoreFragments
		}
		if o.options {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	} else {
		*next = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: o.protocol, SrcIP: o.src.AsSlice(), DstIP: o.dst.Addr().AsSlice()}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	if o.protocol == layers.IPProtocolUDP {
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(payload))
	frame := serialize(t, ls...)
	if o.udpLen != 0 {
		udpOff := len(frame) - len(payload) - 8
		binary.BigEndian.PutUint16(frame[udpOff+4:], uint16(o.udpLen))
	}
	for len(frame) < o.padTo {
		frame = append(frame, 0)
	}
	return frame
}

// TestXDPGolden runs every branch of xm_collect with a named frame: the
// verdict, the counter it lands in, and for frames handed to user space
// the record (source, VNI, inner frame byte for byte, original length).
func TestXDPGolden(t *testing.T) {
	inner := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello, collector"))
	cut := inner[:54] // a cut frame: the original length comes from the inner IP header
	jumboInner := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, bytes.Repeat([]byte{0xab}, 9001-36-54))
	arp := serialize(t, &layers.Ethernet{SrcMAC: macOuterA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: macOuterA, SourceProtAddress: xdpSender.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: xdpListen.Addr().AsSlice()})
	gbp := vxlan(7, inner)
	gbp[0], gbp[1] = 0x88, 0x80 // I flag plus the Group Based Policy bits: still VXLAN
	cases := []struct {
		name    string
		frame   []byte
		verdict uint32
		counter int // index of xm_col_counters that must move by one
		vni     uint32
		inner   []byte
		origLen int
	}{
		{"vxlan", outerFrame(t, outerOpts{}, vxlan(42, inner)), xdpDrop, colReceived, 42, inner, len(inner)},
		{"cut inner frame keeps its original length", outerFrame(t, outerOpts{}, vxlan(1, cut)), xdpDrop, colReceived, 1, cut, len(inner)},
		{"largest VNI", outerFrame(t, outerOpts{}, vxlan(0xffffff, inner)), xdpDrop, colReceived, 0xffffff, inner, len(inner)},
		{"reserved flag bits ignored", outerFrame(t, outerOpts{}, gbp), xdpDrop, colReceived, 7, inner, len(inner)},
		{"802.1Q outer", outerFrame(t, outerOpts{vlans: []layers.EthernetType{layers.EthernetTypeDot1Q}}, vxlan(3, inner)), xdpDrop, colReceived, 3, inner, len(inner)},
		{"QinQ outer", outerFrame(t, outerOpts{vlans: []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}}, vxlan(4, inner)), xdpDrop, colReceived, 4, inner, len(inner)},
		{"IPv4 options", outerFrame(t, outerOpts{options: true}, vxlan(5, inner)), xdpDrop, colReceived, 5, inner, len(inner)},
		{"Ethernet padding is not frame", outerFrame(t, outerOpts{padTo: 200}, vxlan(6, inner[:20])), xdpDrop, colReceived, 6, inner[:20], len(inner)},
		{"jumbo 9001-byte packet", outerFrame(t, outerOpts{}, vxlan(9, jumboInner)), xdpDrop, colReceived, 9, jumboInner, len(jumboInner)},

		{"short: 4-byte payload", outerFrame(t, outerOpts{}, []byte{8, 0, 0, 0}), xdpDrop, colCounter(ReasonShort), 0, nil, 0},
		{"short: empty payload", outerFrame(t, outerOpts{}, nil), xdpDrop, colCounter(ReasonShort), 0, nil, 0},
		{"bad flags: I clear", outerFrame(t, outerOpts{}, append([]byte{0, 0, 0, 0, 0, 0, 1, 0}, inner...)), xdpDrop, colCounter(ReasonBadFlags), 0, nil, 0},
		{"short inner: 13 bytes", outerFrame(t, outerOpts{}, vxlan(1, inner[:13])), xdpDrop, colCounter(ReasonShortInner), 0, nil, 0},
		{"short inner: none", outerFrame(t, outerOpts{}, vxlan(1, nil)), xdpDrop, colCounter(ReasonShortInner), 0, nil, 0},
		{"UDP length past the packet", outerFrame(t, outerOpts{udpLen: 2000}, vxlan(1, inner)), xdpDrop, colCounter(ReasonBadLength), 0, nil, 0},
		{"UDP length below its header", outerFrame(t, outerOpts{udpLen: 7}, vxlan(1, inner)), xdpDrop, colCounter(ReasonBadLength), 0, nil, 0},
		// The kernel drops it (UdpInErrors): the padding is not the datagram's.
		{"UDP length past the IP packet, into the padding", outerFrame(t, outerOpts{padTo: 200, udpLen: 8 + 8 + 20 + 10}, vxlan(6, inner[:20])),
			xdpDrop, colCounter(ReasonBadLength), 0, nil, 0},
		{"first fragment passes to be reassembled", outerFrame(t, outerOpts{mf: true}, vxlan(1, inner)), xdpPass, colFragment, 0, nil, 0},

		{"later fragment passes", outerFrame(t, outerOpts{fragOff: 100}, vxlan(1, inner)), xdpPass, -1, 0, nil, 0},
		{"other port passes", outerFrame(t, outerOpts{dst: netip.AddrPortFrom(xdpListen.Addr(), 4790)}, vxlan(1, inner)), xdpPass, -1, 0, nil, 0},
		{"other address passes", outerFrame(t, outerOpts{dst: netip.MustParseAddrPort("10.0.0.3:4789")}, vxlan(1, inner)), xdpPass, -1, 0, nil, 0},
		{"TCP to the listener passes", outerFrame(t, outerOpts{protocol: layers.IPProtocolTCP}, make([]byte, 40)), xdpPass, -1, 0, nil, 0},
		{"IPv6 passes an IPv4 listener", outerFrame(t, outerOpts{dst: xdpListen6, src: xdpSender6}, vxlan(1, inner)), xdpPass, -1, 0, nil, 0},
		{"ARP passes", arp, xdpPass, -1, 0, nil, 0},
		{"bare Ethernet header passes", append(bytes.Clone(arp[:12]), 0x08, 0x00), xdpPass, -1, 0, nil, 0},
		{"truncated IPv4 header passes", append(bytes.Clone(arp[:12]), 0x08, 0x00, 0x45, 0, 0, 20), xdpPass, -1, 0, nil, 0},
		{"three VLAN tags pass", outerFrame(t, outerOpts{vlans: []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q, layers.EthernetTypeDot1Q}}, vxlan(1, inner)), xdpPass, -1, 0, nil, 0},
	}
	p := loadXDPProgram(t, xdpListen, 0)
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
					t.Errorf("counter %d: %d -> %d", i, before[i], after[i])
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
			if r.vni != tc.vni || r.src != xdpSender || !bytes.Equal(r.inner, tc.inner) || r.origLen != tc.origLen {
				t.Errorf("record vni %d src %v origLen %d inner %d bytes; want vni %d src %v origLen %d inner %d bytes (equal %v)",
					r.vni, r.src, r.origLen, len(r.inner), tc.vni, xdpSender, tc.origLen, len(tc.inner), bytes.Equal(r.inner, tc.inner))
			}
		})
	}
}

// colCounter is the xm_col_counters index a drop reason is counted at.
func colCounter(r Reason) int {
	for i, cr := range colCounterReasons {
		if cr == r && r != ReasonNone {
			return i
		}
	}
	panic("no XDP counter for " + r.String())
}

// TestXDPGoldenIPv6 is the IPv6 listener: its VXLAN is received with the
// IPv6 source, IPv4 to the same port passes.
func TestXDPGoldenIPv6(t *testing.T) {
	inner := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("six"))
	p := loadXDPProgram(t, xdpListen6, 0)
	if got := p.run(t, outerFrame(t, outerOpts{dst: xdpListen6, src: xdpSender6}, vxlan(66, inner))); got != xdpDrop {
		t.Fatalf("verdict %d", got)
	}
	recs := p.records(t)
	if len(recs) != 1 || recs[0].src != xdpSender6 || recs[0].vni != 66 || !bytes.Equal(recs[0].inner, inner) {
		t.Fatalf("records %+v", recs)
	}
	if got := p.run(t, outerFrame(t, outerOpts{}, vxlan(1, inner))); got != xdpPass {
		t.Fatalf("IPv4 to an IPv6 listener: verdict %d", got)
	}
}

// TestXDPRingFull: with the ring full the program drops and counts
// ring_full, and the collector reports it under that reason.
func TestXDPRingFull(t *testing.T) {
	p := loadXDPProgram(t, xdpListen, 4096)
	frame := outerFrame(t, outerOpts{}, vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1200))))
	const n = 40 // 4096 bytes hold two 1600-byte records
	for i := 0; i < n; i++ {
		if got := p.run(t, frame); got != xdpDrop {
			t.Fatalf("verdict %d", got)
		}
	}
	c := p.counters(t)
	if c[colReceived] != 2 || c[colCounter(ReasonRingFull)] != n-2 {
		t.Fatalf("received %d, ring_full %d; want 2 and %d", c[colReceived], c[colCounter(ReasonRingFull)], n-2)
	}
	p.x.poll()
	if got := p.c.Stats().Drops["ring_full"]; got != n-2 {
		t.Errorf("collector ring_full drops %d, want %d", got, n-2)
	}
}

// TestColRecLayout ties the Go reading of a record to struct col_rec.
func TestColRecLayout(t *testing.T) {
	var r collectColRec
	if got := unsafe.Sizeof(r); got != colRecHeaderLen {
		t.Errorf("sizeof(struct col_rec) %d, Go reads %d", got, colRecHeaderLen)
	}
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"tstamp", unsafe.Offsetof(r.Tstamp), 0},
		{"saddr", unsafe.Offsetof(r.Saddr), 8},
		{"vni", unsafe.Offsetof(r.Vni), 24},
		{"caplen", unsafe.Offsetof(r.Caplen), 28},
		{"family", unsafe.Offsetof(r.Family), 30},
		{"proto", unsafe.Offsetof(r.Proto), 31},
	} {
		if f.got != f.want {
			t.Errorf("col_rec.%s at %d, Go reads it at %d", f.name, f.got, f.want)
		}
	}
}

// FuzzXDPDecap runs arbitrary UDP payloads to the listener through the XDP
// program and through the socket path's Decap: both must agree on the
// verdict, the drop reason, the VNI and the inner frame.
func FuzzXDPDecap(f *testing.F) {
	f.Add(vxlan(1, tcpFrame(f, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello"))))
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0, 1, 0x86, 0xdd, 0x60})
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	p := loadXDPProgram(f, xdpListen, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 8000 {
			return
		}
		before := p.counters(t)
		if got := p.run(t, outerFrame(t, outerOpts{}, payload)); got != xdpDrop {
			t.Fatalf("verdict %d for a datagram to the listener", got)
		}
		after := p.counters(t)
		fr, reason := Decap(payload)
		recs := p.records(t)
		if reason != ReasonNone {
			if len(recs) != 0 || after[colCounter(reason)] != before[colCounter(reason)]+1 {
				t.Fatalf("Decap drops as %s; XDP made %d records, counters %v -> %v", reason, len(recs), before, after)
			}
			return
		}
		if len(recs) != 1 || recs[0].vni != fr.Key.ID || !bytes.Equal(recs[0].inner, fr.Inner) || recs[0].origLen != fr.OrigLen {
			t.Fatalf("Decap accepts VNI %d, %d bytes; XDP records %+v", fr.Key.ID, len(fr.Inner), recs)
		}
	})
}

// BenchmarkXDPCollect is xm_collect's time per 150-byte VXLAN frame (and
// the same inner frame in GENEVE with one option and in ERSPAN III) under
// BPF_PROG_TEST_RUN (a reader drains the ring meanwhile), beside a program
// that only returns XDP_DROP: the difference is the receive path's cost in
// the kernel.
func BenchmarkXDPCollect(b *testing.B) {
	p := loadXDPProgram(b, xdpListen, 0)
	frame := outerFrame(b, outerOpts{}, vxlan(1, tcpFrame(b, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 46))))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := 0
			for {
				if _, ok := p.ring.Next(); !ok {
					break
				}
				n++
			}
			if n == 0 {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			p.ring.Release()
		}
	}()
	defer func() { close(stop); <-done }()
	inner := tcpFrame(b, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 46))
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"xm_collect", frame},
		{"xm_collect_geneve_1opt", outerFrame(b, outerOpts{dst: xdpGeneveDst}, geneve(1, etherTypeTEB, 0, []geneveOpt{{1, 1, make([]byte, 4)}}, inner))},
		{"xm_collect_erspan3", outerFrame(b, outerOpts{protocol: layers.IPProtocolGRE}, erspan3(b, 1, erspan3Hdr{id: 1}, inner))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ret, d, err := p.x.objs.XmCollect.Benchmark(bc.frame, b.N, nil)
			if err != nil || ret != xdpDrop {
				b.Fatalf("ret %d: %v", ret, err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/frame")
		})
	}
	b.Run("xdp_drop", func(b *testing.B) {
		drop, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()}})
		if err != nil {
			b.Fatal(err)
		}
		defer drop.Close()
		_, d, err := drop.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/frame")
	})
	c := p.counters(b)
	b.Logf("received %d, ring_full %d", c[colReceived], c[colCounter(ReasonRingFull)])
}
