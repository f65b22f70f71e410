// SPDX-License-Identifier: Apache-2.0

package main

import (
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
