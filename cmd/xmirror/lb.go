// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/syscheck"
	"github.com/xmirror/xmirror/internal/telemetry"
	"github.com/xmirror/xmirror/xdp"
	"github.com/xmirror/xmirror/xdp/bgp"
)

func lbCommand() *cli.Command {
	pinFlag := &cli.StringFlag{Name: "pin-path", Usage: "bpffs `DIR` of the pinned maps and links (default load_balancer.pin_path, else " + xdp.DefaultPinPath + ")"}
	cfgFlag := &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE` to take load_balancer.pin_path from"}
	return &cli.Command{
		Name:  "lb",
		Usage: "run the XDP load balancer that spreads mirrored VXLAN over collectors",
		Description: "Attaches to the listener's interfaces and forwards VXLAN sent to VIP:port to the\n" +
			"backends of the load_balancer section of --config. SIGHUP reloads the file and swaps the\n" +
			"tables without losing a packet. On exit the program stays attached (pinned under --pin-path)\n" +
			"and keeps forwarding; a restart takes it over with zero loss. `xmirror lb detach` removes it.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			configFlag(),
			pinFlag,
			&cli.StringFlag{Name: "xdp-mode", Usage: "auto (native, else generic), native or generic (default load_balancer.xdp_mode)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve /metrics and /healthz on `ADDR` (default metrics.listen; \"off\" = none)"},
			&cli.BoolFlag{Name: "detach-on-exit", Usage: "remove the program and pins when exiting (tests, demos)"},
		},
		Action: runLB,
		Subcommands: []*cli.Command{
			{
				Name:      "status",
				Usage:     "print listener, mode, backends, their traffic and rates from the pinned maps",
				ArgsUsage: " ",
				Flags: []cli.Flag{pinFlag, cfgFlag,
					&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "measure rates over `D`"},
					&cli.StringFlag{Name: "metrics-listen", Usage: "read the BGP state from the running lb's /metrics at `ADDR` (default metrics.listen of --config; give the --metrics-listen it was started with)"}},
				Action: runLBStatus,
			},
			{
				Name:      "detach",
				Usage:     "detach the program and remove the pinned links and maps",
				ArgsUsage: " ",
				Flags:     []cli.Flag{pinFlag, cfgFlag},
				Action: func(c *cli.Context) error {
					p, err := pinPathOf(c)
					if err != nil {
						return err
					}
					_, statErr := os.Stat(filepath.Join(p, "lb_active"))
					if err := xdp.Detach(p); errors.Is(err, xdp.ErrPinPathBusy) {
						// SIGTERM leaves the program attached, for this detach.
						return usageError{fmt.Errorf("%w; stop it first (or give it --detach-on-exit)", err)}
					} else if err != nil {
						return err
					}
					if statErr != nil {
						fmt.Fprintf(c.App.Writer, "no load balancer pinned under %s (%s)\n", p, notPinnedHint(p))
						return nil
					}
					fmt.Fprintf(c.App.Writer, "detached; load balancer pins under %s removed\n", p)
					return nil
				},
			},
		},
	}
}

func loadLBConfig(path string) (*config.Config, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	if cfg.LoadBalancer == nil {
		return nil, usagef("%s: no load_balancer section", path)
	}
	return cfg, nil
}

func runLB(c *cli.Context) error {
	path := c.String("config")
	cfg, err := loadLBConfig(path)
	if err != nil {
		return err
	}
	opts, err := lbOptions(c, cfg.LoadBalancer)
	if err != nil {
		return err
	}
	// Refused before anything is loaded or pinned: the configuration does
	// not fit this host.
	if err := xdp.CheckInterfaces(cfg.LoadBalancer, opts.PinPath); err != nil {
		return usageError{fmt.Errorf("%s: %w", path, err)}
	}
	return runPart(c.Context, partSpec{
		role: syscheck.RoleLB,
		system: syscheck.RoleOptions{Interfaces: cfg.LoadBalancer.Listener.Interfaces,
			XDPMode: opts.XDPMode, PinPath: opts.PinPath, PinsGoOnExit: opts.DetachOnExit},
		metrics:  metricsListen(c, cfg.Metrics.Listen),
		reloadOn: []os.Signal{syscall.SIGHUP},
		start: func(set *metrics.Set, health func(bool)) (part, error) {
			p, err := startLB(path, cfg.LoadBalancer, opts, set, health)
			if p != nil && !c.IsSet("metrics-listen") {
				p.metricsFromFile = cfg.Metrics.Listen
			}
			return p, err
		},
	})
}

// lbOptions are the flags, else the load_balancer section, else the defaults.
func lbOptions(c *cli.Context, lb *config.LoadBalancer) (xdp.Options, error) {
	opts := xdp.Options{
		PinPath:      cmp.Or(c.String("pin-path"), lb.PinPath, xdp.DefaultPinPath),
		XDPMode:      cmp.Or(c.String("xdp-mode"), lb.XDPMode, xdp.ModeAuto),
		DetachOnExit: c.Bool("detach-on-exit"),
	}
	if !slices.Contains([]string{xdp.ModeAuto, xdp.ModeNative, xdp.ModeGeneric}, opts.XDPMode) {
		return opts, usagef("--xdp-mode: %q is not one of auto, native, generic", opts.XDPMode)
	}
	return opts, nil
}

// lbPart is a running `xmirror lb`: SIGHUP re-reads the file and swaps the
// tables without losing a packet. It is ready (/healthz) while some backend
// takes new flows, and with load_balancer.bgp it announces the VIP then.
type lbPart struct {
	path    string
	lb      *config.LoadBalancer // as started: the interfaces the program is attached to
	opts    xdp.Options
	bal     *xdp.Balancer
	speaker *bgp.Speaker // nil without load_balancer.bgp
	reloads reloadCounters
	// metricsFromFile is metrics.listen as started, when the file (not
	// --metrics-listen) decided where /metrics is served.
	metricsFromFile string

	mu      sync.Mutex
	missing []string // listener interfaces that are gone
}

// startLB takes the pin path, loads the program, fills the tables,
// attaches and (with bgp) opens the sessions: the load balancer forwards
// when it returns, and announces the VIP while it is ready. A failure undoes
// all of it (xdp.Balancer.Abort); the pin path's being held by another
// process, or a configuration the tables refuse, exits 2.
func startLB(path string, lb *config.LoadBalancer, opts xdp.Options, set *metrics.Set, health func(bool)) (_ *lbPart, err error) {
	// Readiness reaches /healthz and the routers only once the program is
	// attached: runPart reports it when start returns, later changes go
	// through here.
	var speaker atomic.Pointer[bgp.Speaker]
	var started atomic.Bool
	opts.OnReady = func(ready bool) {
		if !started.Load() {
			return
		}
		health(ready)
		if sp := speaker.Load(); sp != nil {
			sp.Announce(ready)
		}
	}
	bal, err := xdp.New(opts)
	if errors.Is(err, xdp.ErrPinPathBusy) {
		return nil, usageError{fmt.Errorf("%w; stop it, or give this one another pin_path", err)}
	}
	if errors.Is(err, xdp.ErrPinsWouldVanish) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if aerr := bal.Abort(); aerr != nil {
				slog.Error("undo failed start", "err", aerr)
			}
		}
	}()
	if err := bal.Apply(lb); err != nil {
		return nil, usageError{fmt.Errorf("%s: load_balancer: %w", path, err)}
	}
	if err := bal.Attach(); err != nil {
		return nil, err
	}
	p := &lbPart{path: path, lb: lb, opts: opts, bal: bal}
	if lb.BGP != nil {
		// Attached: the node may be announced once ready.
		if p.speaker, err = bgp.Start(*lb.BGP, lb.Listener.VIP, lb.Listener.Interfaces); err != nil {
			return nil, err
		}
		speaker.Store(p.speaker)
		p.speaker.Announce(p.Ready())
		p.speaker.RegisterMetrics(set)
	}
	started.Store(true)
	bal.Started()
	bal.StartHealthChecks()
	bal.RegisterMetrics(set)
	p.reloads = newReloadCounters(set, "lb")
	for _, name := range lb.Listener.Interfaces {
		set.NewGauge(fmt.Sprintf("xmirror_lb_interface_up{interface=%q}", name), func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			if slices.Contains(p.missing, name) {
				return 0
			}
			return 1
		})
	}
	slog.Info("load balancer running", "listener", lb.Listener.Name, "protocol", lb.Listener.Protocol, "vip", lb.Listener.VIP, "port", lb.Listener.Port,
		"interfaces", lb.Listener.Interfaces, "algorithm", lb.Algorithm, "affinity", lb.Affinity,
		"backends", len(lb.Backends), "mode", bal.Mode(), "pin_path", opts.PinPath, "bgp", lb.BGP != nil)
	return p, nil
}

// Ready: some backend takes new flows (weights, health, all_unhealthy).
func (p *lbPart) Ready() bool {
	ready, _ := p.bal.Ready()
	return ready
}

// linkCheckEvery is how often the listener interfaces are looked at.
const linkCheckEvery = time.Second

// Run keeps the program on the listener interfaces: one deleted and created
// again (a restarted container's veth) has another index, which the old
// link does not hold, so it is attached anew; one that is gone is logged
// and shown by xmirror_lb_interface_up until it is back. The interfaces the
// backends' routes leave by are added to the redirect map as they change.
func (p *lbPart) Run(ctx context.Context) error {
	t := time.NewTicker(linkCheckEvery)
	defer t.Stop()
	egressErr := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, gone, err := p.bal.RepairLinks()
		if err != nil {
			slog.Error("attach the program to a re-created listener interface", "err", err)
		}
		// once per failure, not every second
		if err := p.bal.RefreshEgress(); err != nil && err.Error() != egressErr {
			slog.Error("add the backends' egress interfaces to the redirect map", "err", err)
			egressErr = err.Error()
		} else if err == nil {
			egressErr = ""
		}
		p.mu.Lock()
		if !slices.Equal(gone, p.missing) {
			if len(gone) > 0 {
				slog.Error("listener interface gone: traffic arriving there is not balanced until it is back", "interfaces", gone)
			} else {
				slog.Info("every listener interface runs the program again")
			}
			p.missing = gone
		}
		p.mu.Unlock()
	}
}

// Reload applies the file again: tables at once (hitless), BGP peers,
// communities, MED and drain to the running speaker. What only a restart can
// change (the VIP, turning bgp on or off, its ASN and router id) refuses the
// whole reload; the interfaces, pin path and XDP mode are logged and kept.
func (p *lbPart) Reload(os.Signal) {
	next, err := loadLBConfig(p.path)
	if err == nil {
		err = p.restartOnly(next.LoadBalancer)
	}
	if err == nil {
		if !slices.Equal(next.LoadBalancer.Listener.Interfaces, p.lb.Listener.Interfaces) {
			slog.Warn("listener interfaces changed: restart to move the program; other changes apply now")
		}
		if next.LoadBalancer.PinPath != p.lb.PinPath {
			slog.Warn("pin_path changed: only a restart applies it; other changes apply now", "pin_path", p.opts.PinPath)
		}
		if next.LoadBalancer.XDPMode != p.lb.XDPMode {
			// A restart takes the pinned links over in their mode.
			slog.Warn("xdp_mode changed: the attached program keeps its mode until `xmirror lb detach` and a start; other changes apply now",
				"xdp_mode", p.opts.XDPMode)
		}
		if p.metricsFromFile != "" && next.Metrics.Listen != p.metricsFromFile {
			slog.Warn("metrics.listen changed: only a restart applies it; /metrics stays where it is, other changes apply now",
				"serving", p.metricsFromFile, "file", next.Metrics.Listen)
		}
		err = p.bal.Apply(next.LoadBalancer)
	}
	if err == nil && p.speaker != nil {
		err = p.speaker.Reconfigure(*next.LoadBalancer.BGP)
	}
	p.reloads.count(err)
	if err != nil {
		slog.Error("reload failed, keeping the running configuration", "err", err)
		return
	}
	slog.Info("reloaded", "backends", len(next.LoadBalancer.Backends), "algorithm", next.LoadBalancer.Algorithm)
}

// restartOnly refuses changes a running node cannot make: the VIP (its
// program, announcement and checks are built around it), and bgp turned on
// or off or given another ASN or router id.
func (p *lbPart) restartOnly(next *config.LoadBalancer) error {
	cur := p.lb
	if next.Listener.VIP != cur.Listener.VIP {
		return fmt.Errorf("%s: load_balancer.listener.vip changed (%s -> %s): only a restart applies it",
			p.path, cur.Listener.VIP, next.Listener.VIP)
	}
	if (next.BGP == nil) != (cur.BGP == nil) {
		return fmt.Errorf("%s: load_balancer.bgp added or removed: only a restart applies it", p.path)
	}
	if next.BGP != nil && (next.BGP.ASN != cur.BGP.ASN || next.BGP.RouterID != cur.BGP.RouterID) {
		return fmt.Errorf("%s: load_balancer.bgp.asn or router_id changed: only a restart applies it", p.path)
	}
	return nil
}

func (p *lbPart) Close() {
	// Withdraw and drain first: routers move the traffic away while this
	// node still forwards it.
	if p.speaker != nil {
		p.speaker.Stop()
	}
	if err := p.bal.Close(); err != nil {
		slog.Error("close load balancer", "err", err)
	}
	if p.opts.DetachOnExit {
		slog.Info("detached and removed pins", "pin_path", p.opts.PinPath)
	} else if p.opts.PinPath != "" {
		slog.Info("program stays attached and forwarding; `xmirror lb detach` removes it", "pin_path", p.opts.PinPath)
	}
}

// pinPathOf is --pin-path, else load_balancer.pin_path of --config, else the default.
func pinPathOf(c *cli.Context) (string, error) {
	if p := c.String("pin-path"); p != "" {
		return p, nil
	}
	if path := c.String("config"); path != "" {
		cfg, err := loadLBConfig(path)
		if err != nil {
			return "", err
		}
		return cmp.Or(cfg.LoadBalancer.PinPath, xdp.DefaultPinPath), nil
	}
	return xdp.DefaultPinPath, nil
}

// notPinnedHint says why nothing may be pinned under pinPath.
func notPinnedHint(pinPath string) string {
	if xdp.PinsWouldVanish(pinPath) {
		return "this mount namespace has no bpffs: `ip netns exec` gives a command a /sys of its own; use nsenter --net=/run/netns/NAME"
	}
	return "is `xmirror lb` running with this --pin-path?"
}

func runLBStatus(c *cli.Context) error {
	if iv := c.Duration("interval"); iv <= 0 {
		// Rates over no time: 0s printed rates of millions per second.
		return usagef("--interval: %v is not positive", iv)
	}
	p, err := pinPathOf(c)
	if err != nil {
		return err
	}
	first, err := xdp.ReadPinnedStatus(p)
	if err != nil {
		if errors.Is(err, xdp.ErrNotRunning) {
			return fmt.Errorf("%w (%s)", err, notPinnedHint(p))
		}
		return err
	}
	iv := c.Duration("interval")
	t0 := time.Now()
	time.Sleep(iv)
	second, err := xdp.ReadPinnedStatus(p)
	if err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	w := c.App.Writer
	listener := second.Listener.String()
	if second.Listener.Port() == 0 { // gre: no port
		listener = second.Listener.Addr().String()
	}
	fmt.Fprintf(w, "listener   %s %s  algorithm %s  affinity %s  access %s\n", second.Protocol, listener, second.Algorithm, second.Affinity, second.ACL)
	fmt.Fprintf(w, "xdp mode   %s  active slot %d  wrr entries %d  maglev size %d\n", second.Mode, second.Slot, second.WRRLen, second.Maglev)
	// The pinned program forwards after its process ends: the health
	// column is then as that process left it.
	process := "none: no xmirror lb runs on this pin path; the program forwards with the tables it was left (health as last checked, no checks, no reloads)"
	if who, err := xdp.Controller(p); err != nil {
		process = "unknown: " + err.Error()
	} else if who != "" {
		process = who
	}
	fmt.Fprintf(w, "process    %s\n", process)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tADDRESS\tWEIGHT\tHEALTH\tPACKETS\tBYTES\tPPS\tBIT/S")
	prev := map[uint32]xdp.BackendStatus{}
	for _, b := range first.Backends {
		prev[b.ID] = b
	}
	for _, b := range second.Backends {
		health := "healthy"
		if b.FailOpen {
			health = "failing (fail-open)"
		} else if b.Pending {
			health = "unchecked (no new flows yet)"
		} else if !b.Healthy {
			health = "down"
		}
		addr := b.Address.String()
		if b.Port != 0 {
			addr = fmt.Sprintf("%s:%d", b.Address, b.Port)
		}
		pb := prev[b.ID]
		pps := float64(b.Packets-min(pb.Packets, b.Packets)) / secs
		bps := float64(b.Bytes-min(pb.Bytes, b.Bytes)) * 8 / secs
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%.0f\t%.0f\n", b.Name, addr, b.Weight, health, b.Packets, b.Bytes, pps, bps)
	}
	tw.Flush()
	for _, group := range []struct {
		title    string
		verdicts bool
	}{{"verdicts (one per packet):", true}, {"events:", false}} {
		fmt.Fprintln(w, group.title)
		for _, i := range xdp.Stats() {
			if i.Verdict() != group.verdicts {
				continue
			}
			d := float64(second.Counter(i)-min(first.Counter(i), second.Counter(i))) / secs
			fmt.Fprintf(w, "  %-18s %12d  %10.0f/s\n", i, second.Counter(i), d)
		}
	}
	return writeBGPStatus(c)
}

// writeBGPStatus prints the sessions and the announcement of a running LB
// with load_balancer.bgp (from --config), read from its /metrics: they live
// in that process, not in the pinned maps.
func writeBGPStatus(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	cfg, err := loadLBConfig(path)
	if err != nil || cfg.LoadBalancer.BGP == nil {
		return err
	}
	w := c.App.Writer
	g := cfg.LoadBalancer.BGP
	addr := metricsListen(c, cfg.Metrics.Listen)
	if addr == "" || addr == config.MetricsOff {
		fmt.Fprintln(w, "bgp: metrics.listen is off, so the running process cannot be asked")
		return nil
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return fmt.Errorf("read bgp state of the running lb: %w", err)
	}
	defer resp.Body.Close()
	samples, err := telemetry.ParseText(resp.Body)
	if err != nil {
		return fmt.Errorf("read bgp state of the running lb: %w", err)
	}
	announced := "not announced"
	if telemetry.Sum(samples, "xmirror_lb_bgp_announced") > 0 {
		announced = "announced"
		// The speaker offers the route; a router has it only over an
		// established session.
		if telemetry.Sum(samples, "xmirror_lb_bgp_session_up") == 0 {
			announced += ", but no session is established: no router has it"
		}
	}
	fmt.Fprintf(w, "bgp        AS %d  router id %s  %s/32 %s (%.0f announcements, %.0f withdrawals)\n", g.ASN, g.RouterID,
		cfg.LoadBalancer.Listener.VIP, announced, telemetry.Sum(samples, "xmirror_lb_bgp_announcements_total"),
		telemetry.Sum(samples, "xmirror_lb_bgp_withdrawals_total"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	failures := map[string]string{}
	for _, s := range samples {
		if s.Name == "xmirror_lb_bgp_session_failure" {
			failures[s.Label("peer")] = s.Label("reason")
		}
	}
	fmt.Fprintln(tw, "PEER\tASN\tSTATE\tPROBLEM")
	for _, s := range samples {
		if s.Name == "xmirror_lb_bgp_session_up" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Label("peer"), s.Label("asn"), s.Label("state"), failures[s.Label("peer")])
		}
	}
	return tw.Flush()
}
