// SPDX-License-Identifier: Apache-2.0

package source

import (
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// icmpError is an IPv4 packet from "from" carrying an ICMP error of type and
// code about a UDP packet to dst:dport, as a raw ICMP socket receives it.
func icmpError(t testing.TB, from, dst string, typ, code uint8, dport uint16) []byte {
	t.Helper()
	quoted := gopacket.NewSerializeBuffer()
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	ip := &layers.IPv4{Version: 4, TTL: 64, TOS: mirrorTOS, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(sourceIP), DstIP: net.ParseIP(dst)}
	udp.SetNetworkLayerForChecksum(ip)
	if err := gopacket.SerializeLayers(quoted, gopacket.SerializeOptions{FixLengths: true}, ip, udp, gopacket.Payload(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(from), DstIP: net.ParseIP(sourceIP)},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)},
		gopacket.Payload(quoted.Bytes())); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseICMPError(t *testing.T) {
	for _, c := range []struct {
		name   string
		pkt    []byte
		ok     bool
		target string
		detail string
	}{
		{"port unreachable", icmpError(t, targetIP, targetIP, 3, 3, 4789), true, targetIP, "port unreachable"},
		{"host unreachable from a router", icmpError(t, "192.168.0.1", targetIP, 3, 1, 4789), true, targetIP, "host unreachable from 192.168.0.1"},
		{"time exceeded", icmpError(t, "192.168.0.1", targetIP, 11, 0, 4789), true, targetIP, "time exceeded"},
		{"about another port", icmpError(t, targetIP, targetIP, 3, 3, 53), false, "", ""},
		{"truncated", icmpError(t, targetIP, targetIP, 3, 3, 4789)[:40], false, "", ""},
		{"not ICMP", tcp4(t, testIP, sourceIP, 1, 2, 10)[14:], false, "", ""},
	} {
		target, detail, ok := parseICMPError(c.pkt)
		if ok != c.ok || (ok && (target.String() != c.target || !strings.Contains(detail, c.detail))) {
			t.Errorf("%s: %v %q %v, want %v %q with %q", c.name, target, detail, ok, c.ok, c.target, c.detail)
		}
	}
}

func FuzzParseICMPError(f *testing.F) {
	f.Add(icmpError(f, targetIP, targetIP, 3, 3, 4789))
	f.Add(icmpError(f, "192.168.0.1", targetIP, 11, 0, 4789))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		target, _, ok := parseICMPError(pkt)
		if ok && !target.Is4() {
			t.Fatalf("target %v is not IPv4", target)
		}
	})
}
