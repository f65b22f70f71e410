// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkTCPListen: a part serves /metrics (and the collector /healthz) on
// its TCP listen addresses, and ends at start when one is taken (by a
// Prometheus on :9090, or another part with the same metrics.listen). One
// held by an xmirror of this role is the part a restart replaces.
func checkTCPListen(key, addr, role string) Result {
	r := Result{Check: key + " " + addr}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		r.Status, r.Detail = Pass, "free"
		return r
	}
	r.Status = Fail
	r.Fix = "give " + key + " an address this host has free (each part on a host its own port)"
	if !errors.Is(err, syscall.EADDRINUSE) {
		r.Detail = err.Error()
		return r
	}
	_, port, _ := net.SplitHostPort(addr)
	pid, cmdline := tcpListener(port)
	switch {
	case pid == 0:
		r.Detail = "in use by another process"
	case isXmirror(cmdline, role):
		r.Status, r.Detail, r.Fix = Pass, fmt.Sprintf("held by the running xmirror %s (pid %d), which a restart stops first", role, pid), ""
	default:
		r.Detail = fmt.Sprintf("in use by pid %d (%s): xmirror %s would end at start", pid, cmdline, role)
	}
	return r
}

// isXmirror reports whether cmdline is `xmirror ... role ...`.
func isXmirror(cmdline, role string) bool {
	args := strings.Fields(cmdline)
	if len(args) == 0 || filepath.Base(args[0]) != "xmirror" {
		return false
	}
	for _, a := range args[1:] {
		if a == role {
			return true
		}
	}
	return false
}

// tcpListener finds the process listening on TCP port (any address) from
// /proc: its pid and command line, or 0 when it cannot tell.
func tcpListener(port string) (int, string) {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, ""
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st ... uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], fmt.Sprintf(":%04X", n)) {
				continue
			}
			inodes["socket:["+fs[9]+"]"] = true
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			dir := filepath.Dir(filepath.Dir(fd))
			pid, _ := strconv.Atoi(filepath.Base(dir))
			cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
			return pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return 0, ""
}
