// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload of the ring datapath's AF_PACKET path.
//
// Sending a packet costs the kernel about a microsecond whatever its size
// (BenchmarkSendPath): allocating the socket buffer, the trip through the
// socket layer and the device, and on the far side of a veth the receive
// path. Mirrored packets of one flow share the target and the outer UDP
// ports (both directions have the same symmetric source port) and, once cut
// to the session's packet length, mostly the size. Such a run leaves as one
// UDP GSO packet: an outer IPv4/UDP header and the VXLAN payloads one after
// the other, with a virtio-net header that asks for segments of the run's
// payload size. The kernel cuts it into the packets the run would have been
// (own IPv4 length, ID and checksum, UDP length and checksum each), in
// hardware on a NIC with UDP segmentation, late in the stack otherwise.
//
// Runs are built from one batch (at most batchSize records) and keep what a
// reader of the capture relies on: the packets of one flow and direction
// stay in ring order, and a pure TCP acknowledgement never reaches the target
// before a packet it acknowledges. A bulk transfer mirrored in both
// directions (data one way, acknowledgements the other) then leaves as two
// runs per batch instead of alternating packets; see blocks for the rules.
const (
	vnetHdrLen = 10 // struct virtio_net_hdr

	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSOUDPL4  = 5 // VIRTIO_NET_HDR_GSO_UDP_L4

	// maxRunSegs is UDP_MAX_SEGMENTS: the kernel refuses (EINVAL) a
	// virtio-net header asking for more segments.
	maxRunSegs = 128
)

// What a record holds, as far as the order of packets goes.
const (
	kindOther = iota // anything but a pure TCP acknowledgement
	kindAck          // TCP with ACK, without SYN, FIN or RST, without payload
)

// run is a set of records of one batch that leave as one packet: one flow
// (next hop, outer addresses and ports), one direction, one kind, one
// payload size but for the last.
type run struct {
	head, tail int // first and last record
	seg, total int // payload size of a segment, IPv4 length so far
	segs       int // records in the run
	dir, kind  int
	open       bool
}

// at is where the run leaves among the batch's records: other records
// where its first is (later ones move ahead), pure acknowledgements where
// its last is (earlier ones wait).
func (r *run) at() int {
	if r.kind == kindAck {
		return r.tail
	}
	return r.head
}

// runs groups the records of a link batch into runs and sends them, one
// packet per run.
type runs struct {
	eths  [batchSize]*[ethLen]byte // Ethernet header of record i
	next  [batchSize]int           // next record of record i's run, -1 after the last
	list  [batchSize]run           // the batch's runs, as they were started
	n     int                      // runs in list
	order [batchSize]int           // runs in the order they leave
	vnet  [batchSize][vnetHdrLen]byte
	// Outer IPv4 and UDP headers of each run's packet: copied from its
	// first record, which stays in the ring (mapped read-only).
	hdrs [batchSize][ipUDPLen]byte
	iovs [4 * batchSize]unix.Iovec
	// Packets handed to the kernel (a run counts once).
	sent atomic.Uint64
}

// admit puts record i of b, just added, into a run: the open run of its
// flow, direction and kind if its size fits, else a new one. It closes the
// runs of its flow that could no longer grow without reordering what must
// not be reordered (see blocks).
func (g *runs) admit(b *batch, i int) {
	pkt := b.pkts[i]
	seg := len(pkt) - ipUDPLen
	dir, kind := b.keys[i]&1, recordKind(innerFrame(pkt))
	g.next[i] = -1
	joined := false
	for k := 0; k < g.n; k++ {
		r := &g.list[k]
		if !r.open || !sameFlow(b, r.head, i) {
			continue
		}
		if !joined && r.dir == dir && r.kind == kind && seg <= r.seg && r.total+seg <= maxIPLen && r.segs < maxRunSegs {
			g.next[r.tail] = i
			r.tail = i
			r.total += seg
			r.segs++
			r.open = seg == r.seg // a shorter segment is the last
			joined = true
			continue
		}
		if blocks(r, dir, kind) {
			r.open = false
		}
	}
	if !joined {
		g.list[g.n] = run{head: i, tail: i, seg: seg, total: len(pkt), segs: 1, dir: dir, kind: kind, open: true}
		g.n++
	}
}

// blocks tells whether a record of one flow (direction dir, kind kind) must
// close an open run r of the same flow. A run of other records leaves where
// its first record is, so its later records would move ahead of this one:
// allowed only past a pure acknowledgement of the opposite direction. A run
// of pure acknowledgements leaves where its last record is, so its earlier
// records would wait behind this one: allowed only for the opposite
// direction. So the packets of one flow and direction always keep their
// order, and an acknowledgement never reaches the target before the data it
// acknowledges.
func blocks(r *run, dir, kind int) bool {
	if r.kind == kindAck {
		return dir == r.dir
	}
	return kind != kindAck || dir == r.dir
}

