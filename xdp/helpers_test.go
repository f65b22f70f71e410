package xdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// xdpMd is struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// runXDP runs prog once over frame as if received on ifindex, in the calling
// thread's network namespace (bpf_fib_lookup uses its routes and neighbours).
// It returns errors instead of failing tb: it runs inside netlab's Do, on a
// goroutine of its own where t.Fatal would hang the test.
func runXDP(prog *ebpf.Program, frame []byte, ifindex int) (uint32, []byte, error) {
	in := append([]byte(nil), frame...)
	opts := &ebpf.RunOptions{
		Data:    in,
		DataOut: make([]byte, len(frame)+512),
		Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(ifindex)},
	}
	ret, err := prog.Run(opts)
	if err != nil {
		return 0, nil, fmt.Errorf("test run: %w", err)
	}
	// cilium/ebpf cuts DataOut to what the kernel wrote.
	return ret, opts.DataOut, nil
}

// frameSpec describes a mirrored VXLAN frame sent to the load balancer.
type frameSpec struct {
	srcMAC, dstMAC   net.HardwareAddr
	src, dst         netip.Addr
	sport, dport     uint16
	vlan             uint16 // 0: untagged
	ipOptions        bool
	zeroUDPChecksum  bool
	vni              uint32
	innerSrc, inDst  netip.Addr // IPv4 or IPv6
	innerSP, innerDP uint16
	innerICMP        bool
	ipID             uint16
	pad              int // extra inner payload bytes
}

var (
	senderMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMACFake = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// vxlanFrame builds the frame with gopacket, lengths and checksums computed.
func vxlanFrame(tb testing.TB, f frameSpec) []byte {
	tb.Helper()
	if f.srcMAC == nil {
		f.srcMAC = senderMAC
	}
	if f.dstMAC == nil {
		f.dstMAC = lbMACFake
	}
	if f.dport == 0 {
		f.dport = 4789
	}
	inner := innerFrame(tb, f)
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: f.srcMAC, DstMAC: f.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ls = append(ls, eth)
	if f.vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: f.vlan, Type: layers.EthernetTypeIPv4})
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: f.ipID, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: f.src.AsSlice(), DstIP: f.dst.AsSlice()}
	if f.ipOptions {
		// Router Alert (4 bytes) and a Timestamp-like padding NOP run.
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
	udp.SetNetworkLayerForChecksum(ip)
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: f.vni}
	ls = append(ls, ip, udp, vx, gopacket.Payload(inner))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	out := buf.Bytes()
	if f.zeroUDPChecksum {
		off := udpOffset(out)
		out[off+6], out[off+7] = 0, 0
	}
	return out
}

