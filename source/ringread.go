package source

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

// ringReader reads the BPF ring buffer in place. A record is a slice of the
// mapped ring, valid until release moves the consumer position past it, so
// the sender hands the kernel the bytes the program wrote without copying
// them (cilium/ebpf's reader copies every record into a buffer, and stores
// the consumer position after each one, on the cache line that every
// reserve of the programs reads).
//
// The kernel maps the ring as one writable page holding the consumer
// position, then one read-only page holding the producer position followed
// by the data, twice in a row, so that a record that wraps around the end
// reads as one slice. Each record starts with an 8-byte header: its length,
// with a bit for "being written" and one for "discarded", and a page offset
// that only the kernel uses.
type ringReader struct {
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

// errRingClosed is returned by wait once the reader is closed.
var errRingClosed = fmt.Errorf("ring reader: %w", os.ErrClosed)

// newRingReader maps the ring buffer m. A wait ends when a program asks for
// a wakeup (BPF_RB_FORCE_WAKEUP), not whenever the ring holds data, so
// records submitted without a wakeup wait for the reader's own timer (see
// ring_wake).
func newRingReader(m *ebpf.Map) (_ *ringReader, err error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("ring reader: map type %s, want a ring buffer", m.Type())
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	r := &ringReader{mask: uint64(size - 1)}
	defer func() {
		if err != nil {
			r.close()
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

// next returns the next record, or false when there is none yet (the ring
// is empty or its next record is still being written). The record stays
// valid until release.
func (r *ringReader) next() ([]byte, bool) {
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

// release gives the ring space of every record next returned back to the
// programs. Records returned before must not be used after it.
func (r *ringReader) release() {
	atomic.StoreUint64(r.consPos, r.pos)
}

// available is the number of bytes in the ring not yet released.
func (r *ringReader) available() uint64 {
	return atomic.LoadUint64(r.prodPos) - atomic.LoadUint64(r.consPos)
}

// wait blocks until a program asks for a wakeup or until d has passed
// (d < 0: no limit; d == 0 returns at once); errRingClosed once the reader
// is closed. A wakeup asked for while nobody waited ends the next wait.
func (r *ringReader) wait(d time.Duration) error {
	if r.closed.Load() {
		return errRingClosed
	}
	var deadline time.Time
	if d >= 0 {
		deadline = time.Now().Add(d)
	}
	if err := r.poll.SetReadDeadline(deadline); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return errRingClosed
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
		return errRingClosed
	case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("ring reader: wait: %w", err)
}

// interrupt ends a wait in progress and every later one.
func (r *ringReader) interrupt() {
	r.closed.Store(true)
	r.poll.Close()
}

// close unmaps the ring; no wait may be in progress and no record in use.
func (r *ringReader) close() {
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
