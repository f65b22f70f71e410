// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks a configuration, typically one built in Go (Parse already
// validates), and returns Errors with every problem. Lines come from the Line
// fields when they are set. The config is not modified: checks run on a copy
// with defaults applied, so a Config may be validated before or after
// ApplyDefaults with the same result.
func (c *Config) Validate() error {
	lines := map[string]int{}
	for i, f := range c.Filters {
		p := fmt.Sprintf("filters[%d]", i)
		setLine(lines, p, f.Line)
		for j, r := range f.Inbound {
			setLine(lines, fmt.Sprintf("%s.inbound[%d]", p, j), r.Line)
		}
		for j, r := range f.Outbound {
			setLine(lines, fmt.Sprintf("%s.outbound[%d]", p, j), r.Line)
		}
	}
	for i, s := range c.Sessions {
		setLine(lines, fmt.Sprintf("sessions[%d]", i), s.Line)
	}
	if c.Collector != nil {
		for i, in := range c.Collector.Inputs {
			setLine(lines, fmt.Sprintf("collector.inputs[%d]", i), in.Line)
		}
		for i, s := range c.Collector.Sessions {
			setLine(lines, fmt.Sprintf("collector.sessions[%d]", i), s.Line)
		}
	}
	if c.LoadBalancer != nil {
		for i, b := range c.LoadBalancer.Backends {
			setLine(lines, fmt.Sprintf("load_balancer.backends[%d]", i), b.Line)
		}
		if g := c.LoadBalancer.BGP; g != nil {
			for i, peer := range g.Peers {
				setLine(lines, fmt.Sprintf("load_balancer.bgp.peers[%d]", i), peer.Line)
			}
		}
	}
	errs := validate(c, func(p string) int { return lineLookup(lines, p) })
	if len(errs) == 0 {
		return nil
	}
	return errs.sorted()
}

func setLine(lines map[string]int, path string, line int) {
	if line > 0 {
		lines[path] = line
	}
}

type validator struct {
	errs   Errors
	lineOf func(string) int
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Line: v.lineOf(path), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	if !slices.Contains(allowed, got) {
		v.errorf(path, "%q is not one of %s", got, strings.Join(allowed, ", "))
	}
}

func (v *validator) intRange(path string, got, lo, hi int) {
	if got < lo || got > hi {
		v.errorf(path, "%d is out of range %d..%d", got, lo, hi)
	}
}

func validate(orig *Config, lineOf func(string) int) Errors {
	c := orig.clone()
	for i := range c.Filters {
		for _, rules := range [][]Rule{c.Filters[i].Inbound, c.Filters[i].Outbound} {
			for j := range rules {
				rules[j].etherTypeInferred = rules[j].EtherType == ""
			}
		}
	}
	if c.LoadBalancer != nil {
		for i := range c.LoadBalancer.Backends {
			b := &c.LoadBalancer.Backends[i]
			b.nameDefaulted = b.Name == ""
		}
		c.LoadBalancer.HealthCheck.timeoutDefaulted = c.LoadBalancer.HealthCheck.Timeout == 0
	}
	ApplyDefaults(c)
	v := &validator{lineOf: lineOf}
	filters := map[string]int{}
	for i, f := range c.Filters {
		p := fmt.Sprintf("filters[%d]", i)
		if f.Name == "" {
			v.errorf(p+".name", "required")
		} else if j, dup := filters[f.Name]; dup {
			v.errorf(p+".name", "%q is also the name of filters[%d]", f.Name, j)
		} else {
			filters[f.Name] = i
		}
		v.rules(p+".inbound", f.Inbound)
		v.rules(p+".outbound", f.Outbound)
	}
	v.sessions(c.Sessions, filters)
	v.sourceLimits(c)
	if s := c.Source; s != nil {
		v.oneOf("source.hash", s.Hash, HashSymmetric, HashDirectional)
		if s.Mark&CloneMarkMask == CloneMarkMagic {
			v.errorf("source.mark", "0x%x collides with the marks of xmirror's clones (0x%x/0x%x)", s.Mark, CloneMarkMagic, CloneMarkMask)
		}
		v.ifname("source.device", s.Device)
	}
	if lb := c.LoadBalancer; lb != nil {
		v.loadBalancer(lb)
	}
	if col := c.Collector; col != nil {
		v.collector(col)
		v.inputs(col)
		v.collectorSessions(col.Sessions, c.Sessions)
	}
	if c.Metrics.Listen != MetricsOff {
		v.listenAddr("metrics.listen", c.Metrics.Listen)
	}
	if col := c.Collector; col != nil && col.HealthListen != MetricsOff && c.Metrics.Listen != MetricsOff && ListenersOverlap(col.HealthListen, c.Metrics.Listen) {
		v.errorf("collector.health_listen", "%q takes the TCP port of metrics.listen %q, and xmirror collect serves both: give it another port (or off: metrics.listen answers /healthz too)",
			col.HealthListen, c.Metrics.Listen)
	}
	return v.errs
}

