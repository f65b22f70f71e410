// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg
}

// TestSeedExample checks config/examples/seed.yaml against the seed's Tables 1 and 5.
func TestSeedExample(t *testing.T) {
	cfg := mustLoad(t, "examples/seed.yaml")
	pfx := netip.MustParsePrefix
	want := []Filter{{
		Name: "mirror-filter-01",
		Inbound: []Rule{{Priority: 1, Action: Accept, Protocol: ProtocolTCP, EtherType: IPv4,
			Source: pfx("192.168.0.161/32"), SourcePorts: AllPorts,
			Destination: pfx("192.168.0.230/32"), DestinationPorts: PortRange{1234, 1234}}},
		Outbound: []Rule{{Priority: 1, Action: Accept, Protocol: ProtocolTCP, EtherType: IPv4,
			Source: pfx("192.168.0.230/32"), SourcePorts: PortRange{1234, 1234},
			Destination: pfx("192.168.0.161/32"), DestinationPorts: AllPorts}},
	}}
	if got := stripLines(cfg).Filters; !reflect.DeepEqual(got, want) {
		t.Errorf("filters:\n got %+v\nwant %+v", got, want)
	}
	wantSession := Session{Name: "mirror-session-01", Priority: 1, VNI: 1, PacketLength: 96, Enabled: true,
		Filter: "mirror-filter-01", Sources: []string{"eth0"}, Target: "192.168.0.147"}
	if len(cfg.Sessions) != 1 || !reflect.DeepEqual(stripLines(cfg).Sessions[0], wantSession) {
		t.Errorf("sessions: got %+v", cfg.Sessions)
	}
	if ap, err := cfg.Sessions[0].TargetAddrPort(); err != nil || ap != netip.MustParseAddrPort("192.168.0.147:4789") {
		t.Errorf("target: %v %v", ap, err)
	}
	lb := cfg.LoadBalancer
	if lb == nil {
		t.Fatal("no load_balancer")
	}
	if lb.Listener.Name != "listener-A" || lb.Listener.AddrPort() != netip.MustParseAddrPort("192.168.0.147:4789") ||
		!reflect.DeepEqual(lb.Listener.Interfaces, []string{"eth0"}) || lb.Listener.AccessControl.Mode != AccessAll {
		t.Errorf("listener: %+v", lb.Listener)
	}
	if lb.Algorithm != AlgorithmWRR || lb.Affinity != AffinityInnerSymmetric {
		t.Errorf("algorithm %q affinity %q", lb.Algorithm, lb.Affinity)
	}
	wantBackends := []Backend{
		{Name: "ECS-target-01", Address: netip.MustParseAddr("192.168.0.6"), Port: 4789, Weight: 1},
		{Name: "ECS-target-02", Address: netip.MustParseAddr("192.168.0.12"), Port: 4789, Weight: 1},
	}
	if got := stripLines(cfg).LoadBalancer.Backends; !reflect.DeepEqual(got, wantBackends) {
		t.Errorf("backends: %+v", got)
	}
	if lb.HealthCheck.Enabled {
		t.Error("health check enabled; the seed disables it")
	}
	if c := cfg.Collector; c == nil || c.Listen != "0.0.0.0:4789" || c.Format != FormatPCAPNG ||
		c.Rotate != (Rotate{Size: 100 << 20, Interval: Duration(time.Hour), Keep: 24}) {
		t.Errorf("collector: %+v", cfg.Collector)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9090" || !cfg.Metrics.Enabled() {
		t.Errorf("metrics: %+v", cfg.Metrics)
	}
	if cfg.SessionName(1) != "mirror-session-01" || cfg.SessionName(7) != "vni-7" {
		t.Errorf("session names: %q %q", cfg.SessionName(1), cfg.SessionName(7))
	}
}

func TestFullExample(t *testing.T) {
	cfg := mustLoad(t, "examples/full.yaml")
	f := cfg.FilterByName("web-and-dns")
	if f == nil || len(f.Inbound) != 3 || len(f.Outbound) != 3 {
		t.Fatalf("filter: %+v", f)
	}
	if r := f.Outbound[2]; r.Protocol != 47 || r.EtherType != IPv4 {
		t.Errorf("protocol by number: %+v", r)
	}
	if r := f.Outbound[0]; r.Source != netip.MustParsePrefix("::/0") || r.Protocol != ProtocolAll {
		t.Errorf("ipv6 rule defaults: %+v", r)
	}
	s := cfg.SessionByVNI(100)
	if s == nil || s.PacketLength != 0 || s.RateLimit != 10000 || !reflect.DeepEqual(s.Sources, []string{"eth0", "eth1"}) {
		t.Fatalf("session: %+v", s)
	}
	if got := cfg.SourceInterfaces(); !reflect.DeepEqual(got, []string{"eth0", "eth1"}) {
		t.Errorf("source interfaces: %v", got)
	}
	lb := cfg.LoadBalancer
	if w := []int{lb.Backends[0].Weight, lb.Backends[1].Weight, lb.Backends[2].Weight}; !reflect.DeepEqual(w, []int{1, 2, 0}) {
		t.Errorf("weights %v", w)
	}
	if !lb.Listener.AccessControl.Allows(netip.MustParseAddr("192.168.0.230")) ||
		lb.Listener.AccessControl.Allows(netip.MustParseAddr("172.16.0.1")) {
		t.Error("allowlist")
	}
	if col := cfg.Collector; col.Rotate.KeepBytes != 10<<30 || col.PostRotate != "/usr/local/bin/ship-pcap --to archive" ||
		col.Rotate.KeepAge != Duration(7*24*time.Hour) || col.Rotate.MinFree != 5<<30 || col.Compress != CompressGzip {
		t.Errorf("collector: %+v", cfg.Collector)
	}
}

// TestGENEVEListenerPorts: a GENEVE listener and its backends default to
// UDP 6081; an explicit port stays.
func TestGENEVEListenerPorts(t *testing.T) {
	cfg, err := Parse([]byte(`
load_balancer:
  listener: {protocol: geneve, vip: 10.0.0.1, interfaces: [eth0]}
  backends: [{address: 10.0.0.2}, {address: 10.0.0.3, port: 4789}]
`))
	if err != nil {
		t.Fatal(err)
	}
	lb := cfg.LoadBalancer
	if lb.Listener.Protocol != ProtocolGENEVE || lb.Listener.Port != 6081 {
		t.Errorf("listener: %+v", lb.Listener)
	}
	if lb.Backends[0].Port != 6081 || lb.Backends[1].Port != 4789 {
		t.Errorf("backend ports %d, %d; want 6081, 4789", lb.Backends[0].Port, lb.Backends[1].Port)
	}
}

// TestGREListenerNoPorts: a GRE listener and its backends have no port.
func TestGREListenerNoPorts(t *testing.T) {
	cfg, err := Parse([]byte(`
load_balancer:
  listener: {protocol: gre, vip: 10.0.0.1, interfaces: [eth0]}
  backends: [{address: 10.0.0.2}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if lb := cfg.LoadBalancer; lb.Listener.Port != 0 || lb.Backends[0].Port != 0 {
		t.Errorf("ports %d, %d; want none", lb.Listener.Port, lb.Backends[0].Port)
	}
}

// TestDefaults parses sections with only their required keys and checks every default.
func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
filters:
  - name: f
    inbound: [{priority: 1, action: accept}]
    outbound: [{priority: 1, action: accept, destination: "2001:db8::/32"}]
sessions:
  - {name: s, priority: 1, vni: 0, filter: f, sources: [eth0], target: collector.example}
load_balancer:
  listener: {vip: 10.0.0.1, interfaces: [eth0]}
  backends: [{address: 10.0.0.2}]
collector:
`))
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Filters[0].Inbound[0]
	if in.Protocol != ProtocolAll || in.EtherType != IPv4 || in.Source != netip.MustParsePrefix("0.0.0.0/0") ||
		in.Destination != netip.MustParsePrefix("0.0.0.0/0") || in.SourcePorts != AllPorts || in.DestinationPorts != AllPorts {
		t.Errorf("rule defaults: %+v", in)
	}
	if out := cfg.Filters[0].Outbound[0]; out.EtherType != IPv6 || out.Source != netip.MustParsePrefix("::/0") {
		t.Errorf("ethertype inferred from CIDR: %+v", out)
	}
	if s := cfg.Sessions[0]; !s.Enabled || s.PacketLength != 0 || s.RateLimit != 0 {
		t.Errorf("session defaults: %+v", s)
	}
	if host, port, err := SplitTarget(cfg.Sessions[0].Target); host != "collector.example" || port != 4789 || err != nil {
		t.Errorf("target: %s %d %v", host, port, err)
	}
	if *cfg.Source != (Source{Hash: HashSymmetric, Device: "xmirror0", Mark: 0x786d6972}) {
		t.Errorf("source defaults: %+v", cfg.Source)
	}
	lb := cfg.LoadBalancer
	if lb.Listener.Protocol != ProtocolVXLAN || lb.Listener.Port != 4789 || lb.Listener.AccessControl.Mode != AccessAll || lb.Algorithm != AlgorithmWRR ||
		lb.Affinity != AffinityInnerSymmetric || lb.MaglevSize != 65537 || lb.FlowTimeout.D() != 30*time.Second ||
		lb.XDPMode != XDPModeAuto || lb.PinPath != "/sys/fs/bpf/xmirror" {
		t.Errorf("lb defaults: %+v", lb)
	}
	if b := lb.Backends[0]; b.Port != 4789 || b.Weight != 1 {
		t.Errorf("backend defaults: %+v", b)
	}
	wantHC := HealthCheck{Type: HealthHTTP, Port: 9091, Path: "/healthz", Interval: Duration(2 * time.Second),
		Timeout: Duration(time.Second), HealthyThreshold: 2, UnhealthyThreshold: 3, AllUnhealthy: AllUnhealthyFailOpen}
	if lb.HealthCheck != wantHC {
		t.Errorf("health check defaults: %+v", lb.HealthCheck)
	}
	wantCol := Collector{Listen: "0.0.0.0:4789", Receive: ReceiveAuto, OutputDir: "/var/lib/xmirror/pcap", Format: FormatPCAPNG,
		Rotate: Rotate{Size: 100 << 20, Interval: Duration(time.Hour), Keep: 24}, UnknownVNI: UnknownVNICapture,
		FileMode: "0640", FileName: "{session}-{host}-{time}", Compress: CompressNone, SessionIdle: Duration(5 * time.Minute),
		MaxSessions: 1024, MaxSourceSeries: 4096, HealthListen: ":9091", Inputs: []Input{{Protocol: ProtocolVXLAN}}}
	if !reflect.DeepEqual(*cfg.Collector, wantCol) {
		t.Errorf("collector defaults: %+v", cfg.Collector)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9090" {
		t.Errorf("metrics default: %q", cfg.Metrics.Listen)
	}
}

