// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestProcessXDPInterfaceRecreated: with receive xdp, a receive interface
// deleted and created again (a restarted container's veth) gets the program
// back; before, it silently had none and only the port's socket received.
func TestProcessXDPInterfaceRecreated(t *testing.T) {
	lab := newColLab(t, 0)
	mk := func() {
		t.Helper()
		if err := lab.col.Veth("xc0", "10.63.0.1/24", lab.sender, "xc1", ""); err != nil {
			t.Fatal(err)
		}
	}
	attached := func() bool {
		out, _ := lab.col.Run("ip", "link", "show", "xc0")
		return strings.Contains(out, "xdp")
	}
	waitFor := func(what string, p *netlab.Proc, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s:\n%s", what, p.Output())
			}
		}
	}
	mk()
	p, err := lab.col.Start(labtest.XmirrorBinary(t), "collect", "--listen", "10.63.0.1:4790", "--receive", ReceiveXDP,
		"--out", t.TempDir(), "--metrics-listen", "127.0.0.1:9471")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Signal(syscall.SIGTERM)
	waitFor("program on xc0", p, attached)
	if _, err := lab.col.Run("ip", "link", "del", "xc0"); err != nil {
		t.Fatal(err)
	}
	waitFor("gone logged", p, func() bool { return strings.Contains(p.Output(), "receive interface gone") })
	mk()
	waitFor("program on the re-created xc0", p, attached)
	if !strings.Contains(p.Output(), "program attached anew") {
		t.Errorf("no log of the new attachment:\n%s", p.Output())
	}
}

// TestProcessAutoPortTaken: in auto mode a listen port another program holds
// is that error, said once. Before, the start logged "XDP unavailable,
// receiving with sockets", blaming XDP, and then failed on the same port.
func TestProcessAutoPortTaken(t *testing.T) {
	lab := newColLab(t, 0)
	if err := lab.col.Veth("xa0", "10.64.0.1/24", lab.sender, "xa1", ""); err != nil {
		t.Fatal(err)
	}
	var held *net.UDPConn
	if err := lab.col.Do(func() (err error) {
		held, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 64, 0, 1), Port: 4790})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, err := lab.col.Run(labtest.XmirrorBinary(t), "collect", "--listen", "10.64.0.1:4790",
		"--out", t.TempDir(), "--metrics-listen", "127.0.0.1:9472")
	if err == nil {
		t.Fatalf("collect started on a port another program holds:\n%s", out)
	}
	if strings.Contains(out, "XDP unavailable") || !strings.Contains(out, "address already in use") {
		t.Errorf("want the port's error without blaming XDP:\n%s", out)
	}
}
