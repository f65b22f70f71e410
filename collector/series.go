package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"
)

// fileTimeLayout is the UTC start time in file names.
const fileTimeLayout = "20060102T150405Z"

// series is the file series of one session (VNI): the open file, its
// buffer of whole blocks, rotation and retention. Readers write through it
// under mu; the ticker flushes it and rotates it when idle.
type series struct {
	c    *Collector
	name string // sanitised session name: directory and file name prefix
	vni  uint32
	dir  string

	mu        sync.Mutex
	f         *os.File // nil between files: the next packet opens one
	partPath  string
	finalPath string
	written   int64  // bytes of f on disk, always whole blocks
	buf       []byte // whole blocks not yet written to f
	// Packets, bytes and cut packets in buf: counted when written, dropped
	// (write_error) when the write fails.
	pendPkts, pendBytes, pendCut int

	deadline int64  // unix nanos at which the interval rotation closes f; 0 = none
	lastBase string // name stem of the last file opened, and its number
	lastSeq  int
	gen      uint64 // file generation, so that sources know if their IDB is in f
	nextIf   uint32 // next pcapng interface id in f
	sources  map[netip.Addr]*sourceState
	// The source of the last packet, its entry and the address its entry
	// is named after ("other" beyond maxSources): a mirror session usually
	// has one source, so this spares hashing the address on every packet.
	lastSrc, lastEff netip.Addr
	lastSS           *sourceState

	failed    bool      // a write failed; packets are dropped until retryAt
	retryAt   time.Time // when the ticker lets the next packet reopen a file
	failDrops uint64    // packets dropped since the failure was last logged
	lastErr   error

	packets, bytes, files, cut *metrics.Counter
}

// maxSources bounds the mirror sources tracked per session (a counter and an
// interface block each); further source addresses share the "other" entry,
// so that spoofed outer addresses cannot grow memory without bound.
const maxSources = 256

// sourceState is a mirror source seen in a session: its counter of received
// packets and its interface id in the current pcapng file.
type sourceState struct {
	packets *metrics.Counter
	gen     uint64
	ifID    uint32
}

func newSeries(c *Collector, vni uint32, name string) *series {
	lbl := fmt.Sprintf(`{session=%q,vni="%d"}`, name, vni)
	return &series{
		c:       c,
		name:    name,
		vni:     vni,
		dir:     filepath.Join(c.opts.OutputDir, name),
		sources: make(map[netip.Addr]*sourceState),
		packets: c.set.GetOrCreateCounter("xmirror_collector_packets_total" + lbl),
		bytes:   c.set.GetOrCreateCounter("xmirror_collector_bytes_total" + lbl),
		files:   c.set.GetOrCreateCounter("xmirror_collector_files_total" + lbl),
		cut:     c.set.GetOrCreateCounter("xmirror_collector_truncated_packets_total" + lbl),
	}
}

// write appends one packet to the series, opening or rotating its file as
// needed. It reports ReasonWriteError when the packet could not be kept.
func (s *series) write(src netip.Addr, tsNanos int64, fr Frame) Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(src, tsNanos, fr)
}

// source returns the entry of a mirror source, creating it on first sight;
// beyond maxSources the source shares the "other" entry, whose address (the
// zero Addr) comes back as the address to name the interface after.
func (s *series) source(src netip.Addr) (*sourceState, netip.Addr) {
	if s.lastSS != nil && src == s.lastSrc {
		return s.lastSS, s.lastEff
	}
	in := src
	ss := s.sources[src]
	if ss == nil && len(s.sources) >= maxSources {
		src = netip.Addr{}
		ss = s.sources[src]
	}
	if ss == nil {
		ss = &sourceState{packets: s.c.set.GetOrCreateCounter(fmt.Sprintf(
			`xmirror_collector_source_packets_total{session=%q,source=%q}`, s.name, sourceName(src)))}
		s.sources[src] = ss
	}
	s.lastSrc, s.lastEff, s.lastSS = in, src, ss
	return ss, src
}

