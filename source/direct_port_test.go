// SPDX-License-Identifier: Apache-2.0

package source

//go:generate go tool bpf2go -target bpfel -no-global-types sourcetest bpf/source_test.c

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// skbPortContext is skbContext with tc_index and cb[] behind it.
type skbPortContext struct {
	skbContext
	TcIndex uint32
	Cb      [5]uint32
}

// TestDirectPortFromTcIndex: the outer UDP source port of a direct packet
// is the one direct_clone put in tc_index, not one hashed again at the
// egress (the fallback TestDirectEncap exercises, since its contexts cannot
// set tc_index). A port no hash of this frame gives shows which one was used.
func TestDirectPortFromTcIndex(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(0)))
	prog := loadDirectPortProgram(t, s)
	id := uint32(s.ids["s1"])
	frame := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300)
	ring := ringPacket(t, s, dirIn, frame)       // before the hop: a copy with a hop goes direct
	hashed := binary.BigEndian.Uint16(ring[20:]) // outer IPv4, then the UDP source port
	if err := s.objs.XmHops.Put(addrWord(netip.MustParseAddr("10.255.0.2")), directHop); err != nil {
		t.Fatal(err)
	}

	for _, port := range []uint16{hashed, hashed ^ 0x0101, 0xffff} {
		want := append(append(append([]byte{}, directHop.Dst[:]...), directHop.Src[:]...), 0x08, 0x00)
		want = append(want, ring...)
		binary.BigEndian.PutUint16(want[14+20:], port)

		out := make([]byte, len(frame)+256)
		ctx := skbPortContext{skbContext: skbContext{Mark: markDirect | uint32(dirIn)<<26 | id<<16 | 1}}
		ctx.Cb[0] = uint32(port)
		opts := &ebpf.RunOptions{Data: slices.Clone(frame), DataOut: out, Context: ctx}
		ret, err := prog.Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		if int32(ret) != 0 {
			t.Fatalf("port %#04x: returned %d, want 0 (TC_ACT_OK: the copy leaves)", port, int32(ret))
		}
		if !bytes.Equal(opts.DataOut, want) {
			t.Errorf("port %#04x: direct packet differs (%d and %d bytes), heads:\n %x\n %x", port,
				len(opts.DataOut), len(want), opts.DataOut[:min(64, len(opts.DataOut))], want[:64])
		}
	}
}

// loadDirectPortProgram loads xm_test_direct_port over the maps of s, which
// the direct path reads.
func loadDirectPortProgram(t *testing.T, s *Source) *ebpf.Program {
	t.Helper()
	spec, err := loadSourcetest()
	if err != nil {
		t.Fatal(err)
	}
	var objs sourcetestPrograms
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"xm_state":    s.objs.XmState,
		"xm_sessions": s.objs.XmSessions,
		"xm_counters": s.objs.XmCounters,
		"xm_ifaces":   s.objs.XmIfaces,
		"xm_hops":     s.objs.XmHops,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs.XmTestDirectPort
}