// TestIntegerForms: integers YAML reads as written are taken (hex, 0o
// octal, zero padding that does not change the number); leading zeros that
// do are refused in TestInvalid.
func TestIntegerForms(t *testing.T) {
	cfg, err := Parse([]byte(`
filters: [{name: f}]
sessions:
  - {name: a, priority: 01, vni: 007, filter: f, sources: [eth0], target: 10.0.0.9}
  - {name: b, priority: 2, vni: 0o10, filter: f, sources: [eth0], target: 10.0.0.9}
  - {name: c, priority: 3, vni: 0x10, filter: f, sources: [eth0], target: 10.0.0.9}
  - {name: d, priority: 4, vni: 00, filter: f, sources: [eth0], target: 10.0.0.9}
source: {mark: 0x10}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, s := range cfg.Sessions {
		got = append(got, s.VNI)
	}
	if !reflect.DeepEqual(got, []uint32{7, 8, 16, 0}) || cfg.Sessions[0].Priority != 1 || cfg.Source.Mark != 16 {
		t.Errorf("vnis %v, priority %d, mark %#x", got, cfg.Sessions[0].Priority, cfg.Source.Mark)
	}
}

// TestExplicitZero checks that an explicit 0 or false is kept where it means
// something (drain, disabled, no rotation, keep all, port 0).
func TestExplicitZero(t *testing.T) {
	cfg, err := Parse([]byte(`
filters:
  - name: f
    inbound: [{priority: 1, action: accept, protocol: udp, source_ports: 0, destination_ports: "0-0"}]
sessions:
  - {name: s, priority: 1, vni: 1, enabled: false, filter: f, sources: [eth0], target: 10.0.0.9}
load_balancer:
  listener: {vip: 10.0.0.1, interfaces: [eth0]}
  backends: [{address: 10.0.0.2, weight: 0}]
collector:
  rotate: {size: 0, interval: 0s, keep: 0}
metrics: {listen: "off"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Filters[0].Inbound[0]; r.SourcePorts != (PortRange{}) || r.DestinationPorts != (PortRange{}) {
		t.Errorf("port 0: %+v", r)
	}
	if cfg.Sessions[0].Enabled {
		t.Error("enabled: false became true")
	}
	if len(cfg.SessionsOn("eth0")) != 0 {
		t.Error("disabled session listed by SessionsOn")
	}
	if cfg.LoadBalancer.Backends[0].Weight != 0 {
		t.Error("weight 0 (drain) became the default")
	}
	if cfg.Collector.Rotate != (Rotate{}) {
		t.Errorf("rotate zeros: %+v", cfg.Collector.Rotate)
	}
	if cfg.Metrics.Enabled() {
		t.Error("metrics off")
	}
	// And they survive a round trip.
	roundTrip(t, cfg)
}

// lines builds a YAML document whose line i+1 is ls[i], so tests name lines exactly.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// with returns base with line n (1-based) replaced, or appended lines when n is 0.
func with(base []string, n int, text ...string) string {
	out := append([]string(nil), base...)
	if n == 0 {
		return lines(append(out, text...)...)
	}
	out[n-1] = text[0]
	return lines(out...)
}

var (
	ruleBase = []string{
		"filters:",               // 1
		"  - name: f",            // 2
		"    inbound:",           // 3
		"      - priority: 1",    // 4
		"        action: accept", // 5
		"        protocol: tcp",  // 6
	}
	sessionBase = []string{
		"filters:",             // 1
		"  - name: f",          // 2
		"sessions:",            // 3
		"  - name: s",          // 4
		"    priority: 1",      // 5
		"    vni: 1",           // 6
		"    filter: f",        // 7
		"    sources: [eth0]",  // 8
		"    target: 10.0.0.1", // 9
	}
	lbBase = []string{
		"load_balancer:",             // 1
		"  listener:",                // 2
		"    vip: 192.168.0.147",     // 3
		"    interfaces: [eth0]",     // 4
		"  backends:",                // 5
		"    - address: 192.168.0.6", // 6
	}
	colBase = []string{
		"collector:",      // 1
		"  listen: :4789", // 2
	}
)

// hostCIDRs lists n /32s of 10.0.0.0/8, comma-separated.
func hostCIDRs(n int) string {
	list := make([]string, n)
	for i := range list {
		list[i] = fmt.Sprintf("10.%d.%d.1/32", i/256, i%256)
	}
	return strings.Join(list, ", ")
}

// TestInvalid checks that each mistake is reported exactly, with path and line,
// and that nothing else is reported.
func TestInvalid(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"yaml syntax", "metrics:\n  listen: a: b\n", []string{"invalid YAML: mapping values are not allowed in this context (line 2)"}},
		{"not a mapping", "- a\n- b\n", []string{"the configuration must be a mapping of sections (filters, sessions, ...), got a list (line 1)"}},
		{"two documents", "metrics: {listen: ':1'}\n---\nmetrics: {}\n", []string{"only one YAML document is allowed (line 2)"}},
		{"unknown top key", "filterz: []\n", []string{"filterz: unknown key (line 1)"}},
		{"duplicate key", "metrics: {listen: ':1'}\nmetrics: {listen: ':2'}\n", []string{"metrics: duplicate key (line 2)"}},
		{"filters not list", "filters: {name: f}\n", []string{"filters: must be a list, got a mapping (line 1)"}},
		{"filter name missing", lines("filters:", "  - inbound: []"), []string{"filters[0].name: required (line 2)"}},
		{"filter name duplicate", lines("filters:", "  - name: f", "  - name: f"), []string{`filters[1].name: "f" is also the name of filters[0] (line 3)`}},
		{"filter name not string", lines("filters:", "  - name: 12"), []string{"filters[0].name: must be a string, got integer 12 (quote it) (line 2)"}},
		{"rule unknown key", with(ruleBase, 0, "        prio: 3"), []string{"filters[0].inbound[0].prio: unknown key (line 7)"}},
		{"rule priority 0", with(ruleBase, 4, "      - priority: 0"), []string{"filters[0].inbound[0].priority: 0 is out of range 1..65535 (line 4)"}},
		{"rule priority 65536", with(ruleBase, 4, "      - priority: 65536"), []string{"filters[0].inbound[0].priority: 65536 is out of range 1..65535 (line 4)"}},
		{"rule priority string", with(ruleBase, 4, "      - priority: first"), []string{`filters[0].inbound[0].priority: must be an integer, got string "first" (line 4)`}},
		{"rule priority missing", lines("filters:", "  - name: f", "    outbound:", "      - {action: accept}"), []string{"filters[0].outbound[0].priority: required (line 4)"}},
		{"rule priority duplicate", with(ruleBase, 0, "      - {priority: 1, action: reject}"), []string{"filters[0].inbound[1].priority: 1 is also the priority of filters[0].inbound[0] (unique within a direction) (line 7)"}},
		{"rule action bad", with(ruleBase, 5, "        action: allow"), []string{`filters[0].inbound[0].action: "allow" is not one of accept, reject (line 5)`}},
		{"rule action missing", lines("filters:", "  - name: f", "    inbound: [{priority: 1}]"), []string{"filters[0].inbound[0].action: required (line 3)"}},
		{"rule protocol bad", with(ruleBase, 6, "        protocol: sctpx"), []string{`filters[0].inbound[0].protocol: "sctpx" is not one of tcp, udp, icmp, icmpv6, all or a number 0..255 (line 6)`}},
		{"rule protocol 256", with(ruleBase, 6, "        protocol: 256"), []string{"filters[0].inbound[0].protocol: 256 is out of range 0..255 (line 6)"}},
		{"rule protocol list", with(ruleBase, 6, "        protocol: [tcp]"), []string{"filters[0].inbound[0].protocol: must be a protocol name or number, got a list (line 6)"}},
		{"rule ethertype bad", with(ruleBase, 0, "        ethertype: arp"), []string{`filters[0].inbound[0].ethertype: "arp" is not one of ipv4, ipv6 (line 7)`}},
		{"icmp with ipv6", with(append(ruleBase[:5:5], "        protocol: icmp"), 0, "        ethertype: ipv6"), []string{"filters[0].inbound[0].protocol: icmp needs ethertype ipv4 (use icmpv6 with ipv6) (line 6)"}},
		{"icmpv6 with ipv4", with(append(ruleBase[:5:5], "        protocol: icmpv6"), 0, "        ethertype: ipv4"), []string{"filters[0].inbound[0].protocol: icmpv6 needs ethertype ipv6 (use icmp with ipv4) (line 6)"}},
		{"cidr bad", with(ruleBase, 0, "        source: 10.0.0.0/40"), []string{`filters[0].inbound[0].source: "10.0.0.0/40" is not a CIDR such as 192.168.0.0/24 (line 7)`}},
		{"cidr host bits", with(ruleBase, 0, "        destination: 10.0.0.1/8"), []string{`filters[0].inbound[0].destination: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8 or 10.0.0.1/32?) (line 7)`}},
		{"cidr family", with(ruleBase, 0, "        ethertype: ipv4", "        destination: 2001:db8::/32"), []string{"filters[0].inbound[0].destination: 2001:db8::/32 is not an IPv4 CIDR but ethertype is ipv4 (line 8)"}},
		// Without ethertype the rule's family comes from what it names; the
		// message said "ethertype is ipv6" of a rule that has none.
		{"cidr families mixed", with(ruleBase, 0, "        source: 10.0.0.0/8", "        destination: 2001:db8::/32"), []string{"filters[0].inbound[0].source: 10.0.0.0/8 is IPv4 but destination 2001:db8::/32 is IPv6: a rule matches one family (one rule per family) (line 7)"}},
		{"cidr family of icmpv6", with(append(ruleBase[:5:5], "        protocol: icmpv6"), 0, "        destination: 10.0.0.0/8"), []string{"filters[0].inbound[0].destination: 10.0.0.0/8 is not an IPv6 CIDR but protocol icmpv6 makes the rule ipv6 (line 7)"}},
		// The source skips IPv6 extension headers to find the protocol, so a
		// rule on one of them was accepted and matched nothing (tcpdump's
		// "ip6 proto 44" does capture fragments).
		{"ipv6 extension header as protocol", with(append(ruleBase[:5:5], "        protocol: 44"), 0, "        ethertype: ipv6"), []string{"filters[0].inbound[0].protocol: 44 is an IPv6 extension header (hop-by-hop 0, routing 43, fragment 44, destination options 60), which the source skips to match the protocol behind it, so the rule would not match the packets that carry it: give the protocol behind the header (tcp, udp, icmpv6, ...) or all (line 6)"}},
		{"ports bad", with(ruleBase, 0, "        source_ports: 1-x"), []string{`filters[0].inbound[0].source_ports: "1-x" is not all, N or N-M: port "x" is not a number (line 7)`}},
		{"ports reversed", with(ruleBase, 0, "        destination_ports: 90-80"), []string{`filters[0].inbound[0].destination_ports: "90-80": first port 90 is above last port 80 (line 7)`}},
		{"ports too big", with(ruleBase, 0, "        destination_ports: 70000"), []string{`filters[0].inbound[0].destination_ports: "70000" is not all, N or N-M: port 70000 is out of range 0..65535 (line 7)`}},
		{"ports with icmp", with(append(ruleBase[:5:5], "        protocol: icmp"), 0, "        destination_ports: 80"), []string{"filters[0].inbound[0].destination_ports: 80: port ranges need protocol tcp or udp, not icmp (line 7)"}},
		{"ports with all", with(append(ruleBase[:5:5], "        protocol: all"), 0, "        source_ports: 1-1023"), []string{"filters[0].inbound[0].source_ports: 1-1023: port ranges need protocol tcp or udp, not all (line 7)"}},
		{"session unknown key", with(sessionBase, 0, "    vnii: 9"), []string{"sessions[0].vnii: unknown key (line 10)"}},
		{"session vni too big", with(sessionBase, 6, "    vni: 16777216"), []string{"sessions[0].vni: 16777216 is out of range 0..16777215 (line 6)"}},
		{"session vni negative", with(sessionBase, 6, "    vni: -1"), []string{"sessions[0].vni: -1 is out of range 0..16777215 (line 6)"}},
		// yaml.v3 reads 010 the YAML 1.1 way, as octal 8, and 09 as a float.
		{"session vni leading zero", with(sessionBase, 6, "    vni: 010"), []string{"sessions[0].vni: 010 has a leading zero, which YAML reads as octal (8): write 10 (or 0o10 for octal) (line 6)"}},
		{"session vni leading zero not octal", with(sessionBase, 6, "    vni: 0900"), []string{"sessions[0].vni: 0900 has a leading zero, which YAML does not read as a decimal integer: write 900 (line 6)"}},
		{"collector session id leading zero", with(colBase, 0, "  sessions:", "    - {name: sw, protocol: erspan, id: 0100}"), []string{"collector.sessions[0].id: 0100 has a leading zero, which YAML reads as octal (64): write 100 (or 0o100 for octal) (line 4)"}},
		{"session vni missing", with(sessionBase, 6, "    enabled: true"), []string{"sessions[0].vni: required (line 4)"}},
		{"session vni duplicate", with(sessionBase, 0, "  - {name: t, priority: 2, vni: 1, filter: f, sources: [eth1], target: 10.0.0.1}"), []string{"sessions[1].vni: 1 is also the VNI of sessions[0] (line 10)"}},
		{"session name duplicate", with(sessionBase, 0, "  - {name: s, priority: 2, vni: 2, filter: f, sources: [eth1], target: 10.0.0.1}"), []string{`sessions[1].name: "s" is also the name of sessions[0] (line 10)`}},
		{"session priority 32767", with(sessionBase, 5, "    priority: 32767"), []string{"sessions[0].priority: 32767 is out of range 1..32766 (line 5)"}},
		{"session priority shared source", with(sessionBase, 0, "  - {name: t, priority: 1, vni: 2, filter: f, sources: [eth1, eth0], target: 10.0.0.1}"), []string{"sessions[1].priority: 1 is also the priority of sessions[0] on source eth0 (unique per source interface) (line 10)"}},
		{"packet length 13", with(sessionBase, 0, "    packet_length: 13"), []string{"sessions[0].packet_length: 13 is out of range 14..65535 (or 0 for the whole packet) (line 10)"}},
		{"packet length 65536", with(sessionBase, 0, "    packet_length: 65536"), []string{"sessions[0].packet_length: 65536 is out of range 0..65535 (line 10)"}},
		{"enabled not bool", with(sessionBase, 0, "    enabled: yes please"), []string{`sessions[0].enabled: must be true or false, got string "yes please" (line 10)`}},
		{"filter unknown", with(sessionBase, 7, "    filter: g"), []string{`sessions[0].filter: "g" is not the name of a filter (line 7)`}},
		{"sources empty", with(sessionBase, 8, "    sources: []"), []string{"sessions[0].sources: needs at least one interface (line 8)"}},
		{"source ifname long", with(sessionBase, 8, "    sources: [abcdefghijklmnop]"), []string{`sessions[0].sources[0]: "abcdefghijklmnop" is longer than 15 characters, the Linux limit for interface names (line 8)`}},
		{"source ifname space", with(sessionBase, 8, `    sources: ["eth 0"]`), []string{`sessions[0].sources[0]: "eth 0" is not a valid interface name (no '/', ':' or spaces) (line 8)`}},
		{"source listed twice", with(sessionBase, 8, "    sources: [eth0, eth0]"), []string{`sessions[0].sources[1]: "eth0" is listed twice (line 8)`}},
		{"source mark of a clone", lines("source:", "  mark: 0xB0000001"), []string{"source.mark: 0xb0000001 collides with the marks of xmirror's clones (0xb0000000/0xf0000000) (line 2)"}},
		{"target ipv6", with(sessionBase, 9, `    target: "[2001:db8::1]:4789"`), []string{`sessions[0].target: "[2001:db8::1]:4789": only IPv4 targets are supported (the VXLAN outer header is IPv4) (line 9)`}},
		{"target bad host", with(sessionBase, 9, "    target: bad_host!"), []string{`sessions[0].target: "bad_host!" is not an IPv4 address or host name (line 9)`}},
		{"target port not VXLAN's", with(sessionBase, 9, "    target: 10.0.0.1:4790"), []string{`sessions[0].target: "10.0.0.1:4790": port 4790: a mirror source sends VXLAN to UDP port 4789 only (line 9)`}},
		{"target port 0", with(sessionBase, 9, "    target: 10.0.0.1:0"), []string{`sessions[0].target: "10.0.0.1:0": port "0" is not a number 1..65535 (line 9)`}},
		{"rate limit negative", with(sessionBase, 0, "    rate_limit: -5"), []string{"sessions[0].rate_limit: -5 is out of range 0..2147483647 (line 10)"}},
		{"source hash", lines("source:", "  hash: random"), []string{`source.hash: "random" is not one of symmetric, directional (line 2)`}},
		{"source device", lines("source:", "  device: a/b"), []string{`source.device: "a/b" is not a valid interface name (no '/', ':' or spaces) (line 2)`}},
		{"source mark", lines("source:", "  mark: 0x100000000"), []string{"source.mark: 4294967296 is out of range 0..4294967295 (line 2)"}},
		{"lb vip missing", with(lbBase, 3, "    name: x"), []string{"load_balancer.listener.vip: required (line 2)"}},
		{"lb vip ipv6", with(lbBase, 3, "    vip: 2001:db8::1"), []string{`load_balancer.listener.vip: "2001:db8::1" is not an IPv4 address (line 3)`}},
		{"lb interfaces missing", with(lbBase, 4, "    port: 4789"), []string{"load_balancer.listener.interfaces: needs at least one interface (line 2)"}},
		{"lb port", with(lbBase, 4, "    port: 65536"), []string{"load_balancer.listener.interfaces: needs at least one interface (line 2)", "load_balancer.listener.port: 65536 is out of range 1..65535 (line 4)"}},
		{"lb allowlist empty", lines(append(lbBase[:4:4], "    access_control: {mode: allowlist}", "  backends: [{address: 10.0.0.2}]")...), []string{"load_balancer.listener.access_control.allowlist: needs at least one CIDR with mode allowlist (line 5)"}},
		{"lb allowlist longer than the table", lines(append(lbBase[:4:4], "    access_control:", "      mode: allowlist", "      allowlist: ["+hostCIDRs(1025)+"]", "  backends: [{address: 10.0.0.2}]")...),
			[]string{"load_balancer.listener.access_control.allowlist: 1025 CIDRs, at most 1024 (what the load balancer's table holds) (line 7)"}},
		{"lb allowlist with mode all", lines(append(lbBase[:4:4], "    access_control: {allowlist: [10.0.0.0/8]}", "  backends: [{address: 10.0.0.2}]")...), []string{"load_balancer.listener.access_control.allowlist: is only used with mode allowlist (mode is all) (line 5)"}},
		{"lb allowlist ipv6", lines(append(lbBase[:4:4], "    access_control:", "      mode: allowlist", "      allowlist: [10.0.0.0/8, 2001:db8::/32]", "  backends: [{address: 10.0.0.2}]")...), []string{"load_balancer.listener.access_control.allowlist[1]: 2001:db8::/32 is not an IPv4 CIDR but ethertype is ipv4 (line 7)"}},
		{"lb protocol", lines(append(lbBase[:4:4], "    protocol: erspan", "  backends: [{address: 10.0.0.2}]")...), []string{`load_balancer.listener.protocol: "erspan" is not one of vxlan, geneve, gre (line 5)`}},
		{"lb gre listener port", lines(append(lbBase[:4:4], "    protocol: gre", "    port: 4789", "  backends: [{address: 10.0.0.2}]")...), []string{"load_balancer.listener.port: 4789: a gre listener has no port (GRE is IP protocol 47) (line 6)"}},
		{"lb gre backend port", lines(append(lbBase[:4:4], "    protocol: gre", "  backends: [{address: 10.0.0.2, port: 4789}]")...), []string{"load_balancer.backends[0].port: 4789: backends of a gre listener have no port (GRE is IP protocol 47) (line 6)"}},
		{"lb mode bad", lines(append(lbBase[:4:4], "    access_control: {mode: some}", "  backends: [{address: 10.0.0.2}]")...), []string{`load_balancer.listener.access_control.mode: "some" is not one of all, allowlist (line 5)`}},
		{"lb algorithm", with(lbBase, 0, "  algorithm: rr"), []string{`load_balancer.algorithm: "rr" is not one of wrr, maglev (line 7)`}},
		{"lb affinity", with(lbBase, 0, "  affinity: sticky"), []string{`load_balancer.affinity: "sticky" is not one of inner-symmetric, outer, none (line 7)`}},
		{"lb maglev not prime", with(lbBase, 0, "  maglev_table_size: 65536"), []string{"load_balancer.maglev_table_size: 65536 is not a prime number (65537 is a good choice) (line 7)"}},
		{"lb maglev above the maps", with(lbBase, 0, "  maglev_table_size: 131101"), []string{"load_balancer.maglev_table_size: 131101 is out of range 1..131071 (line 7)"}},
		{"lb maglev 0", with(lbBase, 0, "  maglev_table_size: 0"), []string{"load_balancer.maglev_table_size: 0 is out of range 1..131071 (line 7)"}},
		{"lb flow timeout 0", with(lbBase, 0, "  flow_timeout: 0s"), []string{"load_balancer.flow_timeout: 0s must be positive (leave it out for the default, 30s) (line 7)"}},
		{"lb health interval 0", with(lbBase, 0, "  health_check: {interval: 0s, timeout: 0}"), []string{
			"load_balancer.health_check.interval: 0s must be positive (leave it out for the default, 2s) (line 7)",
			"load_balancer.health_check.timeout: 0s must be positive (leave it out for the default, 1s) (line 7)"}},
		{"lb interfaces duplicate", with(lbBase, 4, "    interfaces: [eth0, eth1, eth0]"), []string{`load_balancer.listener.interfaces[2]: "eth0" is listed twice (line 4)`}},
		{"yaml unclosed flow mapping", lines("metrics:", "  listen: ':1'", "load_balancer: {listener: 1", "collector: {}"), []string{"invalid YAML: did not find expected ',' or '}' (line 3)"}},
		// yaml.v3 says line 4, where the list of the mis-indented key starts.
		{"yaml key indented off in a list", lines("filters: [{name: f}]", "sessions:", "  - {name: a, priority: 1, vni: 1, filter: f, sources: [eth0],",
			"     target: 10.0.0.1}", "  - name: s", "    priority: 2", "    vni: 2", "    filter: f", "    sources: [eth0]", "   target: 10.0.0.1"),
			[]string{"invalid YAML: did not find expected '-' indicator (line 10)"}},
		{"yaml key indented off in a mapping", lines("load_balancer:", "  listener: {vip: 10.0.0.1, interfaces: [eth0]}", "  algorithm: maglev", "   affinity: outer", "  backends: [{address: 10.0.0.2}]"),
			[]string{"invalid YAML: mapping values are not allowed in this context (line 4)"}},
		{"yaml unclosed flow sequence", lines("metrics: [a, b", "collector: {}"), []string{"invalid YAML: did not find expected ',' or ']' (line 2)"}},
		{"yaml bad block mapping", lines("metrics:", "  listen: ':1'", " collector: {}"), []string{"invalid YAML: did not find expected key (line 3)"}},
		{"lb flow timeout", with(lbBase, 0, "  flow_timeout: -1s"), []string{`load_balancer.flow_timeout: "-1s" is negative (line 7)`}},
		{"lb xdp mode", with(lbBase, 0, "  xdp_mode: offload"), []string{`load_balancer.xdp_mode: "offload" is not one of auto, native, generic (line 7)`}},
		{"lb pin path", with(lbBase, 0, "  pin_path: relative/dir"), []string{`load_balancer.pin_path: "relative/dir" is not an absolute path (line 7)`}},
		{"lb backends missing", lines(lbBase[:4]...), []string{"load_balancer.backends: required (line 1)"}},
		{"lb backends empty", lines(append(lbBase[:4:4], "  backends: []")...), []string{"load_balancer.backends: needs at least one backend (line 5)"}},
		{"backend address missing", with(lbBase, 6, "    - name: x"), []string{"load_balancer.backends[0].address: required (line 6)"}},
		{"backend address bad", with(lbBase, 6, "    - address: 192.168.0.300"), []string{`load_balancer.backends[0].address: "192.168.0.300" is not an IPv4 address (line 6)`}},
		{"backend address with port", with(lbBase, 6, "    - address: 192.168.0.6:4790"), []string{`load_balancer.backends[0].address: "192.168.0.6:4790" is not an IPv4 address: give the port in its own key (port: 4790) (line 6)`}},
		{"backend host name", with(lbBase, 6, "    - address: collector-1.example"), []string{`load_balancer.backends[0].address: "collector-1.example" is not an IPv4 address: host names are not resolved here, give the address (line 6)`}},
		{"vip ipv6 with port", with(lbBase, 3, "    vip: '[2001:db8::1]:4789'"), []string{`load_balancer.listener.vip: "[2001:db8::1]:4789" is not an IPv4 address (line 3)`}},
		{"backend name duplicate", with(lbBase, 0, "    - {name: c, address: 192.168.0.7}", "    - {name: c, address: 192.168.0.8}"), []string{`load_balancer.backends[2].name: "c" is also the name of backends[1]: give each backend its own name (line 8)`}},
		// A backend without a name is named by its address:port; the message
		// said "is also the name of backends[0]" of a backend with no name,
		// or pointed at a name key the file does not have.
		{"backend name like another's default", with(lbBase, 0, "    - {name: '192.168.0.6:4789', address: 192.168.0.7}"), []string{`load_balancer.backends[1].name: "192.168.0.6:4789" is the name backends[0] has without a name of its own (its address:port): give backends[1] another name, or backends[0] one (line 7)`}},
		{"backend default name like another's name", lines("load_balancer:", "  listener:", "    vip: 192.168.0.147", "    interfaces: [eth0]", "  backends:", "    - {name: '192.168.0.7:4789', address: 192.168.0.6}", "    - {address: 192.168.0.7}"), []string{`load_balancer.backends[1]: has no name, so it is named by its address:port "192.168.0.7:4789", the name of backends[0]: give backends[0] another name, or backends[1] one (line 7)`}},
		{"backend name too long", with(lbBase, 0, "    - {name: collector-frankfurt-rack12-host-b, address: 192.168.0.7}"), []string{`load_balancer.backends[1].name: "collector-frankfurt-rack12-host-b" is 33 bytes, at most 31 (what the load balancer's tables, ` + "`lb status`" + ` and metrics keep) (line 7)`}},
		{"backend duplicate", with(lbBase, 0, "    - {address: 192.168.0.6, port: 4789}"), []string{"load_balancer.backends[1].address: 192.168.0.6:4789 is also the address of backends[0] (line 7)"}},
		{"backend broadcast", with(lbBase, 6, "    - address: 255.255.255.255"), []string{"load_balancer.backends[0].address: 255.255.255.255 is the broadcast address or reserved (240.0.0.0/4): backends must be unicast addresses of other hosts (line 6)"}},
		{"backend unspecified", with(lbBase, 6, "    - address: 0.0.0.0"), []string{"load_balancer.backends[0].address: 0.0.0.0 is the unspecified address: backends must be unicast addresses of other hosts (line 6)"}},
		{"backend loopback", with(lbBase, 6, "    - address: 127.0.0.1"), []string{"load_balancer.backends[0].address: 127.0.0.1 is a loopback address: backends must be unicast addresses of other hosts (line 6)"}},
		{"backend multicast", with(lbBase, 6, "    - address: 224.0.0.1"), []string{"load_balancer.backends[0].address: 224.0.0.1 is a multicast address: backends must be unicast addresses of other hosts (line 6)"}},
		{"backend is the vip", with(lbBase, 6, "    - address: 192.168.0.147"), []string{"load_balancer.backends[0].address: 192.168.0.147 is the listener's vip: the load balancer would send to itself (line 6)"}},
		{"bgp with wrr", with(lbBase, 0, "  bgp: {asn: 65001, router_id: 10.0.0.1, peers: [{address: 10.0.0.254, asn: 65000}]}"), []string{"load_balancer.algorithm: wrr keeps a connection table per node, so nodes behind ECMP would send one flow to different collectors: use maglev with bgp (line 1)"}},
		{"bgp fields", with(lbBase, 0, "  algorithm: maglev", "  bgp: {asn: 65001, hold_time: 2s, communities: [65001, \"1:70000\"], peers: [{address: 224.0.0.5, asn: 65000}]}"), []string{
			"load_balancer.bgp.communities[0]: must be a string, got integer 65001 (quote it) (line 8)",
			"load_balancer.bgp.router_id: required (line 8)",
			"load_balancer.bgp.hold_time: 2s must be whole seconds from 3s to 65535s (RFC 4271; 0, no keepalives, is not possible: the embedded GoBGP would offer 90s) (line 8)",
			"load_balancer.bgp.communities[1]: \"1:70000\" is not a community ASN:value (two numbers 0..65535) (line 8)",
			"load_balancer.bgp.peers[0].address: 224.0.0.5 is not a router's unicast IPv4 address (line 8)",
		}},
		// GoBGP offered its default of 90 s for 0 ("no keepalives"): a
		// router with a longer hold time kept a dead node for 90 s.
		{"bgp hold time 0", with(lbBase, 0, "  algorithm: maglev", "  bgp:", "    asn: 65001", "    router_id: 10.0.0.1", "    hold_time: 0s", "    peers: [{address: 10.0.0.254, asn: 65000}]"), []string{
			"load_balancer.bgp.hold_time: 0s must be whole seconds from 3s to 65535s (RFC 4271; 0, no keepalives, is not possible: the embedded GoBGP would offer 90s) (line 11)",
		}},
		// Two entries for one router passed check; the start failed (exit 1)
		// with GoBGP's "can't overwrite the existing peer", naming no line.
		{"bgp peer duplicate", with(lbBase, 0, "  algorithm: maglev", "  bgp:", "    asn: 65001", "    router_id: 10.0.0.1", "    peers:", "      - {address: 10.0.0.254, asn: 65000}", "      - {address: 10.0.0.254, asn: 65000, port: 1179}"), []string{
			"load_balancer.bgp.peers[1].address: 10.0.0.254 is also the address of peers[0]: one session per router (line 13)",
		}},
		{"bgp peers", with(lbBase, 0, "  algorithm: maglev", "  bgp: {asn: 65001, router_id: 10.0.0.1, peers: [{address: 10.0.0.254}]}"), []string{"load_balancer.bgp.peers[0].asn: required (line 8)"}},
		{"hc all unhealthy", with(lbBase, 0, "  health_check: {all_unhealthy: open}"), []string{`load_balancer.health_check.all_unhealthy: "open" is not one of fail-open, drop (line 7)`}},
		{"backend weight", with(lbBase, 0, "      weight: 101"), []string{"load_balancer.backends[0].weight: 101 is out of range 0..100 (line 7)"}},
		{"backend weight float", with(lbBase, 0, "      weight: 1.5"), []string{"load_balancer.backends[0].weight: must be an integer, got number 1.5 (line 7)"}},
		{"hc type", with(lbBase, 0, "  health_check: {type: icmp}"), []string{`load_balancer.health_check.type: "icmp" is not one of http, tcp (line 7)`}},
		{"hc path", with(lbBase, 0, "  health_check: {path: healthz}"), []string{`load_balancer.health_check.path: "healthz" must start with / (line 7)`}},
		{"hc timeout", with(lbBase, 0, "  health_check:", "    interval: 1s", "    timeout: 1s"), []string{"load_balancer.health_check.timeout: 1s must be shorter than interval 1s (line 9)"}},
		// The timeout is the default's: the message was about a timeout the file does not give.
		{"hc interval below the default timeout", with(lbBase, 0, "  health_check:", "    interval: 500ms"), []string{"load_balancer.health_check.interval: 500ms is not longer than the default timeout, 1s: give a timeout shorter than the interval (line 8)"}},
		{"hc interval bad", with(lbBase, 0, "  health_check: {interval: 2}"), []string{`load_balancer.health_check.interval: "2" is not a duration such as 500ms, 2s, 1h, 7d (line 7)`}},
		{"hc threshold", with(lbBase, 0, "  health_check:", "    healthy_threshold: 0"), []string{"load_balancer.health_check.healthy_threshold: 0 is out of range 1..1000 (line 8)"}},
		{"hc enabled", with(lbBase, 0, "  health_check: {enabled: 1}"), []string{"load_balancer.health_check.enabled: must be true or false, got integer 1 (line 7)"}},
		{"collector listen", with(colBase, 2, "  listen: 4789"), []string{"collector.listen: must be a string, got integer 4789 (quote it) (line 2)"}},
		{"collector listen no port", with(colBase, 2, "  listen: 0.0.0.0"), []string{`collector.listen: "0.0.0.0" is not host:port (line 2)`}},
		{"collector format", with(colBase, 0, "  format: erf"), []string{`collector.format: "erf" is not one of pcap, pcapng (line 3)`}},
		{"collector unknown vni", with(colBase, 0, "  unknown_vni: keep"), []string{`collector.unknown_vni: "keep" is not one of capture, drop (line 3)`}},
		{"collector receive", with(colBase, 0, "  receive: kernel"), []string{`collector.receive: "kernel" is not one of auto, xdp, socket (line 3)`}},
		{"collector xdp on every address", with(colBase, 0, "  receive: xdp"), []string{`collector.receive: xdp needs a listen address an interface holds; listen ":4789" is the wildcard (line 3)`}},
		{"collector xdp on 0.0.0.0", lines("collector:", "  listen: 0.0.0.0:4789", "  receive: xdp"), []string{`collector.receive: xdp needs a listen address an interface holds; listen "0.0.0.0:4789" is the wildcard (line 3)`}},
		{"collector readers", with(colBase, 0, "  readers: -1"), []string{"collector.readers: -1 is out of range 0..1024 (line 3)"}},
		{"collector session idle 0", with(colBase, 0, "  session_idle: 0s"), []string{"collector.session_idle: 0s must be positive (leave it out for the default, 5m) (line 3)"}},
		{"rotate size unit", with(colBase, 0, "  rotate: {size: 10XB}"), []string{`collector.rotate.size: "10XB" has unknown unit "XB" (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB) (line 3)`}},
		{"rotate size fraction", with(colBase, 0, "  rotate: {size: 1.5GiB}"), []string{`collector.rotate.size: "1.5GiB" has a fraction: sizes are whole numbers, give a smaller unit (1536MiB, not 1.5GiB) (line 3)`}},
		{"rotate size negative", with(colBase, 0, "  rotate: {size: -1}"), []string{`collector.rotate.size: "-1" is not a size such as 4096, 64KiB, 100MiB, 1GB (line 3)`}},
		{"rotate interval", with(colBase, 0, "  rotate:", "    interval: 1w"), []string{`collector.rotate.interval: "1w" is not a duration such as 500ms, 2s, 1h, 7d (line 4)`}},
		{"collector compress", with(colBase, 0, "  compress: zstd"), []string{`collector.compress: "zstd" is not one of none, gzip (line 3)`}},
		{"collector file mode", with(colBase, 0, "  file_mode: \"0440\""), []string{`collector.file_mode: 0440: the owner must be able to read and write (0600 at least) (line 3)`}},
		{"collector file mode octal", with(colBase, 0, "  file_mode: rw"), []string{`collector.file_mode: "rw" is not an octal mode such as 0640 (line 3)`}},
		// collect refused these (exit 2, no line) while check passed them
		{"collector file name without time", with(colBase, 0, "  file_name: '{session}-{host}'"), []string{`collector.file_name: "{session}-{host}" must contain {time} once (it orders and separates the files) (line 3)`}},
		{"collector file name time twice", with(colBase, 0, "  file_name: '{time}-{time}'"), []string{`collector.file_name: "{time}-{time}" must contain {time} once (it orders and separates the files) (line 3)`}},
		{"collector file name directory", with(colBase, 0, "  file_name: '{session}/{time}'"), []string{`collector.file_name: "{session}/{time}": only {session}, {host}, {vni}, {id}, {protocol}, {time} and letters, digits, '.', '_', '-' may be used (no '/') (line 3)`}},
		{"collector file name placeholder", with(colBase, 0, "  file_name: '{date}-{time}'"), []string{`collector.file_name: "{date}-{time}": only {session}, {host}, {vni}, {id}, {protocol}, {time} and letters, digits, '.', '_', '-' may be used (no '/') (line 3)`}},
		{"collector file name pieced", with(colBase, 0, "  file_name: '{time}{ti{host}me}'"), []string{`collector.file_name: "{time}{ti{host}me}": only {session}, {host}, {vni}, {id}, {protocol}, {time} and letters, digits, '.', '_', '-' may be used (no '/') (line 3)`}},
		{"collector file name hidden", with(colBase, 0, "  file_name: '.{session}-{time}'"), []string{`collector.file_name: ".{session}-{time}" must not start with '.' (hidden names are the files being written) (line 3)`}},
		{"collector file name long", with(colBase, 0, "  file_name: '{time}-"+strings.Repeat("x", 100)+"'"), []string{`collector.file_name: "{time}-` + strings.Repeat("x", 100) + `" has 101 bytes besides the placeholders, at most 100 (line 3)`}},
		{"collector tap", with(colBase, 0, "  tap: mirror-tap-{vni}"), []string{`collector.tap: "mirror-tap-{vni}" is not an interface name (at most 15 bytes with {vni} filled in, no '/' or space) (line 3)`}},
		{"rotate keep age days minus hours", with(colBase, 0, "  rotate: {keep_age: 1d-12h}"), []string{`collector.rotate.keep_age: "1d-12h" is negative (line 3)`}},
		{"rotate keep age too long", with(colBase, 0, "  rotate: {keep_age: 65535d2000000h}"), []string{`collector.rotate.keep_age: "65535d2000000h" is longer than 2562047h0m0s, the longest duration (line 3)`}},
		{"rotate keep age", with(colBase, 0, "  rotate: {keep_age: 1w}"), []string{`collector.rotate.keep_age: "1w" is not a duration such as 500ms, 2s, 1h, 7d (line 3)`}},
		{"rotate keep", with(colBase, 0, "  rotate:", "    keep: many"), []string{`collector.rotate.keep: must be an integer, got string "many" (line 4)`}},
		{"rotate unknown", with(colBase, 0, "  rotate: {count: 3}"), []string{"collector.rotate.count: unknown key (line 3)"}},
		{"input protocol", with(colBase, 0, "  inputs: [vxlan, sflow]"), []string{`collector.inputs[1].protocol: "sflow" is not one of vxlan, geneve, erspan, gre (line 3)`}},
		{"input port text", with(colBase, 0, "  inputs: [geneve:x]"), []string{`collector.inputs[0]: "geneve:x": port "x" is not a number 1..65535 (line 3)`}},
		{"input gre port", with(colBase, 0, "  inputs:", "    - {protocol: gre, port: 47}"), []string{`collector.inputs[0].port: gre is IP protocol 47: it has no port (line 4)`}},
		{"input vxlan port", with(colBase, 0, "  inputs: [vxlan:4790]"), []string{`collector.inputs[0].port: 4790: vxlan is received on collector.listen's port (4789); set the port there (line 3)`}},
		{"input geneve on vxlan port", with(colBase, 0, "  inputs: [vxlan, geneve:4789]"), []string{`collector.inputs[1].port: 4789 is collector.listen's port, where vxlan is received (line 3)`}},
		{"input twice", with(colBase, 0, "  inputs:", "    - gre", "    - erspan"), []string{`collector.inputs[1]: "erspan" is also collector.inputs[0] (erspan and gre are one input) (line 5)`}},
		{"input key", with(colBase, 0, "  inputs:", "    - {protocol: geneve, prot: 1}"), []string{`collector.inputs[0].prot: unknown key (line 4)`}},
		{"collector session id", with(colBase, 0, "  sessions:", "    - {name: sw, protocol: erspan, id: 1024}"), []string{`collector.sessions[0].id: 1024 is out of range 0..1023 for erspan (line 4)`}},
		{"collector session twice", with(colBase, 0, "  sessions:", "    - {name: a, protocol: geneve, id: 7}", "    - {name: b, protocol: geneve, id: 7}"),
			[]string{`collector.sessions[1].id: geneve 7 is also the session of collector.sessions[0] (line 5)`}},
		{"collector session protocol", with(colBase, 0, "  sessions:", "    - {name: a, protocol: vxlan-gpe, id: 7}"),
			[]string{`collector.sessions[0].protocol: "vxlan-gpe" is not one of vxlan, geneve, erspan, gre (line 4)`}},
		{"collector session required", with(colBase, 0, "  sessions:", "    - {name: a}"),
			[]string{`collector.sessions[0].protocol: required (line 4)`, `collector.sessions[0].id: required (line 4)`}},
		{"collector session name of sessions[]", lines("filters: [{name: f}]", "sessions:", "  - {name: s, priority: 1, vni: 1, filter: f, sources: [eth0], target: 10.0.0.1}",
			"collector:", "  sessions:", "    - {name: s, protocol: vxlan, id: 1}"),
			[]string{`collector.sessions[0].name: "s" is also the name of sessions[0] (line 6)`, `collector.sessions[0].id: vxlan 1 is also the session of sessions[0] (line 6)`}},
		// Both are the collector's: the second bind failed at start, exit 1.
		{"collector health on the metrics port", lines("collector:", "  health_listen: ':9090'", "metrics: {listen: '127.0.0.1:9090'}"),
			[]string{`collector.health_listen: ":9090" takes the TCP port of metrics.listen "127.0.0.1:9090", and xmirror collect serves both: give it another port (or off: metrics.listen answers /healthz too) (line 2)`}},
		{"metrics listen", lines("metrics:", "  listen: nowhere"), []string{`metrics.listen: "nowhere" is not host:port (line 2)`}},
		{"metrics unknown", lines("metrics:", "  port: 9090"), []string{"metrics.port: unknown key (line 2)"}},
		// An error of a field written through an alias is on the alias's line,
		// not on the anchor's, where the field's first use is.
		{"session repeated by an alias", lines("filters: [{name: f}]", "sessions:", "  - &s {name: s, priority: 1, vni: 1, filter: f, sources: [eth0], target: 10.0.0.1}", "  - *s"),
			[]string{`sessions[1].name: "s" is also the name of sessions[0] (line 4)`, "sessions[1].vni: 1 is also the VNI of sessions[0] (line 4)",
				"sessions[1].priority: 1 is also the priority of sessions[0] on source eth0 (unique per source interface) (line 4)"}},
		{"value error through an alias", lines("load_balancer:", "  listener: {vip: 192.168.0.147, interfaces: [eth0]}", "  backends:", "    - {address: 192.168.0.6, weight: &w 101}", "    - {address: 192.168.0.7, weight: *w}"),
			[]string{"load_balancer.backends[0].weight: 101 is out of range 0..100 (line 4)", "load_balancer.backends[1].weight: 101 is out of range 0..100 (line 5)"}},
		{"merge key", lines("base: &b {listen: ':1'}"), []string{"base: unknown key (line 1)"}},
		{"several at once", lines("sessions:", "  - {name: s, priority: 0, vni: 16777216, filter: f, sources: [eth0], target: 10.0.0.1}", "collector: {format: x}"),
			[]string{
				"sessions[0].priority: 0 is out of range 1..32766 (line 2)",
				"sessions[0].vni: 16777216 is out of range 0..16777215 (line 2)",
				`sessions[0].filter: "f" is not the name of a filter (line 2)`,
				`collector.format: "x" is not one of pcap, pcapng (line 3)`,
			}},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d invalid cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s\nparsed %+v", tc.yaml, cfg)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("for:\n%s\ngot:\n  %s\nwant:\n  %s", tc.yaml, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if cfg != nil {
				t.Error("config returned with errors")
			}
		})
	}
}

