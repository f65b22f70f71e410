// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"
)

// series is the file series of one session (protocol, id): the open file, its
// buffer of whole blocks, rotation and retention. Writers write through it
// under mu; the ticker flushes it, rotates it and closes it when idle.
type series struct {
	c     *Collector
	name  string // sanitised session name: directory name, {session} in file names
	key   Key
	named bool // a session of the configuration: never evicted for the limit
	snap  int  // the session's packet length, the snaplen of its interfaces (0: whole frames)
	// longer is set by the first frame longer than snap (a sender that
	// cuts less than the configuration says): from the next file on, the
	// interfaces declare whole frames. libpcap refuses a packet longer than
	// its interface's snap length, and interfaces of differing snap lengths
	// in one file, so such a frame cannot join a file declaring snap.
	longer bool
	tap    *tapOut
	namer  fileNamer

	mu sync.Mutex
	// dirfd is the session directory, open only while a file is: each
	// file opens it again (creating it if needed), so a directory removed
	// while the collector runs comes back with the next file, and an idle
	// session holds no descriptor.
	dirfd     int
	f         capWriter // nil between files: the next packet opens one
	partName  string
	finalName string
	written   int64  // bytes of f on disk, always whole blocks
	filePkts  int    // packets in f on disk: a file without any is not kept
	buf       []byte // whole blocks not yet written to f
	// Packets, bytes and cut packets in buf: counted when written, dropped
	// (write_error) when the write fails; pendSrc are the sources with
	// packets in buf, so that a failed write counts their drops.
	pendPkts, pendBytes, pendCut int
	pendSrc                      []*sourceState

	deadline  int64       // unix nanos at which the interval rotation closes f; 0 = none
	opened    int64       // unix nanos at which f was opened
	lastPkt   int64       // unix nanos of the last packet (by the collector's clock)
	evicted   atomic.Bool // out of the collector's map: writers must look the VNI up again
	lastStamp string
	lastSeq   int
	gen       uint64 // file generation, so that sources know if their IDB is in f
	nextIf    uint32 // next pcapng interface id in f
	sources   map[netip.Addr]*sourceState
	// The source of the last packet, its entry and the address its entry
	// is named after ("other" beyond the limits): a mirror session usually
	// has one source, so this spares hashing the address on every packet.
	lastSrc, lastEff netip.Addr
	lastSS           *sourceState
	// meta is the metadata of the packet being written; its comment
	// buffer is reused from packet to packet.
	meta meta

	failed    bool      // a write failed; packets are dropped until retryAt
	failing   bool      // failed since the last packet written (logged once)
	retryAt   time.Time // when the ticker lets the next packet reopen a file
	failDrops uint64    // packets dropped since the failure was last logged
	lastErr   error

	packets, bytes, files, cut, dropped *metrics.Counter
	metricNames                         []string // to unregister when evicted
}

// capWriter is the open capture file: an *os.File, or in tests one that
// fails as a full disk does. It is written at explicit offsets (WriteAt),
// never at the file position, which a cut-back does not move.
type capWriter interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Close() error
}

// maxSources bounds the mirror sources tracked per session (a counter and an
// interface block each); further source addresses share the "other" entry,
// so that spoofed outer addresses cannot grow memory without bound.
const maxSources = 256

// sourceState is a mirror source seen in a session: its packets received
// and dropped (since start, as the interface statistics report them) and
// its interface id in the current pcapng file.
type sourceState struct {
	packets *metrics.Counter
	drops   uint64
	pend    int // packets in the series' buffer
	gen     uint64
	ifID    uint32
	counted bool // takes a place under Options.MaxSourceSeries
}

func newSeries(c *Collector, key Key, name string, named bool) *series {
	lbl := fmt.Sprintf(`{session=%q,%s}`, name, key.labels())
	s := &series{
		c:       c,
		name:    name,
		key:     key,
		named:   named,
		snap:    c.opts.Named[key].PacketLength,
		tap:     c.tapFor(key),
		namer:   c.namer(name, key),
		dirfd:   -1,
		sources: make(map[netip.Addr]*sourceState),
		lastPkt: c.now().UnixNano(),
	}
	s.packets = s.counter("xmirror_collector_packets_total" + lbl)
	s.bytes = s.counter("xmirror_collector_bytes_total" + lbl)
	s.files = s.counter("xmirror_collector_files_total" + lbl)
	s.cut = s.counter("xmirror_collector_truncated_packets_total" + lbl)
	s.dropped = s.counter("xmirror_collector_session_drops_total" + lbl)
	return s
}

