// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// xdpMd is struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// runXDP runs prog once over frame as if received on ifindex, in the calling
// thread's network namespace (bpf_fib_lookup uses its routes and neighbours).
// It returns errors instead of failing tb: it runs inside netlab's Do, on a
// goroutine of its own where t.Fatal would hang the test.
func runXDP(prog *ebpf.Program, frame []byte, ifindex int) (uint32, []byte, error) {
	in := append([]byte(nil), frame...)
	opts := &ebpf.RunOptions{
		Data:    in,
		DataOut: make([]byte, len(frame)+512),
		Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(ifindex)},
	}
	ret, err := prog.Run(opts)
	if err != nil {
		return 0, nil, fmt.Errorf("test run: %w", err)
	}
	// cilium/ebpf cuts DataOut to what the kernel wrote.
	return ret, opts.DataOut, nil
}

// frameSpec describes a mirrored VXLAN frame sent to the load balancer.
type frameSpec struct {
	srcMAC, dstMAC   net.HardwareAddr
	src, dst         netip.Addr
	sport, dport     uint16
	vlan             uint16 // 0: untagged
	ipOptions        bool
	zeroUDPChecksum  bool
	vni              uint32
	innerSrc, inDst  netip.Addr // IPv4 or IPv6
	innerSP, innerDP uint16
	innerICMP        bool
	ipID             uint16
	pad              int // extra inner payload bytes
}

var (
	senderMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMACFake = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// vxlanFrame builds the frame with gopacket, lengths and checksums computed.
func vxlanFrame(tb testing.TB, f frameSpec) []byte {
	tb.Helper()
	if f.srcMAC == nil {
		f.srcMAC = senderMAC
	}
	if f.dstMAC == nil {
		f.dstMAC = lbMACFake
	}
	if f.dport == 0 {
		f.dport = 4789
	}
	inner := innerFrame(tb, f)
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: f.srcMAC, DstMAC: f.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ls = append(ls, eth)
	if f.vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: f.vlan, Type: layers.EthernetTypeIPv4})
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: f.ipID, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
	if f.ipOptions {
		// Router Alert (4 bytes) and a Timestamp-like padding NOP run.
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
	udp.SetNetworkLayerForChecksum(ip)
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: f.vni}
	ls = append(ls, ip, udp, vx, gopacket.Payload(inner))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	out := buf.Bytes()
	if f.zeroUDPChecksum {
		off := udpOffset(out)
		out[off+6], out[off+7] = 0, 0
	}
	return out
}

