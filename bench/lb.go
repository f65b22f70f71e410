// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// lbWeights are the backends' weights: unequal, so that weight accuracy means
// something (2/3 and 1/3 of the flows).
var lbWeights = [2]int{2, 1}

// lbSystem is one load balancer under test: setup starts it in the lab's "lb" host
// and returns the pid whose CPU is its cost (0 when it has no process of its own).
type lbSystem struct {
	name   string
	kind   string
	shares []float64 // expected share of each backend
	skip   func() string
	setup  func(t *lbTopo, dir string) (pid int, stop func(), err error)
}

func (r *runner) scenarioLB(ctx context.Context) ScenarioResult {
	sc := ScenarioResult{
		Name:  "lb",
		Title: "load balancer: generator → LB → two backends",
		About: "VXLAN to the VIP at the generator's top rate over one veth pair; the LB's output comes back to the generator's " +
			"namespace, where an XDP counter tells the two backends (weights 2:1) apart by destination address.",
		Ceiling: "xdp ceiling",
		Primary: "received_pps",
	}
	w := float64(lbWeights[0] + lbWeights[1])
	shares := []float64{float64(lbWeights[0]) / w, float64(lbWeights[1]) / w}
	systems := []lbSystem{
		{name: "xdp ceiling", kind: KindCeiling, shares: []float64{1, 0}, setup: setupCeiling},
		{name: "xmirror lb (wrr)", kind: KindXmirror, shares: shares, skip: func() string { return r.available("lb") },
			setup: func(t *lbTopo, dir string) (int, func(), error) { return r.setupXmirrorLB(t, dir, "wrr") }},
		{name: "xmirror lb (maglev)", kind: KindXmirror, shares: shares, skip: func() string { return r.available("lb") },
			setup: func(t *lbTopo, dir string) (int, func(), error) { return r.setupXmirrorLB(t, dir, "maglev") }},
		{name: "nftables dnat", kind: KindAlternative, shares: shares, skip: needBinary("nft"), setup: setupNFT},
		{name: "nginx udp proxy", kind: KindAlternative, shares: shares, skip: needNginx, setup: setupNginx},
	}
	var runs []*lbRun
	var results []*SystemResult
	for _, sys := range systems {
		if ctx.Err() != nil {
			break
		}
		run := r.prepareLB(sys)
		runs, results = append(runs, run), append(results, run.res)
	}
	defer func() {
		for _, run := range runs {
			run.undo.run()
		}
	}()
	r.goRound(ctx, &sc, results, func(i, rep int) (map[string]float64, error) {
		run := runs[i]
		label := fmt.Sprintf("lb: %s rep %d/%d", run.sys.name, rep+1, r.o.Reps)
		// A short untimed run first fills connection tables, conntrack and
		// proxy sessions (nginx forgets idle ones after 2 s).
		if _, err := r.generate(ctx, run.topo, 0, r.o.Trial/3, label+" warm-up"); err != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
		return r.lbTrial(ctx, run.topo, run.ctr, run.pid, run.sys, label)
	})
	return sc
}

// lbRun is one system of the lb scenario, set up and ready for trials.
type lbRun struct {
	sys  lbSystem
	res  *SystemResult
	topo *lbTopo
	ctr  *XDPPeer
	pid  int
	undo undo
}

// prepareLB builds the system's lab and starts it; on failure the result says
// why it is skipped.
func (r *runner) prepareLB(sys lbSystem) *lbRun {
	run := &lbRun{sys: sys, res: &SystemResult{Name: sys.name, Kind: sys.kind}}
	if sys.skip != nil {
		if why := sys.skip(); why != "" {
			run.res.Skipped = why
			return run
		}
	}
	r.ui.progress("lb: %s: setting up", sys.name)
	topo, err := r.newDirectTopo()
	if err != nil {
		run.res.Skipped = fmt.Sprintf("lab: %v", err)
		return run
	}
	run.topo = topo
	run.undo.push(func() { topo.lab.Close() })
	dir, err := os.MkdirTemp(r.tmp, "lb-")
	if err != nil {
		run.res.Skipped = err.Error()
		return run
	}
	if err := topo.gen.Do(func() (err error) { run.ctr, err = AttachCounter(topo.genIf.index); return err }); err != nil {
		run.res.Skipped = fmt.Sprintf("counter: %v", err)
		return run
	}
	run.undo.push(func() { run.ctr.Close() })
	pid, stop, err := sys.setup(topo, dir)
	if err != nil {
		run.res.Skipped = fmt.Sprintf("setup failed: %v", err)
		return run
	}
	run.pid = pid
	run.undo.push(stop)
	return run
}

func (r *runner) lbTrial(ctx context.Context, topo *lbTopo, ctr *XDPPeer, pid int, sys lbSystem, label string) (map[string]float64, error) {
	before, err := ctr.ReceivedBy()
	if err != nil {
		return nil, err
	}
	cpu0 := readCPUTimes()
	p0 := readProc(pid)
	g, err := r.generate(ctx, topo, 0, r.o.Trial, label)
	if err != nil {
		return nil, err
	}
	cpu1 := readCPUTimes()
	p1 := readProc(pid)
	// Packets still in queues arrive within milliseconds.
	time.Sleep(200 * time.Millisecond)
	after, err := ctr.ReceivedBy()
	if err != nil {
		return nil, err
	}
	if g.Sent == 0 || g.Elapsed <= 0 {
		return nil, errors.New("generator sent nothing")
	}
	got := make([]float64, len(topo.backends))
	var total float64
	for i, b := range topo.backends {
		got[i] = float64(after[b].Packets - before[b].Packets)
		total += got[i]
	}
	secs := g.Elapsed.Seconds()
	t := map[string]float64{
		"offered_pps":   g.PPS,
		"received_pps":  total / secs,
		"loss_pct":      math.Max(0, 100*(1-total/float64(g.Sent))),
		"cpu_cores":     busyCores(cpu0, cpu1),
		"softirq_cores": softirqCores(cpu0, cpu1),
	}
	if p0.Valid && p1.Valid {
		t["proc_cpu_cores"] = (p1.CPU - p0.CPU).Seconds() / secs
	}
	if total > 0 && sys.shares[1] > 0 {
		// Worst relative deviation of a backend's share from its weight's share.
		var worst float64
		for i := range got {
			worst = math.Max(worst, math.Abs(got[i]/total/sys.shares[i]-1))
		}
		t["weight_error_pct"] = 100 * worst
	}
	return t, nil
}

