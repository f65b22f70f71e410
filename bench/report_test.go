// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	one := 1.0
	half := 0.5
	return &Report{
		Machine: Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.18"},
		Started: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC),
		Options: ReportOptions{Reps: 3, TrialSecs: 3, FrameBytes: 150, Flows: 16},
		Scenarios: []ScenarioResult{
			{Name: "lb", Title: "lb <&> test", Ceiling: "xdp ceiling", Primary: "received_pps", Systems: []SystemResult{
				{Name: "xdp ceiling", Kind: KindCeiling, Metrics: map[string]float64{"received_pps": 3e6, "loss_pct": 0}, Ratio: &one},
				{Name: "xmirror lb (wrr)", Kind: KindXmirror, Metrics: map[string]float64{"received_pps": 1.5e6, "weight_error_pct": 0.2}, Ratio: &half},
				{Name: "nginx udp proxy", Kind: KindAlternative, Skipped: "nginx is not installed"},
			}},
			{Name: "collector", Title: "collector", Ceiling: "recvmmsg sink", Primary: "lossless_pps", Systems: []SystemResult{
				{Name: "recvmmsg sink", Kind: KindCeiling, Metrics: map[string]float64{"lossless_pps": 2e5},
					Curve: []CurvePoint{{1e5, 1e5, 0}, {2e5, 2e5, 0}, {3e5, 2.5e5, 16.7}}},
			}},
			{Name: "source", Skipped: "`xmirror source` is not in this build"},
		},
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport()
	for i := range rep.Scenarios {
		rep.Scenarios[i].Goals = goalsFor(&rep.Scenarios[i])
	}
	if err := WriteReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, err := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(back.Scenarios) != 3 || back.Scenarios[0].Systems[1].Metrics["received_pps"] != 1.5e6 {
		t.Errorf("results.json lost data: %+v", back.Scenarios)
	}
	md, err := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Test CPU", "| xmirror lb (wrr) | xmirror | 0.50× | 1.50 Mpps |", "skipped: nginx is not installed",
		"not met — xmirror lb (wrr) ≥ 90% of the XDP ceiling", "![lb per system](lb-pps.svg)", "collector-loss.svg", "Skipped: `xmirror source`"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"lb-pps.svg", "collector-pps.svg", "collector-loss.svg"} {
		checkSVG(t, filepath.Join(dir, f))
	}
	if _, err := os.Stat(filepath.Join(dir, "lb-loss.svg")); err == nil {
		t.Error("lb-loss.svg written without a curve")
	}
}

// checkSVG parses an SVG as XML: a chart a browser cannot open is no chart.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	elems := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, ok := tok.(xml.StartElement); ok {
			elems++
		}
	}
	if elems < 5 {
		t.Errorf("%s has %d elements", path, elems)
	}
}

func TestTextTable(t *testing.T) {
	sc := sampleReport().Scenarios[0]
	out := textTable(&sc)
	if !strings.Contains(out, "xmirror lb (wrr)") || !strings.Contains(out, "0.50×") || !strings.Contains(out, "skipped: nginx") {
		t.Errorf("table:\n%s", out)
	}
}

func TestMedians(t *testing.T) {
	m := medians([]map[string]float64{{"a": 1, "b": 4}, {"a": 3}, {"a": 2, "b": 2}})
	if m["a"] != 2 || m["b"] != 3 {
		t.Errorf("medians = %v", m)
	}
}

