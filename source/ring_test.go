// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/ringbuf"
)

// ringSource loads the programs with datapath ring and cfg compiled for lo,
// without attaching them or starting the sender: the test reads the ring.
func ringSource(t testing.TB, cfg *config.Config) *Source {
	t.Helper()
	return loadTestSource(t, cfg, sourceXmDatapathXM_DATAPATH_RING, Options{})
}

func ringSession(length int) string {
	return `
filters:
  - name: f
    inbound: [{priority: 1, action: accept, protocol: all}]
    outbound: [{priority: 1, action: accept, protocol: all}]
sessions:
  - {name: s1, priority: 1, vni: 4097, packet_length: ` + strconv.Itoa(length) + `, filter: f, sources: [lo], target: 10.255.0.2}
`
}

// readRing returns copies of the records in the ring without waiting.
func readRing(t *testing.T, s *Source) [][]byte {
	t.Helper()
	rd, err := ringbuf.New(s.objs.XmRing)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out [][]byte
	for {
		rec, ok := rd.Next()
		if !ok {
			rd.Release()
			return out
		}
		out = append(out, slices.Clone(rec))
	}
}

// TestRingReaderReleases checks that closing a reader, interrupted or not,
// gives back its descriptor and mappings, and leaves the map usable.
func TestRingReaderReleases(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(96)))
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := openFDs()
	for _, interrupt := range []bool{false, true, false} {
		rd, err := ringbuf.New(s.objs.XmRing)
		if err != nil {
			t.Fatal(err)
		}
		if interrupt {
			rd.Interrupt()
			if err := rd.Wait(time.Second); !errors.Is(err, os.ErrClosed) {
				t.Errorf("wait after interrupt: %v, want ErrClosed", err)
			}
		}
		rd.Close()
	}
	if after := openFDs(); after != before {
		t.Errorf("%d descriptors open after three readers closed, %d before", after, before)
	}
}

// TestRingReader reads the ring in place over several times its size (so
// records wrap around its end) and checks order, release and waiting.
func TestRingReader(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(96)))
	rd, err := ringbuf.New(s.objs.XmRing)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// Records of a 96-byte cut take 152 bytes (the 8-byte header and the
	// 144-byte size): 3 rounds fill the 8 MiB ring 1.5 times.
	const n, recLen = 28000, 152
	for round := 0; round < 3; round++ {
		for i := 0; i < n; i++ {
			frame := tcp4(t, "10.0.0.1", "10.0.0.2", uint16(1000+i), 40000, 200)
			if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
				t.Fatal(err)
			}
		}
		if got := rd.Available(); got != n*recLen {
			t.Fatalf("round %d: %d bytes available, want %d", round, got, n*recLen)
		}
		for i := 0; i < n; i++ {
			rec, ok := rd.Next()
			if !ok {
				t.Fatalf("round %d: ring empty after %d records", round, i)
			}
			pkt, _, _, err := parseRingRecord(rec)
			if err != nil {
				t.Fatalf("round %d, record %d: %v", round, i, err)
			}
			if sport := binary.BigEndian.Uint16(pkt[outerLen+34:]); sport != uint16(1000+i) {
				t.Fatalf("round %d: record %d has inner source port %d, want %d", round, i, sport, 1000+i)
			}
			if i == n/2 {
				rd.Release()
				if got := rd.Available(); got != n/2*recLen-recLen {
					t.Fatalf("round %d: %d bytes available after a release half-way, want %d", round, got, n/2*recLen-recLen)
				}
			}
		}
		if _, ok := rd.Next(); ok {
			t.Fatalf("round %d: a record past the last", round)
		}
		rd.Release()
		if got := rd.Available(); got != 0 {
			t.Fatalf("round %d: %d bytes available after the last release", round, got)
		}
	}
	// Records submitted without a wakeup do not end a wait: its time does.
	frame := tcp4(t, "10.0.0.1", "10.0.0.2", 1000, 40000, 200)
	if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	rd.Wait(time.Millisecond) // takes the wakeup the rounds above asked for
	start := time.Now()
	if err := rd.Wait(50 * time.Millisecond); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("wait ended after %v with a record that asked for no wakeup", d)
	}
	// interrupt ends a wait in progress.
	done := make(chan error)
	go func() { done <- rd.Wait(-1) }()
	time.Sleep(20 * time.Millisecond)
	rd.Interrupt()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("wait after interrupt: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("interrupt did not end the wait")
	}
}

