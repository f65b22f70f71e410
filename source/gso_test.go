package source

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// outerPacket is a packet as the ring program writes it: outer IPv4 (DF, no
// ID, no checksum), UDP to 4789 from sport (checksum 0), VXLAN with vni and
// a frame of frameLen bytes whose content tells records apart.
func outerPacket(sport uint16, dst byte, vni uint32, frameLen int, seed byte) []byte {
	n := outerLen + frameLen
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[6] = 0x40
	p[8], p[9] = 64, unix.IPPROTO_UDP
	copy(p[12:], []byte{192, 168, 0, 230, 192, 168, 0, dst})
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], 4789)
	binary.BigEndian.PutUint16(p[24:], uint16(n-20))
	binary.BigEndian.PutUint32(p[28:], 0x08000000)
	binary.BigEndian.PutUint32(p[32:], vni<<8)
	for i := outerLen; i < n; i++ {
		p[i] = seed + byte(i)
	}
	return p
}

func testHop(ifindex int32, mac byte) *nextHop {
	h := &nextHop{ok: true}
	h.ll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	h.ll.Addr[5] = mac
	h.eth = [ethLen]byte{5: mac, 11: 1, 12: 0x08}
	return h
}

// iovBytes is what the kernel reads for a message: its iovecs one after the
// other.
func iovBytes(m *mmsghdr) []byte {
	var out []byte
	iovs := unsafe.Slice(m.hdr.Iov, m.hdr.Iovlen)
	for _, v := range iovs {
		out = append(out, unsafe.Slice(v.Base, v.Len)...)
	}
	return out
}

