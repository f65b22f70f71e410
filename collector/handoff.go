// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"container/heap"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The hand-off from the receive path to the writers. A receive goroutine
// (a socket reader, the XDP ring reader) copies each decapsulated frame into
// a batch of the writer that owns its session and passes whole batches over
// a channel; the writers decide nothing about receiving and the receivers
// never touch a file, so page-cache throttling or a slow disk makes the
// writers fall behind, not the receive path. When a writer has no free
// batch left, packets for it are dropped at once as writer_behind (counted),
// instead of stalling the receiver and losing more in the kernel or the
// ring, where the loss would be blind to sessions.

// handoffBatchBytes is the frame bytes one batch holds: large enough that a
// receive burst of jumbo frames fills few batches, small enough that a
// writer returns batches often.
const handoffBatchBytes = 128 << 10

// handoffBatchPackets bounds the packets in one batch (a batch of 96-byte
// cuts fills its packet slots before its bytes).
const handoffBatchPackets = 1024

// handoffDelay is how long a receive goroutine may keep a batch that is not
// full: batches go over when full or this old, not after every receive
// burst, so that a trickle of small bursts does not take a batch each.
const handoffDelay = 5 * time.Millisecond

// handed is one frame in a batch: its place in the batch's data and what the
// receive path learnt about it.
type handed struct {
	src     netip.Addr
	ts      int64 // wall-clock ns at receive
	key     Key
	tunnel  uint16 // the tunnel header is data[off-tunnel:off]
	origLen int32
	off, n  int32 // the inner frame is data[off:off+n]
}

type hbatch struct {
	pkts []handed
	data []byte
	// done, on a batch that is not from the pool, asks the writer to
	// write everything pending and close it (Collector.Rotate).
	done chan struct{}
	// started is when the sink put the first packet in.
	started time.Time
}

// writer owns the sessions whose id maps to it (writerOf):
// one goroutine writes all of a session's packets, in hand-off order.
type writer struct {
	in   chan *hbatch // batches to write, in the order they were filled
	free chan *hbatch // empty batches; its capacity is all the batches
}

func newWriter(batches int) *writer {
	w := &writer{in: make(chan *hbatch, batches+1), free: make(chan *hbatch, batches)}
	for i := 0; i < batches; i++ {
		w.free <- &hbatch{pkts: make([]handed, 0, handoffBatchPackets), data: make([]byte, 0, handoffBatchBytes)}
	}
	return w
}

// idle reports whether the writer holds no batch: every one is back in the
// free list (tests use it to wait for the writes of what was received).
func (w *writer) idle() bool { return len(w.free) == cap(w.free) }

// run writes batches until in is closed, merging them into timestamp
// order: the receive goroutines (socket readers, the ring reader and the
// socket beside it) each hand batches over in their own order, so a packet
// waits until the reorder window has passed since its receive time, and
// the writer then takes the earliest of all pending batches first. When
// free batches run short the earliest packets go out before their window
// has passed: the window never costs packets. A packet later than what was
// written (a stalled receiver, a clock step) is written when it comes,
// stamped no earlier than the packet before it in its session: a session's
// timestamps never go back.
func (w *writer) run(c *Collector, wg *sync.WaitGroup) {
	defer wg.Done()
	r := rx{c: c, cache: make(seriesCache), last: make(map[uint64]int64)}
	window := c.opts.ReorderWindow.Nanoseconds()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pend batchHeap
	for {
		select {
		case b, ok := <-w.in:
			switch {
			case !ok:
				w.emit(&pend, &r, math.MaxInt64)
				return
			case b.done != nil:
				w.emit(&pend, &r, math.MaxInt64)
				close(b.done)
				continue
			case len(b.pkts) == 0:
				w.recycle(b)
				continue
			}
			orderBatch(b.pkts, window)
			heap.Push(&pend, &cursor{b: b})
		case <-timer.C:
		}
		now := time.Now().UnixNano()
		w.emit(&pend, &r, now-window)
		if len(pend) > 0 {
			timer.Reset(time.Duration(pend[0].ts() + window - now))
		}
	}
}

