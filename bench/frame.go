// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Protocol is the tunnel a generator run sends the mirrored frames in.
type Protocol string

// The tunnels the generator speaks: what mirror sources send to a collector.
const (
	VXLAN   Protocol = "vxlan"   // RFC 7348, UDP 4789: AWS and Huawei Cloud mirroring, xmirror source
	GENEVE  Protocol = "geneve"  // RFC 8926, UDP 6081: AWS Gateway Load Balancer, OVS
	ERSPAN2 Protocol = "erspan2" // ERSPAN type II in GRE (0x88be): switches' port mirroring
	ERSPAN3 Protocol = "erspan3" // ERSPAN type III in GRE (0x22eb)
	GRE     Protocol = "gre"     // GRE transparent Ethernet bridging (0x6558) with a key
)

// Protocols lists every Protocol, VXLAN first.
var Protocols = []Protocol{VXLAN, GENEVE, ERSPAN2, ERSPAN3, GRE}

// ParseProtocol checks a protocol name.
func ParseProtocol(s string) (Protocol, error) {
	p := Protocol(s)
	if !slices.Contains(Protocols, p) {
		return "", fmt.Errorf("unknown protocol %q (want one of %v)", s, Protocols)
	}
	return p, nil
}

// Wire constants. keep in sync with bpf/consts.h
const (
	VXLANPort  = 4789
	GENEVEPort = 6081

	greTEB     = 0x6558
	greERSPAN2 = 0x88be
	greERSPAN3 = 0x22eb
	greFlagK   = 0x2000
	greFlagS   = 0x1000

	ethIPv4Len = 14 + 20 // outer Ethernet and IPv4 (no options)
	vxlanOuter = ethIPv4Len + 8 + 8
	innerHdr   = 14 + 20 + 20 // inner Ethernet, IPv4, TCP: what the program rewrites of the inner frame

	// Offsets of the inner fields the program varies, from the inner Ethernet header.
	inOffIPSum  = 24
	inOffSaddr  = 26
	inOffSport  = 34
	inOffTCPSum = 50

	// genHdrMax is the most header bytes the program writes per send: GENEVE
	// with MaxGeneveOptions options and the inner headers.
	genHdrMax        = vxlanOuter + MaxGeneveOptions*geneveOptLen + innerHdr
	genHdrMin        = ethIPv4Len + 8 + innerHdr // GRE with a key
	geneveOptLen     = 8                         // one option: 4-byte option header, 4 bytes of data
	MaxGeneveOptions = 31

	genPortsPerAddr  = 4096
	genPortBase      = 20000
	genOuterPortBase = 49152
	genOuterPortMask = 0x3fff
)

// How the program writes a flow's session id: enum gen_id_kind of bpf/consts.h.
const (
	idVNI    = genGenIdKindGEN_ID_VNI    // 24 bits (VXLAN, GENEVE)
	idERSPAN = genGenIdKindGEN_ID_ERSPAN // low 10 bits of a 16-bit word (ERSPAN session id)
	idKey    = genGenIdKindGEN_ID_KEY    // 32 bits (GRE key)
)

// Sizes of the mirrored (inner) frame the generator accepts. The wire frame adds
// the tunnel's headers (FrameSpec.WireSize): 50 bytes for VXLAN.
const (
	MinSize = 64
	MaxSize = 9000 - vxlanOuter
)

// Inner addresses of flow 0: the mirrored traffic is TCP from innerSrc to innerDst.
var (
	innerSrc    = netip.MustParseAddr("10.10.0.1")
	innerDst    = netip.MustParseAddr("10.20.0.1")
	innerSrcMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	innerDstMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
)

// FrameSpec describes the tunnel frames of a generator run.
type FrameSpec struct {
	Protocol       Protocol // "" means VXLAN
	SrcMAC, DstMAC net.HardwareAddr
	SrcIP, DstIP   netip.Addr // outer IPv4 addresses
	DstPort        uint16     // outer UDP destination (VXLAN, GENEVE); 0 means the protocol's port
	// ID is the session id of flow 0: the VNI (VXLAN, GENEVE), the ERSPAN
	// session id (0..1023) or the GRE key.
	ID            uint32
	Size          int // bytes of the mirrored (inner) frame, MinSize..MaxSize
	GeneveOptions int // GENEVE options of 8 bytes each, 0..MaxGeneveOptions
}

// layout is where a protocol's frame keeps what the program writes per send.
type layout struct {
	outer  int // bytes before the inner frame
	id     int // offset of the session id field
	idKind genGenIdKind
	sport  int // outer UDP source port; 0 = none
	seq    int // GRE sequence number; 0 = none
	ts     int // ERSPAN III timestamp; 0 = none
}

