// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"encoding/binary"

	"github.com/xmirror/xmirror/config"
)

// The Go mirror of bpf/lb_hash.h, used by tests and tools to predict which
// backend a flow gets. Words are the packet bytes loaded little-endian, as the
// BPF program (bpfel) loads them. TestGoMirrorAgrees runs both on the same
// frames, so the two cannot drift apart unnoticed.

// hash3 multiplies three words by 64-bit odd constants, sums, folds and
// multiplies once more, keeping the high half (multiply-shift hashing: cheap
// in BPF, which has no rotate instruction).
func hash3(a, b, c, seed uint32) uint32 {
	h := uint64(a^seed)*0x9e3779b97f4a7c15 + uint64(b)*0xc2b2ae3d27d4eb4f + uint64(c)*0x165667b19e3779f9
	h ^= h >> 32
	h *= 0xd6e8feb86659fd93
	return uint32(h >> 32)
}

func word(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func half(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func hashIn6(a []byte) uint32 {
	return hash3(word(a[0:]), word(a[4:]), hash3(word(a[8:]), word(a[12:]), 0, hashSeed), hashSeed)
}

// symmetricHash hashes the unordered pairs {a, b} and {pa, pb}.
func symmetricHash(a, b uint32, pa, pb uint16, proto uint8) uint32 {
	lo, hi := min(a, b), max(a, b)
	plo, phi := uint32(min(pa, pb)), uint32(max(pa, pb))
	return hash3(lo, hi, plo<<16|phi, hashSeed+uint32(proto))
}

// outerHash hashes the directional outer UDP 5-tuple.
func outerHash(saddr, daddr uint32, sport, dport uint16) uint32 {
	return hash3(saddr, daddr, uint32(sport)<<16|uint32(dport), hashSeed+17)
}

func fragHash(saddr, daddr uint32, id uint16) uint32 {
	return hash3(saddr, daddr, uint32(id), hashSeedFrag)
}

// FlowHash is the hash the BPF program places frame by: frame is an outer
// Ethernet frame addressed to a VXLAN listener, affinity is inner-symmetric,
// outer or none. ok is false when the program would not hash it (not IPv4
// UDP, malformed, or affinity none). A first fragment hashes as its
// datagram would, from the headers it holds; a later fragment by (src, dst,
// id), which the program uses only when it has no record of the backend
// its first fragment went to (lb_frags).
func FlowHash(frame []byte, affinity string) (hash uint32, ok bool) {
	return ListenerFlowHash(frame, config.ProtocolVXLAN, affinity)
}

// ListenerFlowHash is FlowHash for a listener of the given protocol (vxlan,
// geneve or gre); a GENEVE or GRE header that runs past its packet is
// dropped, not hashed (ok false).
func ListenerFlowHash(frame []byte, protocol, affinity string) (hash uint32, ok bool) {
	l3, proto, good := parseEth(frame)
	if !good || proto != 0x0800 || len(frame) < l3+20 {
		return 0, false
	}
	ip := frame[l3:]
	ihl := int(ip[0]&0xf) * 4
	l4 := uint8(17)
	if protocol == config.ProtocolGRE {
		l4 = 47
	}
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl || ip[9] != l4 {
		return 0, false
	}
	saddr, daddr := word(ip[12:]), word(ip[16:])
	frag := binary.BigEndian.Uint16(ip[6:])
	if frag&0x1fff != 0 {
		return fragHash(saddr, daddr, half(ip[4:])), true
	}
	// a first fragment holds only part of the datagram: its tunnel header
	// is not judged
	first := frag&0x2000 != 0
	if protocol == config.ProtocolGRE {
		end := min(int(binary.BigEndian.Uint16(ip[2:])), len(ip))
		if end < ihl || !first && !greOK(ip[ihl:end]) {
			return 0, false
		}
		return byAffinity(affinity, outerHash(saddr, daddr, 0, 0), ip[ihl:], greInnerHash)
	}
	if len(ip) < ihl+8 {
		return 0, false
	}
	udp := ip[ihl:]
	outer := outerHash(saddr, daddr, half(udp[0:]), half(udp[2:]))
	if protocol == config.ProtocolGENEVE {
		if !first && !geneveOK(udp) {
			return 0, false
		}
		return byAffinity(affinity, outer, udp[8:], geneveInnerHash)
	}
	return byAffinity(affinity, outer, udp[8:], innerHash)
}

// byAffinity is the hash a whole datagram is placed by: outer, or inner's
// hash of the tunnel payload with outer as the fallback (none: not hashed).
func byAffinity(affinity string, outer uint32, payload []byte, inner func([]byte) (uint32, int)) (uint32, bool) {
	switch affinity {
	case "outer":
		return outer, true
	case "", "inner-symmetric":
		if h, kind := inner(payload); kind != innerNone {
			return h, true
		}
		return outer, true
	}
	return 0, false
}

// What innerHash could hash (enum lb_inner_kind of bpf/lb_parsing.h).
const (
	innerNone  = int(lbLbInnerKindLB_INNER_NONE)
	innerAddrs = int(lbLbInnerKindLB_INNER_ADDRS)
	innerFull  = int(lbLbInnerKindLB_INNER_FULL)
)

// innerVLANTags mirrors LB_INNER_VLAN_TAGS: the tags lb_parse_eth skips.
const innerVLANTags = 3

// parseEth mirrors lb_parse_eth: Ethernet and at most innerVLANTags tags.
func parseEth(b []byte) (l3 int, proto uint16, ok bool) {
	if len(b) < 14 {
		return 0, 0, false
	}
	proto = binary.BigEndian.Uint16(b[12:])
	l3 = 14
	for range innerVLANTags {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(b) < l3+4 {
			return 0, 0, false
		}
		proto = binary.BigEndian.Uint16(b[l3+2:])
		l3 += 4
	}
	return l3, proto, true
}

// innerHash mirrors lb_inner_hash: vx starts at the VXLAN header.
func innerHash(vx []byte) (uint32, int) {
	if len(vx) < 8 || vx[0]&0x08 == 0 {
		return 0, innerNone
	}
	return innerHashEth(vx[8:])
}

// innerHashEth mirrors lb_inner_hash_eth: fr is an inner Ethernet frame.
func innerHashEth(fr []byte) (uint32, int) {
	l3, proto, ok := parseEth(fr)
	if !ok {
		return 0, innerNone
	}
	return innerHashL3(proto, fr[l3:])
}

// innerHashL3 mirrors lb_inner_hash_l3: ip is an IPv4 or IPv6 packet; an
// ICMP error is hashed as the packet it quotes.
func innerHashL3(proto uint16, ip []byte) (uint32, int) {
	switch proto {
	case 0x0800:
		if len(ip) < 20 {
			return 0, innerNone
		}
		ihl := int(ip[0]&0xf) * 4
		if ip[9] == 1 && ihl >= 20 && binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 &&
			len(ip) >= ihl+8+20 && icmp4Error(ip[ihl]) {
			return flowHashIPv4(ip[ihl+8:])
		}
		return flowHashIPv4(ip)
	case 0x86dd:
		if len(ip) >= 40+8+40 && ip[6] == 58 && ip[40] >= 1 && ip[40] <= 4 {
			return flowHashIPv6(ip[48:])
		}
		return flowHashIPv6(ip)
	}
	return 0, innerNone
}

// icmp4Error mirrors lb_icmp4_error: the ICMP types that quote a packet.
func icmp4Error(typ byte) bool {
	return typ == 3 || typ == 4 || typ == 5 || typ == 11 || typ == 12
}

// flowHashIPv4 mirrors lb_flow_hash_ip4.
func flowHashIPv4(ip []byte) (uint32, int) {
	if len(ip) < 20 {
		return 0, innerNone
	}
	ihl := int(ip[0]&0xf) * 4
	if ihl < 20 {
		return 0, innerNone
	}
	a, b := word(ip[12:]), word(ip[16:])
	pa, pb, ok := innerPorts(ip, ihl, ip[9])
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || !ok {
		return symmetricHash(a, b, 0, 0, 0), innerAddrs
	}
	return symmetricHash(a, b, pa, pb, ip[9]), innerFull
}

// flowHashIPv6 mirrors lb_flow_hash_ip6.
func flowHashIPv6(ip []byte) (uint32, int) {
	if len(ip) < 40 {
		return 0, innerNone
	}
	a, b := hashIn6(ip[8:24]), hashIn6(ip[24:40])
	pa, pb, ok := innerPorts(ip, 40, ip[6])
	if !ok {
		return symmetricHash(a, b, 0, 0, 0), innerAddrs
	}
	return symmetricHash(a, b, pa, pb, ip[6]), innerFull
}

// innerPorts mirrors lb_inner_ports: l4 starts at ip[off:].
func innerPorts(ip []byte, off int, proto uint8) (pa, pb uint16, ok bool) {
	switch proto {
	case 6, 17, 132:
		if len(ip) < off+4 {
			return 0, 0, false
		}
		return half(ip[off:]), half(ip[off+2:]), true
	case 1, 58:
		if len(ip) < off+8 {
			return 0, 0, false
		}
		switch ip[off] {
		case 8, 0, 128, 129:
			id := half(ip[off+4:])
			return id, id, true
		}
		return 0, 0, true
	}
	return 0, 0, true
}