// ListenersOverlap reports whether two TCP listen addresses (host:port)
// cannot both be bound: the same port (not 0, any free one) on the same
// host, or on every address (no host, 0.0.0.0 or ::) and any other.
func ListenersOverlap(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	every := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || err == nil && ip.IsUnspecified()
	}
	return every(ha) || every(hb) || ha == hb
}

func (v *validator) rules(path string, rules []Rule) {
	prios := map[int]int{}
	for i, r := range rules {
		p := fmt.Sprintf("%s[%d]", path, i)
		v.intRange(p+".priority", r.Priority, 1, MaxRulePriority)
		if j, dup := prios[r.Priority]; dup {
			v.errorf(p+".priority", "%d is also the priority of %s[%d] (unique within a direction)", r.Priority, path, j)
		} else {
			prios[r.Priority] = i
		}
		if r.Action == "" {
			v.errorf(p+".action", "required")
		} else {
			v.oneOf(p+".action", string(r.Action), string(Accept), string(Reject))
		}
		if r.Protocol < ProtocolAll || r.Protocol > 255 {
			v.errorf(p+".protocol", "%d is out of range 0..255", r.Protocol)
		}
		v.oneOf(p+".ethertype", string(r.EtherType), string(IPv4), string(IPv6))
		if r.Protocol == ProtocolICMP && r.EtherType != IPv4 {
			v.errorf(p+".protocol", "icmp needs ethertype ipv4 (use icmpv6 with ipv6)")
		}
		if r.Protocol == ProtocolICMPv6 && r.EtherType != IPv6 {
			v.errorf(p+".protocol", "icmpv6 needs ethertype ipv6 (use icmp with ipv4)")
		}
		// Keep in sync with parse_flow (source/bpf/parsing.h), which skips
		// these to find the protocol and ports.
		if r.EtherType == IPv6 && (r.Protocol == 0 || r.Protocol == 43 || r.Protocol == 44 || r.Protocol == 60) {
			v.errorf(p+".protocol", "%d is an IPv6 extension header (hop-by-hop 0, routing 43, fragment 44, destination options 60), which the source skips to match the protocol behind it, so the rule would not match the packets that carry it: give the protocol behind the header (tcp, udp, icmpv6, ...) or all", int(r.Protocol))
		}
		v.ruleFamily(p, r)
		if !r.Protocol.IsPortProtocol() {
			if r.SourcePorts != AllPorts {
				v.errorf(p+".source_ports", "%s: port ranges need protocol tcp or udp, not %s", r.SourcePorts, r.Protocol)
			}
			if r.DestinationPorts != AllPorts {
				v.errorf(p+".destination_ports", "%s: port ranges need protocol tcp or udp, not %s", r.DestinationPorts, r.Protocol)
			}
		}
		for _, pr := range []struct {
			key string
			r   PortRange
		}{{"source_ports", r.SourcePorts}, {"destination_ports", r.DestinationPorts}} {
			if pr.r.From > pr.r.To {
				v.errorf(p+"."+pr.key, "first port %d is above last port %d", pr.r.From, pr.r.To)
			}
		}
	}
}

// ruleFamily checks that a rule's CIDRs are of its family, and says where
// the family came from: the ethertype written, or, without one, the
// protocol icmpv6 or an IPv6 CIDR (inferEtherType).
func (v *validator) ruleFamily(p string, r Rule) {
	why := "ethertype is " + string(r.EtherType)
	if r.etherTypeInferred {
		src, dst := r.Source, r.Destination
		if r.Protocol != ProtocolICMPv6 && src.IsValid() && dst.IsValid() && src.Addr().Is4() != dst.Addr().Is4() {
			v.errorf(p+".source", "%s is %s but destination %s is %s: a rule matches one family (one rule per family)",
				src, familyName(src), dst, familyName(dst))
			v.hostBits(p+".source", src)
			v.hostBits(p+".destination", dst)
			return
		}
		if r.Protocol == ProtocolICMPv6 {
			why = "protocol icmpv6 makes the rule ipv6"
		}
	}
	v.family(p+".source", r.Source, r.EtherType, why)
	v.family(p+".destination", r.Destination, r.EtherType, why)
}

