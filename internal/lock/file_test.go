// SPDX-License-Identifier: Apache-2.0

package lock

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHolder: the holder of a directory's flock is named by its pid, as
// /proc/locks lists it; a directory nobody locks has no holder to name.
func TestHolder(t *testing.T) {
	dir := t.TempDir()
	open := func() int {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	other := open()
	if got := Holder(other); got != "another process" {
		t.Errorf("unlocked: holder %q", got)
	}
	if err := unix.Flock(open(), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/locks"); err != nil {
		t.Skipf("no /proc/locks: %v", err)
	}
	if got := Holder(other); !strings.HasPrefix(got, fmt.Sprintf("pid %d ", os.Getpid())) {
		t.Errorf("holder %q, want pid %d", got, os.Getpid())
	}
}