func (s FrameSpec) layout() layout {
	// Both UDP tunnels carry the VNI at byte 4 of their 8-byte header; the
	// GRE header is 8 bytes (base and key or sequence number), then ERSPAN's
	// session id at byte 2 of its header.
	const udp, gre = ethIPv4Len, ethIPv4Len
	const vni, greSeq, erspan = udp + 8 + 4, gre + 4, gre + 8
	switch s.Protocol {
	case GENEVE:
		return layout{outer: vxlanOuter + s.GeneveOptions*geneveOptLen, id: vni, sport: udp}
	case ERSPAN2:
		return layout{outer: erspan + 8, id: erspan + 2, idKind: idERSPAN, seq: greSeq}
	case ERSPAN3:
		return layout{outer: erspan + 12, id: erspan + 2, idKind: idERSPAN, seq: greSeq, ts: erspan + 4}
	case GRE:
		return layout{outer: gre + 8, id: gre + 4, idKind: idKey}
	}
	return layout{outer: vxlanOuter, id: vni, sport: udp}
}

// WireSize is the length of the frame on the wire, without the FCS.
func (s FrameSpec) WireSize() int { return s.Size + s.layout().outer }

// MaxID is the largest session id the protocol carries.
func (s FrameSpec) MaxID() uint32 {
	switch s.Protocol {
	case ERSPAN2, ERSPAN3:
		return 1023
	case GRE:
		return 0xffffffff
	}
	return 0xffffff
}

func (s FrameSpec) validate() error {
	if s.Protocol != "" {
		if _, err := ParseProtocol(string(s.Protocol)); err != nil {
			return err
		}
	}
	switch {
	case len(s.SrcMAC) != 6 || len(s.DstMAC) != 6:
		return errors.New("source and destination MAC must be Ethernet addresses")
	case !s.SrcIP.Is4() || !s.DstIP.Is4():
		return errors.New("source and destination IP must be IPv4")
	case s.Size < MinSize || s.Size > MaxSize:
		return fmt.Errorf("size %d is outside %d..%d", s.Size, MinSize, MaxSize)
	case s.ID > s.MaxID():
		return fmt.Errorf("id %d is above %d, the most %s carries", s.ID, s.MaxID(), s.protocol())
	case s.GeneveOptions < 0 || s.GeneveOptions > MaxGeneveOptions:
		return fmt.Errorf("geneve options %d is outside 0..%d", s.GeneveOptions, MaxGeneveOptions)
	case s.GeneveOptions > 0 && s.protocol() != GENEVE:
		return fmt.Errorf("geneve options with protocol %s", s.protocol())
	case s.DstPort != 0 && s.layout().sport == 0:
		return fmt.Errorf("a destination port with protocol %s, which is not UDP", s.protocol())
	}
	return nil
}

func (s FrameSpec) protocol() Protocol {
	if s.Protocol == "" {
		return VXLAN
	}
	return s.Protocol
}

// buildFrame returns the frame of flow 0 and the checksum bases the generator
// needs to patch the flow fields in: the 16-bit one's complement sums of the inner
// IPv4 header and of the TCP pseudo header, header and payload, with the fields
// the program varies (inner source address and port) and the checksums zero.
func buildFrame(s FrameSpec) (frame []byte, ipBase, tcpBase uint32, err error) {
	if err := s.validate(); err != nil {
		return nil, 0, 0, err
	}
	inner, err := innerFrame(s.Size)
	if err != nil {
		return nil, 0, 0, err
	}
	frame, err = s.encapsulate(inner)
	if err != nil {
		return nil, 0, 0, err
	}
	ipBase, tcpBase = checksumBases(inner)
	return frame, ipBase, tcpBase, nil
}

// innerFrame is the mirrored frame of flow 0: Ethernet/IPv4/TCP, size bytes.
func innerFrame(size int) ([]byte, error) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
		SrcIP: innerSrc.AsSlice(), DstIP: innerDst.AsSlice()}
	tcp := &layers.TCP{SrcPort: genPortBase, DstPort: 80, Seq: 1, Ack: 1, ACK: true, PSH: true, Window: 512}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: innerSrcMAC, DstMAC: innerDstMAC, EthernetType: layers.EthernetTypeIPv4},
		ip, tcp, gopacket.Payload(make([]byte, size-innerHdr)))
	if err != nil {
		return nil, fmt.Errorf("serialize inner frame: %w", err)
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// encapsulate puts the outer Ethernet and IPv4 headers and the tunnel's headers
// in front of inner. The tunnel headers are written by hand from the RFCs and
// drafts, so that gopacket and tshark, which the tests decode them with, are a
// second opinion.
func (s FrameSpec) encapsulate(inner []byte) ([]byte, error) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment,
		SrcIP: s.SrcIP.AsSlice(), DstIP: s.DstIP.AsSlice()}
	eth := &layers.Ethernet{SrcMAC: s.SrcMAC, DstMAC: s.DstMAC, EthernetType: layers.EthernetTypeIPv4}
	var tunnel []byte
	var l4 []gopacket.SerializableLayer
	switch p := s.protocol(); p {
	case VXLAN, GENEVE:
		ip.Protocol = layers.IPProtocolUDP
		port := s.DstPort
		if port == 0 {
			port = map[Protocol]uint16{VXLAN: VXLANPort, GENEVE: GENEVEPort}[p]
		}
		// Senders leave the UDP checksum zero (RFC 7348 and 8926 allow it over IPv4).
		udp := &layers.UDP{SrcPort: genOuterPortBase, DstPort: layers.UDPPort(port)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		l4 = append(l4, udp)
		if p == VXLAN {
			tunnel = vxlanHeader(s.ID)
		} else {
			tunnel = geneveHeader(s.ID, s.GeneveOptions)
		}
	default:
		ip.Protocol = layers.IPProtocolGRE
		tunnel = greHeaders(p, s.ID)
	}
	buf := gopacket.NewSerializeBuffer()
	ls := append([]gopacket.SerializableLayer{eth, ip}, l4...)
	ls = append(ls, gopacket.Payload(append(tunnel, inner...)))
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, fmt.Errorf("serialize frame: %w", err)
	}
	frame := append([]byte(nil), buf.Bytes()...)
	if len(l4) > 0 {
		binary.BigEndian.PutUint16(frame[ethIPv4Len+6:], 0)
	}
	return frame, nil
}

