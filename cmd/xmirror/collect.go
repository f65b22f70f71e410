// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/syscheck"
)

func collectCommand() *cli.Command {
	return &cli.Command{
		Name:  "collect",
		Usage: "receive mirrored VXLAN and write one rotating pcapng/pcap series per session",
		Description: "Reads the collector section (and the sessions, for VNI names) of --config;\n" +
			"flags override it, or replace it: xmirror collect --listen :4789 --out ./pcap.\n" +
			"SIGHUP re-reads the sessions of --config (a bad file keeps the running ones) and\n" +
			"rotates every file, SIGUSR1 rotates, SIGINT/SIGTERM flush and close them.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE` (without --config, --out and --write: " + config.DefaultPath + " when it exists)"},
			&cli.StringFlag{Name: "listen", Usage: "UDP `ADDR` to receive VXLAN on (default 0.0.0.0:4789); its host is also where GENEVE and GRE are received"},
			&cli.StringSliceFlag{Name: "input", Usage: "receive `INPUT` (repeat; replaces collector.inputs): vxlan, geneve, geneve:PORT, gre (= erspan: ERSPAN I/II/III and GRE bridging, IP protocol 47, needs CAP_NET_RAW)", DefaultText: "vxlan"},
			&cli.StringFlag{Name: "receive", Usage: "receive path: auto (XDP where it attaches, else sockets), xdp or socket (default auto)"},
			&cli.StringFlag{Name: "out", Usage: "output `DIR`, one subdirectory per session (default /var/lib/xmirror/pcap)"},
			&cli.StringFlag{Name: "format", Usage: "pcapng (default) or pcap"},
			&cli.StringFlag{Name: "rotate-size", Usage: "close a file at `SIZE` (default 100MiB; 0 = never)"},
			&cli.DurationFlag{Name: "rotate-interval", Usage: "close files on wall-clock boundaries of `D` (0 = never)", DefaultText: "1h"},
			&cli.IntFlag{Name: "keep", Usage: "keep the newest `N` closed files per session (0 = all)", DefaultText: "24"},
			&cli.StringFlag{Name: "keep-size", Usage: "keep at most `SIZE` of closed files per session (0 = no limit)"},
			&cli.StringFlag{Name: "unknown-vni", Usage: "capture (as vni-N) or drop packets of VNIs no session names"},
			&cli.IntFlag{Name: "readers", Usage: "number of SO_REUSEPORT sockets, 0..1024 (0 = one per CPU)", DefaultText: "one per CPU"},
			&cli.IntFlag{Name: "max-sessions", Usage: "capture at most `N` VNIs that no session names at once", DefaultText: "1024"},
			&cli.DurationFlag{Name: "session-idle", Usage: "close a session's file after `D` without packets; forget unnamed ones", DefaultText: "5m"},
			&cli.StringFlag{Name: "keep-age", Usage: "remove closed files older than `D`, all sessions (e.g. 7d; 0 = no limit)"},
			&cli.StringFlag{Name: "max-total-size", Usage: "keep at most `SIZE` of closed files, all sessions (0 = no limit)"},
			&cli.StringFlag{Name: "min-free", Usage: "keep `SIZE` free on the output filesystem: remove old files, then pause (0 = none)"},
			&cli.StringFlag{Name: "compress", Usage: "none (default) or gzip: closed files become .pcapng.gz"},
			&cli.StringFlag{Name: "file-mode", Usage: "octal `MODE` of capture files (default 0640; directories 0750)"},
			&cli.StringFlag{Name: "group", Usage: "`GROUP` owning capture files and directories"},
			&cli.StringFlag{Name: "file-name", Usage: "file name `TEMPLATE`: {session} {host} {vni} {id} {protocol} {time}", DefaultText: collector.DefaultFileName},
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "also stream every session as one pcapng to `FILE` (- = stdout, for | wireshark -k -i -); without --out or --config, no files are written"},
			&cli.StringFlag{Name: "tap", Usage: "write every inner frame to the TAP device `NAME` (created if missing; {vni} in it: one per configured session)"},
			&cli.StringFlag{Name: "post-rotate", Usage: "`CMD` run with each closed file's path appended (split at spaces, no shell)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve /metrics and /healthz on `ADDR` (\"off\" = none; default metrics.listen of --config, else none)"},
			&cli.StringFlag{Name: "health-listen", Usage: "serve only /healthz, for the load balancer's health checks, on `ADDR` (\"off\" = none; default collector.health_listen of --config, else none)"},
		},
		Action: runCollect,
	}
}

