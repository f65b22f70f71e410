// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
)

// tagContext is a BPF_PROG_TEST_RUN context for the xm_test_vlan_*
// programs: the tag they give the frame in metadata in cb[0] (TPID << 16 |
// TCI), and the mark.
func tagContext(tg vtag, mark uint32) skbPortContext {
	ctx := skbPortContext{skbContext: skbContext{Mark: mark}}
	ctx.Cb[0] = uint32(tg.tpid)<<16 | uint32(tg.vid)
	return ctx
}

// loadTestPrograms loads the test-only programs of bpf/source_test.c over
// every map of s.
func loadTestPrograms(t *testing.T, s *Source) *sourcetestPrograms {
	t.Helper()
	spec, err := loadSourcetest()
	if err != nil {
		t.Fatal(err)
	}
	m := s.objs.sourceMaps
	var objs sourcetestPrograms
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"xm_state": m.XmState, "xm_rules": m.XmRules, "xm_sessions": m.XmSessions, "xm_ifaces": m.XmIfaces,
		"xm_targets": m.XmTargets, "xm_hops": m.XmHops, "xm_counters": m.XmCounters, "xm_buckets": m.XmBuckets,
		"xm_events": m.XmEvents, "xm_ring": m.XmRing, "xm_decision": m.XmDecision,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// TestClassifyVLAN: rules match the IPv4 or IPv6 packet behind one or two
// VLAN tags in the frame's data (802.1Q, 802.1ad QinQ), as a packet socket
// sends them or as the inner tag of QinQ arrives. Before, the parser read
// skb->protocol, saw 0x8100 and gave up: no tagged frame was mirrored.
func TestClassifyVLAN(t *testing.T) {
	s := testSource(t, mustParse(t, oneSession(`
      {priority: 1, action: accept, protocol: tcp, destination_ports: 1234},
      {priority: 2, action: accept, protocol: udp, source: 10.1.0.0/16, destination_ports: 53},
      {priority: 3, action: accept, protocol: tcp, ethertype: ipv6, destination_ports: 443}`,
		`{priority: 1, action: accept, protocol: tcp, source_ports: 1234}`)))
	tcp := tcp4(t, "10.0.0.1", "10.0.0.2", 40000, 1234, 10)
	fragment := withTags(tcp, ctag)
	fragment[18+6], fragment[18+7] = 0, 1 // a later fragment: no ports
	runCases(t, s, []decideCase{
		{"802.1Q tcp", dirIn, withTags(tcp, ctag), "s1"},
		{"802.1Q tcp, other port", dirIn, withTags(tcp4(t, "10.0.0.1", "10.0.0.2", 40000, 1235, 10), ctag), ""},
		{"802.1ad tcp", dirIn, withTags(tcp, stag), "s1"},
		{"QinQ udp", dirIn, withTags(udp4(t, "10.1.2.3", "10.0.0.2", 5000, 53, 10), stag, ctag), "s1"},
		{"QinQ udp, source outside cidr", dirIn, withTags(udp4(t, "10.2.2.3", "10.0.0.2", 5000, 53, 10), stag, ctag), ""},
		{"802.1Q 802.1Q (two C-tags)", dirIn, withTags(tcp, ctag, ctag), "s1"},
		{"802.1Q ipv6 tcp", dirIn, withTags(tcp6(t, "fd00::1", "fd00::2", 40000, 443), ctag), "s1"},
		{"QinQ ipv6 behind hop-by-hop", dirIn, withTags(tcp6HopByHop(t, "fd00::1", "fd00::2", 40000, 443), stag, ctag), "s1"},
		{"three tags: not looked behind", dirIn, withTags(tcp, stag, ctag, ctag), ""},
		{"802.1Q arp", dirIn, withTags(arp(t), ctag), ""},
		{"802.1Q, ports cut off", dirIn, withTags(tcp, ctag)[:18+20+2], ""},
		{"802.1Q, tag cut off", dirIn, withTags(tcp, ctag)[:16], ""},
		{"802.1Q, later fragment", dirIn, fragment, ""},
		{"802.1Q outbound", dirOut, withTags(tcp4(t, "10.0.0.2", "10.0.0.1", 1234, 40000, 10), ctag), "s1"},
		{"QinQ outbound", dirOut, withTags(tcp4(t, "10.0.0.2", "10.0.0.1", 1234, 40000, 10), stag, ctag), "s1"},
	})
}

// TestVLANNotSelfMirrored: mirrored traffic behind tags is still
// recognised (is_mirror reads the ICMP quote at the offset the tags move),
// and other traffic behind tags is mirrored.
func TestVLANNotSelfMirrored(t *testing.T) {
	s := testSource(t, mustParse(t, oneSession(`{priority: 1, action: accept, protocol: all}`, `{priority: 1, action: accept, protocol: all}`)))
	vxlan := func(tos uint8) []byte {
		ip := ip4(sourceIP, targetIP, layers.IPProtocolUDP)
		ip.TOS = tos
		u := &layers.UDP{SrcPort: 40000, DstPort: 4789}
		u.SetNetworkLayerForChecksum(ip)
		return frame(t, eth(layers.EthernetTypeIPv4), ip, u, payload(60))
	}
	icmpAbout := func(dport uint16) []byte {
		return frame(t, eth(layers.EthernetTypeIPv4), gopacket.Payload(icmpError(t, targetIP, targetIP, 3, 3, dport)))
	}
	runCases(t, s, []decideCase{
		{"tagged mirrored packet", dirOut, withTags(vxlan(mirrorTOS), ctag), ""},
		{"QinQ mirrored packet", dirOut, withTags(vxlan(mirrorTOS), stag, ctag), ""},
		{"tagged VXLAN of another overlay", dirOut, withTags(vxlan(0), ctag), "s1"},
		{"tagged ICMP error about a mirrored packet", dirIn, withTags(icmpAbout(4789), ctag), ""},
		{"QinQ ICMP error about a mirrored packet", dirIn, withTags(icmpAbout(4789), stag, ctag), ""},
		{"tagged ICMP error about something else", dirIn, withTags(icmpAbout(53), ctag), "s1"},
	})
}

// TestRedirectAboutMirroredNotMirrored: an ICMP redirect quoting a mirrored
// packet is xmirror's chatter too. A load balancer that hands a mirrored
// packet to its kernel (an unresolved neighbour, a UDP GSO run larger than
// the MTU in generic XDP) forwards it out of the interface it came in by,
// and the kernel answers the source with a redirect; a session mirroring
// ICMP wrote those redirects, each quoting a mirrored VXLAN packet.
func TestRedirectAboutMirroredNotMirrored(t *testing.T) {
	s := testSource(t, mustParse(t, oneSession(`{priority: 1, action: accept, protocol: all}`, `{priority: 1, action: accept, protocol: all}`)))
	about := func(typ, code uint8, dport uint16) []byte {
		return frame(t, eth(layers.EthernetTypeIPv4), gopacket.Payload(icmpError(t, targetIP, "10.255.0.9", typ, code, dport)))
	}
	runCases(t, s, []decideCase{
		{"redirect for host about a mirrored packet", dirIn, about(5, 1, 4789), ""},
		{"redirect for network about a mirrored packet", dirIn, about(5, 0, 4789), ""},
		{"tagged redirect about a mirrored packet", dirIn, withTags(about(5, 1, 4789), ctag), ""},
		{"redirect about something else", dirIn, about(5, 1, 53), "s1"},
	})
}

// ringVLANSession is ringSession with one more rule each way for IPv6.
func ringVLANSession(length int) string {
	both := "[{priority: 1, action: accept, protocol: all}, {priority: 2, action: accept, protocol: all, ethertype: ipv6}]"
	return strings.ReplaceAll(ringSession(length), "[{priority: 1, action: accept, protocol: all}]", both)
}

// TestRingVLAN: the ring's copy of a tagged frame is what tcpdump shows of
// it. A tag in the data is copied with the frame; a tag the kernel keeps in
// metadata (skb->vlan_present: every tagged frame at tc ingress, the outer
// one of QinQ; at egress below a VLAN device with tx offload) is inserted
// after the MAC addresses, and counts in the frame's length (cut at the
// session's length, cut counter). Before, the metadata tag was left out.
func TestRingVLAN(t *testing.T) {
	tcp := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	udp := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	short := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 52) // 94 bytes: 98 with the tag
	tiny := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 10)
	v6 := tcp6(t, "fd00::1", "fd00::2", 1234, 40000)
	for _, c := range []struct {
		name   string
		length int
		data   []byte // the frame's data
		meta   *vtag  // the tag in metadata
		want   []byte // what tcpdump -s length shows
	}{
		{"802.1Q in the data", 96, withTags(tcp, ctag), nil, withTags(tcp, ctag)[:96]},
		{"QinQ in the data", 96, withTags(udp, stag, ctag), nil, withTags(udp, stag, ctag)[:96]},
		{"802.1Q in metadata", 96, tcp, &ctag, withTags(tcp, ctag)[:96]},
		{"802.1ad in metadata", 96, tcp, &stag, withTags(tcp, stag)[:96]},
		{"QinQ: outer in metadata, inner in the data", 96, withTags(udp, ctag), &stag, withTags(udp, stag, ctag)[:96]},
		{"IPv6 802.1Q in metadata", 96, v6, &ctag, withTags(v6, ctag)[:96]},
		{"cut only with the tag", 96, short, &ctag, withTags(short, ctag)[:96]},
		{"short frame whole", 96, tiny, &ctag, withTags(tiny, ctag)},
		{"cut in the MACs' bytes", 14, tcp, &ctag, withTags(tcp, ctag)[:14]},
		{"cut at the tag's end", 16, tcp, &ctag, withTags(tcp, ctag)[:16]},
		{"cut just after the tag", 17, tcp, &ctag, withTags(tcp, ctag)[:17]},
		{"whole frame, larger record", 0, udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300), &ctag,
			withTags(udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300), ctag)},
		{"whole frame cut to the path MTU", 0, udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1500), &ctag,
			withTags(udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1500), ctag)[:1450]},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ringSource(t, mustParse(t, ringVLANSession(c.length)))
			progs := loadTestPrograms(t, s)
			for dir, prog := range []*ebpf.Program{s.objs.XmSourceIngress, s.objs.XmSourceEgress} {
				opts := &ebpf.RunOptions{Data: c.data}
				if c.meta != nil {
					prog = []*ebpf.Program{progs.XmTestVlanIngress, progs.XmTestVlanEgress}[dir]
					opts.Context = tagContext(*c.meta, 0)
				}
				if ret, err := prog.Run(opts); err != nil || int32(ret) != -1 {
					t.Fatalf("direction %d: returned %d, %v", dir, int32(ret), err)
				}
			}
			recs := readRing(t, s)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2 (one per direction)", len(recs))
			}
			for dir, raw := range recs {
				pkt, _, _, err := parseRingRecord(raw)
				if err != nil {
					t.Fatal(err)
				}
				if got := innerFrame(pkt); !bytes.Equal(got, c.want) {
					t.Errorf("direction %d: copy of %d bytes, tcpdump shows %d:\n %x\n %x", dir, len(got), len(c.want), got, c.want)
				}
				if !outerOK(pkt) {
					t.Errorf("direction %d: outer lengths do not cover the copy", dir)
				}
			}
			full := len(c.data)
			if c.meta != nil {
				full += 4
			}
			got := sumCounters(t, s, uint32(s.ids["s1"]))
			if wantCut := len(c.want) < full; got.Packets != 2 || (got.Cut == 2) != wantCut {
				t.Errorf("counters %+v, want 2 packets, cut: %v", got, wantCut)
			}
		})
	}
}

