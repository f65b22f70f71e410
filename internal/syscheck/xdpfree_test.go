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
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "other_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Skipf("load an XDP program: %v", err)
	}
	defer prog.Close()
	col := lab.Host("col")
	err = col.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), 1<<1) // XDP_FLAGS_SKB_MODE
	})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	var rep *Report
	err = col.Do(func() error {
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
