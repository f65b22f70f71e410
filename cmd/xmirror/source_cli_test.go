// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"net"
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

// TestSourceHelperProcess is not a test: the CLI tests below re-run the test
// binary with XMIRROR_HELPER=1 to get `xmirror` as a process inside a network
// namespace.
func TestSourceHelperProcess(t *testing.T) {
	if os.Getenv("XMIRROR_HELPER") != "1" {
		t.Skip("helper process for the source CLI tests")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(append([]string{"xmirror"}, args...)))
}

func startXmirror(t *testing.T, h *netlab.Host, args ...string) *netlab.Proc {
	t.Helper()
	full := append([]string{"env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--"}, args...)
	p, err := h.Start(full[0], full[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const cliSourceYAML = `
filters:
  - name: mirror-filter-01
    inbound:
      - {priority: 1, action: accept, protocol: tcp, source: 192.168.0.161/32, destination: 192.168.0.230/32, destination_ports: 1234}
    outbound:
      - {priority: 1, action: accept, protocol: tcp, source: 192.168.0.230/32, source_ports: 1234, destination: 192.168.0.161/32}
sessions:
  - {name: mirror-session-01, priority: 1, vni: 1, packet_length: 96, filter: mirror-filter-01, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "127.0.0.1:9464"}
`

// TestSourceCommand runs `xmirror source` as a process in a namespace: it is
// healthy once attached, mirrors, reports counters through `source status`,
// reloads on SIGHUP, refuses a bad reload, and detaches on SIGTERM.
func TestSourceCommand(t *testing.T) {
	for _, dp := range []string{"ring", "kernel", "perf"} {
		t.Run(dp, func(t *testing.T) { testSourceCommand(t, dp) })
	}
}

func testSourceCommand(t *testing.T, datapath string) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "test", Addrs: []string{"192.168.0.161/24"}},
		netlab.HostSpec{Name: "target", Addrs: []string{"192.168.0.147/24"}},
	)
	src, test := lab.Host("source"), lab.Host("test")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "xmirror.yaml")
	if err := os.WriteFile(cfgPath, []byte(cliSourceYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startXmirror(t, src, "source", "--config", cfgPath, "--datapath", datapath)
	get := func(path string) (int, string) {
		code, body, err := src.Get(context.Background(), "127.0.0.1:9464", path)
		if err != nil {
			return 0, err.Error()
		}
		return code, string(body)
	}
	waitFor(t, "healthy", p, func() bool { code, _ := get("/healthz"); return code == 200 })

	// A second source in the namespace would mirror every packet again and
	// take the first one's devices for a killed run's leftovers: it is
	// refused before it touches anything, naming the first (exit 2).
	for _, metrics := range []string{"127.0.0.1:9465", "off"} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := src.Command(ctx, "env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--",
			"source", "--config", cfgPath, "--datapath", datapath, "--metrics-listen", metrics).CombinedOutput()
		cancel()
		want := fmt.Sprintf("pid %d", p.Cmd.Process.Pid)
		if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(string(out), want) {
			t.Errorf("second source: %v, want exit 2 naming %s:\n%s", err, want, out)
		}
	}

	converse(t, src, test, 1234)
	waitFor(t, "mirrored counters", p, func() bool {
		_, m := get("/metrics")
		rows, err := parseSourceMetrics(strings.NewReader(m))
		if err != nil || len(rows) != 2 {
			return false
		}
		return rows[0].Packets > 0 && rows[1].Packets > 0
	})
	out, err := src.Run("env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--", "source", "status", "--config", cfgPath)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, want := range []string{"mirror-session-01", "inbound", "outbound", "192.168.0.147"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// A broken file on SIGHUP keeps the running configuration.
	os.WriteFile(cfgPath, []byte(strings.Replace(cliSourceYAML, "sources: [eth0]", "sources: [eth9]", 1)), 0o644)
	p.Signal(syscall.SIGHUP)
	waitFor(t, "refused reload", p, func() bool { return strings.Contains(p.Output(), "reload refused") })
	// A good one switches the rules.
	os.WriteFile(cfgPath, []byte(strings.ReplaceAll(cliSourceYAML, "1234", "5678")), 0o644)
	p.Signal(syscall.SIGHUP)
	waitFor(t, "reload", p, func() bool { return strings.Contains(p.Output(), "mirror source reloaded") })

	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM:\n%s", p.Output())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.Output())
	}
	if out, err := src.Run("ip", "-o", "link", "show"); err != nil || strings.Contains(out, "xmirror0") {
		t.Errorf("devices left after stop (%v):\n%s", err, out)
	}
}

