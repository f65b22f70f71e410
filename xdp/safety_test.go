// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// lbPins lists the load balancer's pins under dir.
func lbPins(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "lb_") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPinPathLock: a second control plane on the same pin path is refused
// and told the first one's pid; once the first closes, it may start.
func TestPinPathLock(t *testing.T) {
	labtest.RequireRoot(t)
	pin := testPinPath(t)
	first, err := New(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{PinPath: pin})
	if !errors.Is(err, ErrPinPathBusy) {
		first.Close()
		t.Fatalf("second New on the same pin path: %v, want ErrPinPathBusy", err)
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not name the holder (%s)", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := New(Options{PinPath: pin})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	second.Close()
}

// TestFailedStartUndone: a start that fails after the maps were pinned
// leaves nothing behind on a fresh pin path; over a previous run's pins it
// gives the interface its program back and makes that run's slot live again.
func TestFailedStartUndone(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, PeerXDP: true})
	h := lab.Host("lb")
	cfg := lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1))
	broken := lbConfig("maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1))
	broken.Listener.Interfaces = []string{"eth0", "nosuch0"}
	// failedStart starts a Balancer on pin whose attach fails (an interface
	// is missing) and aborts it, as `xmirror lb` does.
	failedStart := func(pin string) error {
		b, err := New(Options{PinPath: pin})
		if err != nil {
			return err
		}
		if err := b.Apply(broken); err != nil {
			return err
		}
		if err := b.Attach(); err == nil {
			b.Close()
			return errors.New("attach to a missing interface succeeded")
		}
		return b.Abort()
	}

	t.Run("fresh pin path", func(t *testing.T) {
		pin := testPinPath(t)
		err := h.Do(func() error { return failedStart(pin) })
		if err != nil {
			t.Fatal(err)
		}
		if left := lbPins(t, pin); len(left) > 0 {
			t.Errorf("a failed start left pins: %v", left)
		}
		if attachedProg(t, h) != 0 {
			t.Errorf("a failed start left an XDP program on eth0")
		}
	})

	t.Run("over a previous run", func(t *testing.T) {
		pin := testPinPath(t)
		var progBefore uint32
		var slotBefore uint32
		err := h.Do(func() error {
			b, err := startBalancer(Options{PinPath: pin}, cfg)
			if err != nil {
				return err
			}
			slotBefore, _ = b.activeSlot()
			return b.Close() // keeps forwarding: pins stay
		})
		if err != nil {
			t.Fatal(err)
		}
		progBefore = attachedProg(t, h)
		pinsBefore := lbPins(t, pin)
		err = h.Do(func() error { return failedStart(pin) })
		if err != nil {
			t.Fatal(err)
		}
		if got := attachedProg(t, h); got != progBefore {
			t.Errorf("eth0 runs program %d after the failed start, the previous run's was %d", got, progBefore)
		}
		if got := lbPins(t, pin); strings.Join(got, ",") != strings.Join(pinsBefore, ",") {
			t.Errorf("pins %v after the failed start, before %v", got, pinsBefore)
		}
		st, err := ReadPinnedStatus(pin)
		if err != nil {
			t.Fatal(err)
		}
		if st.Slot != slotBefore || st.Algorithm != "wrr" {
			t.Errorf("status shows slot %d (%s) after the failed start, the previous run's was %d (wrr)", st.Slot, st.Algorithm, slotBefore)
		}
	})
}

