// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hangingHook writes a post-rotate script that records its argument and
// then waits until the test ends (the file release appears), as a hook
// stuck on an unreachable archive does.
func hangingHook(t *testing.T) (cmd, calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	release := filepath.Join(dir, "release")
	script := filepath.Join(dir, "hook")
	body := "#!/bin/sh\necho \"$1\" >> " + calls + "\nwhile [ ! -e " + release + " ]; do sleep 0.05; done\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered after the collector's Close (the caller makes the
	// collector first), so it runs before it: Close finds the hooks done.
	t.Cleanup(func() { _ = os.WriteFile(release, nil, 0o644) })
	return script, calls
}

// TestHungPostRotateKeepsRetention: a post_rotate command that never
// returns holds up neither the retention nor the compression of the files
// closed after it. Before, one goroutine ran both and the hook in turn: the
// first hanging hook stopped `keep` for good and the disk filled.
func TestHungPostRotateKeepsRetention(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Keep: 2, Compress: true, Sessions: map[uint32]string{1: "s"}})
	c.opts.PostRotate, _ = hangingHook(t)
	cache := seriesCache{}
	for i := range 6 {
		ts := t0.Add(time.Duration(i) * time.Second)
		c.handle(cache, loopback, ts.UnixNano(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 4, nil)))
		for _, s := range c.allSeries() {
			s.rotate("test")
		}
	}
	want := "s/s-20260102T100014Z.pcapng.gz s/s-20260102T100015Z.pcapng.gz"
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = files(t, out); strings.Join(got, " ") == want {
			return
		}
	}
	t.Fatalf("with the first post-rotate command hanging: files %v, want %s (keep 2, compressed)", got, want)
}

// TestManyFilesCloseAtOnce: more files than the closed-file queue held
// (1024) close at once, as at every interval boundary or SIGUSR1 with
// that many sessions. Those beyond it were "left as it is": never
// compressed, never handed to post_rotate (3,000 sessions: 1,916 files).
// Now every one is.
func TestManyFilesCloseAtOnce(t *testing.T) {
	out, copies := t.TempDir(), t.TempDir()
	const n = 1500
	c := offline(t, Options{OutputDir: out, Compress: true, MaxSessions: n, PostRotate: "cp -t " + copies})
	cache := seriesCache{}
	for vni := range uint32(n) {
		c.handle(cache, loopback, t0.UnixNano(), vxlan(vni+1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	}
	c.Rotate()
	var plain, gz, cp int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		plain, gz = 0, 0
		for _, f := range files(t, out) {
			if strings.HasSuffix(f, ".gz") {
				gz++
			} else {
				plain++
			}
		}
		if cp = len(files(t, copies)); gz == n && cp == n {
			return
		}
	}
	t.Fatalf("%d sessions rotated at once: %d files compressed, %d left uncompressed, %d handed to post_rotate; want all %d",
		n, gz, plain, cp, n)
}

// TestPostRotateMissingCommand: a post_rotate command that does not exist
// or cannot be run (a typo, a script without its x bit, gzip in the
// distroless image) is refused at start. Before, the collector started and
// the first rotation, an hour later, logged that the command failed; every
// file until it was noticed went unarchived.
func TestPostRotateMissingCommand(t *testing.T) {
	noexec := filepath.Join(t.TempDir(), "ship")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"/nonexistent/ship-pcap --to archive", noexec, "no-such-command-xmirror"} {
		c, err := New(withTestDefaults(Options{OutputDir: t.TempDir(), Listen: "127.0.0.1:0", Readers: 1, PostRotate: cmd}))
		if err == nil {
			_ = c.Close()
			t.Errorf("post_rotate %q: started", cmd)
			continue
		}
		if !strings.Contains(err.Error(), "post_rotate") || !strings.Contains(err.Error(), strings.Fields(cmd)[0]) {
			t.Errorf("post_rotate %q: error %q, want it to name the key and the command", cmd, err)
		}
	}
}
