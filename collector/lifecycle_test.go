// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// smallDisk mounts a tmpfs of size bytes for the test.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	labtest.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("xmirror-test", out, "tmpfs", 0, "size="+size+",mode=0750"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(out, unix.MNT_DETACH) })
	return out
}

// TestFullDiskKeepsRealCapture: a flood fills a small disk, then goes on
// while the collector retries every RetryInterval. Each retry used to close
// a header-only file that counted towards keep, so retention deleted the
// file holding the capture and only empty files remained.
func TestFullDiskKeepsRealCapture(t *testing.T) {
	out := smallDisk(t, "512k")
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, Keep: 2, MaxDatagram: 2048, WriteBuffer: 8192,
		RetryInterval: 5 * time.Second, Now: clock.Now, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1000)))
	now := t0
	for retry := 0; retry < 8; retry++ {
		for i := 0; i < 1000; i++ {
			now = now.Add(time.Millisecond)
			c.handle(cache, loopback, now.UnixNano(), fr)
		}
		now = now.Add(5 * time.Second)
		clock.Set(now)
		c.tick()
	}
	c.Rotate()
	st := c.Stats()
	if st.Drops["write_error"] == 0 || st.Written == 0 {
		t.Fatalf("the disk never filled, or nothing was written: %+v", st)
	}
	var kept uint64
	for _, f := range files(t, out) {
		pkts, _ := readCapture(t, filepath.Join(out, f))
		if len(pkts) == 0 {
			t.Errorf("%s: a file without packets was kept", f)
		}
		kept += uint64(len(pkts))
	}
	if kept < st.Written*9/10 {
		t.Errorf("files hold %d of the %d packets written: the real capture was deleted (files %v)", kept, st.Written, files(t, out))
	}
	if n := c.Stats().Sessions["s"].Files; n > 3 {
		t.Errorf("%d files closed", n)
	}
}

