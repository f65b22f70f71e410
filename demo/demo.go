// SPDX-License-Identifier: Apache-2.0

// Package demo plays the seed scenario on one machine: it builds the seed's network
// (ECS-source, ECS-test, two collector targets and the load balancer ELB-A on
// 192.168.0.0/24) in network namespaces, runs `xmirror source`, `xmirror lb` and
// `xmirror collect` there as real processes with configurations derived from
// config/examples/seed.yaml, sends the seed's Step 5 conversation plus traffic the
// filter must not mirror, and reads back what the collectors wrote. `xmirror demo`
// prints it for a person; the e2e test asserts it against a tcpdump capture.
package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// Options say how to run the demo. The zero value plus Config is usable.
type Options struct {
	// Binary is the xmirror executable that runs the parts; default: this process's.
	Binary string
	// OutDir receives OutDir/<target>/<session>/*.pcapng, the configurations the
	// parts ran with (configs/), their logs (logs/) and the reference capture.
	OutDir string
	// Config is the seed configuration (config/examples/seed.yaml).
	Config []byte
	// Affinity overrides load_balancer.affinity: inner-symmetric or outer. With
	// outer the source also hashes directionally, as AWS does, so that the two
	// directions of a conversation may reach different targets, as in the seed.
	Affinity string
	// HealthCheck turns the load balancer's HTTP health checks of the collectors on,
	// every HealthInterval (default 1s).
	HealthCheck    bool
	HealthInterval time.Duration
	// Out receives the progress lines and the report; nil discards them.
	Out io.Writer
	// Label names the lab's namespaces (short); default "demo".
	Label string
	// StartTimeout bounds how long a part may take to answer /healthz; default 20s.
	StartTimeout time.Duration
	// Receive is the collectors' collector.receive (auto, xdp or socket;
	// default socket). The targets listen on their own address, so auto
	// takes the XDP path; the seed's tcpdump on the targets then sees no
	// VXLAN, which XDP takes before the kernel's packet taps.
	Receive string
}

// ReferenceFilter is the tcpdump expression equivalent to the seed's
// mirror-filter-01 for the traffic the demo sends.
const ReferenceFilter = "tcp and host 192.168.0.161 and port 1234"

// Demo is a running seed topology.
type Demo struct {
	opts    Options
	cfg     *config.Config // the seed with the demo's edits, as the parts read it
	session config.Session // the session the demo shows (the first enabled one)
	lab     *netlab.Lab
	parts   map[string]*netlab.Part // by host name: the part running there now
	started []*netlab.Part          // every part started, for Close and the logs
	pinPath string
	out     io.Writer
	step    int
	steps   int
	cfgDir  string
	logDir  string
}

// StepError names the step of the demo that failed.
type StepError struct {
	Step  string
	Err   error
	Extra string // the tail of the log of the part involved, if any
}

