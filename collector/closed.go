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

// closedJob is a closed capture file waiting for that work.
type closedJob struct {
	dirfd int // a duplicate of the session directory's descriptor, owned by the job
	dir   string
	name  string
	namer fileNamer
}

// closedQueue bounds the files waiting; beyond it a file is left
// uncompressed (logged) rather than blocking the writer.
const closedQueue = 1024

// fileClosed hands a closed file of s over. Called with the series locked.
func (c *Collector) fileClosed(s *series, name string) {
	c.queueClosed(s.dirfd, s.name, name, s.namer)
}

// queueClosed hands over the closed file name of the session directory
// dirfd (named dir), whose files namer recognises; dirfd stays the
// caller's.
func (c *Collector) queueClosed(dirfd int, dir, name string, namer fileNamer) {
	fd, err := unix.Dup(dirfd)
	if err != nil {
		c.log.Warn("closed capture file: no descriptor left for its retention", "session", dir, "err", err)
		return
	}
	unix.CloseOnExec(fd)
	j := closedJob{dirfd: fd, dir: dir, name: name, namer: namer}
	c.closedMu.Lock()
	defer c.closedMu.Unlock()
	if !c.closedDone {
		c.post.Add(1)
		select {
		case c.closed <- j:
			return
		default:
			c.post.Done()
		}
	}
	_ = unix.Close(fd)
	c.log.Warn("closed capture file left as it is: the queue for compression and retention is full or closed",
		"session", dir, "file", name)
}

// closedLoop processes closed files until the queue is closed.
func (c *Collector) closedLoop() {
	for j := range c.closed {
		name := j.name
		if c.opts.Compress {
			if gz, err := c.compress(j.dirfd, name); err != nil {
				c.log.Error("compress capture file", "session", j.dir, "file", name, "err", err)
			} else {
				name = gz
			}
		}
		c.retain(j.dirfd, j.dir, j.namer)
		c.disk.mu.Lock()
		c.disk.dirty = true
		c.disk.mu.Unlock()
		c.queueHook(j.dir, name)
		_ = unix.Close(j.dirfd)
		c.post.Done()
	}
	close(c.hookq)
}

// hookJob is a closed file (its final name) waiting for the post-rotate
// command.
type hookJob struct{ dir, name string }

// queueHook hands a file that compression and retention are done with to
// the post-rotate command; beyond closedQueue commands waiting, the file
// is logged and not handed over.
func (c *Collector) queueHook(dir, name string) {
	if strings.TrimSpace(c.opts.PostRotate) == "" {
		return
	}
	c.hooks.Add(1)
	select {
	case c.hookq <- hookJob{dir: dir, name: name}:
	default:
		c.hooks.Done()
		c.log.Warn("post-rotate command not run for a closed file: too many commands waiting (is the command hanging?)",
			"cmd", c.opts.PostRotate, "session", dir, "file", name, "waiting", closedQueue)
	}
}

// hookLoop runs the post-rotate commands, one at a time, in the order
// their files closed, until closedLoop ends.
func (c *Collector) hookLoop() {
	for j := range c.hookq {
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
