// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"net"
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

// helperCmd is `xmirror args...` as a child process (the test binary in helper
// mode), optionally behind a wrapper such as unshare or setpriv.
func helperCmd(ctx context.Context, wrapper []string, args ...string) *exec.Cmd {
	full := append(append(wrapper, os.Args[0], "-test.run=^TestSourceHelperProcess$", "--"), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = append(os.Environ(), "XMIRROR_HELPER=1")
	return cmd
}

// TestCheckSystemPasses: this machine (kernel 6.18, root) runs every role.
func TestCheckSystemPasses(t *testing.T) {
	labtest.RequireRoot(t)
	code, out, errOut := runCaptured(t, "check", "--system", "--config", filepath.Join(t.TempDir(), "none.yaml"))
	if code != exitUsage {
		t.Errorf("--system with a missing explicit --config: exit %d, want %d", code, exitUsage)
	}
	code, out, errOut = runCaptured(t, "check", "--system")
	if code != exitOK {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"CHECK (role source)", "tcx attach", "tc clsact", "SchedCLS helpers", "CHECK (role lb)", "XDP helpers",
		"bpffs", "CHECK (role collect)", "xmirror source can run", "xmirror lb can run", "xmirror collect can run"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runCaptured(t, "check", "--system", "--role", "proxy"); code != exitUsage {
		t.Errorf("unknown role: exit %d, want %d", code, exitUsage)
	}
}

// TestCheckSystemWithheld: with bpffs unmounted in a private mount namespace and
// CAP_SYS_ADMIN and CAP_BPF out of the bounding set, `check --system --role lb`
// fails, naming both (a bpffs mounted in a private namespace would not outlive
// the process anyway), and so does `xmirror lb` itself before touching anything.
func TestCheckSystemWithheld(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (Debian package util-linux): run make deps", tool)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lb.yaml")
	os.WriteFile(cfg, []byte("load_balancer:\n  listener: {vip: 10.0.0.1, interfaces: [lo]}\n  backends: [{address: 10.0.0.2}]\n"), 0o600)
	wrap := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`umount -l /sys/fs/bpf 2>/dev/null; exec setpriv --bounding-set -sys_admin,-bpf --inh-caps=-all "$@"`, "sh"}
	for _, args := range [][]string{
		{"check", "--system", "--role", "lb", "--config", cfg},
		{"lb", "--config", cfg, "--metrics-listen", "off"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := helperCmd(ctx, wrap, args...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if err == nil || !asExit(err, &ee) || ee.ExitCode() != exitRuntime {
			t.Fatalf("%v: %v, want exit %d:\n%s", args, err, exitRuntime, out)
		}
		for _, want := range []string{"capabilities", "missing CAP_BPF", "bpffs", "/sys/fs/bpf is not mounted in this mount namespace", "pins made here would vanish"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// TestConfigReadingBounded: a configuration path that is /dev/zero, a FIFO, a
// directory, a file over the limit or an empty file is refused by every part
// with exit 2 and the reason, at once and without growing.
func TestConfigReadingBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	f, _ := os.Create(big)
	f.Truncate(50 << 20)
	f.Close()
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	cases := []struct{ path, why string }{
		{"/dev/zero", "a character device, not a regular file"},
		{fifo, "a FIFO, not a regular file"},
		{dir, "a directory, not a regular file"},
		{big, "more than the limit"},
		{empty, "it is empty"},
	}
	for _, part := range [][]string{{"check"}, {"lb"}, {"source"}, {"collect"}, {"lb", "status"}} {
		for _, tc := range cases {
			t.Run(strings.Join(part, "-")+filepath.Base(tc.path), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				cmd := helperCmd(ctx, nil, append(part, "--config", tc.path)...)
				out, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("still running after 20 s: killed")
				}
				var ee *exec.ExitError
				if !asExit(err, &ee) || ee.ExitCode() != exitUsage {
					t.Fatalf("%v, want exit %d:\n%s", err, exitUsage, out)
				}
				if !strings.Contains(string(out), tc.why) {
					t.Errorf("output lacks %q:\n%s", tc.why, out)
				}
				// The test binary alone is about 40 MiB resident; reading 50 MiB or
				// /dev/zero would show.
				if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss; rss > 100<<10 {
					t.Errorf("max RSS %d KiB", rss)
				}
			})
		}
	}
}

// TestCheckSystemXDPCollector: a collector with receive: xdp needs what the lb
// needs, on the interfaces that hold its listen address; without the
// capabilities it is refused, while receive: auto falls back to sockets and
// needs none.
func TestCheckSystemXDPCollector(t *testing.T) {
	labtest.RequireRoot(t)
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "col", Addrs: []string{"192.168.0.6/24"}})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "col.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: \"192.168.0.6:4789\", receive: xdp}\n"), 0o644)
	run := func(wrapper ...string) (string, error) {
		args := append(wrapper, "env", "XMIRROR_HELPER=1", os.Args[0], "-test.run=^TestSourceHelperProcess$", "--",
			"check", "--system", "--role", "collect", "--config", cfg)
		return lab.Host("col").Run(args[0], args[1:]...)
	}
	out, err := run()
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	for _, want := range []string{"CAP_BPF CAP_NET_ADMIN CAP_PERFMON", "program type XDP", "xdp eth0", "xmirror collect can run"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("setpriv", "--bounding-set", "-sys_admin,-bpf,-perfmon", "--inh-caps=-all")
	if err == nil || !strings.Contains(out, "missing CAP_BPF CAP_PERFMON") {
		t.Errorf("without CAP_BPF: %v, want a refusal naming it:\n%s", err, out)
	}
	os.WriteFile(cfg, []byte("collector: {listen: \"192.168.0.6:4789\", receive: auto}\n"), 0o644)
	if out, err := run("setpriv", "--bounding-set", "-sys_admin,-bpf,-perfmon", "--inh-caps=-all"); err != nil || !strings.Contains(out, "none needed") {
		t.Errorf("receive auto without capabilities: %v:\n%s", err, out)
	}
}