// TestSteadinessNote: a run whose reference trials spread beyond a steady
// machine's says so; a steady one, one trial, or trials without the primary
// metric (the sweeps) say nothing.
func TestSteadinessNote(t *testing.T) {
	lb := func(trials ...float64) *ScenarioResult {
		sc := &ScenarioResult{Name: "lb", Ceiling: "xdp ceiling", Primary: "received_pps"}
		ceil := SystemResult{Name: "xdp ceiling", Kind: KindCeiling}
		for _, v := range trials {
			ceil.Trials = append(ceil.Trials, map[string]float64{"received_pps": v})
		}
		sc.Systems = append(sc.Systems, ceil)
		return sc
	}
	for _, c := range []struct {
		name string
		sc   *ScenarioResult
		want string
	}{
		{"mode switch", lb(8.5e6, 5.8e6, 8.4e6), "ranged from 5.80 Mpps to 8.50 Mpps (1.47×)"},
		{"steady", lb(8.5e6, 8.1e6, 8.4e6), ""},
		{"one trial", lb(8.5e6), ""},
		{"sweep trials", &ScenarioResult{Ceiling: "c", Primary: "lossless_pps", Systems: []SystemResult{
			{Name: "c", Trials: []map[string]float64{{"received_pps": 1e6}, {"received_pps": 3e6}}}}}, ""},
		{"no reference", &ScenarioResult{Ceiling: "c", Primary: "received_pps"}, ""},
	} {
		got := c.sc.steadinessNote()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: note %q, want one containing %q", c.name, got, c.want)
		}
	}
}

func TestLastJSON(t *testing.T) {
	var s SinkReport
	if err := lastJSON("sink listening on 0.0.0.0:4789\n{\"packets\":5,\"bytes\":7}\n", &s); err != nil || s.Packets != 5 {
		t.Errorf("lastJSON: %v %+v", err, s)
	}
	if err := lastJSON("no json here", &s); err == nil {
		t.Error("lastJSON accepted output without JSON")
	}
}

func FuzzLastJSON(f *testing.F) {
	f.Add("sink listening\n{\"packets\":1}\n")
	f.Add("{")
	f.Fuzz(func(t *testing.T, s string) {
		var r SinkReport
		lastJSON(s, &r)
	})
}

// TestSourceGoals checks issue #21's goal in the source scenario: the ring
// datapath's cost at most half of tc mirred's.
func TestSourceGoals(t *testing.T) {
	for _, c := range []struct {
		ring, mirred float64
		met          bool
	}{{20, 50, true}, {25, 50, true}, {30, 50, false}, {10, 0, false}} {
		sc := ScenarioResult{Name: "source", Systems: []SystemResult{
			{Name: "xmirror source (ring)", Kind: KindXmirror, Metrics: map[string]float64{"cost_pct": c.ring}},
			{Name: "tc mirred → vxlan", Kind: KindAlternative, Metrics: map[string]float64{"cost_pct": c.mirred}},
		}}
		var found bool
		for _, g := range goalsFor(&sc) {
			if strings.Contains(g.Text, "half of tc mirred") {
				found = true
				if g.Met != c.met {
					t.Errorf("ring %.0f%%, mirred %.0f%%: met %v, want %v (%s)", c.ring, c.mirred, g.Met, c.met, g.Detail)
				}
			}
		}
		if !found {
			t.Errorf("ring %.0f%%, mirred %.0f%%: no goal against mirred", c.ring, c.mirred)
		}
	}
}

// TestSourceGoalNamesFloor checks that the goal against mirred reports the
// floor's cost beside it, as a share of mirred's, and that the floor, a
// reference, gets no goal of its own.
func TestSourceGoalNamesFloor(t *testing.T) {
	sc := ScenarioResult{Name: "source", Systems: []SystemResult{
		{Name: "xmirror source (ring)", Kind: KindXmirror, Metrics: map[string]float64{"cost_pct": 20}},
		{Name: "tc mirred → vxlan", Kind: KindAlternative, Metrics: map[string]float64{"cost_pct": 25}},
		{Name: spanName, Kind: KindReference, Metrics: map[string]float64{"cost_pct": 18}},
	}}
	var details []string
	for _, g := range goalsFor(&sc) {
		if strings.Contains(g.Text, "floor") {
			t.Errorf("a goal for the floor: %s", g.Text)
		}
		if strings.Contains(g.Text, "half of tc mirred") {
			details = append(details, g.Detail)
		}
	}
	if len(details) != 1 || !strings.Contains(details[0], "floor of a packet per copy costs 18.0% (0.72 of mirred's)") {
		t.Errorf("goal details %q, want the floor's 18.0%% (0.72 of mirred's)", details)
	}
}

