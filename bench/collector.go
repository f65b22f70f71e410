// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

const (
	addrCGen = "10.78.0.1"
	addrCol  = "10.78.0.2"
)

// rxSettle is the pause between a receiver saying it is ready and the first packet.
const rxSettle = 200 * time.Millisecond

func collectorHosts() []netlab.HostSpec {
	return []netlab.HostSpec{
		{Name: "gen", Addrs: []string{addrCGen + "/24"}, MTU: labMTU, GRO: true},
		{Name: "col", Addrs: []string{addrCol + "/24"}, MTU: labMTU},
	}
}

func (r *runner) scenarioCollector(ctx context.Context) ScenarioResult {
	sc := ScenarioResult{
		Name:  "collector",
		Title: "collector: generator → collector host",
		About: "Rising offered rates into one receiver on the collector host; lossless means at most 0.1% lost. " +
			"Process CPU leaves out the kernel's softirq work (XDP programs, socket delivery): softirq CPU is the machine's.",
		Ceiling: "xdp drop counter",
		Primary: "lossless_pps",
	}
	pmax, ok := r.labTopRate(ctx, &sc, "col", collectorHosts(), "col")
	if !ok {
		return sc
	}
	var systems []*sweepSys
	rxs := []receiver{xdpCounterReceiver(), r.sinkReceiver(), r.collectReceiver(receiveSocket),
		r.collectReceiver(receiveXDP), tcpdumpReceiver()}
	for _, p := range r.o.Protocols {
		if p != VXLAN {
			rxs = append(rxs, r.collectInputReceiver(p))
		}
	}
	for _, rx := range rxs {
		res := &SystemResult{Name: rx.name, Kind: rx.kind}
		if rx.skip != nil {
			res.Skipped = rx.skip()
		}
		s := &sweepSys{res: res, label: "collector: " + rx.name}
		if res.Skipped == "" {
			lab, err := r.newLab("col", collectorHosts()...)
			if err != nil {
				res.Skipped = fmt.Sprintf("lab: %v", err)
			} else {
				defer lab.Close()
				if err := steerRxOffGen(lab.Host("col")); err != nil {
					res.Skipped = err.Error()
				}
				s.trial = r.collectorTrial(lab, rx)
			}
		}
		systems = append(systems, s)
	}
	r.sweep(ctx, &sc, systems, pmax)
	return sc
}

// collectorTrial runs rx fresh on the lab's collector host for one trial.
func (r *runner) collectorTrial(lab *netlab.Lab, rx receiver) stepTrial {
	gen, col := lab.Host("gen"), lab.Host("col")
	return func(ctx context.Context, rate float64, label string) (map[string]float64, error) {
		dir, err := os.MkdirTemp(r.tmp, "rx-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		sp, err := rx.start(col, dir)
		if err != nil {
			return nil, err
		}
		// Some receivers say they are ready a moment before their filter or socket
		// sees traffic; every receiver gets the same head start.
		time.Sleep(rxSettle)
		p0, cpu0 := readProc(sp.pid()), readCPUTimes()
		g, gerr := r.generateOn(ctx, gen, hostIf(gen), col.MAC, col.Addr, rx.protocol(), rate, r.o.Trial, label)
		cpu1 := readCPUTimes()
		time.Sleep(max(rx.drain, defaultDrain)) // the receiver drains its socket
		p1 := readProc(sp.pid())
		st, err := rx.stop(sp, dir)
		if gerr != nil {
			return nil, gerr
		}
		if err != nil {
			return nil, err
		}
		t, err := rxTrial(g, st.received, st.written, p0, p1)
		if err == nil {
			t["softirq_cores"] = softirqCores(cpu0, cpu1)
			maps.Copy(t, st.drops)
		}
		return t, err
	}
}

// rxTrial turns what the generator sent and a receiver got into trial metrics.
func rxTrial(g GenResult, received, written uint64, p0, p1 procStats) (map[string]float64, error) {
	if g.Sent == 0 || g.Elapsed <= 0 {
		return nil, errors.New("generator sent nothing")
	}
	secs := g.Elapsed.Seconds()
	t := map[string]float64{
		"offered_pps":  g.PPS,
		"received_pps": float64(received) / secs,
		"loss_pct":     math.Max(0, 100*(1-float64(received)/float64(g.Sent))),
	}
	if written > 0 {
		t["write_mbps"] = float64(written) / secs / 1e6
	}
	if p1.Valid {
		t["rss_mib"] = float64(p1.HWM) / (1 << 20)
		if p0.Valid {
			// The CPU over the whole trial (settle, send, drain) against
			// the send time: the drain's work belongs to what was sent.
			t["proc_cpu_cores"] = (p1.CPU - p0.CPU).Seconds() / secs
			if received > 0 {
				t["proc_cpu_per_mpps"] = (p1.CPU - p0.CPU).Seconds() / secs / (float64(received) / secs / 1e6)
			}
		}
	}
	return t, nil
}

func firstErrors(errs []string) string {
	if len(errs) > 3 {
		errs = errs[:3]
	}
	s := ""
	for i, e := range errs {
		if i > 0 {
			s += "; "
		}
		s += e
	}
	return s
}