// writeLocked is write with s.mu held: a reader holds it across the packets
// of one session in a receive batch.
func (s *series) writeLocked(src netip.Addr, tsNanos int64, fr Frame) Reason {
	if s.failed {
		s.failDrops++
		return ReasonWriteError
	}
	if s.f != nil && s.deadline != 0 && tsNanos >= s.deadline {
		s.closeLocked("interval")
	}
	if s.f == nil {
		if err := s.openLocked(time.Unix(0, tsNanos)); err != nil {
			s.failLocked(err)
			s.failDrops++
			return ReasonWriteError
		}
	}
	ss, src := s.source(src)
	var need int
	if s.c.opts.Format == FormatPcap {
		need = pcapRecordLen(fr.Inner)
	} else {
		need = ngEPBLen(fr.Inner)
		if ss.gen != s.gen {
			need += 512 // room for the interface block
		}
	}
	if len(s.buf)+need > s.c.opts.WriteBuffer {
		if err := s.flushLocked(); err != nil {
			s.failLocked(err)
			s.failDrops++
			return ReasonWriteError
		}
	}
	if s.c.opts.Format == FormatPcap {
		s.buf = appendPcapRecord(s.buf, tsNanos, fr.Inner, fr.OrigLen)
	} else {
		if ss.gen != s.gen {
			ss.gen, ss.ifID = s.gen, s.nextIf
			s.nextIf++
			s.buf = appendNgIDB(s.buf, fmt.Sprintf("%s/vni%d", sourceName(src), s.vni),
				fmt.Sprintf("mirror source %s, session %s (VNI %d)", sourceName(src), s.name, s.vni))
		}
		s.buf = appendNgEPB(s.buf, ss.ifID, tsNanos, fr.Inner, fr.OrigLen)
	}
	ss.packets.Inc()
	s.pendPkts++
	s.pendBytes += len(fr.Inner)
	if fr.OrigLen > len(fr.Inner) {
		s.pendCut++
	}
	if s.c.opts.RotateSize > 0 && s.written+int64(len(s.buf)) >= s.c.opts.RotateSize {
		s.closeLocked("size")
	}
	return ReasonNone
}

// sourceName names a mirror source; the zero address stands for the
// sources beyond maxSources.
func sourceName(a netip.Addr) string {
	if !a.IsValid() {
		return "other"
	}
	return a.String()
}

// openLocked creates the next file of the series, named after t, under its
// hidden temporary name, with the file header in the buffer.
func (s *series) openLocked(t time.Time) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("create session directory: %w", err)
	}
	t = t.UTC()
	ext := s.c.opts.Format.Ext()
	base := s.name + "-" + t.Format(fileTimeLayout)
	// Several files can start within one second (size rotation at high rate):
	// number them so that no name is reused.
	// Never go back to a number used before in this second, even when
	// retention has deleted that file since: the numbers order the files.
	first := 0
	if base == s.lastBase {
		first = s.lastSeq + 1
	}
	var name string
	for i := first; ; i++ {
		s.lastBase, s.lastSeq = base, i
		name = base + ext
		if i > 0 {
			name = base + "-" + strconv.Itoa(i) + ext
		}
		if _, err := os.Lstat(filepath.Join(s.dir, name)); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Lstat(filepath.Join(s.dir, "."+name+".part")); errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
	}
	part := filepath.Join(s.dir, "."+name+".part")
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
	f, err := createWithHeader(s.dir, part, header)
	s.buf = s.buf[:0]
	if err != nil {
		return err
	}
	s.f, s.partPath, s.finalPath = f, part, filepath.Join(s.dir, name)
	s.written = int64(len(header))
	s.gen++
	s.nextIf = 0
	s.deadline = 0
	if iv := s.c.opts.RotateInterval; iv > 0 {
		s.deadline = t.Truncate(iv).Add(iv).UnixNano()
	}
	s.c.log.Debug("capture file opened", "session", s.name, "file", part)
	return nil
}

