// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestDiskFull writes into a small tmpfs until it is full: the session
// closes its file with only whole packets in it, counts the packets it cannot
// keep, and resumes in a new file once space returns. In 256 KiB with 8 KiB
// writes the failed write fills the last page and the closing statistics
// find no room; in 100 KiB with 64 KiB writes the failed one takes pages
// that the cut-back frees, and the statistics are written: behind the last
// whole block (before, behind a hole of zeros, and tshark called the file
// damaged).
func TestDiskFull(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tc := range []struct {
		size        string
		writeBuffer int
	}{{"256k", 8 << 10}, {"100k", 64 << 10}} {
		t.Run(tc.size+"-"+strconv.Itoa(tc.writeBuffer>>10)+"KiB", func(t *testing.T) { diskFull(t, tc.size, tc.writeBuffer) })
	}
}

func diskFull(t *testing.T, size string, writeBuffer int) {
	out := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("xmirror-test", out, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(out, unix.MNT_DETACH) })

	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, MaxDatagram: 2048, WriteBuffer: writeBuffer, RetryInterval: 5 * time.Second,
		Now: clock.Now, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1000)))
	sent := 0
	for i := 0; i < 400 && c.Stats().Drops["write_error"] == 0; i++ {
		c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(), fr)
		sent++
	}
	st := c.Stats()
	if st.Drops["write_error"] == 0 {
		t.Fatalf("%s never filled: %+v", size, st)
	}
	// More packets while failed: all dropped, no new file.
	for i := 0; i < 10; i++ {
		c.handle(cache, loopback, t0.Add(time.Second).UnixNano(), fr)
		sent++
	}
	got := files(t, out)
	if len(got) != 1 || got[0][:4] != "s/s-" {
		t.Fatalf("after the failure: files %v, want one closed file", got)
	}
	full := filepath.Join(out, got[0])
	pkts, _ := readCapture(t, full)
	st = c.Stats()
	if uint64(len(pkts)) != st.Written || uint64(len(pkts))+st.Drops["write_error"] != uint64(sent) {
		t.Errorf("file holds %d packets; written %d, dropped %d, sent %d", len(pkts), st.Written, st.Drops["write_error"], sent)
	}
	if raw, err := os.ReadFile(full); err != nil || validPrefix(raw, FormatPcapng) != len(raw) {
		t.Errorf("%s: not whole blocks to its end (%v)", full, err)
	}
	tsharkFields(t, full, "frame.len") // fails on a cut-short or damaged file

	// Space returns (the operator moves the file away); after the retry
	// interval the next packet opens a new file.
	if err := os.Rename(full, filepath.Join(t.TempDir(), "moved.pcapng")); err != nil {
		// rename across filesystems: copy then remove
		_ = os.Remove(full)
	}
	clock.Set(t0.Add(10 * time.Second))
	c.tick()
	before := st.Written
	for i := 0; i < 5; i++ {
		c.handle(cache, loopback, t0.Add(11*time.Second).UnixNano(), fr)
	}
	c.Rotate()
	if w := c.Stats().Written - before; w != 5 {
		t.Errorf("after space returned %d of 5 packets written", w)
	}
	got = files(t, out)
	if len(got) != 1 {
		t.Fatalf("files %v", got)
	}
	if pkts, _ := readCapture(t, filepath.Join(out, got[0])); len(pkts) != 5 {
		t.Errorf("new file has %d packets, want 5", len(pkts))
	}
}