func (s *series) counter(name string) *metrics.Counter {
	s.metricNames = append(s.metricNames, name)
	return s.c.set.GetOrCreateCounter(name)
}

// source returns the entry of a mirror source, creating it on first sight;
// beyond maxSources in the session, or Options.MaxSourceSeries across all
// sessions, the source shares the "other" entry, whose address (the zero
// Addr) comes back as the address to name the interface after.
func (s *series) source(src netip.Addr) (*sourceState, netip.Addr) {
	if s.lastSS != nil && src == s.lastSrc {
		return s.lastSS, s.lastEff
	}
	in := src
	ss := s.sources[src]
	if ss == nil && src.IsValid() && (len(s.sources) >= maxSources || !s.c.takeSourceSeries()) {
		src = netip.Addr{}
		ss = s.sources[src]
	}
	if ss == nil {
		ss = &sourceState{counted: src.IsValid(), packets: s.counter(fmt.Sprintf(
			`xmirror_collector_source_packets_total{session=%q,source=%q}`, s.name, sourceName(src)))}
		s.sources[src] = ss
	}
	s.lastSrc, s.lastEff, s.lastSS = in, src, ss
	return ss, src
}

// writeLocked appends one packet to the series (and hands it to the live
// outputs), opening or rotating its file as needed, with s.mu held: a writer
// holds it across the packets of one session in a batch. It reports the
// reason when the packet could not be kept.
func (s *series) writeLocked(src netip.Addr, tsNanos int64, fr *Frame) Reason {
	s.lastPkt = tsNanos
	ss, src := s.source(src)
	ss.packets.Inc()
	var m *meta
	if len(fr.Tunnel) > 0 {
		s.meta = frameMeta(s.meta.comment, fr)
		m = &s.meta
	}
	if s.c.live != nil {
		s.c.live.packet(s, src, stampOf(tsNanos, m), fr, m)
	}
	if s.tap != nil {
		s.tap.packet(fr)
	}
	if s.c.out == nil { // live outputs only
		s.packets.Inc()
		s.bytes.Add(len(fr.Inner))
		s.c.written.Add(1)
		s.c.writtenBytes.Add(uint64(len(fr.Inner)))
		return ReasonNone
	}
	if s.failed {
		s.failDrops++
		return s.dropLocked(ss, ReasonWriteError)
	}
	if s.c.diskLow.Load() {
		return s.dropLocked(ss, ReasonDiskLow)
	}
	if s.f != nil && s.deadline != 0 && tsNanos >= s.deadline {
		s.closeLocked("interval")
	}
	if !s.longer && s.snap > 0 && len(fr.Inner) > s.snap && s.c.opts.Format == FormatPcapng {
		s.longer = true
		s.c.log.Warn("frame longer than the session's packet_length: its files declare whole frames from now on (is the sender's packet length the configuration's?)",
			"session", s.name, "packet_length", s.snap, "frame", len(fr.Inner))
		s.closeLocked("packet_length")
	}
	if s.f == nil {
		if err := s.openLocked(time.Unix(0, tsNanos)); err != nil {
			s.failLocked(err)
			s.failDrops++
			return s.dropLocked(ss, ReasonWriteError)
		}
	}
	need := pcapRecordLen(fr.Inner)
	if s.c.opts.Format == FormatPcapng {
		need = ngEPBLen(fr.Inner, m)
		if ss.gen != s.gen {
			need += 512 // room for the interface block
		}
	}
	if len(s.buf)+need > s.c.opts.WriteBuffer {
		if err := s.flushLocked(); err != nil {
			s.failLocked(err)
			s.failDrops++
			return s.dropLocked(ss, ReasonWriteError)
		}
	}
	s.appendLocked(ss, src, stampOf(tsNanos, m), fr, m)
	if s.c.opts.RotateSize > 0 && s.written+int64(len(s.buf)+s.statsLen()) >= s.c.opts.RotateSize {
		s.closeLocked("size")
	}
	return ReasonNone
}

