// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Next hops of the ring datapath: where a target's packets go at the link
// layer, so that they can skip the raw socket's routing (ring.go).

// hopRefresh is how long a resolved next hop is used before it is looked up
// again (route, link, neighbour); hopRetry is the same for a target whose
// neighbour is not resolved yet: the raw socket's first packet makes the
// kernel resolve it, which takes a round trip, and until the next lookup
// every packet pays for the raw socket.
var (
	hopRefresh = time.Second
	hopRetry   = 50 * time.Millisecond
)

// nextHop is where packets to one target go at the link layer.
type nextHop struct {
	ll    unix.RawSockaddrLinklayer
	eth   [ethLen]byte // the Ethernet header, for the GSO socket
	ok    bool         // resolved: use the AF_PACKET socket
	kick  bool         // the neighbour is stale: send one packet through the raw socket so the kernel revalidates it
	neigh net.IP       // the neighbour's address (the target or its gateway)
	at    time.Time    // when it was looked up
}

// hop returns the link-layer next hop for dst, nil when the packet has to
// take the raw socket.
func (r *ringPath) hop(dst [4]byte) *nextHop {
	if r.pfd < 0 || r.lookup == nil {
		return nil
	}
	h := r.hops[dst]
	if h == nil || r.now.Sub(h.at) > hopRefresh || (!h.ok && r.now.Sub(h.at) > hopRetry) {
		h = r.lookup(dst)
		r.hops[dst] = h
	}
	if !h.ok {
		return nil
	}
	if h.kick {
		h.kick = false
		return nil
	}
	return h
}

// resolve looks up the next hop of dst for the ring's sender.
func (r *ringPath) resolve(dst [4]byte) *nextHop {
	return resolveHop(r.nl, r.mark, dst, r.now)
}

// resolveHop looks up the route to dst (with the tunnel mark, as the raw
// socket would), its interface and the neighbour entry of the next hop.
func resolveHop(nl *netlink.Handle, mark uint32, dst [4]byte, now time.Time) *nextHop {
	h := &nextHop{at: now}
	ip := net.IP(dst[:])
	routes, err := nl.RouteGetWithOptions(ip, &netlink.RouteGetOptions{Mark: mark})
	if err != nil || len(routes) == 0 || routes[0].LinkIndex <= 0 ||
		(routes[0].Type != 0 && routes[0].Type != unix.RTN_UNICAST) {
		return h
	}
	rt := routes[0]
	nh := ip
	if rt.Gw != nil {
		nh = rt.Gw
	}
	link, err := nl.LinkByIndex(rt.LinkIndex)
	if err != nil || link.Attrs().EncapType != "ether" || len(link.Attrs().HardwareAddr) != 6 {
		return h
	}
	// Known from here even while the neighbour is not resolved: what to
	// ask the kernel to resolve (directHops).
	h.neigh = nh
	h.ll.Ifindex = int32(rt.LinkIndex)
	neighs, err := nl.NeighList(rt.LinkIndex, netlink.FAMILY_V4)
	if err != nil {
		return h
	}
	for _, n := range neighs {
		if !n.IP.Equal(nh) || len(n.HardwareAddr) != 6 {
			continue
		}
		switch {
		case n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT) != 0:
		case n.State&(netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0:
			h.kick = true
		default:
			continue
		}
		h.ll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(rt.LinkIndex), Halen: 6}
		copy(h.ll.Addr[:], n.HardwareAddr)
		copy(h.eth[0:], n.HardwareAddr)
		copy(h.eth[6:], link.Attrs().HardwareAddr)
		binary.BigEndian.PutUint16(h.eth[12:], unix.ETH_P_IP)
		h.ok = true
		break
	}
	return h
}
