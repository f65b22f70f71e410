// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/lock"
)

// Default modes of what the collector creates: captured traffic is readable
// by the owner and the group, never by others.
const (
	DefaultFileMode fs.FileMode = 0o640
	DefaultDirMode  fs.FileMode = 0o750
)

// outDir is the output directory, held open: everything below it is
// reached through directory descriptors with O_NOFOLLOW, so that a session
// directory or a file replaced by a symbolic link is refused instead of
// followed out of the output directory.
type outDir struct {
	path string
	// fd is the directory at path, held open and locked. follow replaces
	// it when path comes to name another directory (or none); the
	// descriptors it replaced stay open until close, since other
	// goroutines may be using them.
	fd        atomic.Int32
	gen       atomic.Uint64 // replacements of fd so far
	mu        sync.Mutex    // follow and close
	retired   []int
	followErr string // the last error follow logged
	fileMode  fs.FileMode
	dirMode   fs.FileMode
	gid       int // group of new files and directories; -1 = the process's
}

// dir is the descriptor of the output directory.
func (d *outDir) dir() int { return int(d.fd.Load()) }

// ErrOutputDirBusy means another collector writes to the output directory:
// two would take each other's open files for a crash's leftovers at start
// and retire each other's files.
var ErrOutputDirBusy = errors.New("output directory in use")

// openOutDir creates the output directory if needed (the path itself may
// be or contain a link: the operator chose it), opens and locks it, and
// checks who may read it: a directory that others may write to is refused,
// one they may read is reported.
func openOutDir(path string, fileMode fs.FileMode, gid int, log *slog.Logger) (*outDir, error) {
	dirMode := fileMode | (fileMode&0o444)>>2 // x where r: 0640 -> 0750
	d := &outDir{path: path, fileMode: fileMode, dirMode: dirMode, gid: gid}
	fd, err := d.open(log)
	if err != nil {
		return nil, err
	}
	d.fd.Store(int32(fd))
	return d, nil
}

// open creates the directory at d.path if needed, opens and locks it and
// checks its mode, returning its descriptor.
func (d *outDir) open(log *slog.Logger) (int, error) {
	path := d.path
	if err := os.MkdirAll(path, d.dirMode); err != nil {
		if errors.Is(err, unix.EROFS) {
			// ReadWritePaths= of a path that does not exist stops the
			// unit from starting: the directory must be made first.
			return -1, fmt.Errorf("create output directory: %w (under the systemd unit, a directory outside /var/lib/xmirror must exist, writable by the xmirror user, and be named in ReadWritePaths= in a drop-in)", err)
		}
		return -1, fmt.Errorf("create output directory: %w", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open output directory %s: %w", path, err)
	}
	if err := d.lock(fd, log); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("stat output directory %s: %w", path, err)
	}
	mode := fs.FileMode(st.Mode & 0o7777)
	if mode&0o002 != 0 && mode&fs.FileMode(unix.S_ISVTX) == 0 {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("output directory %s is writable by everyone (mode %#o): refused, anyone could replace capture files", path, mode)
	}
	// Checked now, not at the first packet: a collector that cannot write
	// would otherwise run, answer /healthz, and drop everything it is sent.
	if err := unix.Faccessat(fd, ".", unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		_ = unix.Close(fd)
		hint := ""
		if errors.Is(err, unix.EROFS) {
			// The unit's ProtectSystem=strict makes everything but
			// /var/lib/xmirror read-only.
			hint = " (under the systemd unit, a directory outside /var/lib/xmirror needs ReadWritePaths= in a drop-in)"
		}
		return -1, fmt.Errorf("output directory %s is not writable by this process (uid %d, gid %d, directory owner %d:%d, mode %#o): %w%s",
			path, os.Geteuid(), os.Getegid(), st.Uid, st.Gid, mode, err, hint)
	}
	log.Info("output directory", "path", path, "uid", st.Uid, "gid", st.Gid, "mode", fmt.Sprintf("%#o", mode),
		"file_mode", fmt.Sprintf("%#o", d.fileMode), "dir_mode", fmt.Sprintf("%#o", d.dirMode))
	if mode&0o007 != 0 {
		log.Warn("output directory is open to other users; capture files are not, but their names are",
			"path", path, "mode", fmt.Sprintf("%#o", mode))
	}
	if int(st.Uid) != os.Geteuid() {
		log.Warn("output directory belongs to another user", "path", path, "uid", st.Uid, "euid", os.Geteuid())
	}
	return fd, nil
}

// follow checks that the configured path still names the directory the
// collector writes to, and when it names another one (moved aside and
// replaced) or none (removed), opens the one there, creating it, so that
// the next files land where the operator looks. It reports whether it
// switched; the files open now finish where they are.
func (d *outDir) follow(log *slog.Logger) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.dir()
	if cur < 0 {
		return false
	}
	var held, at unix.Stat_t
	if unix.Fstat(cur, &held) != nil {
		return false
	}
	err := unix.Stat(d.path, &at)
	if err == nil && at.Dev == held.Dev && at.Ino == held.Ino {
		return false
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return false
	}
	fd, err := d.open(log)
	if err != nil {
		if err.Error() != d.followErr { // once, not every second
			d.followErr = err.Error()
			log.Error("output directory was removed or replaced, and the one at its path cannot be used; capture files fail until it can",
				"path", d.path, "err", err)
		}
		return false
	}
	d.followErr = ""
	d.retired = append(d.retired, cur)
	d.fd.Store(int32(fd))
	d.gen.Add(1)
	log.Warn("output directory was removed or replaced: new capture files go to the directory now at its path",
		"path", d.path, "removed", held.Nlink == 0)
	return true
}