func innerFrame(tb testing.TB, f frameSpec) []byte {
	tb.Helper()
	if !f.innerSrc.IsValid() {
		f.innerSrc = netip.MustParseAddr("192.168.0.230")
		f.inDst = netip.MustParseAddr("192.168.0.161")
		f.innerSP, f.innerDP = 1234, 57032
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0xbc}, DstMAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0x77}}
	var l3 gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if f.innerSrc.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: f.innerSrc.AsSlice(), DstIP: f.inDst.AsSlice()}
		if f.innerICMP {
			ip.Protocol = layers.IPProtocolICMPv4
		}
		l3 = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: f.innerSrc.AsSlice(), DstIP: f.inDst.AsSlice()}
		l3 = ip
		ls = append(ls, eth, ip)
	}
	if f.innerICMP {
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: f.innerSP, Seq: 1})
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.innerSP), DstPort: layers.TCPPort(f.innerDP), Seq: 4181467553, Ack: 3509843935, PSH: true, ACK: true, Window: 510}
		tcp.SetNetworkLayerForChecksum(l3)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(append([]byte("source to test\n"), make([]byte, f.pad)...)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// l3Offset is where the IPv4 header starts (after an optional 802.1Q tag).
func l3Offset(frame []byte) int {
	if t := binary.BigEndian.Uint16(frame[12:]); t == 0x8100 || t == 0x88a8 {
		return 18
	}
	return 14
}

func udpOffset(frame []byte) int {
	l3 := l3Offset(frame)
	return l3 + int(frame[l3]&0xf)*4
}

// checksum is the plain RFC 1071 sum, computed from scratch (independent of
// the incremental updates the BPF program does).
func checksum(parts ...[]byte) uint16 {
	var s uint32
	for _, p := range parts {
		for i := 0; i+1 < len(p); i += 2 {
			s += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			s += uint32(p[len(p)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// expectForward is frame as the load balancer must send it to a backend:
// next-hop MACs, destination address and port, TTL one lower, and checksums
// recomputed in full. fragment: the frame is an IP fragment (the UDP checksum is only
// patched, since the datagram is not all here).
func expectForward(frame []byte, dstMAC, srcMAC net.HardwareAddr, dst netip.Addr, port uint16) []byte {
	out := append([]byte(nil), frame...)
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC)
	l3 := l3Offset(out)
	ihl := int(out[l3]&0xf) * 4
	d := dst.As4()
	copy(out[l3+16:l3+20], d[:])
	out[l3+8]--
	out[l3+10], out[l3+11] = 0, 0
	binary.BigEndian.PutUint16(out[l3+10:], checksum(out[l3:l3+ihl]))
	fragOff := binary.BigEndian.Uint16(out[l3+6:]) & 0x1fff
	more := binary.BigEndian.Uint16(out[l3+6:])&0x2000 != 0
	if fragOff != 0 {
		return out
	}
	u := l3 + ihl
	if port != 0 {
		binary.BigEndian.PutUint16(out[u+2:], port)
	}
	if more || (out[u+6] == 0 && out[u+7] == 0) {
		return out
	}
	setUDPChecksum(out, false)
	return out
}

// setUDPChecksum recomputes the outer UDP checksum of a whole datagram (or
// clears it).
func setUDPChecksum(frame []byte, zero bool) {
	l3 := l3Offset(frame)
	u := udpOffset(frame)
	frame[u+6], frame[u+7] = 0, 0
	if zero {
		return
	}
	ulen := int(binary.BigEndian.Uint16(frame[u+4:]))
	pseudo := make([]byte, 12)
	copy(pseudo, frame[l3+12:l3+20])
	pseudo[9] = 17
	binary.BigEndian.PutUint16(pseudo[10:], uint16(ulen))
	c := checksum(pseudo, frame[u:u+ulen])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[u+6:], c)
}

// withTTL is frame with its outer IPv4 TTL set to ttl and the header
// checksum recomputed.
func withTTL(frame []byte, ttl uint8) []byte {
	out := append([]byte(nil), frame...)
	l3 := l3Offset(out)
	out[l3+8] = ttl
	fixIPChecksum(out)
	return out
}

// fixIPChecksum recomputes the outer IPv4 header checksum in place.
func fixIPChecksum(frame []byte) {
	l3 := l3Offset(frame)
	ihl := int(frame[l3]&0xf) * 4
	frame[l3+10], frame[l3+11] = 0, 0
	binary.BigEndian.PutUint16(frame[l3+10:], checksum(frame[l3:l3+ihl]))
}

// shorten cuts a whole, unfragmented frame to n bytes and makes what is left
// a well-formed datagram: IP and UDP lengths and both checksums fit the cut.
func shorten(frame []byte, n int) []byte {
	out := append([]byte(nil), frame[:n]...)
	l3 := l3Offset(out)
	ihl := int(out[l3]&0xf) * 4
	binary.BigEndian.PutUint16(out[l3+2:], uint16(n-l3))
	fixIPChecksum(out)
	u := l3 + ihl
	binary.BigEndian.PutUint16(out[u+4:], uint16(n-u))
	setUDPChecksum(out, false)
	return out
}

// gopacketChecksumsValid re-serializes the decoded frame with gopacket's own
// checksum code and reports whether the bytes stay the same.
func gopacketChecksumsValid(tb testing.TB, frame []byte) bool {
	tb.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("decode: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var ip *layers.IPv4
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			ls = append(ls, v)
		case *layers.Dot1Q:
			ls = append(ls, v)
		case *layers.IPv4:
			ip = v
			ls = append(ls, v)
		case *layers.UDP:
			v.SetNetworkLayerForChecksum(ip)
			ls = append(ls, v, gopacket.Payload(v.Payload))
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
				tb.Fatal(err)
			}
			return string(buf.Bytes()) == string(frame)
		}
	}
	tb.Fatalf("no UDP layer in frame")
	return false
}

// protocolConfig is lbConfig with a listener of protocol proto on its
// default port and the Maglev table size the Go mirror's predictor assumes.
func protocolConfig(proto, algo, aff string, backends ...config.Backend) *config.LoadBalancer {
	c := lbConfig(algo, aff, backends...)
	c.Listener.Protocol = proto
	c.Listener.Port = c.Listener.DefaultPort()
	c.MaglevSize = 65537
	return c
}

// runCase applies cfg, runs in once and checks the verdict and that stat
// counted the packet; it returns the output and the counters around the run.
func (g *goldenLab) runCase(t *testing.T, cfg *config.LoadBalancer, in []byte, verdict uint32, stat Stat) (out []byte, before, after [statMax]uint64) {
	t.Helper()
	if err := g.bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	before = g.stats(t)
	ret, out := g.run(t, in)
	after = g.stats(t)
	if ret != verdict {
		t.Fatalf("verdict %d, want %d (stats delta %v)", ret, verdict, delta(before, after))
	}
	if after[stat] != before[stat]+1 {
		t.Errorf("counter %s did not count the packet (delta %v)", stat, delta(before, after))
	}
	return out, before, after
}

// protocolCase is one golden frame on a GENEVE or GRE listener.
type protocolCase struct {
	name    string
	cfg     *config.LoadBalancer
	in      []byte
	verdict uint32
	want    func([]byte) []byte // nil: the output is not compared
	stat    Stat
	hashed  string // "inner": no hash_fallback event, "outer": one, "": either
}

// runProtocolCases runs each case as a subtest: verdict, counter, hash
// fallback and exact output; check, when non-nil, adds the protocol's own
// checks of an output that matched.
func runProtocolCases(t *testing.T, g *goldenLab, cases []protocolCase, check func(t *testing.T, c protocolCase, out []byte)) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, before, after := g.runCase(t, c.cfg, c.in, c.verdict, c.stat)
			fell := after[StatHashFallback] - before[StatHashFallback]
			if c.hashed == "inner" && fell != 0 || c.hashed == "outer" && fell != 1 {
				t.Errorf("hashed %s, but %d hash_fallback events", c.hashed, fell)
			}
			if c.want == nil {
				return
			}
			if want := c.want(c.in); !bytes.Equal(out, want) {
				t.Fatalf("output differs\n got %x\nwant %x", out, want)
			}
			if check != nil {
				check(t, c, out)
			}
		})
	}
}