// trialsByRound is a system whose trial of round r has metric value v, for
// each pair (r, v).
func trialsByRound(name, kind, metric string, pairs ...float64) SystemResult {
	s := SystemResult{Name: name, Kind: kind}
	for i := 0; i+1 < len(pairs); i += 2 {
		s.Trials = append(s.Trials, map[string]float64{metric: pairs[i+1]})
		s.Rounds = append(s.Rounds, int(pairs[i]))
	}
	s.Metrics = medians(s.Trials)
	return s
}

// TestRoundRatios: a ratio pairs the trials of one round. The ceiling ran at
// 10 Mpps in round 0 and 5 in rounds 1 and 2; the system, always 0.9 of it,
// lost its round-1 trial. The two medians (5 and 6.75 Mpps) would make it
// 1.35× the ceiling; paired by round it is 0.9× in each.
func TestRoundRatios(t *testing.T) {
	sc := ScenarioResult{Name: "lb", Ceiling: "xdp ceiling", Primary: "received_pps", Systems: []SystemResult{
		trialsByRound("xdp ceiling", KindCeiling, "received_pps", 0, 10e6, 1, 5e6, 2, 5e6),
		trialsByRound("xmirror lb (wrr)", KindXmirror, "received_pps", 0, 9e6, 2, 4.5e6),
		trialsByRound("xmirror lb (maglev)", KindXmirror, "received_pps", 0, 8e6, 1, 4.4e6, 2, 4.6e6),
	}}
	sc.setRatios()
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if r := sc.Systems[1].Ratio; r == nil || !near(*r, 0.9) || len(sc.Systems[1].RoundRatios) != 2 {
		t.Errorf("wrr ratio %v over rounds %v, want 0.9 over 2", r, sc.Systems[1].RoundRatios)
	}
	if r := sc.Systems[2].Ratio; r == nil || !near(*r, 0.88) {
		t.Errorf("maglev ratio %v (rounds %v), want the median 0.88", r, sc.Systems[2].RoundRatios)
	}
	if c := ratioCell(&sc.Systems[2]); c != "0.88× (0.80–0.92)" {
		t.Errorf("maglev cell %q", c)
	}
	goals := goalsFor(&sc)
	var met []string
	for _, g := range goals {
		if strings.Contains(g.Text, "90% of the XDP ceiling") {
			if g.Met {
				met = append(met, g.Text)
			}
			if !strings.Contains(g.Detail, "rounds") {
				t.Errorf("%s: detail %q does not say it pairs rounds", g.Text, g.Detail)
			}
		}
	}
	if len(met) != 1 || !strings.Contains(met[0], "wrr") {
		t.Errorf("goals met %v, want wrr's only", met)
	}
	// Trials without rounds (sweeps, older reports) fall back to the medians.
	old := ScenarioResult{Ceiling: "c", Primary: "received_pps", Systems: []SystemResult{
		{Name: "c", Metrics: map[string]float64{"received_pps": 10}},
		{Name: "x", Metrics: map[string]float64{"received_pps": 8}, Trials: []map[string]float64{{"received_pps": 8}}},
	}}
	old.setRatios()
	if r := old.Systems[1].Ratio; r == nil || !near(*r, 0.8) {
		t.Errorf("unpaired ratio %v, want 0.8", r)
	}
}

// TestSourceCostsByRound: plain iperf3 ran at 10 and then 6 Gbit/s; the
// mirror cost 20% in each round, which the two medians would not show.
func TestSourceCostsByRound(t *testing.T) {
	sc := ScenarioResult{Name: "source", Ceiling: "iperf3 plain", Primary: "throughput_gbps", Systems: []SystemResult{
		trialsByRound("iperf3 plain", KindBaseline, "throughput_gbps", 0, 10, 1, 6, 2, 6),
		trialsByRound("xmirror source (ring)", KindXmirror, "throughput_gbps", 0, 8, 1, 4.8),
	}}
	setCosts(&sc)
	if c := sc.Systems[1].Metrics["cost_pct"]; math.Abs(c-20) > 1e-9 {
		t.Errorf("cost %.2f%%, want 20%%", c)
	}
}