// sameFlow tells whether records i and j of b go to the same next hop with
// the same outer addresses and ports (the outer source port is a hash of
// the inner flow, so different flows may share it: they are kept in order
// as one).
func sameFlow(b *batch, i, j int) bool {
	// The next hop's pointer before its address: this runs for every
	// record and open run.
	return sameOuterFlow(b.pkts[i], b.pkts[j]) &&
		(b.runs.eths[i] == b.runs.eths[j] || b.lls[i] == b.lls[j])
}

// recordKind tells a pure TCP acknowledgement (IPv4 or IPv6, perhaps behind
// one VLAN tag) from anything else, in a frame that may be cut.
func recordKind(f []byte) int {
	if len(f) < 14 {
		return kindOther
	}
	et, off := binary.BigEndian.Uint16(f[12:]), 14
	if (et == 0x8100 || et == 0x88a8) && len(f) >= 18 {
		et, off = binary.BigEndian.Uint16(f[16:]), 18
	}
	ip := f[off:]
	var tcp []byte
	var l4len int
	switch {
	case et == 0x0800 && len(ip) >= 20 && ip[0]>>4 == 4:
		ihl := int(ip[0]&15) * 4
		if ihl < 20 || ip[9] != unix.IPPROTO_TCP || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || len(ip) < ihl+20 {
			return kindOther
		}
		tcp, l4len = ip[ihl:], int(binary.BigEndian.Uint16(ip[2:]))-ihl
	case et == 0x86dd && len(ip) >= 60 && ip[0]>>4 == 6 && ip[6] == unix.IPPROTO_TCP:
		tcp, l4len = ip[40:], int(binary.BigEndian.Uint16(ip[4:]))
	default:
		return kindOther
	}
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	doff, flags := int(tcp[12]>>4)*4, tcp[13]
	if doff < 20 || flags&ack == 0 || flags&(fin|syn|rst) != 0 || l4len != doff {
		return kindOther
	}
	return kindAck
}

// send sends the records of b, a run per packet, and empties b; a run the
// kernel refuses counts in errs once per record.
func (g *runs) send(fd int, b *batch, errs *sendErrors) {
	m := g.build(b)
	sendMessages(fd, b.msgs[:m], func(i int) {
		for k := g.list[g.order[i]].head; k >= 0; k = g.next[k] {
			errs[b.keys[k]].Add(1)
		}
	})
	g.sent.Add(uint64(m))
	b.n = 0
	g.n = 0
}

// build fills in b.msgs with one message per run, in the order the runs
// leave, and returns their number.
func (g *runs) build(b *batch) int {
	for k := 0; k < g.n; k++ {
		j := k
		for ; j > 0 && g.list[g.order[j-1]].at() > g.list[k].at(); j-- {
			g.order[j] = g.order[j-1]
		}
		g.order[j] = k
	}
	v := 0
	for m := 0; m < g.n; m++ {
		r := &g.list[g.order[m]]
		iov := v
		v = g.packet(b, r, m, v)
		b.msgs[m] = mmsghdr{hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.lls[r.head])),
			Namelen: unix.SizeofSockaddrLinklayer,
			Iov:     &g.iovs[iov],
		}}
		b.msgs[m].hdr.SetIovlen(v - iov)
	}
	return g.n
}

// packet fills in message m for run r from iovec v on: the virtio-net
// header, the Ethernet header, the outer IPv4 and UDP headers (a copy of the
// first record's, made to cover the whole run), the rest of the first
// record, the others' payloads. It returns the next free iovec.
func (g *runs) packet(b *batch, r *run, m, v int) int {
	first := b.pkts[r.head]
	h := &g.vnet[m]
	*h = [vnetHdrLen]byte{}
	g.iovs[v] = unix.Iovec{Base: &h[0]}
	g.iovs[v].SetLen(vnetHdrLen)
	g.iovs[v+1] = unix.Iovec{Base: &g.eths[r.head][0]}
	g.iovs[v+1].SetLen(ethLen)
	hdr := &g.hdrs[m]
	copy(hdr[:], first)
	g.iovs[v+2] = unix.Iovec{Base: &hdr[0]}
	g.iovs[v+2].SetLen(ipUDPLen)
	g.iovs[v+3] = unix.Iovec{Base: &first[ipUDPLen]}
	g.iovs[v+3].SetLen(len(first) - ipUDPLen)
	v += 4
	for k := g.next[r.head]; k >= 0; k = g.next[k] {
		p := b.pkts[k][ipUDPLen:]
		g.iovs[v] = unix.Iovec{Base: &p[0]}
		g.iovs[v].SetLen(len(p))
		v++
	}
	if r.tail != r.head {
		resizeOuter(hdr[:], r.total)
		h[0] = vnetNeedsCsum
		h[1] = vnetGSOUDPL4
		binary.LittleEndian.PutUint16(h[2:], uint16(ethLen+ipUDPLen)) // headers
		binary.LittleEndian.PutUint16(h[4:], uint16(r.seg))           // segment payload
		binary.LittleEndian.PutUint16(h[6:], uint16(ethLen+20))       // checksum start: UDP
		binary.LittleEndian.PutUint16(h[8:], udpCsumOff)
	}
	setIPv4Checksum(hdr[:])
	return v
}
