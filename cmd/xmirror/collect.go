package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/telemetry"
)

func collectCommand() *cli.Command {
	return &cli.Command{
		Name:  "collect",
		Usage: "receive mirrored VXLAN and write one rotating pcapng/pcap series per session",
		Description: "Reads the collector section (and the sessions, for VNI names) of --config;\n" +
			"flags override it, or replace it: xmirror collect --listen :4789 --out ./pcap.\n" +
			"SIGHUP/SIGUSR1 rotate every file, SIGINT/SIGTERM flush and close them.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE`"},
			&cli.StringFlag{Name: "listen", Usage: "UDP `ADDR` to receive VXLAN on (default 0.0.0.0:4789)"},
			&cli.StringFlag{Name: "out", Usage: "output `DIR`, one subdirectory per session (default /var/lib/xmirror/pcap)"},
			&cli.StringFlag{Name: "format", Usage: "pcapng (default) or pcap"},
			&cli.StringFlag{Name: "rotate-size", Usage: "close a file at `SIZE` (default 100MiB; 0 = never)"},
			&cli.DurationFlag{Name: "rotate-interval", Usage: "close files on wall-clock boundaries of `D` (0 = never)", DefaultText: "1h"},
			&cli.IntFlag{Name: "keep", Usage: "keep the newest `N` closed files per session (0 = all)", DefaultText: "24"},
			&cli.StringFlag{Name: "keep-size", Usage: "keep at most `SIZE` of closed files per session (0 = no limit)"},
			&cli.StringFlag{Name: "unknown-vni", Usage: "capture (as vni-N) or drop packets of VNIs no session names"},
			&cli.IntFlag{Name: "readers", Usage: "number of SO_REUSEPORT sockets", DefaultText: "one per CPU"},
			&cli.IntFlag{Name: "max-sessions", Usage: "capture at most `N` VNIs that no session names", Value: 1024},
			&cli.StringFlag{Name: "post-rotate", Usage: "shell `CMD` run with each closed file's path as $1"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve /metrics and /healthz on `ADDR` (\"off\" = none; default metrics.listen of --config, else none)"},
		},
		Action: runCollect,
	}
}

func runCollect(c *cli.Context) error {
	// Without --config the flags start from the same defaults as an empty
	// collector section.
	defaults := &config.Config{Collector: &config.Collector{}}
	config.ApplyDefaults(defaults)
	cc := *defaults.Collector
	cc.Rotate = config.Rotate{Size: config.DefaultRotateSize, Interval: config.DefaultRotateEvery, Keep: config.DefaultRotateKeep}
	var sessions map[uint32]string
	metricsAddr := ""
	if path := c.String("config"); path != "" {
		cfg, err := loadConfig(path)
		if err != nil {
			return err
		}
		if cfg.Collector != nil {
			cc = *cfg.Collector
		}
		sessions = make(map[uint32]string)
		for _, s := range cfg.Sessions {
			sessions[s.VNI] = s.Name
		}
		metricsAddr = cfg.Metrics.Listen
	}
	if c.IsSet("listen") {
		cc.Listen = c.String("listen")
	}
	if c.IsSet("out") {
		cc.OutputDir = c.String("out")
	}
	if c.IsSet("format") {
		cc.Format = c.String("format")
	}
	if c.IsSet("unknown-vni") {
		cc.UnknownVNI = c.String("unknown-vni")
	}
	if c.IsSet("readers") {
		cc.Readers = c.Int("readers")
	}
	if c.IsSet("post-rotate") {
		cc.PostRotate = c.String("post-rotate")
	}
	if c.IsSet("rotate-interval") {
		cc.Rotate.Interval = config.Duration(c.Duration("rotate-interval"))
	}
	if c.IsSet("keep") {
		cc.Rotate.Keep = c.Int("keep")
	}
	for _, f := range []struct {
		flag string
		dst  *config.ByteSize
	}{{"rotate-size", &cc.Rotate.Size}, {"keep-size", &cc.Rotate.KeepBytes}} {
		if c.IsSet(f.flag) {
			n, err := config.ParseByteSize(c.String(f.flag))
			if err != nil {
				return usagef("--%s: %w", f.flag, err)
			}
			*f.dst = n
		}
	}
	if c.IsSet("metrics-listen") {
		metricsAddr = c.String("metrics-listen")
	}
	if metricsAddr == config.MetricsOff {
		metricsAddr = ""
	}

	if cc.OutputDir == "" {
		return usagef("no output directory: give --out or collector.output_dir in --config")
	}
	format, err := collector.ParseFormat(cc.Format)
	if err != nil {
		return usagef("collector.format: %w", err)
	}
	var dropUnknown bool
	switch cc.UnknownVNI {
	case "", "capture":
	case "drop":
		dropUnknown = true
	default:
		return usagef("collector.unknown_vni: %q is not capture or drop", cc.UnknownVNI)
	}
	if c.Int("max-sessions") < 1 {
		return usagef("--max-sessions must be at least 1")
	}
	if cc.Readers < 0 || cc.Rotate.Keep < 0 || cc.Rotate.Size < 0 || cc.Rotate.KeepBytes < 0 || cc.Rotate.Interval < 0 {
		return usagef("collector: readers, rotate.size, rotate.interval, rotate.keep and rotate.keep_size must not be negative")
	}

	// Signals first: a SIGTERM or SIGHUP that arrives while starting must
	// not kill the process the default way.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hup)

	set := metrics.NewSet()
	var srv *telemetry.Server
	if metricsAddr != "" {
		if srv, err = telemetry.Listen(metricsAddr, set); err != nil {
			return err
		}
		defer srv.Close()
		srv.SetHealthy(false) // until the receivers run
	}
	opts := collector.Options{
		Listen:         cc.Listen,
		OutputDir:      cc.OutputDir,
		Format:         format,
		RotateSize:     int64(cc.Rotate.Size),
		RotateInterval: time.Duration(cc.Rotate.Interval),
		Keep:           cc.Rotate.Keep,
		KeepBytes:      int64(cc.Rotate.KeepBytes),
		Sessions:       sessions,
		DropUnknownVNI: dropUnknown,
		PostRotate:     cc.PostRotate,
		Readers:        cc.Readers,
		MaxSessions:    c.Int("max-sessions"),
		Metrics:        set,
		Application:    "xmirror " + version,
	}
	if srv != nil {
		opts.Health = srv.SetHealthy
	}
	col, err := collector.New(opts)
	if err != nil {
		return err
	}
	slog.Info("collector listening", "listen", col.Addr().String(), "readers", col.Readers(),
		"so_rcvbuf", col.RcvBuf(), "out", opts.OutputDir, "format", format.String(),
		"rotate_size", opts.RotateSize, "rotate_interval", opts.RotateInterval, "keep", opts.Keep,
		"sessions", len(sessions), "unknown_vni", map[bool]string{false: "capture", true: "drop"}[dropUnknown])

	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-hup:
				slog.Info("rotating all capture files", "signal", s.String())
				col.Rotate()
			}
		}
	}()
	err = col.Run(ctx)
	st := col.Stats()
	slog.Info("collector stopped", "received", st.Received, "written", st.Written, "socket_drops", st.SocketDrops)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	return nil
}
