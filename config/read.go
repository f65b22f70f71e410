// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxFileSize bounds a configuration file. A real deployment's file is a few
// kilobytes; the bound keeps a wrong path (a log, an image, /dev/zero) from
// costing a daemon seconds and gigabytes on start or on SIGHUP.
const MaxFileSize = 1 << 20

// DefaultPath is where the parts read their configuration when --config is not given.
const DefaultPath = "/etc/xmirror/xmirror.yaml"

// ErrFile marks a configuration path that is not a readable, non-empty regular file
// of at most MaxFileSize bytes.
var ErrFile = errors.New("not a usable configuration file")

// ReadFile returns the contents of the configuration file at path. It reads only
// regular files, never more than MaxFileSize bytes, and refuses an empty one; the
// error says which of these failed. The open does not block on a FIFO.
func ReadFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read config %s: %w: it is %s, not a regular file", path, ErrFile, kindOf(st.Mode()))
	}
	if st.Size() > MaxFileSize {
		return nil, tooLarge(path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxFileSize { // grew after the stat
		return nil, tooLarge(path, int64(len(data)))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("read config %s: %w: it is empty", path, ErrFile)
	}
	return data, nil
}

func tooLarge(path string, size int64) error {
	return fmt.Errorf("read config %s: %w: it has %d bytes, more than the limit of %d", path, ErrFile, size, MaxFileSize)
}

// kindOf names a non-regular file type for messages.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}
