// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// e2eSystem is a whole pipeline: a load balancer on "lb" and receivers on b1, b2.
type e2eSystem struct {
	name      string
	kind      string
	skip      func() string
	setupLB   func(t *lbTopo, dir string) (int, func(), error)
	receivers []receiver // one per backend host that receives (b1, b2)
}

func (r *runner) scenarioE2E(ctx context.Context) ScenarioResult {
	sc := ScenarioResult{
		Name:    "e2e",
		Title:   "end to end: generator → LB → two collectors",
		About:   "The whole pipeline at rising offered rates; received is the sum over both collectors.",
		Ceiling: "xdp ceiling → xdp counters",
		Primary: "lossless_pps",
	}
	pmax, ok := r.labTopRate(ctx, &sc, "e2e", bridgeHosts(), "lb")
	if !ok {
		return sc
	}
	both := func() string {
		if why := r.available("lb"); why != "" {
			return why
		}
		return r.available("collect")
	}
	systems := []e2eSystem{
		{name: "xdp ceiling → xdp counters", kind: KindCeiling, setupLB: setupCeiling,
			receivers: []receiver{xdpCounterReceiver(), xdpCounterReceiver()}},
		{name: "xdp ceiling → sink", kind: KindBaseline, setupLB: setupCeiling, receivers: []receiver{r.sinkReceiver()}},
		{name: "xmirror lb → xmirror collect (socket)", kind: KindXmirror, skip: both,
			setupLB:   func(t *lbTopo, dir string) (int, func(), error) { return r.setupXmirrorLB(t, dir, "wrr") },
			receivers: []receiver{r.collectReceiver(receiveSocket), r.collectReceiver(receiveSocket)}},
		{name: "xmirror lb → xmirror collect (xdp)", kind: KindXmirror, skip: both,
			setupLB:   func(t *lbTopo, dir string) (int, func(), error) { return r.setupXmirrorLB(t, dir, "wrr") },
			receivers: []receiver{r.collectReceiver(receiveXDP), r.collectReceiver(receiveXDP)}},
	}
	var sweeps []*sweepSys
	for _, sys := range systems {
		res := &SystemResult{Name: sys.name, Kind: sys.kind}
		if sys.skip != nil {
			res.Skipped = sys.skip()
		}
		s := &sweepSys{res: res, label: "e2e: " + sys.name}
		if res.Skipped == "" {
			trial, closeFn := r.prepareE2E(res, sys)
			defer closeFn()
			s.trial = trial
		}
		sweeps = append(sweeps, s)
	}
	r.sweep(ctx, &sc, sweeps, pmax)
	return sc
}

// prepareE2E builds the system's lab and starts its LB; the trial starts the
// receivers fresh each time. On failure res says why it is skipped.
func (r *runner) prepareE2E(res *SystemResult, sys e2eSystem) (stepTrial, func()) {
	var u undo
	closeAll := u.run
	topo, err := r.newBridgeTopo()
	if err != nil {
		res.Skipped = fmt.Sprintf("lab: %v", err)
		return nil, closeAll
	}
	lab := topo.lab
	u.push(func() { lab.Close() })
	dir, err := os.MkdirTemp(r.tmp, "e2e-")
	if err != nil {
		res.Skipped = err.Error()
		return nil, closeAll
	}
	if err := warmNeighbours(lab.Host("lb"), addrB1, addrB2, addrGen); err != nil {
		res.Skipped = err.Error()
		return nil, closeAll
	}
	_, stop, err := sys.setupLB(topo, dir)
	if err != nil {
		res.Skipped = fmt.Sprintf("setup failed: %v", err)
		return nil, closeAll
	}
	u.push(stop)
	hosts := []*netlab.Host{lab.Host("b1"), lab.Host("b2")}
	for _, h := range hosts {
		if err := steerRxOffGen(h); err != nil {
			res.Skipped = err.Error()
			return nil, closeAll
		}
	}
	trial := func(ctx context.Context, rate float64, label string) (map[string]float64, error) {
		return r.e2eTrial(ctx, topo, sys.receivers, hosts, rate, label)
	}
	return trial, closeAll
}

// e2eTrial starts the receivers fresh on hosts, sends at rate through the LB
// and stops them, summing what they received.
func (r *runner) e2eTrial(ctx context.Context, topo *lbTopo, receivers []receiver, hosts []*netlab.Host, rate float64, label string) (map[string]float64, error) {
	var started []*startedProc
	var dirs []string
	stopAll := func() (uint64, uint64, error) {
		var got, written uint64
		var firstErr error
		for i, sp := range started {
			st, err := receivers[i].stop(sp, dirs[i])
			if err != nil && firstErr == nil {
				firstErr = err
			}
			got += st.received
			written += st.written
			os.RemoveAll(dirs[i])
		}
		return got, written, firstErr
	}
	for i, rx := range receivers {
		d, err := os.MkdirTemp(r.tmp, "rx-")
		if err != nil {
			stopAll()
			return nil, err
		}
		sp, err := rx.start(hosts[i], d)
		if err != nil {
			os.RemoveAll(d)
			stopAll()
			return nil, err
		}
		started = append(started, sp)
		dirs = append(dirs, d)
	}
	time.Sleep(rxSettle)
	g, gerr := r.generate(ctx, topo, rate, r.o.Trial, label)
	time.Sleep(defaultDrain)
	got, written, err := stopAll()
	if gerr != nil {
		return nil, gerr
	}
	if err != nil {
		return nil, err
	}
	return rxTrial(g, got, written, procStats{}, procStats{})
}
