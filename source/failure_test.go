// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// startBinary runs `xmirror source` with yaml and args in h and waits until
// the programs are attached.
func startBinary(t *testing.T, h *netlab.Host, yaml string, args ...string) *netlab.Proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "source.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start(labtest.XmirrorBinary(t), append([]string{"source", "--config", path}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.Output(), "mirror source attached") {
		select {
		case <-p.Done():
			t.Fatalf("xmirror source exited: %s", p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmirror source did not attach within 15s: %s", p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// snmpCounter reads one counter of /proc/net/snmp in h's namespace, e.g.
// ("Icmp", "InEchos").
func snmpCounter(t *testing.T, h *netlab.Host, group, name string) uint64 {
	t.Helper()
	out, err := h.Run("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := range header {
			if header[i] == name && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no %s %s in /proc/net/snmp", group, name)
	return 0
}

// vxlanPing is a VXLAN payload (VNI 1) carrying an ICMP echo request to dst
// in an Ethernet frame for dstMAC: what a host that decapsulates it answers.
func vxlanPing(t *testing.T, dstMAC net.HardwareAddr, dst string) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.VXLAN{ValidIDFlag: true, VNI: 1},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(testIP), DstIP: net.ParseIP(dst)},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("xmirror"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestKilledKernelSourceDeliversNothing: after kill -9 of `xmirror source
// --datapath kernel` its VXLAN device stays, and it must not decapsulate into
// the host what anyone sends to UDP 4789 (the reproduction: pings in
// VXLAN from another host were answered). The next start, whatever its
// datapath, removes the device.
func TestKilledKernelSourceDeliversNothing(t *testing.T) {
	for _, attach := range []string{AttachTCX, AttachTC} {
		t.Run(attach, func(t *testing.T) { testKilledKernelSource(t, attach) })
	}
}

func testKilledKernelSource(t *testing.T, attach string) {
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	p := startBinary(t, src, seedYAML, "--datapath", "kernel", "--attach", attach)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()

	var mac net.HardwareAddr
	inNS(t, src, func() error {
		l, err := netlink.LinkByName("xmirror0")
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	before := snmpCounter(t, src, "Icmp", "InEchos")
	inNS(t, test, func() error {
		c, err := net.Dial("udp4", sourceIP+":4789")
		if err != nil {
			return err
		}
		defer c.Close()
		for range 3 {
			if _, err := c.Write(vxlanPing(t, mac, sourceIP)); err != nil {
				return err
			}
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if got := snmpCounter(t, src, "Icmp", "InEchos") - before; got != 0 {
		t.Errorf("the killed source's VXLAN device delivered %d pings into the host", got)
	}

	// A start with another datapath (attached through TCX) cleans up.
	startSource(t, src, seedConfig(t, seedYAML))
	inNS(t, src, func() error {
		if _, err := netlink.LinkByName("xmirror0"); err == nil {
			t.Errorf("xmirror0 left by the killed run is still there after a start")
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			if fs, _ := netlink.FilterList(eth0, parent); len(fs) != 0 {
				t.Errorf("tc filters left by the killed run on eth0: %v", fs)
			}
		}
		return nil
	})
}

// TestSourcesDoNotLoop: two hosts that mirror all their traffic to each
// other. Without a rule each mirrors the other's mirrored packets back (and
// the ICMP port unreachable each host answers them with), forever: about a
// hundred packets a second each way. With it, the mirroring stops with the
// traffic.
func TestSourcesDoNotLoop(t *testing.T) {
	lab := seedLab(t, false)
	a, b, other := lab.Host("source"), lab.Host("test"), lab.Host("target")
	all := func(target string) string {
		return `
filters:
  - name: all
    inbound: [{priority: 1, action: accept, protocol: all}]
    outbound: [{priority: 1, action: accept, protocol: all}]
sessions:
  - {name: all, priority: 1, vni: 7, filter: all, sources: [eth0], target: ` + target + `}
metrics: {listen: "off"}
`
	}
	srcA := startSource(t, a, seedConfig(t, all(testIP)))
	srcB := startSource(t, b, seedConfig(t, all(sourceIP)))
	mirrored := func() (n uint64) {
		for _, s := range []*Source{srcA, srcB} {
			stats, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range stats {
				n += st.Packets
			}
		}
		return n
	}
	if _, err := other.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", sourceIP); err != nil {
		t.Fatal(err)
	}
	// The ring datapath sends within MaxDelay (100 ms); what follows the
	// last echo reply is the loop.
	time.Sleep(500 * time.Millisecond)
	before := mirrored()
	time.Sleep(2 * time.Second)
	if after := mirrored(); after != before || before == 0 {
		t.Errorf("mirrored %d packets, then %d more in 2 s without traffic: the sources mirror each other's mirrored traffic", before, after-before)
	}
}

// icmpYAML mirrors ICMP both ways to target.
func icmpYAML(target string) string {
	return `
filters:
  - name: icmp
    inbound: [{priority: 1, action: accept, protocol: icmp}]
    outbound: [{priority: 1, action: accept, protocol: icmp}]
sessions:
  - {name: pings, priority: 1, vni: 5, filter: icmp, sources: [eth0], target: ` + target + `}
metrics: {listen: "off"}
`
}

// TestTargetProblems: a target that does not take the mirrored packets is
// not healthy, and the metrics, Ready (/healthz) and Targets say why. Before
// the watch, packets to an absent target counted as sent, errors stayed 0
// and /healthz said 200.
func TestTargetProblems(t *testing.T) {
	defer func(d time.Duration) { healthEvery = d }(healthEvery)
	healthEvery = 200 * time.Millisecond
	for _, c := range []struct {
		name, target, reason, detail string
	}{
		{"absent on the subnet", "192.168.0.99", ReasonUnresolved, "does not answer ARP"},
		{"nothing listens on 4789", targetIP, ReasonICMP, "port unreachable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lab := seedLab(t, false)
			src, test := lab.Host("source"), lab.Host("test")
			s := startSource(t, src, seedConfig(t, icmpYAML(c.target)))
			if err := s.Ready(); err != nil {
				t.Fatalf("not ready before any packet: %v", err)
			}
			ping, err := test.Start("ping", "-i", "0.1", "-c", "60", sourceIP)
			if err != nil {
				t.Fatal(err)
			}
			defer ping.Stop()
			deadline := time.Now().Add(6 * time.Second)
			var h []TargetHealth
			for {
				h = s.Targets()
				if len(h) == 1 && h[0].Reason == c.reason {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("targets %+v, want reason %s", h, c.reason)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(h[0].Detail, c.detail) || h[0].Target.String() != c.target || len(h[0].Sessions) != 1 {
				t.Errorf("target health %+v, want detail with %q", h[0], c.detail)
			}
			if err := s.Ready(); err == nil || !strings.Contains(err.Error(), c.reason) || !strings.Contains(err.Error(), c.target) {
				t.Errorf("Ready() = %v, want the target and %s", err, c.reason)
			}
			var m strings.Builder
			s.WriteMetrics(&m)
			for _, want := range []string{
				`xmirror_source_target_up{target="` + c.target + `"} 0`,
				`xmirror_source_target_problem{target="` + c.target + `",reason="` + c.reason + `"`,
			} {
				if !strings.Contains(m.String(), want) {
					t.Errorf("metrics lack %s:\n%s", want, m.String())
				}
			}
			if c.reason == ReasonICMP && h[0].ICMPErrors == 0 {
				t.Errorf("no ICMP errors counted: %+v", h[0])
			}
		})
	}
}

// TestLocalTargetHealthy: a target that is an address of the source host
// (a collector on the same machine) has a local route and no next hop to
// resolve; its copies arrive, so it is healthy, not "no route".
func TestLocalTargetHealthy(t *testing.T) {
	defer func(d time.Duration) { healthEvery = d }(healthEvery)
	healthEvery = 200 * time.Millisecond
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	var sink net.PacketConn
	if err := src.Do(func() (err error) { sink, err = net.ListenPacket("udp4", sourceIP+":4789"); return err }); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := startSource(t, src, seedConfig(t, icmpYAML(sourceIP)))
	ping, err := test.Start("ping", "-i", "0.1", "-c", "20", sourceIP)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := sink.ReadFrom(make([]byte, 2048)); err != nil {
		t.Fatalf("no copy reached the local target: %v", err)
	}
	// several health rounds with copies flowing
	time.Sleep(5 * healthEvery)
	if h := s.Targets(); len(h) != 1 || h[0].Reason != "" {
		t.Errorf("local target: %+v, want healthy", h)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready() = %v with a local target whose copies arrive", err)
	}
}

// TestSourceInterfaceRecreated: a source interface that is deleted is
// reported (Ready, metrics), and mirrored again once an interface of that
// name is back, without a reload: it was silently no longer mirrored.
func TestSourceInterfaceRecreated(t *testing.T) {
	defer func(d time.Duration) { ifaceEvery = d }(ifaceEvery)
	ifaceEvery = 100 * time.Millisecond
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	mk := func() {
		t.Helper()
		if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
			t.Fatal(err)
		}
	}
	mk()
	// The target is this host, so every copy can be counted.
	var sink net.PacketConn
	if err := src.Do(func() (err error) { sink, err = net.ListenPacket("udp4", sourceIP+":4789"); return err }); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	copies := func() int {
		n := 0
		buf := make([]byte, 2048)
		for {
			sink.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}
	cfg := strings.Replace(icmpYAML(sourceIP), "sources: [eth0]", "sources: [eth0, xm-a]", 1)
	s := startSource(t, src, seedConfig(t, cfg))
	ping := func() {
		t.Helper()
		if out, err := test.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", "10.9.0.1"); err != nil {
			t.Fatalf("ping over xm-a: %v\n%s", err, out)
		}
	}
	ping()
	if n := copies(); n != 6 {
		t.Fatalf("%d copies of 3 pings over xm-a, want 6", n)
	}

	if _, err := src.Run("ip", "link", "del", "xm-a"); err != nil {
		t.Fatal(err)
	}
	waitReady := func(want string) error {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := s.Ready()
			if (want == "" && err == nil) || (want != "" && err != nil && strings.Contains(err.Error(), want)) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := waitReady("xm-a"); err == nil || !strings.Contains(err.Error(), "xm-a") {
		t.Errorf("Ready() = %v with xm-a deleted, want it named", err)
	}
	var m strings.Builder
	s.WriteMetrics(&m)
	if !strings.Contains(m.String(), `xmirror_source_interface_up{interface="xm-a"} 0`) {
		t.Errorf("metrics do not show xm-a down:\n%s", m.String())
	}

	mk()
	if err := waitReady(""); err != nil {
		t.Fatalf("Ready() = %v after xm-a came back", err)
	}
	ping()
	if n := copies(); n != 6 {
		t.Errorf("%d copies of 3 pings over the re-created xm-a, want 6", n)
	}
	m.Reset()
	s.WriteMetrics(&m)
	if !strings.Contains(m.String(), `xmirror_source_interface_up{interface="xm-a"} 1`) {
		t.Errorf("metrics do not show xm-a up again:\n%s", m.String())
	}
}

// TestKilledSourceReplicasRemoved: the replica veths of a killed run are
// deleted by the next start even when that start has no replica of the
// same name to create (the source interface was created anew, or the
// configuration changed). They used to stay for good: the alias that marks
// them was never set (the kernel ignores IFLA_IFALIAS when it creates a
// link), so only a replica the new run happened to re-create went.
func TestKilledSourceReplicasRemoved(t *testing.T) {
	lab := seedLab(t, false) // eth0 without offloads: it takes a replica
	src, test := lab.Host("source"), lab.Host("test")
	if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, src, seedYAML)
	var replicas []string
	inNS(t, src, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "xmirror0") {
				replicas = append(replicas, l.Attrs().Name)
				if l.Attrs().Alias != deviceAlias && strings.HasPrefix(l.Attrs().Name, "xmirror0s") {
					t.Errorf("replica %s has alias %q, want %q", l.Attrs().Name, l.Attrs().Alias, deviceAlias)
				}
			}
		}
		return err
	})
	if len(replicas) != 2 {
		t.Fatalf("replica veths %v, want a pair for eth0", replicas)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()

	// The next run mirrors another interface, which takes no replica.
	if _, err := src.Run("ethtool", "-K", "xm-a", "tx", "on", "tso", "on"); err != nil {
		t.Fatal(err)
	}
	startSource(t, src, seedConfig(t, strings.Replace(seedYAML, "sources: [eth0]", "sources: [xm-a]", 1)))
	inNS(t, src, func() error {
		for _, name := range replicas {
			if _, err := netlink.LinkByName(name); err == nil {
				t.Errorf("replica %s of the killed run is still there after a start", name)
			}
		}
		return nil
	})
}

// TestTargetBehindLinkWithoutCarrier: the route to the target leaves by an
// interface that lost its carrier (cable out, the peer of a veth down). The
// kernel keeps the route and forgets the neighbour; the problem said
// "does not answer ARP", two checks later, which sends an operator to the
// target host. It names the interface without carrier now.
func TestTargetBehindLinkWithoutCarrier(t *testing.T) {
	defer func(d time.Duration) { healthEvery = d }(healthEvery)
	healthEvery = 200 * time.Millisecond
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Run("ip", "route", "add", "10.9.9.9/32", "via", "10.9.0.2"); err != nil {
		t.Fatal(err)
	}
	s := startSource(t, src, seedConfig(t, icmpYAML("10.9.9.9")))
	if _, err := test.Run("ip", "link", "set", "xm-b", "down"); err != nil {
		t.Fatal(err)
	}
	ping, err := test.Start("ping", "-i", "0.1", "-c", "60", sourceIP)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	deadline := time.Now().Add(6 * time.Second)
	for {
		h := s.Targets()
		if len(h) == 1 && h[0].Reason != "" {
			if h[0].Reason != ReasonNoRoute || !strings.Contains(h[0].Detail, "xm-a") || !strings.Contains(h[0].Detail, "carrier") {
				t.Errorf("target health %+v, want %s naming xm-a without carrier", h[0], ReasonNoRoute)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets %+v, want a problem", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
