// SPDX-License-Identifier: Apache-2.0

// Package netlab builds throwaway networks of hosts for tests, the demo and the
// benchmarks: each host is a network namespace whose eth0 is a veth joined to one
// bridge, which lives in a namespace of its own so that nothing touches the machine's
// real network. Everything a Lab creates, namespaces and processes alike, is removed by
// Close; namespaces left behind by a process that died are swept by the next New.
package netlab

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/nsthread"
)

// namePrefix starts every namespace netlab creates; the owner's pid follows it so
// that a later run can tell which namespaces were left behind by a dead process.
const namePrefix = "xmlab-"

const netnsDir = "/run/netns"

var labSeq atomic.Uint32

// HostSpec describes one host of a Lab.
type HostSpec struct {
	Name  string   // short label, unique in the lab, e.g. "source"
	Addrs []string // CIDRs on eth0, e.g. "192.168.0.230/24" or "fd00::1/64"
	MTU   int      // 0 keeps 1500
	// GRO turns on GRO on both ends of the host's veth: frames that an XDP program
	// sends into a veth (XDP_TX, XDP_REDIRECT) are dropped unless the receiving end
	// has GRO (NAPI) or an XDP program of its own.
	GRO bool
	// Offload keeps checksum and segmentation offload on. Off by default: with it
	// on, packets forwarded by the kernel between veths carry partial checksums.
	Offload bool
	// PeerXDP attaches an XDP_PASS program to the bridge end of the host's veth, so
	// that frames the host sends with XDP_TX or XDP_REDIRECT (a load balancer, a
	// traffic generator) reach the bridge.
	PeerXDP bool
}

// Lab is a set of hosts on one bridge.
type Lab struct {
	Name     string // prefix of every namespace of the lab
	switchNS netns.NsHandle
	bridge   *netlink.Bridge

	mu    sync.Mutex
	hosts []*Host
	procs []*Proc
}

// Host is a network namespace with one interface, eth0, on the lab's bridge.
type Host struct {
	Name    string
	NS      string // namespace name, as `ip netns` lists it
	Iface   string // always "eth0"
	Addr    netip.Addr
	Addrs   []netip.Prefix
	MAC     net.HardwareAddr
	Ifindex int
	Port    string // the bridge port (in the lab's switch namespace) of this host

	lab       *Lab
	handle    netns.NsHandle
	portIndex int       // ifindex of Port in the switch namespace
	peerXDP   io.Closer // the XDP_PASS link on Port, with PeerXDP
}

// New creates an empty lab: a namespace holding the bridge br0. label names it in
// `ip netns list` (keep it short).
func New(label string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab needs root (network namespaces, veth, bridges)")
	}
	sweepStale()
	l := &Lab{Name: fmt.Sprintf("%s%d-%d-%s", namePrefix, os.Getpid(), labSeq.Add(1), sanitize(label))}
	ns, err := newNamedNS(l.Name + "-sw")
	if err != nil {
		return nil, err
	}
	l.switchNS = ns
	err = inNS(ns, func() error {
		if err := disableIPv6("all", "default"); err != nil {
			return err
		}
		if err := plainSwitch(); err != nil {
			return err
		}
		if err := linkUp("lo"); err != nil {
			return err
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		l.bridge = br
		return linkUp("br0")
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// AddHost creates a host namespace and plugs its eth0 into the bridge.
func (l *Lab) AddHost(spec HostSpec) (*Host, error) {
	if spec.Name == "" {
		return nil, errors.New("host name is empty")
	}
	if l.Host(spec.Name) != nil {
		return nil, fmt.Errorf("host %q exists", spec.Name)
	}
	h := &Host{Name: spec.Name, Iface: "eth0", lab: l}
	for _, a := range spec.Addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("host %s: address %q: %w", spec.Name, a, err)
		}
		h.Addrs = append(h.Addrs, p)
	}
	if len(h.Addrs) > 0 {
		h.Addr = h.Addrs[0].Addr()
	}
	h.NS = l.Name + "-" + sanitize(spec.Name)
	ns, err := newNamedNS(h.NS)
	if err != nil {
		return nil, err
	}
	h.handle = ns
	l.mu.Lock()
	idx := len(l.hosts)
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	h.Port = "p" + strconv.Itoa(idx)

	wantV6 := false
	for _, p := range h.Addrs {
		wantV6 = wantV6 || p.Addr().Is6()
	}
	// IPv6 stays off unless asked for, so that captures hold only the test's traffic
	// (no router solicitations, no MLD reports).
	if !wantV6 {
		if err := inNS(ns, func() error { return disableIPv6("all", "default") }); err != nil {
			return nil, err
		}
	}
	mtu := cmp.Or(spec.MTU, 1500)
	if err := inNS(l.switchNS, func() error { return l.plugPort(h, spec, mtu) }); err != nil {
		return nil, err
	}
	if spec.PeerXDP {
		if err := l.attachPeerPass(h); err != nil {
			return nil, err
		}
	}
	if err := inNS(ns, func() error { return h.configureEth0(spec, mtu) }); err != nil {
		return nil, err
	}
	return h, nil
}

// plugPort creates h's veth, its bridge end in the switch namespace (the
// calling thread's) and eth0 in h's.
func (l *Lab) plugPort(h *Host, spec HostSpec, mtu int) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: h.Port, MTU: mtu, MasterIndex: l.bridge.Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(h.handle)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth for %s: %w", spec.Name, err)
	}
	if err := setFeatures(h.Port, spec, true); err != nil {
		return err
	}
	port, err := netlink.LinkByName(h.Port)
	if err != nil {
		return fmt.Errorf("find %s: %w", h.Port, err)
	}
	h.portIndex = port.Attrs().Index
	return linkUp(h.Port)
}

