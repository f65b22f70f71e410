// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestProcessWriteStdout: `xmirror collect --write -` streams one pcapng of
// all sessions to stdout, which `tshark -r -` reads while the collector
// runs: each packet shows up before the collector stops, on an interface
// per session and mirror source. No files are written without --out.
func TestProcessWriteStdout(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (make deps)")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := exec.CommandContext(ctx, "tshark", "-r", "-", "-l", "-n", "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "frame.interface_description", "-e", "tcp.seq_raw")
	ts.Env = append(os.Environ(), "HOME="+t.TempDir())
	ts.Stdin = pr
	tout, _ := ts.StdoutPipe()
	var terr bytes.Buffer
	ts.Stderr = &terr
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	p := startCollectStdout(t, pw, "--write", "-")
	_ = pw.Close()
	_ = pr.Close()

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(tout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := []string{
		"127.0.0.1/vni1|mirror source 127.0.0.1, session vni-1 (VNI 1)|1",
		"127.0.0.1/vni2|mirror source 127.0.0.1, session vni-2 (VNI 2)|2",
		"127.0.0.1/vni1|mirror source 127.0.0.1, session vni-1 (VNI 1)|3",
	}
	for i, w := range want {
		send(t, "127.0.0.1", p.udp, vxlan(uint32(i%2+1), tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i+1), 0, nil)))
		select {
		case got := <-lines:
			if got != w {
				t.Errorf("packet %d: tshark shows %q, want %q", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("packet %d not seen by tshark while the collector runs; tshark: %s", i, terr.String())
		}
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ts.Wait(); err != nil {
		t.Errorf("tshark: %v: %s", err, terr.String())
	}
	if !strings.Contains(p.output(), `out=""`) {
		t.Errorf("files written without --out:\n%s", p.output())
	}
}

// slowWriter blocks every write until released.
type slowWriter struct {
	release chan struct{}
	n       int
}

func (w *slowWriter) Write(b []byte) (int, error) {
	<-w.release
	w.n += len(b)
	return len(b), nil
}

// TestLiveSlowReader: a live reader that does not read loses packets
// (counted); receiving and the files go on.
func TestLiveSlowReader(t *testing.T) {
	out := t.TempDir()
	w := &slowWriter{release: make(chan struct{})}
	c := offline(t, Options{OutputDir: out, Live: w, Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1400)))
	const n = 10000 // 14 MB: more than the live buffer
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			c.handle(cache, netip.MustParseAddr("10.0.0.1"), t0.UnixNano(), fr)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("receiving stalled behind the live reader")
	}
	close(w.release)
	c.Rotate()
	drops := c.live.drops.Get()
	if drops == 0 || c.live.sent.Get()+drops != n {
		t.Errorf("live: %d sent, %d dropped, of %d", c.live.sent.Get(), drops, n)
	}
	if st := c.Stats(); st.Written != n {
		t.Errorf("files: %d of %d packets written", st.Written, n)
	}
	if !strings.Contains(files(t, out)[0], "s/") {
		t.Errorf("files %v", files(t, out))
	}
}

// TestTap: collector.tap creates a TAP device and writes each inner frame
// to it; tcpdump on the device sees them, byte for byte.
func TestTap(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (make deps)")
	}
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "c"})
	h := lab.Host("c")
	var c *Collector
	if err := h.Do(func() error {
		c = offline(t, Options{OutputDir: t.TempDir(), Tap: "xmtap0", Sessions: map[uint32]string{1: "s"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(t.TempDir(), "tap.pcap")
	td, err := h.Start("tcpdump", "-i", "xmtap0", "-n", "-U", "-c", "3", "-w", pcap)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(td.Output(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", td.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var sent [][]byte
	cache := seriesCache{}
	for i := 0; i < 3; i++ {
		fr := tcpFrame(t, ipSource, ipTest, 1, 2, uint32(i), 0, make([]byte, 10*i))
		sent = append(sent, fr)
		c.handle(cache, loopback, t0.UnixNano(), vxlan(uint32(1+i%2), fr))
	}
	select {
	case <-td.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump saw fewer than 3 frames: %s", td.Output())
	}
	pkts, _ := readCapture(t, pcap)
	if len(pkts) != 3 {
		t.Fatalf("tcpdump captured %d frames", len(pkts))
	}
	for i, p := range pkts {
		if !bytes.Equal(p.data, sent[i]) {
			t.Errorf("frame %d differs:\n%x\n%x", i, p.data, sent[i])
		}
	}
	if c.tapAll.sent.Get() != 3 || c.tapAll.drops.Get() != 0 {
		t.Errorf("tap: %d sent, %d dropped", c.tapAll.sent.Get(), c.tapAll.drops.Get())
	}
}

// TestTapPerSession: with {vni} in the name, each configured session gets
// its own TAP device; VNIs no session names get none.
func TestTapPerSession(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "c"})
	h := lab.Host("c")
	var c *Collector
	if err := h.Do(func() error {
		c = offline(t, Options{OutputDir: t.TempDir(), Tap: "xmt{vni}", Sessions: map[uint32]string{1: "a", 20: "b"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Run("ip", "-br", "link", "show", "type", "tun"); err != nil || !strings.Contains(out, "xmt1 ") || !strings.Contains(out, "xmt20 ") {
		t.Fatalf("TAP devices: %v %s", err, out)
	}
	cache := seriesCache{}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	for _, vni := range []uint32{1, 1, 20, 3} {
		c.handle(cache, loopback, t0.UnixNano(), vxlan(vni, fr))
	}
	if a, b := c.tapVNI[1].sent.Get(), c.tapVNI[20].sent.Get(); a != 2 || b != 1 || len(c.tapVNI) != 2 {
		t.Errorf("xmt1 got %d frames, xmt20 %d, %d devices; want 2, 1, 2", a, b, len(c.tapVNI))
	}
}
