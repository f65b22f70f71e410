// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/telemetry"
)

func TestMain(m *testing.M) { labtest.Main(m) }

// startDemo runs the seed topology for a test; the progress lines go to the test log.
func startDemo(t *testing.T, label string, opts Options) *Demo {
	t.Helper()
	labtest.RequireRoot(t)
	var progress bytes.Buffer
	opts.Binary = labtest.XmirrorBinary(t)
	opts.OutDir = t.TempDir()
	if opts.Config == nil {
		opts.Config = config.SeedYAML
	}
	opts.Label = label
	opts.Out = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d, err := Start(ctx, opts)
	t.Log("\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close demo: %v", err)
		}
		if t.Failed() {
			for _, sp := range d.started {
				t.Logf("log of xmirror %s on %s:\n%s", sp.Name, sp.Host.Name, sp.Output())
			}
		}
	})
	return d
}

// conversations runs the seed's Step 5 and n-1 more connections on port 1234 and
// returns them.
func conversations(t *testing.T, d *Demo, n int) []ConversationResult {
	t.Helper()
	ctx := context.Background()
	var out []ConversationResult
	for i := 0; i < n; i++ {
		msgs := Step5
		if i == 1 {
			msgs = SecondConversation // a reply longer than 96 bytes: cut, original length kept
		} else if i > 1 {
			msgs = []Message{{HostTest, "connection " + strconv.Itoa(i+1)}, {HostSource, "reply " + strconv.Itoa(i+1)}}
		}
		c, err := d.Conversation(ctx, 1234, msgs)
		if err != nil {
			t.Fatalf("conversation %d: %v", i+1, err)
		}
		out = append(out, c)
	}
	return out
}

func flowOfConv(c ConversationResult) Flow {
	return Flow{Proto: "tcp", Src: endpoint(c.Client.IP.String(), uint16(c.Client.Port)), Dst: endpoint(c.Server.IP.String(), uint16(c.Server.Port))}
}

func assertSameAsTcpdump(t *testing.T, ref, got []Frame) {
	t.Helper()
	if len(ref) == 0 {
		t.Fatal("tcpdump captured nothing")
	}
	if mm := Compare(ref, got); len(mm) > 0 {
		for _, m := range mm {
			t.Errorf("collected frames differ from tcpdump -s 96 on ECS-source: %s", m)
		}
		t.FailNow()
	}
	for _, f := range got {
		if len(f.Data) > 96 {
			t.Errorf("%s: frame of %d bytes, the session keeps 96", f.File, len(f.Data))
		}
		if !strings.Contains(f.File, string(filepath.Separator)+"mirror-session-01"+string(filepath.Separator)) {
			t.Errorf("%s: not in the series of mirror-session-01 (VNI 1)", f.File)
		}
	}
}

func assertNothingUnmatched(t *testing.T, got []Frame) {
	t.Helper()
	for _, f := range got {
		fl := FlowOf(f.Data)
		if fl.Proto != "tcp" || (fl.Src.Port != 1234 && fl.Dst.Port != 1234) {
			t.Errorf("%s holds a frame the filter rejects: %s", f.File, fl)
		}
	}
}

