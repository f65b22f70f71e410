// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestAttachAndPinning: the program attaches in each mode, stays attached
// after Close (pinned), is taken over by the next Balancer with its backend
// ids, and DetachOnExit removes it all.
func TestAttachAndPinning(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "n", Addrs: []string{"10.0.0.1/24"}},
		netlab.HostSpec{Name: "g", Addrs: []string{"10.0.0.2/24"}},
	)
	pin := testPinPath(t)
	cfg := lbConfig("maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 2))
	n := lab.Host("n")
	xdpOn := func(h *netlab.Host) string {
		out, _ := h.Run("ip", "link", "show", "eth0")
		return out
	}

	var ids map[string]uint32
	err := n.Do(func() error {
		b, err := startBalancer(Options{PinPath: pin, XDPMode: ModeNative}, cfg)
		if err != nil {
			return err
		}
		if b.Mode() != ModeNative {
			return fmt.Errorf("mode %q", b.Mode())
		}
		ids = map[string]uint32{}
		for k, v := range b.ids {
			ids[k] = v
		}
		return b.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := xdpOn(n); !strings.Contains(out, "prog/xdp") && !strings.Contains(out, " xdp ") {
		t.Fatalf("program detached on Close:\n%s", out)
	}
	err = n.Do(func() error {
		b, err := New(Options{PinPath: pin, XDPMode: ModeAuto, DetachOnExit: true})
		if err != nil {
			return err
		}
		for k, v := range ids {
			if b.ids[k] != v {
				return fmt.Errorf("backend %s: id %d after restart, was %d", k, b.ids[k], v)
			}
		}
		if err := b.Apply(cfg); err != nil {
			return err
		}
		if err := b.Attach(); err != nil {
			return err
		}
		if b.Mode() != ModeNative {
			return fmt.Errorf("mode after takeover %q, want native", b.Mode())
		}
		st, err := ReadPinnedStatus(pin)
		if err != nil {
			return err
		}
		if len(st.Backends) != 2 || st.Algorithm != "maglev" || st.Mode != ModeNative {
			return fmt.Errorf("pinned status: %+v", st)
		}
		return b.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := xdpOn(n); strings.Contains(out, "xdp") {
		t.Fatalf("program still attached after DetachOnExit:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(pin, "lb_active")); !os.IsNotExist(err) {
		t.Fatalf("pins left behind: %v", err)
	}

	// generic mode, unpinned
	g := lab.Host("g")
	err = g.Do(func() error {
		b, err := New(Options{XDPMode: ModeGeneric})
		if err != nil {
			return err
		}
		defer b.Close()
		if err := b.Apply(cfg); err != nil {
			return err
		}
		if err := b.Attach(); err != nil {
			return err
		}
		if out := xdpOn(g); !strings.Contains(out, "xdpgeneric") {
			return fmt.Errorf("not in generic mode:\n%s", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