// TestCheckSystemCollectListen: a collector whose listen address no interface
// holds cannot receive; `check --system` said it could run.
func TestCheckSystemCollectListen(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		name, collector string
		code            int
		want            string
	}{
		{"xdp, address of no interface", "{listen: '10.250.0.2:47061', receive: xdp}", exitRuntime, "no interface of this host holds it"},
		{"socket, address of no interface", "{listen: '10.250.0.2:47061', receive: socket}", exitRuntime, "no interface of this host holds it"},
		{"xdp, any address", "{listen: '0.0.0.0:47061', receive: xdp}", exitUsage, "is the wildcard"},
		{"socket, loopback", "{listen: '127.0.0.1:47061', receive: socket}", exitOK, "held by lo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(cfg, []byte("collector: "+c.collector+"\n"), 0o600)
			code, out, errOut := runCaptured(t, "check", "--system", "--role", "collect", "--config", cfg)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}

// TestCheckSystemCollectTap: collector.tap takes CAP_NET_ADMIN and
// /dev/net/tun; `check --system --role collect` said "none needed, can run"
// for it, and the collector then failed at start.
func TestCheckSystemCollectTap(t *testing.T) {
	labtest.RequireRoot(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: '127.0.0.1:47062', tap: xm-tap9}\n"), 0o600)
	wrap := []string{"setpriv", "--bounding-set", "-net_admin", "--inh-caps=-all", "--"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := helperCmd(ctx, wrap, "check", "--system", "--role", "collect", "--config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != exitRuntime || !strings.Contains(string(out), "missing CAP_NET_ADMIN") {
		t.Errorf("%v, want exit %d naming CAP_NET_ADMIN:\n%s", err, exitRuntime, out)
	}
	code, stdout, errOut := runCaptured(t, "check", "--system", "--role", "collect", "--config", cfg)
	if code != exitOK || !strings.Contains(stdout, "/dev/net/tun opens") {
		t.Errorf("as root: exit %d, want a pass of the tap device row:\n%s%s", code, stdout, errOut)
	}
}

// TestCheckSystemCollectTapReadOnlySysctl: the TAP device is made passive
// through /proc/sys/net, which the collector's unit mounts read-only
// (ProtectKernelTunables=yes). With the drop-in docs/deploy.md gave
// (capabilities, /dev/net/tun) `check --system --role collect` said the
// collector could run, and its start then failed on "open
// /proc/sys/net/ipv6/conf/xm-tap8/accept_ra: read-only file system"; both
// now name the setting to change.
func TestCheckSystemCollectTapReadOnlySysctl(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "col", Addrs: []string{"10.0.0.1/24"}})
	h := lab.Host("col")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: '127.0.0.1:47064', receive: socket, output_dir: '"+t.TempDir()+"', tap: xm-tap8}\n"), 0o644)
	script := `mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"`
	for _, args := range [][]string{{"check", "--system", "--role", "collect", "--config", cfg}, {"collect", "--config", cfg}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmdArgs := append([]string{"--net=/run/netns/" + h.NS, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
			os.Args[0], "-test.run=^TestSourceHelperProcess$", "--"}, args...)
		cmd := exec.CommandContext(ctx, "nsenter", cmdArgs...)
		cmd.Env = append(os.Environ(), "XMIRROR_HELPER=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !asExit(err, &ee) || ee.ExitCode() != exitRuntime || !strings.Contains(string(out), "ProtectKernelTunables=no") {
			t.Errorf("%s: %v, want exit %d naming ProtectKernelTunables=no:\n%s", args[0], err, exitRuntime, out)
		}
	}
}