func familyName(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func (v *validator) family(path string, p netip.Prefix, e EtherType, why string) {
	if e == IPv4 && !p.Addr().Is4() {
		v.errorf(path, "%s is not an IPv4 CIDR but %s", p, why)
	}
	if e == IPv6 && !p.Addr().Is6() {
		v.errorf(path, "%s is not an IPv6 CIDR but %s", p, why)
	}
	v.hostBits(path, p)
}

func (v *validator) hostBits(path string, p netip.Prefix) {
	if p.IsValid() && p != p.Masked() {
		v.errorf(path, "%s has host bits set (did you mean %s?)", p, p.Masked())
	}
}

func (v *validator) sessions(sessions []Session, filters map[string]int) {
	names := map[string]int{}
	vnis := map[uint32]int{}
	type key struct {
		ifname string
		prio   int
	}
	prios := map[key]int{}
	for i, s := range sessions {
		p := fmt.Sprintf("sessions[%d]", i)
		if s.Name == "" {
			v.errorf(p+".name", "required")
		} else if j, dup := names[s.Name]; dup {
			v.errorf(p+".name", "%q is also the name of sessions[%d]", s.Name, j)
		} else {
			names[s.Name] = i
		}
		v.intRange(p+".priority", s.Priority, 1, MaxSessionPriority)
		if s.VNI > MaxVNI {
			v.errorf(p+".vni", "%d is out of range 0..%d", s.VNI, MaxVNI)
		} else if j, dup := vnis[s.VNI]; dup {
			v.errorf(p+".vni", "%d is also the VNI of sessions[%d]", s.VNI, j)
		} else {
			vnis[s.VNI] = i
		}
		if s.PacketLength != 0 && (s.PacketLength < MinPacketLength || s.PacketLength > MaxPacketLength) {
			v.errorf(p+".packet_length", "%d is out of range %d..%d (or 0 for the whole packet)", s.PacketLength, MinPacketLength, MaxPacketLength)
		}
		if s.Filter == "" {
			v.errorf(p+".filter", "required")
		} else if _, ok := filters[s.Filter]; !ok {
			v.errorf(p+".filter", "%q is not the name of a filter", s.Filter)
		}
		if len(s.Sources) == 0 {
			v.errorf(p+".sources", "needs at least one interface")
		}
		seen := map[string]bool{}
		for j, src := range s.Sources {
			sp := fmt.Sprintf("%s.sources[%d]", p, j)
			if v.ifname(sp, src) {
				if seen[src] {
					v.errorf(sp, "%q is listed twice", src)
					continue
				}
				seen[src] = true
				k := key{src, s.Priority}
				if other, dup := prios[k]; dup && s.Priority > 0 {
					v.errorf(p+".priority", "%d is also the priority of sessions[%d] on source %s (unique per source interface)", s.Priority, other, src)
				} else {
					prios[k] = i
				}
			}
		}
		if s.Target == "" {
			v.errorf(p+".target", "required")
		} else if _, port, err := SplitTarget(s.Target); err != nil {
			v.errorf(p+".target", "%v", err)
		} else if port != DefaultVXLANPort {
			v.errorf(p+".target", "%q: port %d: a mirror source sends VXLAN to UDP port %d only", s.Target, port, DefaultVXLANPort)
		}
		if s.RateLimit < 0 {
			v.errorf(p+".rate_limit", "%d is negative", s.RateLimit)
		}
	}
}

// Limits of the mirror source's data path: the sizes of its BPF maps, which
// source.MaxRules and its other limits are (source.TestContract checks them
// against the compiled maps). Validation refuses what `xmirror source` could
// not load, so that `xmirror check` and `xmirror source` agree.
const (
	MaxSourceRules      = 8192 // per direction: each filter's rules once per (enabled session, source interface)
	MaxSourceSessions   = 256  // enabled or not: each keeps its counters
	MaxSourceInterfaces = 64   // distinct source interfaces of the enabled sessions
	MaxSourceTargets    = 256  // distinct targets of the enabled sessions
)

// sourceLimits refuses a configuration larger than the source's maps.
func (v *validator) sourceLimits(c *Config) {
	if len(c.Sessions) > MaxSourceSessions {
		v.errorf("sessions", "%d sessions: a mirror source holds at most %d", len(c.Sessions), MaxSourceSessions)
	}
	var rules [2]int
	ifaces, targets := map[string]bool{}, map[string]bool{}
	for _, s := range c.Sessions {
		f := c.FilterByName(s.Filter)
		if !s.Enabled || f == nil {
			continue
		}
		targets[s.Target] = true
		for _, src := range s.Sources {
			ifaces[src] = true
		}
		rules[0] += len(f.Inbound) * len(s.Sources)
		rules[1] += len(f.Outbound) * len(s.Sources)
	}
	for dir, name := range [2]string{"inbound", "outbound"} {
		if rules[dir] > MaxSourceRules {
			v.errorf("sessions", "the enabled sessions make %d %s rules (each filter's rules once per source interface of each session): a mirror source holds at most %d per direction",
				rules[dir], name, MaxSourceRules)
		}
	}
	if len(ifaces) > MaxSourceInterfaces {
		v.errorf("sessions", "the enabled sessions mirror %d interfaces: a mirror source attaches to at most %d", len(ifaces), MaxSourceInterfaces)
	}
	if len(targets) > MaxSourceTargets {
		v.errorf("sessions", "the enabled sessions have %d targets: a mirror source sends to at most %d", len(targets), MaxSourceTargets)
	}
}

// ifname checks a Linux interface name (IFNAMSIZ 16 with the NUL).
func (v *validator) ifname(path, name string) bool {
	switch {
	case name == "":
		v.errorf(path, "interface name is empty")
	case len(name) > 15:
		v.errorf(path, "%q is longer than 15 characters, the Linux limit for interface names", name)
	case name == "." || name == "..":
		v.errorf(path, "%q is not a valid interface name", name)
	case strings.ContainsAny(name, "/: \t\n\r\x00"):
		v.errorf(path, "%q is not a valid interface name (no '/', ':' or spaces)", name)
	default:
		return true
	}
	return false
}

// SplitTarget reads a session target, host[:port]: an IPv4 address or a host
// name, port 1..65535 defaulting to 4789. The mirror's outer header is IPv4, so
// IPv6 literals are refused.
func SplitTarget(target string) (host string, port uint16, err error) {
	host, port = target, DefaultVXLANPort
	if h, ps, e := net.SplitHostPort(target); e == nil {
		n, perr := strconv.ParseUint(ps, 10, 16)
		if perr != nil || n == 0 {
			return "", 0, fmt.Errorf("%q: port %q is not a number 1..65535", target, ps)
		}
		host, port = h, uint16(n)
	} else if strings.Count(target, ":") == 1 || strings.HasPrefix(target, "[") {
		return "", 0, fmt.Errorf("%q is not host[:port]", target)
	}
	if a, aerr := netip.ParseAddr(host); aerr == nil {
		if !a.Is4() {
			return "", 0, fmt.Errorf("%q: only IPv4 targets are supported (the VXLAN outer header is IPv4)", target)
		}
		return host, port, nil
	}
	if !validHostname(host) {
		return "", 0, fmt.Errorf("%q is not an IPv4 address or host name", target)
	}
	return host, port, nil
}

// validHostname follows RFC 1123: dot-separated labels of letters, digits and
// hyphens, 1..63 characters, not starting or ending with a hyphen, and a last
// label that is not all digits (that would be a mistyped address).
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

func (v *validator) loadBalancer(lb *LoadBalancer) {
	const p = "load_balancer"
	v.listener(lb.Listener)
	v.oneOf(p+".algorithm", lb.Algorithm, AlgorithmWRR, AlgorithmMaglev)
	v.oneOf(p+".affinity", lb.Affinity, AffinityInnerSymmetric, AffinityOuter, AffinityNone)
	if lb.MaglevSize > MaxMaglevSize {
		v.errorf(p+".maglev_table_size", "%d is out of range 1..%d", lb.MaglevSize, MaxMaglevSize)
	} else if !IsPrime(lb.MaglevSize) {
		v.errorf(p+".maglev_table_size", "%d is not a prime number (65537 is a good choice)", lb.MaglevSize)
	} else if lb.MaglevSize <= len(lb.Backends) {
		v.errorf(p+".maglev_table_size", "%d must be larger than the number of backends (%d)", lb.MaglevSize, len(lb.Backends))
	}
	if lb.FlowTimeout <= 0 {
		v.errorf(p+".flow_timeout", "%s must be positive", lb.FlowTimeout)
	}
	v.oneOf(p+".xdp_mode", lb.XDPMode, XDPModeAuto, XDPModeNative, XDPModeGeneric)
	if !filepath.IsAbs(lb.PinPath) {
		v.errorf(p+".pin_path", "%q is not an absolute path", lb.PinPath)
	}
	if len(lb.Backends) == 0 {
		v.errorf(p+".backends", "needs at least one backend")
	} else if len(lb.Backends) > MaxBackends {
		v.errorf(p+".backends", "%d backends, at most %d", len(lb.Backends), MaxBackends)
	}
	v.backends(lb.Backends, lb.Listener)
	v.healthCheck(lb.HealthCheck)
	if lb.BGP != nil {
		v.bgp(lb)
	}
}

// listener checks the address, interfaces and access control packets arrive by.
func (v *validator) listener(l Listener) {
	const p = "load_balancer.listener"
	v.oneOf(p+".protocol", l.Protocol, ProtocolVXLAN, ProtocolGENEVE, ProtocolGRE)
	if l.Protocol == ProtocolGRE && l.Port != 0 {
		v.errorf(p+".port", "%d: a gre listener has no port (GRE is IP protocol 47)", l.Port)
	}
	if !l.VIP.IsValid() {
		v.errorf(p+".vip", "required")
	} else if !l.VIP.Is4() {
		v.errorf(p+".vip", "%s is not an IPv4 address", l.VIP)
	}
	if len(l.Interfaces) == 0 {
		v.errorf(p+".interfaces", "needs at least one interface")
	}
	seen := map[string]bool{}
	for i, name := range l.Interfaces {
		ip := fmt.Sprintf("%s.interfaces[%d]", p, i)
		if v.ifname(ip, name) {
			if seen[name] {
				v.errorf(ip, "%q is listed twice", name)
			}
			seen[name] = true
		}
	}
	ac := l.AccessControl
	v.oneOf(p+".access_control.mode", ac.Mode, AccessAll, AccessAllowlist)
	if ac.Mode == AccessAllowlist && len(ac.Allowlist) == 0 {
		v.errorf(p+".access_control.allowlist", "needs at least one CIDR with mode allowlist")
	}
	if ac.Mode == AccessAll && len(ac.Allowlist) > 0 {
		v.errorf(p+".access_control.allowlist", "is only used with mode allowlist (mode is all)")
	}
	if len(ac.Allowlist) > MaxAllowlist {
		// The table holds MaxAllowlist per slot: a longer list passed
		// check, and the lb failed at start ("no space left on device").
		v.errorf(p+".access_control.allowlist", "%d CIDRs, at most %d (what the load balancer's table holds)", len(ac.Allowlist), MaxAllowlist)
	}
	for i, pr := range ac.Allowlist {
		v.family(fmt.Sprintf("%s.access_control.allowlist[%d]", p, i), pr, IPv4, "ethertype is ipv4")
	}
}

// backends checks each backend's address (unicast, not the vip, unique) and weight.
func (v *validator) backends(backends []Backend, l Listener) {
	const p = "load_balancer.backends"
	seen := map[netip.AddrPort]int{}
	names := map[string]int{}
	for i, b := range backends {
		bp := fmt.Sprintf("%s[%d]", p, i)
		if !b.Address.IsValid() {
			v.errorf(bp+".address", "required")
		} else if !b.Address.Is4() {
			v.errorf(bp+".address", "%s is not an IPv4 address", b.Address)
		} else if why := notUnicast(b.Address); why != "" {
			v.errorf(bp+".address", "%s is %s: backends must be unicast addresses of other hosts", b.Address, why)
		} else if b.Address == l.VIP {
			v.errorf(bp+".address", "%s is the listener's vip: the load balancer would send to itself", b.Address)
		} else if j, dup := seen[b.AddrPort()]; dup {
			v.errorf(bp+".address", "%s is also the address of backends[%d]", b.AddrPort(), j)
		} else {
			seen[b.AddrPort()] = i
			// Names tell backends apart in logs, status and metrics
			// (an address given twice is reported above, not as its
			// default name too).
			if len(b.Name) > MaxBackendName {
				v.errorf(bp+".name", "%q is %d bytes, at most %d (what the load balancer's tables, `lb status` and metrics keep)", b.Name, len(b.Name), MaxBackendName)
			} else if j, dup := names[b.Name]; dup {
				switch {
				case b.nameDefaulted:
					v.errorf(bp, "has no name, so it is named by its address:port %q, the name of backends[%d]: give backends[%d] another name, or backends[%d] one", b.Name, j, j, i)
				case backends[j].nameDefaulted:
					v.errorf(bp+".name", "%q is the name backends[%d] has without a name of its own (its address:port): give backends[%d] another name, or backends[%d] one", b.Name, j, i, j)
				default:
					v.errorf(bp+".name", "%q is also the name of backends[%d]: give each backend its own name", b.Name, j)
				}
			} else if b.Name != "" {
				names[b.Name] = i
			}
		}
		if l.Protocol == ProtocolGRE && b.Port != 0 {
			v.errorf(bp+".port", "%d: backends of a gre listener have no port (GRE is IP protocol 47)", b.Port)
		}
		v.intRange(bp+".weight", b.Weight, 0, MaxWeight)
	}
}

// healthCheck checks the probe that decides which backends get traffic.
func (v *validator) healthCheck(h HealthCheck) {
	const hp = "load_balancer.health_check"
	v.oneOf(hp+".type", h.Type, HealthHTTP, HealthTCP)
	if !strings.HasPrefix(h.Path, "/") {
		v.errorf(hp+".path", "%q must start with /", h.Path)
	}
	if h.Interval <= 0 {
		v.errorf(hp+".interval", "%s must be positive", h.Interval)
	}
	if h.Timeout <= 0 {
		v.errorf(hp+".timeout", "%s must be positive", h.Timeout)
	} else if h.Timeout >= h.Interval && h.timeoutDefaulted {
		v.errorf(hp+".interval", "%s is not longer than the default timeout, %s: give a timeout shorter than the interval", h.Interval, h.Timeout)
	} else if h.Timeout >= h.Interval {
		v.errorf(hp+".timeout", "%s must be shorter than interval %s", h.Timeout, h.Interval)
	}
	if h.HealthyThreshold < 1 {
		v.errorf(hp+".healthy_threshold", "%d must be at least 1", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 1 {
		v.errorf(hp+".unhealthy_threshold", "%d must be at least 1", h.UnhealthyThreshold)
	}
	v.oneOf(hp+".all_unhealthy", h.AllUnhealthy, AllUnhealthyFailOpen, AllUnhealthyDrop)
}

func (v *validator) bgp(lb *LoadBalancer) {
	g := lb.BGP
	const p = "load_balancer.bgp"
	if g.ASN == 0 {
		v.errorf(p+".asn", "required: this node's AS number, 1..4294967295")
	}
	if !g.RouterID.Is4() || g.RouterID.IsUnspecified() {
		v.errorf(p+".router_id", "required: an IPv4 address unique to this node")
	}
	// 0 ("no keepalives" in RFC 4271) cannot be offered: GoBGP takes a hold
	// time of 0 for "not set" and sends its default of 90 s in the OPEN.
	if hold := time.Duration(g.HoldTime); hold < 3*time.Second || hold > 65535*time.Second || hold%time.Second != 0 {
		v.errorf(p+".hold_time", "%s must be whole seconds from 3s to 65535s (RFC 4271; 0, no keepalives, is not possible: the embedded GoBGP would offer 90s)", g.HoldTime)
	}
	if g.Drain < 0 {
		v.errorf(p+".drain", "%s is negative", g.Drain)
	}
	for i, c := range g.Communities {
		if !validCommunity(c) {
			v.errorf(fmt.Sprintf("%s.communities[%d]", p, i), "%q is not a community ASN:value (two numbers 0..65535)", c)
		}
	}
	if len(g.Peers) == 0 {
		v.errorf(p+".peers", "needs at least one router")
	}
	seen := map[netip.Addr]int{}
	for i, peer := range g.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", p, i)
		if why := notUnicast(peer.Address); !peer.Address.Is4() || why != "" {
			v.errorf(pp+".address", "%s is not a router's unicast IPv4 address", peer.Address)
		} else if j, dup := seen[peer.Address]; dup {
			// GoBGP holds one session per neighbour address.
			v.errorf(pp+".address", "%s is also the address of peers[%d]: one session per router", peer.Address, j)
		} else {
			seen[peer.Address] = i
		}
		if peer.ASN == 0 {
			v.errorf(pp+".asn", "required: the router's AS number")
		}
		if len(peer.Password) > 80 {
			v.errorf(pp+".password", "is %d characters: TCP MD5 keys hold at most 80", len(peer.Password))
		}
	}
	// Behind ECMP, the router may send a flow's packets (its two directions,
	// or before and after a node leaves) to different nodes; only a table
	// that is the same on every node keeps the flow on one collector.
	if lb.Algorithm == AlgorithmWRR {
		v.errorf("load_balancer.algorithm", "wrr keeps a connection table per node, so nodes behind ECMP would send one flow to different collectors: use maglev with bgp")
	}
}

// validCommunity: "ASN:value", two 16-bit numbers (RFC 1997).
func validCommunity(c string) bool {
	a, b, ok := strings.Cut(c, ":")
	if !ok {
		return false
	}
	for _, x := range []string{a, b} {
		if n, err := strconv.ParseUint(x, 10, 16); err != nil || n > 65535 {
			return false
		}
	}
	return true
}

// notUnicast says why a is no address to forward to ("" when it is one):
// an LB cannot send a host's datagram to every host, to none or to itself.
func notUnicast(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsMulticast():
		return "a multicast address"
	case a.Is4() && a.As4()[0] >= 240:
		return "the broadcast address or reserved (240.0.0.0/4)"
	}
	return ""
}

// IsPrime reports whether n is prime: a Maglev table size must be (table sizes
// are small, so trial division).
func IsPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

func (v *validator) collector(c *Collector) {
	const p = "collector"
	v.listenAddr(p+".listen", c.Listen)
	v.oneOf(p+".receive", c.Receive, ReceiveAuto, ReceiveXDP, ReceiveSocket)
	v.oneOf(p+".format", c.Format, FormatPCAP, FormatPCAPNG)
	v.oneOf(p+".unknown_vni", c.UnknownVNI, UnknownVNICapture, UnknownVNIDrop)
	if c.HealthListen != "" && c.HealthListen != MetricsOff {
		v.listenAddr(p+".health_listen", c.HealthListen)
	}
	if c.Receive == ReceiveXDP && wildcard(c.Listen) {
		v.errorf(p+".receive", "xdp needs a listen address an interface holds; listen %q is the wildcard", c.Listen)
	}
	if c.Readers < 0 || c.Readers > MaxReaders {
		v.errorf(p+".readers", "%d is out of range 0..%d", c.Readers, MaxReaders)
	}
	// The file's decoder checks these ranges too; flags come here only.
	v.intRange(p+".max_sessions", c.MaxSessions, 1, MaxCollectorSessions)
	v.intRange(p+".max_source_series", c.MaxSourceSeries, 1, MaxSourceSeries)
	r := c.Rotate
	if r.Size < 0 {
		v.errorf(p+".rotate.size", "%d is negative", r.Size)
	}
	if r.Interval < 0 {
		v.errorf(p+".rotate.interval", "%s is negative", r.Interval)
	}
	if r.Keep < 0 {
		v.errorf(p+".rotate.keep", "%d is negative", r.Keep)
	}
	if r.KeepBytes < 0 {
		v.errorf(p+".rotate.keep_size", "%d is negative", r.KeepBytes)
	}
	if strings.ContainsRune(c.OutputDir, 0) {
		v.errorf(p+".output_dir", "contains a NUL byte")
	}
	if r.KeepAge < 0 {
		v.errorf(p+".rotate.keep_age", "%s is negative", r.KeepAge)
	}
	if r.MaxTotalSize < 0 {
		v.errorf(p+".rotate.max_total_size", "%d is negative", r.MaxTotalSize)
	}
	if r.MinFree < 0 {
		v.errorf(p+".rotate.min_free", "%d is negative", r.MinFree)
	}
	if c.FileMode != "" {
		if m, err := ParseFileMode(c.FileMode); err != nil {
			v.errorf(p+".file_mode", "%v", err)
		} else if m&0o600 != 0o600 {
			v.errorf(p+".file_mode", "%s: the owner must be able to read and write (0600 at least)", c.FileMode)
		}
	}
	if c.Compress != "" {
		v.oneOf(p+".compress", c.Compress, CompressNone, CompressGzip)
	}
	if err := CheckFileName(c.FileName); err != nil {
		v.errorf(p+".file_name", "%v", err)
	}
	if tap := strings.ReplaceAll(c.Tap, "{vni}", "16777215"); len(tap) > 15 || strings.ContainsAny(tap, "/ {}\x00") {
		v.errorf(p+".tap", "%q is not an interface name (at most 15 bytes with {vni} filled in, no '/' or space)", c.Tap)
	}
	if c.SessionIdle < 0 {
		v.errorf(p+".session_idle", "%s is negative", c.SessionIdle)
	}
}

// inputs checks collector.inputs: known protocols, a port only where the
// protocol has one of its own, each input once, and no GENEVE on the VXLAN
// port.
func (v *validator) inputs(c *Collector) {
	_, lport, _ := net.SplitHostPort(c.Listen)
	seen := map[string]int{}
	for i, in := range c.Inputs {
		p := fmt.Sprintf("collector.inputs[%d]", i)
		v.oneOf(p+".protocol", in.Protocol, ProtocolVXLAN, ProtocolGENEVE, ProtocolERSPAN, ProtocolGRE)
		key := in.Protocol
		switch in.Protocol {
		case ProtocolVXLAN:
			if in.Port != 0 && strconv.Itoa(int(in.Port)) != lport {
				v.errorf(p+".port", "%d: vxlan is received on collector.listen's port (%s); set the port there", in.Port, lport)
			}
		case ProtocolGENEVE:
			key = in.String()
			if strconv.Itoa(int(in.Port)) == lport && slices.ContainsFunc(c.Inputs, func(o Input) bool { return o.Protocol == ProtocolVXLAN }) {
				v.errorf(p+".port", "%d is collector.listen's port, where vxlan is received", in.Port)
			}
		case ProtocolERSPAN, ProtocolGRE:
			key = ProtocolGRE // the same input: IP protocol 47
			if in.Port != 0 {
				v.errorf(p+".port", "%s is IP protocol 47: it has no port", in.Protocol)
			}
		}
		if j, dup := seen[key]; dup {
			v.errorf(p, "%q is also collector.inputs[%d] (erspan and gre are one input)", in.String(), j)
		}
		seen[key] = i
	}
}

// sessionIDMax is the largest id a protocol's sessions have.
var sessionIDMax = map[string]uint32{
	ProtocolVXLAN: MaxVNI, ProtocolGENEVE: MaxVNI, ProtocolERSPAN: MaxERSPANSessionID, ProtocolGRE: 1<<32 - 1,
}

// collectorSessions checks collector.sessions: names unique among them and
// the sessions of sessions[], ids in their protocol's range, each
// (protocol, id) once (a VXLAN id not a VNI of sessions[]).
func (v *validator) collectorSessions(sessions []CollectorSession, vxlan []Session) {
	type key struct {
		proto string
		id    uint32
	}
	names := map[string]string{}
	keys := map[key]string{}
	for i, s := range vxlan {
		names[s.Name] = fmt.Sprintf("sessions[%d]", i)
		keys[key{ProtocolVXLAN, s.VNI}] = fmt.Sprintf("sessions[%d]", i)
	}
	for i, s := range sessions {
		p := fmt.Sprintf("collector.sessions[%d]", i)
		if s.Name == "" {
			v.errorf(p+".name", "required")
		} else if other, dup := names[s.Name]; dup {
			v.errorf(p+".name", "%q is also the name of %s", s.Name, other)
		} else {
			names[s.Name] = p
		}
		limit, ok := sessionIDMax[s.Protocol]
		if !ok {
			v.oneOf(p+".protocol", s.Protocol, ProtocolVXLAN, ProtocolGENEVE, ProtocolERSPAN, ProtocolGRE)
		} else if s.ID > limit {
			v.errorf(p+".id", "%d is out of range 0..%d for %s", s.ID, limit, s.Protocol)
		} else if other, dup := keys[key{s.Protocol, s.ID}]; dup {
			v.errorf(p+".id", "%s %d is also the session of %s", s.Protocol, s.ID, other)
		} else {
			keys[key{s.Protocol, s.ID}] = p
		}
		if s.PacketLength != 0 && (s.PacketLength < MinPacketLength || s.PacketLength > MaxPacketLength) {
			v.errorf(p+".packet_length", "%d is out of range %d..%d (or 0 for the whole packet)", s.PacketLength, MinPacketLength, MaxPacketLength)
		}
	}
}

// wildcard reports whether a listen address (host:port) is every address:
// no host, 0.0.0.0 or ::.
func wildcard(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false // listenAddr reports it
	}
	a, err := netip.ParseAddr(host)
	return host == "" || err == nil && a.IsUnspecified()
}

