// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Live outputs: the packets of every session, as they arrive, to a pcapng
// stream (`--write -`, for `| wireshark -k -i -`) and to a TAP device (for
// an IDS capturing from an interface). The receive path only appends to a
// bounded buffer; one goroutine per output writes it out, so a slow reader
// loses packets (counted) instead of stalling the receivers.

// exportBuffer bounds the bytes waiting for a live output.
const exportBuffer = 8 << 20

// exporter is the buffer and writer goroutine of one live output.
type exporter struct {
	name  string
	mu    sync.Mutex
	buf   []byte // whole records waiting
	spare []byte // the buffer being written, handed back for reuse
	dead  bool   // the output failed: packets are no longer taken
	kick  chan struct{}
	flush func([]byte) error
	drops *metrics.Counter
	sent  *metrics.Counter
	done  chan struct{} // closed when the writer has stopped
}

func newExporter(c *Collector, name string, flush func([]byte) error) *exporter {
	lbl := `{output="` + name + `"}`
	return &exporter{
		name:  name,
		kick:  make(chan struct{}, 1),
		flush: flush,
		drops: c.set.GetOrCreateCounter("xmirror_collector_live_drops_total" + lbl),
		sent:  c.set.GetOrCreateCounter("xmirror_collector_live_packets_total" + lbl),
		done:  make(chan struct{}),
	}
}

// room reports whether need more bytes fit; the caller holds e.mu. A packet
// that does not fit is counted as dropped.
func (e *exporter) room(need int) bool {
	if e.dead {
		return false
	}
	if len(e.buf)+need > exportBuffer {
		e.drops.Inc()
		return false
	}
	return true
}

// added wakes the writer; the caller holds e.mu.
func (e *exporter) added() {
	e.sent.Inc()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run writes the buffer out each time records are added, until stop is
// closed (then it writes what is left) or a write fails.
func (e *exporter) run(stop <-chan struct{}, c *Collector) {
	defer close(e.done)
	for {
		last := false
		select {
		case <-e.kick:
		case <-stop:
			last = true
		}
		e.mu.Lock()
		b := e.buf
		e.buf = e.spare[:0]
		e.mu.Unlock()
		if len(b) > 0 {
			if err := e.flush(b); err != nil {
				e.mu.Lock()
				e.dead, e.buf = true, nil
				e.mu.Unlock()
				c.liveFailed(e, err)
				return
			}
		}
		e.mu.Lock()
		e.spare = b[:0]
		e.mu.Unlock()
		if last {
			return
		}
	}
}

// liveKey is an interface of the live pcapng stream: a mirror source of a
// session.
type liveKey struct {
	key Key
	src netip.Addr
}

// maxLiveInterfaces bounds the interface blocks of the live stream (they
// cannot be taken back, while sessions come and go); packets of further
// sources are dropped, which is logged once. (A new pcapng section would
// number interfaces anew, but tshark 4.0 then names the packets of later
// sections after the first section's interfaces.)
var maxLiveInterfaces = 1 << 16

// liveStream is the pcapng stream of all sessions.
type liveStream struct {
	*exporter
	ifs    map[liveKey]uint32
	log    *slog.Logger
	capped bool // maxLiveInterfaces reached (logged)
}

func newLiveStream(c *Collector, w io.Writer) *liveStream {
	l := &liveStream{ifs: make(map[liveKey]uint32), log: c.log}
	l.exporter = newExporter(c, "write", func(b []byte) error {
		_, err := w.Write(b)
		return err
	})
	l.buf = appendNgSHB(nil, c.section)
	return l
}

// packet adds one packet of session s from mirror source src.
func (l *liveStream) packet(s *series, src netip.Addr, tsNanos int64, fr *Frame, m *meta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := liveKey{s.key, src}
	id, known := l.ifs[key]
	need := ngEPBLen(fr.Inner, m)
	if !known {
		need += 512
		if len(l.ifs) >= maxLiveInterfaces {
			l.drops.Inc()
			if !l.capped {
				l.capped = true
				l.log.Warn("live output: interface limit reached; packets of sessions and mirror sources new to the stream are dropped from it (the files get them); restart --write for a new stream",
					"output", "write", "interfaces", maxLiveInterfaces, "session", s.name, "source", sourceName(src))
			}
			return
		}
	}
	if !l.room(need) {
		return
	}
	if !known {
		id = uint32(len(l.ifs))
		l.ifs[key] = id
		// Whole frames, whatever the session's packet length: sessions of
		// different lengths share the stream, and libpcap (tcpdump -r -)
		// stops at an interface whose snap length differs from the first
		// one's, or at a packet longer than its interface's.
		l.buf = appendNgIDB(l.buf, ifName(src, s.key), ifDesc(src, s.name, s.key), 0)
	}
	l.buf = appendNgEPB(l.buf, id, tsNanos, fr.Inner, fr.OrigLen, m)
	l.added()
}

// tapOut writes each inner frame to a TAP device. Its buffer holds frames
// behind a 4-byte length; the writer writes them one by one (one frame per
// write is what a TAP device takes).
type tapOut struct {
	*exporter
	dev io.Closer
}

// startTap opens the TAP device name and starts its writer.
func (c *Collector) startTap(name, label string) (*tapOut, error) {
	dev, err := openTap(name, c.log)
	if err != nil {
		return nil, err
	}
	t := newTapOut(c, dev, label)
	t.dev = dev
	go t.run(c.exportStop, c)
	c.log.Info("live output to a TAP device", "tap", name)
	return t, nil
}

// tapFor returns the TAP output of a session: the one of all sessions, or
// with {vni} in Options.Tap that of the VNI's configured VXLAN session
// (created on start and reload), or nil. Sessions of other tunnels get no
// device of their own: their ids could name the same one. Called with c.mu
// held.
func (c *Collector) tapFor(key Key) *tapOut {
	if c.tapAll != nil {
		return c.tapAll
	}
	if key.Proto != ProtoVXLAN {
		return nil
	}
	return c.tapVNI[key.ID]
}

// startSessionTaps opens the per-session TAP devices of configured sessions
// that have none yet. Called with c.mu held, or before receiving starts.
func (c *Collector) startSessionTaps() error {
	if !strings.Contains(c.opts.Tap, "{vni}") {
		return nil
	}
	for key := range c.opts.Named {
		vni := key.ID
		if key.Proto != ProtoVXLAN || c.tapVNI[vni] != nil {
			continue
		}
		name := strings.ReplaceAll(c.opts.Tap, "{vni}", strconv.FormatUint(uint64(vni), 10))
		t, err := c.startTap(name, "tap:"+name)
		if err != nil {
			return err
		}
		c.tapVNI[vni] = t
	}
	return nil
}

func newTapOut(c *Collector, dev io.Writer, label string) *tapOut {
	t := &tapOut{}
	t.exporter = newExporter(c, label, func(b []byte) error {
		for len(b) >= 4 {
			n := int(le.Uint32(b))
			if _, err := dev.Write(b[4 : 4+n]); err != nil {
				// The device refused this frame (down, no buffer):
				// the next may pass.
				t.drops.Inc()
			}
			b = b[4+n:]
		}
		return nil
	})
	return t
}

func (t *tapOut) packet(fr *Frame) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.room(4 + len(fr.Inner)) {
		return
	}
	t.buf = le.AppendUint32(t.buf, uint32(len(fr.Inner)))
	t.buf = append(t.buf, fr.Inner...)
	t.added()
}

