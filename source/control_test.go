// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
)

func TestRefusesBadConfig(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	for _, c := range []struct {
		name, from, to, want string
	}{
		{"unknown interface", "sources: [eth0]", "sources: [eth7]", `interface "eth7"`},
		{"target without route", "target: 192.168.0.147", "target: 10.20.30.40", "no route"},
		// config.Parse refuses it too (TestInvalid); New validates a
		// configuration built in Go the same way.
		{"target port other than the device's", "target: 192.168.0.147", `target: "192.168.0.147:4790"`, "port 4790"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := seedConfig(t, seedYAML)
			if strings.HasPrefix(c.to, "target: ") {
				cfg.Sessions[0].Target = strings.Trim(strings.TrimPrefix(c.to, "target: "), `"`)
			} else {
				cfg = seedConfig(t, strings.Replace(seedYAML, c.from, c.to, 1))
			}
			err := src.Do(func() error {
				s, err := New(cfg, Options{})
				if err == nil {
					s.Close()
				}
				return err
			})
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v; want an ErrConfig mentioning %q", err, c.want)
			}
			// Refused before anything was created.
			src.Do(func() error {
				if _, err := netlink.LinkByName(config.DefaultDevice); err == nil {
					t.Errorf("%s exists after a refused start", config.DefaultDevice)
				}
				return nil
			})
		})
	}
}

// TestHostErrorsNameTheKey: what the host refuses of the sessions (an
// interface it does not have, a target without a route) said "session
// mirror-session-01: interface "eth7": ..." with no key or line of the file,
// which every other configuration error gives. The key and the session's
// line follow now (the start's error and `check --system --role source`).
func TestHostErrorsNameTheKey(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	for _, c := range []struct{ from, to, want string }{
		{"sources: [eth0]", "sources: [eth0, eth7]", "(sessions[0].sources[1], the session at line "},
		{"target: 192.168.0.147", "target: 10.20.30.40", "(sessions[0].target, the session at line "},
	} {
		cfg := seedConfig(t, strings.Replace(seedYAML, c.from, c.to, 1))
		err := src.Do(func() error { return CheckHost(cfg) })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want the key %q", c.to, err, c.want)
		}
	}
}

// TestRefusesNonEthernetSource: a source interface without Ethernet
// headers (tun, WireGuard, IPIP: the programs see the IP header at offset 0)
// was attached and logged as mirrored while no packet of it ever matched a
// rule or reached the target. It is refused, naming the interface.
func TestRefusesNonEthernetSource(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	err := src.Do(func() error {
		tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun7"}, Mode: netlink.TUNTAP_MODE_TUN}
		if err := netlink.LinkAdd(tun); err != nil {
			t.Skipf("no tun device (%v): the check needs an interface without Ethernet headers", err)
		}
		l, err := netlink.LinkByName("tun7")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("10.78.0.1/32")
		if err := netlink.AddrAdd(l, addr); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		cfg := seedConfig(t, strings.Replace(seedYAML, "sources: [eth0]", "sources: [tun7]", 1))
		s, err := New(cfg, Options{})
		if err == nil {
			s.Close()
		}
		return err
	})
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "tun7 is not an Ethernet interface") {
		t.Fatalf("New: %v; want an ErrConfig saying tun7 is not an Ethernet interface", err)
	}
	// A release before this one started with it (mirroring nothing of it):
	// after an upgrade the refusal must say what to change in the file.
	if want := "remove tun7 from sessions[0].sources"; !strings.Contains(err.Error(), want) {
		t.Fatalf("New: %v; want it to say %q", err, want)
	}
}

