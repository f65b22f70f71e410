// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestWriteFIFOWithoutReader: --write to a FIFO nobody reads yet. The open
// blocked until a reader came, before the collector bound its port: with
// --out as well, nothing was captured to files, and nothing said why. Now
// the FIFO is opened when its reader comes, off the receive path, and what
// is written before goes to the reader once it is there.
func TestWriteFIFOWithoutReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	type res struct {
		w   io.Writer
		err error
	}
	got := make(chan res, 1)
	go func() {
		w, err := liveOutput(path)
		got <- res{w, err}
	}()
	var r res
	select {
	case r = <-got:
	case <-time.After(3 * time.Second):
		// Let the blocked open finish so that the test can end.
		if f, err := os.OpenFile(path, os.O_RDONLY, 0); err == nil {
			defer f.Close()
		}
		t.Fatal("--write to a FIFO without a reader blocked the start")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := r.w.Write([]byte("pcapng"))
		wrote <- err
	}()
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "pcapng" {
		t.Errorf("the reader got %q, %v", buf, err)
	}
	if err := <-wrote; err != nil {
		t.Errorf("write: %v", err)
	}
}