// onesSum is the folded one's-complement sum of 16-bit words.
func onesSum(words ...uint16) uint16 {
	var s uint32
	for _, w := range words {
		s += uint32(w)
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestRuns: consecutive packets to one next hop with the same outer
// addresses and ports and the same size leave as one UDP GSO packet, a
// shorter packet ends a run, anything else starts a new one; each message
// is the virtio-net header, the Ethernet header, outer headers that cover
// the run and the payloads in ring order.
func TestRuns(t *testing.T) {
	a, b := testHop(2, 0xaa), testHop(3, 0xbb)
	type rec struct {
		hop      *nextHop
		sport    uint16
		dst      byte
		frameLen int
	}
	big := 1500 - 50 // a frame cut to the path MTU
	for _, tc := range []struct {
		name string
		recs []rec
		runs []int // records per message
	}{
		{"one packet", []rec{{a, 1000, 147, 96}}, []int{1}},
		{"equal sizes", []rec{{a, 1000, 147, 96}, {a, 1000, 147, 96}, {a, 1000, 147, 96}}, []int{3}},
		{"shorter last ends the run", []rec{{a, 1000, 147, 96}, {a, 1000, 147, 66}, {a, 1000, 147, 96}, {a, 1000, 147, 96}}, []int{2, 2}},
		{"longer starts a run", []rec{{a, 1000, 147, 66}, {a, 1000, 147, 96}, {a, 1000, 147, 96}}, []int{1, 2}},
		{"other source port", []rec{{a, 1000, 147, 96}, {a, 1001, 147, 96}, {a, 1001, 147, 96}}, []int{1, 2}},
		{"other target", []rec{{a, 1000, 147, 96}, {a, 1000, 148, 96}}, []int{1, 1}},
		{"other next hop", []rec{{a, 1000, 147, 96}, {b, 1000, 147, 96}, {a, 1000, 147, 96}}, []int{1, 1, 1}},
		{"64 KiB at most", func() []rec {
			r := make([]rec, 50)
			for i := range r {
				r[i] = rec{a, 1000, 147, big}
			}
			return r
		}(), []int{44, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bt := &batch{link: true, runs: &runs{}}
			var pkts [][]byte
			for i, r := range tc.recs {
				p := outerPacket(r.sport, r.dst, 1, r.frameLen, byte(i))
				pkts = append(pkts, bytes.Clone(p))
				bt.pkts[i], bt.keys[i], bt.lls[i] = p, 2, r.hop.ll
				bt.runs.eths[i] = &r.hop.eth
				bt.runs.admit(bt, i)
				bt.n++
			}
			m := bt.runs.build(bt)
			if m != len(tc.runs) {
				t.Fatalf("%d messages, want %d", m, len(tc.runs))
			}
			next := 0
			for k := 0; k < m; k++ {
				n := tc.runs[k]
				if got := bt.runs.first[k+1] - bt.runs.first[k]; got != n {
					t.Fatalf("message %d holds %d records, want %d", k, got, n)
				}
				msg := &bt.msgs[k]
				ll := (*unix.RawSockaddrLinklayer)(unsafe.Pointer(msg.hdr.Name))
				if *ll != tc.recs[next].hop.ll {
					t.Errorf("message %d to %+v, want %+v", k, *ll, tc.recs[next].hop.ll)
				}
				checkMessage(t, iovBytes(msg), tc.recs[next].hop, pkts[next:next+n])
				next += n
			}
		})
	}
}

// checkMessage checks one message against the packets it carries, as the
// kernel would cut it.
func checkMessage(t *testing.T, raw []byte, hop *nextHop, want [][]byte) {
	t.Helper()
	vnet, eth, ip := raw[:vnetHdrLen], raw[vnetHdrLen:vnetHdrLen+ethLen], raw[vnetHdrLen+ethLen:]
	if !bytes.Equal(eth, hop.eth[:]) {
		t.Errorf("Ethernet header % x, want % x", eth, hop.eth)
	}
	if ipv4Checksum(ip[:20]) != binary.BigEndian.Uint16(ip[10:]) {
		t.Errorf("IPv4 checksum %#04x, want %#04x", binary.BigEndian.Uint16(ip[10:]), ipv4Checksum(ip[:20]))
	}
	if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || int(binary.BigEndian.Uint16(ip[24:])) != len(ip)-20 {
		t.Errorf("IPv4 length %d, UDP length %d for %d bytes", binary.BigEndian.Uint16(ip[2:]), binary.BigEndian.Uint16(ip[24:]), len(ip))
	}
	if len(want) == 1 {
		if !bytes.Equal(vnet, make([]byte, vnetHdrLen)) {
			t.Errorf("single packet with virtio-net header % x", vnet)
		}
		if !bytes.Equal(ip[12:], want[0][12:]) || binary.BigEndian.Uint16(ip[26:]) != 0 {
			t.Errorf("single packet changed:\n % x\n % x", ip, want[0])
		}
		return
	}
	seg := len(want[0]) - ipUDPLen
	wantVnet := []byte{vnetNeedsCsum, vnetGSOUDPL4, ethLen + ipUDPLen, 0, byte(seg), byte(seg >> 8), ethLen + 20, 0, udpCsumOff, 0}
	if !bytes.Equal(vnet, wantVnet) {
		t.Errorf("virtio-net header % x, want % x", vnet, wantVnet)
	}
	// The partial checksum is the pseudo-header's sum for the run's length.
	pseudo := onesSum(0xc0a8, 0x00e6, 0xc0a8, uint16(ip[18])<<8|uint16(ip[19]), unix.IPPROTO_UDP, uint16(len(ip)-20))
	if got := binary.BigEndian.Uint16(ip[26:]); got != pseudo {
		t.Errorf("UDP checksum field %#04x, want the pseudo-header sum %#04x", got, pseudo)
	}
	if !bytes.Equal(ip[12:24], want[0][12:24]) {
		t.Errorf("outer addresses and ports % x, want % x", ip[12:24], want[0][12:24])
	}
	payload := ip[ipUDPLen:]
	for i, w := range want {
		n := min(seg, len(payload))
		if i == len(want)-1 && n != len(payload) {
			t.Fatalf("%d bytes left after the last segment", len(payload)-n)
		}
		if !bytes.Equal(payload[:n], w[ipUDPLen:]) {
			t.Fatalf("segment %d differs from packet %d", i, i)
		}
		payload = payload[n:]
	}
}
