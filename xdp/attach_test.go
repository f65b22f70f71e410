// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

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

// TestReloadAddsBackendEgress: a backend that a reload adds behind an
// interface no backend of the start used is forwarded to (redirect), and
// a frame the redirect map refuses is not counted as the backend's
// traffic. The start alone filled the redirect map: every packet for such a
// backend was drop_no_route until a restart, while lb status counted them as
// its packets.
func TestReloadAddsBackendEgress(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}})
	lb := lab.Host("lb")
	err := lb.Do(func() error {
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: lb.Ifindex, IP: b1Addr.AsSlice(), HardwareAddr: b1MACFix, State: netlink.NUD_PERMANENT}); err != nil {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rx0"}, PeerName: "rx1"}); err != nil {
			return err
		}
		rx0, err := netlink.LinkByName("rx0")
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr("10.9.0.1/24")
		if err := netlink.AddrAdd(rx0, a); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(rx0); err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: rx0.Attrs().Index, IP: farAddr.AsSlice(),
			HardwareAddr: net.HardwareAddr{0x02, 0x09, 0, 0, 0, 0x02}, State: netlink.NUD_PERMANENT})
	})
	if err != nil {
		t.Fatal(err)
	}
	frame := vxlanFrame(t, frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1, dstMAC: lb.MAC})
	err = lb.Do(func() error {
		b, err := startBalancer(Options{XDPMode: ModeGeneric}, lbConfig("wrr", "none", backend("b1", b1Addr, 0, 1)))
		if b != nil {
			defer b.Close()
		}
		if err != nil {
			return err
		}
		if err := b.Apply(lbConfig("wrr", "none", backend("b1", b1Addr, 0, 0), backend("far", farAddr, 0, 1))); err != nil {
			return err
		}
		far := func() (packets uint64, drops uint64, err error) {
			st, err := b.Status()
			if err != nil {
				return 0, 0, err
			}
			for _, be := range st.Backends {
				if be.Name == "far" {
					packets = be.Packets
				}
			}
			return packets, st.Counter(StatDropNoRoute), nil
		}
		ret, _, err := runXDP(b.objs.XmirrorLb, frame, lb.Ifindex)
		if err != nil {
			return err
		}
		packets, drops, err := far()
		if err != nil {
			return err
		}
		if ret != 4 || packets != 1 || drops != 0 {
			return fmt.Errorf("backend added by a reload behind rx0: verdict %d (want 4, redirect), its packets %d (want 1), drop_no_route %d", ret, packets, drops)
		}
		// An egress the redirect map does not hold: dropped, and not the
		// backend's traffic.
		rx0, err := net.InterfaceByName("rx0")
		if err != nil {
			return err
		}
		if err := b.objs.LbTxPorts.Delete(uint32(rx0.Index)); err != nil {
			return err
		}
		if ret, _, err = runXDP(b.objs.XmirrorLb, frame, lb.Ifindex); err != nil {
			return err
		}
		packets, drops, err = far()
		if err != nil {
			return err
		}
		if ret != 1 || packets != 1 || drops != 1 {
			return fmt.Errorf("egress not in the redirect map: verdict %d (want 1, drop), backend packets %d (want still 1), drop_no_route %d (want 1)", ret, packets, drops)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStartKeepsStaticNeighbours: a backend's static (permanent) ARP entry
// is what it was after the start and a reload. The start asked the kernel to
// resolve every backend's next hop with an NTF_USE update, which replaced a
// permanent entry with an incomplete one: a collector that answers no ARP,
// the reason it had a static entry, then got nothing.
func TestStartKeepsStaticNeighbours(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}})
	lb := lab.Host("lb")
	static := func() (string, error) {
		ns, err := netlink.NeighList(lb.Ifindex, netlink.FAMILY_V4)
		if err != nil {
			return "", err
		}
		for _, n := range ns {
			if n.IP.Equal(b1Addr.AsSlice()) {
				if n.State != netlink.NUD_PERMANENT || n.HardwareAddr.String() != b1MACFix.String() {
					return fmt.Sprintf("state %#x, MAC %s", n.State, n.HardwareAddr), nil
				}
				return "", nil
			}
		}
		return "gone", nil
	}
	err := lb.Do(func() error {
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: lb.Ifindex, IP: b1Addr.AsSlice(), HardwareAddr: b1MACFix, State: netlink.NUD_PERMANENT}); err != nil {
			return err
		}
		cfg := lbConfig("wrr", "outer", backend("b1", b1Addr, 0, 1))
		b, err := startBalancer(Options{XDPMode: ModeGeneric}, cfg)
		if b != nil {
			defer b.Close()
		}
		if err != nil {
			return err
		}
		if bad, err := static(); err != nil || bad != "" {
			return fmt.Errorf("static neighbour of b1 after the start: %s %v", bad, err)
		}
		if err := b.Apply(cfg); err != nil {
			return err
		}
		if bad, err := static(); err != nil || bad != "" {
			return fmt.Errorf("static neighbour of b1 after a reload: %s %v", bad, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
