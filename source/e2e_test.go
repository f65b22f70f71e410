// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestSeedEquivalence runs the seed's scenario and checks that what reaches
// the target is, packet for packet, `tcpdump -s 96` on the source interface
// with the filter's equivalent: both directions, VNI 1, cut to 96, nothing else.
func TestSeedEquivalence(t *testing.T) {
	for _, datapath := range []string{DatapathKernel, DatapathRing, DatapathPerf} {
		for _, offload := range []bool{false, true} {
			t.Run(datapath+"/"+map[bool]string{false: "offload-off", true: "offload-on"}[offload], func(t *testing.T) {
				testSeedEquivalence(t, equivalence{datapath: datapath, offload: offload, attach: AttachAuto, snap: 96})
			})
		}
	}
}

// TestWholeFrameEquivalence is TestSeedEquivalence for a session that keeps
// whole frames (no packet_length: cut only to the path MTU, 1,500 - 50 in
// the lab): the copies are `tcpdump -s 1450`. With offloads off every copy
// of the ring datapath is a single frame and leaves directly from the kernel
// (bpf/direct.h: inbound cloned at the ingress hook, outbound sent on from
// the replica) when the programs are attached by TCX links; with tc filters,
// which outlive a killed source, copies take the ring. With offloads on the
// outbound TSO aggregates take the ring, cut like tcpdump cuts them.
func TestWholeFrameEquivalence(t *testing.T) {
	for _, offload := range []bool{false, true} {
		for _, attach := range []string{AttachTCX, AttachTC} {
			t.Run(attach+"/"+map[bool]string{false: "offload-off", true: "offload-on"}[offload], func(t *testing.T) {
				s, _ := testSeedEquivalence(t, equivalence{datapath: DatapathRing, offload: offload, attach: attach, snap: 1450})
				stats, err := s.Stats()
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range stats {
					t.Logf("%s: %d mirrored, %d sent directly", st.Direction, st.Packets, st.Direct)
					switch {
					case attach == AttachTC && st.Direct != 0:
						t.Errorf("%s: %d copies sent directly with tc filters, which stay after a kill", st.Direction, st.Direct)
					case attach == AttachTCX && !offload && st.Direct != st.Packets:
						t.Errorf("%s: %d of %d copies sent directly, want all: every copy is a single frame", st.Direction, st.Direct, st.Packets)
					}
				}
			})
		}
	}
}

// TestNoDirectSends: with Options.NoDirect (--direct-sends=false) every
// whole-frame copy takes the ring, and the copies are the same.
func TestNoDirectSends(t *testing.T) {
	s, _ := testSeedEquivalence(t, equivalence{datapath: DatapathRing, attach: AttachTCX, snap: 1450, noDirect: true})
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Direct != 0 || st.Packets == 0 {
			t.Errorf("%s: %d mirrored, %d of them directly; want none directly", st.Direction, st.Packets, st.Direct)
		}
	}
}

