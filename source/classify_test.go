// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// testSource loads the programs in decision-recording mode with cfg compiled
// for the loopback device (BPF_PROG_TEST_RUN runs packets as if received on
// lo, ifindex 1). Sources named anything else get ifindex 1000+.
func testSource(t testing.TB, cfg *config.Config) *Source {
	t.Helper()
	return loadTestSource(t, cfg, sourceXmDatapathXM_DATAPATH_KERNEL, Options{RecordDecision: true})
}

// loadTestSource loads the programs for datapath
// with cfg compiled for lo, without attaching them or starting a sender.
func loadTestSource(t testing.TB, cfg *config.Config, datapath sourceXmDatapath, opts Options) *Source {
	t.Helper()
	labtest.RequireRoot(t)
	s := &Source{links: map[uint32][2]hook{}, ids: map[string]uint16{}, noAttach: true, mark: config.DefaultMark,
		dp: programsOnly{datapath}}
	if err := s.load(opts.RecordDecision, opts.MaxDelay, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.assignIDs(cfg); err != nil {
		t.Fatal(err)
	}
	prog, err := compile(cfg, fakeResolved(cfg), s.ids)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if err := s.apply(prog); err != nil {
		t.Fatalf("apply: %v", err)
	}
	s.cfg = cfg
	return s
}

// programsOnly stands in for a datapath in tests of the programs alone: it
// sets the datapath the programs switch on, and sends nothing.
type programsOnly struct{ kind sourceXmDatapath }

func (p programsOnly) name() string { return "programs only" }
func (p programsOnly) fill(st *sourceState) {
	st.Datapath = p.kind
	pr := localPortRange()
	st.PortMin, st.PortRange = pr.min, pr.span
}
func (p programsOnly) running(*Program)          {}
func (p programsOnly) errors(uint16, int) uint64 { return 0 }
func (p programsOnly) writeMetrics(w io.Writer)  {}
func (p programsOnly) close() error              { return nil }

func fakeResolved(cfg *config.Config) *Resolved {
	res := &Resolved{Ifindex: map[string]int{}, Local: map[string]netip.Addr{}, Target: map[string]netip.Addr{}, PathMTU: map[string]int{}}
	next := 1000
	for _, s := range cfg.Sessions {
		for _, ifname := range s.Sources {
			if _, ok := res.Ifindex[ifname]; ok {
				continue
			}
			if ifname == "lo" {
				res.Ifindex[ifname] = 1
			} else {
				res.Ifindex[ifname] = next
				next++
			}
			res.Local[ifname] = netip.MustParseAddr("10.255.0.1")
		}
		res.Target[s.Name] = netip.MustParseAddr("10.255.0.2")
		res.PathMTU[s.Name] = 1500
	}
	return res
}

// decide runs frame through the direction's program and returns the name of
// the session that would mirror it ("" for none).
func decide(t testing.TB, s *Source, dir int, frame []byte) string {
	t.Helper()
	ncpu := ebpf.MustPossibleCPU()
	if err := s.objs.XmDecision.Put(uint32(0), make([]sourceDecision, ncpu)); err != nil {
		t.Fatal(err)
	}
	prog := s.objs.XmSourceIngress
	if dir == dirOut {
		prog = s.objs.XmSourceEgress
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if int32(ret) != -1 {
		t.Fatalf("program returned %d, want -1 (TC_ACT_UNSPEC: the original always continues)", int32(ret))
	}
	per := make([]sourceDecision, ncpu)
	if err := s.objs.XmDecision.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	for _, d := range per {
		if d.Packets == 0 {
			continue
		}
		if d.Dir != uint32(dir) {
			t.Fatalf("decision recorded direction %d, want %d", d.Dir, dir)
		}
		if d.Session < 0 {
			return ""
		}
		for name, id := range s.ids {
			if int32(id) == d.Session {
				return name
			}
		}
		t.Fatalf("decision for unknown session id %d", d.Session)
	}
	return "" // not classified at all (not IP): not mirrored
}

func mustParse(t testing.TB, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, y)
	}
	return cfg
}

// oneSession is a config with one session on lo using the given rules.
func oneSession(inbound, outbound string) string {
	return fmt.Sprintf(`
filters:
  - name: f
    inbound: [%s]
    outbound: [%s]
sessions:
  - {name: s1, priority: 1, vni: 1, packet_length: 96, filter: f, sources: [lo], target: 10.255.0.2}
`, inbound, outbound)
}

type decideCase struct {
	name  string
	dir   int
	frame []byte
	want  string
}

func runCases(t *testing.T, s *Source, cases []decideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decide(t, s, c.dir, c.frame); got != c.want {
				t.Errorf("mirrored by %q, want %q", got, c.want)
			}
		})
	}
}

