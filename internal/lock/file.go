// SPDX-License-Identifier: Apache-2.0

// Package lock holds the two kinds of lock by which a part refuses a second
// instance, and names the process that holds one, so that the refused part
// can say which: an flock on a directory (the lb's pin path, the
// collector's output directory) and a name in the network namespace (the
// source, the collector's ports). The kernel drops both when the process
// ends, however it ends.
package lock

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder names the process holding a flock on the file open as fd, from
// /proc/locks (which lists each holder's pid and the locked inode as
// "maj:min:ino"): "pid 123 (xmirror)", or "another process" when it cannot
// tell (no /proc, a holder in another pid namespace).
func Holder(fd int) string {
	if who, err := flockHolder(fd); err == nil && who != "" {
		return who
	}
	return unknownHolder
}

const unknownHolder = "another process"

// FlockHolder names the process holding a flock on the file at path, as
// Holder does, without taking the lock (a reader must not make its holder's
// next start fail): "" when no process holds one.
func FlockHolder(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return flockHolder(int(f.Fd()))
}

// flockHolder reads /proc/locks for a flock on the file open as fd.
func flockHolder(fd int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	inode := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 12345 00:1a:4567 0 EOF
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[5] != inode {
			continue
		}
		pid, err := strconv.Atoi(fs[4])
		if err != nil || pid <= 0 {
			return unknownHolder, nil // in another pid namespace
		}
		return describe(pid), nil
	}
	return "", sc.Err()
}

// describe names process pid: "pid 123 (xmirror)", or "pid 123".
func describe(pid int) string {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if name := strings.TrimSpace(string(comm)); name != "" {
		return fmt.Sprintf("pid %d (%s)", pid, name)
	}
	return fmt.Sprintf("pid %d", pid)
}
