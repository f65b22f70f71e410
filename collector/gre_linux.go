// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The GRE input: ERSPAN and transparent Ethernet bridging arrive as IP
// protocol 47, which has no port to bind, so it is read from raw IP
// sockets (one per address family: every raw socket gets a copy of every
// packet, so more readers would only duplicate them). A raw socket needs
// CAP_NET_RAW. The kernel reassembles fragments before it hands a packet to
// a raw socket.

// errNoRawSockets says why a GRE input did not start without privileges.
var errNoRawSockets = errors.New("a raw IP socket (IP protocol 47) needs CAP_NET_RAW")

// listenGRE opens the raw GRE sockets on the listen address's host: IPv4
// for an IPv4 address, IPv6 for an IPv6 one, both for the IPv6 wildcard
// ([::], as a UDP socket on it takes both families), and takes the lock of
// GRE on that address: a second collector there would get a copy of every
// packet. (One on the wildcard and one on a specific address both get the
// packets to that address: the lock does not see that.)
func (c *Collector) listenGRE(host netip.Addr) (receiver, error) {
	if err := c.takeLock("gre-"+host.String(), "gre on "+host.String(), errSecondGRE); err != nil {
		return nil, err
	}
	type family struct {
		network string
		addr    netip.Addr
		decap   Decapper
	}
	var fams []family
	if host.Is4() || host == netip.IPv6Unspecified() {
		a := host
		if !a.Is4() {
			a = netip.IPv4Unspecified()
		}
		fams = append(fams, family{"ip4:47", a, DecapIPv4GRE})
	}
	if host.Is6() {
		// A raw IPv6 socket reads the payload without the IPv6 header.
		fams = append(fams, family{"ip6:47", host, DecapGRE})
	}
	s := &socketReceiver{c: c}
	for _, f := range fams {
		conn, err := listenRaw(f.network, f.addr, c.opts.RcvBuf)
		if err != nil {
			s.stop()
			return nil, err
		}
		s.conns = append(s.conns, conn)
		s.decaps = append(s.decaps, f.decap)
		s.lastDrops = append(s.lastDrops, 0)
	}
	return s, nil
}

// listenRaw opens one raw IP socket of protocol 47 bound to addr, with the
// receive buffer and kernel timestamps of the UDP sockets.
func listenRaw(network string, addr netip.Addr, rcvbuf int) (*net.IPConn, error) {
	var got int
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setSockopts(int(fd), rcvbuf, false, &got) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("receive gre on %s: %w: %w", addr, errNoRawSockets, err)
		}
		return nil, fmt.Errorf("receive gre on %s: %w", addr, err)
	}
	return pc.(*net.IPConn), nil
}