// attachedProg is the id of the XDP program on the host's eth0 (0: none).
func attachedProg(t *testing.T, h *netlab.Host) uint32 {
	t.Helper()
	out, err := h.Run("ip", "-d", "link", "show", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(out, "prog/xdp id ")
	if !ok {
		return 0
	}
	id, _ := strconv.Atoi(strings.Fields(after)[0])
	return uint32(id)
}

// runExit runs the binary to its end in h and returns its exit code and output.
func runExit(t *testing.T, h *netlab.Host, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := h.Command(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return 0, string(out)
}

const safetyConfig = `load_balancer:
  listener: {name: listener-A, vip: 10.0.0.1, port: 4789, interfaces: [%s]}
  backends:
    - {name: target-01, address: %s, port: 4789, weight: %d}
  health_check: {enabled: %v, type: tcp, port: 9091, interval: 200ms, timeout: 100ms,
                 healthy_threshold: 1, unhealthy_threshold: 1, all_unhealthy: %s}
metrics: {listen: 127.0.0.1:9190}
`

// TestStartRefusals runs the real binary: a second process on the same pin
// path, a listener interface that is missing or held through another pin
// path, and a backend that is the node's own address are each refused with
// exit 2 and leave no pins.
func TestStartRefusals(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24", "10.0.0.2/24"}, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	h := lab.Host("lb")
	dir := t.TempDir()
	cfg := func(name, iface, backend string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, fmt.Appendf(nil, safetyConfig, iface, backend, 1, false, "fail-open"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := cfg("good", "eth0", "10.0.0.11")

	for _, c := range []struct {
		name, cfg, want string
	}{
		{"missing interface", cfg("missing", "nosuch0", "10.0.0.11"), "load_balancer.listener.interfaces[0]: nosuch0: no such interface"},
		// with the line, as every other error of the file (it had none)
		{"missing interface, its line", cfg("missing-line", "nosuch0", "10.0.0.11"), "nosuch0: no such interface (the listener at line 2)"},
		{"backend is this node", cfg("own", "eth0", "10.0.0.2"), "10.0.0.2 is an address of this node"},
		// with the line, as every other error of the file (it had none)
		{"backend is this node, its line", cfg("own-line", "eth0", "10.0.0.2"), "the load balancer would send to itself (line 4)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pin := testPinPath(t)
			code, out := runExit(t, h, bin, "lb", "--config", c.cfg, "--pin-path", pin)
			if code != 2 || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, want 2 with %q:\n%s", code, c.want, out)
			}
			if left := lbPins(t, pin); len(left) > 0 {
				t.Errorf("the refused start left pins: %v", left)
			}
			if strings.Contains(out, "stays attached") {
				t.Errorf("a start that attached nothing says the program stays attached:\n%s", out)
			}
		})
	}

	// `ip netns exec` gives the command a mount namespace and a /sys of its
	// own: a bpffs mounted there, and the program with it, would go when
	// the process does. The host check refuses that (exit 1), unless the
	// pins go on exit anyway.
	t.Run("ip netns exec", func(t *testing.T) {
		pin := testPinPath(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		netnsExec := func(args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, bin}, args...)...)
		}
		out, err := netnsExec("lb", "--config", good, "--pin-path", pin).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "nsenter --net=") {
			t.Errorf("%v, want exit 1 pointing to nsenter:\n%s", err, out)
		}
		if link, _ := h.Run("ip", "link", "show", "eth0"); strings.Contains(link, "xdp") {
			t.Errorf("the refused start left a program on eth0:\n%s", link)
		}
		out, _ = netnsExec("check", "--system", "--config", good).CombinedOutput()
		if !strings.Contains(string(out), "pins made here would vanish") {
			t.Errorf("check --system under ip netns exec does not say the pins would vanish:\n%s", out)
		}
		p := netnsExec("lb", "--config", good, "--pin-path", pin, "--detach-on-exit", "--metrics-listen", "off")
		p.Stdout = os.Stderr
		logs, err := p.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		running := false
		for sc := bufio.NewScanner(logs); sc.Scan(); {
			if strings.Contains(sc.Text(), "load balancer running") {
				running = true
				p.Process.Signal(syscall.SIGTERM)
			}
		}
		p.Wait()
		if !running {
			t.Error("with --detach-on-exit it does not start under ip netns exec")
		}
	})

	pin := testPinPath(t)
	first := startLB(t, h, bin, good, pin)
	t.Run("second process on the pin path", func(t *testing.T) {
		code, out := runExit(t, h, bin, "lb", "--config", good, "--pin-path", pin, "--metrics-listen", "off")
		want := fmt.Sprintf("pid %d", first.Cmd.Process.Pid)
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 2 naming %s:\n%s", code, want, out)
		}
	})
	t.Run("detach while a process controls the pin path", func(t *testing.T) {
		code, out := runExit(t, h, bin, "lb", "detach", "--pin-path", pin)
		want := fmt.Sprintf("pid %d", first.Cmd.Process.Pid)
		if code != 2 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want 2 naming %s:\n%s", code, want, out)
		}
		if len(lbPins(t, pin)) == 0 {
			t.Errorf("a refused detach removed the running load balancer's pins:\n%s", out)
		}
	})
	t.Run("interface held through another pin path", func(t *testing.T) {
		other := testPinPath(t)
		code, out := runExit(t, h, bin, "lb", "--config", good, "--pin-path", other, "--metrics-listen", "off")
		if code != 2 || !strings.Contains(out, "already runs XDP program") {
			t.Errorf("exit %d, want 2 refusing eth0:\n%s", code, out)
		}
		if left := lbPins(t, other); len(left) > 0 {
			t.Errorf("the refused start left pins: %v", left)
		}
	})
	if err := first.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-first.Done()
	// The lock went with the process: a new one takes the pins over.
	second := startLB(t, h, bin, good, pin, "--detach-on-exit")
	second.Stop()
}