// The seed end to end with the default affinity, then a collector failure:
//   - the union of both targets' files is exactly what tcpdump -s 96 captured on
//     ECS-source with the filter's equivalent, frame for frame, per direction in order;
//   - both directions of every TCP conversation are in the same target's file, and
//     the round robin used both targets;
//   - traffic the filter rejects is in no file;
//   - with health checks on, after one target's collector stops (the one the round
//     robin favoured), the load balancer marks it unhealthy within three intervals,
//     new conversations all reach the other target, and the stopped target's files
//     stay readable (tshark) and unchanged.
func TestE2ESeedInnerSymmetricAndFailover(t *testing.T) {
	labtest.RequireRoot(t)
	const interval = time.Second
	d := startDemo(t, "e2e-sym", Options{Affinity: "inner-symmetric", HealthCheck: true, HealthInterval: interval, Receive: "xdp"})
	ctx := context.Background()
	ref, err := d.StartCapture(ctx, HostSource, filepath.Join(t.TempDir(), "ref.pcap"), 96, ReferenceFilter)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop()

	phase1 := conversations(t, d, 6)
	if _, err := d.Unmatched(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the last frames cross the load balancer

	// The failure: the collector that received more of phase 1 stops (SIGTERM
	// closes its files), so that without failover the round robin would keep
	// giving it new conversations.
	failed, survivor := HostTarget01, HostTarget02
	var recv [2]float64
	for i, tg := range Targets {
		m, err := d.Metrics(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		recv[i] = telemetry.Sum(m, "xmirror_collector_received_total")
	}
	if recv[1] > recv[0] {
		failed, survivor = survivor, failed
	}
	t.Logf("phase 1: %s received %v frames, %s %v; stopping %s's collector", Targets[0], recv[0], Targets[1], recv[1], failed)
	if err := d.StopCollector(failed); err != nil {
		t.Fatal(err)
	}
	filesFailed, err := CaptureFiles(d.TargetDir(failed))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string][32]byte{}
	for _, f := range filesFailed {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sums[f] = sha256.Sum256(b)
	}
	// Within three intervals the load balancer takes the failed backend out.
	stopped := time.Now()
	for {
		lbm, err := d.Metrics(ctx, HostLB)
		if err != nil {
			t.Fatal(err)
		}
		if telemetry.Sum(lbm, "xmirror_lb_backend_healthy", `backend="`+failed+`"`) == 0 {
			t.Logf("the load balancer marked %s unhealthy %.1fs after its collector stopped (interval %s)", failed, time.Since(stopped).Seconds(), interval)
			break
		}
		if time.Since(stopped) > 3*interval {
			t.Fatalf("three intervals after %s's collector stopped, the load balancer still counts it healthy", failed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	phase2 := conversations(t, d, 6)
	time.Sleep(500 * time.Millisecond)

	refFrames, err := ref.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.StopCollector(survivor); err != nil {
		t.Fatal(err)
	}
	got, err := d.CollectedFrames()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tcpdump captured %d frames; the targets' files hold %d", len(refFrames), len(got))
	assertSameAsTcpdump(t, refFrames, got)
	assertNothingUnmatched(t, got)

	place := Placement(got)
	used := map[string]int{}
	for i, c := range append(append([]ConversationResult{}, phase1...), phase2...) {
		fl := flowOfConv(c)
		a, b := place[fl], place[fl.Reverse()]
		t.Logf("conversation %d %s: ECS-test->ECS-source on %v, ECS-source->ECS-test on %v", i+1, fl, a, b)
		if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			t.Errorf("conversation %d %s: directions on %v and %v, want both on one target (inner-symmetric)", i+1, fl, a, b)
			continue
		}
		if i < len(phase1) {
			used[a[0]]++
		} else if a[0] != survivor {
			t.Errorf("conversation %d, after %s failed, went to %s", i+1, failed, a[0])
		}
	}
	if used[HostTarget01] == 0 || used[HostTarget02] == 0 {
		t.Errorf("round robin over %d conversations used %v, want both targets", len(phase1), used)
	}

	// The failed target's files, closed when its collector stopped, are intact.
	if len(filesFailed) == 0 {
		t.Fatalf("%s wrote no file", failed)
	}
	for _, f := range filesFailed {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(b) != sums[f] {
			t.Errorf("%s changed after its collector stopped", f)
		}
		frames, err := ReadCaptureFile(f)
		if err != nil {
			t.Fatal(err)
		}
		assertTsharkReads(t, f, len(frames))
	}
}

// With `affinity: outer` (and the source hashing directionally, as AWS does) the
// two directions of a conversation may reach different targets, as in the seed;
// the union of the files still holds every frame tcpdump captured, and each
// direction stays on one target.
func TestE2ESeedOuterAffinity(t *testing.T) {
	labtest.RequireRoot(t)
	d := startDemo(t, "e2e-outer", Options{Affinity: "outer", Receive: "xdp"})
	ctx := context.Background()
	ref, err := d.StartCapture(ctx, HostSource, filepath.Join(t.TempDir(), "ref.pcap"), 96, ReferenceFilter)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop()
	convs := conversations(t, d, 6)
	if _, err := d.Unmatched(ctx); err != nil {
		t.Fatal(err)
	}
	refFrames, got := stopAndCollect(t, d, ref)
	assertSameAsTcpdump(t, refFrames, got)
	assertNothingUnmatched(t, got)
	place := Placement(got)
	split := 0
	for i, c := range convs {
		fl := flowOfConv(c)
		a, b := place[fl], place[fl.Reverse()]
		t.Logf("conversation %d %s: ECS-test->ECS-source on %v, ECS-source->ECS-test on %v", i+1, fl, a, b)
		if len(a) != 1 || len(b) != 1 {
			t.Errorf("conversation %d: a direction spread over several targets (%v, %v); outer affinity keeps each on one", i+1, a, b)
		} else if a[0] != b[0] {
			split++
		}
	}
	t.Logf("%d of %d conversations had their directions on different targets", split, len(convs))
}

// A configuration whose health check probes the collectors' default health
// port (9091: load_balancer.health_check.port left out, as the reference
// allows) runs as the demo: the demo serves each part's /metrics and
// /healthz on that port, where before the collectors also opened
// collector.health_listen's default, :9091, and failed to start ("address
// already in use") before anything was mirrored.
func TestE2EDefaultHealthPort(t *testing.T) {
	labtest.RequireRoot(t)
	cfg, err := deriveConfig(config.SeedYAML, edit{"load_balancer.health_check.port", strconv.Itoa(int(config.DefaultHealthPort))})
	if err != nil {
		t.Fatal(err)
	}
	d := startDemo(t, "e2e-hport", Options{Config: cfg, HealthCheck: true})
	ctx := context.Background()
	ref, err := d.StartCapture(ctx, HostSource, filepath.Join(t.TempDir(), "ref.pcap"), 96, ReferenceFilter)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop()
	conversations(t, d, 2)
	refFrames, got := stopAndCollect(t, d, ref)
	assertSameAsTcpdump(t, refFrames, got)
}

func assertTsharkReads(t *testing.T, path string, frames int) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed; read with gopacket only")
		return
	}
	cmd := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.number")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // tshark wants a writable profile directory
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("tshark -r %s: %v: %s", path, err, out)
		return
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if _, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			n++
		}
	}
	if n != frames {
		t.Errorf("tshark reads %d frames in %s, gopacket %d", n, path, frames)
	}
}