// TestDirectVLAN: a whole-frame copy of a frame with a tag in metadata
// takes the ring, not a direct send: the clone would leave with the tag in
// metadata, and the driver would put it on the outer frame. Before, it was
// cloned to the next hop (here a device that does not exist: an error).
func TestDirectVLAN(t *testing.T) {
	whole := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 1300)
	for _, c := range []struct {
		name   string
		data   []byte
		meta   *vtag
		direct bool
	}{
		{"untagged", whole, nil, true},
		{"802.1Q in metadata", whole, &ctag, false},
		{"802.1Q in the data", withTags(whole, ctag), nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ringSource(t, mustParse(t, ringSession(0)))
			progs := loadTestPrograms(t, s)
			h := directHop
			h.Ifindex = 0xfffff // no such device
			if err := s.objs.XmHops.Put(addrWord(netip.MustParseAddr("10.255.0.2")), h); err != nil {
				t.Fatal(err)
			}
			prog, opts := s.objs.XmSourceIngress, &ebpf.RunOptions{Data: c.data}
			if c.meta != nil {
				prog, opts.Context = progs.XmTestVlanIngress, tagContext(*c.meta, 0)
			}
			if _, err := prog.Run(opts); err != nil {
				t.Fatal(err)
			}
			recs := readRing(t, s)
			got := sumCounters(t, s, uint32(s.ids["s1"]))
			if c.direct && (len(recs) != 0 || got.Errors != 1) {
				t.Errorf("want a direct clone: %d ring records, counters %+v", len(recs), got)
			}
			if !c.direct && (len(recs) != 1 || got.Errors != 0) {
				t.Errorf("want the ring: %d ring records, counters %+v", len(recs), got)
			}
		})
	}
}

