// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"net/netip"
	"testing"
)

// The connection table's entry format, as documented at struct lb_ct_set in
// bpf/lb_structs.h.
const (
	ctSetBits  = 15
	ctTagShift = 47
	ctIDShift  = 40
	ctSeenMask = 1<<ctIDShift - 1
)

func ctSet(hash uint32) uint32 { return hash & (1<<ctSetBits - 1) }
func ctTag(hash uint32) uint64 { return uint64(hash>>ctSetBits) << ctTagShift }

// ctWay returns the way of set holding the flow with this hash, or -1.
func ctWay(set *lbLbCtSet, hash uint32) int {
	for w, e := range set.Way {
		if e>>ctTagShift<<ctTagShift == ctTag(hash) && e>>ctIDShift&0x7f != 0 {
			return w
		}
	}
	return -1
}

// TestConnTableEviction fills one set of the connection table with flows
// whose hashes share it: each new flow takes an empty entry, and once the
// set is full the next one takes the entry idle longest, leaving the others.
func TestConnTableEviction(t *testing.T) {
	g := newGoldenLab(t)
	cfg := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	if err := g.bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// Nine flows of one set: inner source ports until a set has nine.
	bySet := map[uint32][]int{}
	var members []int
	for sp := 1024; sp < 65536 && members == nil; sp++ {
		h := innerFlowHash(t, uint16(sp))
		s := ctSet(h)
		bySet[s] = append(bySet[s], sp)
		if len(bySet[s]) == 9 {
			members = bySet[s]
		}
	}
	if members == nil {
		t.Fatal("no set of the connection table got nine flows")
	}
	set := ctSet(innerFlowHash(t, uint16(members[0])))
	send := func(sp int) {
		t.Helper()
		frame := vxlanFrame(t, ctFrame(sp))
		err := g.lb.Do(func() error {
			ret, _, err := runXDP(g.bal.objs.XmirrorLb, frame, g.lb.Ifindex)
			if err == nil && ret != 3 {
				t.Errorf("flow %d: verdict %d, want XDP_TX", sp, ret)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func() *lbLbCtSet {
		t.Helper()
		var s lbLbCtSet
		if err := g.bal.objs.LbFlows.Lookup(set, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}

	for _, sp := range members[:8] {
		send(sp)
	}
	s := read()
	for i, sp := range members[:8] {
		if ctWay(s, innerFlowHash(t, uint16(sp))) < 0 {
			t.Fatalf("flow %d of 8 (port %d) is not in its set: %#x", i, sp, s.Way)
		}
	}

	// Make the fourth flow the one idle longest (5 s before the others).
	old := ctWay(s, innerFlowHash(t, uint16(members[3])))
	e := s.Way[old]
	s.Way[old] = e&^uint64(ctSeenMask) | (e-5000)&ctSeenMask
	if err := g.bal.objs.LbFlows.Put(set, s); err != nil {
		t.Fatal(err)
	}
	send(members[8])
	s = read()
	if w := ctWay(s, innerFlowHash(t, uint16(members[8]))); w != old {
		t.Fatalf("the ninth flow took way %d, want %d (the entry idle longest): %#x", w, old, s.Way)
	}
	for i, sp := range members[:8] {
		if in := ctWay(s, innerFlowHash(t, uint16(sp))) >= 0; in != (i != 3) {
			t.Fatalf("flow %d (hash %#x) in the set: %v, want %v; set %#x", i, innerFlowHash(t, uint16(sp)), in, i != 3, s.Way)
		}
	}
}

// ctFrame is a mirrored TCP packet of the flow with inner source port sp.
func ctFrame(sp int) frameSpec {
	return frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1,
		innerSrc: netip.MustParseAddr("192.168.0.230"), inDst: netip.MustParseAddr("192.168.0.161"),
		innerSP: uint16(sp), innerDP: 1234}
}

// innerFlowHash is the flow hash of the test frames of TestConnTableEviction.
func innerFlowHash(t *testing.T, sp uint16) uint32 {
	t.Helper()
	frame := vxlanFrame(t, ctFrame(int(sp)))
	h, ok := FlowHash(frame, "inner-symmetric")
	if !ok {
		t.Fatal("FlowHash: not hashable")
	}
	return h
}