func runCollect(c *cli.Context) error {
	cc, sessions, metricsAddr, healthAddr, err := collectSettings(c)
	if err != nil {
		return err
	}
	liveOnly := c.IsSet("write") && !c.IsSet("out") && sessions.config == ""
	if liveOnly {
		cc.OutputDir = "" // a live stream alone: no files
	}
	opts, err := collectOptions(cc, sessions, liveOnly)
	if err != nil {
		return err
	}
	if opts.Live, err = liveOutput(c.String("write")); err != nil {
		return err
	}
	return runPart(c.Context, partSpec{
		role:     syscheck.RoleCollect,
		system:   collectRoleOptions(cc),
		metrics:  metricsAddr,
		health:   healthAddr,
		reloadOn: []os.Signal{syscall.SIGHUP, syscall.SIGUSR1},
		start: func(set *metrics.Set, health func(bool)) (part, error) {
			opts.Metrics, opts.Health = set, health
			col, err := collector.New(opts)
			if errors.Is(err, collector.ErrOutputDirBusy) {
				return nil, usageError{fmt.Errorf("%w; stop it, or give this one another output directory", err)}
			}
			if err != nil {
				return nil, err
			}
			slog.Info("collector listening", "listen", col.Addr().String(), "receive", col.Receive(), "readers", col.Readers(),
				"so_rcvbuf", col.RcvBuf(), "out", opts.OutputDir, "format", opts.Format.String(),
				"rotate_size", opts.RotateSize, "rotate_interval", opts.RotateInterval, "keep", opts.Keep,
				"compress", opts.Compress, "sessions", len(sessions.named), "inputs", fmt.Sprint(opts.Inputs),
				"unknown_vni", map[bool]string{false: "capture", true: "drop"}[opts.DropUnknownVNI])
			return collectPart{col: col, config: sessions.config, settings: sessions.settings, reloads: newReloadCounters(set, "collector")}, nil
		},
	})
}

// liveOutput opens the --write target: "-" is stdout, whose reader going
// away (EPIPE) ends the live output instead of the process; anything else
// is a file created with the capture files' mode.
func liveOutput(path string) (io.Writer, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
		return os.Stdout, nil
	}
	if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeNamedPipe != 0 {
		// Opening a FIFO for writing waits for its reader: here, that
		// held up the start, files included. The live writer opens it
		// instead, off the receive path; until a reader comes, the live
		// buffer fills and its packets count as live drops.
		slog.Info("--write: the live stream starts when a reader opens the FIFO", "fifo", path)
		return &fifoWriter{path: path}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, usagef("--write: %w", err)
	}
	return f, nil
}

// fifoWriter opens its FIFO on the first write, waiting for a reader.
type fifoWriter struct {
	path string
	f    *os.File
}

