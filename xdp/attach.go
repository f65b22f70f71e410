// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/config"
)

// Attach puts the program on the listener's interfaces (updating links pinned
// by a previous run), fills the redirect map and resolves backend neighbours.
func (b *Balancer) Attach() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil {
		return errors.New("attach before apply: no configuration")
	}
	if err := b.prepareEgress(b.cfg); err != nil {
		return err
	}
	// A pinned link keeps the mode it was made with: remember it from the maps.
	prev := ""
	if slot, err := b.activeSlot(); err == nil {
		var sc lbLbSlot
		if b.objs.LbSlots.Lookup(slot, &sc) == nil && sc.XdpMode != 0 {
			prev = modeName(sc.XdpMode)
		}
	}
	if err := b.writeListenerMACs(b.cfg.Listener.Interfaces); err != nil {
		return err
	}
	a, err := b.objs.attach(b.cfg.Listener.Interfaces, b.opts.XDPMode, b.objs.XmirrorLb)
	if err != nil {
		return err
	}
	mode := a.mode
	if mode == "pinned" && prev != "" {
		mode = prev
	}
	b.links, b.prevProgs = a.links, a.prev
	b.mode = mode
	// Record the mode for `xmirror lb status` (rewrites the tables once more).
	if err := b.apply(b.cfg); err != nil {
		return err
	}
	// Not a reason to fail a start that serves the listed interfaces.
	if err := dropUnlistedLinks(b.opts.PinPath, b.cfg.Listener.Interfaces); err != nil {
		slog.Error("detach from interfaces no longer in listener.interfaces (`xmirror lb detach` removes every link)", "err", err)
	}
	return nil
}

// dropUnlistedLinks detaches the program from interfaces a previous run
// listened on and the configuration no longer names. Their pinned links
// kept that run's program forwarding there with its own copy of the tables,
// which no reload or health check reaches.
func dropUnlistedLinks(pinPath string, keep []string) error {
	if pinPath == "" {
		return nil
	}
	entries, err := os.ReadDir(pinPath)
	if err != nil {
		return fmt.Errorf("read pin path: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), linkPrefix)
		if !ok || slices.Contains(keep, name) {
			continue
		}
		p := filepath.Join(pinPath, e.Name())
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("load pinned link of %s: %w", name, err))
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link of %s: %w", name, err))
		} else {
			slog.Info("detached from an interface no longer in listener.interfaces", "interface", name)
		}
		l.Close()
	}
	return errors.Join(errs...)
}

// prepareEgress adds the egress port of every backend (and the listener
// ports) to the redirect map and starts neighbour resolution, so the first
// packets find a resolved next hop instead of taking the kernel path.
func (b *Balancer) prepareEgress(cfg *config.LoadBalancer) error {
	for _, name := range cfg.Listener.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("interface %s: %w", name, err)
		}
		if err := b.objs.LbTxPorts.Put(uint32(ifc.Index), uint32(ifc.Index)); err != nil {
			return fmt.Errorf("add %s to redirect map: %w", name, err)
		}
		if err := enableForwarding(name); err != nil {
			return err
		}
	}
	hops, err := b.addBackendEgress(cfg, true)
	if err != nil {
		return err
	}
	resolveNeighbours(hops)
	return nil
}

// addBackendEgress adds the interface each backend's route leaves by to the
// redirect map, and returns the next hops to resolve. The data path sends
// only to interfaces in that map: any other egress is drop_no_route. warn
// logs backends without a route.
func (b *Balancer) addBackendEgress(cfg *config.LoadBalancer, warn bool) ([]hop, error) {
	var hops []hop
	for _, be := range cfg.Backends {
		routes, err := netlink.RouteGet(be.Address.AsSlice())
		if err != nil || len(routes) == 0 {
			if warn {
				slog.Warn("no route to backend", "backend", be.Name, "address", be.Address, "err", err)
			}
			continue
		}
		r := routes[0]
		if err := b.objs.LbTxPorts.Put(uint32(r.LinkIndex), uint32(r.LinkIndex)); err != nil {
			return hops, fmt.Errorf("add egress of %s to redirect map: %w", be.Name, err)
		}
		ip := net.IP(be.Address.AsSlice())
		if r.Gw != nil {
			ip = r.Gw
		}
		hops = append(hops, hop{r.LinkIndex, ip})
	}
	return hops, nil
}

// RefreshEgress adds the interfaces the backends' routes leave by now to the
// redirect map: a route that moved to another interface (the data path
// follows routes within 100 ms) would otherwise be drop_no_route until a
// restart. The xmirror lb process runs it every second.
func (b *Balancer) RefreshEgress() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil || b.links == nil {
		return nil
	}
	_, err := b.addBackendEgress(b.cfg, false)
	return err
}

type hop struct {
	linkIndex int
	ip        net.IP
}

