// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
)

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	hc := config.HealthCheck{Type: "http", Port: ap.Port(), Path: "/healthz"}
	ctx := context.Background()
	if err := probe(ctx, ap.Addr(), hc, time.Second); err != nil {
		t.Errorf("http 200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probe(ctx, ap.Addr(), hc, time.Second); err == nil {
		t.Error("http 503 counted as healthy")
	}
	hc.Path = "/other"
	if err := probe(ctx, ap.Addr(), hc, time.Second); err == nil {
		t.Error("http 404 counted as healthy")
	}

	// 3xx is healthy and not followed (docs/lb.md): the backend answered
	// the check itself, whatever the place it points to would say.
	hc.Path = "/healthz"
	redirects := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer redirects.Close()
	rp := netip.MustParseAddrPort(redirects.Listener.Addr().String())
	hc.Port = rp.Port()
	if err := probe(ctx, rp.Addr(), hc, time.Second); err != nil {
		t.Errorf("http 302: %v", err)
	}

	// tcp: a listener is healthy, a closed port is not
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(ln.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):])
	tc := config.HealthCheck{Type: "tcp", Port: uint16(port)}
	if err := probe(ctx, netip.MustParseAddr("127.0.0.1"), tc, time.Second); err != nil {
		t.Errorf("tcp open: %v", err)
	}
	ln.Close()
	if err := probe(ctx, netip.MustParseAddr("127.0.0.1"), tc, time.Second); err == nil {
		t.Error("tcp closed port counted as healthy")
	}
}
