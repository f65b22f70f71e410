// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// The next hop the direct tests write: the MACs of a neighbour on ifindex
// 1, the device BPF_PROG_TEST_RUN runs on.
var directHop = sourceHop{Ifindex: 1, Dst: [6]byte{0x02, 0, 0, 0, 0, 0x02}, Src: [6]byte{0x02, 0, 0, 0, 0, 0x01}}

// ringPacket runs frame through the program of dir with no direct hop and
// returns the packet the ring's sender would send for it (the outer IPv4
// header's checksum filled in, as on the AF_PACKET socket).
func ringPacket(t *testing.T, s *Source, dir int, frame []byte) []byte {
	t.Helper()
	prog := s.objs.XmSourceIngress
	if dir == dirOut {
		prog = s.objs.XmSourceEgress
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		t.Fatal(err)
	}
	recs := readRing(t, s)
	if len(recs) != 1 {
		t.Fatalf("%d ring records, want 1", len(recs))
	}
	pkt, _, _, err := parseRingRecord(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	pkt = slices.Clone(pkt)
	setIPv4Checksum(pkt)
	return pkt
}

// TestDirectEncap runs direct clones through xm_source_egress, as they meet
// it at the next hop's egress, and checks that what leaves is byte for byte
// the hop's Ethernet header and the packet the ring's sender would have sent
// for the same frame: outer IPv4/UDP/VXLAN, cut to the path MTU.
func TestDirectEncap(t *testing.T) {
	both := "[{priority: 1, action: accept, protocol: all}, {priority: 2, action: accept, protocol: all, ethertype: ipv6}]"
	s := ringSource(t, mustParse(t, strings.ReplaceAll(ringSession(0), "[{priority: 1, action: accept, protocol: all}]", both)))
	id := uint32(s.ids["s1"])
	key := addrWord(netip.MustParseAddr("10.255.0.2"))
	whole := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300)
	v6 := tcp6(t, "fd00::1", "fd00::2", 1234, 40000)
	long := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1600)
	eth := append(append(append([]byte{}, directHop.Dst[:]...), directHop.Src[:]...), 0x08, 0x00)

	for _, c := range []struct {
		name  string
		dir   int
		frame []byte
		cut   bool
	}{
		{"whole frame inbound", dirIn, whole, false},
		{"whole frame outbound", dirOut, whole, false},
		{"cut to the path MTU", dirIn, long, true},
		{"IPv6 frame", dirIn, v6, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := s.objs.XmHops.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Fatal(err)
			}
			want := append(slices.Clone(eth), ringPacket(t, s, c.dir, c.frame)...)
			if err := s.objs.XmHops.Put(key, directHop); err != nil {
				t.Fatal(err)
			}
			before := sumCounters(t, s, id)
			out := make([]byte, len(c.frame)+256)
			mark := markDirect | uint32(c.dir)<<26 | id<<16 | 1
			opts := &ebpf.RunOptions{Data: c.frame, DataOut: out, Context: skbContext{Mark: mark}}
			ret, err := s.objs.XmSourceEgress.Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if int32(ret) != 0 {
				t.Fatalf("returned %d, want 0 (TC_ACT_OK: the copy leaves)", int32(ret))
			}
			if !bytes.Equal(opts.DataOut, want) {
				t.Errorf("direct packet differs from the ring's (%d and %d bytes):\n %x\n %x", len(opts.DataOut), len(want), opts.DataOut, want)
			}
			after := sumCounters(t, s, id)
			if after.Direct != before.Direct+1 || after.Packets != before.Packets+1 || (after.Cut != before.Cut) != c.cut {
				t.Errorf("counters %+v -> %+v", before, after)
			}
		})
	}

	// Clones that cannot be finished are dropped and counted, never sent
	// as they are.
	if err := s.objs.XmHops.Put(key, directHop); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mark uint32
		hop  *sourceHop
	}{
		{"no hop for the target", markDirect | id<<16 | 1, nil},
		{"hop on another interface", markDirect | id<<16 | 1, &sourceHop{Ifindex: 7, Dst: directHop.Dst, Src: directHop.Src}},
		{"unknown source interface", markDirect | id<<16 | 77, &directHop},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.hop == nil {
				if err := s.objs.XmHops.Delete(key); err != nil {
					t.Fatal(err)
				}
			} else if err := s.objs.XmHops.Put(key, *c.hop); err != nil {
				t.Fatal(err)
			}
			before := sumCounters(t, s, id)
			ret, err := s.objs.XmSourceEgress.Run(&ebpf.RunOptions{Data: whole, Context: skbContext{Mark: c.mark}})
			if err != nil {
				t.Fatal(err)
			}
			if int32(ret) != 2 {
				t.Errorf("returned %d, want 2 (TC_ACT_SHOT)", int32(ret))
			}
			if after := sumCounters(t, s, id); after.Errors != before.Errors+1 || after.Packets != before.Packets {
				t.Errorf("counters %+v -> %+v, want one error", before, after)
			}
		})
	}
}

