// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The AF_PACKET transmit ring of the ring datapath (sender "tx-ring").
//
// The sender copies each mirrored packet, with its Ethernet header in front,
// into a frame of a ring it shares with the kernel (PACKET_TX_RING,
// TPACKET_V2) and marks the frame ready; one send() then hands every ready
// frame to the interface's driver. The kernel builds each packet's socket
// buffer around the frame's pages instead of copying the payload, and with
// PACKET_QDISC_BYPASS skips the queueing discipline. Against the GSO runs
// (gso.go) this saves, per packet, the copy into the run's socket buffer
// and, where the interface cannot segment UDP in hardware, the software
// segmentation with its second copy and UDP checksum (single packets carry
// none, RFC 7348); it pays a copy in user space and a socket buffer per
// packet, which the segmentation pays as well.
//
// The kernel sends the frames from its own position on, in ring order, and
// stops at the first that is not marked ready, so frames are filled in
// that order. A frame is free again (status available) once the kernel has
// freed the packet built around it, usually at the far end of the wire.

const (
	// txFrameSize is the size of one frame: the 32-byte tpacket2_hdr, then
	// the Ethernet frame, so packets of up to 2,016 bytes (an interface MTU
	// of 2,002). Longer packets (jumbo frames) take the GSO socket.
	txFrameSize = 2048
	// txFrames is the number of frames: 8 MiB, 4096 packets in flight.
	txFrames = 4096
	// txDataOff is where a frame's packet starts: TPACKET2_HDRLEN minus
	// sizeof(struct sockaddr_ll), the kernel's offset without
	// PACKET_TX_HAS_OFF.
	txDataOff = 32
	txBlock   = 1 << 16 // bytes per block of the ring (a multiple of txFrameSize)
)

// tpacket2_hdr status values (linux/if_packet.h).
const (
	tpStatusAvailable   = 0
	tpStatusSendRequest = 1
	tpStatusWrongFormat = 4
)

// txRing is an AF_PACKET socket with a transmit ring.
type txRing struct {
	fd   int
	mem  []byte
	next int // the frame the next packet goes into (the kernel follows)
	// start is the first frame written since the last flush, pending how
	// many; ifindex is their interface (a flush goes to one interface).
	start, pending int
	ifindex        int32
	keys           [txFrames]int // session * 2 + direction of each frame's packet
	sent           atomic.Uint64 // packets handed to the kernel
	full           atomic.Uint64 // packets dropped: no free frame
}

// newTxRing opens the socket with its ring; its packets carry mark.
func newTxRing(mark uint32) (_ *txRing, err error) {
	fd, err := markedSocket("packet socket (tx ring)", unix.AF_PACKET, unix.SOCK_RAW, 0, mark)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	for _, o := range []struct {
		name string
		opt  int
		val  int
	}{
		{"PACKET_VERSION", unix.PACKET_VERSION, unix.TPACKET_V2},
		{"PACKET_QDISC_BYPASS", unix.PACKET_QDISC_BYPASS, 1},
		// A frame the kernel cannot send is skipped instead of stopping
		// the ring (not expected: packets fit the frames and the MTU).
		{"PACKET_LOSS", unix.PACKET_LOSS, 1},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, o.val); err != nil {
			return nil, fmt.Errorf("packet socket (tx ring): set %s: %w", o.name, err)
		}
	}
	// Packets in flight count against the send buffer: room for all frames.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*txFrames*txFrameSize)
	req := unix.TpacketReq{Block_size: txBlock, Block_nr: txFrames * txFrameSize / txBlock,
		Frame_size: txFrameSize, Frame_nr: txFrames}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return nil, fmt.Errorf("packet socket (tx ring): set PACKET_TX_RING: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, txFrames*txFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("packet socket (tx ring): mmap: %w", err)
	}
	return &txRing{fd: fd, mem: mem}, nil
}

// fits tells whether a packet of n bytes (without Ethernet header) fits a frame.
func (t *txRing) fits(n int) bool { return txDataOff+ethLen+n <= txFrameSize }

// status is the tp_status word of frame i.
func (t *txRing) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&t.mem[i*txFrameSize]))
}

// put copies the packet behind eth into the next frame, fills in its IPv4
// checksum and marks it ready; a packet for another interface than the
// pending ones flushes them first. It reports false, and the packet is not
// sent, when no frame is free.
func (t *txRing) put(eth *[ethLen]byte, ifindex int32, pkt []byte, key int, errs *sendErrors) bool {
	if t.pending > 0 && ifindex != t.ifindex {
		t.flush(errs)
	}
	st := t.status(t.next)
	if atomic.LoadUint32(st) != tpStatusAvailable {
		// The frames in flight have not come back yet: send what is
		// pending and look again.
		t.flush(errs)
		if atomic.LoadUint32(st) != tpStatusAvailable {
			t.full.Add(1)
			return false
		}
	}
	f := t.mem[t.next*txFrameSize : (t.next+1)*txFrameSize]
	copy(f[txDataOff:], eth[:])
	p := f[txDataOff+ethLen : txDataOff+ethLen+len(pkt)]
	copy(p, pkt)
	setIPv4Checksum(p)
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&f[0]))
	h.Len = uint32(ethLen + len(pkt))
	atomic.StoreUint32(st, tpStatusSendRequest) // after the frame: the kernel reads it once it sees this
	if t.pending == 0 {
		t.start, t.ifindex = t.next, ifindex
	}
	t.keys[t.next] = key
	t.pending++
	t.next = (t.next + 1) % txFrames
	if t.pending == batchSize {
		t.flush(errs)
	}
	return true
}

// flush hands the ready frames to the kernel. When the send fails, the
// frames it did not take count in errs and are made free again, and the
// next packet goes where the kernel will look first.
func (t *txRing) flush(errs *sendErrors) {
	if t.pending == 0 {
		return
	}
	to := &unix.SockaddrLinklayer{Ifindex: int(t.ifindex), Protocol: htons(unix.ETH_P_IP)}
	var err error
	for {
		err = unix.Sendto(t.fd, nil, unix.MSG_DONTWAIT, to)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	n := t.pending
	t.pending = 0
	if err == nil {
		t.sent.Add(uint64(n))
		return
	}
	// The kernel stopped at the first frame still marked ready (it takes
	// frames in order and leaves the rest alone once send returned).
	first := -1
	for k := 0; k < n; k++ {
		i := (t.start + k) % txFrames
		switch atomic.LoadUint32(t.status(i)) {
		case tpStatusSendRequest, tpStatusWrongFormat:
			if first < 0 {
				first = i
			}
			errs[t.keys[i]].Add(1)
			atomic.StoreUint32(t.status(i), tpStatusAvailable)
		default:
			t.sent.Add(1)
		}
	}
	if first >= 0 {
		t.next = first
	}
}

func (t *txRing) close() {
	unix.Munmap(t.mem)
	unix.Close(t.fd)
}
