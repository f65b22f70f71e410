// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// notOnListener says why a session whose local address is local loses the
// VIP's traffic: the router takes that address as the route's next hop,
// so the traffic arrives on the interface holding it, and the program
// runs only on the listener interfaces. The interface may also be a bridge
// or bond that a listener interface is a port of. "" when it is fine, or
// cannot be told (no listener given, the address not found).
func notOnListener(local string, listener []string) string {
	addr, err := netip.ParseAddr(local)
	if err != nil || len(listener) == 0 {
		return ""
	}
	holder := linkWithAddr(addr)
	if holder == nil || slices.Contains(listener, holder.Attrs().Name) {
		return ""
	}
	for _, name := range listener {
		if l, err := netlink.LinkByName(name); err == nil && l.Attrs().MasterIndex == holder.Attrs().Index {
			return ""
		}
	}
	return fmt.Sprintf("the session runs over %s (local address %s, the route's next hop), which is not a listener interface %v: "+
		"the router sends the vip's traffic there, where the program does not run, and it is dropped", holder.Attrs().Name, addr, listener)
}

// linkWithAddr is the interface holding addr, or nil.
func linkWithAddr(addr netip.Addr) netlink.Link {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.Unmap() {
				return l
			}
		}
	}
	return nil
}
