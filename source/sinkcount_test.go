// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// vxlanCounter counts the mirrored copies that reach the iperf3 lab's sink:
// a TCX ingress program on the sink's interface counts IPv4 UDP packets to
// port 4789 (first fragments only, so a copy that the kernel fragmented
// counts once), a GSO packet as its segments, and passes them on to the
// sink's nftables drop. A cost figure that hides lost copies is not a
// result: the benchmarks report what arrived next to what it cost.
type vxlanCounter struct {
	m  *ebpf.Map
	lk link.Link
}

// Offsets in struct __sk_buff (linux/bpf.h, uapi: stable).
const (
	skbGSOSegs  = 164
	tcxNext     = -1 // TCX_NEXT: the next program, then the stack
	vxlanPortLE = 0xb512
)

// newVXLANCounter loads the counter and attaches it to the ingress of
// iface; call it in the interface's network namespace.
func newVXLANCounter(iface string) (_ *vxlanCounter, err error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("vxlan counter map: %w", err)
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	prog, err := vxlanCountProgram(m)
	if err != nil {
		return nil, err
	}
	defer prog.Close() // the link holds its own reference
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	lk, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil, fmt.Errorf("attach vxlan counter to %s: %w", iface, err)
	}
	return &vxlanCounter{m: m, lk: lk}, nil
}

// vxlanCountProgram is the counter's program, counting into m.
func vxlanCountProgram(m *ebpf.Map) (*ebpf.Program, error) {
	// The headers are copied to the stack (bpf_skb_load_bytes): the
	// linear part of a packet may hold no more than its Ethernet header. Loads are little-endian: 0x0008
	// is ethertype 0x0800, 0xff1f masks the fragment offset of the IPv4
	// flags/offset field, 0xb512 is port 4789. The outer IPv4 header has
	// no options (xmirror and the vxlan driver write none).
	const hdr = -48 // 38 bytes of headers on the stack
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xm_sink_count", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.Mov.Imm(asm.R2, 0),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, hdr),
			asm.Mov.Imm(asm.R4, 38),
			asm.FnSkbLoadBytes.Call(),
			asm.JNE.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R5, asm.RFP, hdr+12, asm.Half),
			asm.JNE.Imm(asm.R5, 0x0008, "out"),
			asm.LoadMem(asm.R5, asm.RFP, hdr+23, asm.Byte),
			asm.JNE.Imm(asm.R5, 17, "out"),
			asm.LoadMem(asm.R5, asm.RFP, hdr+20, asm.Half),
			asm.JSet.Imm(asm.R5, 0xff1f, "out"),
			asm.LoadMem(asm.R5, asm.RFP, hdr+36, asm.Half),
			asm.JNE.Imm(asm.R5, vxlanPortLE, "out"),
			asm.LoadMem(asm.R7, asm.R6, skbGSOSegs, asm.Word),
			asm.JNE.Imm(asm.R7, 0, "count"),
			asm.Mov.Imm(asm.R7, 1),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word).WithSymbol("count"),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.StoreXAdd(asm.R0, asm.R7, asm.DWord),
			asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("vxlan counter program: %w", err)
	}
	return prog, nil
}

// count is the number of copies counted so far.
func (c *vxlanCounter) count() uint64 {
	var n uint64
	if err := c.m.Lookup(uint32(0), &n); err != nil {
		return 0
	}
	return n
}

func (c *vxlanCounter) Close() error {
	c.lk.Close()
	return c.m.Close()
}

// TestVXLANCounter checks the benchmarks' counter of copies at the sink on
// golden frames through BPF_PROG_TEST_RUN: VXLAN counts (a GSO packet as
// its segments, a first fragment once), anything else does not.
func TestVXLANCounter(t *testing.T) {
	labtest.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prog, err := vxlanCountProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	c := &vxlanCounter{m: m}
	// frame is Ethernet, IPv4 (flags and fragment offset frag), UDP to
	// dport and 8 bytes of payload.
	frame := func(frag, dport uint16) []byte {
		f := make([]byte, 14+20+8+8)
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		f[14], f[23] = 0x45, 17
		binary.BigEndian.PutUint16(f[16:], 36)
		binary.BigEndian.PutUint16(f[20:], frag)
		binary.BigEndian.PutUint16(f[36:], dport)
		return f
	}
	tcp := frame(0x4000, 4789)
	tcp[23] = 6
	arp := frame(0, 4789)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	for _, tc := range []struct {
		name string
		data []byte
		segs uint32
		want uint64
	}{
		{"vxlan", frame(0x4000, 4789), 0, 1},
		{"vxlan gso", frame(0x4000, 4789), 5, 5},
		{"first fragment", frame(0x2000, 4789), 0, 1},
		{"later fragment", frame(0x00b9, 4789), 0, 0},
		{"other port", frame(0x4000, 4790), 0, 0},
		{"tcp", tcp, 0, 0},
		{"arp", arp, 0, 0},
		{"short", frame(0x4000, 4789)[:37], 0, 0},
	} {
		before := c.count()
		ctx := make([]byte, 192) // struct __sk_buff
		binary.LittleEndian.PutUint32(ctx[skbGSOSegs:], tc.segs)
		if tc.segs > 0 {
			binary.LittleEndian.PutUint32(ctx[176:], 100) // gso_size
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: tc.data, Context: ctx})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if int32(ret) != tcxNext {
			t.Errorf("%s: verdict %d, want %d (pass on)", tc.name, int32(ret), tcxNext)
		}
		if got := c.count() - before; got != tc.want {
			t.Errorf("%s: counted %d, want %d", tc.name, got, tc.want)
		}
	}
}
