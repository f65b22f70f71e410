// SPDX-License-Identifier: Apache-2.0

// Package config holds xmirror's deployment description: the YAML contract shared by
// `xmirror source`, `xmirror lb` and `xmirror collect`, parsed and validated in one
// place (Load), with defaults filled in one explicit step (ApplyDefaults).
package config

import (
	"net/netip"
	"time"
)

// Config is one deployment. Each subcommand reads the sections it needs.
type Config struct {
	Filters      []Filter      `yaml:"filters,omitempty"`
	Sessions     []Session     `yaml:"sessions,omitempty"`
	Source       *Source       `yaml:"source,omitempty"`
	LoadBalancer *LoadBalancer `yaml:"load_balancer,omitempty"`
	Collector    *Collector    `yaml:"collector,omitempty"`
	Metrics      Metrics       `yaml:"metrics"`
}

// Filter is a mirror filter: rules for traffic the source interface receives
// (Inbound) and sends (Outbound). First matching rule by priority decides; a packet
// that matches no rule is not mirrored.
type Filter struct {
	Name     string `yaml:"name"`
	Inbound  []Rule `yaml:"inbound,omitempty"`
	Outbound []Rule `yaml:"outbound,omitempty"`
	Line     int    `yaml:"-"`
}

// Action is what a matching rule does.
type Action string

const (
	Accept Action = "accept"
	Reject Action = "reject"
)

// EtherType selects the network protocol a rule applies to.
type EtherType string

const (
	IPv4 EtherType = "ipv4"
	IPv6 EtherType = "ipv6"
)

// Protocol is an IP protocol number, or ProtocolAll.
// In YAML: tcp, udp, icmp, icmpv6, all, or a number 0..255.
type Protocol int16

const (
	ProtocolAll    Protocol = -1
	ProtocolICMP   Protocol = 1
	ProtocolTCP    Protocol = 6
	ProtocolUDP    Protocol = 17
	ProtocolICMPv6 Protocol = 58
)

// PortRange is an inclusive range of TCP/UDP ports. In YAML: all, N or N-M.
type PortRange struct {
	From, To uint16
}

// AllPorts matches every port.
var AllPorts = PortRange{From: 0, To: 65535}

// Rule is one mirror-filter rule.
type Rule struct {
	Priority         int          `yaml:"priority"` // 1..65535, unique within its direction
	Action           Action       `yaml:"action"`
	Protocol         Protocol     `yaml:"protocol"`
	EtherType        EtherType    `yaml:"ethertype"`
	Source           netip.Prefix `yaml:"source"`       // default: any address of EtherType
	SourcePorts      PortRange    `yaml:"source_ports"` // tcp/udp only; default all
	Destination      netip.Prefix `yaml:"destination"`
	DestinationPorts PortRange    `yaml:"destination_ports"`
	Line             int          `yaml:"-"`

	// Presence markers set by Parse and consumed by ApplyDefaults: YAML can say
	// "absent" where Go only has a zero value that is also a valid setting.
	protocolMissing              bool // absent protocol means all
	sourcePortsSet, destPortsSet bool // explicit port 0 is not "all"
	// Set by validation on its copy when the rule names no ethertype, so
	// that its messages say what made the rule IPv4 or IPv6.
	etherTypeInferred bool
}

// Session is a mirror session: traffic of Sources accepted by Filter is cut to
// PacketLength bytes and sent as VXLAN with VNI to Target.
type Session struct {
	Name         string   `yaml:"name"`
	Priority     int      `yaml:"priority"` // 1..32766, lower first
	VNI          uint32   `yaml:"vni"`      // 0..16777215
	PacketLength int      `yaml:"packet_length"`
	Enabled      bool     `yaml:"enabled"`
	Filter       string   `yaml:"filter"`
	Sources      []string `yaml:"sources"`              // interface names
	Target       string   `yaml:"target"`               // host[:port], port default 4789
	RateLimit    int      `yaml:"rate_limit,omitempty"` // packets per second, 0 = none
	Line         int      `yaml:"-"`

	enabledMissing bool // YAML without "enabled" means enabled; Go's false stays false
}