// stampOf is the time a packet is written with: the sender's absolute
// time when its tunnel header has one (ERSPAN III, IEEE 1588), else the
// receive time.
func stampOf(tsNanos int64, m *meta) int64 {
	if m != nil && m.time != 0 {
		return m.time
	}
	return tsNanos
}

// appendLocked appends the packet's block (and its interface block, first
// time in this file) to the buffer; m is its metadata (nil: none).
func (s *series) appendLocked(ss *sourceState, src netip.Addr, tsNanos int64, fr *Frame, m *meta) {
	if s.c.opts.Format == FormatPcap {
		s.buf = appendPcapRecord(s.buf, tsNanos, fr.Inner, fr.OrigLen)
	} else {
		if ss.gen != s.gen {
			ss.gen, ss.ifID = s.gen, s.nextIf
			s.nextIf++
			s.buf = appendNgIDB(s.buf, ifName(src, s.key), ifDesc(src, s.name, s.key), s.fileSnap())
		}
		s.buf = appendNgEPB(s.buf, ss.ifID, tsNanos, fr.Inner, fr.OrigLen, m)
	}
	if ss.pend == 0 {
		s.pendSrc = append(s.pendSrc, ss)
	}
	ss.pend++
	s.pendPkts++
	s.pendBytes += len(fr.Inner)
	if fr.OrigLen > len(fr.Inner) {
		s.pendCut++
	}
}

// fileSnap is the snap length the interfaces of the session's files
// declare (0: whole frames).
func (s *series) fileSnap() int {
	if s.longer {
		return 0
	}
	return s.snap
}

// dropLocked counts a packet of source ss that the series could not keep.
func (s *series) dropLocked(ss *sourceState, r Reason) Reason {
	ss.drops++
	s.dropped.Inc()
	return r
}

func ifName(src netip.Addr, key Key) string { return sourceName(src) + "/" + key.ifTag() }

func ifDesc(src netip.Addr, session string, key Key) string {
	return fmt.Sprintf("mirror source %s, session %s (%s)", sourceName(src), session, key.describe())
}

// sourceName names a mirror source; the zero address stands for the
// sources beyond the limits.
func sourceName(a netip.Addr) string {
	if !a.IsValid() {
		return "other"
	}
	return a.String()
}

// openLocked creates the next file of the series, named after t, under its
// hidden temporary name, with the file header in the buffer.
func (s *series) openLocked(t time.Time) error {
	err := s.openFileLocked(t)
	if err != nil {
		s.closeDir() // opened again, or created again, by the retry
	}
	if outOfDescriptors(err) {
		err = fmt.Errorf("%w (the open-files limit is reached: each session with an open file takes two; raise LimitNOFILE= or ulimit -n, or lower collector.max_sessions)", err)
	}
	return err
}

func (s *series) openFileLocked(t time.Time) error {
	if s.dirfd < 0 {
		fd, err := s.c.out.sessionDir(s.name)
		if err != nil {
			return err
		}
		s.dirfd = fd
	}
	// Several files can start within one second (size rotation at high
	// rate): number them so that no name is reused. Never go back to a
	// number used before in this second, even when retention has deleted
	// that file since: the numbers order the files.
	stamp := t.UTC().Format(fileTimeLayout)
	first := 0
	if stamp == s.lastStamp {
		first = s.lastSeq + 1
	}
	var name string
	for i := first; ; i++ {
		s.lastStamp, s.lastSeq = stamp, i
		name = s.namer.name(t, i)
		taken, err := s.taken(name)
		if err != nil {
			return err
		}
		if !taken {
			break
		}
	}
	part := "." + name + ".part"
	if s.buf == nil {
		// Grows up to WriteBuffer with the session's rate; released when
		// the file closes, so idle sessions hold no buffer.
		s.buf = make([]byte, 0, 64<<10)
	}
	var header []byte
	if s.c.opts.Format == FormatPcap {
		header = appendPcapHeader(s.buf[:0])
	} else {
		header = appendNgSHB(s.buf[:0], s.c.section)
	}
	f, err := s.c.out.createFile(s.dirfd, part, header)
	s.buf = s.buf[:0]
	if err != nil {
		return err
	}
	s.f, s.partName, s.finalName = f, part, name
	s.written, s.filePkts = int64(len(header)), 0
	s.gen++
	s.nextIf = 0
	s.opened = t.UnixNano()
	s.deadline = 0
	if iv := s.c.opts.RotateInterval; iv > 0 {
		s.deadline = t.Truncate(iv).Add(iv).UnixNano()
	}
	s.c.log.Debug("capture file opened", "session", s.name, "file", part)
	return nil
}