func (w *fifoWriter) Write(b []byte) (int, error) {
	if w.f == nil {
		f, err := os.OpenFile(w.path, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		slog.Info("--write: a reader opened the FIFO", "fifo", w.path)
		w.f = f
	}
	return w.f.Write(b)
}

// sessionSet is what the collector takes from the configuration's sessions.
type sessionSet struct {
	named  map[collector.Key]collector.Session // names and packet lengths (the snaplen of their files)
	config string                              // the file they come from, re-read on SIGHUP
	// settings is the file's collector section without its sessions, as
	// started: a reload applies only sessions, and says when it differs.
	settings config.Collector
}

// sessionsOf collects the sessions the configuration names: the VXLAN
// sessions of sessions[] by VNI, and collector.sessions by protocol and id.
func sessionsOf(cfg *config.Config) sessionSet {
	ss := sessionSet{named: map[collector.Key]collector.Session{}}
	if cfg.Collector != nil {
		ss.settings = *cfg.Collector
		ss.settings.Sessions = nil
		// Where the inputs are written is no setting: their lines move
		// when a session is added to sessions[] above them.
		ss.settings.Inputs = slices.Clone(ss.settings.Inputs)
		for i := range ss.settings.Inputs {
			ss.settings.Inputs[i].Line = 0
		}
	}
	for _, s := range cfg.Sessions {
		ss.named[collector.VXLAN(s.VNI)] = collector.Session{Name: s.Name, PacketLength: s.PacketLength}
	}
	if cfg.Collector != nil {
		for _, s := range cfg.Collector.Sessions {
			p, err := collector.ParseProtocol(s.Protocol)
			if err != nil {
				continue // validation refused it already
			}
			ss.named[collector.Key{Proto: p, ID: s.ID}] = collector.Session{Name: s.Name, PacketLength: s.PacketLength}
		}
	}
	return ss
}

// collectSettings merges the collector section of --config (or, without one,
// the defaults of an empty section) with the flags given. Without --config,
// --out and --write, config.DefaultPath is read when it exists; a run that
// names its output (a directory, or the live stream) on the command line is
// configured by its flags alone.
func collectSettings(c *cli.Context) (cc config.Collector, sessions sessionSet, metricsAddr, healthAddr string, err error) {
	// Without --config the flags start from the same defaults as an empty
	// collector section, and no metrics or health are served.
	defaults := &config.Config{Collector: &config.Collector{}}
	config.ApplyDefaults(defaults)
	cc = *defaults.Collector
	cc.Rotate = config.Rotate{Size: config.DefaultRotateSize, Interval: config.DefaultRotateEvery, Keep: config.DefaultRotateKeep}
	path := c.String("config")
	// --write alone is the live mode, which writes no files: the installed
	// file (the service's) is not its configuration.
	if !c.IsSet("config") && !c.IsSet("out") && !c.IsSet("write") && fileExists(config.DefaultPath) {
		path = config.DefaultPath
	}
	if path != "" {
		cfg, err := loadConfig(path)
		if err != nil {
			return cc, sessions, "", "", err
		}
		if cfg.Collector != nil {
			cc = *cfg.Collector
		}
		sessions = sessionsOf(cfg)
		sessions.config = path
		metricsAddr = cfg.Metrics.Listen
		healthAddr = cc.HealthListen
	}
	if err := collectFlags(c, &cc); err != nil {
		return cc, sessions, "", "", err
	}
	if c.IsSet("health-listen") {
		healthAddr = c.String("health-listen")
	}
	if c.IsSet("input") {
		cc.Inputs = nil
		for _, s := range c.StringSlice("input") {
			in, err := config.ParseInput(s)
			if err != nil {
				return cc, sessions, "", "", usagef("--input %w", err)
			}
			cc.Inputs = append(cc.Inputs, in)
		}
	}
	if err := checkCollector(c, cc); err != nil {
		return cc, sessions, "", "", err
	}
	metricsAddr = metricsListen(c, metricsAddr)
	if healthAddr != "" && healthAddr != config.MetricsOff && metricsAddr != "" && metricsAddr != config.MetricsOff &&
		config.ListenersOverlap(healthAddr, metricsAddr) {
		// The file's two are checked with it; flags come here only.
		return cc, sessions, "", "", usagef("--health-listen %q takes the TCP port of --metrics-listen %q: give it another port (or off: /metrics's address answers /healthz too)", healthAddr, metricsAddr)
	}
	return cc, sessions, metricsAddr, healthAddr, nil
}

// collectFlagKeys are the keys of the collector section that flags
// override: an error in the merged section names the flag its value came
// from.
var collectFlagKeys = map[string]string{
	"listen": "listen", "receive": "receive", "out": "output_dir", "format": "format", "unknown-vni": "unknown_vni",
	"post-rotate": "post_rotate", "compress": "compress", "file-mode": "file_mode", "group": "group",
	"file-name": "file_name", "tap": "tap", "readers": "readers", "max-sessions": "max_sessions",
	"session-idle": "session_idle", "input": "inputs", "keep": "rotate.keep", "rotate-interval": "rotate.interval",
	"rotate-size": "rotate.size", "keep-size": "rotate.keep_size", "keep-age": "rotate.keep_age",
	"max-total-size": "rotate.max_total_size", "min-free": "rotate.min_free",
}

// checkCollector holds the collector section, with the flags written over
// it, to the rules of the file's keys (flags bypass the file's validation),
// and resolves what only this host can: the group. Every mistake is a
// usage error, named by its flag when a flag gave the value.
func checkCollector(c *cli.Context, cc config.Collector) error {
	var msgs []string
	var errs config.Errors
	if err := (&config.Config{Collector: &cc}).Validate(); errors.As(err, &errs) {
		for _, e := range errs {
			msgs = append(msgs, collectFlagError(c, e.Path, e.Error(), e.Msg))
		}
	} else if err != nil {
		return usageError{err}
	}
	if _, err := collector.LookupGroup(cc.Group); err != nil {
		msgs = append(msgs, collectFlagError(c, "collector.group", "collector.group: "+err.Error(), err.Error()))
	}
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		return usagef("%s", msgs[0])
	}
	return usagef("%d errors:\n  %s", len(msgs), strings.Join(msgs, "\n  "))
}

