// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
)

// The connection table's layout, as documented at struct lb_ct_line in
// bpf/lb_structs.h and LB_CT_* in bpf/lb_consts.h.
const (
	ctBuckets   = 1 << 16
	ctLine      = 16
	ctIDShift   = 25
	ctSeenMask  = 1<<ctIDShift - 1
	ctTimeShift = 24
)

// ctBucket is the bucket of the flow with this hash: its line (the map key)
// and its place in the line.
func ctBucket(hash uint32) (line uint32, i int) {
	b := hash & (ctBuckets - 1)
	return b / ctLine, int(b % ctLine)
}

func readBucket(t *testing.T, b *Balancer, hash uint32) uint32 {
	t.Helper()
	line, i := ctBucket(hash)
	var l lbLbCtLine
	if err := b.objs.LbFlows.Lookup(line, &l); err != nil {
		t.Fatal(err)
	}
	return l.Bucket[i]
}

func writeBucket(t *testing.T, b *Balancer, hash, e uint32) {
	t.Helper()
	line, i := ctBucket(hash)
	var l lbLbCtLine
	if err := b.objs.LbFlows.Lookup(line, &l); err != nil {
		t.Fatal(err)
	}
	l.Bucket[i] = e
	if err := b.objs.LbFlows.Put(line, &l); err != nil {
		t.Fatal(err)
	}
}

// TestConnTableBuckets: a flow's first packet gives its bucket the next
// schedule entry; a new flow that falls in a live bucket follows it and
// leaves it as it is (no established flow moves); a bucket idle past
// flow_timeout, or whose backend left, is taken again by the next packet.
func TestConnTableBuckets(t *testing.T) {
	g := newGoldenLab(t)
	cfg := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	cfg.FlowTimeout = config.Duration(10 * time.Second)
	if err := g.bal.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// Two flows of one bucket: inner source ports until a bucket has two.
	byBucket := map[uint32]int{}
	var a, b int
	for sp := 1024; sp < 65536 && b == 0; sp++ {
		h := innerFlowHash(t, uint16(sp)) & (ctBuckets - 1)
		if first, ok := byBucket[h]; ok {
			a, b = first, sp
		}
		byBucket[h] = sp
	}
	if b == 0 {
		t.Fatal("no two flows share a bucket")
	}
	hash := innerFlowHash(t, uint16(a))
	send := func(sp int) netip.Addr {
		t.Helper()
		var d netip.Addr
		err := g.lb.Do(func() error {
			ret, out, err := runXDP(g.bal.objs.XmirrorLb, vxlanFrame(t, ctFrame(sp)), g.lb.Ifindex)
			if err == nil && ret != 3 {
				t.Errorf("flow %d: verdict %d, want XDP_TX", sp, ret)
			}
			d = netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	expect := func(d, want map[string]uint64, what string) {
		t.Helper()
		if d["conntrack_hit"] != want["conntrack_hit"] || d["conntrack_miss"] != want["conntrack_miss"] {
			t.Fatalf("%s: counters %v, want %v", what, d, want)
		}
	}

	s0 := g.stats(t)
	first := send(a)
	e := readBucket(t, g.bal, hash)
	if e>>ctIDShift == 0 {
		t.Fatalf("bucket %#x empty after the flow's first packet", e)
	}
	if got := send(b); got != first {
		t.Fatalf("flow %d of the same live bucket went to %s, the bucket's backend is %s", b, got, first)
	}
	if after := readBucket(t, g.bal, hash); after != e {
		t.Fatalf("a second flow changed the live bucket: %#x -> %#x", e, after)
	}
	expect(delta(s0, g.stats(t)), map[string]uint64{"conntrack_miss": 1, "conntrack_hit": 1}, "first flow, second flow")

	// Idle past flow_timeout: the next packet takes the bucket again, with
	// the next schedule entry and the time of now.
	writeBucket(t, g.bal, hash, e&^ctSeenMask|(e-uint32(11*time.Second>>ctTimeShift))&ctSeenMask)
	s1 := g.stats(t)
	send(b)
	expect(delta(s1, g.stats(t)), map[string]uint64{"conntrack_miss": 1}, "expired bucket")
	if now := readBucket(t, g.bal, hash); (now-e)&ctSeenMask > 1<<30>>ctTimeShift {
		t.Fatalf("taken bucket %#x not stamped with the current time (was %#x)", now, e)
	}

	// Its backend leaves: the next packet takes the bucket for the one left.
	owner := b1Addr
	if send(b) == b1Addr {
		owner = b2Addr
	}
	left := lbConfig("wrr", "inner-symmetric", backend("b2", owner, 0, 1))
	left.FlowTimeout = cfg.FlowTimeout
	if err := g.bal.Apply(left); err != nil {
		t.Fatal(err)
	}
	if got := send(a); got != owner {
		t.Fatalf("after its backend left the flow went to %s, want %s", got, owner)
	}
}

// ctFrame is a mirrored TCP packet of the flow with inner source port sp.
func ctFrame(sp int) frameSpec {
	return frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1,
		innerSrc: netip.MustParseAddr("192.168.0.230"), inDst: netip.MustParseAddr("192.168.0.161"),
		innerSP: uint16(sp), innerDP: 1234}
}

// innerFlowHash is the flow hash of the test frames of TestConnTableBuckets.
func innerFlowHash(t *testing.T, sp uint16) uint32 {
	t.Helper()
	frame := vxlanFrame(t, ctFrame(int(sp)))
	h, ok := FlowHash(frame, "inner-symmetric")
	if !ok {
		t.Fatal("FlowHash: not hashable")
	}
	return h
}
