// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/gopacket/layers"
)

// Summarizer prints frames the way `tcpdump -nne` does, including tcpdump's relative
// TCP sequence numbers: the first packet with ACK set of a conversation is printed
// absolute and sets the base for both directions.
type Summarizer struct {
	bases map[Flow]seqBase
}

type seqBase struct{ seq, ack uint32 }

// NewSummarizer starts with no conversation known.
func NewSummarizer() *Summarizer { return &Summarizer{bases: map[Flow]seqBase{}} }

// Line is one frame in tcpdump -nne style (without the timestamp). A frame cut by
// the capture says how much of it was kept.
func (s *Summarizer) Line(f Frame) string {
	var b strings.Builder
	s.write(&b, f.Data, f.Length)
	if f.Cut() {
		fmt.Fprintf(&b, " [cut to %d of %d bytes]", len(f.Data), f.Length)
	}
	return b.String()
}

func (s *Summarizer) write(b *strings.Builder, data []byte, wireLen int) {
	l, err := decodeFrame(data)
	if len(l.decoded) == 0 {
		fmt.Fprintf(b, "malformed frame, length %d", wireLen)
		return
	}
	fmt.Fprintf(b, "%s > %s, ethertype %s (%#04x), length %d: ", l.eth.SrcMAC, l.eth.DstMAC, etherName(l.eth.EthernetType), uint16(l.eth.EthernetType), wireLen)
	var ipSrc, ipDst string
	var ipPayload int
	for _, lt := range l.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			ipSrc, ipDst = l.ip4.SrcIP.String(), l.ip4.DstIP.String()
			ipPayload = int(l.ip4.Length) - int(l.ip4.IHL)*4
		case layers.LayerTypeIPv6:
			ipSrc, ipDst = l.ip6.SrcIP.String(), l.ip6.DstIP.String()
			ipPayload = int(l.ip6.Length)
		case layers.LayerTypeTCP:
			s.tcp(b, ipSrc, ipDst, &l.tcp, ipPayload-int(l.tcp.DataOffset)*4)
			return
		case layers.LayerTypeUDP:
			fmt.Fprintf(b, "%s.%d > %s.%d: UDP, length %d", ipSrc, l.udp.SrcPort, ipDst, l.udp.DstPort, int(l.udp.Length)-8)
			return
		case layers.LayerTypeICMPv4:
			fmt.Fprintf(b, "%s > %s: ICMP %s", ipSrc, ipDst, icmpName(&l.icmp4))
			if t := l.icmp4.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				fmt.Fprintf(b, ", id %d, seq %d", l.icmp4.Id, l.icmp4.Seq)
			}
			fmt.Fprintf(b, ", length %d", ipPayload)
			return
		case layers.LayerTypeARP:
			if l.arp.Operation == layers.ARPRequest {
				fmt.Fprintf(b, "Request who-has %s tell %s", net.IP(l.arp.DstProtAddress), net.IP(l.arp.SourceProtAddress))
			} else {
				fmt.Fprintf(b, "Reply %s is-at %s", net.IP(l.arp.SourceProtAddress), net.HardwareAddr(l.arp.SourceHwAddress))
			}
			return
		}
	}
	if ipSrc != "" {
		fmt.Fprintf(b, "%s > %s: ", ipSrc, ipDst)
	}
	if err != nil {
		fmt.Fprintf(b, "[|%v]", err)
	}
}

func (s *Summarizer) tcp(b *strings.Builder, src, dst string, t *layers.TCP, payload int) {
	if payload < 0 {
		payload = 0
	}
	fmt.Fprintf(b, "%s.%d > %s.%d: Flags [%s]", src, t.SrcPort, dst, t.DstPort, tcpFlags(t))
	seq, ack := t.Seq, t.Ack
	if t.ACK {
		// tcpdump keys the base on the conversation, stored in one orientation.
		fl := Flow{Proto: "tcp", Src: endpoint(src, uint16(t.SrcPort)), Dst: endpoint(dst, uint16(t.DstPort))}
		conv := fl.Conversation()
		rev := conv != fl
		if base, ok := s.bases[conv]; !ok {
			if rev {
				s.bases[conv] = seqBase{seq: ack - 1, ack: seq}
			} else {
				s.bases[conv] = seqBase{seq: seq, ack: ack - 1}
			}
		} else if rev {
			seq, ack = seq-base.ack, ack-base.seq
		} else {
			seq, ack = seq-base.seq, ack-base.ack
		}
	}
	if payload > 0 || t.SYN || t.FIN || t.RST {
		fmt.Fprintf(b, ", seq %d", seq)
		if payload > 0 {
			fmt.Fprintf(b, ":%d", seq+uint32(payload))
		}
	}
	if t.ACK {
		fmt.Fprintf(b, ", ack %d", ack)
	}
	fmt.Fprintf(b, ", win %d", t.Window)
	if opts := tcpOptions(t); opts != "" {
		fmt.Fprintf(b, ", options [%s]", opts)
	}
	fmt.Fprintf(b, ", length %d", payload)
}

func endpoint(addr string, port uint16) Endpoint {
	a, _ := netip.ParseAddr(addr) // the zero Addr for a frame without IP still keys consistently
	return Endpoint{Addr: a, Port: port}
}

func tcpFlags(t *layers.TCP) string {
	var s string
	for _, f := range []struct {
		on bool
		c  string
	}{{t.FIN, "F"}, {t.SYN, "S"}, {t.RST, "R"}, {t.PSH, "P"}, {t.ACK, "."}, {t.URG, "U"}, {t.ECE, "E"}, {t.CWR, "W"}} {
		if f.on {
			s += f.c
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

func tcpOptions(t *layers.TCP) string {
	var parts []string
	for _, o := range t.Options {
		d := o.OptionData
		switch o.OptionType {
		case layers.TCPOptionKindEndList:
			parts = append(parts, "eol")
		case layers.TCPOptionKindNop:
			parts = append(parts, "nop")
		case layers.TCPOptionKindMSS:
			if len(d) == 2 {
				parts = append(parts, fmt.Sprintf("mss %d", uint16(d[0])<<8|uint16(d[1])))
			}
		case layers.TCPOptionKindWindowScale:
			if len(d) == 1 {
				parts = append(parts, fmt.Sprintf("wscale %d", d[0]))
			}
		case layers.TCPOptionKindSACKPermitted:
			parts = append(parts, "sackOK")
		case layers.TCPOptionKindTimestamps:
			if len(d) == 8 {
				parts = append(parts, fmt.Sprintf("TS val %d ecr %d", be32(d[0:4]), be32(d[4:8])))
			}
		default:
			parts = append(parts, fmt.Sprintf("opt-%d", uint8(o.OptionType)))
		}
	}
	return strings.Join(parts, ",")
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func etherName(t layers.EthernetType) string {
	switch t {
	case layers.EthernetTypeIPv4:
		return "IPv4"
	case layers.EthernetTypeIPv6:
		return "IPv6"
	case layers.EthernetTypeARP:
		return "ARP"
	case layers.EthernetTypeDot1Q:
		return "802.1Q"
	}
	return "Unknown"
}

func icmpName(ic *layers.ICMPv4) string {
	switch ic.TypeCode.Type() {
	case layers.ICMPv4TypeEchoRequest:
		return "echo request"
	case layers.ICMPv4TypeEchoReply:
		return "echo reply"
	case layers.ICMPv4TypeDestinationUnreachable:
		return "unreachable"
	}
	return fmt.Sprintf("type %d", ic.TypeCode.Type())
}
