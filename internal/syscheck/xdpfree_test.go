// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestCollectXDPInterfaceTaken: the collector's interface runs an XDP
// program someone attached with ip link. `xmirror collect --receive xdp`
// refuses to start there, naming the program; before, `xmirror check
// --system --role collect` passed every row and said the collector could
// run.
func TestCollectXDPInterfaceTaken(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "col", Addrs: []string{"10.67.0.2/24"}})
	col := lab.Host("col")
	attachOtherXDP(t, col)
	var rep *Report
	err := col.Do(func() error {
		req, err := ForRole(RoleCollect, RoleOptions{CollectListen: "10.67.0.2:4789", CollectXDP: true, Interfaces: []string{"eth0"}, XDPMode: "auto"})
		rep = Run(req)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	for _, r := range rep.Results {
		if r.Status == Fail && strings.Contains(r.Detail, `"other_pass"`) {
			failed = true
		}
	}
	if !failed {
		t.Errorf("no failed row naming the attached program:\n%+v", rep.Results)
	}
}

// TestLBXDPInterfaceTaken: a listener interface that runs another XDP
// program (attached with ip link, or by a load balancer of another pin
// path) passed every row of `check --system --role lb`, which said "xmirror
// lb can run on this host", and the lb then refused to start ("already runs
// XDP program N that is not pinned under ..."). Its row fails now, naming
// the program.
func TestLBXDPInterfaceTaken(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.67.0.2/24"}})
	h := lab.Host("lb")
	report := func() *Report {
		t.Helper()
		var rep *Report
		err := h.Do(func() error {
			req, err := ForRole(RoleLB, RoleOptions{Interfaces: []string{"eth0"}, XDPMode: "auto", PinPath: "/sys/fs/bpf/xmirror-syscheck-test", PinsGoOnExit: true})
			rep = Run(req)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	row := func(rep *Report) *Result {
		for i, r := range rep.Results {
			if r.Check == "xdp program on eth0" {
				return &rep.Results[i]
			}
		}
		return nil
	}
	if r := row(report()); r == nil || r.Status != Pass {
		t.Errorf("free interface: row %+v", r)
	}
	attachOtherXDP(t, h)
	if r := row(report()); r == nil || r.Status != Fail || !strings.Contains(r.Detail, `"other_pass"`) {
		t.Errorf("no failed row naming the attached program: %+v", r)
	}
}

// TestCollectXDPGenericCaveat: `receive: xdp` on an interface without native
// XDP (a bridge) runs in generic mode, where the kernel's UDP GSO and GRO
// aggregates reach the program as one datagram, which the collector then
// writes as one frame. The row said only "slower".
func TestCollectXDPGenericCaveat(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "col"})
	col := lab.Host("col")
	for _, args := range [][]string{{"link", "add", "br9", "type", "bridge"}, {"addr", "add", "10.68.0.2/24", "dev", "br9"}, {"link", "set", "br9", "up"}} {
		if _, err := col.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	var rep *Report
	err := col.Do(func() error {
		req, err := ForRole(RoleCollect, RoleOptions{CollectListen: "10.68.0.2:4789", CollectXDP: true, Interfaces: []string{"br9"}, XDPMode: "auto"})
		rep = Run(req)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Check == "xdp br9" {
			if r.Status != Warn || !strings.Contains(r.Detail, "aggregates") || !strings.Contains(r.Fix, "receive: auto") {
				t.Errorf("row %+v does not say what generic mode does to a collector", r)
			}
			return
		}
	}
	t.Errorf("no xdp row for br9:\n%+v", rep.Results)
}

// attachOtherXDP attaches a program named other_pass, as another tool
// would, to eth0 of host (generic mode); it stays there until the lab is
// removed.
func attachOtherXDP(t *testing.T, host *netlab.Host) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "other_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Skipf("load an XDP program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	err = host.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), 1<<1) // XDP_FLAGS_SKB_MODE
	})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
}
