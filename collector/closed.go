// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// What happens to a file once it is closed and renamed, off the receive
// path: compression (if configured), then the per-session retention, then
// the post-rotate command. One goroutine compresses and prunes in order, so
// a burst of rotations queues instead of compressing many files at once;
// another runs the post-rotate commands in the same order, so that a
// command that is slow or never returns (an archive that does not answer)
// holds up only the commands after it, never the compression and
// retention of the files that close meanwhile.

// closedJob is a closed capture file waiting for that work. It holds no
// descriptor: thousands of sessions closing at once (an interval boundary,
// SIGUSR1) would hold thousands; the worker opens the session directory
// again, without following links, from its own descriptor of the output
// directory.
type closedJob struct {
	dir   string
	name  string
	namer fileNamer
}

// queue is an unbounded first-in first-out queue with one consumer. The
// closed files wait in one: a bound would have to drop files (left
// uncompressed, never handed to post_rotate) or block the writer that
// closed them, and every session closes a file at each interval boundary.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	head   int
	closed bool
	wake   chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{wake: make(chan struct{}, 1)} }

// put adds v, reporting false when the queue is closed.
func (q *queue[T]) put(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close lets get return false once the queue is empty.
func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// get returns the oldest item, waiting for one; false once the queue is
// closed and empty.
func (q *queue[T]) get() (T, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			v := q.items[q.head]
			var zero T
			q.items[q.head] = zero
			q.head++
			if q.head == len(q.items) {
				q.items, q.head = q.items[:0], 0
			}
			q.mu.Unlock()
			return v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero T
			return zero, false
		}
		<-q.wake
	}
}

// fileClosed hands a closed file of s over. Called with the series locked.
func (c *Collector) fileClosed(s *series, name string) {
	c.queueClosed(s.name, name, s.namer)
}

// queueClosed hands over the closed file name of the session directory
// dir, whose files namer recognises.
func (c *Collector) queueClosed(dir, name string, namer fileNamer) {
	c.post.Add(1)
	if !c.closed.put(closedJob{dir: dir, name: name, namer: namer}) {
		c.post.Done()
		c.log.Warn("closed capture file left as it is: the collector is stopping", "session", dir, "file", name)
	}
}

// closedLoop processes closed files until the queue is closed; outfd is
// its own descriptor of the output directory, which it closes.
func (c *Collector) closedLoop(outfd int) {
	defer func() { _ = unix.Close(outfd) }()
	defer c.hookq.close()
	var starved time.Time
	var gen uint64 // of the output directory outfd is
	for {
		j, ok := c.closed.get()
		if !ok {
			return
		}
		if c.out != nil && c.out.gen.Load() != gen {
			// The output directory was replaced (outDir.follow).
			if fd, g, err := c.out.openOwn(); err == nil {
				_ = unix.Close(outfd)
				outfd, gen = fd, g
			}
		}
		c.closedJob(outfd, j, &starved)
		c.post.Done()
	}
}

// closedStarvedMax bounds how long closed files wait for a free
// descriptor when the process is at its open-files limit (every session
// holding a file): sessions go idle or rotate and free theirs, and a file
// is then compressed, pruned and handed on instead of being left as it
// is. The bound is per shortage, not per file, so that a shortage that
// lasts costs the files queued meanwhile one attempt each, not a wait each.
const (
	closedStarvedMax = time.Minute
	closedRetryPause = time.Second
)

// outOfDescriptors reports whether err is the process's (EMFILE) or the
// system's (ENFILE) open-files limit.
func outOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// closedJob does the work of one closed file; starved is when the
// descriptor shortage it may find began (zero: none), kept by closedLoop.
func (c *Collector) closedJob(outfd int, j closedJob, starved *time.Time) {
	for {
		err := c.finishClosed(outfd, j)
		if !outOfDescriptors(err) {
			*starved = time.Time{}
			return
		}
		if starved.IsZero() {
			*starved = time.Now()
			c.log.Warn("closed capture files wait for a free descriptor: the open-files limit is reached",
				"session", j.dir, "file", j.name, "err", err)
		}
		if time.Since(*starved) >= closedStarvedMax {
			c.log.Error("closed capture file left as it is (not compressed, pruned or handed to post_rotate): no descriptor came free",
				"session", j.dir, "file", j.name, "waited", time.Since(*starved).Round(time.Second), "err", err)
			return
		}
		time.Sleep(closedRetryPause)
	}
}

