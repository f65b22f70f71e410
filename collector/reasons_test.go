// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestReasonsInMetricsAndDocs: every drop reason is a series of
// xmirror_collector_drops_total from the start (at 0) and is explained in
// docs/collector.md.
func TestReasonsInMetricsAndDocs(t *testing.T) {
	c := offline(t, Options{OutputDir: t.TempDir()})
	var buf bytes.Buffer
	c.Metrics().WritePrometheus(&buf)
	doc, err := os.ReadFile("../docs/collector.md")
	if err != nil {
		t.Fatal(err)
	}
	for r := ReasonShort; r < numReasons; r++ {
		if !strings.Contains(buf.String(), `xmirror_collector_drops_total{reason="`+r.String()+`"} 0`) {
			t.Errorf("reason %s: no series in /metrics", r)
		}
		if !bytes.Contains(doc, []byte("`"+r.String()+"`")) {
			t.Errorf("reason %s: not in docs/collector.md", r)
		}
	}
}