// TestReadiness: /healthz is not ready while no backend takes new flows
// (every weight 0; every backend unhealthy with all_unhealthy: drop), and
// with all_unhealthy: fail-open (the default) every weighted backend gets the
// traffic, logged and shown by xmirror_lb_fail_open.
func TestReadiness(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, GRO: true, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	h := lab.Host("lb")
	cfgPath := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(weight int, health bool, allUnhealthy string) {
		if err := os.WriteFile(cfgPath, fmt.Appendf(nil, safetyConfig, "eth0", "10.0.0.11", weight, health, allUnhealthy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := listenVXLAN(t, lab.Host("b1"))
	snd := newSender(t, lab.Host("src"))
	pin := testPinPath(t)

	// Every weight 0: the process runs (a reload may bring weights back),
	// but it is not ready.
	write(0, false, "fail-open")
	p, err := h.Start(bin, "lb", "--config", cfgPath, "--pin-path", pin, "--detach-on-exit")
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "load balancer running", 1)
	if code := waitStatus(h, 503, 3*time.Second); code != 503 {
		t.Fatalf("/healthz %d with every weight 0, want 503\n%s", code, p.Output())
	}
	write(1, false, "fail-open")
	p.Signal(syscall.SIGHUP)
	if code := waitStatus(h, 200, 3*time.Second); code != 200 {
		t.Fatalf("/healthz %d after a reload gave a weight, want 200\n%s", code, p.Output())
	}

	// Health checks on, b1's check fails (nothing listens on 9091): fail-open
	// keeps sending to it.
	write(1, true, "fail-open")
	p.Signal(syscall.SIGHUP)
	waitLog(t, p, "failing open", 1)
	for i := range uint32(50) {
		snd.send(t, i, 0, 0)
	}
	if got := waitCount([]*receiver{r}, 50, 3*time.Second); got != 50 {
		t.Fatalf("fail-open delivered %d of 50", got)
	}
	if code := httpStatus(h, "/healthz"); code != 200 {
		t.Errorf("/healthz %d while failing open, want 200", code)
	}
	m := httpGet(t, h, "/metrics")
	if !strings.Contains(m, "xmirror_lb_fail_open 1") {
		t.Errorf("/metrics does not show fail-open:\n%s", m)
	}
	// Failing open sends to target-01; it still fails its checks, and says so.
	if !strings.Contains(m, `xmirror_lb_backend_healthy{backend="target-01",address="10.0.0.11"} 0`) {
		t.Errorf("/metrics shows target-01 healthy while it fails its checks:\n%s", m)
	}
	if out, err := h.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms"); err != nil || !strings.Contains(out, "failing (fail-open)") {
		t.Errorf("lb status does not show target-01 failing open (err %v):\n%s", err, out)
	}

	// all_unhealthy: drop: not ready, and the traffic is dropped.
	write(1, true, "drop")
	p.Signal(syscall.SIGHUP)
	if code := waitStatus(h, 503, 3*time.Second); code != 503 {
		t.Fatalf("/healthz %d with every backend unhealthy and all_unhealthy: drop, want 503\n%s", code, p.Output())
	}
	r.reset()
	for i := range uint32(50) {
		snd.send(t, 1000+i, 0, 0)
	}
	time.Sleep(300 * time.Millisecond)
	if r.count() != 0 {
		t.Errorf("all_unhealthy: drop delivered %d datagrams", r.count())
	}
	p.Stop()
}

// waitStatus polls /healthz until it answers want or d passes; it returns
// the last answer.
func waitStatus(h *netlab.Host, want int, d time.Duration) int {
	code := 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code = httpStatus(h, "/healthz"); code == want {
			break
		}
	}
	return code
}

