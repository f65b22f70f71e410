// SPDX-License-Identifier: Apache-2.0

package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// idleThreads counts the threads of this process whose scheduling policy is
// SCHED_IDLE (field 41 of /proc/self/task/*/stat).
func idleThreads(t *testing.T) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range stats {
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

// waitIdleThreads waits up to 3 s for n SCHED_IDLE threads.
func waitIdleThreads(t *testing.T, n int) {
	deadline := time.Now().Add(3 * time.Second)
	for idleThreads(t) != n && time.Now().Before(deadline) {
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
	waitIdleThreads(t, 0)
	if n := idleThreads(t); n != 0 {
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
	waitIdleThreads(t, 1)
	if n := idleThreads(t); n != 1 {
		t.Errorf("default priority: %d SCHED_IDLE threads, want the sender's", n)
	}
	if err := src.Do(idle.Close); err != nil {
		t.Fatal(err)
	}
	waitIdleThreads(t, 0)
	if n := idleThreads(t); n != 0 {
		t.Errorf("after close: %d SCHED_IDLE threads", n)
	}

	if err := src.Do(func() error { _, err := New(cfg, Options{SendPriority: "low"}); return err }); err == nil || !strings.Contains(err.Error(), `send priority "low"`) {
		t.Errorf("bad priority: %v", err)
	}
}
