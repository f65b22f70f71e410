// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFrontCache: the per-CPU front cache answers for a flow after its first
// packet, keeps answering while the shared connection table changes under
// it (for at most LB_CT_CACHE_NS), and every table change (a new generation)
// retires it, so the next packet follows the shared table.
func TestFrontCache(t *testing.T) {
	g := newGoldenLab(t)
	cfg := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	if err := g.bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	frame := vxlanFrame(t, frameSpec{src: mirror, dst: vip, sport: 40123, vni: 7})
	hash, ok := FlowHash(frame, "inner-symmetric")
	if !ok {
		t.Fatal("FlowHash: not hashable")
	}
	ids := map[netip.Addr]uint32{b1Addr: g.bal.ids[backendKey(b1Addr, 0)], b2Addr: g.bal.ids[backendKey(b2Addr, 0)]}

	// The cache is per CPU: run every packet on one CPU.
	var dst []netip.Addr
	var before, after [statMax]uint64
	send := func() netip.Addr {
		t.Helper()
		var d netip.Addr
		err := g.lb.Do(func() error {
			var old unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				return err
			}
			var one unix.CPUSet
			one.Set(0)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				return err
			}
			defer unix.SchedSetaffinity(0, &old)
			ret, out, err := runXDP(g.bal.objs.XmirrorLb, frame, g.lb.Ifindex)
			if err != nil {
				return err
			}
			if ret != 3 {
				return fmt.Errorf("verdict %d, want XDP_TX", ret)
			}
			d = netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		dst = append(dst, d)
		return d
	}

	before = g.stats(t)
	first := send()
	if second := send(); second != first {
		t.Fatalf("second packet went to %s, first to %s", second, first)
	}
	after = g.stats(t)
	if d := delta(before, after); d["conntrack_miss"] != 1 || d["conntrack_hit"] != 1 {
		t.Fatalf("counters %v: want one miss then one hit", d)
	}

	// Another CPU moved the flow in the shared table: this CPU's cache still
	// answers (it is at most 250 ms old) ...
	other := b1Addr
	if first == b1Addr {
		other = b2Addr
	}
	// (no flow_timeout in this config: any last-seen time is current)
	moveFlow(t, g.bal, hash, ids[other])
	if d := send(); d != first {
		t.Fatalf("cached flow went to %s, want %s from the cache", d, first)
	}
	// ... until the tables change: a new generation sends it to the shared
	// table's backend.
	var s0, s1 lbLbSlot
	slot, _ := g.bal.activeSlot()
	if err := g.bal.objs.LbSlots.Lookup(slot, &s0); err != nil {
		t.Fatal(err)
	}
	if err := g.bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	slot, _ = g.bal.activeSlot()
	if err := g.bal.objs.LbSlots.Lookup(slot, &s1); err != nil {
		t.Fatal(err)
	}
	if s1.Gen != s0.Gen+1 {
		t.Fatalf("generation %d after %d: want it bumped by Apply", s1.Gen, s0.Gen)
	}
	if d := send(); d != other {
		t.Fatalf("after a table change the flow went to %s, want %s from the shared table", d, other)
	}
	t.Logf("destinations: %v", dst)
}
