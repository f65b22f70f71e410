// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestLinuxVXLANDevice: the collector captures what the Linux kernel's own
// VXLAN device (RFC 7348, like the cloud products) sends, not only what our
// tests build by hand, on both receive paths.
func TestLinuxVXLANDevice(t *testing.T) {
	for _, tc := range []struct{ receive, listen string }{
		{ReceiveSocket, "0.0.0.0:4789"},
		{ReceiveXDP, "192.168.0.6:4789"},
	} {
		t.Run(tc.receive, func(t *testing.T) { testLinuxVXLANDevice(t, tc.receive, tc.listen) })
	}
}

func testLinuxVXLANDevice(t *testing.T, receive, listen string) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "target", Addrs: []string{"192.168.0.6/24"}})
	src := lab.Host("source")
	peerMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	err := src.Do(func() error {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx42"}, VxlanId: 42,
			Group: net.IPv4(192, 168, 0, 6), Port: 4789, VtepDevIndex: src.Ifindex}
		if err := netlink.LinkAdd(vx); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("10.42.0.1/24")
		if err := netlink.AddrAdd(vx, addr); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(vx); err != nil {
			return err
		}
		// A static neighbour: the datagram goes out at once, without ARP.
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: vx.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.IPv4(10, 42, 0, 2), HardwareAddr: peerMAC})
	})
	if err != nil {
		t.Skipf("vxlan device: %v", err)
	}
	out := t.TempDir()
	var c *Collector
	if err := lab.Host("target").Do(func() (err error) {
		c, err = New(Options{Listen: listen, Receive: receive, OutputDir: out, Readers: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if c.Receive() != receive {
		t.Fatalf("receive path %s, want %s", c.Receive(), receive)
	}
	stop := runCollector(t, c)
	if err := src.Do(func() error {
		conn, err := net.Dial("udp4", "10.42.0.2:9999")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("through the kernel's vxlan"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, c, 1)
	stop()
	path := onlyFile(t, out, "vni-42/vni-42-")
	lines := tsharkFields(t, path, "frame.interface_name", "eth.dst", "ip.src", "ip.dst", "udp.dstport", "udp.length")
	want := "192.168.0.230/vni42|02:00:00:00:00:02|10.42.0.1|10.42.0.2|9999|34"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("tshark %q, want %q", lines, want)
	}
}