// listenAddr checks host:port with a numeric port; an empty host means every address.
func (v *validator) listenAddr(path, addr string) {
	if err := CheckListenAddr(addr); err != nil {
		v.errorf(path, "%v", err)
	}
}

// CheckListenAddr checks an address to listen on, host:port, as the
// configuration's listen keys take it (flags that override them use it too).
func CheckListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: port %q is not a number 0..65535", addr, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			return fmt.Errorf("%q: %q is not an address or host name", addr, host)
		}
	}
	return nil
}

// clone deep-copies c so validation can apply defaults without touching it.
func (c *Config) clone() *Config {
	out := *c
	out.Filters = slices.Clone(c.Filters)
	for i := range out.Filters {
		out.Filters[i].Inbound = slices.Clone(out.Filters[i].Inbound)
		out.Filters[i].Outbound = slices.Clone(out.Filters[i].Outbound)
	}
	out.Sessions = slices.Clone(c.Sessions)
	for i := range out.Sessions {
		out.Sessions[i].Sources = slices.Clone(out.Sessions[i].Sources)
	}
	if c.Source != nil {
		s := *c.Source
		out.Source = &s
	}
	if c.LoadBalancer != nil {
		lb := *c.LoadBalancer
		lb.Listener.Interfaces = slices.Clone(lb.Listener.Interfaces)
		lb.Listener.AccessControl.Allowlist = slices.Clone(lb.Listener.AccessControl.Allowlist)
		lb.Backends = slices.Clone(lb.Backends)
		if lb.BGP != nil {
			g := *lb.BGP
			g.Peers = slices.Clone(g.Peers)
			g.Communities = slices.Clone(g.Communities)
			lb.BGP = &g
		}
		out.LoadBalancer = &lb
	}
	if c.Collector != nil {
		col := *c.Collector
		col.Inputs = slices.Clone(col.Inputs)
		col.Sessions = slices.Clone(col.Sessions)
		out.Collector = &col
	}
	return &out
}
