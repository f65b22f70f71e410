// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tapDevice is an open TAP device set up as a passive monitoring
// interface. Mirrored frames are what other hosts sent: written into the
// device they arrive as if received, and the host's own stack must not act
// on them (a Router Advertisement would add a default route and an
// address here), nor write frames of its own into what an IDS reads as
// mirrored traffic.
type tapDevice struct {
	*os.File
	drop link.Link // the ingress filter; nil where it could not attach
}

// openTap creates (or attaches to) the TAP device name, without packet
// information headers, makes it passive and sets it up: what is written
// to the returned device appears as frames received on it, for tcpdump,
// Suricata or Zeek, and reaches nothing else.
func openTap(name string, log *slog.Logger) (*tapDevice, error) {
	f, err := createTap(name)
	if err != nil {
		return nil, err
	}
	t := &tapDevice{File: f}
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = makePassive(l)
	}
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	if t.drop, err = tapFilter(l.Attrs().Index); err != nil {
		log.Warn("tap: no ingress filter: IPv4 broadcasts from 0.0.0.0 (DHCP) written to the device reach the host's sockets; it needs CAP_BPF and Linux 6.6",
			"tap", name, "err", err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("tap %s: set up: %w", name, err)
	}
	return t, nil
}

// Close removes the ingress filter with the device's descriptor.
func (t *tapDevice) Close() error {
	if t.drop != nil {
		_ = t.drop.Close()
	}
	return t.File.Close()
}

// createTap creates the TAP device name, or attaches to an existing one.
func createTap(name string) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap device name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: open /dev/net/tun: %w", name, err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// passiveSysctls turn the host's stack off on the device, before it goes
// up (with IPv6 on, up alone makes a link-local address and sends router
// solicitations and MLD reports into the device).
var passiveSysctls = []struct{ key, value string }{
	// No Router Advertisement is acted on, and then no IPv6 at all.
	{"ipv6/conf/%s/accept_ra", "0"},
	{"ipv6/conf/%s/disable_ipv6", "1"},
	// The device has no address and no route goes through it: strict
	// reverse-path filtering refuses IPv4 from every source, so nothing is
	// delivered to a local socket or forwarded (except broadcasts from
	// 0.0.0.0, which are not checked: dropIngress takes those).
	{"ipv4/conf/%s/rp_filter", "1"},
}

// makePassive keeps the host's stack off the device: the sysctls above, and
// no ARP (no answers to mirrored requests, nothing learnt from them).
func makePassive(l netlink.Link) error {
	for _, s := range passiveSysctls {
		p := filepath.Join("/proc/sys/net", fmt.Sprintf(s.key, l.Attrs().Name))
		err := os.WriteFile(p, []byte(s.value), 0)
		if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(s.key, "ipv6/") {
			continue // a kernel without IPv6
		}
		if errors.Is(err, unix.EROFS) {
			return fmt.Errorf("make passive: %w: the unit mounts /proc/sys read-only, give it ProtectKernelTunables=no (docs/deploy.md)", err)
		}
		if err != nil {
			return fmt.Errorf("make passive: %w", err)
		}
	}
	if err := netlink.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("make passive: arp off: %w", err)
	}
	return nil
}

// tapFilter is dropIngress; tests take it away to check what the sysctls
// do alone, as without CAP_BPF.
var tapFilter = dropIngress

// tcxDrop is TCX_DROP (TC_ACT_SHOT).
const tcxDrop = 2

// dropIngress attaches a tc program that drops every frame at the device's
// ingress. Packet sockets (tcpdump, Suricata's af-packet, Zeek) take their
// copy before tc runs, so they see every frame; the host's stack sees none.
func dropIngress(ifindex int) (link.Link, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xm_tap_drop",
		Type:         ebpf.SchedCLS,
		License:      "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcxDrop), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer prog.Close() // the link holds its own reference
	return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
}
