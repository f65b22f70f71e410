// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
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

// TestHUPWhileStarting sends SIGHUP to a collector a few milliseconds after
// it was started, as `systemctl restart` then `systemctl reload` does (a
// configuration manager's handlers, logrotate's postrotate). The binary
// spends 60–110 ms initialising packages and reading its configuration
// before it caught SIGHUP, and a SIGHUP then ended it ("Hangup", status
// 129), which systemd counts as a clean exit: Restart=on-failure left the
// part down. Now the signal is held from package initialisation on and the
// part reloads once started. (The first ~10 ms, the Go runtime's own start,
// stay uncovered: no Go program can catch a signal there; the test counts
// from its end.)
func TestHUPWhileStarting(t *testing.T) {
	bin := labtest.XmirrorBinary(t)
	for _, delay := range []time.Duration{20 * time.Millisecond, 35 * time.Millisecond, 50 * time.Millisecond, 70 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(bin, "collect", "--listen", "127.0.0.1:0", "--receive", "socket",
				"--out", filepath.Join(t.TempDir(), "pcap"), "--metrics-listen", "off")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// From when the Go runtime handles signals (SigCgt has SIGHUP):
			// before, no Go program can catch one, and a busy machine can
			// take tens of milliseconds to get there.
			waitCaught(t, cmd.Process.Pid, syscall.SIGHUP)
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGHUP)
			select {
			case err := <-done:
				t.Fatalf("SIGHUP %v after the start ended the collector (%v):\n%s", delay, err, out.String())
			case <-time.After(2 * time.Second):
			}
			cmd.Process.Signal(syscall.SIGTERM)
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("SIGTERM did not stop the collector:\n%s", out.String())
			}
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "collector listening") {
				t.Errorf("the collector did not start:\n%s", out.String())
			}
		})
	}
}

// waitCaught waits until process pid has a handler for sig (SigCgt in
// /proc/PID/status).
func waitCaught(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if mask, ok := strings.CutPrefix(line, "SigCgt:\t"); ok {
				if m, err := strconv.ParseUint(mask, 16, 64); err == nil && m&(1<<(uint(sig)-1)) != 0 {
					return
				}
			}
		}
	}
	t.Fatalf("process %d never caught %v", pid, sig)
}