// TestMinFree: below min_free the oldest closed files go first; when the
// newest file of each session alone leaves too little space, writing pauses
// (disk_low) and resumes once space returns, each logged once.
func TestMinFree(t *testing.T) {
	out := smallDisk(t, "1m")
	var log netlab.SyncBuffer
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, RotateSize: 50 << 10, MinFree: 750 << 10, Now: clock.Now,
		Logger: textLogger(&log), Sessions: map[uint32]string{1: "a", 2: "b"}})
	cache := seriesCache{}
	fr := func(vni uint32) []byte {
		return vxlan(vni, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1000)))
	}
	send := func(n int) {
		for i := 0; i < n; i++ {
			c.handle(cache, loopback, clock.Now().UnixNano(), fr(uint32(1+i%2)))
			if i%100 == 99 {
				clock.Set(clock.Now().Add(time.Second))
				c.tick()
			}
		}
	}
	send(600) // about 600 KiB in 50 KiB files, two sessions
	st := c.Stats()
	if st.Drops["disk_low"] != 0 && c.retained["min_free"].Get() == 0 {
		t.Fatalf("paused without removing old files first: %+v", st)
	}
	if c.retained["min_free"].Get() == 0 {
		t.Fatalf("no file removed for min_free; files %v", files(t, out))
	}
	if c.Stats().Drops["disk_low"] != 0 {
		t.Fatalf("paused although removing old files was enough: %+v", c.Stats())
	}
	// Something else fills the disk: the old files go, then writing pauses.
	if err := os.WriteFile(filepath.Join(out, "filler"), make([]byte, 400<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	send(200)
	free, _ := c.out.free()
	if c.Stats().Drops["disk_low"] == 0 {
		t.Fatalf("never paused: free %d, files %v", free, files(t, out))
	}
	for _, f := range files(t, out) {
		if !strings.HasPrefix(filepath.Base(f), ".") && f != "filler" {
			if pkts, _ := readCapture(t, filepath.Join(out, f)); len(pkts) == 0 {
				t.Errorf("%s holds no packet", f)
			}
		}
	}
	// Space returns: the operator moves files away.
	for _, f := range files(t, out) {
		_ = os.Remove(filepath.Join(out, f))
	}
	clock.Set(clock.Now().Add(time.Minute))
	c.tick()
	before := c.Stats().Written
	send(10)
	c.Rotate()
	if w := c.Stats().Written - before; w != 10 {
		t.Errorf("after space returned %d of 10 packets written", w)
	}
	if n := strings.Count(log.String(), "writing paused"); n != 1 {
		t.Errorf("pause logged %d times:\n%s", n, log.String())
	}
	if n := strings.Count(log.String(), "writing resumed"); n != 1 {
		t.Errorf("resume logged %d times", n)
	}
}

// TestRetentionAcrossSessions: keep_age and max_total_size apply to all
// sessions' files together, oldest first, never the newest of a configured
// or open session; directories of other sessions (a VNI flood, an earlier
// run) are emptied and removed.
func TestRetentionAcrossSessions(t *testing.T) {
	out := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	for _, f := range []string{"a/a-20250101T000000Z.pcapng", "a/a-20250102T000000Z.pcapng.gz",
		"b/b-20250101T000001Z.pcap", "b/b-20250103T000000Z.pcap", "b/notes.txt",
		"vni-9/vni-9-20250101T000000Z.pcapng"} {
		p := filepath.Join(out, f)
		_ = os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, make([]byte, 1000), 0o640); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(p, old, old)
	}
	sessions := map[uint32]string{1: "a", 2: "b"}
	c := offline(t, Options{OutputDir: out, KeepAge: 24 * time.Hour, Sessions: sessions})
	c.tick()
	got := strings.Join(files(t, out), " ")
	if got != "a/a-20250102T000000Z.pcapng.gz b/b-20250103T000000Z.pcap b/notes.txt" {
		t.Errorf("keep_age: files %s", got)
	}
	if n := c.retained["keep_age"].Get(); n != 3 {
		t.Errorf("keep_age removed %d, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(out, "vni-9")); err == nil {
		t.Error("the emptied directory of a session no longer open stays")
	}

	sessions[3] = "c"
	_ = c.Close() // the next run: one collector per output directory
	c2 := offline(t, Options{OutputDir: out, MaxTotalSize: 1500, Sessions: sessions})
	cache := seriesCache{}
	c2.handle(cache, loopback, t0.UnixNano(), vxlan(3, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	c2.Rotate()
	c2.tick()
	got = strings.Join(files(t, out), " ")
	if got != "a/a-20250102T000000Z.pcapng.gz b/b-20250103T000000Z.pcap b/notes.txt c/c-20260102T100010Z.pcapng" {
		t.Errorf("max_total_size keeps the newest of each session: files %s", got)
	}
}

// TestIdleSessionFreesSlot: a flood of VNIs fills the session limit; once
// they are idle their places are free and a new VNI is captured. A named
// session is never evicted.
func TestIdleSessionFreesSlot(t *testing.T) {
	out := t.TempDir()
	var log netlab.SyncBuffer
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, MaxSessions: 3, SessionIdle: time.Minute, Now: clock.Now,
		Logger: textLogger(&log), Sessions: map[uint32]string{1000: "known"}})
	cache := seriesCache{}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	c.handle(cache, loopback, t0.UnixNano(), vxlan(1000, fr))
	for vni := uint32(1); vni <= 100; vni++ {
		c.handle(cache, loopback, t0.UnixNano(), vxlan(vni, fr))
	}
	if d := c.Stats().Drops["session_limit"]; d != 97 {
		t.Fatalf("session_limit drops %d, want 97", d)
	}
	if n := strings.Count(log.String(), "session limit reached"); n != 1 {
		t.Errorf("limit logged %d times, want once (rate limited):\n%s", n, log.String())
	}
	known, _ := c.seriesFor(VXLAN(1000))
	clock.Set(t0.Add(2 * time.Minute))
	c.tick()
	c.handle(cache, loopback, clock.Now().UnixNano(), vxlan(5000, fr))
	c.handle(cache, loopback, clock.Now().UnixNano(), vxlan(1, fr)) // evicted, comes back
	c.Rotate()
	st := c.Stats()
	if st.Sessions["vni-5000"].Packets != 1 || st.Sessions["vni-1"].Packets != 1 {
		t.Errorf("after the idle time the new VNIs were not captured: %+v", st)
	}
	if len(cache) != 3 {
		t.Errorf("writer cache holds %d series, want 3 (the evicted ones pruned)", len(cache))
	}
	if again, _ := c.seriesFor(VXLAN(1000)); again != known {
		t.Error("the named session was evicted")
	}
	if got := files(t, out); len(got) != 6 { // known, 1, 2, 3, then 5000 and 1 again
		t.Errorf("files %v", got)
	}
	// The evicted series' packets count still: the run wrote 6 packets
	// (Written summed only the series in memory, so the stop log said 3).
	if st.Written != 6 {
		t.Errorf("Written %d after evictions, want 6", st.Written)
	}
}

// TestSymlinkSessionDir: a session directory replaced by a symbolic link
// is refused; nothing is written where it points.
func TestSymlinkSessionDir(t *testing.T) {
	out, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(out, "s")); err != nil {
		t.Fatal(err)
	}
	c := offline(t, Options{OutputDir: out, Sessions: map[uint32]string{1: "s"}})
	c.handle(seriesCache{}, loopback, t0.UnixNano(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	c.Rotate()
	if got := files(t, elsewhere); len(got) != 0 {
		t.Errorf("written through the link: %v", got)
	}
	if d := c.Stats().Drops["write_error"]; d != 1 {
		t.Errorf("write_error %d, want 1", d)
	}
}

// TestFileModes: under umask 0, files are 0640 and directories 0750 by
// default, and FileMode and Group set them.
func TestFileModes(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, tc := range []struct {
		mode          os.FileMode
		group         string
		file, dir     os.FileMode
		wantGroupFile bool
	}{
		{0, "", 0o640, 0o750, false},
		{0o600, "", 0o600, 0o700, false},
		{0o640, "4242", 0o640, 0o750, true},
	} {
		out := filepath.Join(t.TempDir(), "out")
		c := offline(t, Options{OutputDir: out, FileMode: tc.mode, Group: tc.group, Sessions: map[uint32]string{1: "s"}})
		c.handle(seriesCache{}, loopback, t0.UnixNano(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
		c.Rotate()
		path := onlyFile(t, out, "")
		for p, want := range map[string]os.FileMode{out: tc.dir, filepath.Join(out, "s"): tc.dir, path: tc.file} {
			info, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != want {
				t.Errorf("mode %#o: %s is %#o, want %#o", tc.mode, p, info.Mode().Perm(), want)
			}
			if tc.wantGroupFile && p != out && info.Sys().(*syscall.Stat_t).Gid != 4242 {
				t.Errorf("%s: group %d, want 4242", p, info.Sys().(*syscall.Stat_t).Gid)
			}
		}
	}
	// A world-writable output directory is refused.
	open := filepath.Join(t.TempDir(), "open")
	_ = os.Mkdir(open, 0o777)
	if _, err := New(Options{OutputDir: open, Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "writable by everyone") {
		t.Errorf("world-writable output directory: %v", err)
	}
}

// TestFileNameTemplate: the default names carry the host; a template
// chooses the order; retention recognises both.
func TestFileNameTemplate(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{DefaultFileName, "s/s-coll-a-20260102T100010Z.pcapng"},
		{"{host}_{vni}_{session}_{time}", "s/coll-a_1_s_20260102T100010Z.pcapng"},
	} {
		out := t.TempDir()
		c := offline(t, Options{OutputDir: out, FileName: tc.tmpl, Host: "coll-a", Keep: 1, Sessions: map[uint32]string{1: "s"}})
		cache := seriesCache{}
		for i := 0; i < 3; i++ {
			c.handle(cache, loopback, t0.UnixNano(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
			c.Rotate()
		}
		got := files(t, out)
		want := strings.Replace(tc.want, "Z.", "Z-2.", 1)
		if len(got) != 1 || got[0] != want {
			t.Errorf("template %q: files %v, want [%s] (keep 1)", tc.tmpl, got, want)
		}
	}
	for _, bad := range []string{"{session}", "{time}/{session}", "{time}{time}", "{nope}-{time}", ".{time}"} {
		if CheckFileName(bad) == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
}

// TestOutputDirNotWritable: an output directory the collector cannot write
// (read-only filesystem here; a directory of another user for a service
// user alike) is refused at start. Before, the collector started, /healthz
// answered 200, so the load balancer kept sending, and every packet was
// dropped as write_error ("create session directory vni-1: permission
// denied").
func TestOutputDirNotWritable(t *testing.T) {
	labtest.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("xmirror-test", out, "tmpfs", unix.MS_RDONLY, "mode=0750"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(out, unix.MNT_DETACH) })
	c, err := New(withTestDefaults(Options{OutputDir: out, Listen: "127.0.0.1:0", Readers: 1}))
	if err == nil {
		_ = c.Close()
		t.Fatal("collector started on a read-only output directory")
	}
	if !strings.Contains(err.Error(), "not writable") || !strings.Contains(err.Error(), out) ||
		!strings.Contains(err.Error(), "ReadWritePaths=") {
		t.Errorf("error %q, want it to say the output directory %s is not writable, and what the unit needs", err, out)
	}
}

// TestOutputDirNotCreatable: an output directory that does not exist on a
// read-only filesystem (under the unit's ProtectSystem=strict, any path
// outside /var/lib/xmirror, such as output_dir: /srv/pcap) was refused with
// only "create output directory: mkdir ...: read-only file system"; it now
// says what the unit needs, as for one that exists.
func TestOutputDirNotCreatable(t *testing.T) {
	labtest.RequireRoot(t)
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("xmirror-test", ro, "tmpfs", unix.MS_RDONLY, "mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(ro, unix.MNT_DETACH) })
	out := filepath.Join(ro, "pcap")
	c, err := New(withTestDefaults(Options{OutputDir: out, Listen: "127.0.0.1:0", Readers: 1}))
	if err == nil {
		_ = c.Close()
		t.Fatal("collector started without its output directory")
	}
	if !strings.Contains(err.Error(), out) || !strings.Contains(err.Error(), "ReadWritePaths=") {
		t.Errorf("error %q, want it to name %s and what the unit needs", err, out)
	}
}

// TestFileNameTooLong: a session name of 100 bytes in a template that
// uses it twice, with a long host, makes names past the 255 bytes a
// file name may have. The session drops its packets as write_error,
// naming the error, and the collector goes on (other sessions write, a
// rotation and a stop return). Before, looking for a free name took the
// error of the too-long name for "the name is taken" and counted up
// forever with the session locked: its writer spun, the ticker and every
// other session stopped, and SIGTERM never ended the process.
func TestFileNameTooLong(t *testing.T) {
	out := t.TempDir()
	var logs netlab.SyncBuffer
	long := strings.Repeat("x", 100)
	c := offline(t, Options{OutputDir: out, FileName: "{session}-{session}-{host}-{time}", Host: strings.Repeat("h", 63),
		Sessions: map[uint32]string{2: "s"}, Logger: textLogger(&logs)})
	// Refused at start (TestFileNameTooLongRefused); a reload brings it in.
	c.Reload(map[Key]Session{VXLAN(1): {Name: long}, VXLAN(2): {Name: "s"}})
	if !strings.Contains(logs.String(), "255") {
		t.Errorf("the reload does not say the session's file names are too long:\n%s", logs.String())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cache := seriesCache{}
		for _, vni := range []uint32{1, 2} {
			c.handle(cache, loopback, t0.UnixNano(), vxlan(vni, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
		}
		c.Rotate()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writing a packet whose file name is too long never returned")
	}
	if d := c.Stats().Drops["write_error"]; d != 1 {
		t.Errorf("write_error drops %d, want 1", d)
	}
	if !strings.Contains(logs.String(), "file name too long") {
		t.Errorf("the log does not name the error:\n%s", logs.String())
	}
	if got := files(t, out); len(got) != 1 || !strings.HasPrefix(got[0], "s/") {
		t.Errorf("files %v, want the other session's", got)
	}
}

// TestFileNameTooLongRefused: a configured session whose file names
// (with the collector's host, the sequence number and the temporary
// suffixes) would pass the 255 bytes a file name may have is refused at
// start, naming the session and the length, instead of dropping all its
// packets once it runs; a reload that brings one in says so in the log.
func TestFileNameTooLongRefused(t *testing.T) {
	long := strings.Repeat("x", 100)
	opts := withTestDefaults(Options{Listen: "127.0.0.1:0", OutputDir: t.TempDir(), FileName: "{session}-{session}-{host}-{time}",
		Host: strings.Repeat("h", 63), Sessions: map[uint32]string{1: long}})
	c, err := New(opts)
	if err == nil {
		c.Close()
		t.Fatal("started with file names over 255 bytes")
	}
	if !strings.Contains(err.Error(), long) || !strings.Contains(err.Error(), "255") {
		t.Errorf("error %q does not name the session and the limit", err)
	}
}
