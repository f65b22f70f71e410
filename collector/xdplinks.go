// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xmirror/xmirror/internal/nsthread"
)

// linkCheckEvery bounds how often keepLinks looks at the interfaces (poll
// runs on every tick and every Stats).
const linkCheckEvery = time.Second

// watchLinks remembers the collector's network namespace, where keepLinks
// looks, and shows each receive interface in xmirror_collector_xdp_interface_up.
func (x *xdpReceiver) watchLinks() {
	ns, err := netns.Get()
	if err != nil {
		x.c.log.Warn("no handle of the network namespace: a re-created receive interface is not noticed", "err", err)
		return
	}
	x.ns = ns
	for _, name := range x.ifaces {
		x.showLink(name)
	}
}

// showLink adds the receive interface name to xmirror_collector_xdp_interface_up.
func (x *xdpReceiver) showLink(name string) {
	x.c.set.GetOrCreateGauge(fmt.Sprintf("xmirror_collector_xdp_interface_up{interface=%q}", name), func() float64 {
		x.linksMu.Lock()
		defer x.linksMu.Unlock()
		if slices.Contains(x.missing, name) {
			return 0
		}
		return 1
	})
}

// followAddress attaches the program to interfaces that took the listen
// address since the start (it was moved to another interface, or added to
// one more): before, their traffic went to the one socket beside the
// program while the log and xmirror_collector_xdp_interface_up still showed
// only the interface the address had left. Called by keepLinks, in the
// collector's namespace, with linksMu held.
func (x *xdpReceiver) followAddress() {
	holders, err := interfacesWith(x.addr)
	if err != nil {
		return
	}
	for _, name := range holders {
		if slices.Contains(x.ifaces, name) {
			continue
		}
		l, err := x.attachLink(name)
		if err != nil {
			if !x.refused[name] {
				x.c.log.Error("the listen address is on another interface, which the receive program cannot attach to: its traffic goes to the one socket beside it",
					"interface", name, "err", err)
				x.refused[name] = true
			}
			continue
		}
		delete(x.refused, name)
		x.ifaces = append(x.ifaces, name)
		x.links = append(x.links, l)
		x.showLink(name)
		x.c.log.Warn("the listen address is on another interface: receive program attached there", "interface", name, "address", x.addr.String())
	}
}

// keepLinks attaches the program again to a receive interface that was
// deleted and created again (its link held the old index, so the program
// was gone and only the port's socket received), and logs receive
// interfaces that are gone.
func (x *xdpReceiver) keepLinks() {
	x.linksMu.Lock()
	defer x.linksMu.Unlock()
	if x.closed || !x.ns.IsOpen() || time.Since(x.checked) < linkCheckEvery {
		return
	}
	x.checked = time.Now()
	var missing []string
	err := nsthread.Run(x.ns, func() error {
		for i, name := range x.ifaces {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				missing = append(missing, name)
				continue
			}
			// A kernel that does not report the link's interface cannot tell.
			if info, err := x.links[i].Info(); err != nil || info.XDP() == nil || int(info.XDP().Ifindex) == ifc.Index {
				continue
			}
			l, err := x.attachLink(name)
			if err != nil {
				x.c.log.Error("attach the receive program to a re-created interface", "interface", name, "err", err)
				missing = append(missing, name)
				continue
			}
			x.links[i].Close()
			x.links[i] = l
			x.c.log.Warn("receive interface was created again: program attached anew", "interface", name)
		}
		x.followAddress()
		return nil
	})
	if err != nil {
		x.c.log.Warn("check receive interfaces", "err", err)
		return
	}
	if !slices.Equal(missing, x.missing) {
		if len(missing) > 0 {
			x.c.log.Error("receive interface gone: its traffic is not received through XDP until it is back", "interfaces", missing)
		} else {
			x.c.log.Info("every receive interface runs the program again")
		}
		x.missing = missing
	}
}
