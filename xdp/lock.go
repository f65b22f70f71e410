// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPinPathBusy means another process controls the load balancer pinned
// under the pin path: two control planes writing one data path's tables would
// each believe its own configuration is live.
var ErrPinPathBusy = errors.New("pin path in use")

// pinLock is an exclusive flock on the pin directory, held for as long as
// this process controls the maps and links under it. The kernel drops it
// when the process dies, however it dies.
type pinLock struct{ f *os.File }

// lockPinPath takes the lock or says which process holds it.
func lockPinPath(dir string) (*pinLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin path: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is controlled by %s", ErrPinPathBusy, dir, lockHolder(dir))
		}
		return nil, fmt.Errorf("lock pin path %s: %w", dir, err)
	}
	return &pinLock{f: f}, nil
}

func (l *pinLock) release() {
	if l != nil {
		l.f.Close() // closing the last descriptor drops the flock
	}
}

// lockHolder names the process holding a flock on dir, from /proc/locks
// (which lists the holder's pid and the locked inode as "maj:min:ino").
func lockHolder(dir string) string {
	const unknown = "another process"
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return unknown
	}
	dev := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return unknown
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 12345 00:1a:4567 0 EOF
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] != "FLOCK" || fs[5] != dev {
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
