// SPDX-License-Identifier: Apache-2.0

// Package ringbuf reads a BPF ring buffer in place: a record is a slice of
// the mapped ring, valid until Release, and the reader waits for the
// programs' wakeups in Go's network poller. The source's ring datapath and
// the collector's XDP receive path both read their rings with it.
package ringbuf

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Reader reads a BPF ring buffer in place. A record is a slice of the
// mapped ring, valid until Release moves the consumer position past it, so
// a reader uses the bytes the program wrote without copying them
// (cilium/ebpf's reader copies every record into a buffer, and stores
// the consumer position after each one, on the cache line that every
// reserve of the programs reads).
//
// The kernel maps the ring as one writable page holding the consumer
// position, then one read-only page holding the producer position followed
// by the data, twice in a row, so that a record that wraps around the end
// reads as one slice. Each record starts with an 8-byte header: its length,
// with a bit for "being written" and one for "discarded", and a page offset
// that only the kernel uses.
type Reader struct {
	cons, prod []byte // the two mappings
	data       []byte // the data, mapped twice
	mask       uint64
	consPos    *uint64 // in cons: what the programs may overwrite stops here
	prodPos    *uint64 // in prod: where the programs' next record goes
	pos        uint64  // the next record to read
	seen       uint64  // the producer position last read
	// poll is a duplicate of the ring's descriptor in Go's network
	// poller, which waits for the programs' wakeups. A wait there parks
	// the goroutine and gives up its P; a blocking epoll_wait would hold
	// the P in a system call, which the runtime's monitor takes back
	// after 10 ms and then polls for every 20 µs for a while: about a
	// thousand extra wakeups a second under load, a tenth of the sender's
	// CPU (perf record of the process).
	poll     *os.File
	pollConn syscall.RawConn
	closed   atomic.Bool
}

const (
	ringBusyBit    = 1 << 31 // BPF_RINGBUF_BUSY_BIT
	ringDiscardBit = 1 << 30 // BPF_RINGBUF_DISCARD_BIT
	ringHeaderLen  = 8       // BPF_RINGBUF_HDR_SZ
)

// ErrClosed is returned by Wait once the reader is closed.
var ErrClosed = fmt.Errorf("ring reader: %w", os.ErrClosed)

// New maps the ring buffer m. A wait ends when a program asks for
// a wakeup (BPF_RB_FORCE_WAKEUP), not whenever the ring holds data, so
// records submitted without a wakeup wait for the reader's own timer (see
// the programs' ring_wake).
func New(m *ebpf.Map) (_ *Reader, err error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("ring reader: map type %s, want a ring buffer", m.Type())
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	r := &Reader{mask: uint64(size - 1)}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.cons, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("ring reader: map consumer page: %w", err)
	}
	if r.prod, err = unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("ring reader: map producer page and data: %w", err)
	}
	r.data = r.prod[page:]
	r.consPos = (*uint64)(unsafe.Pointer(&r.cons[0]))
	r.prodPos = (*uint64)(unsafe.Pointer(&r.prod[0]))
	r.pos = atomic.LoadUint64(r.consPos)
	r.seen = r.pos
	// A non-blocking descriptor of its own: os.NewFile adds it to the
	// poller (edge-triggered), and closing it ends a wait without closing
	// the map.
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ring reader: dup: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring reader: non-blocking: %w", err)
	}
	r.poll = os.NewFile(uintptr(fd), "xm_ring")
	if err := r.poll.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("ring reader: the ring cannot be polled: %w", err)
	}
	if r.pollConn, err = r.poll.SyscallConn(); err != nil {
		return nil, fmt.Errorf("ring reader: %w", err)
	}
	return r, nil
}

// Next returns the next record, or false when there is none yet (the ring
// is empty or its next record is still being written). The record stays
// valid until release.
func (r *Reader) Next() ([]byte, bool) {
	for {
		if r.pos == r.seen {
			// The producer position sits on a line every reserve
			// writes: read it only when the records known are used up.
			r.seen = atomic.LoadUint64(r.prodPos)
			if r.pos == r.seen {
				return nil, false
			}
		}
		off := r.pos & r.mask
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		if hdr&ringBusyBit != 0 {
			return nil, false
		}
		n := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
		r.pos += (ringHeaderLen + n + 7) &^ 7
		if hdr&ringDiscardBit == 0 {
			start := off + ringHeaderLen
			return r.data[start : start+n : start+n], true
		}
	}
}

// Release gives the ring space of every record Next returned back to the
// programs. Records returned before must not be used after it.
func (r *Reader) Release() {
	atomic.StoreUint64(r.consPos, r.pos)
}

// Available is the number of bytes in the ring not yet released.
func (r *Reader) Available() uint64 {
	return atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos)
}

// Wait blocks until a program asks for a wakeup or until d has passed
// (d < 0: no limit; d == 0 returns at once); ErrClosed once the reader
// is closed. A wakeup asked for while nobody waited ends the next wait.
func (r *Reader) Wait(d time.Duration) error {
	if r.closed.Load() {
		return ErrClosed
	}
	var deadline time.Time
	if d >= 0 {
		deadline = time.Now().Add(d)
	}
	if err := r.poll.SetReadDeadline(deadline); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("ring reader: %w", err)
	}
	// The poller calls this before it waits and after each readiness:
	// the first call asks it to wait, the next ends the wait.
	woken := false
	err := r.pollConn.Read(func(uintptr) bool {
		done := woken
		woken = true
		return done
	})
	switch {
	case r.closed.Load() || errors.Is(err, os.ErrClosed):
		return ErrClosed
	case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("ring reader: wait: %w", err)
}

// Interrupt ends a wait in progress and every later one.
func (r *Reader) Interrupt() {
	r.closed.Store(true)
	r.poll.Close()
}

// Close unmaps the ring; no wait may be in progress and no record in use.
func (r *Reader) Close() {
	if r.poll != nil {
		r.poll.Close()
	}
	for _, m := range [][]byte{r.cons, r.prod} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.poll, r.cons, r.prod = nil, nil, nil
}
