// SPDX-License-Identifier: Apache-2.0

package config

import (
	"net/netip"
	"time"
)

// Limits and defaults. Documented in docs/configuration.md.
const (
	MaxVNI                  = 1<<24 - 1
	MaxRulePriority         = 65535
	MaxSessionPriority      = 32766
	MinPacketLength         = 14 // an Ethernet header; 0 means the whole frame
	MaxPacketLength         = 65535
	MaxWeight               = 100
	MaxMaglevSize           = 131071 // what the load balancer's maps hold (xdp.MaglevMax)
	MaxBackends             = 64     // what the load balancer's tables hold (xdp.MaxBackends)
	MaxBackendName          = 31     // bytes of a backend's name the load balancer's tables hold (lb_backend.name)
	MaxAllowlist            = 1024   // access_control.allowlist CIDRs the load balancer's table holds per slot (LB_ACL_MAX)
	MaxReaders              = 1024
	DefaultVXLANPort        = 4789
	DefaultGENEVEPort       = 6081
	DefaultListenerProtocol = ProtocolVXLAN
	DefaultHash             = HashSymmetric
	DefaultDevice           = "xmirror0"
	DefaultMark             = 0x786d6972 // "xmir"
	// CloneMarkMagic under CloneMarkMask marks the source's clones in
	// flight (XM_MARK_MAGIC, XM_MARK_ANY_MASK in source/bpf/consts.h):
	// source.mark must not look like one.
	CloneMarkMagic      = 0xb0000000
	CloneMarkMask       = 0xf0000000
	DefaultAlgorithm    = AlgorithmWRR
	DefaultAffinity     = AffinityInnerSymmetric
	DefaultMaglevSize   = 65537
	DefaultFlowTimeout  = Duration(30 * time.Second)
	DefaultXDPMode      = XDPModeAuto
	DefaultPinPath      = "/sys/fs/bpf/xmirror"
	DefaultAccessMode   = AccessAll
	DefaultWeight       = 1
	DefaultHealthType   = HealthHTTP
	DefaultHealthPort   = 9091 // the collector's health_listen port
	DefaultHealthPath   = "/healthz"
	DefaultHealthEvery  = Duration(2 * time.Second)
	DefaultHealthWait   = Duration(time.Second)
	DefaultHealthyAfter = 2
	DefaultSickAfter    = 3
	DefaultAllUnhealthy = AllUnhealthyFailOpen
	DefaultBGPHoldTime  = Duration(9 * time.Second)
	DefaultBGPPort      = 179
	DefaultBGPDrain     = Duration(2 * time.Second)
	DefaultCollectorAt  = "0.0.0.0:4789"
	DefaultReceive      = ReceiveAuto
	DefaultOutputDir    = "/var/lib/xmirror/pcap"
	DefaultFormat       = FormatPCAPNG
	DefaultRotateSize   = ByteSize(100 << 20)
	DefaultRotateEvery  = Duration(time.Hour)
	DefaultRotateKeep   = 24
	DefaultUnknownVNI   = UnknownVNICapture
	DefaultFileMode     = "0640"
	DefaultFileName     = "{session}-{host}-{time}"
	DefaultCompress     = CompressNone
	DefaultSessionIdle  = Duration(5 * time.Minute)
	DefaultMaxSessions  = 1024
	DefaultSourceSeries = 4096
	// MaxCollectorSessions bounds collector.max_sessions.
	MaxCollectorSessions = 1 << 20
	// MaxSourceSeries bounds collector.max_source_series.
	MaxSourceSeries = 1 << 20
	// MaxERSPANSessionID is the largest ERSPAN session id (10 bits).
	MaxERSPANSessionID = 1<<10 - 1
	DefaultMetricsAt   = "127.0.0.1:9090"
	// DefaultHealthListen serves the collector's /healthz on every address at the
	// port the load balancer's health check probes by default.
	DefaultHealthListen = ":9091"
	// MetricsOff as metrics.listen serves no /metrics endpoint.
	MetricsOff = "off"
)