// TestCheckSystemForwarding: in a container /proc/sys is read-only, so the
// lb cannot turn forwarding on for its listeners; the check says so (it
// said "can run", and the lb failed at start).
func TestCheckSystemForwarding(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}})
	h := lab.Host("lb")
	if _, err := h.Run("sysctl", "-w", "net.ipv4.conf.eth0.forwarding=0"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	os.WriteFile(cfg, []byte("load_balancer:\n  listener: {vip: 10.0.0.1, interfaces: [eth0]}\n  backends: [{address: 10.0.0.2}]\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"`
	args := append([]string{"--net=/run/netns/" + h.NS, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
		os.Args[0], "-test.run=^TestSourceHelperProcess$", "--"}, "check", "--system", "--role", "lb", "--config", cfg)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append(os.Environ(), "XMIRROR_HELPER=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ExitCode() != exitRuntime || !strings.Contains(string(out), "sysctl -w net.ipv4.conf.eth0.forwarding=1") {
		t.Errorf("%v, want exit %d naming the sysctl:\n%s", err, exitRuntime, out)
	}
}

// TestCheckSystemCollectPostRotate: since post_rotate is checked when the
// collector starts, a command that cannot be run is refused there; `check
// --system --role collect`, the check docs/deploy.md runs before a restart,
// said "xmirror collect can run on this host" for it, and after an upgrade
// the restarted collector then stayed down.
func TestCheckSystemCollectPostRotate(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		name, hook string
		code       int
		want       string
	}{
		{"missing", "/nonexistent/ship-pcap --gzip", exitRuntime, `post_rotate "/nonexistent/ship-pcap --gzip" cannot be run`},
		{"present", "true", exitOK, "post_rotate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSystemCollect(t, "post_rotate: '"+c.hook+"'", c.code, c.want)
		})
	}
}

// checkSystemCollect runs `check --system --role collect` on a socket
// collector's file with the collector keys extra, and wants exit code and a
// line holding want.
func checkSystemCollect(t *testing.T, extra string, code int, want string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: '127.0.0.1:47063', receive: socket, output_dir: '"+t.TempDir()+"', "+extra+"}\n"), 0o600)
	got, out, errOut := runCaptured(t, "check", "--system", "--role", "collect", "--config", cfg)
	if got != code || !strings.Contains(out+errOut, want) {
		t.Errorf("exit %d, want %d with %q:\n%s%s", got, code, want, out, errOut)
	}
}

// TestCheckSystemCollectGroup: a collector.group this host does not have
// passed `check --system --role collect` ("xmirror collect can run on this
// host"), and the collector then refused to start (exit 2, "is no group on
// this host"). The row fails now.
func TestCheckSystemCollectGroup(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		name, group string
		code        int
		want        string
	}{
		{"missing", "xmnogroup9", exitRuntime, `"xmnogroup9" is no group on this host`},
		{"present", "root", exitOK, "root is gid 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSystemCollect(t, "group: "+c.group, c.code, c.want)
		})
	}
}