// predictedBackend is the backend (address and MAC) the Go mirror of the
// hash picks for frame on a proto listener, by predict.
func (g *goldenLab) predictedBackend(t *testing.T, frame []byte, proto string, predict func(uint32) netip.Addr) (netip.Addr, net.HardwareAddr) {
	t.Helper()
	h, ok := ListenerFlowHash(frame, proto, "inner-symmetric")
	if !ok {
		t.Fatalf("ListenerFlowHash: not hashable")
	}
	dst := predict(h)
	if dst == b2Addr {
		return dst, g.b2MAC
	}
	return dst, g.b1MAC
}

// runOneVerdict runs frame and fails unless exactly one verdict counter
// counted it.
func (g *goldenLab) runOneVerdict(t *testing.T, frame []byte) (ret uint32, out []byte) {
	t.Helper()
	before := g.stats(t)
	ret, out = g.run(t, frame)
	after := g.stats(t)
	var verdicts uint64
	for st := range statVerdicts {
		verdicts += after[st] - before[st]
	}
	if verdicts != 1 {
		t.Fatalf("%d verdicts counted for one packet (%v)", verdicts, delta(before, after))
	}
	return ret, out
}

// checkDeterministic fails unless hash gives the same answer twice for
// every affinity.
func checkDeterministic(t *testing.T, hash func(aff string) (uint32, bool)) {
	t.Helper()
	for _, aff := range []string{"inner-symmetric", "outer", "none"} {
		h1, ok1 := hash(aff)
		h2, ok2 := hash(aff)
		if h1 != h2 || ok1 != ok2 {
			t.Fatalf("not deterministic")
		}
	}
}

