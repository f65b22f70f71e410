// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/telemetry"
)

func TestMain(m *testing.M) { labtest.Main(m) }

// proc is a running `xmirror collect`.
type proc struct {
	cmd     *exec.Cmd
	env     collectEnv
	udp     *net.UDPAddr
	metrics string
	receive string // the receive path the collector logs it uses
	mu      sync.Mutex
	log     strings.Builder
	exited  chan error
}

func (p *proc) output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.log.String() }

var (
	reMetrics = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)
	reListen  = regexp.MustCompile(`msg="collector listening" listen=(\S+) receive=(\S+)`)
)

// startCollect runs `xmirror collect` on a free loopback port with metrics
// on another, and waits until it logs that it listens.
func startCollect(t *testing.T, args ...string) *proc {
	return collectEnv{}.start(t, args...)
}

// start runs `xmirror collect` in the environment and waits until it logs
// that it listens.
func (env collectEnv) start(t *testing.T, args ...string) *proc {
	t.Helper()
	return env.startStdout(t, nil, args...)
}

// startCollectStdout is startCollect with the collector's standard output
// going to stdout.
func startCollectStdout(t *testing.T, stdout io.Writer, args ...string) *proc {
	t.Helper()
	return collectEnv{}.startStdout(t, stdout, args...)
}

// startStdout is start with the collector's standard output going to
// stdout.
func (env collectEnv) startStdout(t *testing.T, stdout io.Writer, args ...string) *proc {
	t.Helper()
	var cmd *exec.Cmd
	if env.lab == nil {
		port := freeUDPPort(t)
		args = append([]string{"collect", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--metrics-listen", "127.0.0.1:0"}, args...)
		cmd = exec.Command(labtest.XmirrorBinary(t), args...)
	} else {
		args = append([]string{"collect", "--listen", labColAddr + ":4789", "--metrics-listen", labColAddr + ":0",
			"--receive", env.receive}, args...)
		cmd = env.lab.col.Command(context.Background(), labtest.XmirrorBinary(t), args...)
	}
	cmd.Stdout = stdout
	p := &proc{cmd: cmd, env: env, exited: make(chan error, 1)}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		closed := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := reMetrics.FindStringSubmatch(line); m != nil {
				p.metrics = m[1]
			}
			if m := reListen.FindStringSubmatch(line); m != nil && !closed {
				p.udp, _ = net.ResolveUDPAddr("udp", m[1])
				p.receive = m[2]
				closed = true
				close(ready)
			}
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("xmirror collect output:\n%s", p.output())
		}
	})
	select {
	case <-ready:
		if want := cmp.Or(env.receive, ReceiveSocket); p.receive != want {
			t.Fatalf("xmirror collect receives with %q, want %q\n%s", p.receive, want, p.output())
		}
	case err := <-p.exited:
		t.Fatalf("xmirror collect exited: %v\n%s", err, p.output())
	case <-time.After(20 * time.Second):
		t.Fatalf("xmirror collect did not start:\n%s", p.output())
	}
	return p
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// get requests a path of the metrics server (from the lab's sender).
func (p *proc) get(t *testing.T, path string) (code int, body []byte) {
	t.Helper()
	var err error
	if p.env.lab != nil {
		code, body, err = p.env.lab.sender.Get(context.Background(), p.metrics, path)
	} else {
		var resp *http.Response
		if resp, err = http.Get("http://" + p.metrics + path); err == nil {
			defer resp.Body.Close()
			code = resp.StatusCode
			body, err = io.ReadAll(resp.Body)
		}
	}
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	return code, body
}

// send sends each payload as one datagram to the collector.
func (p *proc) send(t *testing.T, payloads ...[]byte) {
	t.Helper()
	if p.env.lab != nil {
		p.env.lab.send(t, p.udp, payloads...)
		return
	}
	send(t, "127.0.0.1", p.udp, payloads...)
}

