// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// fillDescriptors opens /dev/null until the open-files limit is reached
// and returns a function that closes them again.
func fillDescriptors(t *testing.T) func() {
	t.Helper()
	var held []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		held = append(held, fd)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			for _, fd := range held {
				_ = unix.Close(fd)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// TestClosedFileWaitsForDescriptor: a file closes while the process is at
// its open-files limit (many sessions writing), so compressing it finds no
// descriptor for the .gz. The work waits for one and compresses the file
// once sessions free theirs. Before, the file was left uncompressed for
// good ("compress capture file … too many open files"), and a file whose
// session directory could not be opened was never pruned by keep nor
// handed to post_rotate.
func TestClosedFileWaitsForDescriptor(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Compress: true, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	for i := range 3 {
		c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(),
			vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 100))))
	}
	lowerOpenFiles(t, 64)
	release := fillDescriptors(t)
	// Closing the file frees its two descriptors (file, directory);
	// compressing it takes three (directory, file, .gz).
	go func() {
		time.Sleep(1500 * time.Millisecond)
		release()
	}()
	c.Rotate()
	got := files(t, out)
	if len(got) != 1 || !strings.HasSuffix(got[0], ".pcapng.gz") {
		t.Fatalf("files %v, want the closed file compressed once descriptors were free", got)
	}
}

// TestOpenFilesLimitWarning: started under an open-files limit that the
// sessions it may capture at once (max_sessions and the configured ones, a
// file and a directory each) would exceed, the collector says so at start,
// naming the limit, what it may need and what to change. Before, nothing
// was said until sessions beyond the limit dropped every packet.
func TestOpenFilesLimitWarning(t *testing.T) {
	lowerOpenFiles(t, 200)
	var logs bytes.Buffer
	offline(t, Options{OutputDir: t.TempDir(), MaxSessions: 1024, Logger: textLogger(&logs)})
	if !strings.Contains(logs.String(), "open-files limit") || !strings.Contains(logs.String(), "LimitNOFILE") {
		t.Errorf("no warning about the open-files limit at start:\n%s", logs.String())
	}
	logs.Reset()
	offline(t, Options{OutputDir: t.TempDir(), MaxSessions: 10, Logger: textLogger(&logs)})
	if strings.Contains(logs.String(), "open-files limit") {
		t.Errorf("warning with room for every session:\n%s", logs.String())
	}
}