// TestRingRecords runs frames through the source programs with datapath ring
// and checks the records: outer IPv4 (DF, TTL 64, source and target), UDP
// (port 4789, source port from the symmetric hash in the local port range,
// checksum 0), VXLAN (I flag, VNI) and the cut frame.
func TestRingRecords(t *testing.T) {
	for _, c := range []struct {
		name    string
		length  int
		payload int
		want    int // bytes of the inner frame
	}{
		{"cut to 96", 96, 200, 96},
		{"short frame whole", 96, 10, 64},
		{"whole frame, larger record", 0, 1300, 1354},
		{"cut to the path MTU", 0, 1600, 1450},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ringSource(t, mustParse(t, ringSession(c.length)))
			in := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, c.payload)
			out := tcp4(t, "10.0.0.2", "10.0.0.1", 40000, 1234, c.payload)
			for _, p := range []struct {
				prog  *ebpf.Program
				frame []byte
			}{{s.objs.XmSourceIngress, in}, {s.objs.XmSourceEgress, out}} {
				ret, err := p.prog.Run(&ebpf.RunOptions{Data: p.frame})
				if err != nil {
					t.Fatal(err)
				}
				if int32(ret) != -1 {
					t.Fatalf("returned %d, want -1: the original always continues", int32(ret))
				}
			}
			recs := readRing(t, s)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2", len(recs))
			}
			var ports []uint16
			pr := localPortRange()
			min, rng := pr.min, pr.span
			for i, raw := range recs {
				pkt, key, dst, err := parseRingRecord(raw)
				if err != nil {
					t.Fatalf("record %d: %v (%x)", i, err, raw)
				}
				if key != int(s.ids["s1"])*2+i {
					t.Errorf("record %d: key %d, want session %d direction %d", i, key, s.ids["s1"], i)
				}
				if !net.IP(dst[:]).Equal(net.ParseIP("10.255.0.2")) {
					t.Errorf("destination %v", net.IP(dst[:]))
				}
				if len(pkt) != outerLen+c.want {
					t.Fatalf("packet %d bytes, want %d", len(pkt), outerLen+c.want)
				}
				ip, udp, vx, inner := pkt[:20], pkt[20:28], pkt[28:36], pkt[36:]
				if ip[6] != 0x40 || ip[8] != 64 || !bytes.Equal(ip[12:16], []byte{10, 255, 0, 1}) {
					t.Errorf("outer IPv4 header %x: want DF, TTL 64, source 10.255.0.1", ip)
				}
				port := binary.BigEndian.Uint16(udp[0:])
				if uint32(port) < min || uint32(port) > min+rng {
					t.Errorf("source port %d outside %d+%d", port, min, rng)
				}
				ports = append(ports, port)
				if binary.BigEndian.Uint16(udp[2:]) != 4789 || int(binary.BigEndian.Uint16(udp[4:])) != 16+c.want || binary.BigEndian.Uint16(udp[6:]) != 0 {
					t.Errorf("UDP header %x", udp)
				}
				if !bytes.Equal(vx, []byte{0x08, 0, 0, 0, 0, 0x10, 0x01, 0}) {
					t.Errorf("VXLAN header %x, want I flag and VNI 4097", vx)
				}
				frame := [][]byte{in, out}[i]
				if !bytes.Equal(inner, frame[:c.want]) {
					t.Errorf("inner frame differs:\n %x\n %x", inner, frame[:c.want])
				}
			}
			if ports[0] != ports[1] {
				t.Errorf("source ports %d and %d: the hash is not symmetric", ports[0], ports[1])
			}
			got := sumCounters(t, s, uint32(s.ids["s1"]))
			if got.Packets != 2 || (c.want < len(in)) != (got.Cut == 2) {
				t.Errorf("counters %+v", got)
			}
		})
	}
}

// fillRing runs n TCP frames (inner source ports 1000, 1001, …) through
// the ingress program and returns a reader of the ring, closed at cleanup.
func fillRing(t *testing.T, s *Source, n int) *ringbuf.Reader {
	t.Helper()
	for i := 0; i < n; i++ {
		frame := tcp4(t, "10.0.0.1", "10.0.0.2", uint16(1000+i), 40000, 200)
		if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
	}
	rd, err := ringbuf.New(s.objs.XmRing)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	return rd
}