// createWithHeader creates path holding header. The file appears under its
// name only once the header is in it (O_TMPFILE, then linkat), so that even a
// kill -9 never leaves an empty, unreadable capture file; a full disk shows
// up here, before packets are buffered. Filesystems without O_TMPFILE get a
// plain create.
func createWithHeader(dir, path string, header []byte) (*os.File, error) {
	if fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644); err == nil {
		f := os.NewFile(uintptr(fd), path)
		if _, err := f.Write(header); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write capture file header: %w", err)
		}
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return f, nil
		}
		_ = f.Close()
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOSPC) {
			return nil, fmt.Errorf("create capture file: %w", err)
		}
		// No /proc, or linkat refused: fall back to a plain create.
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create capture file: %w", err)
	}
	if _, err := f.Write(header); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("write capture file header: %w", err)
	}
	return f, nil
}

// flushLocked writes the buffered blocks. On a short write it cuts the file
// back to its last whole block so that it stays readable, and reports the
// error; the buffered packets are lost (counted by the caller's drop).
func (s *series) flushLocked() error {
	if s.f == nil || len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	if err != nil {
		if n > 0 {
			_ = s.f.Truncate(s.written)
		}
		s.c.dropN(ReasonWriteError, uint64(s.pendPkts))
		s.buf = s.buf[:0]
		s.pendPkts, s.pendBytes, s.pendCut = 0, 0, 0
		return fmt.Errorf("write capture file: %w", err)
	}
	s.written += int64(n)
	s.buf = s.buf[:0]
	// Packets count as written once they are in the file.
	s.packets.Add(s.pendPkts)
	s.bytes.Add(s.pendBytes)
	s.cut.Add(s.pendCut)
	s.pendPkts, s.pendBytes, s.pendCut = 0, 0, 0
	return nil
}

// failLocked closes what is open (keeping the whole blocks already on disk)
// and stops writing until the ticker lets a packet retry.
func (s *series) failLocked(err error) {
	if s.f != nil {
		s.closeLocked("error")
	}
	s.failed = true
	s.lastErr = err
	s.retryAt = s.c.now().Add(s.c.opts.RetryInterval)
	s.c.log.Error("capture file write failed; dropping packets until it can be reopened",
		"session", s.name, "err", err, "retry_in", s.c.opts.RetryInterval)
}

// closeLocked flushes and closes the open file and renames it to its final
// name, then applies retention and starts the post-rotate command.
func (s *series) closeLocked(why string) {
	if s.f == nil {
		return
	}
	flushErr := s.flushLocked()
	f, part, final := s.f, s.partPath, s.finalPath
	s.f = nil
	s.buf = nil
	if err := f.Close(); err != nil && flushErr == nil {
		flushErr = err
	}
	if s.written == 0 {
		// Not even the header reached the disk: nothing worth keeping.
		_ = os.Remove(part)
		if flushErr != nil {
			s.c.log.Warn("capture file discarded", "session", s.name, "file", part, "err", flushErr)
		}
		return
	}
	if err := os.Rename(part, final); err != nil {
		s.c.log.Error("rename closed capture file", "session", s.name, "file", part, "err", err)
		return
	}
	s.files.Inc()
	s.c.log.Info("capture file closed", "session", s.name, "file", final, "bytes", s.written, "why", why)
	s.c.retain(s.dir, s.name)
	s.c.postRotate(final)
}

// flush writes the buffer (called by the ticker at least once a second).
func (s *series) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		s.failLocked(err)
	}
}

// tick runs once per flush interval: flush, rotate an idle file whose
// interval ended, let a failed series retry, and log drops once per interval.
func (s *series) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.deadline != 0 && now.UnixNano() >= s.deadline {
		s.closeLocked("interval")
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
}

// rotate closes the open file; the next packet opens a new one.
func (s *series) rotate(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(why)
}

// capFile is a closed capture file of a series.
type capFile struct {
	path string
	key  string // start time then sequence, sortable
	size int64
}

