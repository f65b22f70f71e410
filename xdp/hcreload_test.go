// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestHealthReloadKeepsThresholds: a SIGHUP that changes any
// health_check setting restarts the probes. The restarted probe's first
// answer used to set the state outright, as at start: one failed probe
// took a healthy backend out of the tables (its maglev flows moved) and one
// good answer put a failing one back, whatever unhealthy_threshold and
// healthy_threshold said. Backends whose state is known keep it until the
// thresholds are crossed.
func TestHealthReloadKeepsThresholds(t *testing.T) {
	labtest.RequireRoot(t)
	// Health endpoints on loopback addresses that are not this node's own
	// (127.0.0.1 is): the balancer refuses its own addresses as backends.
	up := func(addr string) net.Listener {
		ln, err := tcpHealthEndpoint(addr + ":19391")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	a := up("127.0.0.2")
	defer func() { a.Close() }()
	b := up("127.0.0.3")
	defer func() { b.Close() }()
	hc := func(interval time.Duration) config.HealthCheck {
		return config.HealthCheck{Enabled: true, Type: "tcp", Port: 19391, Interval: config.Duration(interval),
			Timeout: config.Duration(50 * time.Millisecond), HealthyThreshold: 3, UnhealthyThreshold: 3}
	}
	cfg := func(interval time.Duration) *config.LoadBalancer {
		return &config.LoadBalancer{
			Listener:  config.Listener{VIP: netip.MustParseAddr("10.0.0.1"), Port: 4789},
			Algorithm: "maglev", MaglevSize: 251,
			Backends: []config.Backend{
				{Name: "a", Address: netip.MustParseAddr("127.0.0.2"), Port: 4789, Weight: 1},
				{Name: "b", Address: netip.MustParseAddr("127.0.0.3"), Port: 4789, Weight: 1},
			},
			HealthCheck: hc(interval),
		}
	}
	bal, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	if err := bal.Apply(cfg(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	bal.StartHealthChecks()
	known := func(key string) (bool, bool) {
		bal.mu.Lock()
		defer bal.mu.Unlock()
		h, ok := bal.healthy[key]
		return h, ok
	}
	waitState := func(key string, want bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if h, ok := known(key); ok && h == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became healthy=%v", key, want)
			}
		}
	}
	waitState("127.0.0.2:4789", true)
	waitState("127.0.0.3:4789", true)

	// a fails from now on; the reload restarts its probe at once. Three
	// failures in a row take at least two intervals (600 ms).
	a.Close()
	if err := bal.Apply(cfg(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if h, _ := known("127.0.0.2:4789"); !h {
		t.Fatalf("a is unhealthy after one or two failed probes across a reload (unhealthy_threshold 3)")
	}
	waitState("127.0.0.2:4789", false)

	// a answers again; another reload: one good answer is not three.
	a = up("127.0.0.2")
	if err := bal.Apply(cfg(250 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	if h, _ := known("127.0.0.2:4789"); h {
		t.Fatalf("a is healthy after one or two good probes across a reload (healthy_threshold 3)")
	}
	waitState("127.0.0.2:4789", true)
}

// TestHealthLogNamesRenamedBackend: a SIGHUP that renames a backend (same
// address:port) keeps its probe running; the probe's transitions were then
// logged under the old name, which the configuration no longer had.
func TestHealthLogNamesRenamedBackend(t *testing.T) {
	labtest.RequireRoot(t)
	ln, err := tcpHealthEndpoint("127.0.0.2:19392")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var buf netlab.SyncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)
	cfg := func(name string) *config.LoadBalancer {
		return &config.LoadBalancer{
			Listener: config.Listener{VIP: netip.MustParseAddr("10.0.0.1"), Port: 4789},
			Backends: []config.Backend{{Name: name, Address: netip.MustParseAddr("127.0.0.2"), Port: 4789, Weight: 1}},
			HealthCheck: config.HealthCheck{Enabled: true, Type: "tcp", Port: 19392, Interval: config.Duration(100 * time.Millisecond),
				Timeout: config.Duration(50 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 1},
		}
	}
	bal, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	if err := bal.Apply(cfg("old-name")); err != nil {
		t.Fatal(err)
	}
	bal.StartHealthChecks()
	time.Sleep(200 * time.Millisecond)
	if err := bal.Apply(cfg("new-name")); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(buf.String(), "backend unhealthy"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no transition logged:\n%s", buf.String())
		}
	}
	if out := buf.String(); !strings.Contains(out, `msg="backend unhealthy" backend=new-name`) {
		t.Errorf("the transition after the rename:\n%s", out)
	}
}

// TestHealthAnswerAfterRemoval: a probe's answer that arrives after a
// reload removed its backend (the probe was in flight) is dropped. It was
// recorded, so the backend, added again later, started from that stale
// state: held out until healthy_threshold probes passed.
func TestHealthAnswerAfterRemoval(t *testing.T) {
	b := &Balancer{healthy: map[string]bool{}, wasDown: map[string]bool{}, pending: map[string]bool{},
		cfg: &config.LoadBalancer{Backends: []config.Backend{{Name: "stays", Address: netip.MustParseAddr("10.0.0.11"), Port: 4789, Weight: 1}}}}
	h := &healthChecker{b: b, ctx: context.Background()}
	h.set("10.0.0.12:4789", "left", false, errors.New("timeout"))
	if st, ok := b.healthy["10.0.0.12:4789"]; ok {
		t.Errorf("the removed backend's state was recorded: healthy=%v", st)
	}
}
