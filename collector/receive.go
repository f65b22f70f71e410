// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// Receive modes (collector.receive, --receive).
const (
	// ReceiveAuto takes XDP where it can attach and sockets otherwise
	// (a wildcard or loopback listen address, no BPF privileges).
	ReceiveAuto = "auto"
	// ReceiveXDP takes the listener's traffic off the wire in an XDP
	// program on the interfaces that hold the listen address.
	ReceiveXDP = "xdp"
	// ReceiveSocket reads UDP sockets with recvmmsg.
	ReceiveSocket = "socket"
)

// ErrBadReceive is returned for a receive mode that is none of the above.
var ErrBadReceive = errors.New("receive mode is not auto, xdp or socket")

// receiver is one way datagrams reach the collector: UDP sockets
// (socket_linux.go) or the XDP program's ring (xdprecv.go). Both hand the
// decapsulated frames to the writers through a sink and report their own
// drops under the same reasons, so the files and metrics do not depend on
// the path.
type receiver interface {
	// loops are the receive goroutines' bodies: each runs until stop,
	// handing its packets to its sink and flushing the sink after every
	// burst; an error ends the collector.
	loops() []func(k *sink) error
	// poll adds what the kernel or the program dropped since the last
	// call to the drop metrics (once a second and at the end).
	poll()
	// stop ends every loop; close releases what stop left (after the
	// loops returned). Both may be called more than once.
	stop()
	close() error
	// mode is ReceiveSocket or ReceiveXDP.
	mode() string
}

// ParseReceive checks a receive mode; "" is auto.
func ParseReceive(s string) (string, error) {
	switch s {
	case "", ReceiveAuto:
		return ReceiveAuto, nil
	case ReceiveXDP, ReceiveSocket:
		return s, nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadReceive, s)
}

// openReceiver binds the listen address with the receive path asked for.
// In auto mode XDP is tried only on an address an interface holds, and any
// failure to load or attach it falls back to sockets with a log line.
func (c *Collector) openReceiver() (receiver, error) {
	ap, err := resolveListen(c.opts.Listen)
	if err != nil {
		return nil, err
	}
	switch c.opts.Receive {
	case ReceiveSocket:
		return c.listenSockets(ap)
	case ReceiveXDP:
		return c.listenXDP(ap)
	}
	if ap.Addr().IsUnspecified() || ap.Addr().IsLoopback() {
		c.log.Info("receive auto: sockets, since XDP needs an address an interface holds", "listen", ap.String())
		return c.listenSockets(ap)
	}
	r, err := c.listenXDP(ap)
	if err == nil {
		return r, nil
	}
	if errors.Is(err, errSecondCollector) {
		return nil, err
	}
	c.log.Warn("receive auto: XDP unavailable, receiving with sockets", "listen", ap.String(), "err", err)
	return c.listenSockets(ap)
}

// resolveListen turns the listen option into an address and port; an
// empty host is the wildcard.
func resolveListen(listen string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listen %q: %w", listen, err)
	}
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() {
		ap = netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// errSecondCollector: another collector receives on the port already.
var errSecondCollector = errors.New("another xmirror collect already receives on this UDP port in this network namespace")

// portLock is held for the life of a collector: an abstract unix socket
// named after the UDP port. SO_REUSEPORT would let a second collector of the
// same user silently take part of the traffic; the lock refuses it instead.
// The kernel frees an abstract name when the process ends, however it ends,
// so a crash leaves nothing behind, and the name is scoped to the network
// namespace, as the port is.
type portLock struct{ l *net.UnixListener }

func lockPort(port uint16) (*portLock, error) {
	name := "@xmirror-collect-udp-" + strconv.Itoa(int(port))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("udp port %d: %w", port, errSecondCollector)
		}
		return nil, fmt.Errorf("lock udp port %d: %w", port, err)
	}
	return &portLock{l: l}, nil
}

func (p *portLock) release() {
	if p != nil {
		_ = p.l.Close()
	}
}
