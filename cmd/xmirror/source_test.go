// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sourceMetricsSample = `# HELP xmirror_source_mirrored_packets_total Packets mirrored to the target.
# TYPE xmirror_source_mirrored_packets_total counter
xmirror_source_mirrored_packets_total{session="mirror-session-01",filter="mirror-filter-01",direction="inbound"} 7
xmirror_source_mirrored_packets_total{session="mirror-session-01",filter="mirror-filter-01",direction="outbound"} 5
xmirror_source_mirrored_bytes_total{session="mirror-session-01",filter="mirror-filter-01",direction="inbound"} 600
xmirror_source_cut_packets_total{session="mirror-session-01",filter="mirror-filter-01",direction="inbound"} 2
xmirror_source_ratelimited_packets_total{session="mirror-session-01",filter="mirror-filter-01",direction="outbound"} 3
xmirror_source_errors_total{session="a \"quoted\" name",filter="f",direction="outbound"} 1
process_cpu_seconds_total 0.5
`

func TestParseSourceMetrics(t *testing.T) {
	rows, err := parseSourceMetrics(strings.NewReader(sourceMetricsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	in, out, q := rows[0], rows[1], rows[2]
	if in.Direction != "inbound" || in.Packets != 7 || in.Bytes != 600 || in.Cut != 2 {
		t.Errorf("inbound row %+v", in)
	}
	if out.Direction != "outbound" || out.Packets != 5 || out.RateLimited != 3 {
		t.Errorf("outbound row %+v", out)
	}
	if q.Session != `a "quoted" name` || q.Errors != 1 {
		t.Errorf("quoted row %+v", q)
	}
}

func FuzzParseSourceMetrics(f *testing.F) {
	f.Add(sourceMetricsSample)
	f.Add(`xmirror_source_errors_total{session="\",filter="",direction="inbound"} 99999999999999999999999`)
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := parseSourceMetrics(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Direction != "inbound" && r.Direction != "outbound" {
				t.Fatalf("direction %q", r.Direction)
			}
		}
	})
}

// TestSourceStatusOtherEndpoint: `source status --config FILE` with
// metrics.listen off in FILE read 127.0.0.1:9090 instead, and an endpoint
// that is not a source's (the lb's or the collector's /metrics on the same
// host) gave empty tables and exit 0, as if the source mirrored nothing.
// Both are errors now, saying what to give.
func TestSourceStatusOtherEndpoint(t *testing.T) {
	lbMetrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "xmirror_lb_up 1\nxmirror_lb_reloads_total 0\n")
	}))
	defer lbMetrics.Close()
	off := filepath.Join(t.TempDir(), "off.yaml")
	os.WriteFile(off, []byte(strings.Replace(cliSourceYAML, `metrics: {listen: "127.0.0.1:9464"}`, `metrics: {listen: "off"}`, 1)), 0o600)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"metrics off in the file", []string{"--config", off}, exitUsage, "metrics.listen is off"},
		{"another part's metrics", []string{"--metrics", strings.TrimPrefix(lbMetrics.URL, "http://")}, exitRuntime, "no metrics of an xmirror source"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCaptured(t, append([]string{"source", "status"}, c.args...)...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
}

// TestSourceStatusAfterRefusedReload: `source status --config FILE` prints
// its session table from FILE; after the running source refused a SIGHUP of
// that file (a typo, a session it cannot apply), the table showed sessions
// the source did not run and nothing said so. The source now exports whether
// its last reload was applied, and status says when it was not.
func TestSourceStatusAfterRefusedReload(t *testing.T) {
	for _, c := range []struct {
		name    string
		applied int
		warned  bool
	}{{"applied", 1, false}, {"refused", 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprintf(w, "xmirror_source_rules{direction=\"inbound\"} 1\nxmirror_source_reload_errors_total %d\nxmirror_source_config_last_reload_successful %d\n", 1-c.applied, c.applied)
			}))
			defer src.Close()
			cfg := filepath.Join(t.TempDir(), "s.yaml")
			os.WriteFile(cfg, []byte(cliSourceYAML), 0o600)
			code, out, errOut := runCaptured(t, "source", "status", "--config", cfg, "--metrics", strings.TrimPrefix(src.URL, "http://"))
			if code != exitOK {
				t.Fatalf("exit %d:\n%s%s", code, out, errOut)
			}
			if warned := strings.Contains(out, "refused its last reload"); warned != c.warned {
				t.Errorf("warned %v, want %v:\n%s", warned, c.warned, out)
			}
		})
	}
}