// TestVethAutoDelivers: with xdp_mode auto on a veth whose peer runs no XDP
// program, native XDP_TX frames would be dropped by the peer; the LB picks
// generic mode (and says so) and every datagram arrives.
func TestVethAutoDelivers(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}}, // no PeerXDP
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	cfgPath := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, safetyConfig, "eth0", "10.0.0.11", 1, false, "fail-open"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := listenVXLAN(t, lab.Host("b1"))
	snd := newSender(t, lab.Host("src"))
	p := startLB(t, lab.Host("lb"), bin, cfgPath, testPinPath(t), "--detach-on-exit")
	defer p.Stop()
	for i := range uint32(200) {
		snd.send(t, i, 0, 0)
	}
	if got := waitCount([]*receiver{r}, 200, 3*time.Second); got != 200 {
		var m strings.Builder
		for _, line := range strings.Split(httpGet(t, lab.Host("lb"), "/metrics"), "\n") {
			if strings.HasPrefix(line, "xmirror_lb_packets_total") && !strings.HasSuffix(line, " 0") {
				m.WriteString(line + "\n")
			}
		}
		for _, h := range []string{"src", "lb", "b1"} {
			out, _ := lab.Host(h).Run("ip", "-s", "-d", "link", "show", "eth0")
			n, _ := lab.Host(h).Run("ip", "neigh")
			fmt.Fprintf(&m, "%s:\n%s%s", h, out, n)
		}
		t.Fatalf("delivered %d of 200 with xdp_mode auto on a veth\n%s\n%s", got, m.String(), p.Output())
	}
	if !strings.Contains(p.Output(), "veth peer runs no native XDP program") || !strings.Contains(p.Output(), "mode=generic") {
		t.Errorf("the switch to generic mode was not logged:\n%s", p.Output())
	}
}

// TestTTLEndsLoop: two LBs that list each other's VIP as their backend
// bounce a datagram between them; each hop lowers the TTL, and the LB that
// gets it at TTL 1 drops it (drop_ttl), instead of the two forwarding it
// forever.
func TestTTLEndsLoop(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		netlab.HostSpec{Name: "lbA", Addrs: []string{"10.0.0.1/24"}, PeerXDP: true},
		netlab.HostSpec{Name: "lbB", Addrs: []string{"10.0.0.2/24"}, PeerXDP: true},
	)
	bin := labtest.XmirrorBinary(t)
	dir := t.TempDir()
	const loopConfig = `load_balancer:
  listener: {name: loop, vip: %s, port: 4789, interfaces: [eth0]}
  backends: [{name: other-lb, address: %s, port: 4789, weight: 1}]
metrics: {listen: 127.0.0.1:9190}
`
	var hosts []*netlab.Host
	for _, n := range []struct{ host, vip, backend string }{{"lbA", "10.0.0.1", "10.0.0.2"}, {"lbB", "10.0.0.2", "10.0.0.1"}} {
		p := filepath.Join(dir, n.host+".yaml")
		if err := os.WriteFile(p, fmt.Appendf(nil, loopConfig, n.vip, n.backend), 0o644); err != nil {
			t.Fatal(err)
		}
		h := lab.Host(n.host)
		defer startLB(t, h, bin, p, testPinPath(t), "--detach-on-exit").Stop()
		hosts = append(hosts, h)
	}
	newSender(t, lab.Host("src")).send(t, 1, 0, 0) // TTL 64
	counts := func() (forwarded, expired float64) {
		for _, h := range hosts {
			s, err := telemetry.ParseText(strings.NewReader(httpGet(t, h, "/metrics")))
			if err != nil {
				t.Fatal(err)
			}
			expired += telemetry.Sum(s, "xmirror_lb_packets_total", `reason="drop_ttl"`)
			for _, r := range []string{"tx", "redirect", "pass_no_neigh"} {
				forwarded += telemetry.Sum(s, "xmirror_lb_packets_total", `reason="`+r+`"`)
			}
		}
		return forwarded, expired
	}
	var fwd, exp float64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if fwd, exp = counts(); exp > 0 {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	fwd2, exp2 := counts()
	if exp != 1 || exp2 != 1 || fwd2 != fwd || fwd > 63 {
		var m strings.Builder
		for _, h := range hosts {
			for _, line := range strings.Split(httpGet(t, h, "/metrics"), "\n") {
				if strings.HasPrefix(line, "xmirror_lb_packets_total") && !strings.HasSuffix(line, " 0") {
					fmt.Fprintf(&m, "%s %s\n", h.Name, line)
				}
			}
		}
		t.Fatalf("forwarded %v then %v times, dropped for TTL %v then %v: want at most 63 hops and one drop_ttl, then nothing\n%s", fwd, fwd2, exp, exp2, m.String())
	}
	t.Logf("the datagram made %v hops before its TTL ran out", fwd)
}

