// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestXDPLinkLocalListen: a link-local IPv6 listen address names its
// interface with a zone ([fe80::77:2%eth0]:4789), as the socket path needs
// it. Before, the XDP path compared the zoned address with the interfaces'
// unzoned ones and refused to start: "no interface holds the listen address
// fe80::77:2%eth0", although eth0 held it (auto mode fell back to sockets,
// giving that as the reason).
func TestXDPLinkLocalListen(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "sender", Addrs: []string{"fe80::77:1/64"}},
		netlab.HostSpec{Name: "col", Addrs: []string{"fe80::77:2/64"}})
	sender, col := lab.Host("sender"), lab.Host("col")
	c, stop, err := runCollectorIn(t, col, Options{Listen: "[fe80::77:2%eth0]:4789", Receive: ReceiveXDP, OutputDir: t.TempDir()})
	if err != nil {
		t.Fatalf("collector on a link-local address with receive xdp: %v", err)
	}
	if c.Receive() != ReceiveXDP {
		t.Fatalf("receives with %s", c.Receive())
	}
	frame := vxlan(7, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil))
	err = sender.Do(func() error {
		to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[fe80::77:2%eth0]:4789"))
		conn, err := net.DialUDP("udp6", nil, to)
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 5 {
			if _, err := conn.Write(frame); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	waitReceived(t, c, 5)
	stop()
	if st := c.Stats(); st.Written != 5 {
		t.Errorf("stats %+v, want 5 written", st)
	}
}

// TestGenericXDPTakesGSOSegments: a collector whose listen address is on a
// bridge (no native XDP: the program would run in generic mode, on the
// socket buffer) and a sender that sends VXLAN as UDP GSO over a veth (the
// xmirror source's ring datapath does; so does any UDP_SEGMENT sender). The
// kernel hands generic XDP the whole aggregate: before, auto mode attached
// in generic mode and wrote each aggregate of 10 datagrams as one frame, the
// 10 inner frames one after the other with the VXLAN headers between them
// (10 packets written of 100 sent). Auto now receives such an interface
// with sockets, where the kernel cuts the aggregate into its datagrams.
func TestGenericXDPTakesGSOSegments(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "sender"}, netlab.HostSpec{Name: "col"})
	sender, col := lab.Host("sender"), lab.Host("col")
	// A veth of their own, with the kernel's default offloads (the lab's
	// switch cuts UDP GSO packets, as a wire would).
	if err := col.Veth("gc0", "", sender, "gs0", "10.65.0.1/24"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"link", "add", "br1", "type", "bridge"},
		{"link", "set", "gc0", "master", "br1"},
		{"addr", "add", "10.65.0.2/24", "dev", "br1"},
		{"link", "set", "br1", "up"},
	} {
		if _, err := col.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	c, stop, err := runCollectorIn(t, col, Options{Listen: "10.65.0.2:4789", OutputDir: out})
	if err != nil {
		t.Fatal(err)
	}
	const sends, segs = 10, 10
	var want [][]byte
	err = sender.Do(func() error {
		conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP("10.65.0.2"), Port: 4789})
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range sends {
			var run []byte
			seg := 0
			for j := range segs {
				inner := tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i*segs+j), 0, make([]byte, 100))
				want = append(want, inner)
				d := vxlan(9, inner)
				seg = len(d)
				run = append(run, d...)
			}
			raw, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, seg) }); err != nil {
				return err
			}
			if serr != nil {
				t.Skipf("no UDP GSO on this kernel: %v", serr)
			}
			if _, err := conn.Write(run); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	waitReceived(t, c, sends*segs)
	stop()
	if st := c.Stats(); st.Written != sends*segs {
		t.Errorf("receive %s: stats %+v, want %d written", c.Receive(), st, sends*segs)
	}
	got, _ := readCapture(t, onlyFile(t, out, ""))
	if len(got) != len(want) {
		t.Fatalf("%d packets in the file, want %d", len(got), len(want))
	}
	for i := range got {
		if string(got[i].data) != string(want[i]) {
			t.Fatalf("packet %d: %d bytes, want the %d-byte frame sent", i, len(got[i].data), len(want[i]))
		}
	}
}

// TestXDPFollowsMovedAddress: the listen address moved to another interface
// while the collector runs (ip addr del/add, a failover script). Before,
// the program stayed on the interface the address had left, nothing was
// logged and xmirror_collector_xdp_interface_up showed only that one at 1,
// while all traffic went to the one socket beside the program. The program
// is now attached to the interface that took the address within about a
// second, and the packets are written all the same.
func TestXDPFollowsMovedAddress(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "sender"}, netlab.HostSpec{Name: "col"})
	sender, col := lab.Host("sender"), lab.Host("col")
	if err := col.Veth("mv0", "10.66.0.2/24", sender, "ms0", "10.66.0.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := col.Veth("mv1", "", sender, "ms1", ""); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	c, stop, err := runCollectorIn(t, col, Options{Listen: "10.66.0.2:4789", Receive: ReceiveXDP, OutputDir: out})
	if err != nil {
		t.Fatal(err)
	}
	frame := vxlan(4, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil))
	sendN := func(n int) {
		t.Helper()
		err := sender.Do(func() error {
			send(t, "10.66.0.1", &net.UDPAddr{IP: net.ParseIP("10.66.0.2"), Port: 4789}, slices.Repeat([][]byte{frame}, n)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sendN(10)
	waitReceived(t, c, 10)
	for _, cmd := range [][]string{{"addr", "del", "10.66.0.2/24", "dev", "mv0"}, {"addr", "add", "10.66.0.2/24", "dev", "mv1"}} {
		if _, err := col.Run("ip", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range [][]string{{"addr", "del", "10.66.0.1/24", "dev", "ms0"}, {"addr", "add", "10.66.0.1/24", "dev", "ms1"}} {
		if _, err := sender.Run("ip", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c.Stats() // polls the links, as the metrics do
		out, _ := col.Run("ip", "link", "show", "mv1")
		if strings.Contains(out, "xdp") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no program on mv1, which holds the listen address now:\n%s", out)
		}
	}
	sendN(10)
	waitReceived(t, c, 20)
	stop()
	if st := c.Stats(); st.Written != 20 {
		t.Errorf("stats %+v, want 20 written", st)
	}
	var metrics strings.Builder
	c.set.WritePrometheus(&metrics)
	if !strings.Contains(metrics.String(), `xmirror_collector_xdp_interface_up{interface="mv1"} 1`) {
		t.Errorf("no xdp_interface_up for mv1:\n%s", metrics.String())
	}
}
