// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// fakeClock is an injectable clock for interval rotation and retries.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) Set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

// offline builds a collector whose packets the test hands to it directly
// (with chosen timestamps), without running the receivers.
func offline(t *testing.T, opts Options) *Collector {
	t.Helper()
	opts.Listen = "127.0.0.1:0"
	opts.Readers = 1
	c, err := New(withTestDefaults(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var t0 = time.Date(2026, 1, 2, 10, 0, 10, 123456789, time.UTC)

func TestRotateBySize(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, RotateSize: 2000, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	const n = 45
	for i := 0; i < n; i++ {
		fr := tcpFrame(t, ipSource, ipTest, 1234, 80, uint32(i), 0, make([]byte, 100))
		c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(), vxlan(1, fr))
		if i == 40 {
			// While a file is open it only exists under its hidden temporary name.
			if open := files(t, out)[0]; open != "s/.s-20260102T100010Z-4.pcapng.part" {
				t.Errorf("open file %q, want the hidden s/.s-20260102T100010Z-4.pcapng.part", open)
			}
		}
	}
	c.Rotate()
	got := files(t, out)
	// 45 packets of 186 bytes (pcapng) with a 2000-byte limit that counts
	// the statistics block each file closes with: 9 per file.
	if len(got) != 5 {
		t.Fatalf("files %v, want 5", got)
	}
	// All start in the same second: numbered, in order.
	want := []string{"s/s-20260102T100010Z.pcapng", "s/s-20260102T100010Z-1.pcapng", "s/s-20260102T100010Z-2.pcapng", "s/s-20260102T100010Z-3.pcapng", "s/s-20260102T100010Z-4.pcapng"}
	seq := uint32(0)
	for _, w := range want {
		info, err := os.Stat(filepath.Join(out, w))
		if err != nil {
			t.Fatalf("missing %s: %v (have %v)", w, err, got)
		}
		if info.Size() < 2000 || info.Size() > 2400 {
			t.Errorf("%s: %d bytes, want about 2000", w, info.Size())
		}
		pkts, _ := readCapture(t, filepath.Join(out, w))
		for _, p := range pkts {
			if s := be32(p.data[38:]); s != seq {
				t.Errorf("%s: seq %d, want %d", w, s, seq)
			}
			seq++
		}
	}
	if seq != n {
		t.Errorf("%d packets in the files, want %d", seq, n)
	}
	if f := c.Stats().Sessions["s"].Files; f != 5 {
		t.Errorf("files metric %d", f)
	}
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// TestRotateByInterval checks wall-clock alignment: files close at minute
// boundaries on the packet timestamps, and an idle file is closed by the
// ticker when the clock passes its boundary.
func TestRotateByInterval(t *testing.T) {
	out := t.TempDir()
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, Format: FormatPcap, RotateInterval: time.Minute, Now: clock.Now, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil))
	for _, ts := range []time.Time{t0, t0.Add(40 * time.Second), t0.Add(49*time.Second + 876543210)} { // 10:00:10, 10:00:50, 10:00:59.999999999
		c.handle(cache, loopback, ts.UnixNano(), fr)
	}
	c.handle(cache, loopback, time.Date(2026, 1, 2, 10, 1, 0, 0, time.UTC).UnixNano(), fr) // on the boundary: next file
	c.handle(cache, loopback, time.Date(2026, 1, 2, 10, 1, 30, 0, time.UTC).UnixNano(), fr)
	clock.Set(time.Date(2026, 1, 2, 10, 1, 59, 0, time.UTC))
	c.tick()
	if got := files(t, out); len(got) != 2 || got[0] != "s/.s-20260102T100100Z.pcap.part" {
		t.Fatalf("before the boundary: files %v", got)
	}
	clock.Set(time.Date(2026, 1, 2, 10, 2, 0, 0, time.UTC))
	c.tick() // idle file past its boundary: closed without a packet
	got := files(t, out)
	if strings.Join(got, " ") != "s/s-20260102T100010Z.pcap s/s-20260102T100100Z.pcap" {
		t.Fatalf("files %v", got)
	}
	for i, n := range []int{3, 2} {
		if pkts, _ := readCapture(t, filepath.Join(out, got[i])); len(pkts) != n {
			t.Errorf("%s: %d packets, want %d", got[i], len(pkts), n)
		}
	}
}

func TestRetention(t *testing.T) {
	out := t.TempDir()
	dir := filepath.Join(out, "s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Files of an earlier run count too; files that are not ours stay.
	for _, f := range []string{"s-20250101T000000Z.pcapng", "notes.txt", "other-20250101T000000Z.pcapng"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := offline(t, Options{OutputDir: out, RotateSize: 1000, Keep: 3, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	for i := 0; i < 30; i++ {
		c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Second).UnixNano(),
			vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 200))))
	}
	c.Rotate()
	got := files(t, out)
	want := "s/notes.txt s/other-20250101T000000Z.pcapng s/s-20260102T100031Z.pcapng s/s-20260102T100034Z.pcapng s/s-20260102T100037Z.pcapng"
	if strings.Join(got, " ") != want {
		t.Errorf("files\n%v\nwant\n%v", got, want)
	}

	// A total-size limit: the newest file is always kept.
	out2 := t.TempDir()
	c2 := offline(t, Options{OutputDir: out2, RotateSize: 1000, KeepBytes: 2500, Sessions: map[uint32]string{1: "s"}})
	cache = seriesCache{}
	for i := 0; i < 30; i++ {
		c2.handle(cache, loopback, t0.Add(time.Duration(i)*time.Second).UnixNano(),
			vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 200))))
	}
	c2.Rotate()
	var total int64
	got = files(t, out2)
	for _, f := range got {
		info, _ := os.Stat(filepath.Join(out2, f))
		total += info.Size()
	}
	if total > 2500 || len(got) != 2 {
		t.Errorf("keep_size 2500: %d bytes in %v", total, got)
	}
}

