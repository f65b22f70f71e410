// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestQuickBench builds xmirror and runs `xmirror bench --quick` into a temporary
// directory, as CI does, so that the benchmark never rots. It checks that the
// report was written and holds numbers for every scenario, never how fast
// anything was.
func TestQuickBench(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipped in -short mode: the quick bench takes about a minute")
	}
	exe := labtest.XmirrorBinary(t)
	dir := t.TempDir()
	outDir := filepath.Join(dir, "report")
	cmd := exec.Command(exe, "bench", "--quick", "--out", outDir)
	out, err := cmd.CombinedOutput()
	t.Logf("xmirror bench --quick:\n%s", out)
	if err != nil {
		t.Fatalf("bench failed: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(outDir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if rep.Machine.Cores == 0 || rep.Machine.Kernel == "" {
		t.Errorf("machine facts missing: %+v", rep.Machine)
	}
	if len(rep.Scenarios) != len(AllScenarios) {
		t.Fatalf("%d scenarios in results.json, want %d", len(rep.Scenarios), len(AllScenarios))
	}
	for i, sc := range rep.Scenarios {
		if sc.Name != AllScenarios[i] {
			t.Errorf("scenario %d is %q, want %q", i, sc.Name, AllScenarios[i])
		}
		if sc.Skipped != "" {
			t.Logf("%s skipped: %s", sc.Name, sc.Skipped)
			continue
		}
		// The reference system of every scenario needs only this repository and
		// the Debian packages the Makefile installs: it must have produced numbers.
		ref := sc.system(sc.Ceiling)
		if ref == nil {
			t.Errorf("%s: reference system %q did not run: %+v", sc.Name, sc.Ceiling, sc.Systems)
			continue
		}
		// The primary metric may be 0 (nothing lossless on a loaded machine), but it
		// must be there, and something must have been received.
		if _, ok := ref.Metrics[sc.Primary]; !ok {
			t.Errorf("%s: %s has no %s: %v", sc.Name, ref.Name, sc.Primary, ref.Metrics)
		}
		if ref.Metrics["received_pps"] <= 0 && ref.Metrics["throughput_gbps"] <= 0 {
			t.Errorf("%s: %s moved no traffic: %v", sc.Name, ref.Name, ref.Metrics)
		}
		for _, s := range sc.Systems {
			if s.Skipped == "" && len(s.Metrics) == 0 {
				t.Errorf("%s: %s ran but has no metrics", sc.Name, s.Name)
			}
			// A floor whose copies never arrived would be no floor.
			if s.Name == spanName && s.Skipped == "" && s.Metrics["mirrored_pps"] <= 0 {
				t.Errorf("%s: %s counted no copies: %v", sc.Name, s.Name, s.Metrics)
			}
		}
	}
	md, err := os.ReadFile(filepath.Join(outDir, ReportMarkdown))
	if err != nil || len(md) == 0 {
		t.Errorf("report.md: %v", err)
	}
	for _, f := range []string{"lb-pps.svg", "collector-pps.svg", "collector-loss.svg"} {
		checkSVG(t, filepath.Join(outDir, f))
	}
}

func TestMain(m *testing.M) { labtest.Main(m) }
