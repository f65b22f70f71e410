// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// goldenLab is an LB namespace where bpf_fib_lookup has something to find:
// two backends on eth0 with permanent neighbours, a third address on eth0
// with no neighbour, and a far backend behind a second interface (rx0).
type goldenLab struct {
	lb           *netlab.Host
	b1MAC, b2MAC net.HardwareAddr
	farMAC       net.HardwareAddr
	rx0          int
	bal          *Balancer
}

var (
	vip      = netip.MustParseAddr("10.0.0.1")
	mirror   = netip.MustParseAddr("10.0.0.230")
	b1Addr   = netip.MustParseAddr("10.0.0.11")
	b2Addr   = netip.MustParseAddr("10.0.0.12")
	noNeigh  = netip.MustParseAddr("10.0.0.13")
	farAddr  = netip.MustParseAddr("10.9.0.2")
	noRoute  = netip.MustParseAddr("198.51.100.7")
	b1MACFix = net.HardwareAddr{0x02, 0xb1, 0, 0, 0, 0x11}
	b2MACFix = net.HardwareAddr{0x02, 0xb2, 0, 0, 0, 0x12}
)

func newGoldenLab(t testing.TB) *goldenLab {
	t.Helper()
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}})
	g := &goldenLab{lb: lab.Host("lb"), b1MAC: b1MACFix, b2MAC: b2MACFix, farMAC: net.HardwareAddr{0x02, 0x09, 0, 0, 0, 0x02}}
	err := g.lb.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/forwarding", []byte("1"), 0o644); err != nil {
			return err
		}
		for _, n := range []struct {
			ip  netip.Addr
			mac net.HardwareAddr
		}{{b1Addr, g.b1MAC}, {b2Addr, g.b2MAC}} {
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: g.lb.Ifindex, IP: n.ip.AsSlice(), HardwareAddr: n.mac, State: netlink.NUD_PERMANENT}); err != nil {
				return err
			}
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rx0"}, PeerName: "rx1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		rx0, err := netlink.LinkByName("rx0")
		if err != nil {
			return err
		}
		g.rx0 = rx0.Attrs().Index
		a, _ := netlink.ParseAddr("10.9.0.1/24")
		if err := netlink.AddrAdd(rx0, a); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(rx0); err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: g.rx0, IP: farAddr.AsSlice(), HardwareAddr: g.farMAC, State: netlink.NUD_PERMANENT})
	})
	if err != nil {
		t.Fatalf("set up lb namespace: %v", err)
	}
	g.bal, err = New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.bal.Close() })
	if err := g.bal.objs.LbTxPorts.Put(uint32(g.rx0), uint32(g.rx0)); err != nil {
		t.Fatal(err)
	}
	// As if attached to eth0 with the MAC the test frames are sent to.
	var macs [ifaceSlots]lbLbIfmac
	macs[g.lb.Ifindex%ifaceSlots] = lbLbIfmac{Ifindex: uint32(g.lb.Ifindex),
		MacLo: binary.NativeEndian.Uint32(lbMACFake[0:4]), MacHi: binary.NativeEndian.Uint16(lbMACFake[4:6])}
	if err := g.bal.objs.LbListenerMacs.Set(macs); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *goldenLab) run(t testing.TB, frame []byte) (ret uint32, out []byte) {
	t.Helper()
	err := g.lb.Do(func() (err error) {
		ret, out, err = runXDP(g.bal.objs.XmirrorLb, frame, g.lb.Ifindex)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ret, out
}

func (g *goldenLab) stats(t testing.TB) [statMax]uint64 {
	t.Helper()
	var out [statMax]uint64
	var per []lbLbCpu
	if err := g.bal.objs.LbPercpu.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	for _, c := range per {
		for i := range out {
			out[i] += c.Stats[i]
		}
	}
	return out
}

func lbConfig(algo, aff string, backends ...config.Backend) *config.LoadBalancer {
	return &config.LoadBalancer{
		Listener:  config.Listener{Name: "listener-A", VIP: vip, Port: 4789, Interfaces: []string{"eth0"}},
		Algorithm: algo, Affinity: aff, Backends: backends,
	}
}

func backend(name string, a netip.Addr, port uint16, w int) config.Backend {
	return config.Backend{Name: name, Address: a, Port: port, Weight: w}
}

// fragment splits a whole IPv4 frame into two fragments at payload byte cut
// (a multiple of 8), with the IP header checksum recomputed.
func fragment(frame []byte, cut int) (first, second []byte) {
	l3 := l3Offset(frame)
	ihl := int(frame[l3]&0xf) * 4
	payload := frame[l3+ihl:]
	mk := func(part []byte, off int, more bool) []byte {
		f := append(append([]byte(nil), frame[:l3+ihl]...), part...)
		ip := f[l3:]
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(part)))
		fl := uint16(off / 8)
		if more {
			fl |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], fl)
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ihl]))
		return f
	}
	return mk(payload[:cut], 0, true), mk(payload[cut:], cut, false)
}

