package demo

import (
	"fmt"
	"io"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xmirror/xmirror/internal/netlab"
)

// xdpPass is XDP_PASS in the kernel's enum xdp_action.
const xdpPass = 2

// attachPeerPass attaches a program that returns XDP_PASS to the bridge end of
// host's veth. The load balancer sends with XDP_TX into its veth, and on this
// kernel the other end drops those frames unless it runs an XDP program itself
// (GRO alone was not enough for the load balancer's VXLAN, as its own tests found).
// The program is two instructions: nothing to compile, nothing to keep in sync.
func attachPeerPass(lab *netlab.Lab, h *netlab.Host) (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "demo_peer_pass",
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp pass program: %w", err)
	}
	// The link holds its own reference to the program.
	defer prog.Close()
	var l link.Link
	err = lab.SwitchDo(func() error {
		ifc, err := net.InterfaceByName(h.Port)
		if err != nil {
			return fmt.Errorf("find %s: %w", h.Port, err)
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach xdp pass to the bridge end of %s: %w", h.Name, err)
	}
	return l, nil
}
