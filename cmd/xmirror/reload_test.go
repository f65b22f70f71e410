// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestReloadRefusesUnboundedFiles points a running lb, source and collector at /dev/zero, a
// FIFO and an oversized file and sends SIGHUP each time: every reload is refused
// at once with the reason, the process stays small, and SIGTERM still stops it
// (before, /dev/zero grew the process to gigabytes and it ignored SIGTERM).
func TestReloadRefusesUnboundedFiles(t *testing.T) {
	labtest.RequireRoot(t)
	lbYAML := "load_balancer:\n  listener: {vip: 192.168.0.147, interfaces: [eth0]}\n  backends: [{address: 192.168.0.6}]\nmetrics: {listen: \"off\"}\n"
	for _, tc := range []struct {
		part, yaml, refused string
		args                func(dir string) []string
	}{
		{"source", cliSourceYAML, "reload refused", func(string) []string { return nil }},
		{"lb", lbYAML, "reload failed", func(string) []string {
			return []string{"--pin-path", fmt.Sprintf("/sys/fs/bpf/xmirror-reload-test-%d", os.Getpid()), "--detach-on-exit"}
		}},
		{"collect", "collector: {listen: \"127.0.0.1:0\"}\nmetrics: {listen: \"off\"}\n", "configuration refused", func(dir string) []string {
			return []string{"--out", filepath.Join(dir, "pcap")}
		}},
	} {
		t.Run(tc.part, func(t *testing.T) {
			lab := labtest.ForTest(t, netlab.HostSpec{Name: "host", Addrs: []string{"192.168.0.230/24"}})
			dir := t.TempDir()
			good := filepath.Join(dir, "good.yaml")
			os.WriteFile(good, []byte(tc.yaml), 0o644)
			fifo := filepath.Join(dir, "fifo")
			syscall.Mkfifo(fifo, 0o600)
			big := filepath.Join(dir, "big.yaml")
			f, _ := os.Create(big)
			f.Truncate(50 << 20)
			f.Close()
			link := filepath.Join(dir, "xmirror.yaml")
			os.Symlink(good, link)

			p := startXmirror(t, lab.Host("host"), append([]string{tc.part, "--config", link}, tc.args(dir)...)...)
			waitFor(t, "started", p, func() bool {
				out := p.Output()
				return strings.Contains(out, "load balancer running") || strings.Contains(out, "mirror source") || strings.Contains(out, "collector listening")
			})
			for i, target := range []string{"/dev/zero", fifo, big} {
				os.Remove(link)
				os.Symlink(target, link)
				p.Signal(syscall.SIGHUP)
				waitFor(t, "refused reload of "+target, p, func() bool {
					return strings.Count(p.Output(), tc.refused) == i+1 && strings.Contains(p.Output(), "read config "+link)
				})
			}
			if hwm := peakRSSKiB(t, p.Cmd.Process.Pid); hwm > 200<<10 {
				t.Errorf("peak RSS %d KiB after the refused reloads", hwm)
			}
			p.Signal(syscall.SIGTERM)
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10 s after SIGTERM:\n%s", p.Output())
			}
			if err := p.Wait(); err != nil {
				t.Errorf("exit: %v\n%s", err, p.Output())
			}
		})
	}
}

// peakRSSKiB is VmHWM of /proc/PID/status.
func peakRSSKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestLBReloadSaysMetricsListenNeedsRestart: a SIGHUP that changes
// metrics.listen was logged "reloaded" and nothing else, while /metrics
// stayed where it was (and `lb status --config` then asked the new
// address). It is logged as a change only a restart applies, like the
// interfaces and the pin path; with --metrics-listen the file does not
// decide, so nothing is said.
func TestLBReloadSaysMetricsListenNeedsRestart(t *testing.T) {
	labtest.RequireRoot(t)
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "host", Addrs: []string{"192.168.0.230/24"}})
	for _, flag := range []bool{false, true} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "lb.yaml")
		yaml := func(addr string) []byte {
			return []byte("load_balancer:\n  listener: {vip: 192.168.0.147, interfaces: [eth0]}\n  backends: [{address: 192.168.0.6}]\nmetrics: {listen: \"" + addr + "\"}\n")
		}
		os.WriteFile(cfg, yaml("127.0.0.1:9190"), 0o644)
		args := []string{"lb", "--config", cfg, "--pin-path", fmt.Sprintf("/sys/fs/bpf/xmirror-reload-test-%d", os.Getpid()), "--detach-on-exit"}
		if flag {
			args = append(args, "--metrics-listen", "127.0.0.1:9192")
		}
		p := startXmirror(t, lab.Host("host"), args...)
		waitFor(t, "started", p, func() bool { return strings.Contains(p.Output(), "load balancer running") })
		os.WriteFile(cfg, yaml("127.0.0.1:9191"), 0o644)
		p.Signal(syscall.SIGHUP)
		waitFor(t, "reloaded", p, func() bool { return strings.Contains(p.Output(), "msg=reloaded") })
		if warned := strings.Contains(p.Output(), "metrics.listen changed"); warned == flag {
			t.Errorf("--metrics-listen given %v: warned %v\n%s", flag, warned, p.Output())
		}
		p.Signal(syscall.SIGTERM)
		<-p.Done()
	}
}

// TestStopDuringReloadStorm: a SIGTERM among SIGHUPs that come faster than
// the lb reloads stops it. The stop and reload signals shared one channel,
// which the burst kept full, and the runtime drops a signal whose channel is
// full: the SIGTERM was lost and the lb ran on after the burst ended.
func TestStopDuringReloadStorm(t *testing.T) {
	labtest.RequireRoot(t)
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "host", Addrs: []string{"192.168.0.230/24"}})
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	// A Maglev table of the default size: each reload writes 65,537 entries.
	os.WriteFile(cfg, []byte("load_balancer:\n  listener: {vip: 192.168.0.147, interfaces: [eth0]}\n  algorithm: maglev\n  backends: [{address: 192.168.0.6}, {address: 192.168.0.7}]\nmetrics: {listen: \"off\"}\n"), 0o644)
	p := startXmirror(t, lab.Host("host"), "lb", "--config", cfg,
		"--pin-path", fmt.Sprintf("/sys/fs/bpf/xmirror-reload-test-%d", os.Getpid()), "--detach-on-exit")
	waitFor(t, "started", p, func() bool { return strings.Contains(p.Output(), "load balancer running") })

	storm := make(chan struct{})
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		for {
			select {
			case <-storm:
				return
			default:
			}
			p.Signal(syscall.SIGHUP)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
	}
	close(storm)
	<-stormDone
	select {
	case <-p.Done():
	default:
		p.Signal(syscall.SIGTERM)
		t.Fatalf("still running 5 s after a SIGTERM sent during a SIGHUP burst (%d reloads logged)", strings.Count(p.Output(), "msg=reloaded"))
	}
	if !strings.Contains(p.Output(), "signal=terminated") {
		t.Errorf("no stop logged:\n%s", p.Output())
	}
}
