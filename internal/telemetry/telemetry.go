// SPDX-License-Identifier: Apache-2.0

// Package telemetry serves the Prometheus text metrics of every xmirror part on
// /metrics and a liveness answer on /healthz.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Server serves /metrics from a metrics.Set (and the process metrics) and /healthz.
type Server struct {
	set     *metrics.Set
	healthy atomic.Bool
	ready   atomic.Pointer[func() error]
	srv     *http.Server
	ln      net.Listener
}

// Listen binds addr ("127.0.0.1:9090"; ":0" picks a port). The server reports
// healthy until SetHealthy(false).
func Listen(addr string, set *metrics.Set) (*Server, error) {
	s := &Server{set: set}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if err := exposition(w, s.set.WritePrometheus, metrics.WriteProcessMetrics); err != nil {
			slog.Debug("write /metrics", "err", err)
		}
	})
	mux.HandleFunc("/healthz", s.healthz)
	if err := s.serve(addr, mux); err != nil {
		return nil, fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	slog.Info("serving metrics", "addr", s.Addr())
	return s, nil
}

// ListenHealth binds addr and serves only /healthz: a load balancer's health
// checks reach it from the network while /metrics, which names sessions and
// mirror sources, stays on a loopback address.
func ListenHealth(addr string) (*Server, error) {
	s := &Server{}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.healthz)
	if err := s.serve(addr, mux); err != nil {
		return nil, fmt.Errorf("health listen on %s: %w", addr, err)
	}
	slog.Info("serving /healthz", "addr", s.Addr())
	return s, nil
}

func (s *Server) serve(addr string, mux *http.ServeMux) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.healthy.Store(true)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.healthy.Load() {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	if ready := s.ready.Load(); ready != nil {
		if err := (*ready)(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetHealthy sets what /healthz answers: 200 when true, 503 when false.
func (s *Server) SetHealthy(ok bool) { s.healthy.Store(ok) }

// SetReadiness adds a check to /healthz: while the server is healthy and
// ready returns an error, it answers 503 with the error.
func (s *Server) SetReadiness(ready func() error) { s.ready.Store(&ready) }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
