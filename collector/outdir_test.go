// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestSecondCollectorOnOutputDir: a second collector on the output
// directory of a running one is refused, naming the holder's pid, before it
// touches a file. Before, its start-up recovery took the first one's open
// .part file for a crash's leftover and removed it, and the packets the
// first one wrote after that went to a file no name reached.
func TestSecondCollectorOnOutputDir(t *testing.T) {
	dir := t.TempDir()
	c, stop := testCollector(t, Options{OutputDir: dir, Sessions: map[uint32]string{1: "s"}})
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x")))
	send(t, "127.0.0.1", c.Addr(), fr)
	waitReceived(t, c, 1)
	part := onlyFile(t, dir, "s/.s-")

	c2, err := New(withTestDefaults(Options{Listen: "127.0.0.1:0", OutputDir: dir}))
	if c2 != nil {
		_ = c2.Close()
	}
	if !errors.Is(err, ErrOutputDirBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second collector: %v, want %v naming pid %d", err, ErrOutputDirBusy, os.Getpid())
	}
	if got := files(t, dir); len(got) != 1 || filepath.Join(dir, got[0]) != part {
		t.Fatalf("the first collector's open file %s became %v", part, got)
	}
	send(t, "127.0.0.1", c.Addr(), fr)
	waitReceived(t, c, 2)
	stop()
	if pkts, _ := readCapture(t, onlyFile(t, dir, "s/s-")); len(pkts) != 2 {
		t.Errorf("the first collector's file holds %d packets, want 2", len(pkts))
	}
	// Stopped, the directory is free again.
	c3, err := New(withTestDefaults(Options{Listen: "127.0.0.1:0", OutputDir: dir}))
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	_ = c3.Close()
}

// TestProcessSecondCollectorOutputDir: `xmirror collect` on the output
// directory of a running one exits 2 naming that one's pid, whatever port
// it listens on; the running one's files stay as they were.
func TestProcessSecondCollectorOutputDir(t *testing.T) {
	out := t.TempDir()
	p := startCollect(t, "--out", out)
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x")))
	p.send(t, fr)
	p.waitMetric(t, "xmirror_collector_received_total", 1)
	before := waitPart(t, out)

	cmd := exec.Command(labtest.XmirrorBinary(t), "collect", "--out", out, "--listen", "127.0.0.1:"+strconv.Itoa(freeUDPPort(t)))
	msg, err := runTimeout(t, cmd)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(msg, fmt.Sprintf("pid %d", p.cmd.Process.Pid)) {
		t.Errorf("second collector: %v, want exit 2 naming pid %d:\n%s", err, p.cmd.Process.Pid, msg)
	}
	if after := files(t, out); len(after) != 1 || after[0] != before {
		t.Errorf("files %v, want the running collector's %s untouched", after, before)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// waitPart waits until the open file of the one session under dir is there.
func waitPart(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := files(t, dir)
		if len(got) == 1 && strings.HasSuffix(got[0], ".part") {
			return got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no .part file under %s: %v", dir, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionDirRemovedWhileRunning: an operator (or a cleanup job) removes
// a session's directory while the collector runs, between two files and
// again while a file is open. The session's next file goes into a new
// directory of that name. Before, the session kept the removed
// directory's descriptor: every later file failed with "create capture
// file: no such file or directory", its packets counted as write_error
// every retry until a restart (a named session) or until it went idle.
func TestSessionDirRemovedWhileRunning(t *testing.T) {
	out := t.TempDir()
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: out, Now: clock.Now, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	send := func(vni uint32, n int, at time.Time) {
		for i := range n {
			c.handle(cache, loopback, at.Add(time.Duration(i)*time.Millisecond).UnixNano(),
				vxlan(vni, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 100))))
		}
	}
	send(1, 3, t0)
	send(7, 3, t0)
	c.Rotate()
	for _, dir := range []string{"s", "vni-7"} {
		if err := os.RemoveAll(filepath.Join(out, dir)); err != nil {
			t.Fatal(err)
		}
	}
	// Between files: the next packet opens a file in a new directory.
	send(1, 4, t0.Add(2*time.Second))
	send(7, 4, t0.Add(2*time.Second))
	// While a file is open: that file's packets went with the directory;
	// the next file still finds one.
	if err := os.RemoveAll(filepath.Join(out, "s")); err != nil {
		t.Fatal(err)
	}
	c.Rotate()
	send(1, 5, t0.Add(4*time.Second))
	c.Rotate()
	if d := c.Stats().Drops["write_error"]; d != 0 {
		t.Errorf("write_error drops %d after the session directories were removed, want 0", d)
	}
	got := files(t, out)
	if len(got) != 2 || !strings.HasPrefix(got[0], "s/s-") || !strings.HasPrefix(got[1], "vni-7/vni-7-") {
		t.Fatalf("files %v, want one in a new s/ and one in a new vni-7/", got)
	}
	for i, want := range []int{5, 4} {
		if pkts, _ := readCapture(t, filepath.Join(out, got[i])); len(pkts) != want {
			t.Errorf("%s: %d packets, want %d", got[i], len(pkts), want)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "s")); err != nil || fi.Mode().Perm() != DefaultDirMode {
		t.Errorf("new session directory: %v %v, want mode %v", fi, err, DefaultDirMode)
	}
}

// TestOutputDirRemovedWhileRunning: the whole output directory is removed
// while the collector runs, and later moved aside and replaced by a new
// empty one (rm -rf, mv pcap pcap.old && mkdir pcap). Within a tick the
// collector writes to a directory at the configured path again: created
// anew when it is gone, the new one when it was replaced. Before, it held
// the removed directory's descriptor: every session dropped every packet
// as write_error ("create capture file: no such file or directory") until
// a restart, and after a replacement it went on writing into the old
// directory under its new name.
func TestOutputDirRemovedWhileRunning(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pcap")
	c := offline(t, Options{OutputDir: out, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	send := func(n int, at time.Time) {
		for i := range n {
			c.handle(cache, loopback, at.Add(time.Duration(i)*time.Millisecond).UnixNano(),
				vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 100))))
		}
		c.Rotate()
	}
	send(3, t0)
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	c.tick()
	send(4, t0.Add(2*time.Second))
	if got := files(t, out); len(got) != 1 || !strings.HasPrefix(got[0], "s/s-") {
		t.Fatalf("after the output directory was removed: files %v, want one in a new s/", got)
	} else if pkts, _ := readCapture(t, filepath.Join(out, got[0])); len(pkts) != 4 {
		t.Errorf("%s: %d packets, want 4", got[0], len(pkts))
	}
	if err := os.Rename(out, out+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o750); err != nil {
		t.Fatal(err)
	}
	c.tick()
	send(5, t0.Add(4*time.Second))
	if got := files(t, out); len(got) != 1 || !strings.HasPrefix(got[0], "s/s-") {
		t.Fatalf("after the output directory was replaced: files %v, want one in s/ of the new directory", got)
	} else if pkts, _ := readCapture(t, filepath.Join(out, got[0])); len(pkts) != 5 {
		t.Errorf("%s: %d packets, want 5", got[0], len(pkts))
	}
	if d := c.Stats().Drops["write_error"]; d != 0 {
		t.Errorf("write_error drops %d, want 0", d)
	}
}