// Allowed values of the string-typed enumerations.
const (
	HashSymmetric   = "symmetric"
	HashDirectional = "directional"

	ProtocolVXLAN  = "vxlan"
	ProtocolGENEVE = "geneve"
	ProtocolGRE    = "gre" // ERSPAN I/II/III and transparent Ethernet bridging; no port
	// ProtocolERSPAN names ERSPAN sessions (collector.sessions) by session
	// id; as an input it is the same as gre.
	ProtocolERSPAN = "erspan"

	AlgorithmWRR    = "wrr"
	AlgorithmMaglev = "maglev"

	AffinityInnerSymmetric = "inner-symmetric"
	AffinityOuter          = "outer"
	AffinityNone           = "none"

	XDPModeAuto    = "auto"
	XDPModeNative  = "native"
	XDPModeGeneric = "generic"

	AccessAll       = "all"
	AccessAllowlist = "allowlist"

	HealthHTTP = "http"
	HealthTCP  = "tcp"

	AllUnhealthyFailOpen = "fail-open"
	AllUnhealthyDrop     = "drop"

	FormatPCAP   = "pcap"
	FormatPCAPNG = "pcapng"

	UnknownVNICapture = "capture"
	UnknownVNIDrop    = "drop"

	CompressNone = "none"
	CompressGzip = "gzip"

	ReceiveAuto   = "auto"
	ReceiveXDP    = "xdp"
	ReceiveSocket = "socket"
)

// ApplyDefaults fills every unset field with its default, in this one place, so
// no default hides in the code that uses the config. It is idempotent. Parse
// and Load call it after validation; call it yourself on a Config built in Go.
//
// In Go a zero value is "unset" except where 0 is meaningful: Backend.Weight 0
// drains, Session.Enabled false disables, Rotate's 0s mean "no rotation" and
// "keep all". Parse marks those keys when they are absent from the YAML so that
// they get their defaults (weight 1, enabled, 100MiB, 1h, 24).
func ApplyDefaults(c *Config) {
	for i := range c.Filters {
		for j := range c.Filters[i].Inbound {
			defaultRule(&c.Filters[i].Inbound[j])
		}
		for j := range c.Filters[i].Outbound {
			defaultRule(&c.Filters[i].Outbound[j])
		}
	}
	for i := range c.Sessions {
		s := &c.Sessions[i]
		if s.enabledMissing {
			s.Enabled = true
			s.enabledMissing = false
		}
	}
	if len(c.Sessions) > 0 && c.Source == nil {
		c.Source = &Source{}
	}
	if s := c.Source; s != nil {
		setDefault(&s.Hash, DefaultHash)
		setDefault(&s.Device, DefaultDevice)
		setDefault(&s.Mark, DefaultMark)
	}
	if c.LoadBalancer != nil {
		defaultLoadBalancer(c.LoadBalancer)
	}
	if c.Collector != nil {
		defaultCollector(c.Collector)
	}
	setDefault(&c.Metrics.Listen, DefaultMetricsAt)
}

// defaultLoadBalancer fills the listener, balancing, backends, health check and BGP.
func defaultLoadBalancer(lb *LoadBalancer) {
	setDefault(&lb.Listener.Protocol, DefaultListenerProtocol)
	setDefault(&lb.Listener.Port, lb.Listener.DefaultPort())
	setDefault(&lb.Listener.AccessControl.Mode, DefaultAccessMode)
	if lb.Listener.AccessControl.Allowlist == nil {
		lb.Listener.AccessControl.Allowlist = []netip.Prefix{}
	}
	setDefault(&lb.Algorithm, DefaultAlgorithm)
	setDefault(&lb.Affinity, DefaultAffinity)
	setDefault(&lb.MaglevSize, DefaultMaglevSize)
	setDefault(&lb.FlowTimeout, DefaultFlowTimeout)
	setDefault(&lb.XDPMode, DefaultXDPMode)
	setDefault(&lb.PinPath, DefaultPinPath)
	for i := range lb.Backends {
		b := &lb.Backends[i]
		setDefault(&b.Port, lb.Listener.DefaultPort())
		if b.Name == "" && b.Address.IsValid() {
			// Logs, `lb status` and the metrics' backend label tell
			// backends apart by name.
			b.Name = b.AddrPort().String()
		}
		if b.weightMissing {
			b.Weight = DefaultWeight
			b.weightMissing = false
		}
	}
	defaultHealthCheck(&lb.HealthCheck)
	if lb.BGP != nil {
		defaultBGP(lb.BGP)
	}
}