// orderBatch puts a batch's packets in receive-time order. One receive
// goroutine reads them in the order its socket queue or the ring holds
// them, which two CPUs may have filled in another order than they stamped
// them; the merge of batches only compares each batch's next packet. A
// packet moves back past packets stamped at most window later: one that
// is further behind came before a step of the clock, which the series
// handles, and stays where it is. Batches are nearly always in order
// already, and this is one comparison per packet then.
func orderBatch(pkts []handed, window int64) {
	for i := 1; i < len(pkts); i++ {
		for j := i; j > 0 && pkts[j-1].ts > pkts[j].ts && pkts[j-1].ts-pkts[j].ts <= window; j-- {
			pkts[j-1], pkts[j] = pkts[j], pkts[j-1]
		}
	}
}

// emit writes, earliest first, every pending packet stamped at or before
// until, and more while fewer than a quarter of the batches are free; it
// recycles the batches it empties.
func (w *writer) emit(pend *batchHeap, r *rx, until int64) {
	var fr Frame
	// A packet stamped more than clockStepBack after until came before
	// the wall clock stepped back: waiting for the clock to catch up would
	// hold it (and the batch) for as long as the step.
	ahead := until + int64(clockStepBack)
	if until == math.MaxInt64 {
		ahead = until
	}
	for len(*pend) > 0 && ((*pend)[0].ts() <= until || (*pend)[0].ts() > ahead || len(w.free) < cap(w.free)/4) {
		cur := (*pend)[0]
		p := &cur.b.pkts[cur.i]
		fr = Frame{Key: p.key, Inner: cur.b.data[p.off : p.off+p.n], OrigLen: int(p.origLen),
			Tunnel: cur.b.data[p.off-int32(p.tunnel) : p.off]}
		r.write(p.src, p.ts, &fr)
		if cur.i++; cur.i == len(cur.b.pkts) {
			heap.Pop(pend)
			w.recycle(cur.b)
		} else {
			heap.Fix(pend, 0)
		}
	}
	r.release()
}

// sync returns once the writer has written everything handed to it before.
func (w *writer) sync() {
	done := make(chan struct{})
	w.in <- &hbatch{done: done}
	<-done
}

func (w *writer) recycle(b *hbatch) {
	b.pkts, b.data = b.pkts[:0], b.data[:0]
	w.free <- b
}

// cursor is the next packet to write of a pending batch.
type cursor struct {
	b *hbatch
	i int
}

func (c *cursor) ts() int64 { return c.b.pkts[c.i].ts }

// batchHeap orders pending batches by the time of their next packet.
type batchHeap []*cursor

func (h batchHeap) Len() int           { return len(h) }
func (h batchHeap) Less(i, j int) bool { return h[i].ts() < h[j].ts() }
func (h batchHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *batchHeap) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *batchHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sink is one receive goroutine's side of the hand-off: the batch it fills
// for each writer. It is not safe for concurrent use; each receive
// goroutine has its own.
type sink struct {
	c       *Collector
	writers []*writer
	cur     []*hbatch
	// held says the sink holds packets back; acked is the last flush
	// request (Collector.flushReq) it has answered. Both are read by
	// syncWriters on another goroutine.
	held  atomic.Bool
	acked atomic.Uint64
}

func (c *Collector) newSink() *sink {
	k := &sink{c: c, writers: c.writers, cur: make([]*hbatch, len(c.writers))}
	c.sinksMu.Lock()
	c.sinks = append(c.sinks, k)
	c.sinksMu.Unlock()
	return k
}

// writerOf is the index of the writer that owns a session.
func writerOf(key Key, writers int) int {
	return int((key.ID + uint32(key.Proto)) % uint32(writers))
}