// TestRingSenderBatches fills the ring through the program and checks that
// the sender takes every record in one drain, in order, batchSize per send.
func TestRingSenderBatches(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(96)))
	const n = 2*batchSize + 22
	rd := fillRing(t, s, n)
	var sizes []int
	var sports []uint16
	r := &ringPath{rd: rd, pfd: -1, send: func(b *batch) {
		sizes = append(sizes, b.n)
		for i := 0; i < b.n; i++ {
			sports = append(sports, binary.BigEndian.Uint16(b.pkts[i][outerLen+34:]))
		}
		b.n = 0
	}}
	got := r.drain()
	if got != n {
		t.Fatalf("drained %d records, want %d", got, n)
	}
	if len(sizes) != 3 || sizes[0] != batchSize || sizes[1] != batchSize || sizes[2] != 22 {
		t.Errorf("batches %v, want %d, %d, 22", sizes, batchSize, batchSize)
	}
	for i, p := range sports {
		if p != uint16(1000+i) {
			t.Fatalf("packet %d has inner source port %d: out of order", i, p)
		}
	}
	if r.bad.Load() != 0 {
		t.Errorf("%d malformed records", r.bad.Load())
	}
}

// TestRingHopRefresh: a drain that never finds the ring empty (sustained
// traffic) still looks next hops up again when they age, so a target whose
// neighbour was not resolved at first moves to the AF_PACKET socket.
func TestRingHopRefresh(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(96)))
	const n = 4 * batchSize
	rd := fillRing(t, s, n)
	defer func(refresh, retry time.Duration) { hopRefresh, hopRetry = refresh, retry }(hopRefresh, hopRetry)
	hopRefresh, hopRetry = time.Hour, 0 // every look at an unresolved hop after the clock moved is a new lookup
	lookups := 0
	r := &ringPath{rd: rd, pfd: 1 << 20, hops: map[[4]byte]*nextHop{}, send: func(b *batch) { b.n = 0 }}
	r.lookup = func(dst [4]byte) *nextHop {
		lookups++
		time.Sleep(time.Millisecond) // the clock moves between batches
		return &nextHop{at: r.now}
	}
	if got := r.drain(); got != n {
		t.Fatalf("drained %d records, want %d", got, n)
	}
	if lookups < 3 {
		t.Errorf("%d next-hop lookups in a drain of %d records, want one per batch", lookups, n)
	}
}

func validRecord(frameLen int) []byte {
	n := outerLen + frameLen
	raw := make([]byte, ringRecLen+n)
	binary.NativeEndian.PutUint32(raw[0:], uint32(n))
	binary.NativeEndian.PutUint16(raw[4:], 3)
	raw[6] = 1
	pkt := raw[ringRecLen:]
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(n))
	pkt[9] = 17
	copy(pkt[16:], []byte{192, 168, 0, 147})
	return raw
}

func TestParseRingRecord(t *testing.T) {
	pkt, key, dst, err := parseRingRecord(append(validRecord(60), make([]byte, 40)...))
	if err != nil || len(pkt) != outerLen+60 || key != 7 || dst != [4]byte{192, 168, 0, 147} {
		t.Fatalf("valid record: %d bytes, key %d, dst %v, %v", len(pkt), key, dst, err)
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"short header":      func(b []byte) []byte { return b[:5] },
		"length too big":    func(b []byte) []byte { return b[:len(b)-1] },
		"no inner frame":    func(b []byte) []byte { binary.NativeEndian.PutUint32(b, uint32(outerLen)); return b },
		"session too big":   func(b []byte) []byte { binary.NativeEndian.PutUint16(b[4:], MaxSessions); return b },
		"direction":         func(b []byte) []byte { b[6] = 2; return b },
		"not IPv4":          func(b []byte) []byte { b[ringRecLen] = 0x46; return b },
		"not UDP":           func(b []byte) []byte { b[ringRecLen+9] = 6; return b },
		"IP length differs": func(b []byte) []byte { b[ringRecLen+3]++; return b },
	} {
		if _, _, _, err := parseRingRecord(mutate(validRecord(60))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseRingRecord(f *testing.F) {
	f.Add(validRecord(60))
	f.Add(validRecord(14))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		pkt, key, _, err := parseRingRecord(raw)
		if err != nil {
			return
		}
		if len(pkt) < outerLen+14 || key < 0 || key >= MaxSessions*2 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			t.Fatalf("accepted a bad record: %d bytes, key %d", len(pkt), key)
		}
	})
}