// TestSegmentsEquivalence is TestWholeFrameEquivalence where the source's
// TCP segments fit a VXLAN packet whole (source and target on an MTU of
// 1600, the test host on 1500): with offloads off, the outbound aggregates
// leave directly as one each, segmented by the kernel inside their tunnel
// headers (direct_push), not through the replica; the copies are
// still `tcpdump -s 1550`, byte for byte.
func TestSegmentsEquivalence(t *testing.T) {
	s, src := testSeedEquivalence(t, equivalence{datapath: DatapathRing, attach: AttachTCX, snap: 1550, wide: true})
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		t.Logf("%s: %d mirrored, %d sent directly", st.Direction, st.Packets, st.Direct)
		if st.Direct != st.Packets {
			t.Errorf("%s: %d of %d copies sent directly, want all", st.Direction, st.Direct, st.Packets)
		}
	}
	var replicaIn uint64
	for ifindex := range s.replicas {
		_, recv := replicaNames(s.devName, ifindex)
		out, err := src.Run("ip", "-j", "-s", "link", "show", "dev", recv)
		if err != nil {
			t.Fatal(err)
		}
		var links []struct {
			Stats struct {
				RX struct{ Packets uint64 } `json:"rx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
			t.Fatalf("ip -j -s link show dev %s: %v: %s", recv, err, out)
		}
		n := links[0].Stats.RX.Packets
		replicaIn += n
	}
	out := stats[1].Packets
	t.Logf("the replica received %d of %d outbound copies", replicaIn, out)
	if replicaIn*2 > out {
		t.Errorf("the replica received %d of %d outbound copies: the aggregates did not leave directly", replicaIn, out)
	}
}

// TestSeedEquivalenceTC is TestSeedEquivalence with the programs attached
// through tc clsact, as on kernels without TCX.
func TestSeedEquivalenceTC(t *testing.T) {
	for _, datapath := range []string{DatapathKernel, DatapathRing} {
		for _, offload := range []bool{false, true} {
			t.Run(datapath+"/"+map[bool]string{false: "offload-off", true: "offload-on"}[offload], func(t *testing.T) {
				testSeedEquivalence(t, equivalence{datapath: datapath, offload: offload, attach: AttachTC, snap: 96})
			})
		}
	}
}

// equivalence is one run of testSeedEquivalence.
type equivalence struct {
	datapath, attach string
	offload          bool
	// snap is the session's cut: 96 (the seed's packet_length), or the
	// path MTU - 50 for whole frames (1450, or 1550 with wide).
	snap int
	// wide gives source and target an MTU of 1600 and the test host
	// 1500: the source's TCP segments then fit a VXLAN packet whole.
	wide bool
	// noDirect is Options.NoDirect.
	noDirect bool
}

// testSeedEquivalence runs the seed's scenario with the session cut to
// e.snap bytes and returns the source, still running.
func testSeedEquivalence(t *testing.T, e equivalence) (*Source, *netlab.Host) {
	datapath, offload, attach, snap := e.datapath, e.offload, e.attach, e.snap
	lab := seedLab(t, offload)
	if e.wide {
		lab = labtest.ForTest(t,
			netlab.HostSpec{Name: "source", Addrs: []string{sourceIP + "/24"}, Offload: offload, MTU: 1600},
			netlab.HostSpec{Name: "test", Addrs: []string{testIP + "/24"}, Offload: offload},
			netlab.HostSpec{Name: "target", Addrs: []string{targetIP + "/24"}, Offload: offload, MTU: 1600},
		)
	}
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	yaml := seedYAML
	if snap != 96 {
		yaml = strings.Replace(yaml, "packet_length: 96, ", "", 1)
	}
	cfg := seedConfig(t, yaml)

	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", strconv.Itoa(snap), "tcp and host "+testIP+" and port 1234")
	if snap != 96 {
		// The target's neighbour resolved first, and its direct hop written:
		// every copy can then leave directly from the first one.
		if _, err := src.Run("ping", "-c1", "-W1", targetIP); err != nil {
			t.Fatal(err)
		}
	}
	s := startSourceOpts(t, src, cfg, Options{Datapath: datapath, Attach: attach, NoDirect: e.noDirect})
	// (With tc filters or direct sends off, no next hop is kept.)
	if snap != 96 && datapath == DatapathRing && !e.noDirect && attach != AttachTC {
		waitDirectHop(t, s, targetIP)
	}

	gotSrc, gotTest := seedConversation(t, src, test)
	if gotSrc != "test to source\n" || gotTest != "hello\nsource to test\n" {
		t.Fatalf("conversation broken: source read %q, test read %q", gotSrc, gotTest)
	}
	bulk(t, src, test, 256<<10)
	noise(t, src, test)

	want := atSource.packets(t)
	got := atTarget.packets(t)
	if len(want) < 8 {
		t.Fatalf("source capture has only %d packets (%s)", len(want), atSource.dump.Output())
	}
	if len(got) != len(want) {
		for _, p := range got {
			t.Logf("target: %v", p)
		}
		if stats, err := s.Stats(); err == nil {
			t.Logf("counters: %+v", stats)
		}
		t.Fatalf("target received %d VXLAN packets, tcpdump on the source saw %d", len(got), len(want))
	}
	t.Logf("%d packets mirrored and seen by tcpdump", len(want))
	// The two directions are compared separately, each in order: an inbound
	// and an outbound packet mirrored at nearly the same moment may reach the
	// target in either order (outbound clones on an interface without
	// offloads take the replica veth's queue), as they may reach tcpdump.
	type mirrored struct {
		vni   uint32
		inner []byte
		outer *layers.IPv4
		udp   *layers.UDP
	}
	var wantDir, gotDir [2][][]byte
	var gotMeta [2][]mirrored
	isInbound := func(frame []byte) bool {
		tcp := packetTCP(frame)
		if tcp == nil {
			t.Fatalf("not TCP: %s", describe(frame))
		}
		return tcp.DstPort == 1234
	}
	for i := range want {
		w := want[i].Data()
		if len(w) > snap {
			t.Fatalf("tcpdump -s %d gave %d bytes", snap, len(w))
		}
		d := 1
		if isInbound(w) {
			d = 0
		}
		wantDir[d] = append(wantDir[d], w)
		vni, inner, outer, udp := decap(t, got[i])
		d = 1
		if isInbound(inner) {
			d = 0
		}
		gotDir[d] = append(gotDir[d], inner)
		gotMeta[d] = append(gotMeta[d], mirrored{vni, inner, outer, udp})
	}
	dirs := map[bool]int{true: len(wantDir[0]), false: len(wantDir[1])}
	var reordered [2]int
	ports := map[[2]uint16]uint16{}
	for d := 0; d < 2; d++ {
		name := []string{"inbound", "outbound"}[d]
		if len(gotDir[d]) != len(wantDir[d]) {
			t.Errorf("%s: %d mirrored, tcpdump saw %d", name, len(gotDir[d]), len(wantDir[d]))
			continue
		}
		for i := range wantDir[d] {
			m := gotMeta[d][i]
			if m.vni != 1 {
				t.Errorf("%s packet %d: vni %d, want 1", name, i, m.vni)
			}
			if m.outer.SrcIP.String() != sourceIP || m.outer.DstIP.String() != targetIP {
				t.Errorf("%s packet %d: outer %s > %s", name, i, m.outer.SrcIP, m.outer.DstIP)
			}
			if m.outer.Flags&layers.IPv4DontFragment == 0 {
				t.Errorf("%s packet %d: DF not set", name, i)
			}
			if m.outer.TOS != mirrorTOS {
				t.Errorf("%s packet %d: outer TOS %#x, want %#x (DSCP Lower Effort: mirrored traffic)", name, i, m.outer.TOS, mirrorTOS)
			}
			if !bytes.Equal(m.inner, wantDir[d][i]) {
				reordered[d]++
			}
			// Symmetric hash: both directions of the flow share one outer port.
			tcp := packetTCP(m.inner)
			key := [2]uint16{uint16(tcp.SrcPort), uint16(tcp.DstPort)}
			if d == 0 {
				key = [2]uint16{uint16(tcp.DstPort), uint16(tcp.SrcPort)}
			}
			if p, ok := ports[key]; ok && p != uint16(m.udp.SrcPort) {
				t.Errorf("%s packet %d: outer source port %d, earlier %d for the same flow", name, i, m.udp.SrcPort, p)
			}
			ports[key] = uint16(m.udp.SrcPort)
		}
	}
	// Same packets, byte for byte: the multisets of each direction are equal.
	// Order may differ between packets the kernel received on different CPUs
	// at nearly the same moment (tcpdump's tap and the tc hook run on the CPU
	// that processes each packet); those are counted and logged.
	for d := 0; d < 2; d++ {
		name := []string{"inbound", "outbound"}[d]
		left := map[string]int{}
		for _, w := range wantDir[d] {
			left[string(w)]++
		}
		for i, g := range gotDir[d] {
			if left[string(g)] == 0 {
				t.Errorf("%s packet %d mirrored but not seen by tcpdump:\n %x\n %s", name, i, g, describe(g))
				continue
			}
			left[string(g)]--
		}
		for w, n := range left {
			if n > 0 {
				t.Errorf("%s: seen by tcpdump but not mirrored (%d times):\n %x\n %s", name, n, []byte(w), describe([]byte(w)))
			}
		}
		if reordered[d] > 0 {
			t.Logf("%s: %d of %d packets at a different position than in tcpdump's capture", name, reordered[d], len(wantDir[d]))
		}
	}
	if dirs[true] == 0 || dirs[false] == 0 {
		t.Errorf("directions: %d inbound, %d outbound; want both", dirs[true], dirs[false])
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, st := range stats {
		n += st.Packets
		if st.Errors != 0 {
			t.Errorf("%s %s: %d errors", st.Session, st.Direction, st.Errors)
		}
	}
	if n != uint64(len(want)) {
		t.Errorf("counters say %d mirrored, want %d", n, len(want))
	}
	return s, src
}

// waitDirectHop waits until the ring datapath sends copies to target
// directly (its next hop is in xm_hops).
func waitDirectHop(t *testing.T, s *Source, target string) {
	t.Helper()
	key := addrWord(netip.MustParseAddr(target))
	var h sourceHop
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s.objs.XmHops.Lookup(key, &h) == nil {
			return
		}
	}
	t.Fatalf("no direct hop for %s after 3s", target)
}

// TestDirectOtherInterface mirrors eth0 whole to a target reached through a
// second link that is not mirrored (m0 on the source, m1 on the target): the
// source attaches xm_direct_egress to m0, every copy leaves directly, and
// what reaches m1 is `tcpdump -s 1450` of eth0, byte for byte.
func TestDirectOtherInterface(t *testing.T) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	if out, err := exec.Command("ip", "link", "add", "m0", "netns", src.NS, "type", "veth", "peer", "name", "m1", "netns", target.NS).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	for _, c := range []struct {
		h         *netlab.Host
		dev, addr string
	}{{src, "m0", "10.77.0.1/24"}, {target, "m1", "10.77.0.2/24"}} {
		for _, args := range [][]string{{"addr", "add", c.addr, "dev", c.dev}, {"link", "set", c.dev, "up"}} {
			if _, err := c.h.Run("ip", args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The new link may take a moment to come up on a loaded machine (one
	// full run lost its only ping): a few tries.
	for try := 1; ; try++ {
		_, err := src.Run("ping", "-c1", "-W1", "10.77.0.2")
		if err == nil {
			break
		}
		if try == 5 {
			t.Fatal(err)
		}
	}
	sinkVXLAN(t, target)
	// A snap length of the copies' size: at the default 256 KiB tcpdump's
	// capture ring holds 64 packets and drops some of a burst of copies.
	path := filepath.Join(t.TempDir(), "m1.pcap")
	dump, err := target.StartTcpdump(context.Background(), "-i", "m1", "-s", "1600", "-n", "-U", "--immediate-mode", "-B", "16384", "-w", path, "udp", "port", "4789")
	if err != nil {
		t.Fatal(err)
	}
	atTarget := &capture{dump: dump, path: path}
	atSource := startCapture(t, src, "source", "-s", "1450", "tcp and host "+testIP+" and port 1234")
	yaml := strings.Replace(strings.Replace(seedYAML, "packet_length: 96, ", "", 1), "target: 192.168.0.147", "target: 10.77.0.2", 1)
	s := startSourceOpts(t, src, seedConfig(t, yaml), Options{Datapath: DatapathRing, Attach: AttachTCX})
	waitDirectHop(t, s, "10.77.0.2")

	seedConversation(t, src, test)
	bulk(t, src, test, 256<<10)
	want, got := atSource.packets(t), atTarget.packets(t)
	if len(want) < 8 || len(got) != len(want) {
		stats, _ := s.Stats()
		var h sourceHop
		herr := s.objs.XmHops.Lookup(addrWord(netip.MustParseAddr("10.77.0.2")), &h)
		t.Logf("counters %+v; hop %+v %v; tcpdump on m1: %s", stats, h, herr, dump.Output())
		t.Fatalf("target received %d copies on m1, tcpdump on eth0 saw %d", len(got), len(want))
	}
	var wantDir, gotDir [2][][]byte
	for i := range want {
		_, inner, outer, _ := decap(t, got[i])
		if outer.SrcIP.String() != sourceIP || outer.DstIP.String() != "10.77.0.2" {
			t.Errorf("copy %d: outer %s > %s", i, outer.SrcIP, outer.DstIP)
		}
		for _, p := range []struct {
			frame []byte
			dirs  *[2][][]byte
		}{{want[i].Data(), &wantDir}, {inner, &gotDir}} {
			d := 1
			if packetTCP(p.frame).DstPort == 1234 {
				d = 0
			}
			p.dirs[d] = append(p.dirs[d], p.frame)
		}
	}
	// The same packets, byte for byte; the order may differ for packets
	// the kernel handled on different CPUs at nearly the same moment, as
	// in testSeedEquivalence.
	for d := range 2 {
		left := map[string]int{}
		for _, w := range wantDir[d] {
			left[string(w)]++
		}
		for i, g := range gotDir[d] {
			if left[string(g)] == 0 {
				t.Errorf("direction %d, copy %d not seen by tcpdump:\n %x", d, i, g)
				continue
			}
			left[string(g)]--
		}
		for w, n := range left {
			if n > 0 {
				t.Errorf("direction %d: seen by tcpdump, not mirrored (%d times):\n %x", d, n, []byte(w))
			}
		}
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		if st.Direct != st.Packets || st.Errors != 0 {
			t.Errorf("%s: %d mirrored, %d directly, %d errors; want all directly", st.Direction, st.Packets, st.Direct, st.Errors)
		}
	}
	r := s.dp.(*ringPath)
	r.direct.mu.Lock()
	extra := len(r.direct.extra)
	r.direct.mu.Unlock()
	if extra != 1 {
		t.Errorf("xm_direct_egress on %d interfaces, want 1 (m0)", extra)
	}
}