// TestBrokenExample checks that every mistake in examples/broken.yaml is reported
// with its path and line.
func TestBrokenExample(t *testing.T) {
	_, err := Load("examples/broken.yaml")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := []struct {
		path string
		line int
	}{
		{"filters[0].inbound[1].priority", 7},
		{"filters[0].inbound[2].action", 8},
		{"filters[0].inbound[3].destination_ports", 9},
		{"filters[0].inbound[4].source", 10},
		{"filters[0].inbound[5].source", 11},
		{"filters[0].inbound[6].destination_ports", 12},
		{"sessions[0].vni", 16},
		{"sessions[0].filter", 18},
		{"sessions[1].priority", 22},
		{"sessions[1].sources[1]", 25},
		{"sessions[1].target", 26},
		{"sessions[1].vnii", 27},
		{"load_balancer.listener.access_control.allowlist", 30},
		{"load_balancer.algorithm", 31},
		{"load_balancer.maglev_table_size", 32},
		{"load_balancer.backends[0].weight", 34},
		{"load_balancer.backends[1].address", 35},
		{"load_balancer.health_check.timeout", 36},
		{"collector.format", 38},
		{"collector.rotate.size", 39},
		{"collector.rotate.interval", 39},
		{"metrics.listen", 40},
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i := 0; i < len(errs) && i < len(want); i++ {
		if errs[i].Path != want[i].path || errs[i].Line != want[i].line {
			t.Errorf("error %d: got %s (line %d), want %s (line %d)", i, errs[i].Path, errs[i].Line, want[i].path, want[i].line)
		}
	}
	// The file's own comments mark each mistake: every commented line is reported.
	data, _ := os.ReadFile("examples/broken.yaml")
	reported := map[int]bool{}
	for _, e := range errs {
		reported[e.Line] = true
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "# ") && !strings.HasPrefix(strings.TrimSpace(l), "#") && !reported[i+1] {
			t.Errorf("line %d is marked as a mistake but not reported: %s", i+1, l)
		}
	}
}