// collectFlagError is msg as "--flag: msg" when a flag set the key at
// path (or one of its elements), else full, the error as the file's key.
func collectFlagError(c *cli.Context, path, full, msg string) string {
	key := strings.TrimPrefix(path, "collector.")
	for flag, k := range collectFlagKeys {
		if c.IsSet(flag) && (key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[")) {
			return "--" + flag + ": " + msg
		}
	}
	return full
}

// collectFlags writes the flags given over cc.
func collectFlags(c *cli.Context, cc *config.Collector) error {
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"listen", &cc.Listen}, {"receive", &cc.Receive}, {"out", &cc.OutputDir}, {"format", &cc.Format}, {"unknown-vni", &cc.UnknownVNI},
		{"post-rotate", &cc.PostRotate}, {"compress", &cc.Compress}, {"file-mode", &cc.FileMode},
		{"group", &cc.Group}, {"file-name", &cc.FileName}, {"tap", &cc.Tap}} {
		if c.IsSet(f.flag) {
			*f.dst = c.String(f.flag)
		}
	}
	for _, f := range []struct {
		flag string
		dst  *int
	}{{"readers", &cc.Readers}, {"keep", &cc.Rotate.Keep}, {"max-sessions", &cc.MaxSessions}} {
		if c.IsSet(f.flag) {
			*f.dst = c.Int(f.flag)
		}
	}
	if c.IsSet("rotate-interval") {
		cc.Rotate.Interval = config.Duration(c.Duration("rotate-interval"))
	}
	if c.IsSet("session-idle") {
		cc.SessionIdle = config.Duration(c.Duration("session-idle"))
	}
	if c.IsSet("keep-age") {
		d, err := config.ParseDuration(c.String("keep-age"))
		if err != nil {
			return usagef("--keep-age: %w", err)
		}
		cc.Rotate.KeepAge = d
	}
	for _, f := range []struct {
		flag string
		dst  *config.ByteSize
	}{{"rotate-size", &cc.Rotate.Size}, {"keep-size", &cc.Rotate.KeepBytes},
		{"max-total-size", &cc.Rotate.MaxTotalSize}, {"min-free", &cc.Rotate.MinFree}} {
		if c.IsSet(f.flag) {
			n, err := config.ParseByteSize(c.String(f.flag))
			if err != nil {
				return usagef("--%s: %w", f.flag, err)
			}
			*f.dst = n
		}
	}
	return nil
}

