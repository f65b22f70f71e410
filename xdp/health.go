// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/xmirror/xmirror/config"
)

// healthChecker probes every backend on its own goroutine and tells the
// Balancer when one crosses a threshold; the Balancer then rebuilds the
// tables without it (or with it again) and swaps them in.
type healthChecker struct {
	b      *Balancer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	hc      config.HealthCheck
	probers map[string]context.CancelFunc
}

// StartHealthChecks begins probing the configured backends. Each backend's
// first probe decides its initial state, so a dead collector gets no traffic
// from the start; later changes need the configured thresholds.
func (b *Balancer) StartHealthChecks() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hcWanted = true
	b.startHealthChecks()
}

// startHealthChecks needs b.mu held.
func (b *Balancer) startHealthChecks() {
	if b.hc != nil || b.cfg == nil || !b.cfg.HealthCheck.Enabled {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.hc = &healthChecker{b: b, ctx: ctx, cancel: cancel, probers: make(map[string]context.CancelFunc)}
	b.hc.update(b.cfg)
}

// update starts probers for new backends and stops those of removed ones.
// Called with b.mu held.
func (h *healthChecker) update(cfg *config.LoadBalancer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !cfg.HealthCheck.Enabled {
		for k, stop := range h.probers {
			stop()
			delete(h.probers, k)
			delete(h.b.healthy, k)
		}
		clear(h.b.pending)
		return
	}
	changed := h.hc != cfg.HealthCheck
	h.hc = cfg.HealthCheck
	want := make(map[string]config.Backend)
	for _, be := range cfg.Backends {
		want[backendKey(be.Address, be.Port)] = be
	}
	for k, stop := range h.probers {
		if _, ok := want[k]; !ok || changed {
			stop()
			delete(h.probers, k)
			if !ok {
				delete(h.b.healthy, k)
			}
		}
	}
	for k, be := range want {
		if _, ok := h.probers[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(h.ctx)
		h.probers[k] = cancel
		// A probe restarted by a reload goes on from the state its
		// backend has: its first answer counts toward the thresholds.
		state, known := h.b.healthy[k]
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.run(ctx, k, be, cfg.HealthCheck, known, state)
		}()
	}
}

func (h *healthChecker) stop() {
	h.cancel()
	h.wg.Wait()
}

// run probes one backend every interval. Until the first answer of a
// backend whose state is not known (known false), that answer decides it;
// after that, or from the known state, it changes after the thresholds.
func (h *healthChecker) run(ctx context.Context, key string, be config.Backend, hc config.HealthCheck, known, state bool) {
	interval := time.Duration(hc.Interval)
	if interval <= 0 {
		interval = 2 * time.Second
	}
	timeout := time.Duration(hc.Timeout)
	if timeout <= 0 || timeout > interval {
		timeout = interval
	}
	up, down := max(hc.HealthyThreshold, 1), max(hc.UnhealthyThreshold, 1)
	first := !known
	streak := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := probe(ctx, be.Address, hc, timeout)
		if ctx.Err() != nil {
			return
		}
		ok := err == nil
		switch {
		case first:
			state = ok
			first = false
			h.set(key, be.Name, ok, err)
		case ok == state:
			streak = 0
		default:
			streak++
			if (ok && streak >= up) || (!ok && streak >= down) {
				state = ok
				streak = 0
				h.set(key, be.Name, ok, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// set records a backend's health and swaps in tables that reflect it.
func (h *healthChecker) set(key, name string, ok bool, cause error) {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	// The probe outlives a rename (it is keyed by address:port), and an
	// answer may arrive after a reload removed its backend: a state kept
	// for it would greet the backend if it came back.
	current := false
	if b.cfg != nil {
		for _, be := range b.cfg.Backends {
			if backendKey(be.Address, be.Port) == key {
				name, current = be.Name, true
			}
		}
	}
	if !current {
		return
	}
	_, known := b.healthy[key]
	prev := b.isHealthy(key)
	b.healthy[key] = ok
	// A backend a reload added was held out of the tables until this, its
	// first answer.
	if b.pending[key] {
		delete(b.pending, key)
		known, prev = false, !ok
	}
	// A first answer matters even when it agrees with the assumption
	// (healthy until checked): only now may the node say it is ready.
	if known && prev == ok {
		return
	}
	if ok && !prev {
		slog.Info("backend healthy", "backend", name, "address", key)
	} else if !ok {
		slog.Warn("backend unhealthy", "backend", name, "address", key, "err", cause)
	}
	if b.cfg != nil {
		if err := b.apply(b.cfg); err != nil {
			slog.Error("rebuild tables after health change", "err", err)
		}
	}
}

// probe is one health check: HTTP GET (2xx/3xx is healthy) or TCP connect.
func probe(ctx context.Context, addr netip.Addr, hc config.HealthCheck, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hostport := net.JoinHostPort(addr.String(), strconv.Itoa(int(hc.Port)))
	if hc.Type == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return err
		}
		return c.Close()
	}
	path := hc.Path
	if path == "" {
		path = "/healthz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+path, nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http status %d", resp.StatusCode)
	}
	return nil
}

// healthClient never reuses connections: each probe proves a fresh connect.
// It does not follow redirects: a 3xx is the backend's own answer, and
// following one would probe another place (or host) than the backend.
var healthClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// Healthy reports the health of each backend by name.
func (b *Balancer) Healthy() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool)
	if b.cfg == nil {
		return out
	}
	for _, be := range b.cfg.Backends {
		out[be.Name] = b.isHealthy(backendKey(be.Address, be.Port))
	}
	return out
}
