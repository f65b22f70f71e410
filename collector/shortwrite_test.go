// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullDisk is an open capture file whose next write stops halfway with
// ENOSPC, as a write into a filesystem that fills up does; later writes go
// through (the cut-back freed space). WriteAt then reports 0 bytes, as
// os.File.WriteAt does when its pwrite loop wrote part before the error.
type fullDisk struct {
	*os.File
	hit bool
}

func (f *fullDisk) Write(p []byte) (int, error) {
	if f.hit {
		return f.File.Write(p)
	}
	f.hit = true
	n, _ := f.File.Write(p[:len(p)/2])
	return n, unix.ENOSPC
}

func (f *fullDisk) WriteAt(p []byte, off int64) (int, error) {
	if f.hit {
		return f.File.WriteAt(p, off)
	}
	f.hit = true
	_, _ = f.File.WriteAt(p[:len(p)/2], off)
	return 0, unix.ENOSPC
}

// fillDisk makes the next write of the session's open file stop halfway.
func fillDisk(t *testing.T, c *Collector, key Key) {
	t.Helper()
	s, _ := c.seriesFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.f.(*os.File)
	if !ok {
		t.Fatalf("session %v has no open file", key)
	}
	s.f = &fullDisk{File: f}
}

// TestShortWriteKeepsFileReadable: a flush that stops halfway (disk full)
// leaves the file with the packets flushed before it, readable to its end:
// the blocks written after the cut-back (the pcapng statistics) follow the
// last whole block instead of a hole of zeros, and the closed file's logged
// size is its size on disk. Before, the statistics landed at the old end of
// the write and pcapng readers stopped at the hole ("total block length 0").
func TestShortWriteKeepsFileReadable(t *testing.T) {
	for _, format := range []Format{FormatPcapng, FormatPcap} {
		t.Run(format.String(), func(t *testing.T) {
			out := t.TempDir()
			var log bytes.Buffer
			clock := &fakeClock{t: t0} // the packets' time: the ticks find the session busy
			c := offline(t, Options{OutputDir: out, Format: format, WriteBuffer: 64 << 10,
				Now: clock.Now, Logger: textLogger(&log), Sessions: map[uint32]string{1: "s"}})
			cache := seriesCache{}
			fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1000)))
			send := func(n int) {
				for i := 0; i < n; i++ {
					c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(), fr)
				}
			}
			send(5)
			c.tick() // 5 packets on disk
			fillDisk(t, c, VXLAN(1))
			send(10)
			c.tick() // half of 10 packets written, then ENOSPC: the file closes

			if d := c.Stats().Drops["write_error"]; d != 10 {
				t.Errorf("write_error drops %d, want the 10 packets of the failed flush", d)
			}
			path := onlyFile(t, out, "s/s-")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := validPrefix(raw, format); n != len(raw) {
				t.Errorf("%s: whole blocks end at %d of %d bytes", path, n, len(raw))
			}
			if pkts, _ := readCapture(t, path); len(pkts) != 5 {
				t.Errorf("%s holds %d packets, want 5", path, len(pkts))
			}
			m := regexp.MustCompile(`msg="capture file closed".* bytes=(\d+) `).FindSubmatch(log.Bytes())
			if m == nil {
				t.Fatalf("no close logged:\n%s", log.String())
			}
			if logged, _ := strconv.Atoi(string(m[1])); logged != len(raw) {
				t.Errorf("close logged bytes=%d, the file has %d", logged, len(raw))
			}
			tsharkFields(t, path, "frame.len") // fails on a damaged file
		})
	}
}
