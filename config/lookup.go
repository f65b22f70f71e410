// SPDX-License-Identifier: Apache-2.0

package config

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// FilterByName returns the filter called name, or nil.
func (c *Config) FilterByName(name string) *Filter {
	for i := range c.Filters {
		if c.Filters[i].Name == name {
			return &c.Filters[i]
		}
	}
	return nil
}

// SessionByName returns the session called name, or nil.
func (c *Config) SessionByName(name string) *Session {
	for i := range c.Sessions {
		if c.Sessions[i].Name == name {
			return &c.Sessions[i]
		}
	}
	return nil
}

// SessionByVNI returns the session with this VNI, or nil.
func (c *Config) SessionByVNI(vni uint32) *Session {
	for i := range c.Sessions {
		if c.Sessions[i].VNI == vni {
			return &c.Sessions[i]
		}
	}
	return nil
}

// SessionName names the capture files of a VNI: the session's name, or vni-N
// for a VNI no session in the config uses.
func (c *Config) SessionName(vni uint32) string {
	if s := c.SessionByVNI(vni); s != nil {
		return s.Name
	}
	return fmt.Sprintf("vni-%d", vni)
}

// SessionsOn returns the enabled sessions mirroring interface ifname, lowest
// priority number first: the order in which a packet is offered to them.
func (c *Config) SessionsOn(ifname string) []Session {
	var out []Session
	for _, s := range c.Sessions {
		if s.Enabled && slices.Contains(s.Sources, ifname) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b Session) int { return a.Priority - b.Priority })
	return out
}

// SourceInterfaces lists every interface some enabled session mirrors, in order of appearance.
func (c *Config) SourceInterfaces() []string {
	var out []string
	for _, s := range c.Sessions {
		if !s.Enabled {
			continue
		}
		for _, src := range s.Sources {
			if !slices.Contains(out, src) {
				out = append(out, src)
			}
		}
	}
	return out
}

// TargetAddrPort resolves the session's target host[:port] to an IPv4 address
// and port (default 4789). A host name is looked up with the system resolver.
func (s Session) TargetAddrPort() (netip.AddrPort, error) {
	return s.ResolveTarget(context.Background(), net.DefaultResolver)
}

// ResolveTarget is TargetAddrPort with a context and resolver of the caller's choosing.
func (s Session) ResolveTarget(ctx context.Context, r *net.Resolver) (netip.AddrPort, error) {
	host, port, err := SplitTarget(s.Target)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("session %s: %w", s.Name, err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a, port), nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("session %s: resolve target %s: %w", s.Name, host, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("session %s: resolve target %s: no IPv4 address", s.Name, host)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), port), nil
}

// AddrPort is the backend's VXLAN endpoint.
func (b Backend) AddrPort() netip.AddrPort { return netip.AddrPortFrom(b.Address, b.Port) }

// DefaultPort is the well-known UDP port of the listener's protocol: 6081
// for GENEVE, 0 (none) for GRE, else VXLAN's 4789. Listener and backends
// default to it.
func (l Listener) DefaultPort() uint16 {
	switch l.Protocol {
	case ProtocolGENEVE:
		return DefaultGENEVEPort
	case ProtocolGRE:
		return 0
	}
	return DefaultVXLANPort
}

// AddrPort is the listener's VIP and port.
func (l Listener) AddrPort() netip.AddrPort { return netip.AddrPortFrom(l.VIP, l.Port) }

// Allows reports whether the listener's access control admits a mirror source address.
func (a AccessControl) Allows(src netip.Addr) bool {
	if a.Mode != AccessAllowlist {
		return true
	}
	for _, p := range a.Allowlist {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// Enabled reports whether /metrics is served (listen is not "off").
func (m Metrics) Enabled() bool { return m.Listen != MetricsOff }