func innerFrame(tb testing.TB, f frameSpec) []byte {
	tb.Helper()
	if !f.innerSrc.IsValid() {
		f.innerSrc = netip.MustParseAddr("192.168.0.230")
		f.inDst = netip.MustParseAddr("192.168.0.161")
		f.innerSP, f.innerDP = 1234, 57032
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0xbc}, DstMAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0x7e, 0xd6, 0x77}}
	var l3 gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if f.innerSrc.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: f.innerSrc.AsSlice(), DstIP: f.inDst.AsSlice()}
		if f.innerICMP {
			ip.Protocol = layers.IPProtocolICMPv4
		}
		l3 = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: f.innerSrc.AsSlice(), DstIP: f.inDst.AsSlice()}
		l3 = ip
		ls = append(ls, eth, ip)
	}
	if f.innerICMP {
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: f.innerSP, Seq: 1})
	} else {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.innerSP), DstPort: layers.TCPPort(f.innerDP), Seq: 4181467553, Ack: 3509843935, PSH: true, ACK: true, Window: 510}
		tcp.SetNetworkLayerForChecksum(l3)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(append([]byte("source to test\n"), make([]byte, f.pad)...)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// l3Offset is where the IPv4 header starts (after an optional 802.1Q tag).
func l3Offset(frame []byte) int {
	if t := binary.BigEndian.Uint16(frame[12:]); t == 0x8100 || t == 0x88a8 {
		return 18
	}
	return 14
}

func udpOffset(frame []byte) int {
	l3 := l3Offset(frame)
	return l3 + int(frame[l3]&0xf)*4
}

// checksum is the plain RFC 1071 sum, computed from scratch (independent of
// the incremental updates the BPF program does).
func checksum(parts ...[]byte) uint16 {
	var s uint32
	for _, p := range parts {
		for i := 0; i+1 < len(p); i += 2 {
			s += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			s += uint32(p[len(p)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// expectForward is frame as the load balancer must send it to a backend:
// next-hop MACs, destination address and port, TTL one lower, and checksums
// recomputed in full. fragment: the frame is an IP fragment (the UDP checksum is only
// patched, since the datagram is not all here).
func expectForward(frame []byte, dstMAC, srcMAC net.HardwareAddr, dst netip.Addr, port uint16) []byte {
	out := append([]byte(nil), frame...)
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC)
	l3 := l3Offset(out)
	ihl := int(out[l3]&0xf) * 4
	d := dst.As4()
	copy(out[l3+16:l3+20], d[:])
	out[l3+8]--
	out[l3+10], out[l3+11] = 0, 0
	binary.BigEndian.PutUint16(out[l3+10:], checksum(out[l3:l3+ihl]))
	fragOff := binary.BigEndian.Uint16(out[l3+6:]) & 0x1fff
	more := binary.BigEndian.Uint16(out[l3+6:])&0x2000 != 0
	if fragOff != 0 {
		return out
	}
	u := l3 + ihl
	if port != 0 {
		binary.BigEndian.PutUint16(out[u+2:], port)
	}
	if more || (out[u+6] == 0 && out[u+7] == 0) {
		return out
	}
	out[u+6], out[u+7] = 0, 0
	ulen := int(binary.BigEndian.Uint16(out[u+4:]))
	pseudo := make([]byte, 12)
	copy(pseudo[0:4], out[l3+12:l3+16])
	copy(pseudo[4:8], out[l3+16:l3+20])
	pseudo[9] = 17
	binary.BigEndian.PutUint16(pseudo[10:], uint16(ulen))
	c := checksum(pseudo, out[u:u+ulen])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(out[u+6:], c)
	return out
}

// withTTL is frame with its outer IPv4 TTL set to ttl and the header
// checksum recomputed.
func withTTL(frame []byte, ttl uint8) []byte {
	out := append([]byte(nil), frame...)
	l3 := l3Offset(out)
	out[l3+8] = ttl
	fixIPChecksum(out)
	return out
}

// fixIPChecksum recomputes the outer IPv4 header checksum in place.
func fixIPChecksum(frame []byte) {
	l3 := l3Offset(frame)
	ihl := int(frame[l3]&0xf) * 4
	frame[l3+10], frame[l3+11] = 0, 0
	binary.BigEndian.PutUint16(frame[l3+10:], checksum(frame[l3:l3+ihl]))
}

// shorten cuts a whole, unfragmented frame to n bytes and makes what is left
// a well-formed datagram: IP and UDP lengths and both checksums fit the cut.
func shorten(frame []byte, n int) []byte {
	out := append([]byte(nil), frame[:n]...)
	l3 := l3Offset(out)
	ihl := int(out[l3]&0xf) * 4
	binary.BigEndian.PutUint16(out[l3+2:], uint16(n-l3))
	fixIPChecksum(out)
	u := l3 + ihl
	binary.BigEndian.PutUint16(out[u+4:], uint16(n-u))
	out[u+6], out[u+7] = 0, 0
	pseudo := make([]byte, 12)
	copy(pseudo, out[l3+12:l3+20])
	pseudo[9] = 17
	binary.BigEndian.PutUint16(pseudo[10:], uint16(n-u))
	c := checksum(pseudo, out[u:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(out[u+6:], c)
	return out
}

// gopacketChecksumsValid re-serializes the decoded frame with gopacket's own
// checksum code and reports whether the bytes stay the same.
func gopacketChecksumsValid(tb testing.TB, frame []byte) bool {
	tb.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("decode: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var ip *layers.IPv4
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			ls = append(ls, v)
		case *layers.Dot1Q:
			ls = append(ls, v)
		case *layers.IPv4:
			ip = v
			ls = append(ls, v)
		case *layers.UDP:
			v.SetNetworkLayerForChecksum(ip)
			ls = append(ls, v, gopacket.Payload(v.Payload))
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
				tb.Fatal(err)
			}
			return string(buf.Bytes()) == string(frame)
		}
	}
	tb.Fatalf("no UDP layer in frame")
	return false
}

// moveFlow points the connection-table entry of the flow with this hash at
// backend id, as another CPU or a concurrent change could.
func moveFlow(t *testing.T, b *Balancer, hash, id uint32) {
	t.Helper()
	var set lbLbCtSet
	if err := b.objs.LbFlows.Lookup(ctSet(hash), &set); err != nil {
		t.Fatal(err)
	}
	w := ctWay(&set, hash)
	if w < 0 {
		t.Fatalf("flow %#x is not in the connection table", hash)
	}
	set.Way[w] = ctTag(hash) | uint64(id+1)<<ctIDShift | set.Way[w]&ctSeenMask
	if err := b.objs.LbFlows.Put(ctSet(hash), &set); err != nil {
		t.Fatal(err)
	}
}
