// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// TestFragmentsFollowTheirFlow: a flow's outer-fragmented datagrams land on
// the backend its whole datagrams do, both directions, with maglev and with
// wrr, and a later fragment follows its first fragment. A source that lets
// its kernel fragment the outer packet (a Linux vxlan device, tc mirred)
// fragments every full-size frame it mirrors: those were placed by (src,
// dst, IP id), so a TCP flow's data segments went to any collector while
// its ACKs went to the flow's.
func TestFragmentsFollowTheirFlow(t *testing.T) {
	g := newGoldenLab(t)
	for _, algo := range []string{"maglev", "wrr"} {
		t.Run(algo, func(t *testing.T) {
			if err := g.bal.Apply(lbConfig(algo, "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))); err != nil {
				t.Fatal(err)
			}
			var split []string
			used := map[string]bool{}
			for flow := range 64 {
				fwd := frameSpec{src: mirror, dst: vip, sport: uint16(40000 + flow), vni: 1, ipID: uint16(flow), pad: 200,
					innerSrc: netip.MustParseAddr("192.168.0.230"), inDst: netip.MustParseAddr("192.168.0.161"),
					innerSP: uint16(1000 + flow), innerDP: 80}
				rev := fwd
				rev.innerSrc, rev.inDst, rev.innerSP, rev.innerDP = fwd.inDst, fwd.innerSrc, fwd.innerDP, fwd.innerSP
				rev.sport, rev.ipID = uint16(50000+flow), uint16(1000+flow)
				_, whole := g.run(t, vxlanFrame(t, fwd))
				to := string(whole[30:34])
				used[to] = true
				for _, s := range []frameSpec{fwd, rev} {
					s.ipID += 3000
					f1, f2 := fragment(vxlanFrame(t, s), 24*8)
					_, o1 := g.run(t, f1)
					_, o2 := g.run(t, f2)
					if string(o1[30:34]) != to || string(o2[30:34]) != to {
						split = append(split, fmt.Sprintf("flow %d: whole to %v, fragments to %v and %v", flow,
							netip.AddrFrom4([4]byte(whole[30:34])), netip.AddrFrom4([4]byte(o1[30:34])), netip.AddrFrom4([4]byte(o2[30:34]))))
					}
				}
			}
			if len(split) > 0 {
				t.Errorf("%d of 128 fragmented datagrams not with their flow, e.g. %v", len(split), split[:min(3, len(split))])
			}
			if len(used) != 2 {
				t.Errorf("flows used %d backends, want 2", len(used))
			}
		})
	}
}

// fragRecord is the backend lb_frags sends frame, a later fragment, to, if
// it holds one for its datagram.
func (g *goldenLab) fragRecord(frame []byte) (netip.Addr, bool) {
	l3 := l3Offset(frame)
	if len(frame) < l3+20 || binary.BigEndian.Uint16(frame[l3+6:])&0x1fff == 0 {
		return netip.Addr{}, false
	}
	k := lbLbFragKey{Saddr: binary.NativeEndian.Uint32(frame[l3+12:]), Daddr: binary.NativeEndian.Uint32(frame[l3+16:]),
		Id: binary.NativeEndian.Uint16(frame[l3+4:])}
	var id uint32
	if err := g.bal.objs.LbFrags.Lookup(k, &id); err != nil {
		return netip.Addr{}, false
	}
	g.bal.mu.Lock()
	defer g.bal.mu.Unlock()
	for key, v := range g.bal.ids {
		if v == id {
			return netip.MustParseAddrPort(key).Addr(), true
		}
	}
	return netip.Addr{}, false
}