// TestRingPacketSocket: once the target's neighbour is resolved, the ring
// datapath sends through the AF_PACKET socket; what the target receives is
// the same VXLAN, with a valid IPv4 checksum. Before that (and for an
// address without a neighbour entry, or a local one) the raw socket is used.
func TestRingPacketSocket(t *testing.T) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	if _, err := src.Run("ping", "-c1", "-W1", targetIP); err != nil {
		t.Fatal(err)
	}
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	s := startSourceOpts(t, src, seedConfig(t, seedYAML), Options{Datapath: DatapathRing})
	r := s.dp.(*ringPath)
	if r.pfd < 0 || r.nl == nil {
		t.Fatal("no AF_PACKET socket or netlink handle")
	}
	seedConversation(t, src, test)
	bulk(t, src, test, 64<<10)
	time.Sleep(3 * r.tick) // the reader looks every tick
	if r.linkSent.Load() == 0 {
		t.Fatalf("nothing sent through the AF_PACKET socket (%d through the raw socket)", r.rawSent.Load())
	}
	got := atTarget.packets(t)
	withCsum := 0
	if len(got) == 0 || uint64(len(got)) != r.linkSent.Load()+r.rawSent.Load() {
		t.Fatalf("target received %d packets, sender sent %d + %d", len(got), r.linkSent.Load(), r.rawSent.Load())
	}
	for _, p := range got {
		vni, inner, outer, _ := decap(t, p)
		if vni != 1 || len(inner) > 96 || outer.Flags&layers.IPv4DontFragment == 0 || outer.SrcIP.String() != sourceIP {
			t.Errorf("vni %d, inner %d bytes, outer %v", vni, len(inner), outer)
		}
		if ipv4Checksum(outer.Contents) != outer.Checksum {
			t.Errorf("outer IPv4 checksum %#04x, want %#04x", outer.Checksum, ipv4Checksum(outer.Contents))
		}
		// Packets that left in a run carry a UDP checksum (the lab's
		// interfaces compute it in software), the others none.
		if u := p.Layer(layers.LayerTypeUDP).(*layers.UDP); u.Checksum != 0 {
			withCsum++
			if !udpChecksumOK(outer, u) {
				t.Errorf("outer UDP checksum %#04x is wrong", u.Checksum)
			}
		}
	}
	sends := r.linkB.runs.sent.Load()
	t.Logf("%d packets through the AF_PACKET socket in %d sends (%d with a UDP checksum), %d through the raw socket", r.linkSent.Load(), sends, withCsum, r.rawSent.Load())
	if sends >= r.linkSent.Load() || withCsum == 0 {
		t.Errorf("no run of packets left as one GSO packet")
	}

	// The next-hop lookup itself, in the source's namespace, on a handle of
	// its own (the running sender uses r's).
	inNS(t, src, func() error {
		nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer nl.Close()
		r := &ringPath{nl: nl, mark: r.mark, now: time.Now()}
		var mac net.HardwareAddr = target.MAC
		if h := r.resolve([4]byte(net.ParseIP(targetIP).To4())); !h.ok || !bytes.Equal(h.ll.Addr[:6], mac) || int(h.ll.Ifindex) != src.Ifindex {
			t.Errorf("target: %+v, want %v on ifindex %d", h, mac, src.Ifindex)
		}
		if h := r.resolve([4]byte{192, 168, 0, 99}); h.ok {
			t.Errorf("address without a neighbour entry resolved: %+v", h)
		}
		if h := r.resolve([4]byte{127, 0, 0, 1}); h.ok {
			t.Errorf("local address resolved: %+v", h)
		}
		return nil
	})
}

// udpChecksumOK verifies the UDP checksum of a packet over its pseudo-header,
// header and payload.
func udpChecksumOK(ip *layers.IPv4, u *layers.UDP) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			sum += w
		}
	}
	add(ip.SrcIP.To4())
	add(ip.DstIP.To4())
	sum += uint32(unix.IPPROTO_UDP) + uint32(len(u.Contents)+len(u.Payload))
	add(u.Contents)
	add(u.Payload)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum == 0xffff
}