// TestRestartAfterInterfaceRecreated: a listener interface deleted and
// created again while the load balancer was stopped leaves a pinned link
// to nothing ("severed"); the next start attaches anew instead of failing
// to update it until someone runs `lb detach`.
func TestRestartAfterInterfaceRecreated(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	h, b1 := lab.Host("lb"), lab.Host("b1")
	mk := func() {
		t.Helper()
		if err := h.Veth("xl0", "", b1, "xl1", ""); err != nil {
			t.Fatal(err)
		}
	}
	mk()
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, safetyConfig, "eth0, xl0", "10.0.0.11", 1, false, "fail-open"), 0o644); err != nil {
		t.Fatal(err)
	}
	pin := testPinPath(t)
	first := startLB(t, h, bin, cfg, pin)
	first.Signal(syscall.SIGTERM)
	<-first.Done()
	if _, err := h.Run("ip", "link", "del", "xl0"); err != nil {
		t.Fatal(err)
	}
	mk()
	second := startLB(t, h, bin, cfg, pin, "--detach-on-exit")
	defer func() { second.Signal(syscall.SIGTERM); <-second.Done() }()
	if link, _ := h.Run("ip", "link", "show", "xl0"); !strings.Contains(link, "xdp") {
		t.Errorf("no program on the re-created xl0:\n%s\n%s", link, second.Output())
	}

	// The same while it runs: the program goes with the deleted interface;
	// the re-created one gets it again within about a second.
	if _, err := h.Run("ip", "link", "del", "xl0"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, second.Proc, "listener interface gone", 1)
	if m := httpGet(t, h, "/metrics"); !strings.Contains(m, `xmirror_lb_interface_up{interface="xl0"} 0`) {
		t.Errorf("/metrics does not show xl0 gone:\n%s", m)
	}
	mk()
	waitLog(t, second.Proc, "every listener interface runs the program again", 1)
	if link, _ := h.Run("ip", "link", "show", "xl0"); !strings.Contains(link, "xdp") {
		t.Errorf("no program on xl0 re-created while running:\n%s\n%s", link, second.Output())
	}
}

// TestNotReadyBeforeFirstCheck: with health checks on, a node is ready
// (/healthz, and with bgp the announcement) only once a check has found a
// weighted backend healthy, or every backend has its first answer: a node
// whose probes hang announced the VIP at start and sat in ECMP until the
// first timeout, though it could serve nothing (all_unhealthy: drop).
func TestNotReadyBeforeFirstCheck(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	h, b1 := lab.Host("lb"), lab.Host("b1")
	// b1's health port swallows the probes: each one hangs to its timeout.
	if out, err := b1.Run("nft", "add table ip hc; add chain ip hc in { type filter hook input priority 0; }; add rule ip hc in tcp dport 9091 drop"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  backends: [{name: target-01, address: 10.0.0.11, port: 4789}]
  health_check: {enabled: true, type: tcp, port: 9091, interval: 5s, timeout: 3s, all_unhealthy: drop}
metrics: {listen: 127.0.0.1:9190}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start(bin, "lb", "--config", cfg, "--pin-path", testPinPath(t), "--detach-on-exit")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	waitLog(t, p, "load balancer running", 1)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code := httpStatus(h, "/healthz"); code == 200 {
			t.Fatalf("ready while the first health check still waits:\n%s", p.Output())
		}
	}
	// The check times out: b1 is unhealthy, and with all_unhealthy: drop the
	// node stays not ready.
	waitLog(t, p, "backend unhealthy", 1)
	if code := httpStatus(h, "/healthz"); code != 503 {
		t.Errorf("/healthz %d with the only backend unhealthy (drop), want 503", code)
	}
}