// TestPerfVLAN: datapath perf carries a tag in metadata in the sample's
// header, and the sender inserts it after the MAC addresses: the packet it
// builds is what tcpdump shows. Before, the tag was left out.
func TestPerfVLAN(t *testing.T) {
	tcp := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	short := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 52)
	for _, c := range []struct {
		name   string
		length int
		data   []byte
		meta   *vtag
		want   []byte
	}{
		{"untagged", 96, tcp, nil, tcp[:96]},
		{"802.1Q in the data", 96, withTags(tcp, ctag), nil, withTags(tcp, ctag)[:96]},
		{"802.1Q in metadata", 96, tcp, &ctag, withTags(tcp, ctag)[:96]},
		{"QinQ: outer in metadata, inner in the data", 96, withTags(tcp, ctag), &stag, withTags(tcp, stag, ctag)[:96]},
		{"cut only with the tag", 96, short, &ctag, withTags(short, ctag)[:96]},
		{"cut in the MACs' bytes", 14, tcp, &ctag, withTags(tcp, ctag)[:14]},
		{"cut just after the tag", 17, tcp, &ctag, withTags(tcp, ctag)[:17]},
		{"whole frame", 0, tcp, &ctag, withTags(tcp, ctag)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := loadTestSource(t, mustParse(t, ringSession(c.length)), sourceXmDatapathXM_DATAPATH_PERF, Options{})
			progs := loadTestPrograms(t, s)
			rd, err := perf.NewReader(s.objs.XmEvents, 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			prog, opts := s.objs.XmSourceIngress, &ebpf.RunOptions{Data: c.data}
			if c.meta != nil {
				prog, opts.Context = progs.XmTestVlanIngress, tagContext(*c.meta, 0)
			}
			if ret, err := prog.Run(opts); err != nil || int32(ret) != -1 {
				t.Fatalf("returned %d, %v", int32(ret), err)
			}
			rd.SetDeadline(time.Now().Add(time.Second))
			rec, err := rd.Read()
			if err != nil {
				t.Fatalf("read the sample: %v", err)
			}
			p := &perfPath{ports: localPortRange()}
			p.running(s.prog)
			b := &batch{}
			p.add(b, &rec)
			if b.n != 1 || p.lost.Load() != 0 {
				t.Fatalf("%d packets from the sample, %d lost", b.n, p.lost.Load())
			}
			if got := innerFrame(b.pkts[0]); !bytes.Equal(got, c.want) {
				t.Errorf("copy of %d bytes, tcpdump shows %d:\n %x\n %x", len(got), len(c.want), got, c.want)
			}
			if !outerOK(b.pkts[0]) {
				t.Error("outer lengths do not cover the copy")
			}
		})
	}
}