// configureEth0 gives eth0 (in the calling thread's namespace, h's) its MTU,
// addresses and features, and brings it and lo up.
func (h *Host) configureEth0(spec HostSpec, mtu int) error {
	if err := linkUp("lo"); err != nil {
		return err
	}
	link, err := netlink.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set mtu: %w", err)
	}
	for _, p := range h.Addrs {
		addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	if err := setFeatures("eth0", spec, false); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	h.MAC = link.Attrs().HardwareAddr
	h.Ifindex = link.Attrs().Index
	return nil
}

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Hosts returns the hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// NetNSPath is the bind-mounted namespace file of host name.
func (l *Lab) NetNSPath(host string) string {
	if h := l.Host(host); h != nil {
		return filepath.Join(netnsDir, h.NS)
	}
	return ""
}

// SwitchDo runs fn inside the namespace that holds the bridge, where the host-side
// ends of the veths (Host.Port) are: the place to watch or shape what a host sends.
func (l *Lab) SwitchDo(fn func() error) error { return inNS(l.switchNS, fn) }

// Close kills the processes the lab started and deletes every namespace (and with
// them the veths and the bridge). It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, hosts := l.procs, l.hosts
	l.procs, l.hosts = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	var errs []error
	for _, h := range hosts {
		if h.peerXDP != nil {
			h.peerXDP.Close()
		}
		errs = append(errs, deleteNS(h.NS, h.handle))
	}
	if l.switchNS != 0 {
		errs = append(errs, deleteNS(l.Name+"-sw", l.switchNS))
		l.switchNS = 0
	}
	return errors.Join(errs...)
}

// Do runs fn on a locked OS thread inside the host's namespace. Sockets fn opens stay
// in the namespace after it returns; goroutines it starts do not run in it.
func (h *Host) Do(fn func() error) error { return inNS(h.handle, fn) }

// newNamedNS creates a namespace bind-mounted at /run/netns/name without moving the
// calling goroutine's thread into it for good.
func newNamedNS(name string) (netns.NsHandle, error) {
	var ns netns.NsHandle
	err := nsthread.Locked(func(orig netns.NsHandle) error {
		var err error
		ns, err = netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		return nil
	})
	return ns, err
}

// inNS runs fn inside ns on a locked OS thread.
func inNS(ns netns.NsHandle, fn func() error) error { return nsthread.Run(ns, fn) }

func deleteNS(name string, h netns.NsHandle) error {
	if h != 0 {
		h.Close()
	}
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// sweepStale deletes namespaces that an earlier netlab process left behind when it
// was killed before it could clean up.
func sweepStale() {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // owner alive
		}
		netns.DeleteNamed(e.Name())
	}
}

func linkUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func disableIPv6(confs ...string) error {
	for _, c := range confs {
		p := filepath.Join("/proc/sys/net/ipv6/conf", c, "disable_ipv6")
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable ipv6 (%s): %w", c, err)
		}
	}
	return nil
}

// plainSwitch keeps bridged frames in the calling thread's namespace out of
// the IP, IPv6 and ARP netfilter hooks (br_netfilter, on by default where it
// is built in): the lab's bridge stands for a switch, and those hooks cost
// more than the forwarding itself, on the cores the hosts share.
func plainSwitch() error {
	for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		p := filepath.Join("/proc/sys/net/bridge", f)
		if err := os.WriteFile(p, []byte("0"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("switch: %s: %w", f, err)
		}
	}
	return nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Veth links h and peer with a veth pair outside the lab's switch: name in
// h, peerName in peer, each with its address (a prefix such as
// "10.9.0.1/24") unless "", both up. For a test that deletes an interface
// (`ip link del name` in h) and creates it again with the same call.
func (h *Host) Veth(name, addr string, peer *Host, peerName, peerAddr string) error {
	if _, err := h.Run("ip", "link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peer.NS); err != nil {
		return err
	}
	for _, end := range []struct {
		h          *Host
		name, addr string
	}{{h, name, addr}, {peer, peerName, peerAddr}} {
		if end.addr != "" {
			if _, err := end.h.Run("ip", "addr", "add", end.addr, "dev", end.name); err != nil {
				return err
			}
		}
		if _, err := end.h.Run("ip", "link", "set", end.name, "up"); err != nil {
			return err
		}
	}
	return nil
}