// taken reports whether a file of the series is called name, compressed
// or not, or is being written under it. Any answer but "there is" or
// "there is none" is an error: a name too long for the filesystem, a
// directory that cannot be searched. Before, such an error counted as
// "taken", and the search for a free name never ended, with the session
// locked.
func (s *series) taken(name string) (bool, error) {
	for _, n := range []string{name, name + gzExt, "." + name + ".part"} {
		var st unix.Stat_t
		err := unix.Fstatat(s.dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("capture file name %s: %w", n, err)
		}
	}
	return false, nil
}

// closeDir closes the session directory (the series has no open file).
func (s *series) closeDir() {
	if s.dirfd >= 0 {
		_ = unix.Close(s.dirfd)
		s.dirfd = -1
	}
}

// flushLocked writes the buffered blocks behind the last whole block. On a
// short write it cuts the file back to that block so that it stays
// readable, and reports the error; the buffered packets are lost (counted
// as dropped).
func (s *series) flushLocked() error {
	if s.f == nil || len(s.buf) == 0 {
		return nil
	}
	// At s.written, not the file position: after a cut-back the position is
	// still past it, and a later write (the closing statistics) would land
	// behind a hole of zeros that no reader gets past.
	n, err := s.f.WriteAt(s.buf, s.written)
	s.buf = s.buf[:0]
	pkts := s.pendPkts
	for _, ss := range s.pendSrc {
		if err != nil {
			ss.drops += uint64(ss.pend)
		}
		ss.pend = 0
	}
	s.pendSrc = s.pendSrc[:0]
	if err != nil {
		// Whatever n says: os.File.WriteAt reports 0 when a pwrite that
		// wrote part of the buffer is followed by ENOSPC.
		if terr := s.f.Truncate(s.written); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut back to the last whole block: %w", terr))
		}
		s.c.dropN(ReasonWriteError, uint64(pkts))
		s.dropped.Add(pkts)
		s.pendPkts, s.pendBytes, s.pendCut = 0, 0, 0
		return fmt.Errorf("write capture file: %w", err)
	}
	s.written += int64(n)
	s.filePkts += pkts
	// Packets count as written once they are in the file.
	s.packets.Add(pkts)
	s.bytes.Add(s.pendBytes)
	s.c.written.Add(uint64(pkts))
	s.c.writtenBytes.Add(uint64(s.pendBytes))
	s.cut.Add(s.pendCut)
	s.pendPkts, s.pendBytes, s.pendCut = 0, 0, 0
	if s.failing && pkts > 0 {
		s.failing = false
		s.c.log.Info("capture file writing resumed", "session", s.name, "file", s.finalName)
	}
	return nil
}

// failLocked closes what is open (keeping the whole blocks already on disk)
// and stops writing until the ticker lets a packet retry. The first failure
// is logged; later ones until a packet is written again are summed up by
// the ticker once per retry interval.
func (s *series) failLocked(err error) {
	if s.f != nil {
		s.closeLocked("error")
	}
	s.failed = true
	s.lastErr = err
	s.retryAt = s.c.now().Add(s.c.opts.RetryInterval)
	if !s.failing {
		s.failing = true
		s.c.log.Error("capture file write failed; dropping packets until it can be reopened",
			"session", s.name, "err", err, "retry_every", s.c.opts.RetryInterval)
	}
}