// closedFiles lists the closed files of the series in dir, oldest first.
func closedFiles(dir, name string) []capFile {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []capFile
	prefix := name + "-"
	for _, e := range ents {
		fn := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(fn, prefix) {
			continue
		}
		rest := strings.TrimPrefix(fn, prefix)
		var stem string
		switch {
		case strings.HasSuffix(rest, ".pcapng"):
			stem = strings.TrimSuffix(rest, ".pcapng")
		case strings.HasSuffix(rest, ".pcap"):
			stem = strings.TrimSuffix(rest, ".pcap")
		default:
			continue
		}
		ts, seq, _ := strings.Cut(stem, "-")
		if _, err := time.Parse(fileTimeLayout, ts); err != nil {
			continue
		}
		n := 0
		if seq != "" {
			if n, err = strconv.Atoi(seq); err != nil {
				continue
			}
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, capFile{path: filepath.Join(dir, fn), key: fmt.Sprintf("%s-%09d", ts, n), size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// retain deletes the oldest closed files of a series beyond Keep files or
// KeepBytes bytes; the newest file is always kept.
func (c *Collector) retain(dir, name string) {
	keep, keepBytes := c.opts.Keep, c.opts.KeepBytes
	if keep <= 0 && keepBytes <= 0 {
		return
	}
	files := closedFiles(dir, name)
	var total int64
	for _, f := range files {
		total += f.size
	}
	for i := 0; i < len(files)-1; i++ {
		over := keep > 0 && len(files)-i > keep
		if !over && keepBytes > 0 && total > keepBytes {
			over = true
		}
		if !over {
			break
		}
		if err := os.Remove(files[i].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("retention: remove old capture file", "file", files[i].path, "err", err)
			continue
		}
		total -= files[i].size
		c.log.Debug("retention: removed", "file", files[i].path)
	}
}

// postRotate runs the post-rotate command with the closed file's path as its
// argument ($1 in a shell), like tcpdump -z; it does not block the writer.
func (c *Collector) postRotate(path string) {
	if c.opts.PostRotate == "" {
		return
	}
	c.post.Add(1)
	go func() {
		defer c.post.Done()
		cmd := exec.Command("/bin/sh", "-c", c.opts.PostRotate+` "$1"`, "xmirror-post-rotate", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			c.log.Warn("post-rotate command failed", "cmd", c.opts.PostRotate, "file", path,
				"err", err, "output", strings.TrimSpace(string(out)))
		}
	}()
}

// recoverParts renames the temporary files a crashed collector left in the
// session directories under dir to their final names, after cutting any
// half-written last block, so that nothing captured stays hidden.
func recoverParts(dir string, log *slog.Logger) {
	sessions, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, sd := range sessions {
		if !sd.IsDir() {
			continue
		}
		sdir := filepath.Join(dir, sd.Name())
		ents, err := os.ReadDir(sdir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			fn := e.Name()
			if !e.Type().IsRegular() || !strings.HasPrefix(fn, ".") || !strings.HasSuffix(fn, ".part") {
				continue
			}
			final := strings.TrimSuffix(strings.TrimPrefix(fn, "."), ".part")
			f := FormatPcapng
			if strings.HasSuffix(final, ".pcap") {
				f = FormatPcap
			}
			part := filepath.Join(sdir, fn)
			data, err := os.ReadFile(part)
			if err != nil {
				log.Warn("recover temporary capture file", "file", part, "err", err)
				continue
			}
			n := validPrefix(data, f)
			if n == 0 {
				_ = os.Remove(part)
				continue
			}
			if n < len(data) {
				_ = os.Truncate(part, int64(n))
			}
			dst := filepath.Join(sdir, final)
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if err := os.Rename(part, dst); err != nil {
				log.Warn("recover temporary capture file", "file", part, "err", err)
				continue
			}
			log.Info("recovered capture file left by an earlier run", "file", dst, "bytes", n)
		}
	}
}