// Source holds options of `xmirror source` that are not per session.
type Source struct {
	// Hash picks the outer UDP source port: symmetric (both directions of a flow
	// share it) or directional (hash of the directional 5-tuple, like AWS).
	Hash string `yaml:"hash"`
	// Device is the name of the VXLAN device the source creates for encapsulation.
	Device string `yaml:"device"`
	// Mark is the fwmark on xmirror's own tunnel packets, never mirrored.
	Mark uint32 `yaml:"mark"`
}

// LoadBalancer is the `xmirror lb` section.
type LoadBalancer struct {
	Listener    Listener    `yaml:"listener"`
	Algorithm   string      `yaml:"algorithm"` // wrr | maglev
	Affinity    string      `yaml:"affinity"`  // inner-symmetric | outer | none
	MaglevSize  int         `yaml:"maglev_table_size,omitempty"`
	FlowTimeout Duration    `yaml:"flow_timeout,omitempty"`
	XDPMode     string      `yaml:"xdp_mode,omitempty"` // auto | native | generic
	PinPath     string      `yaml:"pin_path,omitempty"`
	Backends    []Backend   `yaml:"backends"`
	HealthCheck HealthCheck `yaml:"health_check"`
	// BGP, when set, announces the VIP to routers, so that several LB nodes
	// share it by ECMP.
	BGP *BGP `yaml:"bgp,omitempty"`
}

// BGP is how an LB node announces the VIP/32 with itself as next hop.
type BGP struct {
	ASN      uint32     `yaml:"asn"`       // this node's AS
	RouterID netip.Addr `yaml:"router_id"` // unique per node
	HoldTime Duration   `yaml:"hold_time"` // whole seconds 3s..65535s
	Peers    []BGPPeer  `yaml:"peers"`
	// Communities are attached to the announcement, each "ASN:value".
	Communities []string `yaml:"communities"`
	MED         uint32   `yaml:"med"`
	// Drain is how long a stopping node waits after withdrawing the VIP
	// before it stops, so routers move the traffic away first.
	Drain Duration `yaml:"drain"`

	// An explicit 0 is kept: a drain of 0 means no wait; a hold time of 0
	// is refused by validation (GoBGP would offer 90 s for it).
	holdTimeMissing, drainMissing bool
}

// BGPPeer is a router the node holds a session with.
type BGPPeer struct {
	Address  netip.Addr `yaml:"address"`
	ASN      uint32     `yaml:"asn"`
	Port     uint16     `yaml:"port"`
	Password string     `yaml:"password"` // TCP MD5 (RFC 2385); "" = none
	Line     int        `yaml:"-"`
}

// Listener is the VIP and UDP port the load balancer serves on Interfaces,
// and the tunnel protocol it expects there.
type Listener struct {
	Name          string        `yaml:"name"`
	Protocol      string        `yaml:"protocol"` // vxlan | geneve
	VIP           netip.Addr    `yaml:"vip"`
	Port          uint16        `yaml:"port"` // default: the protocol's port
	Interfaces    []string      `yaml:"interfaces"`
	AccessControl AccessControl `yaml:"access_control"`
	Line          int           `yaml:"-"` // of the listener key, for messages about its interfaces
}

// AccessControl admits all sources, or only those in Allowlist.
type AccessControl struct {
	Mode      string         `yaml:"mode"` // all | allowlist
	Allowlist []netip.Prefix `yaml:"allowlist"`
}

// Backend is one collector behind the load balancer.
type Backend struct {
	Name    string     `yaml:"name"`
	Address netip.Addr `yaml:"address"`
	Port    uint16     `yaml:"port"`
	Weight  int        `yaml:"weight"` // 0..100, 0 drains; YAML without weight means 1
	Line    int        `yaml:"-"`

	weightMissing bool // explicit 0 drains, absent means 1
	// Set by validation on its copy when the file gives no name, so that
	// its messages say the name is the address:port default.
	nameDefaulted bool
}

