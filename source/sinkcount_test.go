// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
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
	// The headers are copied to the stack (bpf_skb_load_bytes): a packet
	// built around the pages of an AF_PACKET transmit ring has only its
	// Ethernet header in the linear part. Loads are little-endian: 0x0008
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
