// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Kinds of system in a scenario.
const (
	KindCeiling     = "ceiling"     // the most this machine can do for the job
	KindXmirror     = "xmirror"     // a part of xmirror
	KindAlternative = "alternative" // what users would pick instead
	KindBaseline    = "baseline"    // the same work without mirroring (source)
	KindReference   = "reference"   // a bound no real system can beat, for scale
)

// Report is everything one `xmirror bench` run measured.
type Report struct {
	Machine   Machine          `json:"machine"`
	Started   time.Time        `json:"started"`
	Seconds   float64          `json:"seconds"`
	Options   ReportOptions    `json:"options"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// ReportOptions records how the run was made.
type ReportOptions struct {
	Quick      bool     `json:"quick"`
	Scenarios  []string `json:"scenarios"`
	Reps       int      `json:"repetitions"`
	TrialSecs  float64  `json:"trial_seconds"`
	FrameBytes int      `json:"frame_bytes"` // on the wire, outer headers included
	Flows      int      `json:"flows"`
	Command    string   `json:"command"`
	// Protocols the collector scenario sent to xmirror collect (GENEVE
	// frames with GeneveOptions options).
	Protocols     []Protocol `json:"protocols"`
	GeneveOptions int        `json:"geneve_options"`
}

// ScenarioResult is one scenario: several systems doing the same job.
type ScenarioResult struct {
	Name    string         `json:"name"`
	Title   string         `json:"title"`
	About   string         `json:"about"`
	Skipped string         `json:"skipped,omitempty"`
	Ceiling string         `json:"ceiling,omitempty"` // name of the system ratios are against
	Primary string         `json:"primary"`           // the metric charts and ratios use
	Systems []SystemResult `json:"systems"`
	Goals   []Goal         `json:"goals,omitempty"`
	Notes   []string       `json:"notes,omitempty"`
}

// SystemResult is one system in a scenario.
type SystemResult struct {
	Name    string             `json:"name"`
	Kind    string             `json:"kind"`
	Skipped string             `json:"skipped,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"` // medians over repetitions
	// Ratio is the primary metric against the ceiling's: the median of the
	// rounds' ratios where both have trials of it, else of the medians.
	Ratio *float64 `json:"ratio,omitempty"`
	// RoundRatios are the ratios of each round both ran, in round order.
	RoundRatios []float64            `json:"round_ratios,omitempty"`
	Curve       []CurvePoint         `json:"curve,omitempty"` // loss versus offered rate
	Trials      []map[string]float64 `json:"trials,omitempty"`
	// Rounds holds the repetition each trial belongs to, so that trials of
	// different systems taken in the same round can be paired.
	Rounds []int    `json:"rounds,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

// CurvePoint is the median outcome at one offered rate.
type CurvePoint struct {
	OfferedPPS  float64 `json:"offered_pps"`
	ReceivedPPS float64 `json:"received_pps"`
	LossPct     float64 `json:"loss_pct"`
}

// Goal is a target from the issue and whether this run met it.
type Goal struct {
	Text   string `json:"text"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Metric names and their units, in the order tables show them.
var metricUnits = []struct{ name, unit, title string }{
	{"received_pps", "pps", "received"},
	{"offered_pps", "pps", "offered"},
	{"lossless_pps", "pps", "lossless rate"},
	{"top_offered_pps", "pps", "top rate"},
	{"loss_top_pct", "%", "loss at top"},
	{"loss_pct", "%", "loss"},
	{"weight_error_pct", "%", "weight error"},
	{"throughput_gbps", "Gbit/s", "throughput"},
	{"cost_pct", "%", "cost"},
	{"mirrored_pps", "pps", "mirrored"},
	{"write_mbps", "MB/s", "written"},
	{"rss_mib", "MiB", "peak RSS"},
	{"softirq_cores", "cores", "softirq CPU"},
	{"cpu_cores", "cores", "machine CPU"},
	{"proc_cpu_cores", "cores", "process CPU"},
	{"proc_cpu_per_mpps", "cores", "process CPU per Mpps"},
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medians reduces the trials of a system to the median of every metric.
func medians(trials []map[string]float64) map[string]float64 {
	keys := map[string][]float64{}
	for _, t := range trials {
		for k, v := range t {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				keys[k] = append(keys[k], v)
			}
		}
	}
	out := map[string]float64{}
	for k, v := range keys {
		out[k] = median(v)
	}
	return out
}

// setRatios fills each system's ratio of the primary metric against the
// ceiling. Where both have trials by round, the ratio is the median of the
// rounds' ratios: the trials of one round were taken a few seconds apart,
// while this machine's speed may change between rounds, which a ratio of the
// two medians would count as a difference between the systems.
func (s *ScenarioResult) setRatios() {
	ceil := s.system(s.Ceiling)
	if ceil == nil {
		return
	}
	for i := range s.Systems {
		sys := &s.Systems[i]
		if sys.Skipped != "" {
			continue
		}
		if per := roundRatios(sys, ceil, s.Primary); len(per) > 0 {
			r := median(per)
			sys.Ratio, sys.RoundRatios = &r, per
			continue
		}
		if v, ok := sys.Metrics[s.Primary]; ok && ceil.Metrics[s.Primary] > 0 {
			r := v / ceil.Metrics[s.Primary]
			sys.Ratio = &r
		}
	}
}

// roundRatios pairs the trials of sys and ref taken in the same round and
// gives each pair's ratio of metric, in round order (nil when no round has
// both, or the trials carry no rounds).
func roundRatios(sys, ref *SystemResult, metric string) []float64 {
	if len(sys.Rounds) != len(sys.Trials) || len(ref.Rounds) != len(ref.Trials) {
		return nil
	}
	refBy := map[int]float64{}
	for i, t := range ref.Trials {
		if v, ok := t[metric]; ok && v > 0 && !math.IsInf(v, 0) {
			refBy[ref.Rounds[i]] = v
		}
	}
	var out []float64
	for i, t := range sys.Trials {
		v, ok := t[metric]
		rv, rok := refBy[sys.Rounds[i]]
		if ok && rok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v/rv)
		}
	}
	return out
}

// roundRange is "lo–hi" of a system's round ratios, "" with fewer than two.
func roundRange(per []float64) string {
	if len(per) < 2 {
		return ""
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(per), slices.Max(per))
}

// system returns the named system, or nil.
func (s *ScenarioResult) system(name string) *SystemResult {
	for i := range s.Systems {
		if s.Systems[i].Name == name && s.Systems[i].Skipped == "" {
			return &s.Systems[i]
		}
	}
	return nil
}

// unsteadyFactor is how far apart the reference system's trials may lie on a
// steady machine. This development machine switches between speeds that
// differ by about 1.5× within a run; trials of one mode stay within a few
// percent of each other.
const unsteadyFactor = 1.2

// steadinessNote says when the reference system's trials (the ceiling's, or
// the baseline's) spread further than a steady machine's do, so that the
// reader knows the ratios compare speeds of the machine as well as systems.
// "" when they do not, or when the trials do not carry the primary metric
// (the sweeps of the collector and e2e scenarios).
func (s *ScenarioResult) steadinessNote() string {
	ref := s.system(s.Ceiling)
	if ref == nil {
		return ""
	}
	var vals []float64
	for _, t := range ref.Trials {
		if v, ok := t[s.Primary]; ok && v > 0 && !math.IsInf(v, 0) {
			vals = append(vals, v)
		}
	}
	if len(vals) < 2 {
		return ""
	}
	lo, hi := slices.Min(vals), slices.Max(vals)
	if hi <= lo*unsteadyFactor {
		return ""
	}
	unit := ""
	for _, mu := range metricUnits {
		if mu.name == s.Primary {
			unit = mu.unit
		}
	}
	return fmt.Sprintf("Unsteady run: the %s trials ranged from %s to %s (%.2f×), where trials on a steady machine stay within %.0f%% of each other. "+
		"Ratios pair each system's trial with the %s trial of the same round, which cancels a change of speed between rounds but not one within a round: a ratio or goal this close to its limit may come out differently in the next run.",
		s.Ceiling, formatValue(lo, unit), formatValue(hi, unit), hi/lo, 100*(unsteadyFactor-1), s.Ceiling)
}