// dial opens a UDP socket to the collector.
func (p *proc) dial(t *testing.T) *net.UDPConn {
	t.Helper()
	if p.env.lab != nil {
		return p.env.lab.dial(t, p.udp)
	}
	conn, err := net.DialUDP("udp", nil, p.udp)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// metric scrapes one sample of /metrics: name, or name{labels} as written.
func (p *proc) metric(t *testing.T, name string) uint64 {
	t.Helper()
	_, body := p.get(t, "/metrics")
	samples, err := telemetry.ParseText(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	base, labels, _ := strings.Cut(name, "{")
	if labels = strings.TrimSuffix(labels, "}"); labels != "" {
		return uint64(telemetry.Sum(samples, base, labels))
	}
	return uint64(telemetry.Sum(samples, base))
}

func (p *proc) waitMetric(t *testing.T, name string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.metric(t, name) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed below %d", name, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("xmirror collect did not exit on %v", sig)
		return nil
	}
}

// waitFiles waits until dir holds n closed capture files.
func waitFiles(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var closed []string
		for _, f := range files(t, dir) {
			if !strings.HasSuffix(f, ".part") {
				closed = append(closed, f)
			}
		}
		if len(closed) >= n {
			return closed
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed files %v, want %d", closed, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcessSignals: SIGHUP and SIGUSR1 close and rename every file,
// SIGTERM flushes and closes the rest and exits 0; /healthz answers 200
// while the receivers run.
func TestProcessSignals(t *testing.T) { bothPaths(t, testProcessSignals) }

func testProcessSignals(t *testing.T, env collectEnv) {
	out := t.TempDir()
	p := env.start(t, "--out", out, "--format", "pcap")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, _ := p.get(t, "/healthz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz answers %d", code)
		}
	}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("x"))
	burst := func(vni uint32, n int) {
		var ps [][]byte
		for i := 0; i < n; i++ {
			ps = append(ps, vxlan(vni, fr))
		}
		p.send(t, ps...)
	}
	burst(1, 10)
	burst(2, 3)
	p.waitMetric(t, "xmirror_collector_received_total", 13)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, out, 2)
	burst(1, 5)
	p.waitMetric(t, "xmirror_collector_received_total", 18)
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, out, 3)
	burst(1, 7)
	p.waitMetric(t, "xmirror_collector_received_total", 25)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	got := files(t, out)
	var counts []int
	for _, f := range got {
		if strings.HasSuffix(f, ".part") {
			t.Errorf("temporary file %s left after SIGTERM", f)
		}
		pkts, _ := readCapture(t, filepath.Join(out, f))
		counts = append(counts, len(pkts))
	}
	// vni-1: 10, 5, 7 in three files (named by start time, numbered within a
	// second, so sort order is creation order); vni-2: 3.
	if len(got) != 4 || counts[0]+counts[1]+counts[2] != 22 || counts[3] != 3 {
		t.Errorf("files %v with %v packets", got, counts)
	}
}

// TestProcessKill9: a collector killed mid-stream leaves closed files and
// at most one hidden .part per session; every one of them is a readable capture
// holding what was flushed (at most the last second is lost). The next start
// renames the .part files.
func TestProcessKill9(t *testing.T) { bothPaths(t, testProcessKill9) }