// TestReloadSaysWhatItKeeps: source.mark and source.device keep the values
// the source started with. A reload that changed them logged only "mirror
// source reloaded", so the new mark looked applied while the tunnel packets
// still carried the old one. The log now names what was kept.
func TestReloadSaysWhatItKeeps(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	s := startSource(t, src, seedConfig(t, seedYAML))
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	next := seedConfig(t, seedYAML+"source: {mark: 0x1234, device: xm9}\n")
	if err := src.Do(func() error { return s.Reload(next) }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if s.mark != config.DefaultMark {
		t.Errorf("mark %#x after the reload, want the one started with", s.mark)
	}
	for _, want := range []string{"source.mark", "0x786d6972", "0x1234", "source.device", "xm9"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("reload log does not mention %q:\n%s", want, logs.String())
		}
	}
	// The same again: nothing new to say.
	logs.Reset()
	if err := src.Do(func() error { return s.Reload(seedConfig(t, seedYAML)) }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if strings.Contains(logs.String(), "source.mark") {
		t.Errorf("reload to the running mark warned:\n%s", logs.String())
	}
}

// TestReload switches filter, VNI and enabled sessions of a running source
// and checks that the programs stay attached (same TCX links) while the new
// rules take effect; Close removes everything.
func TestReload(t *testing.T) {
	for _, attach := range []string{AttachTCX, AttachTC} {
		t.Run(attach, func(t *testing.T) { testReload(t, attach) })
	}
}

func testReload(t *testing.T, attach string) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	s := startSourceOpts(t, src, seedConfig(t, seedYAML), Options{Attach: attach})
	// What is attached to eth0: TCX link ids, or the tc filters.
	linkIDs := func() []uint32 {
		var ids []uint32
		for _, l := range s.links {
			for _, x := range l {
				switch x := x.(type) {
				case link.Link:
					info, err := x.Info()
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, uint32(info.ID))
				case *tcFilter:
					// The same filter, not one added again.
					ids = append(ids, uint32(reflect.ValueOf(x).Pointer()))
				}
			}
		}
		return ids
	}
	before := linkIDs()
	src.Do(func() error {
		if attach == AttachTC {
			n := 0
			l, _ := netlink.LinkByIndex(src.Ifindex)
			for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
				fs, err := netlink.FilterList(l, parent)
				if err != nil {
					t.Error(err)
				}
				n += len(fs)
			}
			if n != 2 {
				t.Errorf("%d tc filters on eth0, want 2", n)
			}
			return nil
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: src.Ifindex, Attach: ebpf.AttachTCXIngress})
		if err != nil || len(res.Programs) != 1 {
			t.Errorf("tcx ingress on eth0: %v, %v; want one program", res, err)
		}
		return nil
	})

	// Mirror port 5678 with VNI 2 instead of 1234 with VNI 1.
	next := strings.NewReplacer("1234-1234", "5678", "vni: 1,", "vni: 2,").Replace(seedYAML)
	if err := src.Do(func() error { return s.Reload(seedConfig(t, next)) }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if after := linkIDs(); len(after) != len(before) || after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("links changed across reload: %v -> %v", before, after)
	}
	cap := startCapture(t, target, "target", "udp", "port", "4789")
	seedConversation(t, src, test) // port 1234: no longer mirrored
	noise(t, src, test)            // includes a TCP conversation on 5678
	got := cap.packets(t)
	if len(got) == 0 {
		t.Fatal("nothing mirrored after reload")
	}
	for i, p := range got {
		vni, inner, _, _ := decap(t, p)
		tcp := packetTCP(inner)
		if vni != 2 || tcp == nil || (tcp.SrcPort != 5678 && tcp.DstPort != 5678) {
			t.Errorf("packet %d after reload: vni %d %s", i, vni, describe(inner))
		}
	}

	// A bad reload keeps the running configuration.
	bad := strings.Replace(next, "sources: [eth0]", "sources: [nope0]", 1)
	if err := src.Do(func() error { return s.Reload(seedConfig(t, bad)) }); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad reload: %v, want ErrConfig", err)
	}
	// Disabling the only session detaches from eth0.
	off := strings.Replace(next, "enabled: true", "enabled: false", 1)
	if err := src.Do(func() error { return s.Reload(seedConfig(t, off)) }); err != nil {
		t.Fatalf("reload disabled: %v", err)
	}
	if len(s.links) != 0 {
		t.Errorf("%d interfaces still attached with every session disabled", len(s.links))
	}
	if err := src.Do(func() error { return s.Reload(seedConfig(t, seedYAML)) }); err != nil {
		t.Fatalf("reload enabled: %v", err)
	}
	if len(s.links) != 1 {
		t.Errorf("%d interfaces attached after re-enabling, want 1", len(s.links))
	}
}

func TestRateLimit(t *testing.T) {
	for _, dp := range Datapaths {
		t.Run(dp, func(t *testing.T) { testRateLimit(t, dp) })
	}
}

func testRateLimit(t *testing.T, datapath string) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	yaml := strings.Replace(mirrorAllYAML, "target: 192.168.0.147}", "target: 192.168.0.147, rate_limit: 5}", 1)
	yaml = strings.Replace(yaml, "protocol: all}]\n    outbound", "protocol: icmp}]\n    outbound", 1)
	yaml = strings.Replace(yaml, "outbound: [{priority: 1, action: accept, protocol: all}]", "outbound: []", 1)
	s := startSourceOpts(t, src, seedConfig(t, yaml), Options{Datapath: datapath})
	sinkVXLAN(t, target)
	cap := startCapture(t, target, "target", "udp", "port", "4789")
	// 40 echo requests in well under a second: the bucket holds 5.
	if out, err := test.Run("ping", "-c", "40", "-i", "0.002", "-W", "1", sourceIP); err != nil {
		t.Fatalf("ping: %v %s", err, out)
	}
	got := len(cap.packets(t))
	mirrored, _, limited := rateCounts(t, s)
	// A burst of 5 plus 5 per second over the ping's run time.
	if mirrored < 5 || mirrored > 12 || limited < 28 || mirrored+limited != 40 || uint64(got) != mirrored {
		t.Fatalf("mirrored %d (target got %d), rate-limited %d of 40 inbound echo requests", mirrored, got, limited)
	}
}

