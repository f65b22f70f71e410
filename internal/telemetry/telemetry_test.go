// SPDX-License-Identifier: Apache-2.0

package telemetry

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServesMetricsAndHealth(t *testing.T) {
	set := metrics.NewSet()
	set.NewCounter(`xmirror_test_packets_total{session="s1"}`).Add(7)
	s, err := Listen("127.0.0.1:0", set)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()

	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `xmirror_test_packets_total{session="s1"} 7`) {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if !strings.Contains(body, "process_resident_memory_bytes") {
		t.Error("/metrics lacks the process metrics")
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz while healthy: %d", code)
	}
	s.SetHealthy(false)
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz while unhealthy: %d, want 503", code)
	}
}

func TestListenReportsBusyAddress(t *testing.T) {
	s, err := Listen("127.0.0.1:0", metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(s.Addr(), metrics.NewSet()); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("second Listen on %s: %v, want an error naming the address", s.Addr(), err)
	}
}

// TestHealthListenerServesOnlyHealth: the listener the load balancer probes from
// the network must not expose /metrics.
func TestHealthListenerServesOnlyHealth(t *testing.T) {
	h, err := ListenHealth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	base := "http://" + h.Addr()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the health listener: %d, want 404", code)
	}
	h.SetHealthy(false)
	if code, _ := get(t, base+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz while unhealthy: %d, want 503", code)
	}
}

// TestMetadataOnEveryFamily: /metrics carries xmirror_build_info and a HELP and
// TYPE line before the first sample of every family, including the families
// written without them, and keeps those written with them.
func TestMetadataOnEveryFamily(t *testing.T) {
	SetBuild("v1.2.3", "abc1234")
	defer SetBuild("dev", "unknown")
	set := metrics.NewSet()
	set.NewCounter(`xmirror_collector_drops_total{reason="write_error"}`).Inc()
	set.NewCounter(`xmirror_collector_drops_total{reason="malformed"}`).Inc()
	set.NewGauge(`xmirror_lb_backend_healthy{backend="a"}`, func() float64 { return 1 })
	set.RegisterMetricsWriter(func(w io.Writer) {
		io.WriteString(w, "# HELP xmirror_source_rules Rules.\n# TYPE xmirror_source_rules gauge\nxmirror_source_rules 3\n")
	})
	s, err := Listen("127.0.0.1:0", set)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, body := get(t, "http://"+s.Addr()+"/metrics")
	if !strings.Contains(body, `xmirror_build_info{version="v1.2.3",commit="abc1234",goversion="go`) {
		t.Errorf("no build info:\n%s", body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	kinds := compositeKinds(lines)
	if kinds["go_gc_duration_seconds"] != "summary" {
		t.Errorf("the process metrics have no summary go_gc_duration_seconds:\n%s", body)
	}
	helps, types := map[string]int{}, map[string]int{}
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "# HELP "):
			helps[f[2]]++
			if len(f) < 4 {
				t.Errorf("HELP without text: %q", line)
			}
		case strings.HasPrefix(line, "# TYPE "):
			types[f[2]]++
		case !strings.HasPrefix(line, "#"):
			fam := familyOf(family(line), kinds)
			if helps[fam] != 1 || types[fam] != 1 {
				t.Errorf("%s: sample after %d HELP and %d TYPE lines", fam, helps[fam], types[fam])
			}
		}
	}
	if !strings.Contains(body, "# HELP xmirror_collector_drops_total Datagrams the collector dropped, by reason.\n# TYPE xmirror_collector_drops_total counter\n") {
		t.Errorf("drops family lacks its help:\n%s", body)
	}
	// What Prometheus itself says of it (it refused the Go runtime's
	// summaries and histograms typed as gauges).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("needs promtool (Debian package prometheus): run make deps")
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestReadiness: a running part whose work fails (the source's targets do
// not answer) answers /healthz with 503 and what is wrong.
func TestReadiness(t *testing.T) {
	s, err := Listen("127.0.0.1:0", metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var problem error
	s.SetReadiness(func() error { return problem })
	base := "http://" + s.Addr()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz while ready: %d", code)
	}
	problem = errors.New("target 192.168.0.147: neighbour_unresolved")
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "neighbour_unresolved") {
		t.Fatalf("/healthz while not ready: %d %q, want 503 with the reason", code, body)
	}
}
