// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/xmirror/xmirror/config"
)

// Limits of the data path: the sizes of its maps (bpf/consts.h). They are
// config's, which validation enforces; TestContract checks them against the
// compiled maps.
const (
	MaxRules    = config.MaxSourceRules // per direction, over all sessions and interfaces
	MaxSessions = config.MaxSourceSessions
	MaxIfaces   = config.MaxSourceInterfaces
	MaxTargets  = config.MaxSourceTargets
)

// Values shared with the programs, generated from bpf/consts.h.
const (
	dirIn  = int(sourceXmDirXM_DIR_IN)
	dirOut = int(sourceXmDirXM_DIR_OUT)

	actionAccept = uint8(sourceXmActionXM_ACTION_ACCEPT)
	actionReject = uint8(sourceXmActionXM_ACTION_REJECT)

	ruleAnyProto = uint8(sourceXmRuleFlagXM_RULE_ANY_PROTO)
	rulePorts    = uint8(sourceXmRuleFlagXM_RULE_PORTS)

	ifReplica = uint32(sourceXmIfFlagXM_IF_REPLICA)

	// The clone's mark carries the source ifindex in 16 bits.
	markIfindexMax = int(sourceXmMarkXM_MARK_IF_MASK)
	markMagic      = uint32(sourceXmMarkXM_MARK_MAGIC)
	markMagicMask  = uint32(sourceXmMarkXM_MARK_MAGIC_MASK)
	markDirect     = uint32(sourceXmMarkXM_MARK_DIRECT)
	// markAnyMask covers both magics: a user's mark under it is refused.
	markAnyMask = uint32(sourceXmMarkXM_MARK_ANY_MASK)

	hashSymmetric   = uint8(sourceXmHashModeXM_HASH_SYMMETRIC)
	hashDirectional = uint8(sourceXmHashModeXM_HASH_DIRECTIONAL)
)

// Of the kernel's vxlan driver.
const (
	// vxlanOverhead is what the vxlan driver adds in front of a frame and
	// checks against the route MTU (VXLAN_HEADROOM: outer Ethernet, IPv4, UDP,
	// VXLAN), so a clone of at most MTU - 50 bytes is never refused or
	// fragmented.
	vxlanOverhead = 50
	defaultTTL    = 64
)

var errTooManyRules = errors.New("too many rules")

// Resolved is what the control plane learned from the system for one
// configuration: interface indexes and addresses, and per session the target
// address and the path MTU towards it.
type Resolved struct {
	Ifindex  map[string]int        // source interface name -> ifindex
	Local    map[string]netip.Addr // source interface name -> outer source address
	Offloads map[string]offloads   // source interface name -> its transmit offloads
	RxAggr   map[string]bool       // source interface name -> GRO or LRO on
	Target   map[string]netip.Addr // session name -> target IPv4
	PathMTU  map[string]int        // session name -> MTU of the route to the target
}

// Program is a configuration compiled for the maps: rules per direction in
// evaluation order and sessions by id.
type Program struct {
	Rules    [2][]sourceRule
	Sessions map[uint16]sourceSession
	Names    map[uint16]string // session id -> name
	Filters  map[uint16]string // session id -> filter name
	Ifaces   map[uint32]sourceIface
	IfNames  map[uint32]string
	Offloads map[uint32]offloads
	// RxAggr: the interface may receive aggregates (GRO, LRO), whose
	// copies take the ring, cut as tcpdump sees them.
	RxAggr  map[uint32]bool
	Targets []netip.Addr
	PathMTU map[uint16]int // session id -> MTU of the route to its target, as compiled
}

