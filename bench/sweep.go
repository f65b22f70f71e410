// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"fmt"
	"math"

	"github.com/xmirror/xmirror/internal/netlab"
)

// LosslessPct is the loss a step may have and still count as lossless: a handful of
// packets lost to a timer tick out of millions is not a capacity limit.
const LosslessPct = 0.1

// sweepFractions are the offered rates of a sweep, as fractions of the generator's
// top rate towards an XDP receiver; 0 means as fast as the generator goes.
func (r *runner) sweepFractions() []float64 {
	if r.o.Quick {
		return []float64{0.1, 0.3, 0}
	}
	return []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0}
}

// stepTrial runs one trial at rate (0 = top) and returns its metrics, which must
// include offered_pps, received_pps and loss_pct.
type stepTrial func(ctx context.Context, rate float64, label string) (map[string]float64, error)

// sweepSys is one system in a sweep.
type sweepSys struct {
	res   *SystemResult
	trial stepTrial
	label string
	lossy int                // lossy steps in a row
	top   map[string]float64 // medians at the top rate
}

// sweep runs every system's trial at rising rates, Reps times each, and fills each
// result with its curve and summary: the highest lossless offered rate and the top
// rate's outcome. At every step the repetitions go round the systems, so that load
// from elsewhere on the machine falls on all of them alike. After two lossy steps
// in a row a system jumps to the top rate: higher steps would only lose more.
// Then each system's row is shown and its result added to sc.
func (r *runner) sweep(ctx context.Context, sc *ScenarioResult, systems []*sweepSys, pmax float64) {
	fr := r.sweepFractions()
	for i, f := range fr {
		rate := f * pmax
		trials := make([][]map[string]float64, len(systems))
		for rep := 0; rep < r.o.Reps; rep++ {
			for k, s := range systems {
				if ctx.Err() != nil || s.res.Skipped != "" || (s.lossy >= 2 && f != 0) {
					continue
				}
				lbl := fmt.Sprintf("%s: step %d/%d (%s) rep %d/%d", s.label, i+1, len(fr), rateText(rate), rep+1, r.o.Reps)
				t, err := s.trial(ctx, rate, lbl)
				if err != nil {
					s.res.Errors = append(s.res.Errors, fmt.Sprintf("%s: %v", rateText(rate), err))
					continue
				}
				t["rate_fraction"] = f
				trials[k] = append(trials[k], t)
				s.res.Trials = append(s.res.Trials, t)
			}
		}
		for k, s := range systems {
			if len(trials[k]) == 0 {
				continue
			}
			m := medians(trials[k])
			s.res.Curve = append(s.res.Curve, CurvePoint{OfferedPPS: m["offered_pps"], ReceivedPPS: m["received_pps"], LossPct: m["loss_pct"]})
			if m["loss_pct"] > LosslessPct {
				s.lossy++
			} else {
				s.lossy = 0
			}
			if f == 0 {
				s.top = m
			}
		}
	}
	for _, s := range systems {
		s.summarize()
		r.ui.row(sc.Name, s.res)
		sc.Systems = append(sc.Systems, *s.res)
	}
}

func (s *sweepSys) summarize() {
	res := s.res
	if res.Skipped != "" {
		return
	}
	if len(res.Curve) == 0 {
		res.Skipped = "no step succeeded: " + firstErrors(res.Errors)
		return
	}
	res.Metrics = map[string]float64{"lossless_pps": 0}
	for _, p := range res.Curve {
		if p.LossPct <= LosslessPct {
			res.Metrics["lossless_pps"] = math.Max(res.Metrics["lossless_pps"], p.OfferedPPS)
		}
	}
	if s.top != nil {
		res.Metrics["top_offered_pps"] = s.top["offered_pps"]
		res.Metrics["loss_top_pct"] = s.top["loss_pct"]
		res.Metrics["received_pps"] = s.top["received_pps"]
		for _, k := range []string{"write_mbps", "proc_cpu_cores", "proc_cpu_per_mpps", "cpu_cores", "softirq_cores"} {
			if v, ok := s.top[k]; ok {
				res.Metrics[k] = v
			}
		}
	}
	for _, t := range res.Trials {
		if v, ok := t["rss_mib"]; ok {
			res.Metrics["rss_mib"] = math.Max(res.Metrics["rss_mib"], v)
		}
	}
}

func rateText(rate float64) string {
	if rate == 0 {
		return "top rate"
	}
	return formatPPS(rate)
}

// measureTop is the generator's top rate from g to an XDP counter on dst: the
// labTopRate builds a throwaway lab of hosts and measures the generator's top
// rate from gen into to, the scale of the scenario's steps; on failure it says
// in sc why the scenario is skipped.
func (r *runner) labTopRate(ctx context.Context, sc *ScenarioResult, label string, hosts []netlab.HostSpec, to string) (float64, bool) {
	lab, err := r.newLab(label, hosts...)
	if err != nil {
		sc.Skipped = fmt.Sprintf("lab: %v", err)
		return 0, false
	}
	pmax, err := r.measureTop(ctx, lab.Host("gen"), lab.Host(to))
	lab.Close()
	if err != nil {
		sc.Skipped = fmt.Sprintf("generator: %v", err)
		return 0, false
	}
	sc.Notes = append(sc.Notes, fmt.Sprintf("generator top rate into an XDP drop counter: %s; steps are fractions of it", formatPPS(pmax)))
	return pmax, true
}

// scale the sweeps' steps are fractions of.
func (r *runner) measureTop(ctx context.Context, gen, dst *netlab.Host) (float64, error) {
	var ctr *XDPPeer
	if err := dst.Do(func() (err error) { ctr, err = AttachCounter(dst.Ifindex); return err }); err != nil {
		return 0, err
	}
	defer ctr.Close()
	res, err := r.generateOn(ctx, gen, hostIf(gen), dst.MAC, dst.Addr, VXLAN, 0, min(r.o.Trial, 2e9), "measuring the generator's top rate")
	if err != nil {
		return 0, err
	}
	if res.PPS <= 0 {
		return 0, fmt.Errorf("generator sent nothing")
	}
	return res.PPS, nil
}
