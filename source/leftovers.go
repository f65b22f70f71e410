// SPDX-License-Identifier: Apache-2.0

package source

import (
	"log/slog"
	"regexp"

	"github.com/vishvananda/netlink"
)

// deviceAlias marks the links xmirror source creates (the kernel datapath's
// VXLAN device, the replica veths), so that a start can tell a killed run's
// leftovers from the host's own links.
const deviceAlias = "xmirror source"

// removeLeftovers deletes what a run that was killed (SIGKILL, a crash) left
// behind, whatever the datapath of this run: its VXLAN device, its replica
// veths and its tc filters on the source interfaces. A VXLAN device in
// external mode named device counts as left behind even without the alias
// (runs of older versions set none).
func removeLeftovers(device string, ifindexes []int) {
	links, err := netlink.LinkList()
	if err != nil {
		slog.Warn("look for leftovers of a killed run", "err", err)
		return
	}
	base := regexp.QuoteMeta(replicaBase(device))
	replicaName := regexp.MustCompile(`^` + base + `[sr][0-9]+$`)
	for _, l := range links {
		a := l.Attrs()
		stale := false
		switch v := l.(type) {
		case *netlink.Vxlan:
			stale = a.Name == device && (a.Alias == deviceAlias || v.FlowBased)
		case *netlink.Veth:
			stale = replicaName.MatchString(a.Name) && a.Alias == deviceAlias
		}
		if !stale {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			slog.Warn("delete leftover of a killed run", "link", a.Name, "err", err)
			continue
		}
		slog.Warn("deleted a leftover of a killed run", "link", a.Name)
	}
	for _, ifindex := range ifindexes {
		if n := removeStaleFilters(ifindex); n > 0 {
			slog.Warn("deleted tc filters left by a killed run", "ifindex", ifindex, "filters", n)
		}
	}
}
