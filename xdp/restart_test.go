// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestRestartKeepsUnhealthyOut restarts the control plane under a steady
// stream while one backend fails its checks with probes that hang to their
// timeout (a collector host that is down). The previous run had taken it
// out of the tables; the new one must not put it back while it waits for
// its first probe: that sent a third to a half of the stream to the dead
// collector for the probe timeout at every restart.
func TestRestartKeepsUnhealthyOut(t *testing.T) {
	for _, algo := range []string{"maglev", "wrr"} {
		t.Run(algo, func(t *testing.T) { testRestartKeepsUnhealthyOut(t, algo) })
	}
}

func testRestartKeepsUnhealthyOut(t *testing.T, algo string) {
	lab, bin, pin, rs := listenerLab(t, listenVXLAN)
	lbh, b2 := lab.Host("lb"), lab.Host("b2")
	h1 := healthServer(t, lab.Host("b1"))
	defer h1.Close()
	// b2's health port swallows the probes: each one hangs to its timeout.
	if out, err := b2.Run("nft", "add table ip hc; add chain ip hc in { type filter hook input priority 0; }; add rule ip hc in tcp dport 9091 drop"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  algorithm: ` + algo + `
  backends:
    - {name: target-01, address: 10.0.0.11}
    - {name: target-02, address: 10.0.0.12}
  health_check: {enabled: true, type: tcp, port: 9091, interval: 1s, timeout: 800ms, healthy_threshold: 2, unhealthy_threshold: 2}
metrics: {listen: 127.0.0.1:9190}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startLB(t, lbh, bin, cfg, pin)
	waitLog(t, p.Proc, "backend unhealthy", 1)
	time.Sleep(100 * time.Millisecond) // the tables without b2 are in
	snd := newSender(t, lab.Host("src"))

	var stop atomic.Bool
	done := make(chan int)
	go func() {
		sent := 0
		for i := 0; !stop.Load(); i++ {
			if _, err := snd.conn.WriteToUDP(vxlanPayload(uint32(i%500), uint8(i/500%2), 7), vipUDP); err != nil {
				break
			}
			sent++
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		done <- sent
	}()
	time.Sleep(200 * time.Millisecond)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	p2 := startLB(t, lbh, bin, cfg, pin, "--detach-on-exit")
	defer func() { p2.Signal(syscall.SIGTERM); <-p2.Done() }()
	// Past the first probe's timeout of the new process.
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	sent := <-done
	got := waitCount(rs, sent, 3*time.Second)
	if n := rs[1].count(); n != 0 || got != sent {
		t.Fatalf("restart with target-02 down: it got %d datagrams (of %d sent, %d arrived)\nold:\n%s\nnew:\n%s",
			n, sent, got, p.Output(), p2.Output())
	}
}

// TestReloadNewBackendWaitsForCheck: a SIGHUP adds a collector whose host
// does not answer (its probes hang to the timeout) to a running maglev node.
// The new backend used to be assumed healthy until that first probe timed
// out, so its Maglev share of the flows moved to it and was lost for the
// timeout, then moved back. While other backends take the traffic, a
// backend added by a reload gets flows only once its first check passes.
func TestReloadNewBackendWaitsForCheck(t *testing.T) {
	lab, bin, pin, rs := opsLab(t, 3)
	lbh := lab.Host("lb")
	for _, b := range []string{"b1", "b2"} {
		ln := healthServer(t, lab.Host(b))
		t.Cleanup(func() { ln.Close() })
	}
	if out, err := lab.Host("b3").Run("nft", "add table ip hc; add chain ip hc in { type filter hook input priority 0; }; add rule ip hc in tcp dport 9091 drop"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(n int) {
		yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  algorithm: maglev
  backends:
`
		for i := 1; i <= n; i++ {
			yaml += fmt.Sprintf("    - {name: t%d, address: 10.0.0.%d}\n", i, 10+i)
		}
		yaml += `  health_check: {enabled: true, type: tcp, port: 9091, interval: 1s, timeout: 800ms, healthy_threshold: 2, unhealthy_threshold: 2}
metrics: {listen: 127.0.0.1:9190}
`
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(2)
	p := startLB(t, lbh, bin, cfg, pin, "--detach-on-exit")
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	snd := newSender(t, lab.Host("src"))
	write(3)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p.Proc, "msg=reloaded", 1)
	// Within the first probe's timeout.
	if st := lbStatus(lbh, bin, pin); !strings.Contains(st, "unchecked") {
		t.Errorf("status while t3 waits for its first check:\n%s", st)
	}
	resetAll(rs)
	snd.sendPaced(t, 1000, 1)
	waitCount(rs, 1000, 3*time.Second)
	if n := rs[2].count(); n != 0 {
		t.Fatalf("t3, added by the reload and not yet checked, got %d of 1000 flows\n%s", n, p.Output())
	}
	// Its probe times out: it stays out. Once it answers (two good probes)
	// it takes its share.
	waitLog(t, p.Proc, "backend unhealthy", 1)
	if out, err := lab.Host("b3").Run("nft", "delete table ip hc"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	ln := healthServer(t, lab.Host("b3"))
	defer ln.Close()
	waitLog(t, p.Proc, "backend healthy", 1)
	resetAll(rs)
	snd.sendPaced(t, 1000, 2)
	waitCount(rs, 1000, 3*time.Second)
	if n := rs[2].count(); n < 200 || n > 450 {
		t.Errorf("t3 healthy: %d of 1000 flows, want about a third", n)
	}
}

// opsLab builds a mirror source (10.0.0.230), the load balancer
// (10.0.0.1) and n backends (10.0.0.11 on) on one bridge, with a VXLAN
// receiver on each backend, and returns the xmirror binary and a pin path.
func opsLab(t *testing.T, n int) (*netlab.Lab, string, string, []*receiver) {
	specs := []netlab.HostSpec{
		{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		{Name: "lb", Addrs: []string{"10.0.0.1/24"}, GRO: true, PeerXDP: true},
	}
	for i := 1; i <= n; i++ {
		specs = append(specs, netlab.HostSpec{Name: fmt.Sprintf("b%d", i), Addrs: []string{fmt.Sprintf("10.0.0.%d/24", 10+i)}})
	}
	lab := labtest.ForTest(t, specs...)
	bin := labtest.XmirrorBinary(t)
	pin := testPinPath(t)
	var rs []*receiver
	for i := 1; i <= n; i++ {
		rs = append(rs, listenVXLAN(t, lab.Host(fmt.Sprintf("b%d", i))))
	}
	return lab, bin, pin, rs
}

// TestRestartWithOtherInterfaces: listener.interfaces changed from [eth0]
// to [eth1] and the control plane restarted, as the docs say a change of
// interfaces needs. The previous run's pinned link kept its program on
// eth0, balancing with the tables of the stopped process (its own copy of
// them, which no reload or health check reached any more) and shown
// nowhere. The start now detaches the program from interfaces the
// configuration no longer names.
func TestRestartWithOtherInterfaces(t *testing.T) {
	lab, bin, pin, _ := listenerLab(t, listenVXLAN)
	lbh := lab.Host("lb")
	if err := lbh.Veth("eth1", "10.9.0.1/24", lab.Host("src"), "veth9", "10.9.0.2/24"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(iface string) {
		yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [` + iface + `]}
  backends: [{name: t1, address: 10.0.0.11}, {name: t2, address: 10.0.0.12}]
  xdp_mode: generic
metrics: {listen: 127.0.0.1:9190}
`
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("eth0")
	p := startLB(t, lbh, bin, cfg, pin)
	p.Signal(syscall.SIGTERM)
	<-p.Done()
	if attachedProg(t, lbh) == 0 {
		t.Fatal("no program on eth0 after the first run")
	}
	write("eth1")
	p = startLB(t, lbh, bin, cfg, pin, "--detach-on-exit")
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	if id := attachedProg(t, lbh); id != 0 {
		t.Errorf("eth0, no longer a listener interface, still runs program %d\n%s", id, p.Output())
	}
	if _, err := os.Stat(filepath.Join(pin, "lb_link_eth0")); !os.IsNotExist(err) {
		t.Errorf("the pin of eth0's link is still there: %v", err)
	}
	if !strings.Contains(p.Output(), "eth0") {
		t.Errorf("the start does not say it detached eth0:\n%s", p.Output())
	}
}

// TestRestartXDPModeChange: xdp_mode changed from native to generic and
// the control plane restarted. The pinned link keeps its mode (the restart
// stays hitless: a link cannot change mode without a moment without the
// program), but the restart reported the new mode: `lb status` said
// generic while eth0 ran native, and nothing said the setting took no
// effect. Now the status shows the mode in use, the start warns and names
// `lb detach`, which with a start applies it.
func TestRestartXDPModeChange(t *testing.T) {
	lab, bin, pin, rs := listenerLab(t, listenVXLAN)
	lbh := lab.Host("lb")
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(mode string) {
		yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  backends: [{name: t1, address: 10.0.0.11}, {name: t2, address: 10.0.0.12}]
  xdp_mode: ` + mode + `
metrics: {listen: 127.0.0.1:9190}
`
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	linkMode := func() string {
		out, err := lbh.Run("ip", "-d", "link", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(out, "xdpgeneric"):
			return "generic"
		case strings.Contains(out, "prog/xdp"):
			return "native"
		}
		return "none"
	}
	write("native")
	p := startLB(t, lbh, bin, cfg, pin)
	p.Signal(syscall.SIGTERM)
	<-p.Done()
	if m := linkMode(); m != "native" {
		t.Fatalf("first run: %s", m)
	}
	write("generic")
	p = startLB(t, lbh, bin, cfg, pin)
	if m := linkMode(); m != "native" {
		t.Errorf("the restart changed the pinned link's mode to %s", m)
	}
	if st := lbStatus(lbh, bin, pin); !strings.Contains(st, "xdp mode   native") {
		t.Errorf("status with eth0 in native mode:\n%s", st)
	}
	if !strings.Contains(p.Output(), "keeps its mode") || !strings.Contains(p.Output(), "xmirror lb detach") {
		t.Errorf("the start does not say xdp_mode took no effect:\n%s", p.Output())
	}
	p.Signal(syscall.SIGTERM)
	<-p.Done()
	if out, err := lbh.Run(bin, "lb", "detach", "--pin-path", pin); err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	p = startLB(t, lbh, bin, cfg, pin, "--detach-on-exit")
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	if m := linkMode(); m != "generic" {
		t.Errorf("after detach and a start: %s", m)
	}
	if st := lbStatus(lbh, bin, pin); !strings.Contains(st, "xdp mode   generic") {
		t.Errorf("status:\n%s", st)
	}
	snd := newSender(t, lab.Host("src"))
	resetAll(rs)
	for f := range uint32(100) {
		snd.send(t, f, 0, 1)
	}
	if got := waitCount(rs, 100, 3*time.Second); got != 100 {
		t.Errorf("forwarded %d of 100 in generic mode", got)
	}
}

// TestReloadReplacedBackendFlowsSpread: one SIGHUP replaces collector t3
// (weight 10, beside two more of weight 10) with t4 of weight 1. t4 took
// t3's backend id, so every live wrr bucket of t3 now meant t4: a third of
// all flows went to the backend weighted 1 of 21. A backend added by a
// reload takes an id no backend left within the flow timeout; t3's flows
// are spread by the schedule like those of any backend that left. The same
// holds when one SIGHUP removes t3 and the next, within the flow timeout,
// adds t4: t3's flows, quiet in between, kept their buckets.
func TestReloadReplacedBackendFlowsSpread(t *testing.T) {
	for _, c := range []struct {
		name       string
		twoReloads bool
	}{{"one reload", false}, {"removed, then added", true}} {
		t.Run(c.name, func(t *testing.T) { testReplacedBackendFlows(t, c.twoReloads) })
	}
}

func testReplacedBackendFlows(t *testing.T, twoReloads bool) {
	lab, bin, pin, rs := opsLab(t, 4)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(last string) {
		yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  algorithm: wrr
  backends:
    - {name: t1, address: 10.0.0.11, weight: 10}
    - {name: t2, address: 10.0.0.12, weight: 10}
` + last + `
metrics: {listen: 127.0.0.1:9190}
`
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("    - {name: t3, address: 10.0.0.13, weight: 10}")
	p := startLB(t, lab.Host("lb"), bin, cfg, pin, "--detach-on-exit")
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	snd := newSender(t, lab.Host("src"))
	send := func(seq uint32) {
		resetAll(rs)
		snd.sendPaced(t, 2000, seq)
		if got := waitCount(rs, 2000, 3*time.Second); got != 2000 {
			t.Fatalf("received %d of 2000", got)
		}
	}
	reloads := 0
	reload := func(last string) {
		write(last)
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		reloads++
		waitLog(t, p.Proc, "msg=reloaded", reloads)
	}
	send(0)
	if n := rs[2].count(); n < 500 {
		t.Fatalf("t3 got %d of 2000 flows before the reload", n)
	}
	if twoReloads {
		reload("")
	}
	reload("    - {name: t4, address: 10.0.0.14, weight: 1}")
	send(1)
	// Its share by weight is 1/21 of t3's ~667 flows, about 32.
	t.Logf("after the reload: t1 %d, t2 %d, t4 %d flows", rs[0].count(), rs[1].count(), rs[3].count())
	if n := rs[3].count(); n > 150 {
		t.Errorf("t4 (weight 1 of 21) got %d of 2000 flows right after replacing t3\n%s", n, lbStatus(lab.Host("lb"), bin, pin))
	}
}

// TestRestartFreesPreviousProgram restarts the control plane a few times,
// as an operator does over weeks (upgrades, crashes, config changes that
// need one), and counts the programs left loaded. A start took the pinned
// link over and kept the previous run's program open for the whole life of
// the process, in case the start had to be undone: after every restart
// `bpftool prog list` showed a second xmirror_lb program (with its own
// .rodata and .bss maps) that nothing ran. Once the start has completed the
// previous program is released.
func TestRestartFreesPreviousProgram(t *testing.T) {
	lab, bin, pin, _ := listenerLab(t, listenVXLAN)
	lbh := lab.Host("lb")
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	yaml := `load_balancer:
  listener: {name: l, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  backends: [{name: t1, address: 10.0.0.11}, {name: t2, address: 10.0.0.12}]
  xdp_mode: generic
metrics: {listen: 127.0.0.1:9190}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var ran []uint32
	for i := range 3 {
		extra := []string{}
		if i == 2 {
			extra = append(extra, "--detach-on-exit")
		}
		p := startLB(t, lbh, bin, cfg, pin, extra...)
		waitLog(t, p.Proc, "load balancer running", 1)
		id := attachedProg(t, lbh)
		if id == 0 {
			t.Fatalf("start %d: no program on eth0\n%s", i+1, p.Output())
		}
		// Every earlier run's program is gone: nothing runs it, nothing holds it.
		for _, old := range ran {
			deadline := time.Now().Add(2 * time.Second)
			for {
				prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(old))
				if err != nil {
					break
				}
				prog.Close()
				if time.Now().After(deadline) {
					t.Errorf("start %d (program %d): the program %d of an earlier run is still loaded", i+1, id, old)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		ran = append(ran, id)
		p.Signal(syscall.SIGTERM)
		<-p.Done()
	}
}
