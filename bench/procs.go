// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/telemetry"
)

var execLookPath = exec.LookPath

// offGen is command run on the CPUs other than the generator's, which is busy
// for the whole trial: the same treatment for every receiver and proxy, and no
// fight with the generator.
func offGen(command ...string) []string {
	n := runtime.NumCPU()
	if n < 2 {
		return command
	}
	cpus := "1"
	if n > 2 {
		cpus = fmt.Sprintf("1-%d", n-1)
	}
	return append([]string{"taskset", "-c", cpus}, command...)
}

// startOffGen starts a user-space system under test in h's namespace, off the
// generator's CPU.
func startOffGen(h *netlab.Host, name string, args ...string) (*netlab.Proc, error) {
	cmd := offGen(append([]string{name}, args...)...)
	return h.Start(cmd[0], cmd[1:]...)
}

// metricsAddr is where xmirror processes serve /metrics inside their own namespace:
// a fixed port is free there because the namespace is new.
const metricsAddr = "127.0.0.1:9090"

// startPart runs `xmirror <part> args... --metrics-listen metricsAddr` in h
// (off the generator's CPU with offGenCPU) and waits until /healthz answers.
func (r *runner) startPart(h *netlab.Host, offGenCPU bool, part string, args ...string) (*netlab.Part, error) {
	cmd := append([]string{r.o.Exe, part}, args...)
	cmd = append(cmd, "--metrics-listen", metricsAddr)
	if offGenCPU {
		cmd = offGen(cmd...)
	}
	p, err := h.StartPart(part, metricsAddr, cmd...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitHealthy(context.Background(), 10*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w: %s", err, tail(p.Output()))
	}
	return p, nil
}

// startedProc is a receiver the bench started in a namespace.
type startedProc struct {
	*netlab.Proc                 // nil for the XDP counter, which runs in the bench
	part         *netlab.Part    // xmirror collect: what it wrote is read from its /metrics
	dump         *netlab.Tcpdump // tcpdump: what it captured is read from its closing counts
	counter      *XDPPeer        // the XDP counter: what it counted
	host         netip.Addr      // the XDP counter's host: only its packets count
}

// pid is the receiver's process, or 0 for the XDP counter.
func (sp *startedProc) pid() int {
	if sp.Proc == nil {
		return 0
	}
	return sp.Cmd.Process.Pid
}

// rxStats is what a receiver reports when it stops.
type rxStats struct {
	received uint64 // packets it got (written, for the ones that write)
	written  uint64 // bytes of files it wrote
	// drops are xmirror collect's losses by where they happened: "drop_"
	// and the reason of xmirror_collector_drops_total, or socket_drops.
	drops map[string]float64
}

// receiver is a system that receives VXLAN on a host: the sink, xmirror collect or
// tcpdump.
type receiver struct {
	name  string
	kind  string
	skip  func() string
	start func(h *netlab.Host, dir string) (*startedProc, error)
	// stop ends the process and says what it received.
	stop func(sp *startedProc, dir string) (rxStats, error)
	// drain is how long after the last packet sent the receiver is stopped.
	drain time.Duration
	// proto is the tunnel the generator sends to it; "" means VXLAN.
	proto Protocol
}

func (rx receiver) protocol() Protocol {
	if rx.proto == "" {
		return VXLAN
	}
	return rx.proto
}

// defaultDrain lets a receiver empty its socket before it is stopped.
const defaultDrain = 300 * time.Millisecond

func (r *runner) sinkReceiver() receiver {
	return receiver{
		name: "recvmmsg sink", kind: KindCeiling,
		start: func(h *netlab.Host, dir string) (*startedProc, error) {
			p, err := startOffGen(h, r.o.Exe, "bench", "sink", "--listen", fmt.Sprintf("0.0.0.0:%d", VXLANPort))
			if err != nil {
				return nil, err
			}
			if !waitFor(5*time.Second, func() bool { return strings.Contains(p.Output(), "listening") }) {
				p.Stop()
				return nil, fmt.Errorf("sink did not start: %s", p.Output())
			}
			return &startedProc{Proc: p}, nil
		},
		stop: func(sp *startedProc, _ string) (rxStats, error) {
			if err := sp.Stop(); err != nil {
				return rxStats{}, fmt.Errorf("sink: %w: %s", err, sp.Output())
			}
			var out SinkReport
			if err := lastJSON(sp.Output(), &out); err != nil {
				return rxStats{}, fmt.Errorf("sink output: %w", err)
			}
			return rxStats{received: out.Packets}, nil
		},
	}
}

// xdpCounterReceiver is the collector host's ceiling: an XDP program that
// counts tunnel frames and drops them, what any receiver on the host can at most take.
func xdpCounterReceiver() receiver {
	return receiver{
		name: "xdp drop counter", kind: KindCeiling,
		start: func(h *netlab.Host, _ string) (*startedProc, error) {
			var ctr *XDPPeer
			if err := h.Do(func() (err error) { ctr, err = AttachCounter(h.Ifindex); return err }); err != nil {
				return nil, err
			}
			return &startedProc{counter: ctr, host: h.Addr}, nil
		},
		stop: func(sp *startedProc, _ string) (rxStats, error) {
			// Only what was sent to the host: the bridge floods frames for
			// a MAC it has not learnt to every port.
			by, err := sp.counter.ReceivedBy()
			return rxStats{received: by[sp.host].Packets}, errors.Join(err, sp.counter.Close())
		},
	}
}

// The collector's receive paths (collector.receive; the collector's tests
// import bench, so bench does not import collector).
const (
	receiveSocket = "socket"
	receiveXDP    = "xdp"
)

// collectReceiver is `xmirror collect` writing pcapng with the receive path
// named: socket on the wildcard address (as deployed by default before the
// XDP path), xdp on the host's own address.
func (r *runner) collectReceiver(receive string) receiver {
	return receiver{
		name: "xmirror collect (" + receive + ")", kind: KindXmirror,
		skip: func() string { return r.available("collect") },
		start: func(h *netlab.Host, dir string) (*startedProc, error) {
			return r.startCollect(h, dir, receive)
		},
		stop: stopCollect,
	}
}

func (r *runner) startCollect(h *netlab.Host, dir, receive string, extra ...string) (*startedProc, error) {
	listen := fmt.Sprintf("0.0.0.0:%d", VXLANPort)
	if receive != receiveSocket {
		listen = netip.AddrPortFrom(h.Addr, VXLANPort).String()
	}
	args := append([]string{"--listen", listen, "--receive", receive, "--out", dir, "--format", "pcapng"}, extra...)
	p, err := r.startPart(h, true, "collect", args...)
	if err != nil {
		return nil, err
	}
	return &startedProc{Proc: p.Proc, part: p}, nil
}

// collectInputReceiver is `xmirror collect` on its XDP path (the host's own
// address) with only the input protocol p needs: GENEVE, or GRE for ERSPAN
// and bridging.
func (r *runner) collectInputReceiver(p Protocol) receiver {
	return receiver{
		name: "xmirror collect (xdp, " + string(p) + ")", kind: KindXmirror, proto: p,
		skip: func() string { return cmp.Or(r.available("collect"), r.collectInputs()) },
		start: func(h *netlab.Host, dir string) (*startedProc, error) {
			return r.startCollect(h, dir, receiveXDP, "--input", collectInput(p))
		},
		stop: stopCollect,
	}
}

// collectInput is the collector input (collector.inputs) that receives p.
func collectInput(p Protocol) string {
	switch p {
	case GENEVE:
		return fmt.Sprintf("geneve:%d", GENEVEPort)
	case ERSPAN2, ERSPAN3, GRE:
		return "gre"
	}
	return "vxlan"
}

// collectInputs says why xmirror collect cannot take other inputs than VXLAN
// ("" when it can).
func (r *runner) collectInputs() string {
	if why, ok := r.have["collect --input"]; ok {
		return why
	}
	why := ""
	if out, _ := exec.Command(r.o.Exe, "collect", "--help").CombinedOutput(); !strings.Contains(string(out), "--input") {
		why = "`xmirror collect` has no --input (GENEVE, GRE) in this build"
	}
	r.have["collect --input"] = why
	return why
}

// stopCollect reads what the collector wrote from its /metrics (the packets
// of every session's files) before it stops it: the drain has emptied its
// sockets, and its log is for people, not a contract between processes.
// SIGUSR1 first closes every file, which writes what the writers still
// hold and what waits in a file's buffer for the next flush.
func stopCollect(sp *startedProc, dir string) (rxStats, error) {
	m, scrapeErr := settledScrape(sp, dir)
	if err := sp.Stop(); err != nil {
		return rxStats{}, fmt.Errorf("xmirror collect: %w: %s", err, tail(sp.Output()))
	}
	if scrapeErr != nil {
		return rxStats{}, fmt.Errorf("%w: %s", scrapeErr, tail(sp.Output()))
	}
	written := telemetry.Sum(m, "xmirror_collector_packets_total")
	drops := map[string]float64{"socket_drops": telemetry.Sum(m, "xmirror_collector_socket_drops_total")}
	for _, s := range m {
		if s.Name == "xmirror_collector_drops_total" && s.Value > 0 {
			drops["drop_"+s.Label("reason")] += s.Value
		}
	}
	return rxStats{received: uint64(written), written: dirBytes(dir), drops: drops}, nil
}

// settledScrape rotates the collector's files (SIGUSR1), waits until no
// file is open (no hidden .part left: the rotation wrote and closed them
// all) and scrapes its /metrics.
func settledScrape(sp *startedProc, dir string) ([]telemetry.Sample, error) {
	if err := sp.Signal(syscall.SIGUSR1); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); openParts(dir) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return sp.part.Scrape(context.Background())
}