// compile turns the enabled sessions of cfg into a Program. ids gives every
// session name its stable counter slot (assigned by the caller).
func compile(cfg *config.Config, res *Resolved, ids map[string]uint16) (*Program, error) {
	p := &Program{
		Sessions: map[uint16]sourceSession{},
		Names:    map[uint16]string{},
		Filters:  map[uint16]string{},
		Ifaces:   map[uint32]sourceIface{},
		IfNames:  map[uint32]string{},
		Offloads: map[uint32]offloads{},
		RxAggr:   map[uint32]bool{},
		PathMTU:  map[uint16]int{},
	}
	filters := map[string]*config.Filter{}
	for i := range cfg.Filters {
		filters[cfg.Filters[i].Name] = &cfg.Filters[i]
	}
	hashMode := hashSymmetric
	if cfg.Source != nil && cfg.Source.Hash == config.HashDirectional {
		hashMode = hashDirectional
	}
	sessions := enabledSessions(cfg)
	seenTarget := map[netip.Addr]bool{}
	for _, s := range sessions {
		f, ok := filters[s.Filter]
		if !ok {
			return nil, fmt.Errorf("session %s: unknown filter %q", s.Name, s.Filter)
		}
		id, ok := ids[s.Name]
		if !ok {
			return nil, fmt.Errorf("session %s: no id", s.Name)
		}
		target, ok := res.Target[s.Name]
		if !ok || !target.Is4() {
			return nil, fmt.Errorf("session %s: target %q has no IPv4 address", s.Name, s.Target)
		}
		snap := effectiveLength(s.PacketLength, res.PathMTU[s.Name])
		burst := uint32(s.RateLimit)
		p.Sessions[id] = sourceSession{
			Vni:      s.VNI,
			Remote:   addrWord(target),
			Snaplen:  uint32(snap),
			RatePps:  uint32(s.RateLimit),
			Burst:    burst,
			Ttl:      defaultTTL,
			HashMode: hashMode,
			Direct:   boolByte(wholeFrames(s.PacketLength, res.PathMTU[s.Name])),
		}
		p.Names[id] = s.Name
		p.Filters[id] = s.Filter
		p.PathMTU[id] = res.PathMTU[s.Name]
		if !seenTarget[target] {
			seenTarget[target] = true
			p.Targets = append(p.Targets, target)
		}
		for _, ifname := range s.Sources {
			if err := p.addSource(res, ifname, id, f); err != nil {
				return nil, fmt.Errorf("session %s: %w", s.Name, err)
			}
		}
	}
	if len(p.Ifaces) > MaxIfaces {
		return nil, fmt.Errorf("%d source interfaces, at most %d", len(p.Ifaces), MaxIfaces)
	}
	if len(p.Targets) > MaxTargets {
		return nil, fmt.Errorf("%d targets, at most %d", len(p.Targets), MaxTargets)
	}
	return p, nil
}

// addSource adds source interface ifname of session id, with filter f's
// rules for it.
func (p *Program) addSource(res *Resolved, ifname string, id uint16, f *config.Filter) error {
	ifindex, ok := res.Ifindex[ifname]
	if !ok {
		return fmt.Errorf("unknown interface %q", ifname)
	}
	local := res.Local[ifname]
	if !local.Is4() {
		return fmt.Errorf("interface %s has no IPv4 address for the outer header", ifname)
	}
	ifc := sourceIface{Local: addrWord(local)}
	if off, ok := res.Offloads[ifname]; ok && off.softTx() {
		ifc.Flags |= ifReplica
	}
	p.Ifaces[uint32(ifindex)] = ifc
	p.IfNames[uint32(ifindex)] = ifname
	p.Offloads[uint32(ifindex)] = res.Offloads[ifname]
	p.RxAggr[uint32(ifindex)] = res.RxAggr[ifname]
	for dir, rules := range [2][]config.Rule{f.Inbound, f.Outbound} {
		if err := p.appendBlock(dir, uint32(ifindex), id, rules); err != nil {
			return err
		}
	}
	return nil
}

