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

// sweep runs trial at rising rates, Reps times each, and fills res with the curve
// and the summary: the highest lossless offered rate, and the top rate's outcome.
// After two lossy steps in a row it jumps to the top rate: higher steps would only
// lose more and cost minutes.
func (r *runner) sweep(ctx context.Context, res *SystemResult, pmax float64, label string, trial stepTrial) {
	fr := r.sweepFractions()
	lossy := 0
	var top map[string]float64
	for i, f := range fr {
		if ctx.Err() != nil {
			return
		}
		if lossy >= 2 && f != 0 {
			continue
		}
		rate := f * pmax
		var trials []map[string]float64
		for rep := 0; rep < r.o.Reps && ctx.Err() == nil; rep++ {
			lbl := fmt.Sprintf("%s: step %d/%d (%s) rep %d/%d", label, i+1, len(fr), rateText(rate), rep+1, r.o.Reps)
			t, err := trial(ctx, rate, lbl)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", rateText(rate), err))
				continue
			}
			t["rate_fraction"] = f
			trials = append(trials, t)
			res.Trials = append(res.Trials, t)
		}
		if len(trials) == 0 {
			continue
		}
		m := medians(trials)
		res.Curve = append(res.Curve, CurvePoint{OfferedPPS: m["offered_pps"], ReceivedPPS: m["received_pps"], LossPct: m["loss_pct"]})
		if m["loss_pct"] > LosslessPct {
			lossy++
		} else {
			lossy = 0
		}
		if f == 0 {
			top = m
		}
	}
	if len(res.Curve) == 0 {
		return
	}
	res.Metrics = map[string]float64{"lossless_pps": 0}
	for _, p := range res.Curve {
		if p.LossPct <= LosslessPct {
			res.Metrics["lossless_pps"] = math.Max(res.Metrics["lossless_pps"], p.OfferedPPS)
		}
	}
	if top != nil {
		res.Metrics["top_offered_pps"] = top["offered_pps"]
		res.Metrics["loss_top_pct"] = top["loss_pct"]
		res.Metrics["received_pps"] = top["received_pps"]
		for _, k := range []string{"write_mbps", "proc_cpu_cores", "cpu_cores"} {
			if v, ok := top[k]; ok {
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
// scale the sweeps' steps are fractions of.
func (r *runner) measureTop(ctx context.Context, gen, dst *netlab.Host) (float64, error) {
	var ctr *XDPPeer
	if err := dst.Do(func() (err error) { ctr, err = AttachCounter(dst.Ifindex); return err }); err != nil {
		return 0, err
	}
	defer ctr.Close()
	res, err := r.generateOn(ctx, gen, hostIf(gen), dst.MAC, dst.Addr, 0, min(r.o.Trial, 2e9), "measuring the generator's top rate")
	if err != nil {
		return 0, err
	}
	if res.PPS <= 0 {
		return 0, fmt.Errorf("generator sent nothing")
	}
	return res.PPS, nil
}