func TestClassifySeedFilter(t *testing.T) {
	cfg := mustParse(t, strings.Replace(seedYAML, "sources: [eth0]", "sources: [lo]", 1))
	s := testSource(t, cfg)
	const sess = "mirror-session-01"
	runCases(t, s, []decideCase{
		{"inbound data to 1234", dirIn, tcp4(t, testIP, sourceIP, 57032, 1234, 15), sess},
		{"inbound to another port", dirIn, tcp4(t, testIP, sourceIP, 57032, 1235, 15), ""},
		{"inbound from another host", dirIn, tcp4(t, "192.168.0.162", sourceIP, 57032, 1234, 15), ""},
		{"inbound udp to 1234", dirIn, udp4(t, testIP, sourceIP, 57032, 1234, 15), ""},
		{"inbound icmp", dirIn, icmp4(t, testIP, sourceIP), ""},
		{"outbound reply from 1234", dirOut, tcp4(t, sourceIP, testIP, 1234, 57032, 15), sess},
		{"outbound direction uses outbound rules", dirOut, tcp4(t, testIP, sourceIP, 57032, 1234, 15), ""},
		{"inbound direction uses inbound rules", dirIn, tcp4(t, sourceIP, testIP, 1234, 57032, 15), ""},
		{"arp", dirIn, arp(t), ""},
		{"ipv6 tcp", dirIn, tcp6(t, "fd00::161", "fd00::230", 57032, 1234), ""},
	})
}

func TestClassifyFields(t *testing.T) {
	cfg := mustParse(t, oneSession(`
      {priority: 10, action: accept, protocol: udp, source: 10.1.0.0/16, source_ports: 1000-2000, destination_ports: 53},
      {priority: 20, action: accept, protocol: 47},
      {priority: 30, action: accept, protocol: icmp, destination: 10.9.9.0/24},
      {priority: 40, action: accept, protocol: tcp, ethertype: ipv6, source: "fd00:1::/64", destination_ports: 443},
      {priority: 50, action: accept, protocol: icmpv6, ethertype: ipv6}`, ``))
	// The config refuses port ranges on protocol all; the data path must still
	// treat such a rule as tcp/udp-only, so it is added here directly.
	cfg.Filters[0].Inbound = append(cfg.Filters[0].Inbound, config.Rule{
		Priority: 60, Action: config.Accept, Protocol: config.ProtocolAll, EtherType: config.IPv4,
		Source: netip.MustParsePrefix("10.7.0.0/16"), SourcePorts: config.PortRange{From: 7000, To: 7000},
	})
	s := testSource(t, cfg)
	runCases(t, s, []decideCase{
		{"udp in range", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 1500, 53, 4), "s1"},
		{"udp at range start", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 1000, 53, 4), "s1"},
		{"udp at range end", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 2000, 53, 4), "s1"},
		{"udp below range", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 999, 53, 4), ""},
		{"udp above range", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 2001, 53, 4), ""},
		{"udp wrong destination port", dirIn, udp4(t, "10.1.2.3", "10.0.0.1", 1500, 54, 4), ""},
		{"udp outside source cidr", dirIn, udp4(t, "10.2.2.3", "10.0.0.1", 1500, 53, 4), ""},
		{"tcp is not udp", dirIn, tcp4(t, "10.1.2.3", "10.0.0.1", 1500, 53, 4), ""},
		{"protocol number 47", dirIn, gre4(t, "10.3.0.1", "10.4.0.1"), "s1"},
		{"icmp to cidr", dirIn, icmp4(t, "10.3.0.1", "10.9.9.200"), "s1"},
		{"icmp outside cidr", dirIn, icmp4(t, "10.3.0.1", "10.9.10.1"), ""},
		{"ipv6 tcp port 443", dirIn, tcp6(t, "fd00:1::5", "fd00:2::1", 40000, 443), "s1"},
		{"ipv6 behind hop-by-hop", dirIn, tcp6HopByHop(t, "fd00:1::5", "fd00:2::1", 40000, 443), "s1"},
		{"ipv6 wrong port", dirIn, tcp6(t, "fd00:1::5", "fd00:2::1", 40000, 444), ""},
		{"ipv6 outside cidr", dirIn, tcp6(t, "fd00:1:0:1::5", "fd00:2::1", 40000, 443), ""},
		{"icmpv6", dirIn, icmp6(t, "fd00:9::1", "fd00:9::2"), "s1"},
		{"ports on protocol all: udp matches", dirIn, udp4(t, "10.7.1.1", "10.0.0.1", 7000, 9, 4), "s1"},
		{"ports on protocol all: tcp matches", dirIn, tcp4(t, "10.7.1.1", "10.0.0.1", 7000, 9, 4), "s1"},
		{"ports on protocol all: icmp has no ports", dirIn, icmp4(t, "10.7.1.1", "10.0.0.1"), ""},
		{"ports on protocol all: gre has no ports", dirIn, gre4(t, "10.7.1.1", "10.0.0.1"), "s1"}, // rule 20 (protocol 47) accepts it
		{"non-first fragment has no ports", dirIn, frag4(t, "10.7.1.1", "10.0.0.1"), ""},
		{"no rules outbound", dirOut, udp4(t, "10.1.2.3", "10.0.0.1", 1500, 53, 4), ""},
	})
}

