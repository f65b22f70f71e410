// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// capFile is a closed capture file of a session.
type capFile struct {
	dirfd int    // the session directory; -1: open it by dir to remove the file
	dir   string // session directory name
	name  string
	key   string // start time then sequence, sortable
	size  int64
	mtime int64
}

// closedFiles lists the closed files of a session directory, oldest first.
// Temporary files (hidden names) and files the namer does not recognise are
// left alone.
func closedFiles(dirfd int, dir string, n fileNamer) []capFile {
	ents, err := listDir(dirfd)
	if err != nil {
		return nil
	}
	var out []capFile
	for _, e := range ents {
		key, ok := n.key(e.name)
		if !ok {
			continue
		}
		out = append(out, capFile{dirfd: dirfd, dir: dir, name: e.name, key: key, size: e.size, mtime: e.mtime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// remove deletes a closed file, reporting whether it is gone.
func (c *Collector) remove(f capFile, why string) bool {
	dirfd := f.dirfd
	if dirfd < 0 {
		fd, err := unix.Openat(c.out.dir(), f.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			c.log.Warn("retention: open session directory", "session", f.dir, "file", f.name, "err", err)
			return false
		}
		defer unix.Close(fd)
		dirfd = fd
	}
	if err := unix.Unlinkat(dirfd, f.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		c.log.Warn("retention: remove old capture file", "session", f.dir, "file", f.name, "err", err)
		return false
	}
	c.retained[why].Inc()
	c.log.Debug("retention: removed", "session", f.dir, "file", f.name, "rule", why)
	return true
}

// retain applies the per-session limits (Keep files, KeepBytes bytes) to a
// session directory; the newest file is always kept.
func (c *Collector) retain(dirfd int, dir string, n fileNamer) {
	keep, keepBytes := c.opts.Keep, c.opts.KeepBytes
	if keep <= 0 && keepBytes <= 0 {
		return
	}
	files := closedFiles(dirfd, dir, n)
	var total int64
	for _, f := range files {
		total += f.size
	}
	for i := 0; i < len(files)-1; i++ {
		switch {
		case keep > 0 && len(files)-i > keep:
			if c.remove(files[i], "keep") {
				total -= files[i].size
			}
		case keepBytes > 0 && total > keepBytes:
			if c.remove(files[i], "keep_size") {
				total -= files[i].size
			}
		default:
			return
		}
	}
}

// disk enforces the limits that span all sessions: the age of closed
// files, their total size and the free space left on the filesystem. The
// newest closed file of every session is never removed; when that is not
// enough for MinFree, writing pauses (packets dropped as disk_low) until
// space returns.
type disk struct {
	mu       sync.Mutex
	lastScan time.Time
	dirty    bool // a file closed since the last scan
	// What the last scan found, for /metrics: closed files (compressed or
	// not) of all sessions, their bytes, and the filesystem's free bytes.
	files, bytes, free atomic.Int64
}

// diskScanEvery bounds how often the session directories are listed when
// no file closed: age limits need no finer grain.
const diskScanEvery = 10 * time.Second

// enforceDisk runs from the ticker (never on the receive path). Without
// limits it still scans, for the storage metrics.
func (c *Collector) enforceDisk(now time.Time) {
	o := c.opts
	if c.out == nil {
		return
	}
	c.disk.mu.Lock()
	defer c.disk.mu.Unlock()
	free, ferr := c.out.free()
	low := o.MinFree > 0 && ferr == nil && free < o.MinFree
	if ferr == nil {
		c.disk.free.Store(free)
	}
	if !low && !c.disk.dirty && now.Sub(c.disk.lastScan) < diskScanEvery {
		return
	}
	c.disk.dirty = false
	c.disk.lastScan = now
	files := c.allClosedFiles()
	var total int64
	for _, f := range files {
		total += f.size
	}
	removed := 0
	emptied := map[string]bool{}
	for _, f := range removable(files, c.sessionNames()) {
		var why string
		switch {
		case o.KeepAge > 0 && now.Sub(time.Unix(f.mtime, 0)) > o.KeepAge:
			why = "keep_age"
		case o.MaxTotalSize > 0 && total > o.MaxTotalSize:
			why = "max_total_size"
		case low && free < o.MinFree:
			why = "min_free"
		default:
			continue
		}
		if c.remove(f, why) {
			emptied[f.dir] = true
			removed++
			total -= f.size
			free += f.size
		}
	}
	c.removeEmptyDirs(emptied)
	c.disk.files.Store(int64(len(files) - removed))
	c.disk.bytes.Store(total)
	if free, ferr = c.out.free(); ferr == nil {
		c.disk.free.Store(free)
		if o.MinFree > 0 {
			c.setDiskLow(free < o.MinFree, free)
		}
	}
}

// removable returns the files that retention may remove, oldest first:
// all but the newest of each session in sessions (the configured ones and
// those open now). The files of other directories (sessions of a flood of
// VNIs, forgotten when idle, or of earlier runs) are all removable, or
// such a flood would pin a file per VNI.
func removable(files []capFile, sessions map[string]bool) []capFile {
	newest := map[string]string{}
	for _, f := range files {
		if f.key > newest[f.dir] {
			newest[f.dir] = f.key
		}
	}
	var out []capFile
	for _, f := range files {
		if f.key != newest[f.dir] || !sessions[f.dir] {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// allClosedFiles lists the closed files of every session directory. It
// holds one directory open at a time (the files come back with dirfd -1):
// the output directory may hold more session directories than the
// open-files limit leaves descriptors, and the sessions need theirs.
func (c *Collector) allClosedFiles() []capFile {
	var files []capFile
	var skipped []string
	var skipErr error
	for _, dir := range c.out.subdirs() {
		fd, err := unix.Openat(c.out.dir(), dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			skipped, skipErr = append(skipped, dir), err
			continue
		}
		for _, f := range closedFiles(fd, dir, c.namer(dir, Key{})) {
			f.dirfd = -1
			files = append(files, f)
		}
		_ = unix.Close(fd)
	}
	if len(skipped) > 0 {
		c.log.Warn("disk scan: session directories that cannot be opened are left out of retention and stored_files",
			"count", len(skipped), "first", skipped[0], "err", skipErr)
	}
	return files
}

// removeEmptyDirs removes the directories, emptied by retention, of
// sessions that are neither configured nor open. Under c.mu, so that no
// session starts in a directory about to go; one that still holds anything
// stays.
func (c *Collector) removeEmptyDirs(dirs map[string]bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for dir := range dirs {
		if _, live := c.names[dir]; !live {
			_ = unix.Unlinkat(c.out.dir(), dir, unix.AT_REMOVEDIR)
		}
	}
}

// setDiskLow pauses or resumes writing, logging each change once.
func (c *Collector) setDiskLow(low bool, free int64) {
	if c.diskLow.Swap(low) == low {
		return
	}
	if low {
		c.log.Error("free space below collector.rotate.min_free after removing old files; writing paused, packets dropped as disk_low",
			"free", free, "min_free", c.opts.MinFree)
	} else {
		c.log.Info("free space above collector.rotate.min_free again; writing resumed", "free", free)
	}
}