// stripLines zeroes the Line fields, which differ between equal configs.
func stripLines(c *Config) *Config {
	c = c.clone()
	for i := range c.Filters {
		c.Filters[i].Line = 0
		for j := range c.Filters[i].Inbound {
			c.Filters[i].Inbound[j].Line = 0
		}
		for j := range c.Filters[i].Outbound {
			c.Filters[i].Outbound[j].Line = 0
		}
	}
	for i := range c.Sessions {
		c.Sessions[i].Line = 0
	}
	if c.Collector != nil {
		for i := range c.Collector.Inputs {
			c.Collector.Inputs[i].Line = 0
		}
		for i := range c.Collector.Sessions {
			c.Collector.Sessions[i].Line = 0
		}
	}
	if c.LoadBalancer != nil {
		c.LoadBalancer.Listener.Line = 0
		for i := range c.LoadBalancer.Backends {
			c.LoadBalancer.Backends[i].Line = 0
		}
		if g := c.LoadBalancer.BGP; g != nil {
			for i := range g.Peers {
				g.Peers[i].Line = 0
			}
		}
	}
	return c
}

func roundTrip(t testing.TB, cfg *Config) {
	t.Helper()
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("parse marshalled config: %v\n%s", err, out)
	}
	if a, b := stripLines(cfg), stripLines(again); !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip differs:\n%+v\n%+v\n%s", a, b, out)
	}
	out2, err := again.Marshal()
	if err != nil || string(out2) != string(out) {
		t.Fatalf("second marshal differs: %v\n%s\n%s", err, out, out2)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range []string{"examples/seed.yaml", "examples/full.yaml"} {
		t.Run(f, func(t *testing.T) { roundTrip(t, mustLoad(t, f)) })
	}
	empty, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, empty)
}

