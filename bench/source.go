// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
)

const (
	addrCli = "10.79.0.1"
	addrSrv = "10.79.0.2"
	addrMon = "10.79.0.3"
	// iperfMSS keeps mirrored segments plus VXLAN under the lab MTU, so neither
	// mirror has to cut or fragment.
	iperfMSS = 1400
)

func sourceHosts() []netlab.HostSpec {
	return []netlab.HostSpec{
		{Name: "cli", Addrs: []string{addrCli + "/24"}, MTU: labMTU},
		{Name: "srv", Addrs: []string{addrSrv + "/24"}, MTU: labMTU},
		{Name: "mon", Addrs: []string{addrMon + "/24"}, MTU: labMTU},
	}
}

// sourceSystem mirrors the client's eth0 (or not) while iperf3 runs.
type sourceSystem struct {
	name  string
	kind  string
	skip  func() string
	setup func(lab *netlab.Lab, dir string) (pid int, stop func(), err error)
	// monIface is an interface of the monitor host, besides eth0, whose
	// arrivals count as copies.
	monIface string
}

func (r *runner) scenarioSource(ctx context.Context) ScenarioResult {
	sc := ScenarioResult{
		Name:    "source",
		Title:   "mirror source: iperf3 client → server, every packet mirrored to a third host",
		About:   fmt.Sprintf("One TCP stream (MSS %d, offloads off); the mirror copies both directions of the client's eth0 as VXLAN to a host that counts them with XDP. xmirror runs with each datapath: ring (whole frames: each copy a clone sent from the tc hook to the next hop, the tunnel headers pushed by the program, an outbound TCP aggregate encapsulated once and segmented by the kernel; other copies go through a BPF ring buffer and user space) and kernel (clone to a VXLAN device).", iperfMSS),
		Ceiling: "iperf3 plain",
		Primary: "throughput_gbps",
	}
	if _, err := execLookPath("iperf3"); err != nil {
		sc.Skipped = "iperf3 is not installed"
		return sc
	}
	systems := []sourceSystem{
		{name: "iperf3 plain", kind: KindBaseline, setup: func(*netlab.Lab, string) (int, func(), error) { return 0, func() {}, nil }},
		{name: "xmirror source (ring)", kind: KindXmirror, skip: func() string { return r.available("source") },
			setup: func(lab *netlab.Lab, dir string) (int, func(), error) { return r.setupXmirrorSource(lab, dir, "ring") }},
		{name: "xmirror source (kernel)", kind: KindXmirror, skip: func() string { return r.available("source") },
			setup: func(lab *netlab.Lab, dir string) (int, func(), error) {
				return r.setupXmirrorSource(lab, dir, "kernel")
			}},
		{name: "tc mirred → vxlan", kind: KindAlternative, setup: setupMirred},
		{name: spanName, kind: KindReference, setup: setupSpan, monIface: spanMon},
	}
	var runs []*sourceRun
	var results []*SystemResult
	for _, sys := range systems {
		if ctx.Err() != nil {
			break
		}
		run := r.prepareSource(sys)
		runs, results = append(runs, run), append(results, run.res)
	}
	defer func() {
		for _, run := range runs {
			run.undo.run()
		}
	}()
	secs := int(math.Max(1, math.Round(r.o.Trial.Seconds())))
	r.goRound(ctx, &sc, results, func(i, rep int) (map[string]float64, error) {
		r.ui.progress("source: %s rep %d/%d (iperf3 %ds)", runs[i].sys.name, rep+1, r.o.Reps, secs)
		return runs[i].trial(ctx, secs)
	})
	setCosts(&sc)
	return sc
}

// setCosts gives every mirroring system its cost: how much lower its iperf3
// throughput was than plain's, the median over the rounds of each round's
// pair (plain's speed drifts between rounds), or from the two medians when
// no round has both.
func setCosts(sc *ScenarioResult) {
	base := sc.system("iperf3 plain")
	if base == nil || base.Metrics["throughput_gbps"] <= 0 {
		return
	}
	for i := range sc.Systems {
		s := &sc.Systems[i]
		if s.Skipped != "" || s.Kind == KindBaseline {
			continue
		}
		ratio := s.Metrics["throughput_gbps"] / base.Metrics["throughput_gbps"]
		if per := roundRatios(s, base, "throughput_gbps"); len(per) > 0 {
			ratio = median(per)
		}
		s.Metrics["cost_pct"] = 100 * (1 - ratio)
	}
}

// sourceRun is one system of the source scenario, its lab set up and the
// mirror running.
type sourceRun struct {
	sys  sourceSystem
	res  *SystemResult
	lab  *netlab.Lab
	ctrs []*XDPPeer
	pid  int
	undo undo
}

