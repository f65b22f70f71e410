// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
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

// TestReloadCounted: a SIGHUP whose file is refused left the running
// configuration in place and said so only in the log for source and
// collect (the lb counted it in xmirror_lb_reload_errors_total): after
// `systemctl reload` of a broken edit, nothing a scrape or an alert sees
// told that the source or collector ran the old configuration. Every part
// now counts reloads applied and refused.
func TestReloadCounted(t *testing.T) {
	labtest.RequireRoot(t)
	const metricsAt = "127.0.0.1:9466"
	metrics := "metrics: {listen: \"" + metricsAt + "\"}\n"
	lbYAML := "load_balancer:\n  listener: {vip: 192.168.0.147, interfaces: [eth0]}\n  backends: [{address: 192.168.0.6}]\n" + metrics
	for _, tc := range []struct {
		part, prefix, yaml string
		args               func(dir string) []string
	}{
		{"source", "xmirror_source", strings.Replace(cliSourceYAML, "metrics: {listen: \"127.0.0.1:9464\"}\n", metrics, 1), func(string) []string { return nil }},
		{"lb", "xmirror_lb", lbYAML, func(string) []string {
			return []string{"--pin-path", fmt.Sprintf("/sys/fs/bpf/xmirror-reload-test-%d", os.Getpid()), "--detach-on-exit"}
		}},
		{"collect", "xmirror_collector", "collector: {listen: \"127.0.0.1:0\", health_listen: \"off\"}\n" + metrics, func(dir string) []string {
			return []string{"--out", filepath.Join(dir, "pcap")}
		}},
	} {
		t.Run(tc.part, func(t *testing.T) {
			if !strings.Contains(tc.yaml, metricsAt) {
				t.Fatalf("the %s configuration does not serve /metrics at %s", tc.part, metricsAt)
			}
			lab := labtest.ForTest(t, netlab.HostSpec{Name: "host", Addrs: []string{"192.168.0.230/24"}})
			h := lab.Host("host")
			dir := t.TempDir()
			cfg := filepath.Join(dir, "xmirror.yaml")
			os.WriteFile(cfg, []byte(tc.yaml), 0o644)
			p := startXmirror(t, h, append([]string{tc.part, "--config", cfg}, tc.args(dir)...)...)
			defer p.Stop()
			counter := func(name string) string {
				_, body, err := h.Get(context.Background(), metricsAt, "/metrics")
				if err != nil {
					return ""
				}
				for _, line := range strings.Split(string(body), "\n") {
					if v, ok := strings.CutPrefix(line, name+" "); ok {
						return v
					}
				}
				return ""
			}
			waitFor(t, "started", p, func() bool { return counter(tc.prefix+"_reload_errors_total") == "0" })
			os.WriteFile(cfg, []byte("sessions: [{name: half-written"), 0o644)
			p.Signal(syscall.SIGHUP)
			waitFor(t, "the refused reload counted", p, func() bool {
				return counter(tc.prefix+"_reload_errors_total") == "1" && counter(tc.prefix+"_reloads_total") == "0" &&
					counter(tc.prefix+"_config_last_reload_successful") == "0"
			})
			os.WriteFile(cfg, []byte(tc.yaml), 0o644)
			p.Signal(syscall.SIGHUP)
			waitFor(t, "the applied reload counted", p, func() bool {
				return counter(tc.prefix+"_reload_errors_total") == "1" && counter(tc.prefix+"_reloads_total") == "1" &&
					counter(tc.prefix+"_config_last_reload_successful") == "1"
			})
		})
	}
}

// TestSourceReloadWithoutSessions: a SIGHUP that read the file cut short
// before its sessions (an editor or a copy writing it in place) was applied:
// "mirror source reloaded sessions=0", every interface detached, nothing
// mirrored, while a start with that file is refused ("no sessions"). The
// reload is refused the same way and the running sessions stay.
func TestSourceReloadWithoutSessions(t *testing.T) {
	labtest.RequireRoot(t)
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "host", Addrs: []string{"192.168.0.230/24"}})
	cfg := filepath.Join(t.TempDir(), "xmirror.yaml")
	os.WriteFile(cfg, []byte(cliSourceYAML), 0o644)
	p := startXmirror(t, lab.Host("host"), "source", "--config", cfg, "--metrics-listen", "off")
	defer p.Stop()
	waitFor(t, "started", p, func() bool { return strings.Contains(p.Output(), "mirror source attached") })
	half, _, _ := strings.Cut(cliSourceYAML, "sessions:")
	os.WriteFile(cfg, []byte(half), 0o644)
	p.Signal(syscall.SIGHUP)
	waitFor(t, "the reload refused", p, func() bool {
		return strings.Contains(p.Output(), "reload refused") || strings.Contains(p.Output(), "mirror source reloaded")
	})
	if !strings.Contains(p.Output(), "no sessions") || strings.Contains(p.Output(), "mirror source reloaded") {
		t.Errorf("a file without sessions was not refused:\n%s", p.Output())
	}
}
