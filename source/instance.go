// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrRunning means another source runs in this network namespace. A second
// one would mirror every packet again, and would take the first one's VXLAN
// device, replicas and tc filters for what a killed run left behind.
var ErrRunning = errors.New("another xmirror source runs in this network namespace")

// instanceSocket is the abstract unix socket a running source listens on.
// Abstract names belong to a network namespace, need no file and go with the
// process however it ends, and the listener's pid comes with every
// connection (SO_PEERCRED).
const instanceSocket = "@xmirror-source"

// instance is this source's hold on the namespace.
type instance struct{ ln *net.UnixListener }

// claimInstance takes the namespace for this source, or says which process
// has it. Call it on a thread in the namespace to mirror.
func claimInstance() (*instance, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: instanceSocket, Net: "unix"})
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s; stop it first", ErrRunning, RunningInstance())
		}
		return nil, fmt.Errorf("claim the network namespace for this source: %w", err)
	}
	in := &instance{ln: ln}
	go in.serve()
	return in, nil
}

// serve answers the probes of RunningInstance: accepting is all they need.
func (in *instance) serve() {
	for {
		c, err := in.ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func (in *instance) release() {
	if in != nil {
		in.ln.Close()
	}
}

// RunningInstance names the source that runs in this network namespace
// ("pid N (comm)"), or says "none".
func RunningInstance() string {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: instanceSocket, Net: "unix"})
	if err != nil {
		return "none"
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
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid))
	if name := strings.TrimSpace(string(comm)); name != "" {
		return fmt.Sprintf("pid %d (%s)", cred.Pid, name)
	}
	return fmt.Sprintf("pid %d", cred.Pid)
}