// finishClosed compresses, prunes and hands on one closed file. It returns
// an error only when the open-files limit stopped it before it changed
// anything, so that the file can be tried again.
func (c *Collector) finishClosed(outfd int, j closedJob) error {
	dirfd, err := unix.Openat(outfd, j.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if outOfDescriptors(err) {
		return err
	}
	if err != nil {
		c.log.Warn("closed capture file: its session directory cannot be opened for compression and retention",
			"session", j.dir, "file", j.name, "err", err)
		return nil
	}
	defer unix.Close(dirfd)
	name := j.name
	if c.opts.Compress {
		gz, err := c.compress(dirfd, name)
		switch {
		case outOfDescriptors(err) && gz == "":
			return err
		case err != nil:
			c.log.Error("compress capture file", "session", j.dir, "file", name, "err", err)
		default:
			name = gz
		}
	}
	c.retain(dirfd, j.dir, j.namer)
	c.disk.mu.Lock()
	c.disk.dirty = true
	c.disk.mu.Unlock()
	c.queueHook(j.dir, name)
	return nil
}

// hookJob is a closed file (its final name) waiting for the post-rotate
// command.
type hookJob struct{ dir, name string }

// queueHook hands a file that compression and retention are done with to
// the post-rotate command.
func (c *Collector) queueHook(dir, name string) {
	if strings.TrimSpace(c.opts.PostRotate) == "" {
		return
	}
	c.hooks.Add(1)
	if !c.hookq.put(hookJob{dir: dir, name: name}) {
		c.hooks.Done()
	}
}

// hookLoop runs the post-rotate commands, one at a time, in the order
// their files closed, until closedLoop ends.
func (c *Collector) hookLoop() {
	for {
		j, ok := c.hookq.get()
		if !ok {
			return
		}
		c.postRotate(filepath.Join(c.out.path, j.dir, j.name))
		c.hooks.Done()
	}
}

// compress writes name.gz beside name (under a hidden temporary name, then
// renamed), removes name and returns the new name. A file that retention
// removed meanwhile is not brought back.
func (c *Collector) compress(dirfd int, name string) (string, error) {
	in, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	src := os.NewFile(uintptr(in), name)
	defer src.Close()
	gzName := name + gzExt
	part := "." + gzName + ".part"
	dst, err := c.out.createFile(dirfd, part, nil)
	if err != nil {
		return "", err
	}
	zw, _ := gzip.NewWriterLevel(dst, gzip.BestSpeed)
	zw.Name = name
	_, err = io.Copy(zw, src)
	if err == nil {
		err = zw.Close()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			err = errors.New("removed while compressed")
		}
	}
	if err == nil {
		err = unix.Renameat(dirfd, part, dirfd, gzName)
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, part, 0)
		return "", err
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return gzName, fmt.Errorf("remove %s after compressing it: %w", name, err)
	}
	return gzName, nil
}

// postRotate runs the post-rotate command with the closed file's path as
// its last argument, like tcpdump -z. The command is split at spaces and
// run without a shell (the container image has none).
func (c *Collector) postRotate(path string) {
	argv := strings.Fields(c.opts.PostRotate)
	if len(argv) == 0 {
		return
	}
	cmd := exec.Command(argv[0], append(argv[1:], path)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.log.Warn("post-rotate command failed", "cmd", c.opts.PostRotate, "file", path,
			"err", err, "output", strings.TrimSpace(string(out)))
	}
}