// prepareSource builds the system's lab and starts its mirror; on failure the
// result says why it is skipped.
func (r *runner) prepareSource(sys sourceSystem) *sourceRun {
	run := &sourceRun{sys: sys, res: &SystemResult{Name: sys.name, Kind: sys.kind}}
	if sys.skip != nil {
		if why := sys.skip(); why != "" {
			run.res.Skipped = why
			return run
		}
	}
	r.ui.progress("source: %s: setting up", sys.name)
	lab, err := r.newLab("src", sourceHosts()...)
	if err != nil {
		run.res.Skipped = fmt.Sprintf("lab: %v", err)
		return run
	}
	run.lab = lab
	run.undo.push(func() { lab.Close() })
	dir, err := os.MkdirTemp(r.tmp, "src-")
	if err != nil {
		run.res.Skipped = err.Error()
		return run
	}
	if run.ctrs, err = attachCounters(lab, "mon"); err != nil {
		run.res.Skipped = err.Error()
		return run
	}
	run.undo.push(func() { closeAll(run.ctrs) })
	if err := warmNeighbours(lab.Host("cli"), addrSrv, addrMon); err != nil {
		run.res.Skipped = err.Error()
		return run
	}
	pid, stop, err := sys.setup(lab, dir)
	if err != nil {
		run.res.Skipped = fmt.Sprintf("setup failed: %v", err)
		return run
	}
	run.pid = pid
	run.undo.push(stop)
	if sys.monIface != "" {
		ctr, err := attachCounterOn(lab.Host("mon"), sys.monIface)
		if err != nil {
			run.res.Skipped = err.Error()
			return run
		}
		run.ctrs = append(run.ctrs, ctr)
		run.undo.push(func() { ctr.Close() })
	}
	return run
}

// trial runs iperf3 once through the system's lab.
func (s *sourceRun) trial(ctx context.Context, secs int) (map[string]float64, error) {
	before, err := readAll(s.ctrs)
	if err != nil {
		return nil, err
	}
	p0 := readProc(s.pid)
	gbps, err := runIperf(ctx, s.lab, secs)
	if err != nil {
		return nil, err
	}
	time.Sleep(100 * time.Millisecond)
	after, err := readAll(s.ctrs)
	if err != nil {
		return nil, err
	}
	var copies uint64
	for i := range after {
		copies += after[i].Packets - before[i].Packets
	}
	t := map[string]float64{
		"throughput_gbps": gbps,
		"mirrored_pps":    float64(copies) / float64(secs),
	}
	if p1 := readProc(s.pid); p1.Valid && p0.Valid {
		t["proc_cpu_cores"] = (p1.CPU - p0.CPU).Seconds() / float64(secs)
		t["rss_mib"] = float64(p1.HWM) / (1 << 20)
	}
	return t, nil
}

// runIperf runs one iperf3 TCP test from cli to srv and returns the received
// throughput in Gbit/s.
func runIperf(ctx context.Context, lab *netlab.Lab, secs int) (float64, error) {
	ip := netlab.Iperf{Server: lab.Host("srv"), Client: lab.Host("cli"), Addr: addrSrv}
	rep, err := ip.Run(ctx, false, "-t", strconv.Itoa(secs), "-M", strconv.Itoa(iperfMSS))
	if err != nil {
		return 0, err
	}
	if rep.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 reported no throughput")
	}
	return rep.BitsPerSecond / 1e9, nil
}

// setupXmirrorSource runs `xmirror source --datapath dp` on the client
// mirroring every IPv4 packet of eth0, both directions, whole, to the monitor
// host.
func (r *runner) setupXmirrorSource(lab *netlab.Lab, dir, dp string) (int, func(), error) {
	cli := lab.Host("cli")
	all := config.Rule{Priority: 1, Action: config.Accept, Protocol: config.ProtocolAll, EtherType: config.IPv4}
	cfg := &config.Config{
		Filters: []config.Filter{{Name: "all", Inbound: []config.Rule{all}, Outbound: []config.Rule{all}}},
		Sessions: []config.Session{{Name: "bench", Priority: 1, VNI: 1, Enabled: true, Filter: "all",
			Sources: []string{"eth0"}, Target: addrMon}},
		Metrics: config.Metrics{Listen: metricsAddr},
	}
	config.ApplyDefaults(cfg)
	f, err := writeConfig(cfg, filepath.Join(dir, "source.yaml"))
	if err != nil {
		return 0, nil, err
	}
	p, err := r.startPart(cli, false, "source", "--config", f, "--datapath", dp)
	if err != nil {
		return 0, nil, err
	}
	return p.Cmd.Process.Pid, func() { p.Stop() }, nil
}

