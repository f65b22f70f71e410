// SPDX-License-Identifier: Apache-2.0

package collector

import "encoding/binary"

// VXLAN header layout (RFC 7348 section 5).
const (
	vxlanHeaderLen = 8
	// vxlanFlagI is the "VNI valid" flag. RFC 7348 says the other flag bits are
	// reserved, MUST be zero on transmission and ignored on receipt, so only the
	// I flag is checked: extensions such as Group Based Policy set other bits and
	// still carry a valid VNI.
	vxlanFlagI   = 0x08
	ethHeaderLen = 14
)

// Ethertypes the original-length recovery understands.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
	etherType9100 = 0x9100
	ipv6HeaderLen = 40
	// maxVLANHeaders is the most tags a copy from xmirror source carries:
	// two in the frame's data and, at ingress, the outermost that the
	// kernel kept in metadata and the source puts back in place.
	maxVLANHeaders = 3
)

// Reason says why a datagram was not written. ReasonNone means it was.
type Reason uint8

// Drop reasons; their names are the "reason" label of the drop metric.
const (
	ReasonNone Reason = iota
	// ReasonShort: the UDP payload is shorter than a VXLAN header.
	ReasonShort
	// ReasonBadFlags: the VXLAN I flag (VNI valid) is not set.
	ReasonBadFlags
	// ReasonShortInner: the inner frame is shorter than an Ethernet header.
	ReasonShortInner
	// ReasonUnknownVNI: no session has this VNI and unknown_vni is drop.
	ReasonUnknownVNI
	// ReasonSocketTruncated: the datagram was larger than the receive buffer.
	ReasonSocketTruncated
	// ReasonWriteError: the session's file could not be written (disk full,
	// I/O error) or is waiting to be reopened after such an error.
	ReasonWriteError
	// ReasonSessionLimit: a new unknown VNI beyond Options.MaxSessions.
	ReasonSessionLimit
	// ReasonDiskLow: the output filesystem is below Options.MinFree.
	ReasonDiskLow
	// ReasonBadLength: the UDP length disagrees with the packet (XDP path;
	// the kernel drops such datagrams before a socket sees them).
	ReasonBadLength
	// ReasonRingFull: the XDP program found no room in the ring buffer
	// (the ring reader is behind).
	ReasonRingFull
	// ReasonWriterBehind: the writer of the packet's session had no free
	// hand-off batch (the disk or the writer is behind).
	ReasonWriterBehind
	// ReasonGeneveShort: the UDP payload is shorter than the GENEVE header
	// with the options its Opt Len announces.
	ReasonGeneveShort
	// ReasonGeneveVersion: a GENEVE version other than 0 (its layout is
	// unknown).
	ReasonGeneveVersion
	// ReasonGeneveProtocol: a GENEVE payload that is not Ethernet, IPv4 or
	// IPv6.
	ReasonGeneveProtocol
	// ReasonGREShort: the GRE header with the fields its flags announce
	// runs past the packet.
	ReasonGREShort
	// ReasonGREHeader: GRE with the routing bit, reserved bits or a
	// version other than 0 (RFC 1701 source routing, PPTP).
	ReasonGREHeader
	// ReasonGREProtocol: a GRE payload that is neither ERSPAN nor
	// transparent Ethernet bridging.
	ReasonGREProtocol
	// ReasonERSPANShort: the packet ends inside the ERSPAN header (or its
	// platform-specific sub-header).
	ReasonERSPANShort
	// ReasonERSPANVersion: the ERSPAN header's version disagrees with the
	// GRE protocol type (1 for type II, 2 for type III).
	ReasonERSPANVersion
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:            "none",
	ReasonShort:           "short",
	ReasonBadFlags:        "bad_flags",
	ReasonShortInner:      "short_inner",
	ReasonUnknownVNI:      "unknown_vni",
	ReasonSocketTruncated: "socket_truncated",
	ReasonWriteError:      "write_error",
	ReasonSessionLimit:    "session_limit",
	ReasonDiskLow:         "disk_low",
	ReasonBadLength:       "bad_length",
	ReasonRingFull:        "ring_full",
	ReasonWriterBehind:    "writer_behind",
	ReasonGeneveShort:     "geneve_short",
	ReasonGeneveVersion:   "geneve_version",
	ReasonGeneveProtocol:  "geneve_protocol",
	ReasonGREShort:        "gre_short",
	ReasonGREHeader:       "gre_header",
	ReasonGREProtocol:     "gre_protocol",
	ReasonERSPANShort:     "erspan_short",
	ReasonERSPANVersion:   "erspan_version",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Frame is one decapsulated packet. Inner and Tunnel alias the buffer given
// to the decapsulation.
type Frame struct {
	// Key is the session: the tunnel protocol and its id.
	Key Key
	// Inner is the inner Ethernet frame as captured by the mirror source,
	// possibly cut to the session's packet length; with EtherType set, the
	// IP packet that follows the Ethernet header the collector synthesizes.
	Inner []byte
	// OrigLen is the length of the frame before the source cut it, recovered
	// from the inner IP header; it is never less than the captured length
	// (len(Inner), plus the synthesized Ethernet header).
	OrigLen int
	// EtherType is not 0 for a GENEVE payload that is an IPv4 or IPv6
	// packet without Ethernet (AWS Gateway Load Balancer sends those): the
	// files get it behind an Ethernet header of this type with zero
	// addresses, so that every file stays one link type.
	EtherType uint16
	// Tunnel is the tunnel header the metadata in the files comes from:
	// GENEVE with its options, or GRE with the ERSPAN header behind it;
	// nil for VXLAN, which has none to keep.
	Tunnel []byte
}

// capLen is the length of the frame as written.
func (f *Frame) capLen() int {
	if f.EtherType != 0 {
		return ethHeaderLen + len(f.Inner)
	}
	return len(f.Inner)
}

// Decap parses the UDP payload of one VXLAN datagram. It never panics and
// never allocates: anything that is not a VXLAN frame with the I flag and an
// inner Ethernet header comes back with a drop reason.
func Decap(payload []byte) (Frame, Reason) {
	if len(payload) < vxlanHeaderLen {
		return Frame{}, ReasonShort
	}
	if payload[0]&vxlanFlagI == 0 {
		return Frame{}, ReasonBadFlags
	}
	inner := payload[vxlanHeaderLen:]
	if len(inner) < ethHeaderLen {
		return Frame{}, ReasonShortInner
	}
	vni := binary.BigEndian.Uint32(payload[4:8]) >> 8
	return Frame{Key: VXLAN(vni), Inner: inner, OrigLen: OriginalLength(inner)}, ReasonNone
}

// OriginalLength is the length the Ethernet frame had before a mirror source
// cut it, read from the IPv4 total length or the IPv6 payload length (after up
// to three VLAN tags). When the header is not there or says less than what was
// captured (Ethernet padding), the captured length is the answer.
func OriginalLength(frame []byte) int {
	n := len(frame)
	if n < ethHeaderLen {
		return n
	}
	off := 12
	etype := binary.BigEndian.Uint16(frame[off:])
	for i := 0; i < maxVLANHeaders && (etype == etherTypeVLAN || etype == etherTypeQinQ || etype == etherType9100); i++ {
		off += 4
		if n < off+2 {
			return n
		}
		etype = binary.BigEndian.Uint16(frame[off:])
	}
	l3 := off + 2
	return l3 + packetLength(etype, frame[l3:])
}

// packetLength is the length an IPv4 or IPv6 packet had before it was cut,
// from its header; len(pkt) when the header is not there, is of another
// type or says less than what was captured.
func packetLength(etype uint16, pkt []byte) int {
	n := len(pkt)
	var orig int
	switch etype {
	case etherTypeIPv4:
		if n < 4 || pkt[0]>>4 != 4 {
			return n
		}
		orig = int(binary.BigEndian.Uint16(pkt[2:]))
	case etherTypeIPv6:
		if n < 6 || pkt[0]>>4 != 6 {
			return n
		}
		plen := int(binary.BigEndian.Uint16(pkt[4:]))
		if plen == 0 {
			// Jumbogram (RFC 2675): the length is in a hop-by-hop option we
			// do not chase; the captured length is all we know.
			return n
		}
		orig = ipv6HeaderLen + plen
	default:
		return n
	}
	return max(orig, n)
}

// Decapper parses what one input reads (a UDP payload, a raw IP packet)
// into a frame, or says why it is dropped: Decap (VXLAN), DecapGENEVE,
// DecapIPv4GRE, DecapGRE.
type Decapper func([]byte) (Frame, Reason)

// appendTo appends the tunnel header and the frame as written (behind
// the synthesized Ethernet header when EtherType is set) to b; the frame
// starts at the returned offset.
func (f *Frame) appendTo(b []byte) ([]byte, int) {
	b = append(b, f.Tunnel...)
	off := len(b)
	if f.EtherType != 0 {
		// Zero addresses: there were none; the type says what follows.
		var eth [ethHeaderLen]byte
		binary.BigEndian.PutUint16(eth[12:], f.EtherType)
		b = append(b, eth[:]...)
	}
	return append(b, f.Inner...), off
}

// flatten copies the frame into dst (reused when large enough) as the
// writers get it from the hand-off: Inner the whole Ethernet frame, Tunnel
// in front of it.
func (f Frame) flatten(dst []byte) Frame {
	b, off := f.appendTo(dst[:0])
	f.Tunnel, f.Inner, f.EtherType = b[:off:off], b[off:], 0
	return f
}