// TestTunnelVLAN: datapath kernel. The device a clone reaches has no VLAN
// tx offload, so the kernel inserts a tag in metadata into the frame after
// xm_tunnel (validate_xmit_vlan, before the vxlan driver): the cut leaves
// room for it, so the copy is the session's length with the tag, as
// tcpdump cuts it. Before, the copy was 4 bytes longer than the cut (and
// than the path MTU allows for a whole-frame session).
func TestTunnelVLAN(t *testing.T) {
	s := testSource(t, mustParse(t, oneSession(`{priority: 1, action: accept, protocol: all}`, ``)))
	progs := loadTestPrograms(t, s)
	id := uint32(s.ids["s1"])
	mark := markMagic | uint32(dirIn)<<26 | id<<16 | 1
	long := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	short := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 52) // 94 bytes, 98 with the tag
	tiny := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 10)
	for _, c := range []struct {
		name string
		data []byte
		want []byte // the clone's data when it leaves xm_tunnel
		cut  bool
	}{
		{"cut to leave room for the tag", long, long[:92], true},
		{"cut only with the tag", short, short[:92], true},
		{"short frame whole", tiny, tiny, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := sumCounters(t, s, id)
			opts := &ebpf.RunOptions{Data: c.data, DataOut: make([]byte, len(c.data)+256), Context: tagContext(ctag, mark)}
			ret, err := progs.XmTestVlanTunnel.Run(opts)
			if err != nil || int32(ret) != 0 {
				t.Fatalf("returned %d, %v; want 0 (TC_ACT_OK)", int32(ret), err)
			}
			if !bytes.Equal(opts.DataOut, c.want) {
				t.Errorf("clone of %d bytes, want %d:\n %x\n %x", len(opts.DataOut), len(c.want), opts.DataOut, c.want)
			}
			after := sumCounters(t, s, id)
			if (after.Cut == before.Cut+1) != c.cut || after.Packets != before.Packets+1 {
				t.Errorf("counters %+v -> %+v, cut: %v", before, after, c.cut)
			}
		})
	}
}

