// SPDX-License-Identifier: Apache-2.0

package source

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many frames one sendmmsg call carries at most. With the
// GSO socket it also bounds the runs a batch is cut into: 256 records make
// runs of about a hundred under a bulk transfer, a third of the packets the
// kernel handles at 64, and about a fifth less of the sender's CPU.
const batchSize = 256

// sendErrors counts the packets whose send failed, by session and direction
// (session * 2 + direction).
type sendErrors [MaxSessions * 2]atomic.Uint64

func (e *sendErrors) of(id uint16, dir int) uint64 { return e[int(id)*2+dir].Load() }

func (e *sendErrors) total() (n uint64) {
	for i := range e {
		n += e[i].Load()
	}
	return n
}

// mmsghdr is struct mmsghdr of linux/socket.h.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batch holds the packets of one sendmmsg call.
type batch struct {
	bufs [batchSize][]byte // reused buffers
	pkts [batchSize][]byte // the packets to send (in bufs)
	keys [batchSize]int    // session * 2 + direction of each packet
	dsts [batchSize]unix.RawSockaddrInet4
	lls  [batchSize]unix.RawSockaddrLinklayer // destinations when link is set
	link bool                                 // packets for an AF_PACKET socket
	runs *runs                                // runs leave as one GSO packet (AF_PACKET socket with a virtio-net header)
	iovs [batchSize]unix.Iovec
	msgs [batchSize]mmsghdr
	n    int
}

// sendBatch sends the packets of b through the socket fd with sendmmsg
// and empties b; a packet the kernel refuses counts in errs (by session and
// direction) and the rest of the batch is still sent.
func sendBatch(fd int, b *batch, errs *sendErrors) {
	for i := 0; i < b.n; i++ {
		b.iovs[i] = unix.Iovec{Base: &b.pkts[i][0]}
		b.iovs[i].SetLen(len(b.pkts[i]))
		b.msgs[i] = mmsghdr{hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.dsts[i])),
			Namelen: unix.SizeofSockaddrInet4,
			Iov:     &b.iovs[i],
		}}
		if b.link {
			b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.lls[i]))
			b.msgs[i].hdr.Namelen = unix.SizeofSockaddrLinklayer
		}
		b.msgs[i].hdr.SetIovlen(1)
	}
	sendMessages(fd, b.msgs[:b.n], func(i int) { errs[b.keys[i]].Add(1) })
	b.n = 0
}

// sendMessages sends msgs with as few sendmmsg calls as the kernel allows. A
// message the kernel refuses is handed to failed (by index) and skipped, and
// the rest are still sent.
func sendMessages(fd int, msgs []mmsghdr, failed func(i int)) {
	for sent := 0; sent < len(msgs); {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(len(msgs)-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || r == 0 {
			failed(sent)
			sent++
			continue
		}
		sent += int(r)
	}
}
