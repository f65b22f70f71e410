// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// oneFrameCapture is a whole pcapng file of one frame, and the frame.
func oneFrameCapture(t *testing.T) (capture, frame []byte) {
	t.Helper()
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	return appendNgEPB(appendNgIDB(appendNgSHB(nil, sectionInfo{Application: "xmirror"}), "127.0.0.1/vni1", "", 0),
		0, t0.UnixNano(), fr, len(fr), nil), fr
}

// TestRecoveredFileClosePath: a .part left by kill -9 goes, once recovered
// at the next start, the way of every closed file: compressed, counted by
// the session's retention, handed to post_rotate. Before, it stayed
// uncompressed and the command never saw it.
func TestRecoveredFileClosePath(t *testing.T) {
	out, copies := t.TempDir(), t.TempDir()
	dir := filepath.Join(out, "s")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	capture, fr := oneFrameCapture(t)
	// Two closed files of the earlier run, and its open file, killed with
	// half a block at its end.
	for _, name := range []string{"s-20260102T100010Z.pcapng", "s-20260102T100011Z.pcapng"} {
		if err := os.WriteFile(filepath.Join(dir, name), capture, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	part := appendNgEPB(bytes.Clone(capture), 0, t0.UnixNano(), fr, len(fr), nil)[:len(capture)+30]
	if err := os.WriteFile(filepath.Join(dir, ".s-20260102T100012Z.pcapng.part"), part, 0o640); err != nil {
		t.Fatal(err)
	}

	c := offline(t, Options{OutputDir: out, Compress: true, Keep: 2, PostRotate: "cp -t " + copies})
	c.Rotate() // waits for the closed files' work

	got := files(t, out)
	if strings.Join(got, " ") != "s/s-20260102T100011Z.pcapng s/s-20260102T100012Z.pcapng.gz" {
		t.Fatalf("files %v, want the recovered file compressed and the oldest removed by keep 2", got)
	}
	if n := c.retained["keep"].Get(); n != 1 {
		t.Errorf("retention removed %d files for keep, want 1", n)
	}
	if cp := files(t, copies); strings.Join(cp, " ") != "s-20260102T100012Z.pcapng.gz" {
		t.Errorf("post-rotate saw %v, want the recovered file", cp)
	}
	raw, err := os.ReadFile(filepath.Join(out, got[1]))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if validPrefix(plain, FormatPcapng) != len(plain) || countPackets(plain, FormatPcapng) != 1 {
		t.Errorf("%s: %d of %d bytes whole blocks, %d packets; want all, 1", got[1],
			validPrefix(plain, FormatPcapng), len(plain), countPackets(plain, FormatPcapng))
	}
}

// TestRefusedCollectorLeavesParts: a second collector started on the port
// of a running one, with the same output directory, is refused before it
// recovers anything: the running collector's open file stays where it
// writes it. Before, the refused start renamed it, or removed it while it
// held no flushed packet, and the running one lost it.
func TestRefusedCollectorLeavesParts(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Sessions: map[uint32]string{1: "s"}})
	c.handle(seriesCache{}, loopback, t0.UnixNano(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	open := onlyFile(t, out, "s/.s-")

	second, err := New(withTestDefaults(Options{OutputDir: out, Listen: c.Addr().String(), Readers: 1}))
	if err == nil {
		_ = second.Close()
		t.Fatal("a second collector on the same port started")
	}
	if _, err := os.Stat(open); err != nil {
		t.Errorf("the running collector's open file is gone after a refused start: %v (files %v)", err, files(t, out))
	}
	c.Rotate()
	if pkts, _ := readCapture(t, onlyFile(t, out, "s/s-")); len(pkts) != 1 {
		t.Errorf("closed file holds %d packets, want 1", len(pkts))
	}
}

// TestRecoverInterruptedCompression: kill -9 during compression leaves the
// half-written .gz.part beside the closed file; the next start removes it
// and sends the closed file the rest of its way (compression, post_rotate),
// which the kill cut short. Before, the file stayed uncompressed and the
// command never saw it.
func TestRecoverInterruptedCompression(t *testing.T) {
	out, copies := t.TempDir(), t.TempDir()
	dir := filepath.Join(out, "s")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	capture, _ := oneFrameCapture(t)
	if err := os.WriteFile(filepath.Join(dir, "s-20260102T100010Z.pcapng"), capture, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".s-20260102T100010Z.pcapng.gz.part"), []byte{0x1f, 0x8b}, 0o640); err != nil {
		t.Fatal(err)
	}

	c := offline(t, Options{OutputDir: out, Compress: true, PostRotate: "cp -t " + copies})
	c.Rotate() // waits for the closed files' work

	if got := files(t, out); strings.Join(got, " ") != "s/s-20260102T100010Z.pcapng.gz" {
		t.Fatalf("files %v, want the closed file compressed", got)
	}
	if cp := files(t, copies); strings.Join(cp, " ") != "s-20260102T100010Z.pcapng.gz" {
		t.Errorf("post-rotate saw %v, want the compressed file", cp)
	}
}

// TestRecoverLargePartBoundedMemory: a .part file that a crash left is
// checked for a half-written last block without reading it into memory.
// With rotate.size 1GiB a crash leaves .part files of up to a gigabyte per
// session; before, the start read each one whole (a 306 MB file took the
// process to 381 MB resident), so a collector under a memory limit was
// killed at every start after a crash.
func TestRecoverLargePartBoundedMemory(t *testing.T) {
	dir := t.TempDir()
	capture, fr := oneFrameCapture(t)
	epb := appendNgEPB(nil, 0, t0.UnixNano(), fr, len(fr), nil)
	f, err := os.Create(filepath.Join(dir, ".s-20260102T100012Z.pcapng.part"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat(epb, (1<<20)/len(epb))
	const chunks = 64
	if _, err := f.Write(capture); err != nil {
		t.Fatal(err)
	}
	for range chunks {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Write(epb[:30]); err != nil { // the half-written last block
		t.Fatal(err)
	}
	f.Close()
	want := int64(len(capture) + chunks*len(chunk))

	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	final := recoverPart(dirfd, "s", ".s-20260102T100012Z.pcapng.part", slog.New(slog.NewTextHandler(io.Discard, nil)))
	runtime.ReadMemStats(&after)
	if final != "s-20260102T100012Z.pcapng" {
		t.Fatalf("recovered as %q", final)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("recovering a %d MiB file allocated %d MiB", want>>20, alloc>>20)
	}
	if fi, err := os.Stat(filepath.Join(dir, final)); err != nil || fi.Size() != want {
		t.Errorf("recovered file: %v %v, want %d bytes (cut at the last whole block)", fi, err, want)
	}
}