// `xmirror demo --config FILE` with the seed's session keeping 200 bytes
// instead of 96: the reference capture keeps what the session keeps, and
// the check passes. Before, the reference was always `tcpdump -s 96`, and
// every frame longer than 96 bytes was reported as differing (exit 1).
func TestE2EDemoOtherPacketLength(t *testing.T) {
	labtest.RequireRoot(t)
	bin := labtest.XmirrorBinary(t)
	dir := t.TempDir()
	cfg := bytes.Replace(config.SeedYAML, []byte("packet_length: 96,"), []byte("packet_length: 200,"), 1)
	path := filepath.Join(dir, "seed200.yaml")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "demo", "--config", path, "--out", filepath.Join(dir, "out")).CombinedOutput()
	if err != nil {
		t.Fatalf("xmirror demo --config (packet_length 200): %v\n%s", err, b)
	}
	for _, want := range []string{"tcpdump -s 200 ", "identical: the "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output lacks %q:\n%s", want, b)
		}
	}
}

// `xmirror demo` itself, as the README's first command runs it: exit 0, the
// report's check line, the files, and nothing left behind.
func TestE2EDemoCommand(t *testing.T) {
	labtest.RequireRoot(t)
	bin := labtest.XmirrorBinary(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--out", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xmirror demo: %v\n%s", err, b)
	}
	text := string(b)
	for _, want := range []string{
		"[12/12] read the capture files the collectors wrote ... ok",
		"identical: the ",
		"VXLAN, flags [I] (0x08), vni 1",
		"[cut to 96 of ",
		"-- none in any file",
		"namespaces removed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	files := 0
	for _, tg := range Targets {
		fs, err := CaptureFiles(filepath.Join(out, tg))
		if err != nil {
			t.Fatal(err)
		}
		files += len(fs)
	}
	if files == 0 {
		t.Error("no capture file under --out")
	}
	left, _ := filepath.Glob(fmt.Sprintf("/run/netns/xmlab-%d-*", cmd.Process.Pid))
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if pins, _ := filepath.Glob(fmt.Sprintf("/sys/fs/bpf/xmlab-%d-*", cmd.Process.Pid)); len(pins) > 0 {
		t.Errorf("pins left behind: %v", pins)
	}
}

// stopAndCollect ends a run: the reference capture half a second after the
// last frame, then the collectors; it returns what tcpdump and the
// collectors' files hold.
func stopAndCollect(t *testing.T, d *Demo, ref *Capture) (refFrames, got []Frame) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	refFrames, err := ref.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range Targets {
		if err := d.StopCollector(tg); err != nil {
			t.Fatal(err)
		}
	}
	if got, err = d.CollectedFrames(); err != nil {
		t.Fatal(err)
	}
	return refFrames, got
}
