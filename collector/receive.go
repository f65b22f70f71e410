// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/xmirror/xmirror/internal/lock"
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

// openReceiver opens the inputs with the receive path asked for: XDP takes
// them all at the listen address (with one socket each beside it), sockets
// read each input on its own (SO_REUSEPORT UDP sockets, GRE's raw sockets).
// In auto mode XDP is tried only on an address an interface holds, in
// native mode only (see errGenericXDP), and a failure to load or attach it
// falls back to sockets with a log line (a
// port the sockets cannot take fails either way, and is returned as is). What
// a failed start opened is released.
func (c *Collector) openReceiver() (_ receiver, err error) {
	ap, err := resolveListen(c.opts.Listen)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.releaseLocks()
		}
	}()
	switch c.opts.Receive {
	case ReceiveSocket:
		return c.openInputs(ap, true)
	case ReceiveXDP:
		return c.listenXDP(ap, true)
	}
	if ap.Addr().IsUnspecified() || ap.Addr().IsLoopback() {
		c.log.Info("receive auto: sockets, since XDP needs an address an interface holds", "listen", ap.String())
		return c.openInputs(ap, true)
	}
	r, err := c.listenXDP(ap, false)
	if err == nil {
		return r, nil
	}
	if errors.Is(err, errSecondCollector) || errors.Is(err, errSecondGRE) || errors.As(err, new(socketsError)) {
		return nil, err
	}
	c.log.Warn("receive auto: XDP unavailable, receiving with sockets", "listen", ap.String(), "err", err)
	return c.openInputs(ap, true)
}

// openInputs opens the sockets of every input: for the socket path
// (several SO_REUSEPORT sockets per UDP input), or one per UDP input
// beside the XDP program. GRE has its raw sockets either way.
func (c *Collector) openInputs(ap netip.AddrPort, socketPath bool) (_ receiver, err error) {
	m := &multiReceiver{}
	defer func() {
		if err != nil {
			m.stop()
			_ = m.close()
		}
	}()
	n := 1
	if socketPath {
		n = c.opts.Readers
	}
	for _, in := range c.opts.Inputs {
		var r receiver
		switch in.Proto {
		case ProtoVXLAN:
			r, err = c.listenSockets(ap, in, Decap, n, socketPath)
		case ProtoGENEVE:
			r, err = c.listenSockets(netip.AddrPortFrom(ap.Addr(), in.Port), in, DecapGENEVE, n, socketPath)
		default:
			r, err = c.listenGRE(ap.Addr())
		}
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in, err)
		}
		m.parts = append(m.parts, r)
	}
	return m, nil
}

// multiReceiver is the receivers of all inputs as one.
type multiReceiver struct{ parts []receiver }

func (m *multiReceiver) loops() []func(k *sink) error {
	var out []func(k *sink) error
	for _, r := range m.parts {
		out = append(out, r.loops()...)
	}
	return out
}

func (m *multiReceiver) poll() {
	for _, r := range m.parts {
		r.poll()
	}
}

func (m *multiReceiver) stop() {
	for _, r := range m.parts {
		r.stop()
	}
}

func (m *multiReceiver) close() error {
	var errs []error
	for _, r := range m.parts {
		errs = append(errs, r.close())
	}
	return errors.Join(errs...)
}

func (m *multiReceiver) mode() string { return ReceiveSocket }

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

// errSecondGRE: another collector receives GRE already.
var errSecondGRE = errors.New("another xmirror collect already receives GRE (IP protocol 47) on this address in this network namespace")

// A port lock is held for the life of a collector: a name in the network
// namespace (lock.NS, scoped as the port is) after the UDP port (or "gre").
// SO_REUSEPORT would let a second collector of the same user silently take
// part of the traffic, and two raw GRE sockets would both get every packet;
// the lock refuses the second collector instead, and a crash leaves nothing
// behind.

// lockPort takes the lock of a UDP port and keeps it in c.locks.
func (c *Collector) lockPort(port uint16) error {
	name := "udp-" + strconv.Itoa(int(port))
	return c.takeLock(name, fmt.Sprintf("udp port %d", port), errSecondCollector)
}

func (c *Collector) takeLock(name, what string, inUse error) error {
	l, err := lock.TakeNS("xmirror-collect-" + name)
	if errors.Is(err, lock.ErrHeld) {
		return fmt.Errorf("%s: %w", what, inUse)
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", what, err)
	}
	c.locks = append(c.locks, l)
	return nil
}

// releaseLocks gives every lock back (when the collector stops or fails
// to start).
func (c *Collector) releaseLocks() { c.releaseLocksFrom(0) }

// releaseLocksFrom gives back the locks taken after the first n.
func (c *Collector) releaseLocksFrom(n int) {
	for _, l := range c.locks[n:] {
		l.Release()
	}
	c.locks = c.locks[:n]
}