func TestSourceCommandRefusesBadConfig(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}})
	src := lab.Host("source")
	good := filepath.Join(t.TempDir(), "good.yaml")
	os.WriteFile(good, []byte(cliSourceYAML), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(cliSourceYAML, "sources: [eth0]", "sources: [eth9]", 1)), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, `interface "eth9"`},
		{[]string{"--config", good, "--send-priority", "low"}, `--send-priority: "low"`},
		{[]string{"--config", good, "--datapath", "xdp"}, `--datapath: "xdp"`},
		{[]string{"--config", good, "--attach", "xdp"}, `--attach: "xdp"`},
		{[]string{"--config", good, "--max-delay", "5s"}, `--max-delay: 5s`},
	} {
		p := startXmirror(t, src, append([]string{"source", "--metrics-listen", "off"}, c.args...)...)
		<-p.Done()
		err := p.Wait()
		var code int
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
		if code != exitUsage || !strings.Contains(p.Output(), c.want) {
			t.Errorf("%v: exit %d (%v), want %d with %s:\n%s", c.args, code, err, exitUsage, c.want, p.Output())
		}
	}
}

func waitFor(t *testing.T, what string, p *netlab.Proc, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output:\n%s", what, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converse opens a TCP connection from test to source:port and exchanges a
// line each way.
func converse(t *testing.T, src, test *netlab.Host, port int) {
	t.Helper()
	addr := net.JoinHostPort("192.168.0.230", strconv.Itoa(port))
	var ln net.Listener
	if err := src.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 6)
		io.ReadFull(c, buf)
		c.Write([]byte("world\n"))
		c.Close()
	}()
	if err := test.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("hello\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSourceTargetProblem: with the target absent from its subnet, the
// running source says so in /healthz (503 and the reason) and in `source
// status`. Before, it counted the packets as sent and answered 200.
func TestSourceTargetProblem(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "test", Addrs: []string{"192.168.0.161/24"}},
	)
	src, test := lab.Host("source"), lab.Host("test")
	cfgPath := filepath.Join(t.TempDir(), "xmirror.yaml")
	yaml := strings.NewReplacer("protocol: tcp, ", "protocol: icmp, ", ", destination_ports: 1234", "", ", source_ports: 1234", "",
		"target: 192.168.0.147", "target: 192.168.0.99").Replace(cliSourceYAML)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startXmirror(t, src, "source", "--config", cfgPath)
	defer p.Stop()
	var code int
	var body string
	get := func() bool {
		c, b, err := src.Get(context.Background(), "127.0.0.1:9464", "/healthz")
		code, body = c, string(b)
		return err == nil
	}
	waitFor(t, "healthy", p, func() bool { return get() && code == 200 })
	ping, err := test.Start("ping", "-i", "0.2", "-c", "50", "192.168.0.230")
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop()
	waitFor(t, "unhealthy with the reason", p, func() bool {
		return get() && code == 503 && strings.Contains(body, "neighbour_unresolved")
	})
	if !strings.Contains(body, "192.168.0.99") {
		t.Errorf("/healthz does not name the target: %q", body)
	}
	out, err := src.Run("env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--", "source", "status", "--config", cfgPath)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !strings.Contains(out, "TARGET") || !strings.Contains(out, "neighbour_unresolved") {
		t.Errorf("status does not show the target's problem:\n%s", out)
	}
	if !strings.Contains(p.Output(), "mirror target unreachable") {
		t.Errorf("no log line about the target:\n%s", p.Output())
	}
}

// TestSourceStatusInterfaces: `source status` shows the source interfaces
// and why one is not mirrored. It showed sessions, counters and targets
// only: with a source interface deleted, /healthz said 503 and status
// showed nothing wrong.
func TestSourceStatusInterfaces(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "test", Addrs: []string{"192.168.0.161/24"}},
		netlab.HostSpec{Name: "target", Addrs: []string{"192.168.0.147/24"}},
	)
	src, test := lab.Host("source"), lab.Host("test")
	if err := src.Veth("xm-a", "10.9.0.1/24", test, "xm-b", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "xmirror.yaml")
	yaml := strings.Replace(cliSourceYAML, "sources: [eth0]", "sources: [eth0, xm-a]", 1)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startXmirror(t, src, "source", "--config", cfgPath)
	defer p.Stop()
	healthz := func() (int, string) {
		c, b, err := src.Get(context.Background(), "127.0.0.1:9464", "/healthz")
		if err != nil {
			return 0, ""
		}
		return c, string(b)
	}
	waitFor(t, "healthy", p, func() bool { c, _ := healthz(); return c == 200 })
	if _, err := src.Run("ip", "link", "del", "xm-a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unhealthy naming xm-a", p, func() bool { c, b := healthz(); return c == 503 && strings.Contains(b, "xm-a") })
	out, err := src.Run("env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--", "source", "status", "--config", cfgPath)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var eth0, xma string
	for _, line := range strings.Split(out, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "eth0":
			eth0 = line
		case len(f) > 0 && f[0] == "xm-a":
			xma = line
		}
	}
	if !strings.Contains(out, "INTERFACE") || !strings.Contains(eth0, "yes") || !strings.Contains(xma, "no") || !strings.Contains(xma, "gone") {
		t.Errorf("status does not show xm-a not mirrored (eth0 %q, xm-a %q):\n%s", eth0, xma, out)
	}
}
