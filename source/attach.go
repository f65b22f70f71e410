// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcPriority is the tc filter priority of xmirror's programs when they are
// attached through tc clsact; their names start with tcNamePrefix, which is
// how a start finds and removes what a killed run left behind.
const (
	tcPriority   = 0xa1
	tcNamePrefix = "xmirror:"
)

// How the programs are attached, Options.Attach.
const (
	// AttachTCX attaches through TCX links (Linux 6.6 and later): the
	// process holds them, so the programs go when it goes.
	AttachTCX = "tcx"
	// AttachTC attaches bpf filters (direct action) to a clsact qdisc,
	// which kernels before TCX have (4.5 and later). The qdisc holds
	// them: a killed run leaves them, and the next start removes them.
	AttachTC = "tc"
	// AttachAuto is TCX where the kernel has it, else tc.
	AttachAuto = "auto"
)

// Attaches lists the valid values of Options.Attach.
var Attaches = []string{AttachAuto, AttachTCX, AttachTC}

// hook is a program attached to one direction of an interface.
type hook interface{ Close() error }

// attacher attaches the programs the way the source was started with; with
// AttachAuto it finds out at the first program.
type attacher struct{ mode string }

// attach attaches prog to one direction of ifindex; name tells the tc
// filter apart.
func (a *attacher) attach(prog *ebpf.Program, ifindex int, ingress bool, name string) (hook, error) {
	if a.mode == AttachTC {
		return attachTC(prog, ifindex, ingress, name)
	}
	h, err := attachTCX(prog, ifindex, ingress)
	if err != nil && a.mode == AttachAuto && errors.Is(err, ebpf.ErrNotSupported) {
		slog.Info("this kernel has no TCX: attaching with tc clsact", "err", err)
		a.mode = AttachTC
		return attachTC(prog, ifindex, ingress, name)
	}
	if err == nil && a.mode == AttachAuto {
		a.mode = AttachTCX
	}
	return h, err
}

// attachTCX attaches prog through TCX: a link the process holds, so the
// program detaches when the process ends, however it ends. At ingress it
// goes first, before the programs other tools attached (a firewall, a CNI
// that redirects to pods): tcpdump sees a received packet before any of
// them, so the copy must too, not only what they let through. At egress it
// goes last, after every program that rewrites or drops what leaves, as
// tcpdump sees it after them.
func attachTCX(prog *ebpf.Program, ifindex int, ingress bool) (hook, error) {
	opts := link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXEgress}
	if ingress {
		opts.Attach, opts.Anchor = ebpf.AttachTCXIngress, link.Head()
	}
	return link.AttachTCX(opts)
}

// tcFilter is a program attached as a tc bpf filter (direct action) on the
// interface's clsact qdisc. The qdisc holds it: it stays attached after the
// process ends, until the filter or the interface is deleted.
type tcFilter struct{ f *netlink.BpfFilter }

// attachTC attaches prog as a tc filter named tcNamePrefix+name, creating
// the clsact qdisc if the interface has none.
func attachTC(prog *ebpf.Program, ifindex int, ingress bool, name string) (hook, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact qdisc to ifindex %d: %w", ifindex, err)
	}
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    parent,
			Handle:    1,
			Priority:  tcPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           prog.FD(),
		Name:         tcNamePrefix + name,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("add tc filter %s to ifindex %d: %w", f.Name, ifindex, err)
	}
	return &tcFilter{f: f}, nil
}

func (t *tcFilter) Close() error {
	if err := netlink.FilterDel(t.f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete tc filter %s: %w", t.f.Name, err)
	}
	return nil
}

// removeStaleFilters deletes the tc filters of xmirror (by name) on both
// directions of ifindex: left by a run that was killed.
func removeStaleFilters(ifindex int) (n int) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		filters, err := netlink.FilterList(l, parent)
		if err != nil {
			continue
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, tcNamePrefix) {
				if netlink.FilterDel(bf) == nil {
					n++
				}
			}
		}
	}
	return n
}
