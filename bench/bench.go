// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// DefaultProtocols are the tunnels the collector scenario measures by
// default: what clouds (VXLAN, GENEVE) and switches (ERSPAN III) send.
var DefaultProtocols = []Protocol{VXLAN, GENEVE, ERSPAN3}

// Scenario names, in the order they run.
var AllScenarios = []string{"lb", "collector", "source", "e2e"}

// Options is one `xmirror bench` run.
type Options struct {
	Exe       string        // the xmirror binary run inside the namespaces
	Quick     bool          // smoke run: short trials, one repetition, fewer rates
	Scenarios []string      // subset of AllScenarios; empty runs all
	Reps      int           // repetitions per measurement; 0 picks 3 (1 when quick)
	Trial     time.Duration // length of one trial; 0 picks 3s (1s when quick)
	Size      int           // mirrored frame bytes; 0 picks 100 (150 on the wire)
	Flows     int           // flows per trial; 0 picks 65536
	// Protocols are the tunnels the collector scenario measures xmirror
	// collect with; VXLAN is always measured, against the alternatives.
	// Empty picks DefaultProtocols.
	Protocols     []Protocol
	GeneveOptions int       // options per GENEVE frame, 0..MaxGeneveOptions
	Out           string    // directory for report.md, results.json and the charts
	Term          io.Writer // live table and progress; nil is quiet
	Command       string    // the command line, for the report
}

func (o *Options) defaults() error {
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find xmirror binary: %w", err)
		}
		o.Exe = exe
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(AllScenarios, ","))
		}
	}
	if o.Reps <= 0 {
		o.Reps = 3
		if o.Quick {
			o.Reps = 1
		}
	}
	if o.Trial <= 0 {
		o.Trial = 3 * time.Second
		if o.Quick {
			o.Trial = time.Second
		}
	}
	if o.Size == 0 {
		o.Size = 100
	}
	if o.Size < MinSize || o.Size > 1500 {
		return fmt.Errorf("size %d is outside %d..1500", o.Size, MinSize)
	}
	if o.Flows <= 0 {
		o.Flows = 65536
	}
	if len(o.Protocols) == 0 {
		o.Protocols = DefaultProtocols
	}
	for _, p := range o.Protocols {
		if _, err := ParseProtocol(string(p)); err != nil {
			return err
		}
	}
	if o.GeneveOptions < 0 || o.GeneveOptions > MaxGeneveOptions {
		return fmt.Errorf("geneve options %d is outside 0..%d", o.GeneveOptions, MaxGeneveOptions)
	}
	if o.Term == nil {
		o.Term = io.Discard
	}
	return nil
}

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error { return o.defaults() }

// runner carries what every scenario needs.
type runner struct {
	o    Options
	ui   *ui
	seq  int
	tmp  string
	have map[string]string // subcommand -> "" when available, else why not
}

