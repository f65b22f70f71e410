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
