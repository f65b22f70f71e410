// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/VictoriaMetrics/metrics"
	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/earlyhup"
	"github.com/xmirror/xmirror/internal/syscheck"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// A part is a long-running xmirror process (source, lb, collect) once started.
type part interface {
	// Run works until ctx is done. Source and lb work in the kernel: theirs waits.
	Run(ctx context.Context) error
	// Reload handles one of the part's reload signals.
	Reload(sig os.Signal)
	// Close undoes what starting did; it logs its own errors.
	Close()
}

// A readier part can run without being ready to serve (an LB with no backend
// that takes new flows); it reports changes through start's health func.
type readier interface{ Ready() bool }

// ready is whether p serves once started: parts that are not readiers do.
func ready(p part) bool {
	if r, ok := p.(readier); ok {
		return r.Ready()
	}
	return true
}

// A checker part can run and still fail at its work (the source's targets do
// not answer): /healthz answers 503 with Check's error while it returns one.
type checker interface {
	Check() error
}

// partSpec says how runPart runs one part.
type partSpec struct {
	// role names the part for the system check (`check --system`) that runs
	// before anything starts; system is what the configuration changes of it.
	role   string
	system syscheck.RoleOptions
	// metrics is where /metrics and /healthz are served; "" or config.MetricsOff: nowhere.
	metrics string
	// reloadOn are the signals that call the part's Reload (SIGINT and SIGTERM stop it).
	reloadOn []os.Signal
	// start builds the part and registers its metrics on set. health is what
	// /healthz answers; runPart reports healthy once start returns, and a part
	// that can fail while it runs (the collector's readers) says so through it.
	start func(set *metrics.Set, health func(bool)) (part, error)
	// health is where only /healthz is served, for load balancers' health
	// checks from the network ("" or config.MetricsOff: nowhere).
	health string
}

// runPart is the life of every long-running part, in the same order for all:
// catch signals, serve /metrics (unhealthy), start, report healthy, run while
// dispatching reload signals, and on SIGINT or SIGTERM stop and close.
func runPart(ctx context.Context, spec partSpec) error {
	// Signals first: a SIGTERM or SIGHUP that arrives while starting must not
	// kill the process the default way; it is handled once the part runs.
	// A channel of their own for the stop signals: the runtime drops a
	// signal whose channel is full, and a burst of reload signals (a
	// configuration manager's SIGHUPs, faster than reloads finish) kept a
	// shared one full, so a SIGTERM among them was lost and the part ran on.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	// Reload signals that come while a reload runs queue up to this many
	// (the runtime drops the rest); the last reload reads the newest file.
	reloads := make(chan os.Signal, 4)
	signal.Notify(reloads, spec.reloadOn...)
	defer signal.Stop(reloads)
	// A SIGHUP from before: earlyhup kept it from ending the process. The
	// part reloads once started (its configuration may be older than the
	// signal).
	if earlyhup.Handover() && slices.Contains(spec.reloadOn, os.Signal(syscall.SIGHUP)) {
		reloads <- syscall.SIGHUP
	}

	// The configuration's addresses are checked already: a bad one here
	// came from a flag.
	for flag, addr := range map[string]string{"--metrics-listen": spec.metrics, "--health-listen": spec.health} {
		if addr != "" && addr != config.MetricsOff {
			if err := config.CheckListenAddr(addr); err != nil {
				return usagef("%s %w", flag, err)
			}
		}
	}
	spec.system.TCPListen = tcpListens(spec.metrics, spec.health)
	if err := requireSystem(spec.role, spec.system); err != nil {
		return err
	}
	set := metrics.NewSet()
	var servers []*telemetry.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for _, l := range []struct {
		addr   string
		listen func(string) (*telemetry.Server, error)
	}{
		{spec.metrics, func(a string) (*telemetry.Server, error) { return telemetry.Listen(a, set) }},
		{spec.health, telemetry.ListenHealth},
	} {
		if l.addr == "" || l.addr == config.MetricsOff {
			continue
		}
		srv, err := l.listen(l.addr)
		if err != nil {
			return err
		}
		// Not healthy until started: tools wait for /healthz before they send traffic.
		srv.SetHealthy(false)
		servers = append(servers, srv)
	}
	health := func(ok bool) {
		for _, s := range servers {
			s.SetHealthy(ok)
		}
	}
	p, err := spec.start(set, health)
	if err != nil {
		return err
	}
	defer p.Close()
	if c, ok := p.(checker); ok {
		for _, s := range servers {
			s.SetReadiness(c.Check)
		}
	}
	health(ready(p))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		stopping := func(sig os.Signal) {
			slog.Info("stopping", "signal", sig.String())
			cancel()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-stop:
				stopping(sig)
				return
			case sig := <-reloads:
				// A stop that came during the last reload goes before
				// the reloads queued behind it.
				select {
				case sig := <-stop:
					stopping(sig)
					return
				default:
				}
				p.Reload(sig)
			}
		}
	}()
	return p.Run(ctx)
}

// metricsListen is --metrics-listen when given, else metrics.listen of the
// configuration (fromConfig).
func metricsListen(c *cli.Context, fromConfig string) string {
	if c.IsSet("metrics-listen") {
		return c.String("metrics-listen")
	}
	return fromConfig
}

// waitPart is the Run of a part that works in the kernel: it only waits.
func waitPart(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// reloadCounters count a part's configuration reloads (SIGHUP):
// xmirror_<part>_reloads_total those applied, and
// xmirror_<part>_reload_errors_total those refused, after which the part
// runs on with the configuration it had. A refused reload is otherwise
// only a log line, which no alert sees.
// xmirror_<part>_config_last_reload_successful is 0 from a refused reload
// until one is applied: what the part runs then differs from its file.
type reloadCounters struct {
	applied, refused *metrics.Counter
	lastOK           *metrics.Gauge
}

func newReloadCounters(set *metrics.Set, part string) reloadCounters {
	r := reloadCounters{
		applied: set.NewCounter("xmirror_" + part + "_reloads_total"),
		refused: set.NewCounter("xmirror_" + part + "_reload_errors_total"),
		lastOK:  set.NewGauge("xmirror_"+part+"_config_last_reload_successful", nil),
	}
	r.lastOK.Set(1)
	return r
}

// count records the outcome of one reload: err is why it was refused.
func (r reloadCounters) count(err error) {
	if err != nil {
		r.refused.Inc()
		r.lastOK.Set(0)
	} else {
		r.applied.Inc()
		r.lastOK.Set(1)
	}
}