// vlanYAML mirrors TCP and UDP to ports 7000-7010 both ways, IPv4 and IPv6,
// cut to 96 bytes (or whole frames, with the line removed).
const vlanYAML = `
filters:
  - name: vlan
    inbound: &rules
      - {priority: 1, action: accept, protocol: tcp, ethertype: ipv4, destination_ports: 7000-7010}
      - {priority: 2, action: accept, protocol: udp, ethertype: ipv4, destination_ports: 7000-7010}
      - {priority: 3, action: accept, protocol: tcp, ethertype: ipv6, destination_ports: 7000-7010}
      - {priority: 4, action: accept, protocol: udp, ethertype: ipv6, destination_ports: 7000-7010}
    outbound: *rules
sessions:
  - {name: vlan, priority: 1, vni: 3, packet_length: 96, filter: vlan, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`

// TestVLANEquivalence: tagged frames on the mirrored interface are mirrored
// as `tcpdump -s LEN` shows them, in both directions, for every datapath:
// 802.1Q and QinQ frames sent to the source by a packet socket (at its tc
// ingress the kernel keeps the outer tag in metadata, the inner one of QinQ
// in the data), the same sent by the source through a packet socket (tags
// in the data), and UDP datagrams that leave with a tag in metadata (what a
// VLAN device with tx offload hands its lower device; xm_test_vlan_push
// stands in for it, since the test kernel has no 8021q). Before, inbound
// copies lacked their tag and outbound tagged frames were not mirrored.
// The ring with whole frames shows that tagged frames take the ring while
// untagged ones are still sent directly.
func TestVLANEquivalence(t *testing.T) {
	for _, dp := range Datapaths {
		for _, offload := range []bool{false, true} {
			t.Run(dp+"/"+map[bool]string{false: "offload-off", true: "offload-on"}[offload], func(t *testing.T) {
				testVLANEquivalence(t, dp, offload, 96)
			})
		}
	}
	t.Run("ring/whole-frames", func(t *testing.T) {
		testVLANEquivalence(t, DatapathRing, false, 1450)
	})
}