// openParts reports whether dir holds a capture file still being written.
func openParts(dir string) bool {
	open := false
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(d.Name(), ".part") {
			open = true
			return filepath.SkipAll
		}
		return nil
	})
	return open
}

func tcpdumpReceiver() receiver {
	return receiver{
		name: "tcpdump -w", kind: KindAlternative, skip: needBinary("tcpdump"),
		// libpcap hands packets over in TPACKET_V3 blocks, retired when full or after
		// its 1 s timeout; packets still in a block when tcpdump stops are not
		// counted as captured.
		drain: 1500 * time.Millisecond,
		start: func(h *netlab.Host, dir string) (*startedProc, error) {
			// -Z root: tcpdump would otherwise drop to a user that cannot write dir.
			// -B 32768 KiB: the same buffer as the sink's socket.
			p, err := startOffGen(h, "tcpdump", "-i", "eth0", "-n", "-Z", "root", "-B", "32768", "-w", filepath.Join(dir, "cap.pcap"),
				"udp", "dst", "port", strconv.Itoa(VXLANPort))
			if err != nil {
				return nil, err
			}
			dump, err := netlab.AwaitTcpdump(context.Background(), p)
			if err != nil {
				return nil, err
			}
			return &startedProc{Proc: p, dump: dump}, nil
		},
		stop: func(sp *startedProc, dir string) (rxStats, error) {
			counts, err := sp.dump.Stop()
			if err != nil {
				return rxStats{}, fmt.Errorf("%w: %s", err, tail(sp.Output()))
			}
			return rxStats{received: uint64(counts.Captured), written: dirBytes(dir)}, nil
		},
	}
}