// TestDirectDecision checks which copies the source programs send directly:
// single IPv4 frames of a whole-frame session whose target has a hop. The
// hop's interface does not exist here, so a direct copy shows as a failed
// clone (an error, nothing in the ring) and nothing leaves the test.
func TestDirectDecision(t *testing.T) {
	whole := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300)
	v6 := tcp6(t, "fd00::1", "fd00::2", 1234, 40000)
	for _, c := range []struct {
		name   string
		length int
		frame  []byte
		hop    bool
		gso    uint32
		direct bool
	}{
		{"whole frame with a hop", 0, whole, true, 0, true},
		{"whole frame without a hop", 0, whole, false, 0, false},
		{"cut session", 96, whole, true, 0, false},
		{"aggregate (GSO)", 0, whole, true, 4, false},
		{"IPv6 frame", 0, v6, true, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := ringSession(c.length)
			if c.frame[12] == 0x86 { // IPv6: the rules say so
				y = strings.ReplaceAll(y, "protocol: all}", "protocol: all, ethertype: ipv6}")
			}
			s := ringSource(t, mustParse(t, y))
			id := uint32(s.ids["s1"])
			if c.hop {
				h := directHop
				h.Ifindex = 0xfffff // no such device
				if err := s.objs.XmHops.Put(addrWord(netip.MustParseAddr("10.255.0.2")), h); err != nil {
					t.Fatal(err)
				}
			}
			ctx := skbGSOContext{GSOSegs: c.gso, GSOSize: 1000 * min(c.gso, 1)}
			if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: c.frame, Context: ctx}); err != nil {
				t.Fatal(err)
			}
			recs := readRing(t, s)
			got := sumCounters(t, s, id)
			if c.direct && (len(recs) != 0 || got.Errors != 1) {
				t.Errorf("want a direct clone: %d ring records, counters %+v", len(recs), got)
			}
			if !c.direct && (len(recs) != 1 || got.Errors != 0) {
				t.Errorf("want the ring: %d ring records, counters %+v", len(recs), got)
			}
		})
	}
}

// TestDirectAfterInboundAggregate: once an interface has received an
// aggregate, which takes the ring (a veth receives its peer's TSO packets
// whole, GRO or not), its later single frames take the ring too. They were
// sent directly, ahead of the aggregate waiting in the ring: the collector
// wrote a flow's 1,514-byte segment 80 ms before the 7,306-byte aggregate
// tcpdump showed before it.
func TestDirectAfterInboundAggregate(t *testing.T) {
	whole := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300)
	s := ringSource(t, mustParse(t, ringSession(0)))
	id := uint32(s.ids["s1"])
	h := directHop
	h.Ifindex = 0xfffff // no such device: a direct clone counts an error
	if err := s.objs.XmHops.Put(addrWord(netip.MustParseAddr("10.255.0.2")), h); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name   string
		gso    uint32
		direct bool
	}{
		{"single frame before any aggregate", 0, true},
		{"aggregate", 4, false},
		{"single frame after the aggregate", 0, false},
		{"another single frame", 0, false},
	} {
		before := sumCounters(t, s, id)
		ctx := skbGSOContext{GSOSegs: c.gso, GSOSize: 1000 * min(c.gso, 1)}
		if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: whole, Context: ctx}); err != nil {
			t.Fatal(err)
		}
		recs := readRing(t, s)
		direct := sumCounters(t, s, id).Errors - before.Errors
		if c.direct && (len(recs) != 0 || direct != 1) {
			t.Errorf("%d, %s: want a direct clone, got %d ring records", i, c.name, len(recs))
		}
		if !c.direct && (len(recs) != 1 || direct != 0) {
			t.Errorf("%d, %s: want the ring, got %d ring records and %d direct clones", i, c.name, len(recs), direct)
		}
	}
}