// closeLocked writes the interface statistics, flushes and closes the open
// file and renames it to its final name; a file that holds no packet is
// removed instead. The closed file is then handed to retention,
// compression and the post-rotate command.
func (s *series) closeLocked(why string) {
	if s.f == nil {
		return
	}
	if s.c.opts.Format == FormatPcapng && s.pendPkts+s.filePkts > 0 {
		s.appendStatsLocked()
	}
	flushErr := s.flushLocked()
	f, part, final := s.f, s.partName, s.finalName
	s.f = nil
	s.buf = nil
	if err := f.Close(); err != nil && flushErr == nil {
		flushErr = err
	}
	defer s.closeDir()
	if s.filePkts == 0 {
		// A header alone is not a capture: keeping it would let retention
		// count it (a full disk retrying every few seconds would push the
		// real captures out).
		_ = unix.Unlinkat(s.dirfd, part, 0)
		s.c.log.Debug("capture file without packets removed", "session", s.name, "file", part, "err", flushErr)
		return
	}
	if err := unix.Renameat(s.dirfd, part, s.dirfd, final); err != nil {
		s.c.log.Error("rename closed capture file", "session", s.name, "file", part, "err", err)
		return
	}
	s.files.Inc()
	s.c.log.Info("capture file closed", "session", s.name, "file", final, "bytes", s.written,
		"packets", s.filePkts, "why", why)
	s.c.fileClosed(s, final)
}

// statsLen is the size of the interface statistics blocks the open file
// gets when it closes (one per interface), counted towards rotate.size so
// that a file ends at most one packet beyond it, whatever the number of
// mirror sources in it.
func (s *series) statsLen() int {
	if s.c.opts.Format != FormatPcapng {
		return 0
	}
	return int(s.nextIf) * ngISBLen
}

// appendStatsLocked appends an interface statistics block for each
// interface of the open file, as dumpcap does when it closes a file.
// Writing them can fail like any block; the file stays valid without them.
func (s *series) appendStatsLocked() {
	now := s.c.now().UnixNano()
	for _, ss := range s.sources {
		if ss.gen == s.gen {
			s.buf = appendNgISB(s.buf, ss.ifID, s.opened, now, ss.packets.Get(), ss.drops)
		}
	}
}

// tick runs once per flush interval: flush, rotate an idle file whose
// interval ended, close the file of a session idle for SessionIdle, let a
// failed series retry, and log drops once per interval. It reports whether
// the session has been idle that long (so that it may be evicted).
func (s *series) tick(now time.Time) (idle bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.deadline != 0 && now.UnixNano() >= s.deadline {
		s.closeLocked("interval")
	}
	idle = s.c.opts.SessionIdle > 0 && now.UnixNano()-s.lastPkt >= int64(s.c.opts.SessionIdle)
	if idle && s.f != nil {
		s.closeLocked("idle")
	}
	if err := s.flushLocked(); err != nil {
		s.failLocked(err)
	}
	if s.failed && !now.Before(s.retryAt) {
		if s.failDrops > 0 {
			s.c.log.Warn("capture still failing; packets dropped", "session", s.name,
				"dropped", s.failDrops, "err", s.lastErr)
		}
		s.failDrops = 0
		s.failed = false // the next packet tries to open a file
	}
	return idle && s.f == nil
}

// rotate closes the open file; the next packet opens a new one.
func (s *series) rotate(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(why)
}

// evictLocked closes the series for good: its file, its directory and its
// metrics. Readers holding it in their caches see evicted and look the
// VNI up again.
func (s *series) evictLocked(why string) {
	s.closeLocked(why)
	s.evicted.Store(true)
	s.c.evictions.Add(1)
	for _, ss := range s.sources {
		if ss.counted {
			s.c.sourceSeries.Add(-1)
		}
	}
	for _, n := range s.metricNames {
		s.c.set.UnregisterMetric(n)
	}
}

// takeSourceSeries takes a place for one more source metric series, or
// reports that MaxSourceSeries are taken.
func (c *Collector) takeSourceSeries() bool {
	if c.sourceSeries.Add(1) > int64(c.opts.MaxSourceSeries) {
		c.sourceSeries.Add(-1)
		return false
	}
	return true
}
