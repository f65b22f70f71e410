// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketReceiver reads the sockets of one input: UDP sockets bound to its
// address, several with SO_REUSEPORT, so that the kernel spreads flows over
// the readers (a flow always lands on one socket, which keeps its packets in
// order), or a single one beside the XDP program; or the raw IP sockets of
// GRE (gre_linux.go).
type socketReceiver struct {
	c         *Collector
	conns     []packetConn
	decaps    []Decapper // per socket: what its datagrams are
	dropsMu   sync.Mutex
	lastDrops []uint32 // per socket: the kernel's drop count at the last poll
	stopped   bool
}

// packetConn is what the receive loop needs of a socket: *net.UDPConn and
// *net.IPConn (raw GRE) both are.
type packetConn interface {
	SyscallConn() (syscall.RawConn, error)
	SetReadDeadline(time.Time) error
	Close() error
}

// listenSockets binds n sockets (with SO_REUSEPORT when reuseport) to ap
// for one UDP input and takes the port's lock (before binding a fixed port,
// after binding port 0).
func (c *Collector) listenSockets(ap netip.AddrPort, in Input, decap Decapper, n int, reuseport bool) (receiver, error) {
	if ap.Port() != 0 {
		if err := c.lockPort(ap.Port()); err != nil {
			return nil, err
		}
	}
	s, err := c.bindSockets(ap.String(), n, reuseport, in, decap)
	if err != nil {
		return nil, err
	}
	if ap.Port() == 0 {
		if err := c.lockPort(uint16(c.bound[in].Port)); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// bindSockets binds n UDP sockets of one input to addr and records the
// bound address and the receive buffer granted.
func (c *Collector) bindSockets(addr string, n int, reuseport bool, in Input, decap Decapper) (*socketReceiver, error) {
	conns, granted, err := listenUDP(addr, n, c.opts.RcvBuf, reuseport)
	if err != nil {
		return nil, err
	}
	c.rcvbuf = granted
	bound := conns[0].LocalAddr().(*net.UDPAddr)
	c.bound[in] = bound
	if in.Proto == ProtoVXLAN || c.addr == nil {
		c.addr = bound
	}
	s := &socketReceiver{c: c, lastDrops: make([]uint32, len(conns))}
	for _, conn := range conns {
		s.conns = append(s.conns, conn)
		s.decaps = append(s.decaps, decap)
	}
	return s, nil
}

func (s *socketReceiver) mode() string { return ReceiveSocket }

func (s *socketReceiver) loops() []func(*sink) error {
	out := make([]func(*sink) error, len(s.conns))
	for i, conn := range s.conns {
		out[i] = func(k *sink) error { return s.c.readLoop(conn, s.decaps[i], k) }
	}
	return out
}

// stop takes the last drop count while the sockets are open, then closes
// them, which ends the loops.
func (s *socketReceiver) stop() {
	s.poll()
	s.dropsMu.Lock()
	defer s.dropsMu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	for _, conn := range s.conns {
		_ = conn.Close()
	}
}

func (s *socketReceiver) close() error { s.stop(); return nil }

// listenUDP binds n sockets to addr (n > 1 needs reuseport); with port 0
// the others join the port the first one got. It returns the receive
// buffer the kernel granted.
func listenUDP(addr string, n, rcvbuf int, reuseport bool) (conns []*net.UDPConn, granted int, err error) {
	defer func() {
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			conns = nil
		}
	}()
	for i := 0; i < n; i++ {
		var got int
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				if serr = setSockopts(int(fd), rcvbuf, reuseport, &got); serr == nil {
					serr = acceptZeroChecksum6(int(fd))
				}
			}); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return conns, 0, fmt.Errorf("listen on %s: %w", addr, err)
		}
		conn := pc.(*net.UDPConn)
		conns = append(conns, conn)
		if i == 0 {
			addr = conn.LocalAddr().String()
			granted = got
		}
	}
	return conns, granted, nil
}

// setSockopts sets what the receive path relies on; only SO_REUSEPORT (when
// asked for) and the timestamps are required, a small receive buffer is merely logged.
// Kernel drops are read with SO_MEMINFO once a second (pollSocketDrops),
// not with SO_RXQ_OVFL: that one adds a control message to every datagram
// once the socket has dropped any, which costs most when the collector is
// already behind.
func setSockopts(fd, rcvbuf int, reuseport bool, granted *int) error {
	if reuseport {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", err)
		}
	}
	// SO_RCVBUFFORCE passes rmem_max when we have CAP_NET_ADMIN; without it
	// SO_RCVBUF is capped by net.core.rmem_max.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
		*granted = v
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("set SO_TIMESTAMPNS: %w", err)
	}
	return nil
}

// acceptZeroChecksum6 lets an IPv6 datagram with a UDP checksum of zero
// through: RFC 7348 says a VXLAN receiver MUST accept one, RFC 8926 (with
// RFC 6935) allows it for GENEVE, and Open vSwitch and Linux tunnel devices
// send them over IPv6 unless told to checksum. Without it the kernel drops
// them before the socket (Udp6InCsumErrors, not the socket's drop count),
// so nothing would say why the files stay empty. Datagrams with a checksum
// are still verified.
func acceptZeroChecksum6(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_NO_CHECK6_RX, 1); err != nil {
		return fmt.Errorf("set UDP_NO_CHECK6_RX: %w", err)
	}
	return nil
}

