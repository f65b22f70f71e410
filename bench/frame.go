// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Frame layout. keep in sync with bpf/consts.h
const (
	VXLANPort = 4789

	outerLen = 14 + 20 + 8 + 8 // outer Ethernet, IPv4, UDP, VXLAN
	hdrLen   = outerLen + 14 + 20 + 20

	offOuterSport  = 34
	offOuterUDPSum = 40
	offVNI         = 46
	offInnerIPSum  = 74
	offInnerSaddr  = 76
	offInnerSport  = 84
	offTCPSum      = 100

	genPortsPerAddr  = 4096
	genPortBase      = 20000
	genOuterPortBase = 49152
	genOuterPortMask = 0x3fff
)

// Sizes of the mirrored (inner) frame the generator accepts. The wire frame is
// Size+50 bytes (outer Ethernet, IPv4, UDP and VXLAN headers).
const (
	MinSize = 64
	MaxSize = 9000 - outerLen
)

// Inner addresses of flow 0: the mirrored traffic is TCP from innerSrc to innerDst.
var (
	innerSrc    = netip.MustParseAddr("10.10.0.1")
	innerDst    = netip.MustParseAddr("10.20.0.1")
	innerSrcMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	innerDstMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
)

// FrameSpec describes the VXLAN frames of a generator run.
type FrameSpec struct {
	SrcMAC, DstMAC net.HardwareAddr
	SrcIP, DstIP   netip.Addr // outer IPv4 addresses
	DstPort        uint16     // outer UDP destination; 0 means 4789
	VNI            uint32     // VNI of flow 0
	Size           int        // bytes of the mirrored (inner) frame, MinSize..MaxSize
}

// WireSize is the length of the frame on the wire, without the FCS.
func (s FrameSpec) WireSize() int { return s.Size + outerLen }

func (s FrameSpec) validate() error {
	switch {
	case len(s.SrcMAC) != 6 || len(s.DstMAC) != 6:
		return errors.New("source and destination MAC must be Ethernet addresses")
	case !s.SrcIP.Is4() || !s.DstIP.Is4():
		return errors.New("source and destination IP must be IPv4")
	case s.Size < MinSize || s.Size > MaxSize:
		return fmt.Errorf("size %d is outside %d..%d", s.Size, MinSize, MaxSize)
	case s.VNI > 0xffffff:
		return fmt.Errorf("vni %d is above 16777215", s.VNI)
	}
	return nil
}

// buildFrame returns the frame of flow 0 and the checksum bases the generator
// needs to patch the flow fields in: the 16-bit one's complement sums of the inner
// IPv4 header and of the TCP pseudo header, header and payload, with the fields
// the program varies (inner source address and port) and the checksums zero.
func buildFrame(s FrameSpec) (frame []byte, ipBase, tcpBase uint32, err error) {
	if err := s.validate(); err != nil {
		return nil, 0, 0, err
	}
	port := s.DstPort
	if port == 0 {
		port = VXLANPort
	}
	payload := make([]byte, s.Size-(hdrLen-outerLen))
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: s.SrcIP.AsSlice(), DstIP: s.DstIP.AsSlice()}
	udp := &layers.UDP{SrcPort: genOuterPortBase, DstPort: layers.UDPPort(port)}
	inIP := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
		SrcIP: innerSrc.AsSlice(), DstIP: innerDst.AsSlice()}
	tcp := &layers.TCP{SrcPort: genPortBase, DstPort: 80, Seq: 1, Ack: 1, ACK: true, PSH: true, Window: 512}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, 0, 0, err
	}
	if err := tcp.SetNetworkLayerForChecksum(inIP); err != nil {
		return nil, 0, 0, err
	}
	buf := gopacket.NewSerializeBuffer()
	err = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: s.SrcMAC, DstMAC: s.DstMAC, EthernetType: layers.EthernetTypeIPv4},
		ip, udp,
		&layers.VXLAN{ValidIDFlag: true, VNI: s.VNI},
		&layers.Ethernet{SrcMAC: innerSrcMAC, DstMAC: innerDstMAC, EthernetType: layers.EthernetTypeIPv4},
		inIP, tcp, gopacket.Payload(payload))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("serialize frame: %w", err)
	}
	frame = append([]byte(nil), buf.Bytes()...)
	// VXLAN senders leave the outer UDP checksum zero (RFC 7348 allows it over IPv4).
	binary.BigEndian.PutUint16(frame[offOuterUDPSum:], 0)

	tmp := append([]byte(nil), frame...)
	clear(tmp[offInnerSaddr : offInnerSaddr+4])
	clear(tmp[offInnerIPSum : offInnerIPSum+2])
	clear(tmp[offInnerSport : offInnerSport+2])
	clear(tmp[offTCPSum : offTCPSum+2])
	ipBase = sum16(tmp[outerLen+14 : outerLen+34])
	tcpBytes := tmp[outerLen+34:]
	pseudo := make([]byte, 12)
	copy(pseudo[4:8], tmp[outerLen+14+16:outerLen+14+20]) // saddr stays zero
	pseudo[9] = byte(layers.IPProtocolTCP)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcpBytes)))
	tcpBase = sum16(pseudo) + sum16(tcpBytes)
	return frame, ipBase, tcpBase, nil
}

// sum16 adds b as big-endian 16-bit words (a trailing odd byte padded with zero),
// folded into 16 bits so that the program's 64-bit additions cannot overflow.
func sum16(b []byte) uint32 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint32(s)
}

// flowFields returns what the generator writes for flow f; tests use it to check
// the program's output.
func flowFields(f uint32) (outerSport uint16, innerSaddr netip.Addr, innerSport uint16) {
	outerSport = genOuterPortBase + uint16((f*2654435761)>>18&genOuterPortMask)
	a := innerSrc.As4()
	v := binary.BigEndian.Uint32(a[:]) + f/genPortsPerAddr
	binary.BigEndian.PutUint32(a[:], v)
	return outerSport, netip.AddrFrom4(a), genPortBase + uint16(f%genPortsPerAddr)
}