func TestClassifyPriorities(t *testing.T) {
	// Rules listed out of order: priority decides, not the file's order.
	cfg := mustParse(t, `
filters:
  - name: web
    inbound:
      - {priority: 20, action: accept, protocol: tcp}
      - {priority: 10, action: reject, protocol: tcp, destination_ports: 80}
  - name: port80
    inbound:
      - {priority: 1, action: accept, protocol: tcp, destination_ports: 80-89}
  - name: rejectall
    inbound:
      - {priority: 1, action: reject, protocol: all}
      - {priority: 2, action: accept, protocol: all}
  - name: udp
    inbound:
      - {priority: 5, action: accept, protocol: udp}
sessions:
  - {name: low, priority: 30, vni: 3, filter: web, sources: [lo], target: 10.255.0.2}
  - {name: high, priority: 10, vni: 1, filter: port80, sources: [lo], target: 10.255.0.2}
  - {name: blocker, priority: 5, vni: 5, filter: rejectall, sources: [lo], target: 10.255.0.2}
  - {name: other-if, priority: 1, vni: 9, filter: udp, sources: [eth9], target: 10.255.0.2}
  - {name: disabled, priority: 2, vni: 2, enabled: false, filter: udp, sources: [lo], target: 10.255.0.2}
  - {name: udp-late, priority: 40, vni: 4, filter: udp, sources: [lo], target: 10.255.0.2}
`)
	s := testSource(t, cfg)
	runCases(t, s, []decideCase{
		// blocker rejects everything, so each packet falls through to the next session.
		{"higher-priority session wins", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 81, 0), "high"},
		{"reject before accept in one session, next session accepts", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 80, 0), "high"},
		{"first session's reject, later session's accept", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 22, 0), "low"},
		{"other interface and disabled sessions are skipped", dirIn, udp4(t, "10.0.0.2", "10.0.0.1", 5000, 53, 0), "udp-late"},
		{"no session accepts", dirIn, icmp4(t, "10.0.0.2", "10.0.0.1"), ""},
	})
}

func TestClassifyManyRules(t *testing.T) {
	// 5000 rules that do not match, then one that does: the walk reaches it.
	var b strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&b, "{priority: %d, action: accept, protocol: tcp, destination_ports: %d},\n", i, 10000+i)
	}
	b.WriteString("{priority: 6000, action: accept, protocol: tcp, destination_ports: 1234}")
	s := testSource(t, mustParse(t, oneSession(b.String(), "")))
	runCases(t, s, []decideCase{
		{"last of 5001", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 1234, 0), "s1"},
		{"in the middle", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 12500, 0), "s1"},
		{"none of 5001", dirIn, tcp4(t, "10.0.0.2", "10.0.0.1", 5000, 1, 0), ""},
	})
}

// TestIPv4HeaderPaths: the IPv4 header and the ports are read in place from
// the linear part of the packet; options move the ports, ports beyond the
// frame fall back to bpf_skb_load_bytes (which finds none: addresses only),
// and later fragments have none.
func TestIPv4HeaderPaths(t *testing.T) {
	s := testSource(t, mustParse(t, oneSession(`{priority: 1, action: accept, protocol: tcp, destination_ports: 1234}`, "")))
	withOptions := func(dport uint16) []byte {
		ip := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
		ip.IHL = 6
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		tc := &layers.TCP{SrcPort: 5000, DstPort: layers.TCPPort(dport), ACK: true, Window: 512}
		tc.SetNetworkLayerForChecksum(ip)
		return frame(t, eth(layers.EthernetTypeIPv4), ip, tc, payload(10))
	}
	plain := tcp4(t, "10.0.0.1", "10.0.0.2", 5000, 1234, 10)
	fragment := append([]byte(nil), plain...)
	fragment[14+6] = 0x00 // a later fragment: offset 8, so no ports
	fragment[14+7] = 0x01
	for _, c := range []decideCase{
		{"in place", dirIn, plain, "s1"},
		{"in place, other port", dirIn, tcp4(t, "10.0.0.1", "10.0.0.2", 5000, 80, 10), ""},
		{"options", dirIn, withOptions(1234), "s1"},
		{"options, other port", dirIn, withOptions(80), ""},
		{"ports cut off", dirIn, plain[:14+20+2], ""},
		{"later fragment", dirIn, fragment, ""},
	} {
		if got := decide(t, s, c.dir, c.frame); got != c.want {
			t.Errorf("%s: mirrored by %q, want %q", c.name, got, c.want)
		}
	}
}