// enabledSessions returns the enabled sessions by priority; equal priorities
// keep the file's order.
func enabledSessions(cfg *config.Config) []config.Session {
	var out []config.Session
	for _, s := range cfg.Sessions {
		if s.Enabled {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

// directRule tells whether copies by rule r (direction dir) may leave
// directly (bpf/direct.h): its session keeps whole frames, and its copies
// are single frames, never aggregates, so that none takes the ring and
// falls behind the direct ones. Outbound, that is an interface with a
// replica (which segments every aggregate); inbound, one without GRO or LRO.
// (The programs check every packet as well: an aggregate still takes the
// ring, as one from a virtual peer's segmentation offload would, and from
// then on so does every inbound copy of that interface: rx_aggregates in
// bpf/direct.h.)
func (p *Program) directRule(r sourceRule, dir int) bool {
	if p.Sessions[r.Session].Direct == 0 {
		return false
	}
	if dir == dirOut {
		return p.Ifaces[r.Ifindex].Replica != 0
	}
	return !p.RxAggr[r.Ifindex]
}

// wholeFrames tells a session that keeps whole frames (all the path MTU
// allows): the ring datapath may send its copies directly (bpf/direct.h),
// which costs one copy of the frame's head where the ring costs two copies
// of what is kept; a shorter cut is cheaper through the ring, which copies
// only the bytes kept.
func wholeFrames(packetLength, mtu int) bool {
	return effectiveLength(packetLength, mtu) == effectiveLength(0, mtu)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// effectiveLength is the number of frame bytes kept: the session's packet
// length (0 = all), cut further so the encapsulated packet fits the path MTU.
func effectiveLength(packetLength, mtu int) int {
	limit := mtu - vxlanOverhead
	if mtu <= 0 {
		limit = 1500 - vxlanOverhead
	}
	if packetLength <= 0 || packetLength > limit {
		return limit
	}
	return packetLength
}

// appendBlock appends the rules of one (session, interface, direction) in
// priority order; every rule's next points past the block so the data path can
// skip the rest of the session after a reject.
func (p *Program) appendBlock(dir int, ifindex uint32, session uint16, rules []config.Rule) error {
	if len(rules) == 0 {
		return nil
	}
	if len(p.Rules[dir])+len(rules) > MaxRules {
		return fmt.Errorf("%w: more than %d %s rules in all", errTooManyRules, MaxRules, dirName(dir))
	}
	sorted := append([]config.Rule(nil), rules...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Priority < sorted[j].Priority })
	next := uint32(len(p.Rules[dir]) + len(sorted))
	for _, r := range sorted {
		cr, err := compileRule(r)
		if err != nil {
			return fmt.Errorf("%s rule %d: %w", dirName(dir), r.Priority, err)
		}
		cr.Ifindex = ifindex
		cr.Session = session
		cr.Next = next
		p.Rules[dir] = append(p.Rules[dir], cr)
	}
	return nil
}

func compileRule(r config.Rule) (sourceRule, error) {
	var cr sourceRule
	switch r.Action {
	case config.Accept:
		cr.Action = actionAccept
	case config.Reject:
		cr.Action = actionReject
	default:
		return cr, fmt.Errorf("action %q is not accept or reject", r.Action)
	}
	switch r.EtherType {
	case config.IPv4, "":
		cr.Ethertype = 0x0800
	case config.IPv6:
		cr.Ethertype = 0x86dd
	default:
		return cr, fmt.Errorf("ethertype %q is not ipv4 or ipv6", r.EtherType)
	}
	switch {
	case r.Protocol == config.ProtocolAll:
		cr.Flags |= ruleAnyProto
	case r.Protocol >= 0 && r.Protocol <= 255:
		cr.Proto = uint8(r.Protocol)
	default:
		return cr, fmt.Errorf("protocol %d out of range", r.Protocol)
	}
	var err error
	if cr.Src, cr.SrcMask, err = prefixWords(r.Source, cr.Ethertype == 0x86dd); err != nil {
		return cr, fmt.Errorf("source: %w", err)
	}
	if cr.Dst, cr.DstMask, err = prefixWords(r.Destination, cr.Ethertype == 0x86dd); err != nil {
		return cr, fmt.Errorf("destination: %w", err)
	}
	sp, dp := portsOrAll(r.SourcePorts), portsOrAll(r.DestinationPorts)
	if sp != config.AllPorts || dp != config.AllPorts {
		cr.Flags |= rulePorts
	}
	cr.SportLo, cr.SportHi = sp.From, sp.To
	cr.DportLo, cr.DportHi = dp.From, dp.To
	return cr, nil
}

// portsOrAll treats the zero range (unset in Go) as all ports.
func portsOrAll(r config.PortRange) config.PortRange {
	if r == (config.PortRange{}) {
		return config.AllPorts
	}
	return r
}

// prefixWords returns address and mask as the four 32-bit words the BPF
// program compares, in network byte order in memory. An invalid (unset) prefix
// matches any address.
func prefixWords(p netip.Prefix, v6 bool) (addr, mask [4]uint32, err error) {
	if !p.IsValid() {
		return addr, mask, nil
	}
	if p.Addr().Is4() == v6 {
		return addr, mask, fmt.Errorf("%s is not an %s prefix", p, map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	}
	p = p.Masked()
	bits := p.Bits()
	a := p.Addr().AsSlice()
	m := make([]byte, len(a))
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = ^byte(0xff >> bits)
			bits = 0
		}
	}
	for i := 0; i < len(a)/4; i++ {
		addr[i] = binary.NativeEndian.Uint32(a[i*4:])
		mask[i] = binary.NativeEndian.Uint32(m[i*4:])
	}
	return addr, mask, nil
}

// addrWord is an IPv4 address as a word holding network byte order in memory.
func addrWord(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func dirName(dir int) string {
	if dir == dirIn {
		return "inbound"
	}
	return "outbound"
}
