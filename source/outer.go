// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The outer headers in front of a mirrored frame, as the clouds' mirrors
// send them (RFC 7348): IPv4 without options (DSCP Lower Effort, DF, the
// source interface's address, the session's TTL), UDP to port 4789 whose source port carries
// the flow hash (checksum 0), VXLAN with the I flag and the session's VNI.
// The ring datapath's program writes them (outer_fill in bpf/outer.h, for
// the ring's records and the direct sends; TestOuterLayout checks it
// against appendOuter), the perf datapath writes
// them here, the kernel datapath leaves them to the vxlan driver. This file
// is the one place in Go that knows their layout.
const (
	outerLen  = int(sourceXmWireXM_OUTER_LEN) // IPv4 + UDP + VXLAN
	ipUDPLen  = 20 + 8                        // IPv4 + UDP
	ethLen    = int(sourceXmWireXM_ETH_HLEN)
	vxlanPort = uint16(sourceXmWireXM_VXLAN_PORT)
	maxIPLen  = 0xffff
	// mirrorTOS is the outer IPv4 TOS: DSCP Lower Effort, by which every
	// xmirror source recognises mirrored traffic (is_mirror in
	// bpf/source.c).
	mirrorTOS = byte(sourceXmWireXM_MIRROR_TOS)

	// Offsets in the outer packet.
	offTotalLen = 2  // IPv4 total length
	offIPCsum   = 10 // IPv4 header checksum
	offAddrs    = 12 // IPv4 source, then destination address
	offDst      = 16
	offUDPLen   = 24
	offUDPCsum  = 26
	udpCsumOff  = offUDPCsum - 20 // in the UDP header
)

// outerFields are what varies in the outer headers.
type outerFields struct {
	local, remote uint32 // IPv4 addresses, network order in memory
	ttl           uint8
	sport         uint16 // from the flow hash (portRange.sourcePort)
	vni           uint32
}

// appendOuter appends the outer headers of a frame of frameLen bytes to b.
// The IPv4 ID and checksum stay 0: the raw socket fills them in (the
// AF_PACKET paths set the checksum, setIPv4Checksum).
func appendOuter(b []byte, o outerFields, frameLen int) []byte {
	total := outerLen + frameLen
	b = append(b, 0x45, mirrorTOS) // version, IHL, TOS
	b = binary.BigEndian.AppendUint16(b, uint16(total))
	b = append(b,
		0, 0, 0x40, 0, // ID, DF
		o.ttl, unix.IPPROTO_UDP, 0, 0, // TTL, protocol, checksum
	)
	b = binary.NativeEndian.AppendUint32(b, o.local)
	b = binary.NativeEndian.AppendUint32(b, o.remote)
	b = binary.BigEndian.AppendUint16(b, o.sport)
	b = binary.BigEndian.AppendUint16(b, vxlanPort)
	b = binary.BigEndian.AppendUint16(b, uint16(total-20))
	b = append(b, 0, 0) // UDP checksum
	b = append(b, 0x08, 0, 0, 0)
	return binary.BigEndian.AppendUint32(b, o.vni<<8)
}

// outerOK tells whether pkt starts with outer headers as appendOuter and the
// programs write them: IPv4 without options, UDP, the total length of pkt,
// and a frame of at least an Ethernet header.
func outerOK(pkt []byte) bool {
	return len(pkt) >= outerLen+ethLen && pkt[0] == 0x45 && pkt[9] == unix.IPPROTO_UDP &&
		int(binary.BigEndian.Uint16(pkt[offTotalLen:])) == len(pkt)
}

// outerDst is the outer destination address.
func outerDst(pkt []byte) (dst [4]byte) {
	copy(dst[:], pkt[offDst:offDst+4])
	return dst
}

// sameOuterFlow tells whether two outer packets have the same addresses and
// UDP ports.
func sameOuterFlow(p, q []byte) bool {
	// Words, not bytes.Equal: this runs for every record and open run.
	p, q = p[offAddrs:offUDPLen], q[offAddrs:offUDPLen]
	return binary.NativeEndian.Uint64(p) == binary.NativeEndian.Uint64(q) &&
		binary.NativeEndian.Uint32(p[8:]) == binary.NativeEndian.Uint32(q[8:])
}

// innerFrame is the mirrored frame behind the outer headers.
func innerFrame(pkt []byte) []byte { return pkt[outerLen:] }

// setIPv4Checksum fills in the checksum of the outer IPv4 header.
func setIPv4Checksum(pkt []byte) {
	binary.BigEndian.PutUint16(pkt[offIPCsum:], ipv4Checksum(pkt[:20]))
}

// resizeOuter makes the outer IPv4 and UDP headers hdr cover total bytes, a
// run of segments sent as one: lengths, and as UDP checksum the
// pseudo-header's sum, which the kernel (or the NIC) completes per segment.
func resizeOuter(hdr []byte, total int) {
	binary.BigEndian.PutUint16(hdr[offTotalLen:], uint16(total))
	udpLen := uint16(total - 20)
	binary.BigEndian.PutUint16(hdr[offUDPLen:], udpLen)
	binary.BigEndian.PutUint16(hdr[offUDPCsum:], pseudoHeaderSum(hdr[offAddrs:offAddrs+8], udpLen))
}

// ipv4Checksum is the checksum of an IPv4 header whose checksum field is
// zero or already set (it is skipped).
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i != offIPCsum {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoHeaderSum is the folded one's-complement sum of the IPv4 UDP
// pseudo-header (addrs: source and destination address) for a UDP length.
func pseudoHeaderSum(addrs []byte, udpLen uint16) uint16 {
	sum := uint32(unix.IPPROTO_UDP) + uint32(udpLen)
	for i := 0; i+1 < len(addrs); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(addrs[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// portRange is the range the vxlan driver takes outer source ports from
// (net.ipv4.ip_local_port_range), so every datapath picks the port the
// driver would.
type portRange struct{ min, span uint32 }

// localPortRange reads the host's range.
func localPortRange() portRange {
	lo, hi := uint32(32768), uint32(60999)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l < h {
				lo, hi = uint32(l), uint32(h)
			}
		}
	}
	return portRange{min: lo, span: hi - lo}
}

// sourcePort is udp_flow_src_port() of the kernel for a flow hash (outer_port
// in bpf/hash.h).
func (r portRange) sourcePort(hash uint32) uint16 {
	hash ^= hash << 16
	return uint16((uint64(hash)*uint64(r.span))>>32 + uint64(r.min))
}
