// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/lock"
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
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is controlled by %s", ErrPinPathBusy, dir, lock.Holder(int(f.Fd())))
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

// Controller names the `xmirror lb` process that controls the load
// balancer pinned under pinPath ("pid 123 (xmirror)"), or "" when none
// does: the program then forwards with the tables it was left, with no
// health checks and no reloads.
func Controller(pinPath string) (string, error) {
	return lock.FlockHolder(pinPath)
}