// setupMirred is the kernel's own way: tc mirred copies every packet of eth0 (both
// directions) to a VXLAN device.
func setupMirred(lab *netlab.Lab, _ string) (int, func(), error) {
	m := netlab.Mirred{Iface: "eth0", Device: "vxm0", Remote: addrMon}
	if _, err := m.Setup(lab.Host("cli")); err != nil {
		return 0, nil, err
	}
	return 0, func() {}, nil
}

// spanName is the floor's system: the least a mirror can cost here.
const spanName = "tc mirred → veth (floor)"

// The floor's interfaces: the client's and the monitor host's, and their
// ports on a second bridge of the lab's switch, which carries only copies.
const (
	spanCli, spanMon         = "span0", "span1"
	spanBridge               = "brspan"
	spanCliPort, spanMonPort = "sp0", "sp1"
)

// setupSpan is the least any mirror that sends each copy as a packet of its
// own can cost here: tc mirred clones every packet of eth0 (both directions)
// unchanged, without tunnel headers, onto a second interface with eth0's MTU
// and offloads, through a switch of its own (the copies take the same hops as
// the others' VXLAN) to the monitor host, where an XDP counter counts and
// drops them, as the one on eth0 does the others' copies. Every mirror in
// this scenario does this work and more (the tunnel headers, a route), so no
// mirror sending a packet per copy costs less than the floor.
func setupSpan(lab *netlab.Lab, _ string) (int, func(), error) {
	cli, mon, sw := lab.Host("cli"), lab.Host("mon"), lab.Name+"-sw"
	undo := func() {
		cli.Run("tc", "qdisc", "del", "dev", "eth0", "clsact")
		cli.Run("ip", "link", "del", spanCli)
		mon.Run("ip", "link", "del", spanMon)
		exec.Command("ip", "-n", sw, "link", "del", spanBridge).Run()
	}
	mtu := strconv.Itoa(labMTU)
	noOffloads := []string{"rx", "off", "tx", "off", "tso", "off", "gso", "off"}
	steps := [][]string{
		{"ip", "-n", sw, "link", "add", spanBridge, "type", "bridge"},
		{"ip", "-n", sw, "link", "set", spanBridge, "up"},
		{"ip", "-n", cli.NS, "link", "add", spanCli, "mtu", mtu, "type", "veth", "peer", "name", spanCliPort, "mtu", mtu, "netns", sw},
		{"ip", "-n", mon.NS, "link", "add", spanMon, "mtu", mtu, "type", "veth", "peer", "name", spanMonPort, "mtu", mtu, "netns", sw},
		append([]string{"ip", "netns", "exec", cli.NS, "ethtool", "-K", spanCli}, noOffloads...),
		append([]string{"ip", "netns", "exec", mon.NS, "ethtool", "-K", spanMon}, noOffloads...),
		append([]string{"ip", "netns", "exec", sw, "ethtool", "-K", spanCliPort}, noOffloads...),
		append([]string{"ip", "netns", "exec", sw, "ethtool", "-K", spanMonPort}, noOffloads...),
		// The copies carry both ends' addresses in both directions: a port
		// that learned them would take them for local and drop the copies.
		{"ip", "-n", sw, "link", "set", spanCliPort, "master", spanBridge, "up"},
		{"ip", "-n", sw, "link", "set", spanCliPort, "type", "bridge_slave", "learning", "off"},
		{"ip", "-n", sw, "link", "set", spanMonPort, "master", spanBridge, "up"},
		{"ip", "-n", cli.NS, "link", "set", spanCli, "up"},
		{"ip", "-n", mon.NS, "link", "set", spanMon, "up"},
		{"ip", "netns", "exec", cli.NS, "tc", "qdisc", "add", "dev", "eth0", "clsact"},
	}
	for _, dir := range []string{"ingress", "egress"} {
		steps = append(steps, []string{"ip", "netns", "exec", cli.NS, "tc", "filter", "add", "dev", "eth0", dir,
			"prio", "2", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", spanCli})
	}
	for _, step := range steps {
		if out, err := exec.Command(step[0], step[1:]...).CombinedOutput(); err != nil {
			undo()
			return 0, nil, fmt.Errorf("%s: %w: %s", strings.Join(step, " "), err, out)
		}
	}
	return 0, undo, nil
}

// attachCounterOn counts and drops the packets arriving on interface name of h.
func attachCounterOn(h *netlab.Host, name string) (*XDPPeer, error) {
	var p *XDPPeer
	err := h.Do(func() error {
		link, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		p, err = AttachDropCounter(link.Index)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("counter on %s of %s: %w", name, h.Name, err)
	}
	return p, nil
}
