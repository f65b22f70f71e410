// SPDX-License-Identifier: Apache-2.0

package netlab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// TestPartWaitsForHealthz: WaitHealthy returns once /healthz inside the
// host's namespace answers 200 (not before), Scrape reads /metrics there, and
// a part that exits first is reported with its exit.
func TestPartWaitsForHealthz(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "h", Addrs: []string{"10.96.0.1/24"}})
	h := lab.Host("h")
	ctx := context.Background()

	// The metrics server of a stand-in part, listening inside the namespace
	// only: the same address in this test's namespace has nothing behind it.
	set := metrics.NewSet()
	set.NewCounter("xmirror_test_total").Add(3)
	var srv *telemetry.Server
	if err := h.Do(func() (err error) { srv, err = telemetry.Listen("127.0.0.1:9555", set); return err }); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetHealthy(false)

	p, err := h.StartPart("collect", "127.0.0.1:9555", "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := p.WaitHealthy(ctx, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WaitHealthy while /healthz answers 503: %v", err)
	}
	go func() { time.Sleep(200 * time.Millisecond); srv.SetHealthy(true) }()
	if err := p.WaitHealthy(ctx, 5*time.Second); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	samples, err := p.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := telemetry.Sum(samples, "xmirror_test_total"); got != 3 {
		t.Errorf("scraped xmirror_test_total %v, want 3", got)
	}

	dead, err := h.StartPart("lb", "127.0.0.1:9556", "sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.WaitHealthy(ctx, 5*time.Second); err == nil || !strings.Contains(err.Error(), "exited before it was healthy") {
		t.Errorf("WaitHealthy of a part that exited: %v", err)
	}
}