// resolveNeighbours asks the kernel to resolve each next hop with an NTF_USE
// neighbour update (what `ip neigh replace IP dev D use` does): ARP runs
// without sending the backend any data, unlike a probe datagram would. It
// waits up to a second in all for the answers.
func resolveNeighbours(hops []hop) {
	pending := requestNeighbours(hops)
	for i := 0; len(pending) > 0 && i < 50; i++ {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		for k, h := range pending {
			if neighUsable(h) {
				slog.Debug("neighbour resolved", "ip", h.ip)
				delete(pending, k)
			}
		}
	}
	for _, h := range pending {
		slog.Warn("neighbour not resolved yet: first packets take the kernel path", "ip", h.ip)
	}
}

// usableNeigh are the neighbour states the data path can send with.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_PERMANENT | netlink.NUD_NOARP | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE

// neighUsable reports whether h's neighbour entry has a MAC the data path
// can use.
func neighUsable(h hop) bool {
	ns, err := netlink.NeighList(h.linkIndex, unix.AF_INET)
	if err != nil {
		return false
	}
	for _, x := range ns {
		if x.IP.Equal(h.ip) && x.State&usableNeigh != 0 && len(x.HardwareAddr) > 0 {
			return true
		}
	}
	return false
}

// requestNeighbours asks the kernel to resolve each next hop (NTF_USE) that
// has no usable entry, and returns those it asked for, by address, without
// waiting for the answers. One with an entry is left alone: the request
// replaces a static (permanent) entry with an incomplete one, and a
// collector that answers no ARP (why it was made static) then gets nothing.
func requestNeighbours(hops []hop) map[string]hop {
	pending := map[string]hop{}
	for _, h := range hops {
		if neighUsable(h) {
			continue
		}
		n := &netlink.Neigh{LinkIndex: h.linkIndex, Family: unix.AF_INET, IP: h.ip, Flags: netlink.NTF_USE}
		if err := netlink.NeighSet(n); err != nil {
			slog.Warn("neighbour resolution request failed", "ip", h.ip, "err", err)
			continue
		}
		pending[h.ip.String()] = h
	}
	return pending
}

// writeListenerMACs tells the data path each listener interface's MAC
// (lb_listener_macs), so that frames a switch floods to it for other hosts
// pass to the kernel instead of being forwarded by every LB node that sees
// them. Two interfaces whose ifindexes share a slot leave the second
// unfiltered (logged).
func (b *Balancer) writeListenerMACs(names []string) error {
	var macs [ifaceSlots]lbLbIfmac
	for _, name := range names {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("interface %s: %w", name, err)
		}
		m := &macs[ifc.Index%ifaceSlots]
		if len(ifc.HardwareAddr) != 6 {
			continue
		}
		if m.Ifindex != 0 {
			slog.Warn("two listener interfaces share a MAC slot: frames for other hosts are not filtered on the second", "interface", name)
			continue
		}
		*m = lbLbIfmac{Ifindex: uint32(ifc.Index), MacLo: binary.NativeEndian.Uint32(ifc.HardwareAddr[0:4]),
			MacHi: binary.NativeEndian.Uint16(ifc.HardwareAddr[4:6])}
	}
	if err := b.objs.LbListenerMacs.Set(macs); err != nil {
		return fmt.Errorf("write listener MACs: %w", err)
	}
	return nil
}

// ErrHost means the host cannot run the listener as configured: an
// interface is missing or runs an XDP program that is not this pin path's.
var ErrHost = errors.New("listener interfaces")

// CheckInterfaces refuses, before anything is loaded or pinned, listener
// interfaces that do not exist or that run an XDP program other than the one
// pinned under pinPath (another pin path's, or another tool's): attaching
// would fail half way, or take over someone else's interface.
func CheckInterfaces(lb *config.LoadBalancer, pinPath string) error {
	for i, name := range lb.Listener.Interfaces {
		field := fmt.Sprintf("load_balancer.listener.interfaces[%d]", i)
		at := "" // as the file's other errors say where
		if lb.Listener.Line > 0 {
			at = fmt.Sprintf(" (the listener at line %d)", lb.Listener.Line)
		}
		if _, err := netlink.LinkByName(name); err != nil {
			return fmt.Errorf("%w: %s: %s: no such interface%s", ErrHost, field, name, at)
		}
		if id, err := ForeignXDP(name, pinPath); err != nil {
			return err
		} else if id != 0 {
			return fmt.Errorf("%w: %s: %s already runs XDP program %d that is not pinned under %s (another pin_path, or another tool): detach it or use its pin_path%s",
				ErrHost, field, name, id, pinPath, at)
		}
	}
	return nil
}

// ForeignXDP is the id of the XDP program ifname runs when it is not the
// load balancer's pinned under pinPath, which `xmirror lb` refuses to
// start beside (CheckInterfaces); 0 when it runs none or that one, or does
// not exist.
func ForeignXDP(ifname, pinPath string) (uint32, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, nil
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, nil
	}
	if ours, err := pinnedLinkRuns(pinPath, ifname, x.ProgId); err != nil || ours {
		return 0, err
	}
	return x.ProgId, nil
}