// skbGSOContext is a struct __sk_buff for BPF_PROG_TEST_RUN with only the
// GSO fields set: gso_segs at byte 164, gso_size at 176.
type skbGSOContext struct {
	_       [41]uint32
	GSOSegs uint32
	_       [2]uint32 // sk
	GSOSize uint32
}

// TestDirectHops checks what directHops writes into xm_hops: the targets of
// whole-frame sessions whose neighbour is resolved on an interface the
// programs are attached to, kept while the neighbour is stale (and the
// kernel asked to revalidate it), removed at once when the program no longer
// runs on the hop's interface.
func TestDirectHops(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(0)))
	target := [4]byte{10, 255, 0, 2}
	key := addrWord(netip.AddrFrom4(target))
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	var result nextHop
	var used []net.IP
	d := newDirectHops(s.objs.XmHops)
	d.lookup = func(dst [4]byte) *nextHop {
		if dst != target {
			t.Errorf("looked up %v", dst)
		}
		h := result
		return &h
	}
	d.use = func(h *nextHop) error { used = append(used, h.neigh); return nil }
	resolved := func(ifindex int32, kick bool) nextHop {
		h := nextHop{ok: true, kick: kick, neigh: net.IP(target[:])}
		h.ll.Ifindex = ifindex
		copy(h.eth[0:], mac)
		copy(h.eth[6:], []byte{0x02, 0, 0, 0, 0, 0x01})
		return h
	}
	hop := func() (sourceHop, bool) {
		var h sourceHop
		err := s.objs.XmHops.Lookup(key, &h)
		return h, err == nil
	}

	prog := s.prog // interface 1 (lo), one whole-frame session to target
	d.running(prog)
	result = resolved(1, false)
	d.sync()
	if h, ok := hop(); !ok || h.Ifindex != 1 || !bytes.Equal(h.Dst[:], mac) {
		t.Fatalf("resolved target: hop %+v %v", h, ok)
	}
	result = resolved(1, true)
	d.sync()
	if _, ok := hop(); !ok || len(used) != 1 {
		t.Errorf("stale neighbour: hop kept %v, revalidations %v", ok, used)
	}
	result = resolved(1, false)
	result.ok = false // route known, neighbour not resolved
	d.sync()
	if _, ok := hop(); ok || len(used) != 2 {
		t.Errorf("unresolved target: hop kept %v, resolutions asked %v", ok, used)
	}
	result = resolved(9, false)
	d.sync()
	if _, ok := hop(); ok {
		t.Errorf("hop on an interface without the programs written")
	}
	// With xm_direct_egress attachable there, the hop is written once it
	// is attached, and it is detached once no hop leaves there.
	attached := map[uint32]*fakeHook{}
	d.attach = func(ifindex uint32) (hook, error) {
		h := &fakeHook{}
		attached[ifindex] = h
		return h, nil
	}
	d.sync()
	if h, ok := hop(); !ok || h.Ifindex != 9 || attached[9] == nil || attached[9].closed {
		t.Errorf("hop on another interface: %+v %v, attached %v", h, ok, attached)
	}
	result = resolved(1, false)
	d.sync()
	if _, ok := hop(); !ok {
		t.Fatal("hop not written back")
	}
	if !attached[9].closed || len(d.extra) != 0 {
		t.Errorf("xm_direct_egress left on interface 9 with no hop there")
	}
	d.running(&Program{Sessions: prog.Sessions, Ifaces: map[uint32]sourceIface{}})
	if _, ok := hop(); ok {
		t.Errorf("hop kept after the program left its interface")
	}
	d.running(prog)
	d.sync()
	d.close()
	if _, ok := hop(); ok {
		t.Errorf("hop kept after close")
	}
}

// TestRxAggregates reads GRO from a lab interface as ethtool sets it: off
// (the veth default), then on.
func TestRxAggregates(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "a", Addrs: []string{"10.99.0.1/24"}})
	h := lab.Host("a")
	for _, gro := range []string{"off", "on"} {
		if _, err := h.Run("ethtool", "-K", h.Iface, "gro", gro); err != nil {
			t.Fatal(err)
		}
		inNS(t, h, func() error {
			got, err := rxAggregates(h.Iface)
			if err != nil {
				return err
			}
			if got != (gro == "on") {
				t.Errorf("gro %s: rxAggregates says %v", gro, got)
			}
			return nil
		})
	}
}

type fakeHook struct{ closed bool }

func (f *fakeHook) Close() error { f.closed = true; return nil }
