// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// xdpPass is XDP_PASS in the kernel's enum xdp_action.
const xdpPass = 2

// attachPeerPass attaches a two-instruction XDP_PASS program in native mode to the
// bridge end of a host's veth. Frames a host sends with XDP_TX or XDP_REDIRECT are
// dropped by the receiving veth unless it runs XDP itself: on this kernel GRO alone
// was not enough (the load balancer and the demo both saw it).
func (l *Lab) attachPeerPass(h *Host) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "netlab_pass",
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("load xdp pass program: %w", err)
	}
	// The link holds its own reference to the program.
	defer prog.Close()
	return l.SwitchDo(func() error {
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.portIndex, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("attach xdp pass to %s (bridge end of %s): %w", h.Port, h.Name, err)
		}
		h.peerXDP = lk
		return nil
	})
}