// TestPostRotateNoShell: post_rotate runs as argv without a shell (the
// container image has none): shell syntax reaches the command as it is
// written.
func TestPostRotateNoShell(t *testing.T) {
	out, marks := t.TempDir(), t.TempDir()
	c := offline(t, Options{OutputDir: out, PostRotate: "touch " + marks + "/$HOME", Sessions: map[uint32]string{4: "p"}})
	c.handle(seriesCache{}, loopback, t0.UnixNano(), vxlan(4, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	c.Rotate()
	if _, err := os.Stat(filepath.Join(marks, "$HOME")); err != nil {
		t.Errorf("no file named $HOME: the command went through a shell (%v); %v", err, files(t, marks))
	}
}

func TestPostRotate(t *testing.T) {
	out, copies := t.TempDir(), t.TempDir()
	c, stop := testCollector(t, Options{OutputDir: out, PostRotate: "cp -t " + copies, Sessions: map[uint32]string{4: "p"}})
	send(t, "127.0.0.1", c.Addr(), vxlan(4, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	waitReceived(t, c, 1)
	stop() // waits for the post-rotate commands
	got, cp := files(t, out), files(t, copies)
	if len(got) != 1 || len(cp) != 1 || filepath.Base(got[0]) != cp[0] {
		t.Fatalf("files %v, copies %v", got, cp)
	}
}

// TestRecoverParts: a .part left by a crash, with a half-written block at
// its end, is cut back to whole blocks and renamed by the next start; one
// left with no whole packet is removed, as is a half-written .gz.
func TestRecoverParts(t *testing.T) {
	out := t.TempDir()
	dir := filepath.Join(out, "s")
	_ = os.MkdirAll(dir, 0o755)
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	b := appendNgSHB(nil, sectionInfo{Application: "xmirror"})
	b = appendNgIDB(b, "127.0.0.1/vni1", "", 0)
	b = appendNgEPB(b, 0, t0.UnixNano(), fr, len(fr), nil)
	whole := len(b)
	b = appendNgEPB(b, 0, t0.UnixNano(), fr, len(fr), nil)[:whole+30]
	if err := os.WriteFile(filepath.Join(dir, ".s-20260102T100010Z.pcapng.part"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := appendPcapRecord(appendPcapHeader(nil), t0.UnixNano(), fr, len(fr))
	if err := os.WriteFile(filepath.Join(dir, ".s-20260102T100011Z.pcap.part"), p[:len(p)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".s-20260102T100009Z.pcapng.gz.part"), []byte{0x1f, 0x8b}, 0o644); err != nil {
		t.Fatal(err)
	}
	offline(t, Options{OutputDir: out})
	got := files(t, out)
	if strings.Join(got, " ") != "s/s-20260102T100010Z.pcapng" {
		t.Fatalf("files %v", got)
	}
	if pkts, _ := readCapture(t, filepath.Join(out, got[0])); len(pkts) != 1 {
		t.Errorf("recovered pcapng has %d packets, want 1", len(pkts))
	}
	tsharkFields(t, filepath.Join(out, got[0]), "frame.len")
}

func TestSessionNamesUnique(t *testing.T) {
	c := offline(t, Options{OutputDir: t.TempDir(), Sessions: map[uint32]string{1: "a/b", 2: "a_b", 3: "../.."}})
	names := map[string]bool{}
	for vni := uint32(1); vni <= 3; vni++ {
		s, _ := c.seriesFor(VXLAN(vni))
		if names[s.name] || strings.ContainsAny(s.name, "/\\") || strings.HasPrefix(s.name, ".") {
			t.Errorf("VNI %d: name %q", vni, s.name)
		}
		names[s.name] = true
	}
}

// TestSessionLimit: VNIs sprayed beyond MaxSessions are dropped, configured
// sessions are still captured.
func TestSessionLimit(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, MaxSessions: 3, Sessions: map[uint32]string{1000: "known"}})
	cache := seriesCache{}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	for vni := uint32(1); vni <= 10; vni++ {
		c.handle(cache, netip.MustParseAddr("10.0.0.1"), t0.UnixNano(), vxlan(vni, fr))
	}
	c.handle(cache, loopback, t0.UnixNano(), vxlan(1000, fr))
	c.Rotate()
	st := c.Stats()
	if st.Drops["session_limit"] != 7 || st.Written != 4 || len(st.Sessions) != 4 || len(cache) != 4 {
		t.Errorf("stats %+v, cache %d", st, len(cache))
	}
	if got := files(t, out); len(got) != 4 {
		t.Errorf("files %v", got)
	}
}

// TestSourceLimit: beyond maxSources, mirror sources share one "other"
// interface and counter.
func TestSourceLimit(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil))
	for i := 0; i < maxSources+44; i++ {
		c.handle(cache, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t0.UnixNano(), fr)
	}
	c.Rotate()
	got := files(t, out)
	if len(got) != 1 {
		t.Fatalf("files %v", got)
	}
	pkts, ifs := readCapture(t, filepath.Join(out, got[0]))
	if len(pkts) != maxSources+44 || len(ifs) != maxSources+1 || ifs[maxSources].Name != "other/vni1" {
		t.Errorf("%d packets, %d interfaces, last %+v", len(pkts), len(ifs), ifs[len(ifs)-1])
	}
}

// TestRotateSizeWithManySources: a file is at most one packet larger than
// rotate.size, however many mirror sources it holds. The interface
// statistics written at the close (one block per source) came on top:
// with 64 sources a 20,000-byte limit gave files of 25,000 bytes.
func TestRotateSizeWithManySources(t *testing.T) {
	out := t.TempDir()
	const limit = 20000
	c := offline(t, Options{OutputDir: out, RotateSize: limit, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1234, 80, 1, 0, make([]byte, 100)))
	for i := range 2000 {
		src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 64)})
		c.handle(cache, src, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(), fr)
	}
	c.Rotate()
	got := files(t, out)
	if len(got) < 3 {
		t.Fatalf("files %v", got)
	}
	packet := int64(ngEPBLen(make([]byte, 154), nil))
	for _, f := range got {
		info, err := os.Stat(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > limit+packet {
			t.Errorf("%s: %d bytes, want at most %d (rotate.size %d and one packet)", f, info.Size(), limit+packet, limit)
		}
	}
}

// TestSessionLimitLogCounts: the session_limit drops of a flood shorter
// than the log interval all reach the log. Before, the first drop was
// logged at once ("dropped=1") and the rest of a 2.5 s flood of 2,000 VNIs
// (4,879 more) never was: the count waited for a next drop 5 s later.
func TestSessionLimitLogCounts(t *testing.T) {
	var logs netlab.SyncBuffer
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: t.TempDir(), MaxSessions: 1, Now: clock.Now, Logger: textLogger(&logs)})
	cache := seriesCache{}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	for vni := uint32(1); vni <= 10; vni++ {
		c.handle(cache, loopback, t0.UnixNano(), vxlan(vni, fr))
	}
	clock.Set(t0.Add(6 * time.Second))
	c.tick()
	logged := 0
	for _, m := range regexp.MustCompile(`session limit reached.* dropped=(\d+)`).FindAllStringSubmatch(logs.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		logged += n
	}
	if logged != 9 {
		t.Errorf("the log counts %d session_limit drops, want 9:\n%s", logged, logs.String())
	}
}