// TestGolden runs one named case per branch of the data path through
// BPF_PROG_TEST_RUN and checks the verdict, the exact output bytes and the
// counter that explains the verdict.
func TestGolden(t *testing.T) {
	g := newGoldenLab(t)
	lbMAC := g.lb.MAC
	one := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 0))
	base := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1, ipID: 7}
	std := vxlanFrame(t, base)

	with := func(f func(*frameSpec)) []byte {
		s := base
		f(&s)
		return vxlanFrame(t, s)
	}
	toB1 := func(in []byte) []byte { return expectForward(in, g.b1MAC, lbMAC, b1Addr, 0) }
	same := func(in []byte) []byte { return in }
	// passed to the kernel already rewritten, MACs and TTL untouched (the
	// kernel lowers the TTL as it forwards)
	passTo := func(dst netip.Addr) func([]byte) []byte {
		return func(in []byte) []byte { return withTTL(expectForward(in, lbMACFake, senderMAC, dst, 0), 64) }
	}

	arp := func() []byte {
		buf := gopacket.NewSerializeBuffer()
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
			&layers.Ethernet{SrcMAC: senderMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: senderMAC, SourceProtAddress: mirror.AsSlice(),
				DstHwAddress: make([]byte, 6), DstProtAddress: vip.AsSlice()})
		return buf.Bytes()
	}()
	ipv6 := func() []byte {
		buf := gopacket.NewSerializeBuffer()
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		udp := &layers.UDP{SrcPort: 1, DstPort: 4789}
		udp.SetNetworkLayerForChecksum(ip)
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: senderMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv6}, ip, udp, gopacket.Payload("x"))
		return buf.Bytes()
	}()
	tcpToVIP := func() []byte {
		buf := gopacket.NewSerializeBuffer()
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: mirror.AsSlice(), DstIP: vip.AsSlice()}
		tcp := &layers.TCP{SrcPort: 1, DstPort: 4789, SYN: true}
		tcp.SetNetworkLayerForChecksum(ip)
		gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: senderMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
		return buf.Bytes()
	}()
	patch := func(in []byte, f func([]byte)) []byte {
		out := append([]byte(nil), in...)
		f(out)
		return out
	}
	frag1, frag2 := fragment(std, 24)
	// Fragments and cut frames carry the checksum of the whole datagram: the
	// expected bytes come from the rewritten whole frame.
	fragOf := func(i int) func([]byte) []byte {
		return func([]byte) []byte {
			f1, f2 := fragment(toB1(std), 24)
			return [][]byte{f1, f2}[i]
		}
	}
	// Which backend the two-backend Maglev table gives a frame.
	maglevCfg := func(aff string) *config.LoadBalancer {
		c := lbConfig("maglev", aff, backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
		c.MaglevSize = 251
		return c
	}
	maglevExpect := func(c *config.LoadBalancer, aff string) func([]byte) []byte {
		return func(in []byte) []byte {
			h, ok := FlowHash(in, aff)
			if !ok {
				t.Fatalf("FlowHash: not hashable")
			}
			g.bal.mu.Lock()
			id1 := g.bal.ids[backendKey(b1Addr, 0)]
			g.bal.mu.Unlock()
			tab := maglevTable([]tableBackend{{ID: id1, Key: backendKey(b1Addr, 0), Weight: 1}, {ID: id1 ^ 1, Key: backendKey(b2Addr, 0), Weight: 1}}, 251)
			if tab[maglevIndex(h, len(tab))] == id1 {
				return expectForward(in, g.b1MAC, lbMAC, b1Addr, 0)
			}
			return expectForward(in, g.b2MAC, lbMAC, b2Addr, 0)
		}
	}
	allow := func(p string) *config.LoadBalancer {
		c := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1))
		c.Listener.AccessControl = config.AccessControl{Mode: "allowlist", Allowlist: []netip.Prefix{netip.MustParsePrefix(p)}}
		return c
	}

	cases := []struct {
		name    string
		cfg     *config.LoadBalancer
		health  map[netip.Addr]bool
		in      []byte
		verdict uint32
		want    func([]byte) []byte
		stat    Stat
	}{
		{"wrr inner-symmetric forwards to the only weighted backend", one, nil, std, 3, toB1, StatTX},
		{"wrr outer", lbConfig("wrr", "outer", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 0)), nil, std, 3, toB1, StatTX},
		{"wrr none (per packet)", lbConfig("wrr", "none", backend("b1", b1Addr, 0, 3)), nil, std, 3, toB1, StatTX},
		{"maglev inner-symmetric", maglevCfg("inner-symmetric"), nil, std, 3, maglevExpect(maglevCfg(""), "inner-symmetric"), StatTX},
		{"maglev outer", maglevCfg("outer"), nil, with(func(s *frameSpec) { s.sport = 50123 }), 3, maglevExpect(maglevCfg(""), "outer"), StatTX},
		{"maglev none (random) with one weighted backend", lbConfig("maglev", "none", backend("b1", b1Addr, 0, 5), backend("b2", b2Addr, 0, 0)), nil, std, 3, toB1, StatTX},
		{"inner IPv6 flow", one, nil, with(func(s *frameSpec) {
			s.innerSrc, s.inDst, s.innerSP, s.innerDP = netip.MustParseAddr("fd00::230"), netip.MustParseAddr("fd00::161"), 1234, 80
		}), 3, toB1, StatTX},
		{"inner ICMP echo", one, nil, with(func(s *frameSpec) { s.innerICMP = true; s.innerSP = 99 }), 3, toB1, StatTX},
		{"backend port differs: port and checksum rewritten", lbConfig("wrr", "outer", backend("b1", b1Addr, 9999, 1)), nil, std, 3,
			func(in []byte) []byte { return expectForward(in, g.b1MAC, lbMAC, b1Addr, 9999) }, StatTX},
		{"zero UDP checksum stays zero", one, nil, with(func(s *frameSpec) { s.zeroUDPChecksum = true }), 3, toB1, StatTX},
		{"zero UDP checksum with port rewrite", lbConfig("wrr", "outer", backend("b1", b1Addr, 9999, 1)), nil, with(func(s *frameSpec) { s.zeroUDPChecksum = true }), 3,
			func(in []byte) []byte { return expectForward(in, g.b1MAC, lbMAC, b1Addr, 9999) }, StatTX},
		{"IPv4 options", one, nil, with(func(s *frameSpec) { s.ipOptions = true }), 3, toB1, StatTX},
		{"802.1Q tag: the kernel's VLAN device", one, nil, with(func(s *frameSpec) { s.vlan = 100 }), 2, same, StatPassVLAN},
		{"outer first fragment", one, nil, frag1, 3, fragOf(0), StatFragment},
		{"outer later fragment follows", one, nil, frag2, 3, fragOf(1), StatFragment},
		{"VXLAN header cut short: outer hash", one, nil, shorten(std, 14+20+8+4), 3, toB1, StatHashFallback},
		// swapping two 16-bit words keeps the checksum valid
		{"inner frame not VXLAN (I flag clear)", one, nil, patch(std, func(b []byte) { b[42], b[44] = b[44], b[42] }), 3, toB1, StatHashFallback},
		{"inner IP cut short", one, nil, shorten(std, 14+20+8+8+14+10), 3, toB1, StatHashFallback},
		{"inner ports cut short: addresses", one, nil, shorten(std, 14+20+8+8+14+20+2), 3, toB1, StatHashFallback},
		{"Ethernet padding after the datagram", one, nil, append(append([]byte(nil), std...), 0, 0, 0, 0), 3, toB1, StatTX},
		{"TTL 2 leaves with 1", one, nil, withTTL(std, 2), 3, toB1, StatTX},
		{"redirect to another interface", lbConfig("wrr", "outer", backend("far", farAddr, 0, 1)), nil, std, 4,
			func(in []byte) []byte { return expectForward(in, g.farMAC, nil, farAddr, 0) }, StatRedirect},
		{"neighbour unresolved: kernel forwards", lbConfig("wrr", "outer", backend("nn", noNeigh, 0, 1)), nil, std, 2,
			passTo(noNeigh), StatPassNoNeigh},
		{"no route to backend", lbConfig("wrr", "outer", backend("nr", noRoute, 0, 1)), nil, std, 1, nil, StatDropNoRoute},
		{"larger than the egress MTU: kernel fragments or answers", one, nil, with(func(s *frameSpec) { s.pad = 1500 }), 2, passTo(b1Addr), StatPassMTU},
		{"another host's MAC (flooded): the kernel's", one, nil, with(func(s *frameSpec) { s.dstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99} }), 2, same, StatPassOtherHost},
		{"another host's MAC, later fragment", one, nil, patch(frag2, func(b []byte) { b[5] = 0x99 }), 2, same, StatPassOtherHost},
		// a router does not forward a link-layer broadcast or multicast
		// (RFC 1812, 5.3.4): every LB node on the segment would
		{"broadcast MAC: the kernel's", one, nil, with(func(s *frameSpec) { s.dstMAC = layers.EthernetBroadcast }), 2, same, StatPassOtherHost},
		{"multicast MAC: the kernel's", one, nil, with(func(s *frameSpec) { s.dstMAC = net.HardwareAddr{0x01, 0, 0x5e, 1, 2, 3} }), 2, same, StatPassOtherHost},
		{"allowlist admits", allow("10.0.0.0/24"), nil, std, 3, toB1, StatTX},
		{"allowlist denies", allow("10.1.0.0/16"), nil, std, 1, nil, StatDropACL},
		{"allowlist denies later fragment", allow("10.1.0.0/16"), nil, frag2, 1, nil, StatDropACL},
		{"weight 0 everywhere: no backend", lbConfig("wrr", "none", backend("b1", b1Addr, 0, 0)), nil, std, 1, nil, StatDropNoBackend},
		{"maglev weight 0 everywhere", lbConfig("maglev", "outer", backend("b1", b1Addr, 0, 0)), nil, std, 1, nil, StatDropNoBackend},
		{"no healthy backend", lbConfig("wrr", "outer", backend("b1", b1Addr, 0, 1)), map[netip.Addr]bool{b1Addr: false}, with(func(s *frameSpec) { s.sport = 777 }), 1, nil, StatDropNoBackend},
		{"not the VIP", one, nil, with(func(s *frameSpec) { s.dst = netip.MustParseAddr("10.0.0.99") }), 2, same, StatPassNotListener},
		{"not the port", one, nil, with(func(s *frameSpec) { s.dport = 4790 }), 2, same, StatPassNotListener},
		{"not UDP", one, nil, tcpToVIP, 2, same, StatPassNotListener},
		{"ARP", one, nil, arp, 2, same, StatPassNotListener},
		{"IPv6", one, nil, ipv6, 2, same, StatPassNotListener},
		// (A frame shorter than Ethernet cannot be tested: BPF_PROG_TEST_RUN
		// refuses it, as drivers never hand XDP one.)
		{"truncated 802.1Q: the kernel's", one, nil, with(func(s *frameSpec) { s.vlan = 5 })[:16], 2, same, StatPassVLAN},
		{"TTL 1 would expire", one, nil, withTTL(std, 1), 1, nil, StatDropTTL},
		{"TTL 0", one, nil, withTTL(std, 0), 1, nil, StatDropTTL},
		{"TTL 1 with IP options", one, nil, withTTL(with(func(s *frameSpec) { s.ipOptions = true }), 1), 1, nil, StatDropTTL},
		{"TTL 1 later fragment", one, nil, withTTL(frag2, 1), 1, nil, StatDropTTL},
		{"TTL 1 denied by the allowlist: acl first", allow("10.1.0.0/16"), nil, withTTL(std, 1), 1, nil, StatDropACL},
		{"TTL 1 not for the VIP: the kernel's", one, nil, withTTL(with(func(s *frameSpec) { s.dst = netip.MustParseAddr("10.0.0.99") }), 1), 2, same, StatPassNotListener},
		{"bad IPv4 checksum", one, nil, patch(std, func(b []byte) { b[24] ^= 0x40 }), 1, nil, StatDropMalformed},
		{"bad IPv4 checksum with options", one, nil, patch(with(func(s *frameSpec) { s.ipOptions = true }), func(b []byte) { b[14+21] ^= 1 }), 1, nil, StatDropMalformed},
		{"bad IPv4 checksum of a later fragment", one, nil, patch(frag2, func(b []byte) { b[25] ^= 1 }), 1, nil, StatDropMalformed},
		{"bad IPv4 checksum not for the VIP: the kernel's", one, nil, patch(with(func(s *frameSpec) { s.dst = netip.MustParseAddr("10.0.0.99") }), func(b []byte) { b[24] ^= 1 }), 2, same, StatPassNotListener},
		{"IPv4 length past the frame", one, nil, std[:len(std)-1], 1, nil, StatDropMalformed},
		{"IPv4 length below its header", one, nil, patch(std, func(b []byte) { setIPLen(b, 19) }), 1, nil, StatDropMalformed},
		{"UDP length past the datagram", one, nil, patch(std, func(b []byte) { binary.BigEndian.PutUint16(b[38:], uint16(len(std)-34+1)) }), 1, nil, StatDropMalformed},
		{"truncated IPv4", one, nil, std[:14+12], 1, nil, StatDropMalformed},
		{"IPv4 header length below 20", one, nil, patch(std, func(b []byte) { b[14] = 0x44 }), 1, nil, StatDropMalformed},
		{"IPv4 options past the end", one, nil, patch(std[:14+24], func(b []byte) { b[14] = 0x4f }), 1, nil, StatDropMalformed},
		{"IPv4 version not 4", one, nil, patch(std, func(b []byte) { b[14] = 0x65 }), 1, nil, StatDropMalformed},
		{"truncated UDP", one, nil, std[:14+20+6], 1, nil, StatDropMalformed},
		{"UDP length below 8", one, nil, patch(std, func(b []byte) { binary.BigEndian.PutUint16(b[38:], 4) }), 1, nil, StatDropMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g.bal.mu.Lock()
			clear(g.bal.healthy)
			for a, ok := range c.health {
				g.bal.healthy[backendKey(a, 0)] = ok
			}
			g.bal.mu.Unlock()
			out, _, _ := g.runCase(t, c.cfg, c.in, c.verdict, c.stat)
			if c.want == nil {
				return
			}
			want := c.want(c.in)
			if c.stat == StatRedirect {
				copy(want[6:12], out[6:12]) // source MAC of rx0, assigned by the kernel
				rx0, _ := net.InterfaceByIndex(g.rx0)
				_ = rx0
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("output differs\n got %x\nwant %x", out, want)
			}
			if c.verdict == 3 && c.stat == StatTX && len(c.in) > 60 && !isFragment(c.in) && !zeroUDPCsum(out) && !padded(c.in) {
				if !gopacketChecksumsValid(t, out) {
					t.Errorf("gopacket disagrees with the checksums of %x", out)
				}
			}
		})
	}
}

// setIPLen sets the outer IPv4 total length, with a valid header checksum.
func setIPLen(b []byte, n uint16) {
	binary.BigEndian.PutUint16(b[l3Offset(b)+2:], n)
	fixIPChecksum(b)
}

// padded reports whether bytes follow the outer IP packet (gopacket drops
// them when it re-serializes).
func padded(f []byte) bool {
	l3 := l3Offset(f)
	return l3+int(binary.BigEndian.Uint16(f[l3+2:])) < len(f)
}

func isFragment(f []byte) bool {
	l3 := l3Offset(f)
	return binary.BigEndian.Uint16(f[l3+6:])&0x3fff != 0
}

func zeroUDPCsum(f []byte) bool {
	u := udpOffset(f)
	return f[u+6] == 0 && f[u+7] == 0
}

func delta(a, b [statMax]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for i := range a {
		if b[i] != a[i] {
			m[Stat(i).String()] = b[i] - a[i]
		}
	}
	return m
}

var _ = ebpf.ErrNotSupported