func TestIPv4Checksum(t *testing.T) {
	h := []byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7}
	if got := ipv4Checksum(h); got != 0xb861 {
		t.Errorf("checksum %#04x, want 0xb861", got)
	}
}

// TestRingIdle: with nothing to send the reader announces its sleep in
// ring_idle; the next mirrored packet still reaches the target, and the flag
// is cleared while traffic flows.
func TestRingIdle(t *testing.T) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	sinkVXLAN(t, target)
	s := startSourceOpts(t, src, seedConfig(t, seedYAML), Options{Datapath: DatapathRing})
	idle := func() uint32 {
		var v uint32
		if err := s.objs.RingIdle.Get(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	r := s.dp.(*ringPath)
	time.Sleep(time.Duration(r.idleLooks+10) * r.tick)
	if idle() != 1 {
		t.Fatalf("ring_idle = 0 after %v without traffic", time.Duration(r.idleLooks+10)*r.tick)
	}
	// A connection attempt to the seed's port: SYN and RST are mirrored.
	inNS(t, test, func() error {
		c, err := net.DialTimeout("tcp4", sourceIP+":1234", time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	deadline := time.Now().Add(2 * time.Second)
	for s.dp.(*ringPath).linkSent.Load()+s.dp.(*ringPath).rawSent.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.dp.(*ringPath).linkSent.Load() + s.dp.(*ringPath).rawSent.Load(); n < 2 {
		t.Fatalf("%d packets sent after the idle period, want 2", n)
	}
}

// TestMaxDelay: the reader's look interval and the program's wake threshold
// follow Options.MaxDelay; values out of range are refused.
func TestMaxDelay(t *testing.T) {
	for d, want := range map[time.Duration]uint32{
		time.Millisecond:        64 << 10,
		10 * time.Millisecond:   256 << 10,
		100 * time.Millisecond:  2560 << 10,
		time.Second:             4 << 20,
		500 * time.Millisecond:  4 << 20,
		2500 * time.Microsecond: 64 << 10,
	} {
		if got := ringWakeFor(d); got != want {
			t.Errorf("ringWakeFor(%v) = %d, want %d", d, got, want)
		}
	}
	if idleLooks(10*time.Millisecond) != 20 || idleLooks(time.Second) != 2 {
		t.Errorf("idle looks: %d at 10 ms, %d at 1 s", idleLooks(10*time.Millisecond), idleLooks(time.Second))
	}
	lab := seedLab(t, false)
	src := lab.Host("source")
	cfg := seedConfig(t, seedYAML)
	s := startSourceOpts(t, src, cfg, Options{Datapath: DatapathRing, MaxDelay: 50 * time.Millisecond})
	var wake uint32
	if err := s.objs.RingWake.Get(&wake); err != nil {
		t.Fatal(err)
	}
	if s.dp.(*ringPath).tick != 50*time.Millisecond || s.dp.(*ringPath).idleLooks != 4 || wake != ringWakeFor(50*time.Millisecond) {
		t.Errorf("max delay 50 ms: tick %v, idle looks %d, ring_wake %d", s.dp.(*ringPath).tick, s.dp.(*ringPath).idleLooks, wake)
	}
	for _, d := range []time.Duration{time.Microsecond, 2 * time.Second, -time.Second} {
		if err := src.Do(func() error { _, err := New(cfg, Options{MaxDelay: d}); return err }); !errors.Is(err, ErrConfig) {
			t.Errorf("max delay %v: %v", d, err)
		}
	}
}

func TestRingSizeFor(t *testing.T) {
	prog := func(snaplens ...uint32) *Program {
		p := &Program{Sessions: map[uint16]sourceSession{}}
		for i, n := range snaplens {
			p.Sessions[uint16(i)] = sourceSession{Snaplen: n}
		}
		return p
	}
	for _, c := range []struct {
		snaplens []uint32
		want     uint32
	}{
		{nil, 8 << 20},
		{[]uint32{96}, 8 << 20},
		{[]uint32{96, 1450}, 32 << 20},
		{[]uint32{8950}, 64 << 20},
	} {
		if got := ringSizeFor(prog(c.snaplens...), 8<<20); got != c.want {
			t.Errorf("snaplens %v: ring %d MiB, want %d", c.snaplens, got>>20, c.want>>20)
		}
	}
}
