// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// idleThreads counts the threads of this process whose scheduling policy is
// SCHED_IDLE (field 41 of /proc/self/task/*/stat).
func idleThreads(t *testing.T) int { return countIdle(t, false) }

// leftIdleThreads is idleThreads without the main thread. A sender that ends
// on the main thread leaves it parked for good (Go cannot end a process's
// main thread), and without CAP_SYS_NICE it cannot leave SCHED_IDLE first; a
// parked thread runs nothing, so its policy no longer matters.
func leftIdleThreads(t *testing.T) int { return countIdle(t, true) }

func countIdle(t *testing.T, skipMain bool) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("/proc/self/task/%d/stat", os.Getpid())
	n := 0
	for _, p := range stats {
		if skipMain && p == main {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command name, which is in parentheses, start at 3.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 41-3 && f[41-3] == "5" {
			n++
		}
	}
	return n
}

// waitIdleThreads waits up to 3 s for n SCHED_IDLE threads (by count).
func waitIdleThreads(t *testing.T, n int, count func(*testing.T) int) {
	deadline := time.Now().Add(3 * time.Second)
	for count(t) != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSendPriority: the ring sender runs on a SCHED_IDLE thread of its own
// by default, on a normal one with PriorityNormal, and the idle thread ends
// with the source; a bad priority is refused.
func TestSendPriority(t *testing.T) {
	lab := seedLab(t, false)
	src := lab.Host("source")
	cfg := seedConfig(t, seedYAML)
	// The senders of earlier tests' sources end with their goroutines.
	waitIdleThreads(t, 0, leftIdleThreads)
	if n := leftIdleThreads(t); n != 0 {
		t.Fatalf("%d SCHED_IDLE threads before the test", n)
	}
	var normal *Source
	if err := src.Do(func() (err error) {
		normal, err = New(cfg, Options{Datapath: DatapathRing, SendPriority: PriorityNormal})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := idleThreads(t); n != 0 {
		t.Errorf("normal priority: %d SCHED_IDLE threads", n)
	}
	if err := src.Do(normal.Close); err != nil {
		t.Fatal(err)
	}

	var idle *Source
	if err := src.Do(func() (err error) { idle, err = New(cfg, Options{Datapath: DatapathRing}); return err }); err != nil {
		t.Fatal(err)
	}
	waitIdleThreads(t, 1, idleThreads)
	if n := idleThreads(t); n != 1 {
		t.Errorf("default priority: %d SCHED_IDLE threads, want the sender's", n)
	}
	if err := src.Do(idle.Close); err != nil {
		t.Fatal(err)
	}
	waitIdleThreads(t, 0, leftIdleThreads)
	if n := leftIdleThreads(t); n != 0 {
		t.Errorf("after close: %d SCHED_IDLE threads", n)
	}

	if err := src.Do(func() error { _, err := New(cfg, Options{SendPriority: "low"}); return err }); err == nil || !strings.Contains(err.Error(), `send priority "low"`) {
		t.Errorf("bad priority: %v", err)
	}
}

// TestSenderWithoutSysNice: under the source's unit (no CAP_SYS_NICE) a
// SCHED_IDLE thread cannot go back to normal priority, so the sender must not
// try: its thread ends with its goroutine, and no other thread is left idle.
// The test runs itself again under setpriv with CAP_SYS_NICE out of the
// bounding set.
func TestSenderWithoutSysNice(t *testing.T) {
	if os.Getenv("XM_NO_SYS_NICE") == "1" {
		var logs bytes.Buffer
		prev := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
		defer slog.SetDefault(prev)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer senderThread(PriorityIdle)()
			if n := idleThreads(t); n != 1 {
				t.Errorf("%d SCHED_IDLE threads while the sender runs, want 1", n)
			}
		}()
		<-done
		waitIdleThreads(t, 0, leftIdleThreads)
		if n := leftIdleThreads(t); n != 0 {
			t.Errorf("%d SCHED_IDLE threads after the sender ended", n)
		}
		if logs.Len() > 0 {
			t.Errorf("the sender logged:\n%s", logs.String())
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("dropping CAP_SYS_NICE from a root process needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-sys_nice", os.Args[0], "-test.run=^TestSenderWithoutSysNice$", "-test.v")
	cmd.Env = append(os.Environ(), "XM_NO_SYS_NICE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("without CAP_SYS_NICE: %v\n%s", err, out)
	}
}