func testVLANEquivalence(t *testing.T, datapath string, offload bool, snap int) {
	lab := seedLab(t, offload)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	meta := vtag{layers.EthernetTypeDot1Q, 200}
	pushVLAN(t, src, 7002, meta)
	yaml := vlanYAML
	if snap != 96 {
		yaml = strings.Replace(yaml, "packet_length: 96, ", "", 1)
	}
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", strconv.Itoa(snap), "not", "(udp", "port", "4789)")
	if _, err := src.Run("ping", "-c1", "-W1", targetIP); err != nil {
		t.Fatal(err)
	}
	s := startSourceOpts(t, src, seedConfig(t, yaml), Options{Datapath: datapath, Attach: AttachTCX})
	if snap != 96 {
		waitDirectHop(t, s, targetIP)
	}

	in := func(f []byte, tags ...vtag) []byte { return withTags(macs(f, src.MAC, test.MAC), tags...) }
	out := func(f []byte, tags ...vtag) []byte { return withTags(macs(f, test.MAC, src.MAC), tags...) }
	sendFrames(t, test, [][]byte{
		in(tcp4(t, testIP, sourceIP, 40000, 7000, 300), ctag),
		in(udp4(t, testIP, sourceIP, 40001, 7001, 10), ctag),
		in(udp4(t, testIP, sourceIP, 40001, 7001, 52), ctag), // 98 bytes: cut only with its tag
		in(udp4(t, testIP, sourceIP, 40002, 7003, 300), stag, ctag),
		in(udp4(t, testIP, sourceIP, 40003, 7004, 300), stag),
		in(tcp6(t, "fd00::161", "fd00::230", 40004, 7000), ctag),
		in(udp4(t, testIP, sourceIP, 40005, 7005, 300)), // untagged
	})
	sendFrames(t, src, [][]byte{
		out(tcp4(t, sourceIP, testIP, 40000, 7000, 300), ctag),
		out(udp4(t, sourceIP, testIP, 40001, 7001, 10), stag, ctag),
		out(tcp6(t, "fd00::230", "fd00::161", 40004, 7000), ctag),
		out(udp4(t, sourceIP, testIP, 40005, 7005, 300)), // untagged
	})
	// Datagrams through the stack, tagged in metadata on the way out.
	inNS(t, src, func() error {
		u, err := net.Dial("udp4", testIP+":7002")
		if err != nil {
			return err
		}
		defer u.Close()
		for _, n := range []int{300, 52, 10} {
			if _, err := u.Write(payload(n)); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the ring's sender looks every 100 ms

	var want []gopacket.Packet
	for _, p := range atSource.packets(t) {
		if vlanTestPort(p) {
			want = append(want, p)
		}
	}
	got := atTarget.packets(t)
	if len(want) != 14 {
		for _, p := range want {
			t.Logf("tcpdump: %v", p)
		}
		t.Fatalf("tcpdump on the source saw %d of the 14 frames", len(want))
	}
	left := map[string]int{}
	tagged, cut := 0, 0
	for _, w := range want {
		left[string(w.Data())]++
		if w.Layer(layers.LayerTypeDot1Q) != nil {
			tagged++
		}
		if ci := w.Metadata().CaptureInfo; ci.Length > ci.CaptureLength {
			cut++
		}
	}
	t.Logf("%d frames in tcpdump's capture, %d of them tagged, %d cut; %d copies", len(want), tagged, cut, len(got))
	if tagged != 12 {
		t.Errorf("tcpdump shows %d of the frames tagged, want 12", tagged)
	}
	for i, p := range got {
		vni, inner, _, _ := decap(t, p)
		if vni != 3 {
			t.Errorf("copy %d: VNI %d", i, vni)
		}
		if left[string(inner)] == 0 {
			t.Errorf("copy %d not in tcpdump's capture:\n %x\n %s", i, inner, describe(inner))
			continue
		}
		left[string(inner)]--
	}
	for w, n := range left {
		if n > 0 {
			t.Errorf("seen by tcpdump, not mirrored (%d times):\n %x\n %s", n, []byte(w), describe([]byte(w)))
		}
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var sum struct{ packets, cut, errors, direct uint64 }
	for _, st := range stats {
		sum.packets += st.Packets
		sum.cut += st.Cut
		sum.errors += st.Errors
		sum.direct += st.Direct
	}
	// The frame's length counts a tag in metadata: the session cuts what
	// tcpdump cuts.
	if sum.packets != uint64(len(want)) || sum.cut != uint64(cut) || sum.errors != 0 {
		t.Errorf("counters: %d mirrored, %d cut, %d errors; want %d, %d, 0", sum.packets, sum.cut, sum.errors, len(want), cut)
	}
	if snap != 96 && sum.direct != 2 {
		t.Errorf("%d copies sent directly, want the 2 untagged frames'", sum.direct)
	}
}

// vlanTestPort says whether p is one of testVLANEquivalence's frames: its
// first TCP or UDP header has a destination port in 7000-7010 (not ICMP
// errors quoting one).
func vlanTestPort(p gopacket.Packet) bool {
	if p.Layer(layers.LayerTypeICMPv4) != nil || p.Layer(layers.LayerTypeICMPv6) != nil {
		return false
	}
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.TCP:
			return l.DstPort >= 7000 && l.DstPort <= 7010
		case *layers.UDP:
			return l.DstPort >= 7000 && l.DstPort <= 7010
		}
	}
	return false
}

// macs sets the frame's destination and source MAC addresses.
func macs(f []byte, dst, src net.HardwareAddr) []byte {
	copy(f[0:6], dst)
	copy(f[6:12], src)
	return f
}

// sendFrames sends frames as they are out of h's eth0 with a packet socket.
func sendFrames(t *testing.T, h *netlab.Host, frames [][]byte) {
	t.Helper()
	inNS(t, h, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: h.Ifindex, Halen: 6}
			copy(sa.Addr[:], f[0:6])
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
}

// pushVLAN attaches xm_test_vlan_push to the egress of h's eth0, ahead of
// any other program: IPv4 UDP datagrams to port leave with tag in metadata.
func pushVLAN(t *testing.T, h *netlab.Host, port uint16, tag vtag) {
	t.Helper()
	spec, err := loadSourcetest()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]uint32{"test_vlan_port": uint32(port), "test_vlan_tag": uint32(tag.tpid)<<16 | uint32(tag.vid)} {
		if err := spec.Variables[name].Set(v); err != nil {
			t.Fatal(err)
		}
	}
	var objs struct {
		Push *ebpf.Program `ebpf:"xm_test_vlan_push"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Push.Close() })
	inNS(t, h, func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: h.Ifindex, Program: objs.Push, Attach: ebpf.AttachTCXEgress, Anchor: link.Head()})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
}
