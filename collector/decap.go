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
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	etherType9100  = 0x9100
	ipv6HeaderLen  = 40
	maxVLANHeaders = 2
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
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Frame is one decapsulated packet. Inner aliases the buffer given to Decap.
type Frame struct {
	VNI uint32
	// Inner is the inner Ethernet frame as captured by the mirror source,
	// possibly cut to the session's packet length.
	Inner []byte
	// OrigLen is the length of the frame before the source cut it, recovered
	// from the inner IP header; it is never less than len(Inner).
	OrigLen int
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
	return Frame{VNI: vni, Inner: inner, OrigLen: OriginalLength(inner)}, ReasonNone
}

// OriginalLength is the length the Ethernet frame had before a mirror source
// cut it, read from the IPv4 total length or the IPv6 payload length (after up
// to two VLAN tags). When the header is not there or says less than what was
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
	var orig int
	switch etype {
	case etherTypeIPv4:
		if n < l3+4 || frame[l3]>>4 != 4 {
			return n
		}
		orig = l3 + int(binary.BigEndian.Uint16(frame[l3+2:]))
	case etherTypeIPv6:
		if n < l3+6 || frame[l3]>>4 != 6 {
			return n
		}
		plen := int(binary.BigEndian.Uint16(frame[l3+4:]))
		if plen == 0 {
			// Jumbogram (RFC 2675): the length is in a hop-by-hop option we
			// do not chase; the captured length is all we know.
			return n
		}
		orig = l3 + ipv6HeaderLen + plen
	default:
		return n
	}
	if orig < n {
		return n
	}
	return orig
}
