// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestProcessSecondCollector: a second `xmirror collect` on the address
// (and port) of a running one is refused with a clear error, on both paths;
// before, SO_REUSEPORT let it take part of the traffic silently. The first
// keeps receiving everything.
func TestProcessSecondCollector(t *testing.T) { bothPaths(t, testSecondCollector) }

func testSecondCollector(t *testing.T, env collectEnv) {
	p := env.start(t, "--out", t.TempDir())
	args := []string{"collect", "--listen", p.udp.String(), "--out", t.TempDir(), "--receive", ReceiveSocket}
	var cmd *exec.Cmd
	if env.lab == nil {
		cmd = exec.Command(labtest.XmirrorBinary(t), args...)
	} else {
		cmd = env.lab.col.Command(context.Background(), labtest.XmirrorBinary(t), args...)
	}
	out, err := runTimeout(t, cmd)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "another xmirror collect already receives on this UDP port") {
		t.Fatalf("second collector: %v, want a refusal naming the other collector:\n%s", err, out)
	}
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x")))
	p.send(t, fr, fr, fr)
	p.waitMetric(t, "xmirror_collector_received_total", 3)
}

// runTimeout runs cmd and returns its combined output; a command still
// running after 20 seconds fails the test.
func runTimeout(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%v did not exit:\n%s", cmd.Args, out.String())
		return "", nil
	}
}

// xdpAttached reports what `ip link` shows of an XDP program on the
// collector host's eth0 ("" when none).
func xdpAttached(t *testing.T, lab *colLab) string {
	t.Helper()
	out, err := lab.col.Run("ip", "-d", "link", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "prog/xdp") {
			return line
		}
	}
	if strings.Contains(out, " xdp") {
		return out
	}
	return ""
}

// TestProcessXDPDetach: the XDP program is on the interface while the
// collector runs; SIGTERM detaches it, and so does kill -9 (the link dies
// with the process); the next start attaches again. A second collector on
// another port of the same interface is refused: the interface has an XDP
// program.
func TestProcessXDPDetach(t *testing.T) {
	lab := newColLab(t, 0)
	env := collectEnv{lab: lab, receive: ReceiveXDP}
	out := t.TempDir()
	p := env.start(t, "--out", out)
	if xdpAttached(t, lab) == "" {
		t.Fatal("no XDP program on eth0 while the collector runs")
	}
	second := lab.col.Command(context.Background(), labtest.XmirrorBinary(t), "collect", "--listen", labColAddr+":4790",
		"--out", t.TempDir(), "--receive", ReceiveXDP)
	msg, err := runTimeout(t, second)
	if err == nil || !strings.Contains(msg, "xm_collect") || !strings.Contains(msg, "attached already") {
		t.Errorf("second XDP collector on eth0: %v, want a refusal naming the attached program:\n%s", err, msg)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if a := xdpAttached(t, lab); a != "" {
		t.Fatalf("XDP program left on eth0 after SIGTERM: %s", a)
	}
	p = env.start(t, "--out", out)
	_ = p.cmd.Process.Kill()
	<-p.exited
	// The kernel detaches when the last reference to the link goes.
	deadline := time.Now().Add(5 * time.Second)
	for xdpAttached(t, lab) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("XDP program left on eth0 after kill -9: %s", xdpAttached(t, lab))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p = env.start(t, "--out", out)
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("after a crash")))
	p.send(t, fr)
	p.waitMetric(t, "xmirror_collector_received_total", 1)
	if d := p.metric(t, "xmirror_collector_socket_drops_total"); d != 0 {
		t.Errorf("socket drops %d", d)
	}
}

// TestProcessXDPJumbo: on a 9216-byte MTU the XDP path (native, multi-buffer
// on the veth) writes 9001-byte inner frames and cut frames byte for byte,
// split by VNI, with their original lengths, and other traffic to the host
// (/metrics over TCP, ARP) still works.
func TestProcessXDPJumbo(t *testing.T) {
	lab := newColLab(t, 9216)
	env := collectEnv{lab: lab, receive: ReceiveXDP}
	out := t.TempDir()
	p := env.start(t, "--out", out)
	if !strings.Contains(p.output(), `mode=native`) {
		t.Errorf("XDP not native on a veth:\n%s", p.output())
	}
	jumbo := tcpFrame(t, ipSource, ipTest, 1234, 57032, 300, 400, bytes.Repeat([]byte{0xab}, 8947)) // 9001 bytes
	big := tcpFrame(t, ipTest, ipSource, 57032, 1234, 200, 115, bytes.Repeat([]byte("x"), 1400))
	cut := big[:96]
	p.send(t, vxlan(1, jumbo), vxlan(2, cut), vxlan(1, big))
	p.waitMetric(t, "xmirror_collector_received_total", 3)
	if f := p.metric(t, "xmirror_collector_xdp_fragments_total"); f != 0 {
		t.Errorf("%d fragments: the jumbo datagrams did not fit the MTU", f)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := files(t, out)
	if len(got) != 2 || !strings.HasPrefix(got[0], "vni-1/") || !strings.HasPrefix(got[1], "vni-2/") {
		t.Fatalf("files %v, want one per VNI", got)
	}
	for i, want := range [][]struct {
		data    []byte
		origLen int
	}{{{jumbo, len(jumbo)}, {big, len(big)}}, {{cut, len(big)}}} {
		pkts, _ := readCapture(t, filepath.Join(out, got[i]))
		if len(pkts) != len(want) {
			t.Fatalf("%s: %d packets, want %d", got[i], len(pkts), len(want))
		}
		for j, pk := range pkts {
			if !bytes.Equal(pk.data, want[j].data) || pk.ci.Length != want[j].origLen {
				t.Errorf("%s packet %d: %d bytes of %d (equal %v), want %d of %d", got[i], j,
					len(pk.data), pk.ci.Length, bytes.Equal(pk.data, want[j].data), len(want[j].data), want[j].origLen)
			}
		}
	}
}