func (e *StepError) Error() string {
	s := fmt.Sprintf("step %q failed: %v", e.Step, e.Err)
	if e.Extra != "" {
		s += "\n" + e.Extra
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

func newDemo(opts Options) (*Demo, error) {
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the xmirror binary: %w", err)
		}
		opts.Binary = exe
	}
	if opts.OutDir == "" {
		return nil, errors.New("no output directory")
	}
	if len(opts.Config) == 0 {
		return nil, errors.New("no seed configuration")
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = time.Second
	}
	if opts.Label == "" {
		opts.Label = "demo"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 20 * time.Second
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	abs, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	opts.OutDir = abs
	return &Demo{opts: opts, out: out, parts: map[string]*netlab.Part{},
		cfgDir: filepath.Join(abs, "configs"), logDir: filepath.Join(abs, "logs")}, nil
}

// Start builds the topology and starts every part, waiting for each to report
// healthy. On failure everything it built is removed.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	d, err := newDemo(opts)
	if err != nil {
		return nil, err
	}
	if err := d.setup(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Run plays the whole demo and prints it: topology, parts, the seed's Step 5,
// unmatched traffic, then what the collectors wrote and the counters. With
// keepRunning it restarts the collectors afterwards and waits for ctx to end.
func Run(ctx context.Context, opts Options, keepRunning bool) (err error) {
	d, err := newDemo(opts)
	if err != nil {
		return err
	}
	defer func() {
		built := d.lab != nil
		if cerr := d.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if built {
			fmt.Fprintf(d.out, "namespaces removed; output kept in %s\n", d.opts.OutDir)
		}
	}()
	d.steps = 12
	if err := d.setup(ctx); err != nil {
		return err
	}
	ref, watches, err := d.startCaptures(ctx)
	if err != nil {
		return err
	}
	defer ref.Stop()
	rep := &report{d: d}
	if err := d.sendTraffic(ctx, rep); err != nil {
		return err
	}
	if err := d.readCounters(ctx, rep); err != nil {
		return err
	}
	if err := d.collect(ctx, ref, watches, rep); err != nil {
		return err
	}
	rep.print(d.out)
	if len(rep.problems) > 0 {
		return fmt.Errorf("the collected frames differ from the reference capture: %s", strings.Join(rep.problems, "; "))
	}
	if !keepRunning {
		return nil
	}
	for _, t := range Targets {
		if err := d.startCollector(ctx, t); err != nil {
			return &StepError{Step: "restart the collector on " + t, Err: err, Extra: d.logTail(t)}
		}
	}
	d.printKeepRunning()
	<-ctx.Done()
	return nil
}

// startCaptures starts the reference capture on ECS-source and the seed's
// tcpdump on each target.
func (d *Demo) startCaptures(ctx context.Context) (*Capture, map[string]*Watch, error) {
	var ref *Capture
	watches := map[string]*Watch{}
	snap := d.ReferenceSnap()
	err := d.do(ctx, fmt.Sprintf("start tcpdump -s %d '%s' on ECS-source (the reference) and the seed's tcpdump on the targets", snap, ReferenceFilter), func() error {
		var err error
		ref, err = d.StartCapture(ctx, HostSource, filepath.Join(d.opts.OutDir, "reference", "ECS-source-eth0.pcap"), snap, ReferenceFilter)
		if err != nil {
			return err
		}
		for _, t := range Targets {
			if watches[t], err = d.StartWatch(ctx, t); err != nil {
				return fmt.Errorf("tcpdump on %s: %w", t, err)
			}
		}
		return nil
	})
	if err != nil && ref != nil {
		ref.Stop()
	}
	return ref, watches, err
}

// sendTraffic sends the seed's conversation, a second one, and traffic the
// filter must not mirror.
func (d *Demo) sendTraffic(ctx context.Context, rep *report) error {
	for _, conv := range []struct {
		title string
		msgs  []Message
	}{
		{"seed Step 5: ECS-test connects to ECS-source:1234; hello, source to test, test to source", Step5},
		{"a second conversation on port 1234 (a new flow for the round robin)", SecondConversation},
	} {
		if err := d.do(ctx, conv.title, func() error {
			c, err := d.Conversation(ctx, 1234, conv.msgs)
			rep.convs = append(rep.convs, c)
			return err
		}); err != nil {
			return err
		}
	}
	return d.do(ctx, "traffic the filter must not mirror: TCP port 1235, UDP port 1234, ICMP echo", func() error {
		var err error
		rep.unmatched, err = d.Unmatched(ctx)
		return err
	})
}

// readCounters scrapes every part's /metrics.
func (d *Demo) readCounters(ctx context.Context, rep *report) error {
	rep.counters = map[string][]telemetry.Sample{}
	return d.do(ctx, "read the counters of every part (/metrics)", func() error {
		// Give the last frames time to cross the load balancer before counting.
		time.Sleep(500 * time.Millisecond)
		for _, h := range []string{HostSource, HostLB, HostTarget01, HostTarget02} {
			s, err := d.Metrics(ctx, h)
			if err != nil {
				return err
			}
			rep.counters[h] = s
		}
		return nil
	})
}

// collect stops the captures and the collectors, which closes their files,
// and reads those files.
func (d *Demo) collect(ctx context.Context, ref *Capture, watches map[string]*Watch, rep *report) error {
	rep.wire = map[string][]string{}
	if err := d.do(ctx, "stop the collectors (SIGTERM closes their files) and the captures", func() error {
		for t, w := range watches {
			rep.wire[t] = w.Stop()
		}
		var errs []error
		var err error
		rep.ref, err = ref.Stop()
		errs = append(errs, err)
		for _, t := range Targets {
			errs = append(errs, d.StopCollector(t))
		}
		return errors.Join(errs...)
	}); err != nil {
		return err
	}
	return d.do(ctx, "read the capture files the collectors wrote", func() error {
		var err error
		rep.got, err = d.CollectedFrames()
		return err
	})
}

// do runs one step with a progress line.
func (d *Demo) do(ctx context.Context, title string, fn func() error) error {
	d.step++
	num := strconv.Itoa(d.step)
	if d.steps > 0 {
		num += "/" + strconv.Itoa(d.steps)
	}
	fmt.Fprintf(d.out, "[%s] %s ... ", num, title)
	start := time.Now()
	err := ctx.Err()
	if err == nil {
		err = fn()
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(d.out, "interrupted")
			return &StepError{Step: title, Err: errors.New("interrupted")}
		}
		fmt.Fprintln(d.out, "FAILED")
		var se *StepError
		if errors.As(err, &se) {
			return se
		}
		return &StepError{Step: title, Err: err}
	}
	fmt.Fprintf(d.out, "ok (%.1fs)\n", time.Since(start).Seconds())
	return nil
}

func (d *Demo) setup(ctx context.Context) error {
	if err := d.do(ctx, "check the tools and read the seed configuration", func() error {
		if err := preflight(); err != nil {
			return err
		}
		return d.loadConfig()
	}); err != nil {
		return err
	}
	if err := d.do(ctx, "build the seed's network: 5 hosts on 192.168.0.0/24, one bridge", d.buildLab); err != nil {
		return err
	}
	if err := d.do(ctx, "start xmirror collect on ECS-target-01 and ECS-target-02", func() error {
		for _, t := range Targets {
			if err := d.startCollector(ctx, t); err != nil {
				return &StepError{Step: "start xmirror collect on " + t, Err: err, Extra: d.logTail(t)}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	lb := d.cfg.LoadBalancer
	title := fmt.Sprintf("start xmirror lb on ELB-A (%s %s:%d, %s, %s)", lb.Listener.Name, lb.Listener.VIP, lb.Listener.Port, lb.Algorithm, lb.Affinity)
	if err := d.do(ctx, title, func() error {
		args := []string{"--pin-path", d.pinPath, "--detach-on-exit"}
		if err := d.startPart(ctx, HostLB, "lb", args...); err != nil {
			return &StepError{Step: title, Err: err, Extra: d.logTail(HostLB)}
		}
		return d.waitBackendsUp(ctx)
	}); err != nil {
		return err
	}
	s := d.session
	title = fmt.Sprintf("start xmirror source on ECS-source (%s: VNI %d, %d bytes, filter %s)", s.Name, s.VNI, s.PacketLength, s.Filter)
	return d.do(ctx, title, func() error {
		if err := d.startPart(ctx, HostSource, "source"); err != nil {
			return &StepError{Step: title, Err: err, Extra: d.logTail(HostSource)}
		}
		return nil
	})
}

// preflight finds the programs the demo runs besides xmirror, so that a missing
// one is named before anything is built (`make deps` installs them).
func preflight() error {
	var missing []string
	for _, tool := range []string{"nsenter", "ethtool", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found in PATH (run `make deps` or install util-linux, ethtool, tcpdump)", strings.Join(missing, ", "))
	}
	return nil
}

// loadConfig validates the seed, applies the demo's edits and writes one
// configuration per host (they differ only in where metrics and files go).
func (d *Demo) loadConfig() error {
	base, err := config.Parse(d.opts.Config)
	if err != nil {
		return fmt.Errorf("seed configuration: %w", err)
	}
	if err := checkSeed(base); err != nil {
		return fmt.Errorf("seed configuration does not fit the demo's network: %w", err)
	}
	edits, err := d.edits()
	if err != nil {
		return err
	}
	common, err := deriveConfig(d.opts.Config, edits...)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(common)
	if err != nil {
		return fmt.Errorf("derived configuration: %w", err)
	}
	d.cfg = cfg
	for _, s := range cfg.Sessions {
		if s.Enabled {
			d.session = s
			break
		}
	}
	if d.session.Name == "" {
		return errors.New("seed configuration: no enabled session")
	}
	if err := d.cleanDirs(); err != nil {
		return err
	}
	return d.writeHostConfigs(common)
}

// edits are the demo's changes to the seed: the affinity and health checks
// its options ask for.
func (d *Demo) edits() ([]edit, error) {
	edits := []edit{}
	switch d.opts.Affinity {
	case "":
	case "inner-symmetric":
		edits = append(edits, edit{"load_balancer.affinity", "inner-symmetric"})
	case "outer":
		edits = append(edits, edit{"load_balancer.affinity", "outer"}, edit{"source.hash", "directional"})
	default:
		return nil, fmt.Errorf("affinity %q: want inner-symmetric or outer", d.opts.Affinity)
	}
	if d.opts.HealthCheck {
		iv := d.opts.HealthInterval
		edits = append(edits,
			edit{"load_balancer.health_check.enabled", "true"},
			edit{"load_balancer.health_check.type", "http"},
			edit{"load_balancer.health_check.path", "/healthz"},
			edit{"load_balancer.health_check.interval", iv.String()},
			edit{"load_balancer.health_check.timeout", (iv / 2).String()},
			edit{"load_balancer.health_check.healthy_threshold", "1"},
			edit{"load_balancer.health_check.unhealthy_threshold", "2"},
		)
	}
	return edits, nil
}

// cleanDirs empties what an earlier run left in the demo's own directories
// (and only those): old files would mix with the new ones.
func (d *Demo) cleanDirs() error {
	for _, dir := range append([]string{d.cfgDir, d.logDir, filepath.Join(d.opts.OutDir, "reference")}, d.TargetDir(HostTarget01), d.TargetDir(HostTarget02)) {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(d.cfgDir, 0o755); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	if err := os.MkdirAll(d.logDir, 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	return nil
}

// writeHostConfigs writes common, with the host's metrics address and output
// directory, as each host's configuration.
func (d *Demo) writeHostConfigs(common []byte) error {
	for _, h := range seedHosts {
		// health_listen off on every host, since the file is checked whole
		// wherever it runs: metrics.listen serves the /healthz the load
		// balancer probes, on the health check's port, which may be
		// health_listen's default (9091) that a collector would otherwise
		// open a second time.
		hostEdits := []edit{{"metrics.listen", d.metricsAddr(h.Name)}, {"collector.health_listen", "off"}}
		for _, t := range Targets {
			if t == h.Name {
				hostEdits = append(hostEdits, edit{"collector.output_dir", d.TargetDir(t)},
					edit{"collector.listen", net.JoinHostPort(h.Addr, "4789")},
					edit{"collector.receive", cmp.Or(d.opts.Receive, config.ReceiveSocket)})
			}
		}
		b, err := deriveConfig(common, hostEdits...)
		if err != nil {
			return err
		}
		if _, err := config.Parse(b); err != nil {
			return fmt.Errorf("configuration of %s: %w", h.Name, err)
		}
		if err := os.WriteFile(d.configPath(h.Name), b, 0o644); err != nil {
			return fmt.Errorf("write configuration of %s: %w", h.Name, err)
		}
	}
	return nil
}

func (d *Demo) buildLab() error {
	lab, err := netlab.New(d.opts.Label)
	if err != nil {
		return fmt.Errorf("create lab: %w", err)
	}
	d.lab = lab
	sweepStalePins()
	d.pinPath = filepath.Join(bpffs, lab.Name)
	for _, h := range seedHosts {
		spec := netlab.HostSpec{Name: h.Name, Addrs: []string{h.Addr + "/24"}, GRO: h.XDPSender, PeerXDP: h.XDPSender}
		if _, err := lab.AddHost(spec); err != nil {
			return fmt.Errorf("add host %s: %w", h.Name, err)
		}
	}
	return nil
}

// ReferenceSnap is the snap length of the reference capture: what the
// shown session keeps of a frame, its packet_length, cut further to the
// path MTU less the 50 bytes of VXLAN headers (the hosts' MTU is 1500), as
// the source cuts.
func (d *Demo) ReferenceSnap() int {
	const pathCut = 1500 - 50
	if n := d.session.PacketLength; n > 0 && n < pathCut {
		return n
	}
	return pathCut
}

// Config is the configuration the parts run with.
func (d *Demo) Config() *config.Config { return d.cfg }

// Session is the mirror session the demo shows.
func (d *Demo) Session() config.Session { return d.session }

// Lab is the network the demo built.
func (d *Demo) Lab() *netlab.Lab { return d.lab }

// Host is the lab host called name.
func (d *Demo) Host(name string) *netlab.Host { return d.lab.Host(name) }

// TargetDir is where target's collector writes its files.
func (d *Demo) TargetDir(target string) string { return filepath.Join(d.opts.OutDir, target) }

func (d *Demo) configPath(host string) string { return filepath.Join(d.cfgDir, host+".yaml") }

// metricsAddr is where a host's part serves /metrics and /healthz: its own address
// on the health-check port, so that ELB-A can probe the collectors.
func (d *Demo) metricsAddr(host string) string {
	port := int(config.DefaultHealthPort)
	if lb := d.cfg; lb != nil && lb.LoadBalancer != nil && lb.LoadBalancer.HealthCheck.Port != 0 {
		port = int(lb.LoadBalancer.HealthCheck.Port)
	}
	for _, h := range seedHosts {
		if h.Name == host {
			return net.JoinHostPort(h.Addr, strconv.Itoa(port))
		}
	}
	return ""
}

func (d *Demo) startCollector(ctx context.Context, target string) error {
	return d.startPart(ctx, target, "collect", "--out", d.TargetDir(target))
}

// startPart runs `xmirror <part> --config F --metrics-listen A [args]` in host and
// waits until its /healthz answers 200.
func (d *Demo) startPart(ctx context.Context, host, part string, args ...string) error {
	full := append([]string{d.opts.Binary, part, "--config", d.configPath(host), "--metrics-listen", d.metricsAddr(host)}, args...)
	p, err := d.lab.Host(host).StartPart(part, d.metricsAddr(host), full...)
	if err != nil {
		return err
	}
	d.parts[host] = p
	d.started = append(d.started, p)
	return p.WaitHealthy(ctx, d.opts.StartTimeout)
}

// waitBackendsUp gives the load balancer's health checks the time to probe the
// collectors before any traffic is sent.
func (d *Demo) waitBackendsUp(ctx context.Context) error {
	hc := d.cfg.LoadBalancer.HealthCheck
	if !hc.Enabled {
		return nil
	}
	// Backends count as healthy until a probe says otherwise; one interval lets the
	// first probe of each run, so that a collector that is not up shows now.
	wait := hc.Interval.D()
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Metrics scrapes host's part.
func (d *Demo) Metrics(ctx context.Context, host string) ([]telemetry.Sample, error) {
	p := d.parts[host]
	if p == nil {
		return nil, fmt.Errorf("scrape %s: no part runs there", host)
	}
	return p.Scrape(ctx)
}

// StopCollector ends target's collector with SIGTERM, so that it closes its files.
func (d *Demo) StopCollector(target string) error {
	p := d.parts[target]
	if p == nil {
		return nil
	}
	if err := p.Stop(); err != nil {
		return fmt.Errorf("stop the collector on %s: %w", target, err)
	}
	return nil
}

// CollectedFrames reads every closed capture file of both targets, in file order,
// each frame marked with its target.
func (d *Demo) CollectedFrames() ([]Frame, error) {
	var all []Frame
	for _, t := range Targets {
		files, err := CaptureFiles(d.TargetDir(t))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, f := range files {
			frames, err := ReadCaptureFile(f)
			if err != nil {
				return nil, err
			}
			for i := range frames {
				frames[i].Target = t
			}
			all = append(all, frames...)
		}
	}
	return all, nil
}

// logTail is the end of what host's part printed, for error messages.
func (d *Demo) logTail(host string) string {
	p := d.parts[host]
	if p == nil {
		return ""
	}
	return "last lines of " + host + "'s log:\n    " + strings.ReplaceAll(p.LogTail(15), "\n", "\n    ")
}

// Close stops every part (SIGTERM first, so that collectors close their files),
// saves their logs under OutDir/logs and removes the namespaces.
func (d *Demo) Close() error {
	if d.lab == nil {
		return nil
	}
	var errs []error
	// The source first (no more mirrored traffic), then the load balancer, then
	// the collectors, which may still be receiving.
	order := map[string]int{HostSource: 0, HostLB: 1}
	for pass := 0; pass < 3; pass++ {
		for _, sp := range d.started {
			o, ok := order[sp.Host.Name]
			if !ok {
				o = 2
			}
			if o == pass {
				sp.Stop() // its exit status was reported by the step that needed it
			}
		}
	}
	for _, sp := range d.started {
		if err := appendFile(filepath.Join(d.logDir, sp.Host.Name+"-"+sp.Name+".log"), sp.Output()); err != nil {
			errs = append(errs, fmt.Errorf("save log of %s: %w", sp.Host.Name, err))
		}
	}
	errs = append(errs, d.lab.Close())
	d.lab = nil
	if d.pinPath != "" {
		// --detach-on-exit removes the pins; this catches a load balancer that died.
		os.RemoveAll(d.pinPath)
	}
	return errors.Join(errs...)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

const bpffs = "/sys/fs/bpf"

// sweepStalePins removes the pin directories of demo runs whose process died
// before Close (netlab sweeps their namespaces the same way): their names start
// with the lab name, "xmlab-<pid>-".
func sweepStalePins() {
	entries, err := os.ReadDir(bpffs)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "xmlab-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		os.RemoveAll(filepath.Join(bpffs, e.Name()))
	}
}
