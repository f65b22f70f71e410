// SPDX-License-Identifier: Apache-2.0

package source

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

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