// collectOptions turns the merged settings, checked by checkCollector,
// into the collector's options (without metrics, which runPart provides).
func collectOptions(cc config.Collector, sessions sessionSet, liveOnly bool) (collector.Options, error) {
	if cc.OutputDir == "" && cc.Tap == "" && !liveOnly {
		return collector.Options{}, usagef("no output directory: give --out or collector.output_dir in --config")
	}
	format, err := collector.ParseFormat(cc.Format)
	if err != nil {
		return collector.Options{}, usagef("collector.format: %w", err)
	}
	receive, err := collector.ParseReceive(cc.Receive)
	if err != nil {
		return collector.Options{}, usagef("collector.receive: %w", err)
	}
	// In Go a zero MaxSessions is the default; given as a flag it is refused.
	if cc.MaxSessions < 1 {
		return collector.Options{}, usagef("--max-sessions: %d is out of range 1..%d", cc.MaxSessions, config.MaxCollectorSessions)
	}
	mode, err := config.ParseFileMode(cmp.Or(cc.FileMode, config.DefaultFileMode))
	if err != nil {
		return collector.Options{}, usagef("collector.file_mode: %w", err)
	}
	inputs, err := collectInputs(cc.Inputs)
	if err != nil {
		return collector.Options{}, err
	}
	if err := collector.CheckInputs(inputs, cmp.Or(cc.Listen, config.DefaultCollectorAt)); err != nil {
		return collector.Options{}, usagef("collector.inputs (--input): %w", err)
	}
	idle := time.Duration(cc.SessionIdle)
	if idle == 0 {
		idle = -1 // 0 in the configuration: never idle
	}
	return collector.Options{
		Listen:          cc.Listen,
		Receive:         receive,
		OutputDir:       cc.OutputDir,
		Format:          format,
		RotateSize:      int64(cc.Rotate.Size),
		RotateInterval:  time.Duration(cc.Rotate.Interval),
		Keep:            cc.Rotate.Keep,
		KeepBytes:       int64(cc.Rotate.KeepBytes),
		KeepAge:         time.Duration(cc.Rotate.KeepAge),
		MaxTotalSize:    int64(cc.Rotate.MaxTotalSize),
		MinFree:         int64(cc.Rotate.MinFree),
		Compress:        cc.Compress == config.CompressGzip,
		FileMode:        os.FileMode(mode),
		Group:           cc.Group,
		FileName:        cc.FileName,
		Inputs:          inputs,
		Named:           sessions.named,
		DropUnknownVNI:  cc.UnknownVNI == config.UnknownVNIDrop,
		PostRotate:      cc.PostRotate,
		Readers:         cc.Readers,
		MaxSessions:     cc.MaxSessions,
		SessionIdle:     idle,
		MaxSourceSeries: cc.MaxSourceSeries,
		Tap:             cc.Tap,
		Application:     "xmirror " + version,
	}, nil
}

// collectPart is a running `xmirror collect`. SIGHUP re-reads the sessions
// of the configuration and rotates every file, SIGUSR1 rotates; stopping
// flushes and closes them.
type collectPart struct {
	col      *collector.Collector
	config   string           // --config, re-read on SIGHUP
	settings config.Collector // its collector section as started, without sessions
	reloads  reloadCounters   // of --config, on SIGHUP
}

// stopSummary is what the collector logs when it stops: what it received
// and wrote, the kernel's socket drops, the packets it dropped in all and
// each reason that dropped any, so that the numbers add up.
func stopSummary(st collector.Stats) []any {
	var dropped uint64
	reasons := make([]string, 0, len(st.Drops))
	for r, n := range st.Drops {
		if n > 0 {
			dropped += n
			reasons = append(reasons, r)
		}
	}
	sort.Strings(reasons)
	out := []any{"received", st.Received, "written", st.Written, "socket_drops", st.SocketDrops, "dropped", dropped}
	for _, r := range reasons {
		out = append(out, r, st.Drops[r])
	}
	return out
}

func (p collectPart) Run(ctx context.Context) error {
	err := p.col.Run(ctx)
	slog.Info("collector stopped", stopSummary(p.col.Stats())...)
	if err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	return nil
}

func (p collectPart) Reload(sig os.Signal) {
	if sig == syscall.SIGHUP && p.config != "" {
		cfg, err := loadConfig(p.config)
		p.reloads.count(err)
		if err != nil {
			slog.Error("reload: configuration refused; the running sessions stay", "config", p.config, "err", err)
		} else {
			ss := sessionsOf(cfg)
			p.col.Reload(ss.named)
			if !reflect.DeepEqual(ss.settings, p.settings) {
				slog.Warn("reload: the collector section changed; only its sessions apply now, the rest (listen, receive, output, rotation, ...) at a restart", "config", p.config)
			}
		}
	}
	slog.Info("rotating all capture files", "signal", sig.String())
	p.col.Rotate()
}

// Close has nothing to undo: Run closes the files and sockets.
func (collectPart) Close() {}

// collectInputs turns collector.inputs (or --input) into the collector's
// inputs; flags bypass the configuration's validation, so the protocol
// and port rules are checked here too.
func collectInputs(ins []config.Input) ([]collector.Input, error) {
	var out []collector.Input
	for _, in := range ins {
		if in.Protocol == config.ProtocolVXLAN {
			in.Port = 0 // validated against collector.listen's port
		}
		ci, err := collector.ParseInput(in.String())
		if err != nil {
			return nil, usagef("collector.inputs: %w", err)
		}
		if ci.Proto == collector.ProtoGENEVE && ci.Port == 0 {
			ci.Port = collector.DefaultGenevePort // Options take 0 as any free port
		}
		out = append(out, ci)
	}
	return out, nil
}
