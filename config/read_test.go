// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFileRefuses: every path that is not a small, non-empty regular file is
// refused at once with the reason, without reading it (a FIFO with no writer would
// block a plain read forever, /dev/zero would fill the memory).
func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	blank := filepath.Join(dir, "blank.yaml")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(blank, []byte("\n  \n\t\n"), 0o600)
	for _, tc := range []struct{ name, path, want string }{
		{"dev zero", "/dev/zero", "a character device, not a regular file"},
		{"fifo", fifo, "a FIFO, not a regular file"},
		{"directory", dir, "a directory, not a regular file"},
		{"too large", big, "more than the limit of 1048576"},
		{"empty", empty, "it is empty"},
		{"blank", blank, "it is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := ReadFile(tc.path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q: want ErrFile naming the path and %q", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			if _, err := Load(tc.path); !errors.Is(err, ErrFile) {
				t.Errorf("Load: %v, want ErrFile", err)
			}
		})
	}
}

func TestReadFileAccepts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ok.yaml")
	body := "# at the limit\n" + strings.Repeat("#", MaxFileSize-16) + "\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := ReadFile(p)
	if err != nil || len(data) != MaxFileSize {
		t.Fatalf("a file of exactly MaxFileSize bytes: %d bytes, %v", len(data), err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