// startExports opens the live outputs and starts their writers.
func (c *Collector) startExports() error {
	c.exportStop = make(chan struct{})
	c.liveGone = make(chan struct{})
	c.tapVNI = make(map[uint32]*tapOut)
	if c.opts.Tap != "" && !strings.Contains(c.opts.Tap, "{vni}") {
		t, err := c.startTap(c.opts.Tap, "tap")
		if err != nil {
			return err
		}
		c.tapAll = t
	}
	if err := c.startSessionTaps(); err != nil {
		c.stopExports()
		return err
	}
	if c.opts.Live != nil {
		c.live = newLiveStream(c, c.opts.Live)
		c.live.kick <- struct{}{} // the section header now: readers wait for it
		go c.live.run(c.exportStop, c)
	}
	return nil
}

// stopExports writes what the live outputs hold and stops them.
func (c *Collector) stopExports() {
	c.stopOnce.Do(func() {
		close(c.exportStop)
		var running []*exporter
		if c.live != nil {
			running = append(running, c.live.exporter)
		}
		var devs []io.Closer
		for _, t := range c.allTaps() {
			running = append(running, t.exporter)
			devs = append(devs, t.dev)
		}
		for _, e := range running {
			select {
			case <-e.done:
			case <-time.After(5 * time.Second):
			}
		}
		for _, d := range devs {
			_ = d.Close()
		}
	})
}

func (c *Collector) allTaps() []*tapOut {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*tapOut
	if c.tapAll != nil {
		out = append(out, c.tapAll)
	}
	for _, t := range c.tapVNI {
		out = append(out, t)
	}
	return out
}

// liveFailed stops the collector when the failed live output was its only
// output (the reader of `--write -` went away and there are no files).
func (c *Collector) liveFailed(e *exporter, err error) {
	if c.out == nil && len(c.allTaps()) == 0 {
		c.log.Info("live output ended (its reader went away?) and it was the only output: stopping", "output", e.name, "err", err)
		c.goneOnce.Do(func() { close(c.liveGone) })
		return
	}
	c.log.Error("live output failed; it stays off, the other outputs go on", "output", e.name, "err", err)
}
