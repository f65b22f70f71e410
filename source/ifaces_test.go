// SPDX-License-Identifier: Apache-2.0

package source

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// localSink receives the copies a source in h sends to its own address
// sourceIP (the target of icmpYAML(sourceIP)), so that a test can count
// them and read their outer source address.
type localSink struct{ c net.PacketConn }

func newLocalSink(t *testing.T, h *netlab.Host) *localSink {
	t.Helper()
	var c net.PacketConn
	if err := h.Do(func() (err error) { c, err = net.ListenPacket("udp4", sourceIP+":4789"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &localSink{c}
}

// copies returns the number of copies received until none came for 500 ms,
// by outer source address.
func (s *localSink) copies() map[string]int {
	by := map[string]int{}
	buf := make([]byte, 2048)
	for {
		s.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, from, err := s.c.ReadFrom(buf)
		if err != nil {
			return by
		}
		by[from.(*net.UDPAddr).IP.String()]++
	}
}

// waitReady waits up to 5 s for Ready to be nil (want "") or to name want.
func waitReady(s *Source, want string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Ready()
		if (want == "" && err == nil) || (want != "" && err != nil && strings.Contains(err.Error(), want)) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metricsOf(s *Source) string {
	var m strings.Builder
	s.WriteMetrics(&m)
	return m.String()
}

func pingFrom(t *testing.T, h *netlab.Host, addr string) {
	t.Helper()
	if out, err := h.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", addr); err != nil {
		t.Fatalf("ping %s: %v\n%s", addr, err, out)
	}
}

// TestSourceInterfaceAddressChanged: the outer source of the copies is the
// source interface's IPv4 address, and when that address changes (a new
// DHCP lease) the copies carry the new one. They kept the address of the
// start, which the host no longer had, until a restart or SIGHUP. An
// interface left without IPv4 address, which a start and a reload refuse,
// is not mirrored and says so, until it has one again.
func TestSourceInterfaceAddressChanged(t *testing.T) {
	defer func(d time.Duration) { ifaceEvery = d }(ifaceEvery)
	ifaceEvery = 100 * time.Millisecond
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	sink := newLocalSink(t, src)
	cfg := strings.Replace(icmpYAML(sourceIP), "sources: [eth0]", "sources: [eth0, xm-a]", 1)
	s := startSource(t, src, seedConfig(t, cfg))
	pingFrom(t, test, "10.9.0.1")
	if got := sink.copies(); got["10.9.0.1"] != 6 || len(got) != 1 {
		t.Fatalf("copies of 3 pings over xm-a by outer source: %v, want 6 from 10.9.0.1", got)
	}

	for _, args := range [][]string{{"addr", "del", "10.9.0.1/24", "dev", "xm-a"}, {"addr", "add", "10.9.0.11/24", "dev", "xm-a"}} {
		if _, err := src.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * ifaceEvery)
	pingFrom(t, test, "10.9.0.11")
	if got := sink.copies(); got["10.9.0.11"] != 6 || len(got) != 1 {
		t.Errorf("copies of 3 pings over xm-a after its address changed, by outer source: %v, want 6 from 10.9.0.11", got)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready() = %v after the address changed", err)
	}

	if _, err := src.Run("ip", "addr", "flush", "dev", "xm-a"); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(s, "xm-a"); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Errorf("Ready() = %v with xm-a left without IPv4 address, want it named and why", err)
	}
	if m := metricsOf(s); !strings.Contains(m, `xmirror_source_interface_up{interface="xm-a"} 0`) {
		t.Errorf("metrics do not show xm-a not mirrored:\n%s", m)
	}
	if _, err := src.Run("ip", "addr", "add", "10.9.0.12/24", "dev", "xm-a"); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(s, ""); err != nil {
		t.Fatalf("Ready() = %v after xm-a has an address again", err)
	}
	pingFrom(t, test, "10.9.0.12")
	if got := sink.copies(); got["10.9.0.12"] != 6 || len(got) != 1 {
		t.Errorf("copies of 3 pings over xm-a with its new address, by outer source: %v, want 6 from 10.9.0.12", got)
	}
}

// TestSourceInterfaceRecreatedAnotherGone: of two source interfaces, one is
// deleted for good (a container that is gone) and the other is deleted and
// created again (a container restarted). The one that is back is mirrored
// again; it was not, and was reported gone, for as long as the other one
// stayed away: the configuration was applied again only as a whole.
func TestSourceInterfaceRecreatedAnotherGone(t *testing.T) {
	defer func(d time.Duration) { ifaceEvery = d }(ifaceEvery)
	ifaceEvery = 100 * time.Millisecond
	lab := seedLab(t, false)
	src, test := lab.Host("source"), lab.Host("test")
	mkA := func() {
		t.Helper()
		if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
			t.Fatal(err)
		}
	}
	mkA()
	if err := src.Veth("xm-c", "10.9.1.1/24", test, "xm-d", "10.9.1.2/24"); err != nil {
		t.Fatal(err)
	}
	sink := newLocalSink(t, src)
	cfg := strings.Replace(icmpYAML(sourceIP), "sources: [eth0]", "sources: [eth0, xm-a, xm-c]", 1)
	s := startSource(t, src, seedConfig(t, cfg))
	pingFrom(t, test, "10.9.0.1")
	if got := sink.copies(); got["10.9.0.1"] != 6 {
		t.Fatalf("copies of 3 pings over xm-a: %v, want 6", got)
	}

	for _, name := range []string{"xm-c", "xm-a"} {
		if _, err := src.Run("ip", "link", "del", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitReady(s, "xm-a"); err == nil {
		t.Errorf("Ready() = nil with xm-a and xm-c deleted")
	}
	mkA()
	time.Sleep(10 * ifaceEvery)
	pingFrom(t, test, "10.9.0.1")
	if got := sink.copies(); got["10.9.0.1"] != 6 {
		t.Errorf("copies of 3 pings over the re-created xm-a while xm-c is gone: %v, want 6", got)
	}
	err := s.Ready()
	if err == nil || !strings.Contains(err.Error(), "xm-c") || strings.Contains(err.Error(), "xm-a") {
		t.Errorf("Ready() = %v, want xm-c named and not xm-a", err)
	}
	m := metricsOf(s)
	for _, want := range []string{
		`xmirror_source_interface_up{interface="xm-a"} 1`,
		`xmirror_source_interface_up{interface="xm-c"} 0`,
		`xmirror_source_interface_up{interface="eth0"} 1`,
		"xmirror_source_interfaces 2\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// TestPathMTUFollowed: the route to the target changes to one with a
// smaller MTU while the source runs (a failover to a tunnel). Whole frames
// are cut to the new path MTU within a second; they kept the MTU of the
// start, and left larger than the path carries (never fragmented: lost
// on the way, or refused by the socket) until a SIGHUP.
func TestPathMTUFollowed(t *testing.T) {
	defer func(d time.Duration) { ifaceEvery = d }(ifaceEvery)
	ifaceEvery = 100 * time.Millisecond
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	yaml := strings.Replace(seedYAML, "packet_length: 96", "packet_length: 0", 1)
	startSource(t, src, seedConfig(t, yaml))
	if _, err := src.Run("ip", "route", "add", targetIP+"/32", "dev", "eth0", "mtu", "lock", "300"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * ifaceEvery)
	sinkVXLAN(t, target)
	cap := startCapture(t, target, "target", "udp", "port", "4789")
	bulk(t, src, test, 64<<10)
	got := cap.packets(t)
	if len(got) < 10 {
		t.Fatalf("only %d mirrored packets", len(got))
	}
	for i, p := range got {
		if _, _, outer, _ := decap(t, p); outer.Length > 300 {
			t.Fatalf("packet %d: outer length %d after the path MTU became 300", i, outer.Length)
		}
	}
}
