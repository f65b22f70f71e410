// SPDX-License-Identifier: Apache-2.0

package lock

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ErrHeld means another process holds the name.
var ErrHeld = errors.New("held by another process")

// NS is a name held in a network namespace: an abstract unix socket
// listening on it. Abstract names belong to the namespace, need no file and
// go with the process however it ends; the listener's pid comes with every
// connection to it (SO_PEERCRED), which NSHolder reads.
type NS struct{ ln *net.UnixListener }

// TakeNS takes name in the network namespace of the calling thread, or
// returns ErrHeld.
func TakeNS(name string) (*NS, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + name, Net: "unix"})
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("%s: %w", name, ErrHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("take %s: %w", name, err)
	}
	l := &NS{ln: ln}
	go l.serve()
	return l, nil
}

// serve answers NSHolder's connections: accepting is all they need, and
// it keeps them from filling the listen queue.
func (l *NS) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Release gives the name back.
func (l *NS) Release() {
	if l != nil {
		l.ln.Close()
	}
}

// NSHolder names the process holding name in the calling thread's network
// namespace ("pid 123 (xmirror)"), "another process" when it cannot tell,
// or "" when nobody holds it.
func NSHolder(name string) string {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: "@" + name, Net: "unix"})
	if err != nil {
		return ""
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return "another process"
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil || cred.Pid <= 0 {
		return "another process"
	}
	return describe(int(cred.Pid))
}