// socketDrops is the kernel's count of datagrams the socket dropped
// (sk_drops: full receive queue, bad checksum), the counter SO_RXQ_OVFL
// would report.
func socketDrops(fd int) (uint32, bool) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 || l < (unix.SK_MEMINFO_DROPS+1)*4 {
		return 0, false
	}
	return mem[unix.SK_MEMINFO_DROPS], true
}

// poll adds what the kernel dropped at each socket since the last poll to
// socket_drops_total. Closed sockets are skipped.
func (s *socketReceiver) poll() {
	s.dropsMu.Lock()
	defer s.dropsMu.Unlock()
	for i, conn := range s.conns {
		rc, err := conn.SyscallConn()
		if err != nil {
			continue
		}
		var (
			v  uint32
			ok bool
		)
		if rc.Control(func(fd uintptr) { v, ok = socketDrops(int(fd)) }) != nil || !ok {
			continue
		}
		if v != s.lastDrops[i] {
			s.c.socketDrops.Add(int(v - s.lastDrops[i]))
			s.lastDrops[i] = v
		}
	}
}

// oobLen holds the timestamp control message (32 bytes) with room to spare;
// a datagram whose control messages do not fit gets the time it was read.
const oobLen = 64

// batch is one reader's recvmmsg state, allocated once: the kernel fills the
// same buffers on every call.
type batch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	bufs  []byte
	oob   []byte
	names []unix.RawSockaddrInet6
	size  int
	// used is how many headers the last call may have written to: the
	// datagrams it returned and the one it stopped at. Only those are reset,
	// so that a call returning a few datagrams does not touch all of them.
	used int
}

func newBatch(n, size int) *batch {
	b := &batch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		bufs:  make([]byte, n*size),
		oob:   make([]byte, n*oobLen),
		names: make([]unix.RawSockaddrInet6, n),
		size:  size,
	}
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i*size]
		b.iovs[i].SetLen(size)
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
		h.Control = &b.oob[i*oobLen]
	}
	b.used = n
	b.reset()
	return b
}

// reset restores the lengths the kernel overwrote in the last call.
func (b *batch) reset() {
	for i := range b.hdrs[:b.used] {
		h := &b.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(oobLen)
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
	b.used = 0
}

func (b *batch) payload(i int) []byte {
	return b.bufs[i*b.size : i*b.size+int(b.hdrs[i].Len)]
}

// source is the sender's address of datagram i.
func (b *batch) source(i int) netip.Addr {
	sa := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&b.names[i]))
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(sa[4:8]))
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
	}
	return netip.Addr{}
}

// timestamp reads the kernel receive time of datagram i from its control
// messages (0 when there is none).
func (b *batch) timestamp(i int) (tsNanos int64) {
	oob := b.oob[i*oobLen : i*oobLen+int(b.hdrs[i].Hdr.Controllen)]
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		data := oob[unix.SizeofCmsghdr:h.Len]
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			return sec*1e9 + nsec
		}
		next := unix.CmsgSpace(int(h.Len) - unix.SizeofCmsghdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0
}

// recvmmsg reads up to len(b.hdrs) datagrams without blocking.
func recvmmsg(fd uintptr, b *batch) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])),
		uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		n = 0
	}
	b.used = min(int(n)+1, len(b.hdrs))
	return int(n), errno
}

// readLoop receives batches on one socket until it is closed, and hands
// each batch's frames to the writers.
func (c *Collector) readLoop(conn packetConn, decap Decapper, k *sink) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	b := newBatch(c.opts.Batch, c.opts.MaxDatagram)
	var (
		n     int
		errno syscall.Errno
	)
	// One closure for the life of the loop: the poller calls it when the
	// socket is readable and again after every EAGAIN.
	read := func(fd uintptr) bool {
		b.reset()
		n, errno = recvmmsg(fd, b)
		return errno != unix.EAGAIN && errno != unix.EWOULDBLOCK
	}
	armed := false // a read deadline is set for the sink's held batch
	for {
		if err := rc.Read(read); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				k.flushOld(time.Now())
				armed = false
				if err := conn.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, net.ErrClosed) {
					return fmt.Errorf("clear read deadline: %w", err)
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("wait for datagrams: %w", err)
		}
		if errno != 0 {
			switch errno {
			case unix.EINTR:
				continue
			case unix.ENOMEM, unix.ENOBUFS:
				// Transient memory pressure: the datagram stays queued or
				// is counted in the socket's drops; try again shortly.
				time.Sleep(time.Millisecond)
				continue
			}
			return fmt.Errorf("recvmmsg: %w", errno)
		}
		c.decapBatch(b, n, decap, k)
		now := time.Now()
		k.flushOld(now)
		c.received.Add(n)
		// A batch held back wakes the loop when it is due, even without
		// another datagram.
		if p := k.pending(); p != armed {
			armed = p
			deadline := time.Time{}
			if p {
				deadline = now.Add(handoffDelay)
			}
			if err := conn.SetReadDeadline(deadline); err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
	}
}

// decapBatch decapsulates the batch's n datagrams into the sink, counting
// truncated and malformed ones as drops.
func (c *Collector) decapBatch(b *batch, n int, decap Decapper, k *sink) {
	var fallback int64
	for i := 0; i < n; i++ {
		if b.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			c.drop(ReasonSocketTruncated)
			continue
		}
		ts := b.timestamp(i)
		if ts == 0 {
			if fallback == 0 {
				fallback = time.Now().UnixNano()
			}
			ts = fallback
		}
		fr, reason := decap(b.payload(i))
		if reason != ReasonNone {
			c.drop(reason)
			continue
		}
		k.add(b.source(i), ts, fr)
	}
}
