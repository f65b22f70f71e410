// SPDX-License-Identifier: Apache-2.0

// Package flock names the process that holds a flock, so that a part refused
// because another one holds its lock can say which.
package flock

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
	const unknown = "another process"
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return unknown
	}
	inode := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return unknown
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
			return unknown
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if name := strings.TrimSpace(string(comm)); name != "" {
			return fmt.Sprintf("pid %d (%s)", pid, name)
		}
		return fmt.Sprintf("pid %d", pid)
	}
	return unknown
}
