// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/config"
)

// TestNotReadyLogSaysWhy: every start with health checks is not ready
// until the first check answers. That used to be logged as a warning that
// no backend takes new flows because of weights 0 or unhealthy backends,
// which was true of neither; the log now says the node waits for its
// first checks, and keeps the warning for the states it names.
func TestNotReadyLogSaysWhy(t *testing.T) {
	hc := config.HealthCheck{Enabled: true, Type: "tcp", Port: 9091, AllUnhealthy: config.AllUnhealthyDrop}
	be := func(name, addr string, w int) config.Backend {
		return config.Backend{Name: name, Address: netip.MustParseAddr(addr), Port: 4789, Weight: w}
	}
	cases := []struct {
		name    string
		hc      config.HealthCheck
		bes     []config.Backend
		healthy map[string]bool
		want    string // in the log
		notWant string
	}{
		{"first checks pending", hc, []config.Backend{be("a", "10.0.0.11", 1), be("b", "10.0.0.12", 1)}, nil,
			"waiting for the first health check", "no backend takes new flows"},
		{"one unhealthy, one pending", hc, []config.Backend{be("a", "10.0.0.11", 1), be("b", "10.0.0.12", 1)},
			map[string]bool{"10.0.0.11:4789": false}, "waiting for the first health check", "no backend takes new flows"},
		{"every weight 0", hc, []config.Backend{be("a", "10.0.0.11", 0)}, nil,
			"no backend takes new flows", "waiting"},
		{"all unhealthy, drop", hc, []config.Backend{be("a", "10.0.0.11", 1)},
			map[string]bool{"10.0.0.11:4789": false}, "no backend takes new flows", "waiting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			prev := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
			defer slog.SetDefault(prev)
			cfg := &config.LoadBalancer{Listener: config.Listener{VIP: netip.MustParseAddr("10.0.0.1"), Port: 4789},
				Backends: c.bes, HealthCheck: c.hc}
			b := &Balancer{ids: map[string]uint32{}, healthy: map[string]bool{}, wasDown: map[string]bool{}}
			for i, be := range c.bes {
				b.ids[backendKey(be.Address, be.Port)] = uint32(i)
			}
			for k, v := range c.healthy {
				b.healthy[k] = v
			}
			_, _, state := b.backendRows(cfg)
			b.noteState(state)
			if state.ready {
				t.Fatalf("ready")
			}
			if out := buf.String(); !strings.Contains(out, c.want) || strings.Contains(out, c.notWant) {
				t.Errorf("log %q: want %q, not %q", out, c.want, c.notWant)
			}
		})
	}
}

// TestNotReadyLogAfterFirstChecks: a node that waited for its first checks
// and then found every backend unhealthy (all_unhealthy: drop) stays not
// ready, now for a reason the operator must act on: that is logged.
func TestNotReadyLogAfterFirstChecks(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)
	b := &Balancer{}
	b.noteState(tableState{waiting: true})
	b.noteState(tableState{})
	if out := buf.String(); !strings.Contains(out, "waiting for the first health check") || !strings.Contains(out, "no backend takes new flows") {
		t.Errorf("log %q: want the wait, then the warning", out)
	}
}

// TestPendingHeldOnlyWhileOthersServe: a backend a reload added waits for
// its first check only while another weighted backend takes new flows;
// otherwise it is what there is, as at start.
func TestPendingHeldOnlyWhileOthersServe(t *testing.T) {
	hc := config.HealthCheck{Enabled: true, Type: "tcp", Port: 9091, AllUnhealthy: config.AllUnhealthyDrop}
	bes := []config.Backend{
		{Name: "old", Address: netip.MustParseAddr("10.0.0.11"), Port: 4789, Weight: 1},
		{Name: "new", Address: netip.MustParseAddr("10.0.0.12"), Port: 4789, Weight: 1},
	}
	cfg := &config.LoadBalancer{Listener: config.Listener{VIP: netip.MustParseAddr("10.0.0.1"), Port: 4789}, Backends: bes, HealthCheck: hc}
	for _, c := range []struct {
		name     string
		old      bool // old's health
		failOpen bool
		inTable  []string
	}{
		{"old healthy", true, false, []string{"old"}},
		{"old unhealthy, drop", false, false, []string{"new"}},
		// Failing open sends to every weighted backend, the new one too:
		// not all of it to a backend no check has seen.
		{"old unhealthy, fail-open", false, true, []string{"old", "new"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := *cfg
			if c.failOpen {
				cfg.HealthCheck.AllUnhealthy = config.AllUnhealthyFailOpen
			}
			b := &Balancer{ids: map[string]uint32{"10.0.0.11:4789": 0, "10.0.0.12:4789": 1},
				healthy: map[string]bool{"10.0.0.11:4789": c.old}, wasDown: map[string]bool{},
				pending: map[string]bool{"10.0.0.12:4789": true}}
			rows, tbs, _ := b.backendRows(&cfg)
			var got []string
			for _, tb := range tbs {
				got = append(got, bes[tb.ID].Name)
			}
			if strings.Join(got, ",") != strings.Join(c.inTable, ",") {
				t.Errorf("in the table: %v, want %v", got, c.inTable)
			}
			if held := rows[1].Flags&backendPending != 0; held != c.old {
				t.Errorf("new held (pending flag) %v, want %v", held, c.old)
			}
		})
	}
}