func defaultHealthCheck(h *HealthCheck) {
	setDefault(&h.Type, DefaultHealthType)
	setDefault(&h.Port, DefaultHealthPort)
	setDefault(&h.Path, DefaultHealthPath)
	setDefault(&h.Interval, DefaultHealthEvery)
	setDefault(&h.Timeout, DefaultHealthWait)
	setDefault(&h.HealthyThreshold, DefaultHealthyAfter)
	setDefault(&h.UnhealthyThreshold, DefaultSickAfter)
	setDefault(&h.AllUnhealthy, DefaultAllUnhealthy)
}

func defaultBGP(g *BGP) {
	if g.holdTimeMissing {
		g.HoldTime, g.holdTimeMissing = DefaultBGPHoldTime, false
	}
	if g.drainMissing {
		g.Drain, g.drainMissing = DefaultBGPDrain, false
	}
	if g.Communities == nil {
		g.Communities = []string{}
	}
	for i := range g.Peers {
		setDefault(&g.Peers[i].Port, DefaultBGPPort)
	}
}

// defaultCollector fills the receive, file and rotation settings.
func defaultCollector(col *Collector) {
	setDefault(&col.Listen, DefaultCollectorAt)
	setDefault(&col.Receive, DefaultReceive)
	setDefault(&col.OutputDir, DefaultOutputDir)
	setDefault(&col.Format, DefaultFormat)
	setDefault(&col.UnknownVNI, DefaultUnknownVNI)
	setDefault(&col.HealthListen, DefaultHealthListen)
	setDefault(&col.FileMode, DefaultFileMode)
	setDefault(&col.FileName, DefaultFileName)
	setDefault(&col.Compress, DefaultCompress)
	setDefault(&col.SessionIdle, DefaultSessionIdle)
	setDefault(&col.MaxSessions, DefaultMaxSessions)
	setDefault(&col.MaxSourceSeries, DefaultSourceSeries)
	if len(col.Inputs) == 0 {
		col.Inputs = []Input{{Protocol: ProtocolVXLAN}}
	}
	for i := range col.Inputs {
		if col.Inputs[i].Protocol == ProtocolGENEVE {
			setDefault(&col.Inputs[i].Port, DefaultGENEVEPort)
		}
	}
	r := &col.Rotate
	if r.sizeMissing {
		r.Size = DefaultRotateSize
	}
	if r.intervalMissing {
		r.Interval = DefaultRotateEvery
	}
	if r.keepMissing {
		r.Keep = DefaultRotateKeep
	}
	r.sizeMissing, r.intervalMissing, r.keepMissing = false, false, false
}

func defaultRule(r *Rule) {
	if r.protocolMissing {
		r.Protocol = ProtocolAll
		r.protocolMissing = false
	}
	if r.EtherType == "" {
		r.EtherType = inferEtherType(r)
	}
	if !r.Source.IsValid() {
		r.Source = anyPrefix(r.EtherType)
	}
	if !r.Destination.IsValid() {
		r.Destination = anyPrefix(r.EtherType)
	}
	// A zero range from Go means "not restricted"; an explicit "0" from YAML is port 0.
	if !r.sourcePortsSet && r.SourcePorts == (PortRange{}) {
		r.SourcePorts = AllPorts
	}
	if !r.destPortsSet && r.DestinationPorts == (PortRange{}) {
		r.DestinationPorts = AllPorts
	}
	r.sourcePortsSet, r.destPortsSet = false, false
}

// inferEtherType picks the family a rule without ethertype is about: IPv6 when
// its protocol or a CIDR says so, else IPv4 (the seed's and the clouds' default).
func inferEtherType(r *Rule) EtherType {
	if (!r.protocolMissing && r.Protocol == ProtocolICMPv6) ||
		(r.Source.IsValid() && r.Source.Addr().Is6()) ||
		(r.Destination.IsValid() && r.Destination.Addr().Is6()) {
		return IPv6
	}
	return IPv4
}

func anyPrefix(e EtherType) netip.Prefix {
	if e == IPv6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

func setDefault[T comparable](dst *T, def T) {
	var zero T
	if *dst == zero {
		*dst = def
	}
}
