// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"log/slog"
	"regexp"

	"github.com/vishvananda/netlink"
)

// deviceAlias marks the links xmirror source creates (the kernel datapath's
// VXLAN device, the replica veths), so that a start can tell a killed run's
// leftovers from the host's own links.
const deviceAlias = "xmirror source"

// markOurs sets deviceAlias on l. It takes a call of its own: the kernel
// ignores an alias (IFLA_IFALIAS) in the request that creates a link.
func markOurs(l netlink.Link) error {
	if err := netlink.LinkSetAlias(l, deviceAlias); err != nil {
		return fmt.Errorf("set the alias of %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// removeLeftovers deletes what a run that was killed (SIGKILL, a crash) left
// behind, whatever the datapath of this run: its VXLAN device, its replica
// veths and its tc filters on the source interfaces. A VXLAN device in
// external mode named device counts as left behind even without the alias,
// and so does a veth pair named as a replica pair of device (<base>sN whose
// peer is <base>rN): runs of older versions set no alias.
func removeLeftovers(device string, ifindexes []int) {
	links, err := netlink.LinkList()
	if err != nil {
		slog.Warn("look for leftovers of a killed run", "err", err)
		return
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	base := regexp.QuoteMeta(replicaBase(device))
	replicaName := regexp.MustCompile(`^` + base + `([sr])([0-9]+)$`)
	// isReplicaPair: l and its peer are the two ends of one replica.
	isReplicaPair := func(l netlink.Link) bool {
		m := replicaName.FindStringSubmatch(l.Attrs().Name)
		peer := byIndex[l.Attrs().ParentIndex]
		if m == nil || peer == nil {
			return false
		}
		p := replicaName.FindStringSubmatch(peer.Attrs().Name)
		return p != nil && p[1] != m[1] && p[2] == m[2]
	}
	for _, l := range links {
		a := l.Attrs()
		stale := false
		switch v := l.(type) {
		case *netlink.Vxlan:
			stale = a.Name == device && (a.Alias == deviceAlias || v.FlowBased)
		case *netlink.Veth:
			stale = replicaName.MatchString(a.Name) && (a.Alias == deviceAlias || isReplicaPair(l))
		}
		if !stale {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			// The other end of a pair deleted a moment ago.
			if _, gone := netlink.LinkByIndex(a.Index); gone != nil {
				continue
			}
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