// Run runs the chosen scenarios and writes the report when o.Out is set. A scenario
// whose part is missing is reported as skipped, not as an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench needs root (BPF, network namespaces)")
	}
	tmp, err := os.MkdirTemp("", "xmirror-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	r := &runner{o: o, ui: newUI(o.Term), tmp: tmp, have: map[string]string{}}
	rep := &Report{
		Machine: machineFacts(),
		Started: time.Now().UTC(),
		Options: ReportOptions{Quick: o.Quick, Scenarios: o.Scenarios, Reps: o.Reps, TrialSecs: o.Trial.Seconds(),
			FrameBytes: o.Size + vxlanOuter, Flows: o.Flows, Command: o.Command,
			Protocols: o.Protocols, GeneveOptions: o.GeneveOptions},
	}
	r.ui.header(rep)
	for _, name := range AllScenarios {
		if !slices.Contains(o.Scenarios, name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		var sc ScenarioResult
		switch name {
		case "lb":
			sc = r.scenarioLB(ctx)
		case "collector":
			sc = r.scenarioCollector(ctx)
		case "source":
			sc = r.scenarioSource(ctx)
		case "e2e":
			sc = r.scenarioE2E(ctx)
		}
		sc.setRatios()
		sc.Goals = goalsFor(&sc)
		if n := sc.steadinessNote(); n != "" {
			sc.Notes = append(sc.Notes, n)
		}
		rep.Scenarios = append(rep.Scenarios, sc)
		r.ui.scenarioDone(&sc)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Machine.LoadEnd = loadAvg()
	if o.Out != "" {
		if err := WriteReport(o.Out, rep); err != nil {
			return rep, err
		}
		r.ui.printf("report written to %s\n", o.Out)
	}
	return rep, ctx.Err()
}

// available says why subcommand cannot run ("" when it can): the parts of xmirror
// land at different times, and a missing one skips its systems.
func (r *runner) available(sub string) string {
	if why, ok := r.have[sub]; ok {
		return why
	}
	why := ""
	if err := exec.Command(r.o.Exe, sub, "--help").Run(); err != nil {
		why = fmt.Sprintf("`xmirror %s` is not in this build", sub)
	}
	r.have[sub] = why
	return why
}

// newLab builds a lab for one system of a scenario.
func (r *runner) newLab(label string, hosts ...netlab.HostSpec) (*netlab.Lab, error) {
	r.seq++
	l, err := netlab.New(fmt.Sprintf("b%d%s", r.seq, label))
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if _, err := l.AddHost(h); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// goRound gives every system of a scenario one trial per repetition, going
// round the systems at each: every system keeps its lab for the whole
// scenario, so that load from elsewhere on the machine, which comes and goes,
// falls on all of them alike rather than on whichever ran then. A result
// already skipped gets no trial. Then each result gets its medians, or why it
// has none, and joins sc. trial is given the system's index and the
// repetition.
func (r *runner) goRound(ctx context.Context, sc *ScenarioResult, results []*SystemResult,
	trial func(i, rep int) (map[string]float64, error)) {
	for rep := 0; rep < r.o.Reps && ctx.Err() == nil; rep++ {
		for i, res := range results {
			if res.Skipped != "" || ctx.Err() != nil {
				continue
			}
			t, err := trial(i, rep)
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				continue
			}
			res.Trials = append(res.Trials, t)
			res.Rounds = append(res.Rounds, rep)
		}
	}
	for _, res := range results {
		if res.Skipped == "" {
			if len(res.Trials) == 0 {
				res.Skipped = "no trial succeeded: " + firstErrors(res.Errors)
			} else {
				res.Metrics = medians(res.Trials)
			}
		}
		r.ui.row(sc.Name, res)
		sc.Systems = append(sc.Systems, *res)
	}
}

// labMTU leaves room for 1500-byte mirrored frames plus VXLAN, while staying under
// the page-sized frames native XDP on veth accepts.
const labMTU = 1600

// generate runs the generator from the topology's generator interface to the LB
// from inside the generator's namespace, pinned to CPU 0 so that every trial
// splits the work the same way.
func (r *runner) generate(ctx context.Context, t *lbTopo, rate float64, d time.Duration, progress string) (GenResult, error) {
	return r.generateOn(ctx, t.gen, t.genIf, t.lbIf.mac, t.vip, VXLAN, rate, d, progress)
}

// generateOn sends protocol p's frames of four sessions (ids 1..4) from g.
func (r *runner) generateOn(ctx context.Context, g *netlab.Host, from ifRef, dstMAC net.HardwareAddr, dst netip.Addr, p Protocol, rate float64, d time.Duration, progress string) (GenResult, error) {
	var res GenResult
	cfg := GenConfig{
		FrameSpec: FrameSpec{Protocol: p, SrcMAC: from.mac, DstMAC: dstMAC, SrcIP: from.addr, DstIP: dst, ID: 1, Size: r.o.Size},
		Ifindex:   from.index, Flows: r.o.Flows, IDs: 4, Rate: rate, Duration: d, CPU: genCPU,
	}
	if p == GENEVE {
		cfg.GeneveOptions = r.o.GeneveOptions
	}
	start := time.Now()
	cfg.Progress = func(sent uint64) {
		r.ui.progress("%s  %.1fs  sent %d", progress, time.Since(start).Seconds(), sent)
	}
	err := g.Do(func() (err error) {
		res, err = Generate(ctx, cfg)
		return err
	})
	return res, err
}

// hostIf is a netlab host's eth0.
func hostIf(h *netlab.Host) ifRef {
	return ifRef{name: h.Iface, index: h.Ifindex, mac: h.MAC, addr: h.Addr}
}
