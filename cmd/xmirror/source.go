// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/syscheck"
	"github.com/xmirror/xmirror/internal/telemetry"
	"github.com/xmirror/xmirror/source"
)

func sourceCommand() *cli.Command {
	return &cli.Command{
		Name:  "source",
		Usage: "mirror the traffic of interfaces, filtered and cut, as VXLAN to the sessions' targets (tc BPF)",
		Description: "Runs in the foreground until SIGINT or SIGTERM (then detaches and deletes the VXLAN device).\n" +
			"SIGHUP re-reads the configuration and switches the rules without detaching.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve /metrics and /healthz on `ADDR` (overrides metrics.listen; \"off\" disables)"},
			&cli.StringFlag{Name: "datapath", Value: source.DefaultDatapath, Usage: "`WHERE` mirrored frames are encapsulated: ring (BPF writes the cut frame with its outer headers to a ring buffer, the process sends batches), kernel (clone to a VXLAN device) or perf (copy the cut frame to user space over a perf buffer)"},
			&cli.StringFlag{Name: "attach", Value: source.AttachAuto, Usage: "`HOW` the programs attach: tcx (TCX links, Linux 6.6+; they go with the process), tc (clsact bpf filters, older kernels; a start removes what a killed run left) or auto (tcx where the kernel has it, else tc, logged)"},
			&cli.DurationFlag{Name: "max-delay", Value: source.DefaultMaxDelay, Usage: "`DURATION` a mirrored packet may wait in the ring before it is sent (datapath ring, 1ms..1s): longer costs the mirrored traffic less, and collector timestamps move by up to as much"},
			&cli.BoolFlag{Name: "direct-sends", Value: true, Usage: "send whole-frame copies straight from the kernel where they can (datapath ring; --direct-sends=false: every copy through the ring, which costs the mirrored traffic less when the source runs on cores it leaves free)"},
			&cli.StringFlag{Name: "send-priority", Value: source.DefaultPriority, Usage: "`PRIORITY` of the thread that sends mirrored packets (datapaths ring and perf): idle (SCHED_IDLE: only CPU time the host's own work leaves; mirrored packets are dropped and counted before the mirrored traffic slows) or normal"},
		},
		Action: runSource,
		Subcommands: []*cli.Command{{
			Name:      "status",
			Usage:     "print the sessions, their filters and counters of a running source (read from its /metrics)",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE` (for the session table and the metrics address)"},
				&cli.StringFlag{Name: "metrics", Usage: "`ADDR` of the running source's metrics endpoint (default: metrics.listen of --config, else " + config.DefaultMetricsAt + ")"},
			},
			Action: sourceStatus,
		}},
	}
}

func runSource(c *cli.Context) error {
	path := c.String("config")
	dp := c.String("datapath")
	if !slices.Contains(source.Datapaths, dp) {
		return usagef("--datapath: %q is not one of %s", dp, strings.Join(source.Datapaths, ", "))
	}
	prio := c.String("send-priority")
	if !slices.Contains(source.Priorities, prio) {
		return usagef("--send-priority: %q is not one of %s", prio, strings.Join(source.Priorities, ", "))
	}
	attach := c.String("attach")
	if !slices.Contains(source.Attaches, attach) {
		return usagef("--attach: %q is not one of %s", attach, strings.Join(source.Attaches, ", "))
	}
	delay := c.Duration("max-delay")
	if delay < source.MinMaxDelay || delay > source.MaxMaxDelay {
		return usagef("--max-delay: %v is not between %v and %v", delay, source.MinMaxDelay, source.MaxMaxDelay)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if len(cfg.Sessions) == 0 {
		return usagef("%s: no sessions", path)
	}
	// Before anything starts (the metrics listener would collide first):
	// source.New refuses a second source too.
	if who := source.RunningInstance(); who != "none" {
		return usageError{fmt.Errorf("%w: %s; stop it first", source.ErrRunning, who)}
	}
	return runPart(c.Context, partSpec{
		role:     syscheck.RoleSource,
		metrics:  metricsListen(c, cfg.Metrics.Listen),
		reloadOn: []os.Signal{syscall.SIGHUP},
		start: func(set *metrics.Set, _ func(bool)) (part, error) {
			src, err := source.New(cfg, source.Options{Datapath: dp, SendPriority: prio, MaxDelay: delay, Attach: attach, NoDirect: !c.Bool("direct-sends")})
			if err != nil {
				if errors.Is(err, source.ErrConfig) || errors.Is(err, source.ErrRunning) {
					return nil, usageError{err}
				}
				return nil, err
			}
			set.RegisterMetricsWriter(src.WriteMetrics)
			return &sourcePart{src: src, path: path, reloads: newReloadCounters(set, "source")}, nil
		},
	})
}

// sourcePart is a running `xmirror source`: SIGHUP re-reads the file and
// switches the rules without detaching.
type sourcePart struct {
	src     *source.Source
	path    string
	reloads reloadCounters
}

func (p *sourcePart) Run(ctx context.Context) error { return waitPart(ctx) }

// Check is nil while every target looks reachable.
func (p *sourcePart) Check() error { return p.src.Ready() }

func (p *sourcePart) Reload(os.Signal) {
	next, err := config.Load(p.path)
	if err == nil && len(next.Sessions) == 0 {
		// A start refuses it too; applied, a file cut short before its
		// sessions (written in place, read half way) detached everything.
		err = fmt.Errorf("%s: no sessions", p.path)
	}
	if err == nil {
		err = p.src.Reload(next)
	}
	p.reloads.count(err)
	if err != nil {
		slog.Error("reload refused: keeping the running configuration", "err", err)
	}
}

func (p *sourcePart) Close() {
	if err := p.src.Close(); err != nil {
		slog.Error("detach", "err", err)
	}
	slog.Info("mirror source detached")
}

// sourceStatus prints the session table of the configuration and the counters
// the running source exports. It reads /metrics rather than the BPF maps so it
// needs no privileges and works from any network namespace that reaches it.
func sourceStatus(c *cli.Context) error {
	var cfg *config.Config
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = loadConfig(p); err != nil {
			return err
		}
	}
	addr := c.String("metrics")
	if addr == config.MetricsOff {
		return usagef("--metrics: give the address the running source serves /metrics on")
	}
	if addr == "" && cfg != nil {
		if cfg.Metrics.Listen == config.MetricsOff {
			// The default address may be another part's /metrics.
			return usagef("%s: metrics.listen is off, so a source started with it serves no /metrics: give --metrics ADDR (its --metrics-listen)", c.String("config"))
		}
		addr = cfg.Metrics.Listen
	}
	if addr == "" {
		addr = config.DefaultMetricsAt
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	if cfg != nil {
		fmt.Fprintln(w, "SESSION\tPRIORITY\tENABLED\tVNI\tLENGTH\tFILTER\tSOURCES\tTARGET\tRULES(in/out)")
		rules := map[string]string{}
		for _, f := range cfg.Filters {
			rules[f.Name] = fmt.Sprintf("%d/%d", len(f.Inbound), len(f.Outbound))
		}
		for _, s := range cfg.Sessions {
			fmt.Fprintf(w, "%s\t%d\t%t\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Priority, s.Enabled, s.VNI,
				s.PacketLength, s.Filter, strings.Join(s.Sources, ","), s.Target, rules[s.Filter])
		}
		fmt.Fprintln(w)
	}
	samples, err := scrapeSource(addr)
	if err == nil && !slices.ContainsFunc(samples, func(m telemetry.Sample) bool { return strings.HasPrefix(m.Name, "xmirror_source_") }) {
		// Another part's /metrics (a host running the lb or a collector on
		// the default address): empty tables would read as nothing mirrored.
		err = fmt.Errorf("%s serves no metrics of an xmirror source: another part's /metrics? give --metrics ADDR", addr)
	}
	if err != nil {
		w.Flush()
		return err
	}
	if cfg != nil && slices.ContainsFunc(samples, func(m telemetry.Sample) bool {
		return m.Name == "xmirror_source_config_last_reload_successful" && m.Value == 0
	}) {
		fmt.Fprintf(w, "note: the running source refused its last reload (SIGHUP), so it may not run the sessions above, which are %s as it is now: its log says why\n\n", c.String("config"))
	}
	fmt.Fprintln(w, "SESSION\tFILTER\tDIRECTION\tPACKETS\tBYTES\tCUT\tRATE-LIMITED\tERRORS")
	for _, r := range sourceRows(samples) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.Session, r.Filter, r.Direction,
			r.Packets, r.Bytes, r.Cut, r.RateLimited, r.Errors)
	}
	if ifaces := interfaceRows(samples); len(ifaces) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "INTERFACE\tMIRRORED\tPROBLEM")
		for _, r := range ifaces {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.name, r.up, r.problem)
		}
	}
	if targets := targetRows(samples); len(targets) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "TARGET\tUP\tICMP-ERRORS\tPROBLEM")
		for _, t := range targets {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", t.target, t.up, t.icmp, t.problem)
		}
	}
	return w.Flush()
}

// interfaceRow is a source interface as the running source exports it.
type interfaceRow struct{ name, up, problem string }

// interfaceRows reads the source interfaces from the source's metrics.
func interfaceRows(samples []telemetry.Sample) []interfaceRow {
	var rows []interfaceRow
	index := map[string]int{}
	for _, m := range samples {
		name := m.Label("interface")
		if name == "" || (m.Name != "xmirror_source_interface_up" && m.Name != "xmirror_source_interface_problem") {
			continue
		}
		i, ok := index[name]
		if !ok {
			i = len(rows)
			index[name] = i
			rows = append(rows, interfaceRow{name: name, up: "?", problem: "-"})
		}
		if m.Name == "xmirror_source_interface_up" {
			rows[i].up = map[bool]string{true: "yes", false: "no"}[m.Value == 1]
		} else {
			rows[i].problem = m.Label("detail")
		}
	}
	return rows
}

// targetRow is a target's health as the running source exports it.
type targetRow struct {
	target, up, problem string
	icmp                uint64
}

// targetRows reads the targets' health from the source's metrics.
func targetRows(samples []telemetry.Sample) []targetRow {
	var rows []targetRow
	index := map[string]int{}
	row := func(target string) *targetRow {
		i, ok := index[target]
		if !ok {
			i = len(rows)
			index[target] = i
			rows = append(rows, targetRow{target: target, up: "?", problem: "-"})
		}
		return &rows[i]
	}
	for _, m := range samples {
		target := m.Label("target")
		if target == "" {
			continue
		}
		switch m.Name {
		case "xmirror_source_target_up":
			row(target).up = map[bool]string{true: "yes", false: "no"}[m.Value == 1]
		case "xmirror_source_target_problem":
			row(target).problem = m.Label("reason") + ": " + m.Label("detail")
		case "xmirror_source_target_icmp_errors_total":
			if m.Value >= 0 && m.Value < math.MaxUint64 {
				row(target).icmp = uint64(m.Value)
			}
		}
	}
	return rows
}

func scrapeSource(addr string) ([]telemetry.Sample, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("read metrics of the running source: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read metrics of the running source: %s", resp.Status)
	}
	return telemetry.ParseText(resp.Body)
}

// sourceCounters maps the source's counter names to the field of a row they fill.
var sourceCounters = map[string]func(*source.Stats) *uint64{
	"xmirror_source_mirrored_packets_total":    func(s *source.Stats) *uint64 { return &s.Packets },
	"xmirror_source_mirrored_bytes_total":      func(s *source.Stats) *uint64 { return &s.Bytes },
	"xmirror_source_cut_packets_total":         func(s *source.Stats) *uint64 { return &s.Cut },
	"xmirror_source_direct_packets_total":      func(s *source.Stats) *uint64 { return &s.Direct },
	"xmirror_source_ratelimited_packets_total": func(s *source.Stats) *uint64 { return &s.RateLimited },
	"xmirror_source_errors_total":              func(s *source.Stats) *uint64 { return &s.Errors },
}

// parseSourceMetrics turns the source's counters into one row per session and
// direction, in the order /metrics lists them.
func parseSourceMetrics(r io.Reader) ([]source.Stats, error) {
	samples, err := telemetry.ParseText(r)
	if err != nil {
		return nil, err
	}
	return sourceRows(samples), nil
}

// sourceRows is parseSourceMetrics of parsed samples.
func sourceRows(samples []telemetry.Sample) []source.Stats {
	var rows []source.Stats
	index := map[string]int{}
	for _, m := range samples {
		field := sourceCounters[m.Name]
		dir := m.Label("direction")
		if field == nil || (dir != "inbound" && dir != "outbound") {
			continue
		}
		session := m.Label("session")
		key := session + "\x00" + dir
		i, ok := index[key]
		if !ok {
			i = len(rows)
			index[key] = i
			rows = append(rows, source.Stats{Session: session, Filter: m.Label("filter"), Direction: dir})
		}
		// Counters are whole numbers that fit a uint64; anything else is not one of ours.
		if m.Value >= 0 && m.Value < math.MaxUint64 && m.Value == math.Trunc(m.Value) {
			*field(&rows[i]) = uint64(m.Value)
		}
	}
	return rows
}
