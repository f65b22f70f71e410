// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