// SinkReport is what `xmirror bench sink` prints when it stops.
type SinkReport struct {
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func lastJSON(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return json.Unmarshal([]byte(lines[i]), v)
		}
	}
	return fmt.Errorf("no JSON line in %q", tail(out))
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

func dirBytes(dir string) uint64 {
	var n uint64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += uint64(fi.Size())
			}
		}
		return nil
	})
	return n
}

// writeConfig writes cfg in the YAML contract to path, for a part to read.
func writeConfig(cfg *config.Config, path string) (string, error) {
	y, err := cfg.Marshal()
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, y, 0o644)
}

// setupXmirrorLB writes an lb config in the YAML contract and runs `xmirror lb`
// on the lab's "lb" host; it is ready when /healthz answers 200.
func (r *runner) setupXmirrorLB(t *lbTopo, dir, algorithm string) (int, func(), error) {
	lb := t.lb
	cfg := &config.Config{
		LoadBalancer: &config.LoadBalancer{
			Listener: config.Listener{Name: "bench", VIP: t.vip, Port: VXLANPort,
				Interfaces: []string{t.lbIf.name}, AccessControl: config.AccessControl{Mode: "all"}},
			Algorithm: algorithm,
			Affinity:  "inner-symmetric",
			Backends: []config.Backend{
				{Name: "b1", Address: t.backends[0], Port: VXLANPort, Weight: lbWeights[0]},
				{Name: "b2", Address: t.backends[1], Port: VXLANPort, Weight: lbWeights[1]},
			},
		},
		Metrics: config.Metrics{Listen: metricsAddr},
	}
	config.ApplyDefaults(cfg)
	cfg.LoadBalancer.HealthCheck.Enabled = false
	f, err := writeConfig(cfg, filepath.Join(dir, "lb.yaml"))
	if err != nil {
		return 0, nil, err
	}
	pin := fmt.Sprintf("/sys/fs/bpf/xmbench-%d-%d", os.Getpid(), r.seq)
	p, err := r.startPart(lb, false, "lb", "--config", f, "--pin-path", pin)
	if err != nil {
		os.RemoveAll(pin)
		return 0, nil, err
	}
	return p.Cmd.Process.Pid, func() {
		p.Stop()
		os.RemoveAll(pin)
	}, nil
}

// undo holds what a setup did, to be undone in reverse order.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }

// run undoes everything pushed, last first, and forgets it.
func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}
