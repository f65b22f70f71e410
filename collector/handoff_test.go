// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"strings"
	"testing"
	"time"
)

// TestSlowDiskDoesNotStallReceive: while a session's writer is stuck (its
// series locked, as by a write that blocks in the page cache) the receive
// path keeps reading at full speed; what the writer cannot take is counted
// as writer_behind, and the packets handed over before are written once it
// moves again.
func TestSlowDiskDoesNotStallReceive(t *testing.T) {
	bothPaths(t, testSlowDisk)
}

func testSlowDisk(t *testing.T, env collectEnv) {
	out := t.TempDir()
	c, stop := env.collector(t, Options{OutputDir: out, Readers: 1, HandoffBuffer: 2 * handoffBatchBytes})
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x")))
	src := env.sources()[0]
	env.send(t, src, c.Addr(), fr)
	waitReceived(t, c, 1)
	s, _ := c.seriesFor(VXLAN(1))
	s.mu.Lock() // the disk hangs
	const n = 10000
	// Bursts of 100 fit a veth's queue (256 frames with XDP attached):
	// nothing is lost before the collector, only the writer is slow.
	for i := 0; i < n; i += 100 {
		batch := make([][]byte, 100)
		for j := range batch {
			batch[j] = fr
		}
		env.send(t, src, c.Addr(), batch...)
		time.Sleep(time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Received < n+1 {
		if time.Now().After(deadline) {
			s.mu.Unlock()
			t.Fatalf("receive stalled behind the writer: received %d of %d", c.Stats().Received, n+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	behind := c.Stats().Drops["writer_behind"]
	s.mu.Unlock()
	waitReceived(t, c, n+1)
	stop()
	st := c.Stats()
	if behind == 0 || st.Written+behind != n+1 || st.SocketDrops != 0 || st.Drops["ring_full"] != 0 {
		t.Fatalf("written %d, writer_behind %d (%d while stuck), socket drops %d, ring_full %d; sent %d",
			st.Written, st.Drops["writer_behind"], behind, st.SocketDrops, st.Drops["ring_full"], n+1)
	}
	path := onlyFile(t, out, "")
	if pkts, _ := readCapture(t, path); uint64(len(pkts)) != st.Written {
		t.Errorf("%d packets in the file, %d written", len(pkts), st.Written)
	}
	t.Logf("%d datagrams: %d written, %d writer_behind", n+1, st.Written, behind)
}

// TestHandoffMergesByTimestamp: batches of two receive goroutines reach the
// writer out of order; the file has the packets in timestamp order, and a
// packet later than the reorder window keeps its session's times monotonic.
func TestHandoffMergesByTimestamp(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, ReorderWindow: 50 * time.Millisecond})
	c.startWriters()
	a, b := c.newSink(), c.newSink()
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	base := time.Now().UnixNano()
	for i := 0; i < 6; i += 2 {
		a.add(loopback, base+int64(i), vxlanFrame(1, fr))
		b.add(loopback, base+int64(i+1), vxlanFrame(1, fr))
	}
	b.flush() // the later goroutine's batch arrives first
	a.flush()
	time.Sleep(200 * time.Millisecond)            // past the window: written
	a.add(loopback, base-1000, vxlanFrame(1, fr)) // late: stamped as the packet before
	a.flush()
	c.stopWriters()
	c.Rotate()
	path := onlyFile(t, out, "")
	pkts, _ := readCapture(t, path)
	if len(pkts) != 7 {
		t.Fatalf("%d packets, want 7", len(pkts))
	}
	for i, p := range pkts {
		want := base + int64(min(i, 5))
		if ts := p.ci.Timestamp.UnixNano(); ts != want {
			t.Errorf("packet %d at %d, want %d", i, ts-base, want-base)
		}
	}
}

// TestHandoffOrdersWithinBatch: one receive goroutine hands over packets
// whose receive times are not in the order it read them (one socket whose
// queue two CPUs filled, the XDP ring's records reserved by two CPUs in
// the other order than they read the clock); the file has them in
// timestamp order, each with its own time. Before, the batch's order
// stood: a flow whose packets were swapped on their way was written
// swapped, the earlier packet stamped with the later one's time.
func TestHandoffOrdersWithinBatch(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, ReorderWindow: 50 * time.Millisecond})
	c.startWriters()
	k := c.newSink()
	base := time.Now().UnixNano()
	for _, p := range []struct {
		ts   int64
		data string
	}{{10_000, "second"}, {0, "first"}, {20_000, "third"}, {15_000, "between"}} {
		k.add(loopback, base+p.ts, vxlanFrame(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte(p.data))))
	}
	k.flush()
	c.stopWriters()
	c.Rotate()
	pkts, _ := readCapture(t, onlyFile(t, out, ""))
	want := []struct {
		ts   int64
		data string
	}{{0, "first"}, {10_000, "second"}, {15_000, "between"}, {20_000, "third"}}
	if len(pkts) != len(want) {
		t.Fatalf("%d packets, want %d", len(pkts), len(want))
	}
	for i, p := range pkts {
		if ts := p.ci.Timestamp.UnixNano() - base; ts != want[i].ts || !strings.Contains(string(p.data), want[i].data) {
			t.Errorf("packet %d at %d, want %q at %d", i, ts, want[i].data, want[i].ts)
		}
	}
}

// TestHandoffFull: with no free batch the sink drops at once (never
// blocks) and counts writer_behind.
func TestHandoffFull(t *testing.T) {
	c := offline(t, Options{OutputDir: t.TempDir(), HandoffBuffer: 2 * handoffBatchBytes})
	k := c.newSink() // writers not started: nothing comes back
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	const n = 3 * handoffBatchPackets
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			k.add(loopback, int64(i), vxlanFrame(1, fr))
		}
		k.flush()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink blocked on a full hand-off")
	}
	if got := c.Stats().Drops["writer_behind"]; got != n-2*handoffBatchPackets {
		t.Errorf("writer_behind %d, want %d", got, n-2*handoffBatchPackets)
	}
}