// TestCheckSystemRoleWithoutSection: `check --system --role lb` with a
// file that has no load_balancer section (a collector host's) said "xmirror
// lb can run on this host", and `xmirror lb` with that file then refused to
// start ("no load_balancer section"); so did --role source with a file
// without sessions. The configuration row fails for the role asked, and only
// warns when every role is checked.
func TestCheckSystemRoleWithoutSection(t *testing.T) {
	labtest.RequireRoot(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: '127.0.0.1:47065', receive: socket, output_dir: '"+t.TempDir()+"'}\n"), 0o600)
	for _, role := range []struct{ name, want string }{
		{"lb", "has no load_balancer section: xmirror lb refuses to start with it"},
		{"source", "has no sessions: xmirror source refuses to start with it"},
	} {
		code, out, errOut := runCaptured(t, "check", "--system", "--role", role.name, "--config", cfg)
		if code != exitRuntime || !strings.Contains(out, role.want) || !strings.Contains(out, "CANNOT run") {
			t.Errorf("--role %s: exit %d, want %d with %q:\n%s%s", role.name, code, exitRuntime, role.want, out, errOut)
		}
	}
	_, out, _ := runCaptured(t, "check", "--system", "--config", cfg)
	warned := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		warned = warned || len(f) > 2 && f[0] == "configuration" && f[1] == "warn" && strings.Contains(line, "no load_balancer section")
	}
	if !warned {
		t.Errorf("every role: no warning row for the lb:\n%s", out)
	}
}

// TestCheckSystemMetricsPortTaken: a metrics.listen port another process
// listens on (a Prometheus on :9090, another part with the same address)
// passed `check --system` ("can run on this host"), and the part then ended
// at start: "metrics listen on ...: address already in use", exit 1. Its row
// fails now, naming the process.
func TestCheckSystemMetricsPortTaken(t *testing.T) {
	labtest.RequireRoot(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("collector: {listen: '127.0.0.1:47066', receive: socket, output_dir: '"+t.TempDir()+"', health_listen: 'off'}\n"+
		"metrics: {listen: '"+busy.Addr().String()+"'}\n"), 0o600)
	code, out, errOut := runCaptured(t, "check", "--system", "--role", "collect", "--config", cfg)
	want := fmt.Sprintf("in use by pid %d (", os.Getpid())
	if code != exitRuntime || !strings.Contains(out, want) {
		t.Errorf("exit %d, want %d with %q:\n%s%s", code, exitRuntime, want, out, errOut)
	}
	busy.Close()
	if code, out, errOut := runCaptured(t, "check", "--system", "--role", "collect", "--config", cfg); code != exitOK || !strings.Contains(out, "metrics.listen "+busy.Addr().String()) {
		t.Errorf("port free: exit %d:\n%s%s", code, out, errOut)
	}
}

// TestCheckSystemSourceInterfaces: `check --system --role source` (what
// docs/deploy.md runs before a restart) looked at the kernel and BPF only: it
// said "xmirror source can run on this host" for sources the start then
// refused (an interface that does not exist, or since this release one
// without Ethernet headers that the previous release started with), and after
// an upgrade the restarted source stayed down. It now resolves the sessions
// as the start does.
func TestCheckSystemSourceInterfaces(t *testing.T) {
	labtest.RequireRoot(t)
	const yaml = `filters:
  - name: f
    inbound:
      - {priority: 1, action: accept, protocol: icmp, ethertype: ipv4}
sessions:
  - {name: s, priority: 1, vni: 1, enabled: true, filter: f, sources: [IFACE], target: 127.0.0.1}
`
	for _, c := range []struct {
		name, iface string
		code        int
		want        string
	}{
		{"missing", "xmnone9", exitRuntime, `session s: interface "xmnone9"`},
		{"present", "lo", exitOK, "sources and targets"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "s.yaml")
			os.WriteFile(cfg, []byte(strings.Replace(yaml, "IFACE", c.iface, 1)), 0o600)
			code, out, errOut := runCaptured(t, "check", "--system", "--role", "source", "--config", cfg)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}
