// SPDX-License-Identifier: Apache-2.0

package source

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

// frame serializes layers with lengths and checksums fixed up.
func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Flags: layers.IPv4DontFragment}
}

func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// payload of the given size, so frames can be longer than a session's cut.
func payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func tcp4(t testing.TB, src, dst string, sport, dport uint16, n int) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000, ACK: true, PSH: true, Window: 512}
	tc.SetNetworkLayerForChecksum(ip)
	return frame(t, eth(layers.EthernetTypeIPv4), ip, tc, payload(n))
}

func udp4(t testing.TB, src, dst string, sport, dport uint16, n int) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return frame(t, eth(layers.EthernetTypeIPv4), ip, u, payload(n))
}

func icmp4(t testing.TB, src, dst string) []byte {
	return frame(t, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}, payload(32))
}

// gre4 is an IPv4 packet of protocol 47 with a few bytes of body.
func gre4(t testing.TB, src, dst string) []byte {
	return frame(t, eth(layers.EthernetTypeIPv4), ip4(src, dst, layers.IPProtocolGRE), payload(24))
}

// frag4 is a non-first IPv4 fragment of a TCP packet: no ports in it.
func frag4(t testing.TB, src, dst string) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	ip.Flags = 0
	ip.FragOffset = 100
	return frame(t, eth(layers.EthernetTypeIPv4), ip, payload(40))
}

func tcp6(t testing.TB, src, dst string, sport, dport uint16) []byte {
	ip := ip6(src, dst, layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, ACK: true, Window: 512}
	tc.SetNetworkLayerForChecksum(ip)
	return frame(t, eth(layers.EthernetTypeIPv6), ip, tc, payload(20))
}

// tcp6HopByHop carries a hop-by-hop options header before TCP.
func tcp6HopByHop(t testing.TB, src, dst string, sport, dport uint16) []byte {
	ip := ip6(src, dst, layers.IPProtocolIPv6HopByHop)
	hbh := []byte{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0} // next TCP, len 0 (8 bytes), PadN
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, ACK: true, Window: 512}
	tc.SetNetworkLayerForChecksum(ip6(src, dst, layers.IPProtocolTCP))
	tcpBytes := frame(t, tc)
	return frame(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(append(hbh, tcpBytes...)))
}

func icmp6(t testing.TB, src, dst string) []byte {
	ip := ip6(src, dst, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return frame(t, eth(layers.EthernetTypeIPv6), ip, ic, payload(16))
}

func arp(t testing.TB) []byte {
	return frame(t, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: net.ParseIP("10.0.0.1").To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP("10.0.0.2").To4(),
	})
}

// vtag is a VLAN tag of a frame: its TPID (802.1Q 0x8100, 802.1ad 0x88a8)
// and VLAN id.
type vtag struct {
	tpid layers.EthernetType
	vid  uint16
}

var (
	ctag = vtag{layers.EthernetTypeDot1Q, 100}
	stag = vtag{layers.EthernetTypeQinQ, 10}
)

// withTags is frame with tags inserted after the MAC addresses, outermost
// first: a frame carrying them in its data, or what tcpdump shows of a
// frame whose outer tag the kernel keeps in metadata (skb->vlan_*).
func withTags(frame []byte, tags ...vtag) []byte {
	out := append([]byte(nil), frame[:12]...)
	for _, tg := range tags {
		out = append(out, byte(tg.tpid>>8), byte(tg.tpid), byte(tg.vid>>8), byte(tg.vid))
	}
	return append(out, frame[12:]...)
}
