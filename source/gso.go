package source

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload of the ring datapath's AF_PACKET path.
//
// Sending a packet costs the kernel about a microsecond whatever its size
// (BenchmarkSendPath): allocating the socket buffer, the trip through the
// socket layer and the device, and on the far side of a veth the receive
// path. Mirrored packets come in runs that share the target and the outer
// UDP ports (one flow's packets, both directions alike, have the same
// symmetric source port) and, once cut to the session's packet length, the
// same size. Such a run leaves as one UDP GSO packet: an outer IPv4/UDP
// header and the VXLAN payloads one after the other, with a virtio-net
// header that asks for segments of the run's payload size. The kernel cuts
// it into the same packets the run would have been (own IPv4 length, ID and
// checksum, UDP length and checksum each), in hardware on a NIC with UDP
// segmentation, late in the stack otherwise.
//
// Packets are never reordered: a run is consecutive records of the ring, all
// of one size except the last, which may be shorter (the kernel allows a
// short last segment) and closes the run.
const (
	vnetHdrLen = 10 // struct virtio_net_hdr

	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSOUDPL4  = 5 // VIRTIO_NET_HDR_GSO_UDP_L4

	// Offsets in the frame the kernel builds: Ethernet, IPv4 without
	// options, UDP.
	ethLen     = 14
	ipUDPLen   = 28
	udpCsumOff = 6

	maxIPLen = 0xffff
)

// gsoSocket is an AF_PACKET socket for whole Ethernet frames whose packets
// carry mark and start with a virtio-net header, which is how a packet asks
// for segmentation offload (the kernel reads that header only on a socket of
// type SOCK_RAW). It is never bound, so it receives nothing.
func gsoSocket(mark uint32) (int, error) {
	fd, err := markedSocket("packet socket", unix.AF_PACKET, unix.SOCK_RAW, 0, mark)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket: set PACKET_VNET_HDR: %w", err)
	}
	return fd, nil
}

// runs groups the records of a link batch into runs and sends them, one
// packet per run.
type runs struct {
	cont  [batchSize]bool          // record i travels in the packet of record i-1
	eths  [batchSize]*[ethLen]byte // Ethernet header of record i
	vnet  [batchSize][vnetHdrLen]byte
	iovs  [3 * batchSize]unix.Iovec
	first [batchSize + 1]int // first record of each packet, then b.n
	// The open run: its first record, payload size and IPv4 length so far.
	start, seg, total int
	open              bool
	// Packets handed to the kernel (a run counts once).
	sent atomic.Uint64
}

// admit decides whether record i of b, just added, extends the open run.
func (g *runs) admit(b *batch, i int) {
	pkt := b.pkts[i]
	seg := len(pkt) - ipUDPLen
	if i > 0 && g.open && seg <= g.seg && g.total+seg <= maxIPLen &&
		b.lls[i] == b.lls[g.start] && bytes.Equal(pkt[12:24], b.pkts[g.start][12:24]) {
		g.cont[i] = true
		g.total += seg
		g.open = seg == g.seg
		return
	}
	g.cont[i] = false
	g.start, g.seg, g.total, g.open = i, seg, len(pkt), true
}

// send sends the records of b, a run per packet, and empties b.
func (g *runs) send(fd int, b *batch, errs *[MaxSessions * 2]atomic.Uint64) {
	m := g.build(b)
	for sent := 0; sent < m; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[sent])), uintptr(m-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || r == 0 {
			// The first packet failed: count each record in it and go on.
			for k := g.first[sent]; k < g.first[sent+1]; k++ {
				errs[b.keys[k]].Add(1)
			}
			sent++
			continue
		}
		sent += int(r)
	}
	g.sent.Add(uint64(m))
	b.n = 0
	g.open = false
}

// build fills in b.msgs with one message per run and returns their number.
func (g *runs) build(b *batch) int {
	m, v := 0, 0
	for i := 0; i < b.n; m++ {
		g.first[m] = i
		j := i + 1
		for j < b.n && g.cont[j] {
			j++
		}
		iov := v
		v = g.packet(b, i, j, m, v)
		b.msgs[m] = mmsghdr{hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.lls[i])),
			Namelen: unix.SizeofSockaddrLinklayer,
			Iov:     &g.iovs[iov],
		}}
		b.msgs[m].hdr.SetIovlen(v - iov)
		i = j
	}
	g.first[m] = b.n
	return m
}

// packet fills in message m for records i..j-1 from iovec v on: the
// virtio-net header, the Ethernet header, the first record whole, the
// others' payloads. For a run
// of more than one it rewrites the first record's outer headers to cover the
// whole run. It returns the next free iovec.
func (g *runs) packet(b *batch, i, j, m, v int) int {
	first := b.pkts[i]
	h := &g.vnet[m]
	*h = [vnetHdrLen]byte{}
	g.iovs[v] = unix.Iovec{Base: &h[0]}
	g.iovs[v].SetLen(vnetHdrLen)
	g.iovs[v+1] = unix.Iovec{Base: &g.eths[i][0]}
	g.iovs[v+1].SetLen(ethLen)
	g.iovs[v+2] = unix.Iovec{Base: &first[0]}
	g.iovs[v+2].SetLen(len(first))
	v += 3
	total := len(first)
	for k := i + 1; k < j; k++ {
		p := b.pkts[k][ipUDPLen:]
		g.iovs[v] = unix.Iovec{Base: &p[0]}
		g.iovs[v].SetLen(len(p))
		v++
		total += len(p)
	}
	if j-i > 1 {
		binary.BigEndian.PutUint16(first[2:], uint16(total))
		udpLen := uint16(total - 20)
		binary.BigEndian.PutUint16(first[24:], udpLen)
		// A partial checksum: the pseudo-header's sum, which the kernel
		// (or the NIC) completes for each segment.
		binary.BigEndian.PutUint16(first[26:], pseudoHeaderSum(first[12:20], udpLen))
		h[0] = vnetNeedsCsum
		h[1] = vnetGSOUDPL4
		binary.LittleEndian.PutUint16(h[2:], ethLen+ipUDPLen)             // headers
		binary.LittleEndian.PutUint16(h[4:], uint16(len(first)-ipUDPLen)) // segment payload
		binary.LittleEndian.PutUint16(h[6:], ethLen+20)                   // checksum start: UDP
		binary.LittleEndian.PutUint16(h[8:], udpCsumOff)
	}
	binary.BigEndian.PutUint16(first[10:], ipv4Checksum(first[:20]))
	return v
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