// fuzzProtocolDataPath runs arbitrary frames through the BPF program on a
// Maglev listener of proto over b1 and b2: one verdict per packet, and what
// it forwards goes to the backend the Go mirror of the hash predicts; check,
// when non-nil, adds the protocol's own checks of a forwarded frame.
func fuzzProtocolDataPath(f *testing.F, proto string, check func(t *testing.T, frame, out []byte)) {
	g := newGoldenLab(f)
	if err := g.bal.Apply(protocolConfig(proto, "maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))); err != nil {
		f.Fatal(err)
	}
	predict := g.maglevPredictor(1, 1)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses these
		}
		ret, out := g.runOneVerdict(t, frame)
		if ret != 3 {
			return
		}
		h, ok := ListenerFlowHash(frame, proto, "inner-symmetric")
		if !ok {
			t.Fatalf("forwarded a frame the Go mirror does not hash")
		}
		l3 := l3Offset(out)
		want := predict(h)
		if rec, ok := g.fragRecord(frame); ok {
			want = rec // a later fragment follows its first
		}
		if string(out[l3+16:l3+20]) != string(want.AsSlice()) {
			t.Fatalf("forwarded to %x, the Go mirror says %s (hash %#x)", out[l3+16:l3+20], want, h)
		}
		if check != nil {
			check(t, frame, out)
		}
	})
}

// checkHashesLikeVXLAN fails unless every spec's frame from fwd and from rev
// (the two directions of one inner flow) hashes on a proto listener as the
// VXLAN frame of fwd does.
func checkHashesLikeVXLAN[S any](t *testing.T, proto string, fwd, rev frameSpec, specs []S, build func(testing.TB, frameSpec, S) []byte) {
	t.Helper()
	want, ok := FlowHash(vxlanFrame(t, fwd), "inner-symmetric")
	if !ok {
		t.Fatal("VXLAN frame not hashable")
	}
	for _, spec := range specs {
		for _, s := range []frameSpec{fwd, rev} {
			h, ok := ListenerFlowHash(build(t, s, spec), proto, "inner-symmetric")
			if !ok || h != want {
				t.Errorf("%+v from %s: hash %#x ok %v, want %#x (the VXLAN frame's)", spec, s.innerSrc, h, ok, want)
			}
		}
	}
}

// receiver counts the packets a backend's kernel delivers, by the flow and
// direction tagged in their last 9 bytes (see vxlanPayload).
type receiver struct {
	conn net.PacketConn
	mu   sync.Mutex
	got  map[uint64]int // flow<<8|dir -> packets
	seqs map[uint32]int // sequence number -> packets
	n    int
	bad  []string
}

