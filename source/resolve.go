// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
)

// ErrConfig marks a configuration the system cannot carry out (unknown
// interface, target without a route, ...): refused before anything is attached.
var ErrConfig = errors.New("bad configuration")

// CheckHost says what a start with cfg would refuse on this host before it
// attaches anything: source interfaces that are missing, not Ethernet or
// without an IPv4 address, and targets without a route (`xmirror check
// --system --role source`).
func CheckHost(cfg *config.Config) error {
	_, err := resolve(cfg, int(vxlanPort))
	return err
}

// resolve looks up, in the current network namespace, everything compile needs
// to know about the enabled sessions. port is the UDP port the VXLAN device
// sends to; every target must use it.
func resolve(cfg *config.Config, port int) (*Resolved, error) {
	res := &Resolved{
		Ifindex:  map[string]int{},
		Local:    map[string]netip.Addr{},
		Offloads: map[string]offloads{},
		RxAggr:   map[string]bool{},
		Target:   map[string]netip.Addr{},
		PathMTU:  map[string]int{},
	}
	var errs []error
	for _, s := range enabledSessions(cfg) {
		for j, ifname := range s.Sources {
			if _, ok := res.Ifindex[ifname]; ok {
				continue
			}
			f, problems, err := resolveInterface(ifname)
			if err != nil {
				return nil, err
			}
			for _, p := range problems {
				var notEther *notEthernetError
				if errors.As(p, &notEther) {
					p = fmt.Errorf("%w; remove %s from %s (an Ethernet interface the traffic crosses can be mirrored instead)",
						p, ifname, strings.Join(sourcesNaming(cfg, ifname), ", "))
				}
				errs = append(errs, fmt.Errorf("%w: session %s: %w (%s)", ErrConfig, s.Name, p, keyOf(cfg, s.Name, fmt.Sprintf("sources[%d]", j))))
			}
			if f.ifindex == 0 {
				continue
			}
			res.Ifindex[ifname], res.Local[ifname] = f.ifindex, f.local
			res.Offloads[ifname], res.RxAggr[ifname] = f.offloads, f.rxAggr
		}
		target, err := resolveTarget(s.Target, port)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: session %s: target %q: %w (%s)", ErrConfig, s.Name, s.Target, err, keyOf(cfg, s.Name, "target")))
			continue
		}
		res.Target[s.Name] = target
		mtu, err := pathMTU(target)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: session %s: target %s: %w (%s)", ErrConfig, s.Name, target, err, keyOf(cfg, s.Name, "target")))
			continue
		}
		res.PathMTU[s.Name] = mtu
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// keyOf names field of the session called name as the file writes it,
// "sessions[2].sources[1]", and the session's line when the file gave one.
func keyOf(cfg *config.Config, name, field string) string {
	for i, s := range cfg.Sessions {
		if s.Name != name {
			continue
		}
		if s.Line > 0 {
			return fmt.Sprintf("sessions[%d].%s, the session at line %d", i, field, s.Line)
		}
		return fmt.Sprintf("sessions[%d].%s", i, field)
	}
	return field
}

// ifaceFacts is what the source uses of one source interface.
type ifaceFacts struct {
	ifindex  int        // 0: not found
	local    netip.Addr // its first IPv4 address: the outer source
	offloads offloads
	rxAggr   bool // GRO or LRO on
}

// notEthernetError is a source interface without Ethernet headers.
type notEthernetError struct{ ifname, linkType string }

func (e *notEthernetError) Error() string {
	return fmt.Sprintf("interface %s is not an Ethernet interface (link type %s): a mirror source copies Ethernet frames", e.ifname, e.linkType)
}

// resolveInterface looks up source interface ifname in the current network
// namespace. problems say why it cannot be a source (missing, not
// Ethernet, no IPv4 address, ...); err is a failure to ask.
func resolveInterface(ifname string) (f ifaceFacts, problems []error, err error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return f, []error{fmt.Errorf("interface %q: %w", ifname, err)}, nil
	}
	f.ifindex = link.Attrs().Index
	// The programs read an Ethernet header first and the copy is an
	// Ethernet frame (what VXLAN carries); a tun, WireGuard or IPIP
	// device hands tc the bare IP packet, so no rule would ever match.
	if enc := link.Attrs().EncapType; enc != "ether" && enc != "loopback" {
		problems = append(problems, &notEthernetError{ifname, enc})
	}
	if f.ifindex > markIfindexMax {
		problems = append(problems, fmt.Errorf("interface %s has ifindex %d, above %d", ifname, f.ifindex, markIfindexMax))
	}
	if f.offloads, err = getOffloads(ifname); err != nil {
		// Without ethtool answers assume the safe, software case.
		slog.Debug("cannot read offloads; assuming none", "interface", ifname, "err", err)
	}
	if f.rxAggr, err = rxAggregates(ifname); err != nil {
		// Assume aggregates: inbound copies then take the ring.
		slog.Debug("cannot read receive offloads; assuming aggregates", "interface", ifname, "err", err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return f, nil, fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			f.local = ip
			break
		}
	}
	if !f.local.IsValid() {
		problems = append(problems, fmt.Errorf("interface %s has no IPv4 address for the outer header", ifname))
	}
	return f, problems, nil
}

// resolveTarget parses host[:port] into an IPv4 address.
func resolveTarget(target string, port int) (netip.Addr, error) {
	host := target
	if h, p, err := net.SplitHostPort(target); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("port %q: %w", p, err)
		}
		if n != port {
			return netip.Addr{}, fmt.Errorf("port %d: the VXLAN device sends to port %d", n, port)
		}
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Unmap().Is4() {
			return netip.Addr{}, errors.New("not an IPv4 address (the outer header is IPv4)")
		}
		return a.Unmap(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("look up: %w", err)
	}
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip.To4()); ok {
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no IPv4 address")
}

// pathMTU is the MTU of the route to dst: the route's own mtu metric, else its
// device's MTU.
func pathMTU(dst netip.Addr) (int, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("no route: %w", err)
	}
	if len(routes) == 0 {
		return 0, errors.New("no route")
	}
	r := routes[0]
	if r.MTU > 0 {
		return r.MTU, nil
	}
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err != nil {
		return 0, fmt.Errorf("route device %d: %w", r.LinkIndex, err)
	}
	return link.Attrs().MTU, nil
}

// sourcesNaming are the configuration paths (sessions[i].sources) of the
// enabled sessions that list ifname, for messages that say what to change.
func sourcesNaming(cfg *config.Config, ifname string) []string {
	var paths []string
	for i, s := range cfg.Sessions {
		if s.Enabled && slices.Contains(s.Sources, ifname) {
			paths = append(paths, fmt.Sprintf("sessions[%d].sources", i))
		}
	}
	return paths
}
