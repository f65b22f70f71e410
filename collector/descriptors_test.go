// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// lowerOpenFiles sets the soft open-files limit to extra descriptors above
// those the test process holds now, until the test ends, as `ulimit -n` or
// systemd's LimitNOFILE would for the collector.
func lowerOpenFiles(t *testing.T, extra int) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = uint64(len(fds) + extra)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
}

// TestDiskScanManySessionDirs: the output directory holds more session
// directories (sessions of earlier runs, a flood of VNIs gone idle) than
// the open-files limit leaves descriptors. The disk scan sees and prunes
// the files of all of them. Before, it held every session directory open
// until the scan ended: beyond the limit it skipped directories without a
// word (their files never removed by max_total_size, keep_age or
// min_free, left out of stored_files), and while it ran, sessions that
// opened a file failed with "too many open files".
func TestDiskScanManySessionDirs(t *testing.T) {
	out := t.TempDir()
	const dirs = 300
	for i := range dirs {
		dir := filepath.Join(out, fmt.Sprintf("vni-%d", 1000+i))
		if err := os.Mkdir(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("vni-%d-20260102T090000Z.pcapng", 1000+i)
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 100), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, Now: clock.Now, MaxTotalSize: 1000})
	lowerOpenFiles(t, 64)
	c.enforceDisk(clock.Now())
	if got := c.disk.files.Load(); got != 10 {
		t.Errorf("stored_files %d after the scan, want 10 (of %d files, %d bytes each, max_total_size 1000)", got, dirs, 100)
	}
	if got := c.retained["max_total_size"].Get(); got != dirs-10 {
		t.Errorf("max_total_size removed %d files, want %d", got, dirs-10)
	}
}
