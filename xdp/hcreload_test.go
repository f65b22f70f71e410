// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
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
		ln, err := net.Listen("tcp4", addr+":19391")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
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
	// failures in a row take at least two intervals (300 ms).
	a.Close()
	if err := bal.Apply(cfg(150 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if h, _ := known("127.0.0.2:4789"); !h {
		t.Fatalf("a is unhealthy after one or two failed probes across a reload (unhealthy_threshold 3)")
	}
	waitState("127.0.0.2:4789", false)

	// a answers again; another reload: one good answer is not three.
	a = up("127.0.0.2")
	if err := bal.Apply(cfg(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if h, _ := known("127.0.0.2:4789"); h {
		t.Fatalf("a is healthy after one or two good probes across a reload (healthy_threshold 3)")
	}
	waitState("127.0.0.2:4789", true)
}
