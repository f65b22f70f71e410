// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sinkBatch is how many datagrams one recvmmsg call may return.
const sinkBatch = 64

// sinkBufSize holds a jumbo VXLAN datagram.
const sinkBufSize = 9216

// DefaultSinkBuffer is the socket receive buffer of the sink: large, because the
// sink stands for the best a receiver can do.
const DefaultSinkBuffer = 32 << 20

// Sink is the collector ceiling: recvmmsg loops that only count datagrams, one per
// SO_REUSEPORT socket, as many as a collector may use.
type Sink struct {
	conns   []*net.UDPConn
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// ListenSink binds readers UDP sockets (SO_REUSEPORT; at least one) on addr in the
// calling thread's network namespace, each with a receive buffer of rcvbuf bytes
// (forced past rmem_max when root).
func ListenSink(addr string, readers, rcvbuf int) (*Sink, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	s := &Sink{}
	for i := 0; i < max(readers, 1); i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sink listen on %s: %w", addr, err)
		}
		conn := pc.(*net.UDPConn)
		s.conns = append(s.conns, conn)
		if rcvbuf > 0 {
			if err := setRcvbuf(conn, rcvbuf); err != nil {
				s.Close()
				return nil, err
			}
		}
		// The other sockets bind the port the first one got (":0" picks one).
		addr = conn.LocalAddr().String()
	}
	return s, nil
}

func setRcvbuf(conn *net.UDPConn, n int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("sink socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		if serr != nil {
			// Not root: the kernel caps SO_RCVBUF at rmem_max, which is still better than nothing.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sink receive buffer: %w", err)
	}
	return nil
}

// Addr is the bound address.
func (s *Sink) Addr() net.Addr { return s.conns[0].LocalAddr() }

// Run counts datagrams on every socket until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	errc := make(chan error, len(s.conns))
	for _, c := range s.conns {
		go func() { errc <- s.read(ctx, c) }()
	}
	var errs []error
	for range s.conns {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func (s *Sink) read(ctx context.Context, conn *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("sink socket: %w", err)
	}
	// One set of buffers for every call: the kernel writes the datagrams into them
	// and sets each header's length. Longer datagrams are cut and still counted.
	hdrs := make([]unix.Mmsghdr, sinkBatch)
	iovs := make([]unix.Iovec, sinkBatch)
	bufs := make([]byte, sinkBatch*sinkBufSize)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*sinkBufSize]
		iovs[i].SetLen(sinkBufSize)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	for {
		var n int
		var errno syscall.Errno
		err := rc.Read(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), sinkBatch, unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EAGAIN {
				return false // park until the socket is readable
			}
			n, errno = int(r), e
			return true
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sink receive: %w", err)
		}
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("sink receive: %w", errno)
		}
		var b uint64
		for i := 0; i < n; i++ {
			b += uint64(hdrs[i].Len)
		}
		s.packets.Add(uint64(n))
		s.bytes.Add(b)
	}
}

// Counts is what the sink received so far (UDP payload bytes).
func (s *Sink) Counts() Counts {
	return Counts{Packets: s.packets.Load(), Bytes: s.bytes.Load()}
}

// Close releases the sockets.
func (s *Sink) Close() error {
	var errs []error
	for _, c := range s.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
