// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"path/filepath"
	"testing"
	"time"
)

// TestClockStepBack: the wall clock steps back an hour (a VM restored, NTP
// correcting a wrong clock) while a session is written. Its packets were
// all stamped with the last time before the step, for an hour, in the file
// open before it: Wireshark showed an hour of traffic at one instant. Now
// they keep their own receive times, in a new file, so that each file
// stays in time order; and packets the writer got stamped ahead of its
// clock (received just before the step) are written at once instead of
// waiting for the clock to catch up.
func TestClockStepBack(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Sessions: map[uint32]string{1: "s"}, ReorderWindow: 20 * time.Millisecond})
	c.startWriters()
	k := c.newSink()
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	base := time.Now().UnixNano()
	var want []int64
	add := func(ts int64) {
		k.add(loopback, ts, vxlanFrame(1, fr))
		want = append(want, ts)
	}
	for i := range 3 {
		add(base + int64(i)*int64(time.Millisecond))
	}
	k.flush()
	time.Sleep(100 * time.Millisecond)
	back := base - int64(time.Hour)
	for i := range 3 {
		add(back + int64(i)*int64(time.Millisecond))
	}
	k.flush()
	// Stamped before a step back, as the writer's clock now sees them:
	// an hour ahead.
	ahead := time.Now().Add(time.Hour).UnixNano()
	k.add(loopback, ahead, vxlanFrame(2, fr))
	k.flush()
	time.Sleep(200 * time.Millisecond)
	if !c.handoffIdle() {
		t.Errorf("a packet stamped an hour ahead of the writer's clock is still held back")
	}
	c.stopWriters()
	c.Rotate()
	var got []int64
	names := files(t, filepath.Join(out, "s"))
	for _, f := range names {
		pkts, _ := readCapture(t, filepath.Join(out, "s", f))
		for i, p := range pkts {
			if i > 0 && p.ci.Timestamp.Before(pkts[i-1].ci.Timestamp) {
				t.Errorf("%s: packet %d goes back in time", f, i)
			}
		}
		var ts []int64
		for _, p := range pkts {
			ts = append(ts, p.ci.Timestamp.UnixNano())
		}
		got = append(ts, got...) // the file after the step is named an hour earlier
	}
	if len(names) != 2 {
		t.Errorf("files %v, want two: before and after the step", names)
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets written, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("packet %d stamped %v, want its receive time %v", i, time.Duration(got[i]-base), time.Duration(want[i]-base))
		}
	}
}