// TestMarshalForms checks that the effective config uses the YAML forms a user writes.
func TestMarshalForms(t *testing.T) {
	out, err := mustLoad(t, "examples/full.yaml").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"protocol: tcp", "protocol: icmpv6", "protocol: 47", "destination_ports: 80-443", "source_ports: all",
		"destination_ports: 53", "size: 100MiB", "keep_size: 10GiB", "interval: 1h", "flow_timeout: 30s",
		"mark: 0x786d6972", "sources: [eth0, eth1]",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("marshalled config lacks %q:\n%s", want, out)
		}
	}
}

// TestValidateGo covers configs built in Go, as other packages' tests do.
func TestValidateGo(t *testing.T) {
	cfg := &Config{
		Filters: []Filter{{Name: "f", Inbound: []Rule{{Priority: 1, Action: Accept, Protocol: ProtocolTCP,
			DestinationPorts: PortRange{1234, 1234}}}, Outbound: []Rule{{Priority: 1, Action: Accept, Protocol: ProtocolICMP}}}},
		Sessions: []Session{{Name: "s", Priority: 1, VNI: 1, Enabled: true, Filter: "f", Sources: []string{"veth0"}, Target: "127.0.0.1:4789"}},
		LoadBalancer: &LoadBalancer{
			Listener: Listener{VIP: netip.MustParseAddr("10.0.0.1"), Interfaces: []string{"eth0"}},
			Backends: []Backend{{Address: netip.MustParseAddr("10.0.0.2"), Weight: 1}},
		},
		Collector: &Collector{Listen: "127.0.0.1:0"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid Go config: %v", err)
	}
	before := stripLines(cfg)
	ApplyDefaults(cfg)
	if reflect.DeepEqual(before, stripLines(cfg)) {
		t.Error("ApplyDefaults changed nothing")
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("after ApplyDefaults: %v", err)
	}
	once := stripLines(cfg)
	ApplyDefaults(cfg)
	if !reflect.DeepEqual(once, stripLines(cfg)) {
		t.Error("ApplyDefaults is not idempotent")
	}
	if r := cfg.Filters[0].Outbound[0]; r.SourcePorts != AllPorts || r.Source.Bits() != 0 {
		t.Errorf("go rule defaults: %+v", r)
	}
	if cfg.Collector.Rotate != (Rotate{}) {
		t.Errorf("Go zero Rotate means no rotation, got %+v", cfg.Collector.Rotate)
	}
	roundTrip(t, cfg)

	cfg.Sessions[0].VNI = 1 << 24
	cfg.Sessions[0].Line = 12
	cfg.Filters[0].Outbound[0].DestinationPorts = PortRange{80, 80}
	err := cfg.Validate()
	want := "sessions[0].vni: 16777216 is out of range 0..16777215 (line 12)\n" +
		"filters[0].outbound[0].destination_ports: 80: port ranges need protocol tcp or udp, not icmp"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestValidateGoCollector: a collector section built in Go, as `xmirror
// collect` builds one from its flags, is held to the file's rules,
// including the ranges the file's decoder checks.
func TestValidateGoCollector(t *testing.T) {
	for _, c := range []struct {
		col  Collector
		want string
	}{
		{Collector{Listen: "127.0.0.1"}, `collector.listen: "127.0.0.1" is not host:port`},
		{Collector{Listen: "0.0.0.0:46000", Receive: ReceiveXDP}, `collector.receive: xdp needs a listen address an interface holds; listen "0.0.0.0:46000" is the wildcard`},
		{Collector{Listen: "[::]:46000", Receive: ReceiveXDP}, `collector.receive: xdp needs a listen address an interface holds; listen "[::]:46000" is the wildcard`},
		{Collector{Readers: 5000}, "collector.readers: 5000 is out of range 0..1024"},
		{Collector{MaxSessions: -1}, "collector.max_sessions: -1 is out of range 1..1048576"},
		{Collector{MaxSourceSeries: 1<<20 + 1}, "collector.max_source_series: 1048577 is out of range 1..1048576"},
		{Collector{FileName: "{session}/{time}"}, `collector.file_name: "{session}/{time}": only {session}, {host}, {vni}, {id}, {protocol}, {time} and letters, digits, '.', '_', '-' may be used (no '/')`},
	} {
		col := c.col
		if err := (&Config{Collector: &col}).Validate(); err == nil || err.Error() != c.want {
			t.Errorf("%+v: got %v, want %s", c.col, err, c.want)
		}
	}
	ok := Collector{Listen: "192.0.2.1:46000", Receive: ReceiveXDP, Readers: 1024, MaxSessions: 1}
	if err := (&Config{Collector: &ok}).Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

func TestLookups(t *testing.T) {
	cfg, err := Parse([]byte(`
filters: [{name: f}]
sessions:
  - {name: b, priority: 20, vni: 2, filter: f, sources: [eth0], target: "127.0.0.1:4789"}
  - {name: a, priority: 10, vni: 1, filter: f, sources: [eth0, eth1], target: localhost}
  - {name: c, priority: 5, vni: 3, enabled: false, filter: f, sources: [eth0], target: 10.0.0.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	on := cfg.SessionsOn("eth0")
	if len(on) != 2 || on[0].Name != "a" || on[1].Name != "b" {
		t.Errorf("SessionsOn: %+v", on)
	}
	if cfg.SessionByName("c") == nil || cfg.SessionByName("zz") != nil || cfg.FilterByName("g") != nil || cfg.SessionByVNI(9) != nil {
		t.Error("lookups")
	}
	if ap, err := cfg.SessionByName("b").TargetAddrPort(); err != nil || ap.String() != "127.0.0.1:4789" {
		t.Errorf("target b: %v %v", ap, err)
	}
	// localhost resolves from /etc/hosts; only the loopback is involved.
	if ap, err := cfg.SessionByName("a").TargetAddrPort(); err != nil || !ap.Addr().IsLoopback() || ap.Port() != 4789 {
		t.Errorf("target a: %v %v", ap, err)
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"all", AllPorts, true}, {"ALL", AllPorts, true}, {"80", PortRange{80, 80}, true}, {"0", PortRange{}, true},
		{"1-65535", PortRange{1, 65535}, true}, {" 10 - 20 ", PortRange{10, 20}, true}, {"", PortRange{}, false},
		{"-", PortRange{}, false}, {"5-", PortRange{}, false}, {"65536", PortRange{}, false}, {"2-1", PortRange{}, false},
		{"1-2-3", PortRange{}, false}, {"+5", PortRange{}, false},
	} {
		got, err := ParsePortRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParsePortRange(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"4096", 4096, true}, {"4096B", 4096, true}, {"100MiB", 100 << 20, true}, {"1GB", 1e9, true},
		{"1g", 1e9, true}, {"2 GiB", 2 << 30, true}, {"64kib", 64 << 10, true}, {"1TB", 1e12, true},
		{"0", 0, true}, {"-1", 0, false}, {"MiB", 0, false}, {"1.5GiB", 0, false}, {"10XB", 0, false},
		{"9223372036854775807", 1<<63 - 1, true}, {"9223372036854775808", 0, false}, {"9999999TiB", 0, false},
	} {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseByteSize(%q) = %v, %v", tc.in, got, err)
		}
	}
	for b, s := range map[ByteSize]string{0: "0", 100 << 20: "100MiB", 1e9: "1GB", 4096: "4KiB", 1000: "1KB", 1001: "1001", 3 << 40: "3TiB"} {
		if b.String() != s {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), b.String(), s)
		}
	}
	for d, s := range map[time.Duration]string{0: "0s", time.Hour: "1h", 90 * time.Minute: "90m", 2 * time.Second: "2s",
		1500 * time.Millisecond: "1500ms", 3 * time.Microsecond: "3us", 7: "7ns"} {
		if got := Duration(d).String(); got != s {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, s)
		}
		if back, err := ParseDuration(s); err != nil || back.D() != d {
			t.Errorf("ParseDuration(%q) = %v, %v", s, back, err)
		}
	}
	for s, want := range map[string]Protocol{"tcp": 6, "UDP": 17, "icmp": 1, "icmpv6": 58, "all": -1, "0": 0, "255": 255, "47": 47} {
		if p, err := ParseProtocol(s); err != nil || p != want {
			t.Errorf("ParseProtocol(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"256", "-1", "sctpx", ""} {
		if _, err := ParseProtocol(s); err == nil {
			t.Errorf("ParseProtocol(%q) succeeded", s)
		}
	}
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		ok   bool
	}{
		{"192.168.0.147", "192.168.0.147", 4789, true}, {"192.168.0.147:1", "192.168.0.147", 1, true},
		{"collector-1.example.com", "collector-1.example.com", 4789, true}, {"lb:4790", "lb", 4790, true},
		{"1.2.3", "", 0, false}, {"-bad.example", "", 0, false}, {"::1", "", 0, false}, {"host:", "", 0, false},
		{"a..b", "", 0, false}, {"x:65536", "", 0, false},
	} {
		h, p, err := SplitTarget(tc.in)
		if (err == nil) != tc.ok || h != tc.host || p != tc.port {
			t.Errorf("SplitTarget(%q) = %q, %d, %v", tc.in, h, p, err)
		}
	}
}

func TestAliasesAndBudget(t *testing.T) {
	cfg, err := Parse([]byte(`
filters:
  - name: f
    inbound: &rules [{priority: 1, action: accept}]
    outbound: *rules
`))
	if err != nil || len(cfg.Filters[0].Outbound) != 1 {
		t.Fatalf("aliases: %v %+v", err, cfg)
	}
	// A "billion laughs" document must fail fast, not expand: 1000 aliases of a
	// filter with 1000 aliased rules would be a million rules from 10 KB.
	var b strings.Builder
	b.WriteString("filters:\n  - &f {name: a, inbound: [&r {priority: 1, action: accept}")
	b.WriteString(strings.Repeat(", *r", 999))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *f\n", 999))
	_, err = Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large or too deeply aliased") {
		t.Errorf("billion laughs: %.300v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"examples/seed.yaml", "examples/full.yaml", "examples/broken.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("filters: [{name: f, inbound: [{priority: 1, action: accept, protocol: 0, source_ports: 0}]}]"))
	f.Add([]byte("collector: {rotate: {size: 0}}\nmetrics: {listen: 'off'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		roundTrip(t, cfg)
	})
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"all", "80", "1-65535", "90-80", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.From > r.To {
			t.Fatalf("%q gave reversed range %v", s, r)
		}
		if back, err := ParsePortRange(r.String()); err != nil || back != r {
			t.Fatalf("%q -> %v -> %v, %v", s, r, back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"2s", "7d", "1d12h", "90m", "-1d", "d", "99999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q gave negative %v", s, d)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Fatalf("%q -> %v -> %v, %v", s, d, back, err)
		}
	})
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"4096", "100MiB", "1GB", "1.5G", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("%q gave negative %d", s, b)
		}
		if back, err := ParseByteSize(b.String()); err != nil || back != b {
			t.Fatalf("%q -> %v -> %v, %v", s, b, back, err)
		}
	})
}

// TestCollectorInputs: inputs as strings and mappings, GENEVE's default
// port, collector.sessions, and the round trip through Marshal.
func TestCollectorInputs(t *testing.T) {
	cfg, err := Parse([]byte(lines(
		"collector:",
		"  inputs: [vxlan, \"geneve:6082\", {protocol: geneve}, erspan]",
		"  sessions:",
		"    - {name: gwlb, protocol: geneve, id: 7}",
		"    - {name: sw, protocol: erspan, id: 1023, packet_length: 128}",
		"    - {name: old, protocol: gre, id: 4294967295}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Input{{Protocol: ProtocolVXLAN}, {Protocol: ProtocolGENEVE, Port: 6082}, {Protocol: ProtocolGENEVE, Port: DefaultGENEVEPort}, {Protocol: ProtocolERSPAN}}
	if got := stripLines(cfg).Collector.Inputs; !reflect.DeepEqual(got, want) {
		t.Errorf("inputs %+v, want %+v", got, want)
	}
	if s := cfg.Collector.Sessions; len(s) != 3 || s[1] != (CollectorSession{Name: "sw", Protocol: ProtocolERSPAN, ID: 1023, PacketLength: 128, Line: 5}) {
		t.Errorf("sessions %+v", s)
	}
	roundTrip(t, cfg)
}
