package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// sinkBatch is how many datagrams one recvmmsg call may return.
const sinkBatch = 64

// DefaultSinkBuffer is the socket receive buffer of the sink: large, because the
// sink stands for the best a receiver can do.
const DefaultSinkBuffer = 32 << 20

// Sink is the collector ceiling: a recvmmsg loop that only counts datagrams.
type Sink struct {
	conn    *net.UDPConn
	pc      *ipv4.PacketConn
	packets atomic.Uint64
	bytes   atomic.Uint64
}

// ListenSink binds a UDP socket on addr (in the calling thread's network namespace)
// with a receive buffer of rcvbuf bytes (forced past rmem_max when root).
func ListenSink(addr string, rcvbuf int) (*Sink, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("sink address %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return nil, fmt.Errorf("sink listen: %w", err)
	}
	if rcvbuf > 0 {
		if err := setRcvbuf(conn, rcvbuf); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &Sink{conn: conn, pc: ipv4.NewPacketConn(conn)}, nil
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
func (s *Sink) Addr() net.Addr { return s.conn.LocalAddr() }

// Run counts datagrams until ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	msgs := make([]ipv4.Message, sinkBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for {
		n, err := s.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("sink receive: %w", err)
		}
		var b uint64
		for i := 0; i < n; i++ {
			b += uint64(msgs[i].N)
		}
		s.packets.Add(uint64(n))
		s.bytes.Add(b)
	}
}

// Counts is what the sink received so far (UDP payload bytes).
func (s *Sink) Counts() Counts {
	return Counts{Packets: s.packets.Load(), Bytes: s.bytes.Load()}
}

// Close releases the socket.
func (s *Sink) Close() error { return s.conn.Close() }