// listen starts a receiver on a socket of network and addr in h. Every
// packet must come from the mirror source 10.0.0.230 and pass check, which
// returns why a packet is not the tunnel's (or "" when it is).
func listen(t *testing.T, h *netlab.Host, network, addr string, check func(pkt []byte) string) *receiver {
	t.Helper()
	r := &receiver{got: make(map[uint64]int), seqs: make(map[uint32]int)}
	if err := h.Do(func() (err error) {
		r.conn, err = net.ListenPacket(network, addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	// Room for a whole burst: a loaded host lost 3 of 1,000 to the default
	// buffer.
	r.conn.(interface{ SetReadBuffer(int) error }).SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := r.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			pkt := buf[:n]
			r.mu.Lock()
			r.n++
			if !addrIP(from).Equal(net.ParseIP("10.0.0.230")) {
				r.bad = append(r.bad, "outer source "+from.String())
			}
			if bad := check(pkt); bad != "" {
				r.bad = append(r.bad, bad)
			} else {
				tail := pkt[n-9:]
				r.got[uint64(binary.BigEndian.Uint32(tail))<<8|uint64(tail[4])]++
				r.seqs[binary.BigEndian.Uint32(tail[5:])]++
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// addrIP is the IP address of a UDP or raw IP peer.
func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.IPAddr:
		return a.IP
	}
	return nil
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *receiver) has(flow uint32, dir uint8) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[uint64(flow)<<8|uint64(dir)] > 0
}

// seqCount is how many datagrams with sequence number seq arrived.
func (r *receiver) seqCount(seq uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seqs[seq]
}

func (r *receiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.got)
	clear(r.seqs)
	r.n = 0
}

func waitCount(rs []*receiver, want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := 0
		for _, r := range rs {
			n += r.count()
		}
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resetAll starts every receiver counting from zero.
func resetAll(rs []*receiver) {
	for _, r := range rs {
		r.reset()
	}
}

// listenerLab builds the namespaces of the listener tests (a mirror source,
// the load balancer and two backends on one bridge), starts a receiver of
// the tunnel on each backend and returns the xmirror binary and a pin path.
func listenerLab(t *testing.T, listen func(*testing.T, *netlab.Host) *receiver) (lab *netlab.Lab, bin, pin string, rs []*receiver) {
	lab = labtest.ForTest(t,
		netlab.HostSpec{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		// PeerXDP: frames the program sends back into the veth with XDP_TX
		// are dropped unless the bridge end runs XDP.
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, GRO: true, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
		netlab.HostSpec{Name: "b2", Addrs: []string{"10.0.0.12/24"}},
	)
	bin = labtest.XmirrorBinary(t)
	pin = testPinPath(t)
	rs = []*receiver{listen(t, lab.Host("b1")), listen(t, lab.Host("b2"))}
	return lab, bin, pin, rs
}

// listenerTestConfig is the config of the GENEVE and GRE listener tests: a
// listener of protocol proto on 10.0.0.1 spreading with algo over the two
// backends, on the protocol's default port.
func listenerTestConfig(name, proto, algo string) string {
	return fmt.Sprintf(`load_balancer:
  listener: {name: %s, protocol: %s, vip: 10.0.0.1, interfaces: [eth0]}
  algorithm: %s
  affinity: inner-symmetric
  backends:
    - {name: target-01, address: 10.0.0.11}
    - {name: target-02, address: 10.0.0.12}
metrics: {listen: 127.0.0.1:9190}
`, name, proto, algo)
}

// startLBConfig writes yaml to a file and runs `xmirror lb` on it with
// --detach-on-exit, stopped when the test ends.
func startLBConfig(t *testing.T, lb *netlab.Host, bin, pin, yaml string) *netlab.Part {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startLB(t, lb, bin, cfg, pin, "--detach-on-exit")
	t.Cleanup(func() { p.Signal(syscall.SIGTERM); <-p.Done() })
	return p
}

// lbStatus is `xmirror lb status` of the pinned load balancer, for failure
// messages.
func lbStatus(lb *netlab.Host, bin, pin string) string {
	st, _ := lb.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms")
	return st
}

// checkPlaced waits for both directions of flows inner flows at rs[0] and
// rs[1] and fails unless each flow's two directions reached one backend,
// b1 got between lo and hi percent of the flows and no packet was bad.
// diag is added to the message when packets are missing.
func checkPlaced(t *testing.T, rs []*receiver, flows, lo, hi int, diag func() string) {
	t.Helper()
	if got := waitCount(rs, 2*flows, 5*time.Second); got != 2*flows {
		t.Fatalf("received %d of %d packets\n%s", got, 2*flows, diag())
	}
	onB1 := 0
	for f := range uint32(flows) {
		f0, f1 := rs[0].has(f, 0), rs[0].has(f, 1)
		if f0 != f1 || f0 == rs[1].has(f, 0) || f1 == rs[1].has(f, 1) {
			t.Fatalf("flow %d split: b1 %v/%v b2 %v/%v", f, f0, f1, rs[1].has(f, 0), rs[1].has(f, 1))
		}
		if f0 {
			onB1++
		}
	}
	if onB1 < flows*lo/100 || onB1 > flows*hi/100 {
		t.Errorf("b1 got %d of %d flows, want about half", onB1, flows)
	}
	for _, r := range rs {
		if len(r.bad) > 0 {
			t.Fatalf("bad packets: %v", r.bad[:min(3, len(r.bad))])
		}
	}
}

// checkMalformedDropped runs send, which sends one malformed packet, and
// fails if a backend receives anything within 200ms or if /metrics of the
// load balancer in lb does not count one drop_malformed. what names the
// packet in messages.
func checkMalformedDropped(t *testing.T, rs []*receiver, lb *netlab.Host, what string, send func()) {
	t.Helper()
	resetAll(rs)
	send()
	time.Sleep(200 * time.Millisecond)
	if n := waitCount(rs, 1, 0); n != 0 {
		t.Errorf("%s was delivered (%d)", what, n)
	}
	if m := httpGet(t, lb, "/metrics"); !strings.Contains(m, `xmirror_lb_packets_total{reason="drop_malformed"} 1`) {
		t.Errorf("/metrics does not count %s:\n%s", what, grepLines(m, "drop_malformed"))
	}
}

// testPinPath is a fresh pin directory removed (with whatever it holds) when
// the test ends. Not through Detach, which a running process's lock
// refuses: cleanups run last-in first-out, so the lab kills the test's
// processes only after this one.
func testPinPath(t *testing.T) string {
	t.Helper()
	pin := fmt.Sprintf("/sys/fs/bpf/xmirror-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	t.Cleanup(func() {
		if err := removePins(pin); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove the test's pins: %v", err)
		}
	})
	return pin
}

// sendFlows sends both directions of flows inner flows through send,
// pausing a millisecond every 100 flows so a burst fits the receivers'
// buffers.
func sendFlows(t *testing.T, flows int, send func(flow uint32, dir uint8) error) {
	t.Helper()
	for f := range uint32(flows) {
		for dir := range uint8(2) {
			if err := send(f, dir); err != nil {
				t.Fatal(err)
			}
		}
		if f%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// checkOneBackendPerFlow runs the frames of each of flows flows: every frame
// is forwarded, a flow's frames all go to the backend its first went to,
// and the flows use both backends.
func checkOneBackendPerFlow(t *testing.T, g *goldenLab, flows int, framesOf func(flow int) [][]byte) {
	t.Helper()
	used := map[string]bool{}
	for flow := range flows {
		var dst string
		for i, frame := range framesOf(flow) {
			ret, out := g.run(t, frame)
			if ret != 3 {
				t.Fatalf("flow %d packet %d: verdict %d", flow, i, ret)
			}
			l3 := l3Offset(out)
			got := netip.AddrFrom4([4]byte(out[l3+16 : l3+20])).String()
			if i == 0 {
				dst = got
			} else if got != dst {
				t.Fatalf("flow %d packet %d went to %s, its first to %s", flow, i, got, dst)
			}
		}
		used[dst] = true
	}
	if len(used) != 2 {
		t.Errorf("%d flows used backends %v, want both", flows, used)
	}
}

// runRepeated runs prog b.N times over frame in the kernel (one
// BPF_PROG_TEST_RUN, timed), after warm untimed runs (at least one) that
// warm the connection table, and returns the verdict. The *_flows programs
// take the next flow on every run: warm = their flow count records them all.
func (g *goldenLab) runRepeated(b *testing.B, prog *ebpf.Program, frame []byte, warm int) uint32 {
	b.Helper()
	var ret uint32
	err := g.lb.Do(func() error {
		in := append([]byte(nil), frame...)
		if _, err := prog.Run(&ebpf.RunOptions{
			Data:    in,
			Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(g.lb.Ifindex)},
			Repeat:  uint32(max(warm, 1)),
		}); err != nil {
			return err
		}
		b.ResetTimer()
		var err error
		ret, err = prog.Run(&ebpf.RunOptions{
			Data:    in,
			Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(g.lb.Ifindex)},
			Repeat:  uint32(b.N),
			Reset:   b.ResetTimer,
		})
		b.StopTimer()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return ret
}

// startBalancer is New, Apply and Attach, the start of `xmirror lb`.
func startBalancer(opts Options, cfg *config.LoadBalancer) (*Balancer, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := b.Apply(cfg); err != nil {
		return b, err
	}
	return b, b.Attach()
}
