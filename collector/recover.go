// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// recoverParts renames the temporary files a crashed collector left in the
// session directories to their final names, after cutting any half-written
// last block, so that nothing captured stays hidden. A file without a
// packet is removed, as is a half-compressed copy (its original is still
// there).
func recoverParts(d *outDir, log *slog.Logger) {
	for _, dir := range d.subdirs() {
		fd, err := unix.Openat(d.fd, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		ents, _ := listDir(fd)
		for _, e := range ents {
			if strings.HasPrefix(e.name, ".") && strings.HasSuffix(e.name, ".part") {
				recoverPart(fd, dir, e.name, log)
			}
		}
		_ = unix.Close(fd)
	}
}

func recoverPart(dirfd int, dir, part string, log *slog.Logger) {
	final := strings.TrimSuffix(strings.TrimPrefix(part, "."), ".part")
	if strings.HasSuffix(final, gzExt) {
		_ = unix.Unlinkat(dirfd, part, 0)
		return
	}
	f := FormatPcapng
	if strings.HasSuffix(final, ".pcap") {
		f = FormatPcap
	}
	fd, err := unix.Openat(dirfd, part, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return
	}
	file := os.NewFile(uintptr(fd), part)
	defer file.Close()
	data, err := io.ReadAll(file)
	if err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return
	}
	n := validPrefix(data, f)
	if countPackets(data[:n], f) == 0 {
		_ = unix.Unlinkat(dirfd, part, 0)
		return
	}
	if n < len(data) {
		_ = file.Truncate(int64(n))
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, final, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return
	}
	if err := unix.Renameat(dirfd, part, dirfd, final); err != nil {
		log.Warn("recover temporary capture file", "session", dir, "file", part, "err", err)
		return
	}
	log.Info("recovered capture file left by an earlier run", "session", dir, "file", final, "bytes", n)
}