// pinnedLinkRuns reports whether the link pinned under pinPath for iface
// runs program id.
func pinnedLinkRuns(pinPath, iface string, id uint32) (bool, error) {
	if pinPath == "" {
		return false, nil
	}
	pin := filepath.Join(pinPath, linkPrefix+iface)
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrPermission) {
		// The interface's program is this pin path's, pinned by another
		// user: it is not someone else's program.
		return false, fmt.Errorf("%w: %s: its link %w", ErrHost, iface, pinAccessError(pin, err))
	}
	if err != nil {
		return false, nil
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("read the pinned link of %s: %w", iface, err)
	}
	return uint32(info.Program) == id, nil
}

// autoMode is the mode auto picks for an interface: native, except on a veth
// whose peer runs no native XDP program. There, frames the program sends
// back out with XDP_TX or a redirect are dropped by the peer, while generic
// mode hands them to the peer's stack and they arrive.
func autoMode(name string) string {
	peerXDP, err := vethPeerRunsXDP(name)
	switch {
	case errors.Is(err, errNotVeth):
		return ModeNative
	case err != nil:
		slog.Warn("cannot tell whether the veth peer runs XDP: using generic mode, which delivers either way", "interface", name, "err", err)
		return ModeGeneric
	case !peerXDP:
		slog.Warn("veth peer runs no native XDP program, so it would drop XDP_TX frames: using generic mode "+
			"(attach an XDP program to the peer, or set xdp_mode: native, for native speed)", "interface", name)
		return ModeGeneric
	}
	return ModeNative
}

var errNotVeth = errors.New("not a veth")

// vethPeerRunsXDP reports whether the other end of veth name, in whichever
// namespace it lives, has a native (driver mode) XDP program attached.
func vethPeerRunsXDP(name string) (bool, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return false, err
	}
	veth, ok := l.(*netlink.Veth)
	if !ok {
		return false, errNotVeth
	}
	idx, err := netlink.VethPeerIndex(veth)
	if err != nil {
		return false, fmt.Errorf("veth peer of %s: %w", name, err)
	}
	var peer netlink.Link
	if nsid := l.Attrs().NetNsID; nsid >= 0 {
		peer, err = linkInNetNSID(nsid, idx)
	} else {
		peer, err = netlink.LinkByIndex(idx)
	}
	if err != nil {
		return false, fmt.Errorf("veth peer of %s: %w", name, err)
	}
	x := peer.Attrs().Xdp
	const drv, multi = 1, 4 // XDP_ATTACHED_DRV, XDP_ATTACHED_MULTI
	return x != nil && (x.AttachMode == drv || x.AttachMode == multi), nil
}

// linkInNetNSID reads link index of the namespace this one knows as nsid
// (a veth's peer elsewhere): RTM_GETLINK with IFLA_TARGET_NETNSID.
func linkInNetNSID(nsid, index int) (netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("link %d of namespace id %d: no answer", index, nsid)
	}
	return netlink.LinkDeserialize(nil, msgs[0])
}

// RepairLinks attaches the program again to listener interfaces that were
// deleted and created again since it was attached (a link holds an
// interface index, and the new interface has another), and returns their
// names, and those of listener interfaces that are missing. An interface
// that comes back gets its MAC slot and redirect entry anew.
func (b *Balancer) RepairLinks() (repaired, missing []string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg == nil || b.links == nil {
		return nil, nil, nil
	}
	for _, name := range b.cfg.Listener.Interfaces {
		iface, ierr := net.InterfaceByName(name)
		if ierr != nil {
			missing = append(missing, name)
			continue
		}
		l := b.links[name]
		if l != nil {
			// A kernel that does not report the link's interface cannot
			// tell: leave the link alone.
			if info, ierr := l.Info(); ierr != nil || info.XDP() == nil || int(info.XDP().Ifindex) == iface.Index {
				continue
			}
			if b.opts.PinPath != "" {
				l.Unpin()
			}
			l.Close()
			delete(b.links, name)
		}
		fresh, used, aerr := attachXDP(iface, b.opts.XDPMode, b.objs.XmirrorLb)
		if aerr != nil {
			err = errors.Join(err, aerr)
			continue
		}
		if b.opts.PinPath != "" {
			if perr := fresh.Pin(filepath.Join(b.opts.PinPath, linkPrefix+name)); perr != nil {
				err = errors.Join(err, fmt.Errorf("pin xdp link of %s: %w", name, perr))
			}
		}
		b.links[name] = fresh
		repaired = append(repaired, name)
		slog.Warn("listener interface was created again: program attached anew", "interface", name, "mode", used)
	}
	if len(repaired) > 0 {
		err = errors.Join(err, b.writeListenerMACs(b.cfg.Listener.Interfaces), b.prepareEgress(b.cfg))
	}
	return repaired, missing, err
}