// openOwn opens a descriptor of its own of the output directory (not a
// dup: that would share the flock and hold it past close) and returns it
// with the generation it is of.
func (d *outDir) openOwn() (int, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fd, err := unix.Openat(d.dir(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	return fd, d.gen.Load(), err
}

// lock takes an exclusive flock on the output directory, held through d.fd
// for the collector's life, before anything in it is touched. The kernel
// drops it when the process ends, however it ends, so a restart after a
// crash still recovers what the crash left.
func (d *outDir) lock(fd int, log *slog.Logger) error {
	err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return fmt.Errorf("%w: %s is written by %s, another xmirror collect", ErrOutputDirBusy, d.path, lock.Holder(fd))
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
		// A filesystem without locks must not stop capturing.
		log.Warn("output directory cannot be locked: a second collector on it would not be refused", "path", d.path, "err", err)
		return nil
	}
	return fmt.Errorf("lock output directory %s: %w", d.path, err)
}

func (d *outDir) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if fd := d.dir(); fd >= 0 {
		_ = unix.Close(fd)
		d.fd.Store(-1)
	}
	for _, fd := range d.retired {
		_ = unix.Close(fd)
	}
	d.retired = nil
}

// sessionDir creates (if needed) and opens the directory of a session. A
// symbolic link in its place is refused.
func (d *outDir) sessionDir(name string) (int, error) {
	err := unix.Mkdirat(d.dir(), name, uint32(d.dirMode))
	created := err == nil
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create session directory %s: %w", name, err)
	}
	fd, err := unix.Openat(d.dir(), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("session directory %s/%s is not a directory (a symbolic link?): refused", d.path, name)
		}
		return -1, fmt.Errorf("open session directory %s: %w", name, err)
	}
	if created {
		// The umask may have taken bits; the configured mode is the contract.
		if err := d.own(fd, d.dirMode); err != nil {
			_ = unix.Close(fd)
			return -1, fmt.Errorf("session directory %s: %w", name, err)
		}
	}
	return fd, nil
}

// own gives a new file or directory its mode and group.
func (d *outDir) own(fd int, mode fs.FileMode) error {
	if err := unix.Fchmod(fd, uint32(mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if d.gid >= 0 {
		if err := unix.Fchown(fd, -1, d.gid); err != nil {
			return fmt.Errorf("chown to group %d: %w", d.gid, err)
		}
	}
	return nil
}

// createFile creates name in the session directory dirfd holding header.
// The file appears under its name only once the header is in it (O_TMPFILE,
// then linkat), so that even a kill -9 never leaves an empty, unreadable
// capture file; a full disk shows up here, before packets are buffered.
// Filesystems without O_TMPFILE get a plain exclusive create. Neither
// follows a symbolic link.
func (d *outDir) createFile(dirfd int, name string, header []byte) (*os.File, error) {
	if fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(d.fileMode)); err == nil {
		f := os.NewFile(uintptr(fd), name)
		if err := d.own(fd, d.fileMode); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("capture file %s: %w", name, err)
		}
		if _, err := f.Write(header); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write capture file header: %w", err)
		}
		// linkat of the descriptor itself (AT_EMPTY_PATH) needs
		// CAP_DAC_READ_SEARCH before Linux 6.10; its /proc name does not.
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return f, nil
		}
		_ = f.Close()
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOSPC) {
			return nil, fmt.Errorf("create capture file: %w", err)
		}
		// No /proc, or linkat refused: fall back to a plain create.
	}
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(d.fileMode))
	if err != nil {
		return nil, fmt.Errorf("create capture file: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	err = d.own(fd, d.fileMode)
	if err == nil {
		_, err = f.Write(header)
	}
	if err != nil {
		_ = f.Close()
		_ = unix.Unlinkat(dirfd, name, 0)
		return nil, fmt.Errorf("write capture file header: %w", err)
	}
	return f, nil
}

// dirEntry is a regular file in a session directory.
type dirEntry struct {
	name  string
	size  int64
	mtime int64 // unix seconds
}

// listDir lists the regular files of the directory dirfd (links and other
// kinds are left out).
func listDir(dirfd int) ([]dirEntry, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]dirEntry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		out = append(out, dirEntry{name: n, size: st.Size, mtime: st.Mtim.Sec})
	}
	return out, nil
}

// subdirs lists the directories directly below the output directory.
func (d *outDir) subdirs() []string {
	dirfd := d.dir()
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	var out []string
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			out = append(out, n)
		}
	}
	return out
}

// free is the space left to unprivileged writers on the output filesystem.
func (d *outDir) free() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(d.dir(), &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// LookupGroup resolves a group owning the files (Options.Group, a name or
// a number) on this host; "" is -1, the process's own group.
func LookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("%q is no group on this host", name)
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