func testProcessKill9(t *testing.T, env collectEnv) {
	out := t.TempDir()
	p := env.start(t, "--out", out, "--rotate-size", "256KiB", "--keep", "3")
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 500)))
	stopSend := make(chan struct{})
	sent := make(chan int)
	conn := p.dial(t)
	go func() {
		defer conn.Close()
		n := 0
		for {
			select {
			case <-stopSend:
				sent <- n
				return
			default:
			}
			_, _ = conn.Write(fr)
			n++
			if n%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	// Let a few files close and the open one be flushed, then kill while
	// packets still arrive.
	waitFiles(t, out, 3)
	time.Sleep(1500 * time.Millisecond)
	_ = p.cmd.Process.Kill()
	<-p.exited
	close(stopSend)
	n := <-sent

	got := files(t, out)
	parts, total := 0, 0
	for _, f := range got {
		if strings.HasSuffix(f, ".part") {
			parts++
		}
		path := filepath.Join(out, f)
		if strings.HasSuffix(f, ".part") {
			path = wholeBlocks(t, path)
		}
		lines := tsharkFields(t, path, "frame.len")
		pkts, _ := readCapture(t, path)
		if len(lines) != len(pkts) {
			t.Errorf("%s: tshark reads %d packets, pcapgo %d", f, len(lines), len(pkts))
		}
		total += len(pkts)
	}
	// No .part when the kill falls between a size rotation and the next
	// packet (files open on their first packet).
	if parts > 1 || total == 0 || len(got) < 3 {
		t.Errorf("files %v: %d .part files, %d packets (sent %d)", got, parts, total, n)
	}
	t.Logf("sent %d, %d packets readable in %d files after kill -9", n, total, len(got))

	p2 := env.start(t, "--out", out)
	if err := p2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, f := range files(t, out) {
		if strings.HasSuffix(f, ".part") {
			t.Errorf("%s not recovered by the next start", f)
		}
	}
}

func TestProcessUsageErrors(t *testing.T) {
	bin := labtest.XmirrorBinary(t)
	for _, args := range [][]string{
		{"collect", "--out", t.TempDir(), "--format", "erf"},
		{"collect", "--out", t.TempDir(), "--unknown-vni", "maybe"},
		{"collect", "--out", t.TempDir(), "--rotate-size", "lots"},
		{"collect", "--config", filepath.Join(t.TempDir(), "missing.yaml")},
		{"collect", "--out", t.TempDir(), "--input", "sflow"},
		{"collect", "--out", t.TempDir(), "--input", "gre:47"},
		{"collect", "--out", t.TempDir(), "--input", "geneve:x"},
		{"collect", "--out", t.TempDir(), "--input", "gre", "--input", "erspan"},
	} {
		err := exec.Command(bin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
}

// TestProcessConfig: the collector section and the sessions of --config
// name the series; a flag overrides the file.
func TestProcessConfig(t *testing.T) { bothPaths(t, testProcessConfig) }

func testProcessConfig(t *testing.T, env collectEnv) {
	out := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "xmirror.yaml")
	yaml := `filters:
  - name: f
    inbound:
      - {priority: 1, action: accept, protocol: tcp, ethertype: ipv4}
sessions:
  - {name: mirror-session-01, priority: 1, vni: 1, packet_length: 96, enabled: true,
     filter: f, sources: [eth0], target: 192.168.0.147}
collector:
  listen: 127.0.0.1:1
  output_dir: ` + out + `
  format: pcapng
  unknown_vni: drop
metrics: {listen: "off"}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// startCollect's --listen and --metrics-listen override the file's.
	p := env.start(t, "--config", cfg, "--format", "pcap")
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	p.send(t, vxlan(1, fr), vxlan(2, fr), vxlan(1, fr))
	p.waitMetric(t, "xmirror_collector_received_total", 3)
	// The writer decides unknown_vni after the hand-off.
	p.waitMetric(t, `xmirror_collector_drops_total{reason="unknown_vni"}`, 1)
	if d := p.metric(t, `xmirror_collector_drops_total{reason="unknown_vni"}`); d != 1 {
		t.Errorf("unknown_vni drops %d, want 1", d)
	}
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := files(t, out)
	if len(got) != 1 || !strings.HasPrefix(got[0], "mirror-session-01/mirror-session-01-") || !strings.HasSuffix(got[0], ".pcap") {
		t.Fatalf("files %v", got)
	}
	if pkts, _ := readCapture(t, filepath.Join(out, got[0])); len(pkts) != 2 {
		t.Errorf("%d packets, want 2", len(pkts))
	}
}

// wholeBlocks returns path, or a copy of it cut to its whole blocks when a
// kill landed in the middle of a write: the kernel stops a write(2) of
// several pages at a page boundary once the process is being killed, so the
// open file's last block can be half-written (the collector's next start cuts
// it). Only part of one flush may be missing.
func wholeBlocks(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := validPrefix(raw, FormatPcapng)
	if n == len(raw) {
		return path
	}
	if n == 0 || len(raw)-n > 1<<20 {
		t.Fatalf("%s: only %d of %d bytes are whole blocks", path, n, len(raw))
	}
	t.Logf("%s: the kill cut its last block; %d of %d bytes are whole", path, n, len(raw))
	cut := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(cut, raw[:n], 0o644); err != nil {
		t.Fatal(err)
	}
	return cut
}

// TestProcessReloadSessions: SIGHUP re-reads the sessions: a VNI captured
// as vni-2 gets the name a session now gives it, and its files that
// session's packet length as snaplen; a broken file keeps the running
// sessions.
func TestProcessReloadSessions(t *testing.T) {
	out := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "xmirror.yaml")
	session := func(name string, vni int) string {
		return fmt.Sprintf("  - {name: %s, priority: %d, vni: %d, packet_length: 96, enabled: true, filter: f, sources: [eth0], target: 192.168.0.147}\n", name, vni, vni)
	}
	extra := ""
	write := func(sessions string) {
		yaml := "filters:\n  - name: f\n    inbound: [{priority: 1, action: accept}]\nsessions:\n" + sessions +
			"collector: {output_dir: " + out + extra + "}\nmetrics: {listen: \"off\"}\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(session("one", 1))
	p := startCollect(t, "--config", cfg)
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	send(t, "127.0.0.1", p.udp, vxlan(1, fr), vxlan(2, fr))
	p.waitMetric(t, "xmirror_collector_received_total", 2)

	write(session("one", 1) + session("two", 2))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "sessions reloaded")
	send(t, "127.0.0.1", p.udp, vxlan(2, fr))
	p.waitMetric(t, "xmirror_collector_received_total", 3)
	// Only sessions apply on SIGHUP: a change of the rest is said, not
	// silently ignored.
	const restart = "the collector section changed"
	if strings.Contains(p.output(), restart) {
		t.Errorf("a reload of sessions only warned of other changes:\n%s", p.output())
	}
	extra = ", rotate: {size: 1MiB}"
	write(session("one", 1) + session("two", 2))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, restart)

	if err := os.WriteFile(cfg, []byte("sessions: [{name: broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "configuration refused")
	send(t, "127.0.0.1", p.udp, vxlan(2, fr))
	p.waitMetric(t, "xmirror_collector_received_total", 4)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, f := range files(t, out) {
		dirs = append(dirs, filepath.Dir(f))
	}
	if strings.Join(dirs, " ") != "one two two vni-2" {
		t.Fatalf("files %v, want one file of one, one of vni-2, two of two", files(t, out))
	}
	for _, f := range files(t, out) {
		if strings.HasPrefix(f, "two/") {
			if _, ifs := readCapture(t, filepath.Join(out, f)); len(ifs) != 1 || ifs[0].SnapLength != 96 {
				t.Errorf("%s: interfaces %+v, want snaplen 96", f, ifs)
			}
		}
	}
}

// waitLog waits until the collector has logged msg.
func waitLog(t *testing.T, p *proc, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.output(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", msg, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
