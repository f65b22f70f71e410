package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/telemetry"
	"github.com/xmirror/xmirror/xdp"
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
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE` (required)"},
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
					&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "measure rates over `D`"}},
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
					if err := xdp.Detach(p); err != nil {
						return err
					}
					if statErr != nil {
						fmt.Fprintf(c.App.Writer, "no load balancer pinned under %s\n", p)
						return nil
					}
					fmt.Fprintf(c.App.Writer, "detached; load balancer pins under %s removed\n", p)
					return nil
				},
			},
		},
	}
}

func cmpOrString(v, def string) string {
	if v == "" {
		return def
	}
	return v
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
	if path == "" {
		return usagef("--config is required")
	}
	cfg, err := loadLBConfig(path)
	if err != nil {
		return err
	}
	lb := cfg.LoadBalancer
	opts := xdp.Options{
		PinPath:      cmpOrString(c.String("pin-path"), cmpOrString(lb.PinPath, xdp.DefaultPinPath)),
		XDPMode:      cmpOrString(c.String("xdp-mode"), cmpOrString(lb.XDPMode, xdp.ModeAuto)),
		DetachOnExit: c.Bool("detach-on-exit"),
	}
	if !slices.Contains([]string{xdp.ModeAuto, xdp.ModeNative, xdp.ModeGeneric}, opts.XDPMode) {
		return usagef("--xdp-mode: %q is not one of auto, native, generic", opts.XDPMode)
	}
	addr := cmpOrString(c.String("metrics-listen"), cfg.Metrics.Listen)

	set := metrics.NewSet()
	var srv *telemetry.Server
	if addr != "" && addr != "off" {
		if srv, err = telemetry.Listen(addr, set); err != nil {
			return err
		}
		defer srv.Close()
		// Not healthy until the program is attached and the tables are filled:
		// tools wait for /healthz before they send traffic.
		srv.SetHealthy(false)
	}

	bal, err := xdp.New(opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := bal.Close(); err != nil {
			slog.Error("close load balancer", "err", err)
		}
		if opts.DetachOnExit {
			slog.Info("detached and removed pins", "pin_path", opts.PinPath)
		} else if opts.PinPath != "" {
			slog.Info("program stays attached and forwarding; `xmirror lb detach` removes it", "pin_path", opts.PinPath)
		}
	}()
	if err := bal.Apply(lb); err != nil {
		return usageError{fmt.Errorf("%s: load_balancer: %w", path, err)}
	}
	if err := bal.Attach(); err != nil {
		return err
	}
	bal.StartHealthChecks()
	bal.RegisterMetrics(set)
	reloads := set.NewCounter("xmirror_lb_reloads_total")
	reloadErrors := set.NewCounter("xmirror_lb_reload_errors_total")
	if srv != nil {
		srv.SetHealthy(true)
	}
	slog.Info("load balancer running", "listener", lb.Listener.Name, "vip", lb.Listener.VIP, "port", lb.Listener.Port,
		"interfaces", lb.Listener.Interfaces, "algorithm", lb.Algorithm, "affinity", lb.Affinity,
		"backends", len(lb.Backends), "mode", bal.Mode(), "pin_path", opts.PinPath)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig != syscall.SIGHUP {
			slog.Info("stopping", "signal", sig.String())
			return nil
		}
		next, err := loadLBConfig(path)
		if err == nil {
			if !slices.Equal(next.LoadBalancer.Listener.Interfaces, lb.Listener.Interfaces) {
				slog.Warn("listener interfaces changed: restart to move the program; other changes apply now")
			}
			err = bal.Apply(next.LoadBalancer)
		}
		if err != nil {
			reloadErrors.Inc()
			slog.Error("reload failed, keeping the running configuration", "err", err)
			continue
		}
		reloads.Inc()
		slog.Info("reloaded", "backends", len(next.LoadBalancer.Backends), "algorithm", next.LoadBalancer.Algorithm)
	}
	return nil
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
		return cmpOrString(cfg.LoadBalancer.PinPath, xdp.DefaultPinPath), nil
	}
	return xdp.DefaultPinPath, nil
}

func runLBStatus(c *cli.Context) error {
	p, err := pinPathOf(c)
	if err != nil {
		return err
	}
	first, err := xdp.ReadPinnedStatus(p)
	if err != nil {
		if errors.Is(err, xdp.ErrNotRunning) {
			return fmt.Errorf("%w (is `xmirror lb` running with this --pin-path?)", err)
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
	fmt.Fprintf(w, "listener   %s  algorithm %s  affinity %s  access %s\n", second.Listener, second.Algorithm, second.Affinity, second.ACL)
	fmt.Fprintf(w, "xdp mode   %s  active slot %d  wrr entries %d  maglev size %d\n", second.Mode, second.Slot, second.WRRLen, second.Maglev)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tADDRESS\tWEIGHT\tHEALTH\tPACKETS\tBYTES\tPPS\tBIT/S")
	prev := map[uint32]xdp.BackendStatus{}
	for _, b := range first.Backends {
		prev[b.ID] = b
	}
	for _, b := range second.Backends {
		health := "healthy"
		if !b.Healthy {
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
	fmt.Fprintln(w, "counters:")
	for _, i := range xdp.Stats() {
		d := float64(second.Counter(i)-min(first.Counter(i), second.Counter(i))) / secs
		fmt.Fprintf(w, "  %-18s %12d  %10.0f/s\n", i, second.Counter(i), d)
	}
	return nil
}