func packetTCP(frame []byte) *layers.TCP {
	p := gopacketDecode(frame)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	return tcp
}

// TestPathMTU checks that mirrored frames are cut to fit the route to the
// target (MTU 300 here) when the session keeps whole frames, never fragmented.
func TestPathMTU(t *testing.T) {
	for _, dp := range Datapaths {
		t.Run(dp, func(t *testing.T) { testPathMTU(t, dp) })
	}
}

func testPathMTU(t *testing.T, datapath string) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	if _, err := src.Run("ip", "route", "add", targetIP+"/32", "dev", "eth0", "mtu", "lock", "300"); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(seedYAML, "packet_length: 96", "packet_length: 0", 1)
	s := startSourceOpts(t, src, seedConfig(t, yaml), Options{Datapath: datapath})
	sinkVXLAN(t, target)
	cap := startCapture(t, target, "target", "udp", "port", "4789")
	bulk(t, src, test, 64<<10)
	got := cap.packets(t)
	if len(got) < 10 {
		t.Fatalf("only %d mirrored packets", len(got))
	}
	cut := 0
	for i, p := range got {
		_, inner, outer, _ := decap(t, p)
		if outer.Length > 300 || outer.Flags&layers.IPv4MoreFragments != 0 || outer.FragOffset != 0 {
			t.Fatalf("packet %d: outer length %d flags %v offset %d", i, outer.Length, outer.Flags, outer.FragOffset)
		}
		if len(inner) > 250 {
			t.Fatalf("packet %d: inner frame %d bytes, want <= 250", i, len(inner))
		}
		if len(inner) == 250 {
			cut++
		}
	}
	stats, _ := s.Stats()
	var counted uint64
	for _, st := range stats {
		counted += st.Cut
	}
	if cut == 0 || counted != uint64(cut) {
		t.Errorf("%d frames cut to 250 bytes, counters say %d", cut, counted)
	}
}

// TestKeepsForeignVXLANDevice: with source.device naming a VXLAN device
// xmirror did not create (an operator's vxlan0, VNI 42), the kernel
// datapath logged "replacing stale VXLAN device" and deleted it, taking
// whatever ran over it down. It is refused now, naming the key, and stays.
func TestKeepsForeignVXLANDevice(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	if _, err := src.Run("ip", "link", "add", "vxlan0", "type", "vxlan", "id", "42", "dstport", "4789", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	cfg := seedConfig(t, seedYAML)
	cfg.Source.Device = "vxlan0"
	err := src.Do(func() error {
		s, err := New(cfg, Options{Datapath: DatapathKernel})
		if err == nil {
			s.Close()
		}
		return err
	})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "source.device") {
		t.Errorf("New: %v, want an ErrConfig naming source.device", err)
	}
	if out, err := src.Run("ip", "-d", "-o", "link", "show", "vxlan0"); err != nil || !strings.Contains(out, "id 42") {
		t.Errorf("the operator's vxlan0 is gone or changed (%v):\n%s", err, out)
	}
}

// TestUndoesPartialSetup fails after the programs are loaded (the device
// name of the kernel datapath is taken by a non-VXLAN device): New returns
// the error and leaves nothing behind.
func TestUndoesPartialSetup(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	if _, err := src.Run("ip", "link", "add", "xmirror0", "type", "veth", "peer", "name", "xm0peer"); err != nil {
		t.Fatal(err)
	}
	err := src.Do(func() error {
		s, err := New(seedConfig(t, seedYAML), Options{Datapath: DatapathKernel})
		if err == nil {
			s.Close()
		}
		return err
	})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "not a VXLAN device") || !strings.Contains(err.Error(), "source.device") {
		t.Fatalf("New: %v, want an ErrConfig about the existing device, naming source.device", err)
	}
	out, err := src.Run("ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "xmirror0s") || strings.Contains(out, "xmirror0r") || !strings.Contains(out, "xmirror0: ") {
		t.Errorf("links after a failed start:\n%s", out)
	}
	// Nothing attached to eth0 either.
	src.Do(func() error {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: src.Ifindex, Attach: at})
			if err != nil {
				t.Errorf("query %v: %v", at, err)
			} else if len(res.Programs) != 0 {
				t.Errorf("%d programs left on eth0 (%v)", len(res.Programs), at)
			}
		}
		return nil
	})
}