// HealthCheck probes every backend; an unhealthy one leaves the tables.
type HealthCheck struct {
	Enabled            bool     `yaml:"enabled"`
	Type               string   `yaml:"type"` // http | tcp
	Port               uint16   `yaml:"port"`
	Path               string   `yaml:"path"`
	Interval           Duration `yaml:"interval"`
	Timeout            Duration `yaml:"timeout"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
	// AllUnhealthy is what happens when every backend with weight fails its
	// checks: fail-open (send to all of them, as cloud load balancers do) or drop.
	AllUnhealthy string `yaml:"all_unhealthy"`

	// Set by validation on its copy when the timeout is the default, so
	// that a message about it does not read as if the file gave one.
	timeoutDefaulted bool
}

// Collector is the `xmirror collect` section.
type Collector struct {
	Listen     string `yaml:"listen"`
	Receive    string `yaml:"receive"` // auto | xdp | socket
	OutputDir  string `yaml:"output_dir"`
	Format     string `yaml:"format"` // pcap | pcapng
	Rotate     Rotate `yaml:"rotate"`
	UnknownVNI string `yaml:"unknown_vni"`           // capture | drop
	Readers    int    `yaml:"readers,omitempty"`     // 0 = one per CPU
	PostRotate string `yaml:"post_rotate,omitempty"` // command (argv, no shell) run with the closed file's path
	// HealthListen serves only /healthz, for the load balancer's health checks,
	// so /metrics can stay on loopback.
	HealthListen string `yaml:"health_listen"`

	FileMode        string   `yaml:"file_mode"`         // octal mode of capture files; directories get x where r
	Group           string   `yaml:"group,omitempty"`   // group owning files and directories ("" = the process's)
	FileName        string   `yaml:"file_name"`         // template: {session} {host} {vni} {id} {protocol} {time}
	Compress        string   `yaml:"compress"`          // none | gzip
	SessionIdle     Duration `yaml:"session_idle"`      // close (and forget, if unnamed) an idle session
	MaxSessions     int      `yaml:"max_sessions"`      // unnamed VNIs captured at once
	MaxSourceSeries int      `yaml:"max_source_series"` // per-source metric series across sessions
	Tap             string   `yaml:"tap,omitempty"`     // TAP device receiving every inner frame ("" = none)
	// Inputs are the tunnels received (default: vxlan on the listen port).
	Inputs []Input `yaml:"inputs,omitempty"`
	// Sessions name the sessions no xmirror source sends (sessions[] name
	// the VXLAN ones by VNI): GENEVE VNIs, ERSPAN session ids, GRE keys.
	Sessions []CollectorSession `yaml:"sessions,omitempty"`
}

// Input is one tunnel a collector receives. In YAML a mapping
// {protocol, port} or a string: "geneve", "geneve:6082", "gre".
type Input struct {
	Protocol string `yaml:"protocol"` // vxlan | geneve | erspan | gre (erspan = gre)
	// Port: geneve only (default 6081); vxlan takes collector.listen's,
	// gre (IP protocol 47) has none.
	Port uint16 `yaml:"port,omitempty"`
	Line int    `yaml:"-"`
}

// CollectorSession names a session by its tunnel and id: the VNI of vxlan
// and geneve, the session id of erspan, the key of gre.
type CollectorSession struct {
	Name         string `yaml:"name"`
	Protocol     string `yaml:"protocol"`
	ID           uint32 `yaml:"id"`
	PacketLength int    `yaml:"packet_length,omitempty"` // snaplen of its files (0: whole frames)
	Line         int    `yaml:"-"`
}

// Rotate says when a capture file is closed and how many are kept.
type Rotate struct {
	Size      ByteSize `yaml:"size"`
	Interval  Duration `yaml:"interval"`
	Keep      int      `yaml:"keep"`
	KeepBytes ByteSize `yaml:"keep_size,omitempty"`
	// Across all sessions (0 = no limit): age of closed files, their total
	// size, and the free space kept on the output filesystem.
	KeepAge      Duration `yaml:"keep_age,omitempty"`
	MaxTotalSize ByteSize `yaml:"max_total_size,omitempty"`
	MinFree      ByteSize `yaml:"min_free,omitempty"`

	// 0 is a meaningful explicit value for each of these (no rotation, keep
	// all), so an absent key is tracked apart from an explicit 0.
	sizeMissing, intervalMissing, keepMissing bool
}

// Metrics is where /metrics (and /healthz) are served.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Duration is a time.Duration written as in Go ("2s", "1h").
type Duration time.Duration

// ByteSize is a size in bytes written with an optional unit ("100MiB", "1GB", "4096").
type ByteSize int64
