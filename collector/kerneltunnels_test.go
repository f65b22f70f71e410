// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestLinuxTunnelDevices: what the Linux kernel's own geneve, erspan (type
// II and III) and gretap devices send lands in the session of their id,
// on both receive paths. A kernel built without those devices (this
// project's development machines) skips with the reason `ip link` gives.
func TestLinuxTunnelDevices(t *testing.T) {
	for _, dev := range []struct {
		name, session string
		args          []string // after "ip link add tun0 type"
	}{
		{"geneve", "geneve-7", []string{"geneve", "id", "7", "remote", "192.168.0.6"}},
		{"erspan-ii", "erspan-100", []string{"erspan", "seq", "key", "100", "local", "192.168.0.230", "remote", "192.168.0.6",
			"erspan_ver", "1", "erspan", "5"}},
		{"erspan-iii", "erspan-101", []string{"erspan", "seq", "key", "101", "local", "192.168.0.230", "remote", "192.168.0.6",
			"erspan_ver", "2", "erspan_dir", "egress", "erspan_hwid", "3"}},
		{"gretap", "gre-42", []string{"gretap", "key", "42", "local", "192.168.0.230", "remote", "192.168.0.6"}},
	} {
		for _, receive := range []string{ReceiveSocket, ReceiveXDP} {
			t.Run(dev.name+"/"+receive, func(t *testing.T) { testLinuxTunnelDevice(t, dev.args, dev.session, receive) })
		}
	}
}

func testLinuxTunnelDevice(t *testing.T, args []string, session, receive string) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "target", Addrs: []string{"192.168.0.6/24"}})
	src := lab.Host("source")
	if out, err := src.Run("ip", append([]string{"link", "add", "tun0", "type"}, args...)...); err != nil {
		t.Skipf("the kernel has no %s device: ip link add: %v: %s", args[0], err, strings.TrimSpace(out))
	}
	for _, cmd := range [][]string{
		{"addr", "add", "10.42.0.1/24", "dev", "tun0"},
		{"link", "set", "tun0", "up"},
		// A static neighbour: the frame goes out at once, without ARP.
		{"neigh", "add", "10.42.0.2", "lladdr", "02:00:00:00:00:02", "dev", "tun0", "nud", "permanent"},
	} {
		if out, err := src.Run("ip", cmd...); err != nil {
			t.Fatalf("ip %v: %v: %s", cmd, err, out)
		}
	}
	out := t.TempDir()
	var c *Collector
	if err := lab.Host("target").Do(func() (err error) {
		c, err = New(Options{Listen: "192.168.0.6:4789", Receive: receive, OutputDir: out, Readers: 1,
			Inputs: []Input{{Proto: ProtoVXLAN}, {Proto: ProtoGENEVE, Port: DefaultGenevePort}, {Proto: ProtoGRE}},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	if err := src.Do(func() error {
		conn, err := net.Dial("udp4", "10.42.0.2:9999")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("through the kernel's tunnel"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, c, 1)
	stop()
	lines := tsharkFields(t, onlyFile(t, out, session+"/"+session+"-"), "eth.dst", "ip.src", "ip.dst", "udp.dstport")
	if want := "02:00:00:00:00:02|10.42.0.1|10.42.0.2|9999"; len(lines) != 1 || lines[0] != want {
		t.Errorf("tshark %q, want %q", lines, want)
	}
}
