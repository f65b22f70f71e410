// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"log/slog"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// recoverParts renames the temporary files a crashed collector left in the
// session directories to their final names, after cutting any half-written
// last block, so that nothing captured stays hidden, and hands each to the
// closed-file work (compression, retention, post-rotate) as a rotation
// would have. A file without a packet is removed, as is a half-compressed
// copy (its original is handed on: the kill stopped its compression).
func (c *Collector) recoverParts() {
	for _, dir := range c.out.subdirs() {
		fd, err := unix.Openat(c.out.dir(), dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		ents, _ := listDir(fd)
		// In name order: the oldest first, as they would have closed.
		sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
		for _, e := range ents {
			if !strings.HasPrefix(e.name, ".") || !strings.HasSuffix(e.name, ".part") {
				continue
			}
			if final := recoverPart(fd, dir, e.name, c.log); final != "" {
				// Named after the directory like retention's scan: the
				// session may be gone from the configuration.
				c.queueClosed(dir, final, c.namer(dir, Key{}))
			}
		}
		_ = unix.Close(fd)
	}
}

// recoverPart cuts and renames one temporary file and returns the name of
// the closed file to hand on, or "" when there is none.
func recoverPart(dirfd int, dir, part string, log *slog.Logger) string {
	final := strings.TrimSuffix(strings.TrimPrefix(part, "."), ".part")
	if strings.HasSuffix(final, gzExt) {
		// A kill during compression: the closed file it was made from
		// is still there and has yet to be compressed and handed to
		// post_rotate (which runs after compression).
		_ = unix.Unlinkat(dirfd, part, 0)
		orig := strings.TrimSuffix(final, gzExt)
		if isRegular(dirfd, orig) && !isRegular(dirfd, final) {
			return orig
		}
		return ""
	}
	f := FormatPcapng
	if strings.HasSuffix(final, ".pcap") {
		f = FormatPcap
	}
	fd, err := unix.Openat(dirfd, part, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return ""
	}
	file := os.NewFile(uintptr(fd), part)
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return ""
	}
	// Streamed, never read whole: the file may be as large as rotate.size.
	n, packets, err := scanCapture(file, f)
	if err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return ""
	}
	if packets == 0 {
		_ = unix.Unlinkat(dirfd, part, 0)
		return ""
	}
	if n < fi.Size() {
		_ = file.Truncate(n)
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, final, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return ""
	}
	if err := unix.Renameat(dirfd, part, dirfd, final); err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return ""
	}
	log.Info("recovered capture file left by an earlier run", "session", dir, "file", final, "bytes", n)
	return final
}

// isRegular reports whether name in dirfd is a regular file (not a link).
func isRegular(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}