// TestDirectionalHash: with source.hash directional (AWS's behaviour) the two
// directions of a flow get their own outer source ports; symmetric (the
// default, checked in TestSeedEquivalence) gives them one.
func TestDirectionalHash(t *testing.T) {
	for _, dp := range Datapaths {
		t.Run(dp, func(t *testing.T) {
			lab := seedLab(t, false)
			src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
			startSourceOpts(t, src, seedConfig(t, seedYAML+"source: {hash: directional}\n"), Options{Datapath: dp})
			sinkVXLAN(t, target)
			cap := startCapture(t, target, "target", "udp", "port", "4789")
			seedConversation(t, src, test)
			ports := map[bool]map[uint16]bool{true: {}, false: {}}
			for _, p := range cap.packets(t) {
				_, inner, _, udp := decap(t, p)
				tcp := packetTCP(inner)
				ports[tcp.DstPort == 1234][uint16(udp.SrcPort)] = true
			}
			if len(ports[true]) != 1 || len(ports[false]) != 1 {
				t.Fatalf("outer ports per direction: %v; want one port each (one flow)", ports)
			}
			for in := range ports[true] {
				if ports[false][in] {
					t.Errorf("both directions use outer port %d with the directional hash", in)
				}
			}
		})
	}
}

// TestNoSelfMirror mirrors everything in both directions: xmirror's own
// VXLAN packets leave through the mirrored interface too and must not be
// mirrored again.
func TestNoSelfMirror(t *testing.T) {
	for _, dp := range Datapaths {
		t.Run(dp, func(t *testing.T) {
			lab := seedLab(t, false)
			src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
			// ICMP and UDP (our tunnel's protocol), both ways: IGMP and the like,
			// which the hosts send on their own, stay out of the count.
			yaml := strings.ReplaceAll(mirrorAllYAML, "[{priority: 1, action: accept, protocol: all}]",
				"[{priority: 1, action: accept, protocol: icmp}, {priority: 2, action: accept, protocol: udp}]")
			s := startSourceOpts(t, src, seedConfig(t, yaml), Options{Datapath: dp})
			sinkVXLAN(t, target)
			cap := startCapture(t, target, "target", "udp", "port", "4789")
			if out, err := test.Run("ping", "-c", "5", "-i", "0.05", "-W", "1", sourceIP); err != nil {
				t.Fatalf("ping: %v %s", err, out)
			}
			got := cap.packets(t)
			for i, p := range got {
				_, inner, _, _ := decap(t, p)
				if u, ok := gopacketDecode(inner).Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 4789 {
					t.Errorf("packet %d is a mirrored tunnel packet: %s", i, describe(inner))
				}
			}
			stats, _ := s.Stats()
			var n uint64
			for _, st := range stats {
				n += st.Packets
			}
			// 5 requests in, 5 replies out, and none of the 10 VXLAN packets.
			if len(got) != 10 || n != 10 {
				t.Errorf("target got %d mirrored packets, counters say %d (%+v); want 10", len(got), n, stats)
				for _, p := range got {
					_, inner, _, _ := decap(t, p)
					t.Log(describe(inner))
				}
			}
		})
	}
}

// TestReloadIsHitless switches between two configurations that both mirror
// the seed's traffic (VNI 1 and VNI 2) twenty times during a bulk transfer:
// every packet tcpdump sees is mirrored exactly once, under one VNI or the other.
func TestReloadIsHitless(t *testing.T) {
	lab := seedLab(t, true)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	a := seedConfig(t, seedYAML)
	b := seedConfig(t, strings.Replace(seedYAML, "vni: 1,", "vni: 2,", 1))
	s := startSource(t, src, a)
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", "96", "tcp and host "+testIP+" and port 1234")
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 20 && err == nil; i++ {
			next := a
			if i%2 == 0 {
				next = b
			}
			err = src.Do(func() error { return s.Reload(next) })
			time.Sleep(5 * time.Millisecond)
		}
		done <- err
	}()
	bulk(t, src, test, 8<<20)
	if err := <-done; err != nil {
		t.Fatalf("reload: %v", err)
	}
	want := atSource.packets(t)
	got := atTarget.packets(t)
	vnis := map[uint32]int{}
	for _, p := range got {
		vni, _, _, _ := decap(t, p)
		vnis[vni]++
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var mirrored uint64
	for _, st := range stats {
		mirrored += st.Packets
	}
	if mirrored != uint64(len(want)) || len(got) != len(want) || vnis[1] == 0 || vnis[2] == 0 || vnis[1]+vnis[2] != len(got) {
		t.Fatalf("tcpdump saw %d packets; the target got %d (by VNI: %v); counters %+v\ntarget: %s\nsource: %s", len(want), len(got), vnis, stats, atTarget.dump.Output(), atSource.dump.Output())
	}
}