// vxlanHeader is RFC 7348's: the I flag and the VNI.
func vxlanHeader(vni uint32) []byte {
	h := make([]byte, 8)
	h[0] = 0x08
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return h
}

// geneveHeader is RFC 8926's for an Ethernet payload with n options of class
// 0xffff (experimental use), types 1..n, 4 bytes of data each, none critical.
func geneveHeader(vni uint32, n int) []byte {
	h := make([]byte, 8, 8+n*geneveOptLen)
	h[0] = byte(n * geneveOptLen / 4) // version 0, option length in 4-byte words
	binary.BigEndian.PutUint16(h[2:], greTEB)
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	for i := range n {
		opt := make([]byte, geneveOptLen)
		binary.BigEndian.PutUint16(opt, 0xffff)
		opt[2] = byte(i + 1)
		opt[3] = byte(geneveOptLen/4 - 1) // data length in 4-byte words
		binary.BigEndian.PutUint32(opt[4:], 0xc0de0000|uint32(i))
		h = append(h, opt...)
	}
	return h
}

// greHeaders is the GRE header (RFC 2784, 2890) and, for ERSPAN, the ERSPAN
// header (draft-foschiano-erspan): type II and III with the sequence number
// the draft requires, plain bridging with the session id as the key.
func greHeaders(p Protocol, id uint32) []byte {
	h := make([]byte, 8)
	switch p {
	case GRE:
		binary.BigEndian.PutUint16(h, greFlagK)
		binary.BigEndian.PutUint16(h[2:], greTEB)
		binary.BigEndian.PutUint32(h[4:], id)
		return h
	case ERSPAN2:
		binary.BigEndian.PutUint16(h, greFlagS)
		binary.BigEndian.PutUint16(h[2:], greERSPAN2)
		// Ver 1, VLAN 0 | COS 0, En 0 (untagged), T 0, session id | reserved, index 0.
		e := make([]byte, 8)
		binary.BigEndian.PutUint16(e, 1<<12)
		binary.BigEndian.PutUint16(e[2:], uint16(id&0x3ff))
		return append(h, e...)
	default: // ERSPAN3
		binary.BigEndian.PutUint16(h, greFlagS)
		binary.BigEndian.PutUint16(h[2:], greERSPAN3)
		// Ver 2, VLAN 0 | COS 0, BSO 0, T 0, session id | timestamp |
		// SGT 0 | P 0, FT 0 (Ethernet), HW id 0, D 0 (ingress), Gra 01 (100 ns), O 0.
		e := make([]byte, 12)
		binary.BigEndian.PutUint16(e, 2<<12)
		binary.BigEndian.PutUint16(e[2:], uint16(id&0x3ff))
		binary.BigEndian.PutUint16(e[10:], 1<<1)
		return append(h, e...)
	}
}

// checksumBases are the sums the program starts the inner checksums from:
// inner's IPv4 header, and its TCP pseudo header, header and payload, each with
// the fields the program varies (source address and port) and the checksum zero.
func checksumBases(inner []byte) (ipBase, tcpBase uint32) {
	tmp := append([]byte(nil), inner...)
	clear(tmp[inOffSaddr : inOffSaddr+4])
	clear(tmp[inOffIPSum : inOffIPSum+2])
	clear(tmp[inOffSport : inOffSport+2])
	clear(tmp[inOffTCPSum : inOffTCPSum+2])
	ipBase = sum16(tmp[14:34])
	tcpBytes := tmp[34:]
	pseudo := make([]byte, 12)
	copy(pseudo[4:8], tmp[14+16:14+20]) // saddr stays zero
	pseudo[9] = byte(layers.IPProtocolTCP)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(tcpBytes)))
	return ipBase, sum16(pseudo) + sum16(tcpBytes)
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