func attachCounters(lab *netlab.Lab, hosts ...string) ([]*XDPPeer, error) {
	var peers []*XDPPeer
	for _, name := range hosts {
		h := lab.Host(name)
		var p *XDPPeer
		if err := h.Do(func() (err error) { p, err = AttachCounter(h.Ifindex); return err }); err != nil {
			closeAll(peers)
			return nil, fmt.Errorf("counter on %s: %w", name, err)
		}
		peers = append(peers, p)
	}
	return peers, nil
}

func closeAll(peers []*XDPPeer) {
	for _, p := range peers {
		p.Close()
	}
}

func readAll(peers []*XDPPeer) ([]Counts, error) {
	out := make([]Counts, len(peers))
	for i, p := range peers {
		c, err := p.Received()
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// genCPU is the CPU the generator is pinned to. The kernel data paths it feeds run
// in softirq on the same CPU (raised by its transmits); user-space systems under
// test get the other CPUs.
const genCPU = 0

// warmNeighbours resolves the MACs of addrs from h, so that XDP FIB lookups and
// the first forwarded packets do not wait for ARP.
func warmNeighbours(h *netlab.Host, addrs ...string) error {
	for _, a := range addrs {
		if _, err := h.Run("ping", "-c", "3", "-i", "0.2", "-W", "1", a); err != nil {
			return fmt.Errorf("ping %s from %s: %w", a, h.Name, err)
		}
	}
	return nil
}

func needBinary(name string) func() string {
	return func() string {
		if _, err := execLookPath(name); err != nil {
			return name + " is not installed"
		}
		return ""
	}
}

// setupCeiling attaches the minimal XDP forwarder to the LB towards backend 1.
func setupCeiling(t *lbTopo, _ string) (int, func(), error) {
	var p *XDPPeer
	err := t.lb.Do(func() (err error) {
		p, err = AttachForwarder(t.lbIf.index, t.lbIf.mac, t.nextHop, t.vip, t.backends[0])
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return 0, func() { p.Close() }, nil
}

// setupNFT makes the LB a kernel router that DNATs VXLAN to the VIP over the two
// backends by numgen (new flows; conntrack keeps a flow on its backend).
func setupNFT(t *lbTopo, dir string) (int, func(), error) {
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
		"net.ipv4.conf." + t.lbIf.name + ".send_redirects=0", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf." + t.lbIf.name + ".rp_filter=0"} {
		if _, err := t.lb.Run("sysctl", "-qw", s); err != nil {
			return 0, nil, err
		}
	}
	// numgen mod 3 over a 2:1 map gives the backends their weights.
	rules := fmt.Sprintf(`table ip xmbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s udp dport %d dnat to numgen inc mod 3 map { 0 : %s, 1 : %s, 2 : %s }
	}
}
`, t.vip, VXLANPort, t.backends[0], t.backends[0], t.backends[1])
	f := filepath.Join(dir, "rules.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		return 0, nil, err
	}
	if _, err := t.lb.Run("nft", "-f", f); err != nil {
		return 0, nil, err
	}
	return 0, func() {}, nil
}

const nginxConf = `load_module %s;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 200000;
pid %s/nginx.pid;
error_log %s/error.log error;
events { worker_connections 100000; }
stream {
	upstream backends {
		server %s:%d weight=%d;
		server %s:%d weight=%d;
	}
	server {
		listen %s:%d udp;
		proxy_pass backends;
		proxy_responses 0;
		proxy_timeout 2s;
	}
}
`

func nginxModule() string {
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func needNginx() string {
	if _, err := execLookPath("nginx"); err != nil {
		return "nginx is not installed (nginx-light)"
	}
	if nginxModule() == "" {
		return "the nginx stream module is not installed (libnginx-mod-stream)"
	}
	return ""
}

// setupNginx runs nginx's UDP stream proxy on the LB, one worker, in the foreground.
func setupNginx(t *lbTopo, dir string) (int, func(), error) {
	conf := fmt.Sprintf(nginxConf, nginxModule(), dir, dir, t.backends[0], VXLANPort, lbWeights[0],
		t.backends[1], VXLANPort, lbWeights[1], t.vip, VXLANPort)
	f := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		return 0, nil, err
	}
	p, err := startOffGen(t.lb, "nginx", "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", f)
	if err != nil {
		return 0, nil, err
	}
	if !waitFor(5*time.Second, func() bool { return udpBound(t.lb, VXLANPort) }) {
		p.Stop()
		return 0, nil, fmt.Errorf("nginx did not start: %s", strings.TrimSpace(p.Output()+readFileString(filepath.Join(dir, "error.log"))))
	}
	return p.Cmd.Process.Pid, func() { p.Stop() }, nil
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
