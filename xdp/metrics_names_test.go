// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestBackendMetricsDistinct: two collectors on one host (ports 4789 and
// 4790) without names were one series in /metrics, {backend="",
// address="10.0.0.11"} written twice, and the dashboard's sum by
// (backend) added every unnamed backend into one line. A backend without a
// name is named by its address:port.
func TestBackendMetricsDistinct(t *testing.T) {
	labtest.RequireRoot(t)
	cfg, err := config.Parse([]byte(`load_balancer:
  listener: {vip: 10.0.0.1, interfaces: [eth0]}
  backends:
    - {address: 10.0.0.11}
    - {address: 10.0.0.11, port: 4790}
    - {address: 10.0.0.12}
`))
	if err != nil {
		t.Fatal(err)
	}
	bal, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	if err := bal.Apply(cfg.LoadBalancer); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	bal.RegisterMetrics(set)
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	seen := map[string]bool{}
	var weights []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.HasPrefix(line, "xmirror_lb_backend_weight{") {
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		if seen[series] {
			t.Errorf("series %s written twice", series)
		}
		seen[series] = true
		weights = append(weights, line)
	}
	if len(weights) != 3 || !strings.Contains(buf.String(), `xmirror_lb_backend_weight{backend="10.0.0.11:4790",address="10.0.0.11"} 1`) {
		t.Errorf("backend weights:\n%s", strings.Join(weights, "\n"))
	}
}