// add copies one frame (its tunnel header, then the frame as written) into
// the batch of its session's writer, sending the batch on when it is full.
// It never blocks.
func (k *sink) add(src netip.Addr, ts int64, fr Frame) {
	i := writerOf(fr.Key, len(k.writers))
	size := len(fr.Tunnel) + fr.capLen()
	b := k.cur[i]
	if b != nil && (len(b.pkts) == cap(b.pkts) || len(b.data)+size > cap(b.data)) {
		k.send(i)
		b = nil
	}
	if b == nil {
		select {
		case b = <-k.writers[i].free:
			k.cur[i] = b
			b.started = time.Now()
		default:
			k.c.drop(ReasonWriterBehind)
			return
		}
	}
	if size > cap(b.data) {
		// Larger than a batch: only a 64 KiB loopback datagram can be.
		k.c.drop(ReasonWriterBehind)
		return
	}
	k.held.Store(true)
	var off int
	b.data, off = fr.appendTo(b.data)
	b.pkts = append(b.pkts, handed{src: src, ts: ts, key: fr.Key, tunnel: uint16(len(fr.Tunnel)), origLen: int32(fr.OrigLen),
		off: int32(off), n: int32(len(b.data) - off)})
}

// send passes writer i's batch on. The channel holds every batch there is
// and one more for a sync, so this never blocks.
func (k *sink) send(i int) {
	if b := k.cur[i]; b != nil {
		k.cur[i] = nil
		k.writers[i].in <- b
	}
}

// flush sends every batch that holds packets (when the receive goroutine
// ends).
func (k *sink) flush() {
	for i, b := range k.cur {
		if b != nil && len(b.pkts) > 0 {
			k.send(i)
		}
	}
	k.held.Store(false)
}

// flushOld sends the batches that have held packets for handoffDelay, and
// all of them when a flush was asked for: the receive goroutines call it
// after every burst and when they wake without one (pending says when
// they must wake).
func (k *sink) flushOld(now time.Time) {
	if req := k.c.flushReq.Load(); req != k.acked.Load() {
		k.flush()
		k.acked.Store(req)
		return
	}
	held := false
	for i, b := range k.cur {
		if b != nil && len(b.pkts) > 0 {
			if now.Sub(b.started) >= handoffDelay {
				k.send(i)
			} else {
				held = true
			}
		}
	}
	k.held.Store(held)
}

// pending reports whether the sink holds packets not yet handed over.
func (k *sink) pending() bool {
	for _, b := range k.cur {
		if b != nil && len(b.pkts) > 0 {
			return true
		}
	}
	return false
}

// startWriters starts the writer goroutines; stopWriters (after every
// receive goroutine has flushed its sink) lets them finish and waits.
func (c *Collector) startWriters() {
	c.writersMu.Lock()
	defer c.writersMu.Unlock()
	for _, w := range c.writers {
		c.writing.Add(1)
		go w.run(c, &c.writing)
	}
	c.writersOn = true
}

func (c *Collector) stopWriters() {
	c.writersMu.Lock()
	defer c.writersMu.Unlock()
	for _, w := range c.writers {
		close(w.in)
	}
	c.writing.Wait()
	c.writersOn = false
}

// syncWriters returns once the writers have written every packet received
// before the call (at once when they do not run): the receive goroutines
// that hold packets back hand them over at their next wake (at most
// handoffDelay away), then every writer writes what it was handed.
func (c *Collector) syncWriters() {
	c.writersMu.Lock()
	defer c.writersMu.Unlock()
	if !c.writersOn {
		return
	}
	req := c.flushReq.Add(1)
	c.sinksMu.Lock()
	sinks := slices.Clone(c.sinks)
	c.sinksMu.Unlock()
	deadline := time.Now().Add(time.Second)
	for _, k := range sinks {
		for k.held.Load() && k.acked.Load() < req && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for _, w := range c.writers {
		w.sync()
	}
}

// handoffIdle reports whether every writer has written all it was handed.
func (c *Collector) handoffIdle() bool {
	for _, w := range c.writers {
		if !w.idle() {
			return false
		}
	}
	return true
}
