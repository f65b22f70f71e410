package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
)

// Iperf modes: what runs on the source interface while iperf3 measures.
const (
	ModePlain   = "plain"        // nothing: the baseline
	ModeXmirror = "xmirror"      // xmirror source mirroring every TCP packet, cut to 96 bytes (datapath kernel)
	ModePerf    = "xmirror-perf" // the same with datapath perf (user-space encapsulation)
	ModeRing    = "xmirror-ring" // the same with datapath ring (headers built in BPF, user space sends)
	// ModeRingNormal is datapath ring with the sender at normal priority
	// instead of SCHED_IDLE.
	ModeRingNormal = "xmirror-ring-normal"
	ModeMirred     = "mirred" // kernel-native: tc u32 + action mirred egress mirror to a VXLAN device (no cut)
	// ModeNoMatch is datapath ring with a filter that mirrors UDP only:
	// the programs classify every packet of the TCP stream and mirror
	// none, which is what xmirror costs traffic it does not copy.
	ModeNoMatch = "xmirror-nomatch"
)

// IperfOptions configure IperfScenario.
type IperfOptions struct {
	Duration time.Duration // per iperf3 run; default 3s
	Offload  bool          // keep checksum/segmentation offload on the veths (TSO: large GSO packets)
	Modes    []string      // default plain, xmirror, xmirror-ring, xmirror-perf, mirred
	// TunnelStop profiles the xmirror mode: clones dropped before (1) or
	// after (2) cutting, 0 = the real path.
	TunnelStop uint32
	// Sink is where the mirrored VXLAN is dropped (nftables netdev
	// ingress): SinkWire (default) as it leaves the source, at the source's
	// bridge port, so the source pays what it pays for a remote target (its
	// own stack, the transmit and one receive at the peer, as a NIC's
	// transmit would cost); SinkTarget at the target's eth0, which also
	// charges the lab's bridge and the target's receive path to the two
	// cores iperf3 runs on.
	Sink string
	// MaxDelay is Options.MaxDelay for the xmirror modes (0: the default).
	MaxDelay time.Duration
	// CPUs pins the iperf3 ends (iperf3 -A): "" leaves them to the
	// scheduler, "N" puts client and server on CPU N, "N,M" the client on
	// N and the server on M. Where the two ends land decides the
	// throughput of a veth stream on a small machine (on one CPU or on
	// two, and which CPU the softirqs take), and left to the scheduler it
	// changes every few minutes.
	CPUs string
}

// affinity gives the iperf3 -A arguments of the client and the server.
func (o IperfOptions) affinity() (client, server []string, err error) {
	if o.CPUs == "" {
		return nil, nil, nil
	}
	c, s, two := strings.Cut(o.CPUs, ",")
	if !two {
		s = c
	}
	for _, v := range []string{c, s} {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			return nil, nil, fmt.Errorf("iperf3 CPUs %q: want N or N,M (CPU numbers)", o.CPUs)
		}
	}
	return []string{"-A", c}, []string{"-A", s}, nil
}

// Where IperfScenario drops the mirrored traffic.
const (
	SinkTarget = "target"
	SinkWire   = "wire"
)

// IperfResult is one iperf3 run.
type IperfResult struct {
	Mode          string
	Direction     string // "inbound" (test sends to source) or "outbound" (source sends)
	BitsPerSecond float64
	Retransmits   int
	Mirrored      uint64 // packets the xmirror source mirrored (xmirror mode)
	Sends         uint64 // packets the ring datapath handed to the kernel (runs sent as one GSO packet count once)
	Errors        uint64 // packets the xmirror source failed to mirror (ring full, send errors)
	SendErrors    uint64 // of Errors, the packets the ring datapath's sends failed for
}

// perfYAML mirrors every TCP packet both ways, as the seed session would.
const perfYAML = `
filters:
  - name: all-tcp
    inbound: [{priority: 1, action: accept, protocol: tcp}]
    outbound: [{priority: 1, action: accept, protocol: tcp}]
sessions:
  - {name: perf, priority: 1, vni: 1, packet_length: 96, filter: all-tcp, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`

// noMatchYAML is perfYAML with rules no packet of the TCP stream matches.
var noMatchYAML = strings.ReplaceAll(perfYAML, "protocol: tcp", "protocol: udp")

// IperfScenario measures the TCP throughput between two namespaces (source
// 192.168.0.230, test 192.168.0.161) in both directions, plain, with xmirror
// mirroring every packet to a third (target 192.168.0.147), and with the
// kernel's tc mirred to a VXLAN device, all in the same run so the ratios
// compare. When the modes start with ModePlain, plain runs again at the end:
// the baseline is measured before and after the other modes, so a drift of
// the machine's speed during the run does not read as their cost (see
// PlainBaseline). Needs root, iperf3 and tc.
func IperfScenario(ctx context.Context, opts IperfOptions) (results []IperfResult, err error) {
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	if len(opts.Modes) == 0 {
		opts.Modes = []string{ModePlain, ModeXmirror, ModeRing, ModeRingNormal, ModePerf, ModeMirred}
	}
	modes := opts.Modes
	if len(modes) > 1 && modes[0] == ModePlain {
		modes = append(slices.Clone(modes), ModePlain)
	}
	lab, err := newIperfLab(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	src, test := lab.src, lab.test

	for _, mode := range modes {
		for _, reverse := range []bool{false, true} {
			if err := ctx.Err(); err != nil {
				return results, err
			}
			r, err := iperfRun(ctx, src, test, mode, reverse, opts)
			if err != nil {
				return results, fmt.Errorf("%s: %w", mode, err)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

func iperfRun(ctx context.Context, src, test *netlab.Host, mode string, reverse bool, opts IperfOptions) (res IperfResult, err error) {
	d := opts.Duration
	res = IperfResult{Mode: mode, Direction: "inbound"}
	if reverse {
		res.Direction = "outbound"
	}
	s, stop, err := startMode(src, mode, opts)
	if err != nil {
		return res, err
	}
	defer stop()
	server, args, err := iperfEnds(src, opts, reverse, "-t", strconv.Itoa(int(d.Seconds())), "-J")
	if err != nil {
		return res, err
	}
	defer server.Stop()
	out, err := test.Command(ctx, "iperf3", args...).Output()
	if err != nil {
		return res, fmt.Errorf("iperf3 client: %w: %s", err, out)
	}
	var rep struct {
		End struct {
			SumSent     struct{ Retransmits int } `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return res, fmt.Errorf("iperf3 output: %w", err)
	}
	if rep.Error != "" {
		return res, errors.New("iperf3: " + rep.Error)
	}
	res.BitsPerSecond = rep.End.SumReceived.BitsPerSecond
	res.Retransmits = rep.End.SumSent.Retransmits
	if s != nil {
		res.Mirrored, res.Errors = mirrorTotals(s)
		if s.ring != nil {
			res.Sends = s.ring.sends()
			res.SendErrors = s.ring.sendErrors()
		}
	}
	return res, nil
}

// iperfEnds starts a one-off iperf3 server on the source's address (on its
// CPU when opts.CPUs pins it) and gives it time to listen. It returns the
// server and the client's arguments: -c the server, args, the client's CPU,
// and -R for the outbound direction (the source sends).
func iperfEnds(src *netlab.Host, opts IperfOptions, reverse bool, args ...string) (*netlab.Proc, []string, error) {
	clientCPU, serverCPU, err := opts.affinity()
	if err != nil {
		return nil, nil, err
	}
	server, err := src.Start("iperf3", append([]string{"-s", "-1", "-B", "192.168.0.230"}, serverCPU...)...)
	if err != nil {
		return nil, nil, err
	}
	time.Sleep(300 * time.Millisecond)
	client := append(append([]string{"-c", "192.168.0.230"}, args...), clientCPU...)
	if reverse {
		client = append(client, "-R")
	}
	return server, client, nil
}

// mirrorTotals sums the packets s mirrored and failed to mirror over its
// sessions and directions (0 when its counters cannot be read).
func mirrorTotals(s *Source) (packets, errors uint64) {
	stats, err := s.Stats()
	if err != nil {
		return 0, 0
	}
	for _, st := range stats {
		packets += st.Packets
		errors += st.Errors
	}
	return packets, errors
}

// iperfLab is the lab of the iperf3 scenarios: source, test and target on
// one bridge, with the mirrored VXLAN dropped at the sink (IperfOptions.Sink).
type iperfLab struct {
	*netlab.Lab
	src, test, target *netlab.Host
}

func newIperfLab(opts IperfOptions) (_ *iperfLab, err error) {
	lab, err := netlab.New("srcperf")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lab.Close()
		}
	}()
	hosts := map[string]*netlab.Host{}
	for name, addr := range map[string]string{"source": "192.168.0.230/24", "test": "192.168.0.161/24", "target": "192.168.0.147/24"} {
		h, err := lab.AddHost(netlab.HostSpec{Name: name, Addrs: []string{addr}, Offload: opts.Offload})
		if err != nil {
			return nil, err
		}
		hosts[name] = h
	}
	src, test, target := hosts["source"], hosts["test"], hosts["target"]
	// The mirrored VXLAN is dropped at an ingress hook, by default where it
	// leaves the source: in a real deployment the target is another
	// machine, here everything shares the two cores with iperf3, so what
	// the source would not pay should cost as little as possible (and the
	// target must not answer with ICMP port unreachable).
	sinkHost, sinkDev := target.Run, "eth0"
	switch opts.Sink {
	case "", SinkWire:
		sinkDev = src.Port
		sinkHost = func(name string, args ...string) (out string, err error) {
			err = lab.SwitchDo(func() error {
				b, err := exec.Command(name, args...).CombinedOutput()
				out = string(b)
				if err != nil {
					return fmt.Errorf("%s: %w: %s", name, err, b)
				}
				return nil
			})
			return out, err
		}
	case SinkTarget:
	default:
		return nil, fmt.Errorf("unknown sink %q (want %s or %s)", opts.Sink, SinkWire, SinkTarget)
	}
	for _, cmd := range [][]string{
		{"nft", "add", "table", "netdev", "xmperf"},
		{"nft", "add", "chain", "netdev", "xmperf", "in", "{ type filter hook ingress device " + sinkDev + " priority 0 ; }"},
		{"nft", "add", "rule", "netdev", "xmperf", "in", "udp", "dport", "4789", "drop"},
	} {
		if _, err := sinkHost(cmd[0], cmd[1:]...); err != nil {
			return nil, fmt.Errorf("vxlan sink: %w", err)
		}
	}

	return &iperfLab{Lab: lab, src: src, test: test, target: target}, nil
}

// startMode sets up what mode runs on the source interface; stop undoes it.
// s is the xmirror source of the xmirror modes, else nil.
func startMode(src *netlab.Host, mode string, opts IperfOptions) (s *Source, stop func(), err error) {
	stop = func() {}
	switch mode {
	case ModePlain:
	case ModeXmirror, ModePerf, ModeRing, ModeRingNormal, ModeNoMatch:
		yaml := perfYAML
		if mode == ModeNoMatch {
			yaml = noMatchYAML
		}
		cfg, err := config.Parse([]byte(yaml))
		if err != nil {
			return nil, stop, err
		}
		dp := DatapathKernel
		switch mode {
		case ModePerf:
			dp = DatapathPerf
		case ModeRing, ModeRingNormal, ModeNoMatch:
			dp = DatapathRing
		}
		prio := PriorityIdle
		if mode == ModeRingNormal {
			prio = PriorityNormal
		}
		if err := src.Do(func() (err error) {
			s, err = New(cfg, Options{TunnelStop: opts.TunnelStop, Datapath: dp, SendPriority: prio, MaxDelay: opts.MaxDelay})
			return err
		}); err != nil {
			return nil, stop, err
		}
		stop = func() { src.Do(s.Close) }
	case ModeMirred:
		undo, err := setupMirred(src)
		if err != nil {
			undo()
			return nil, stop, err
		}
		stop = undo
	default:
		return nil, stop, fmt.Errorf("unknown mode %q", mode)
	}
	return s, stop, nil
}

// PlainBaseline is the plain throughput of each direction in results: the
// mean of the plain runs (IperfScenario runs plain before and after the
// other modes).
func PlainBaseline(results []IperfResult) map[string]float64 {
	sum, n := map[string]float64{}, map[string]int{}
	for _, r := range results {
		if r.Mode == ModePlain {
			sum[r.Direction] += r.BitsPerSecond
			n[r.Direction]++
		}
	}
	for dir := range sum {
		sum[dir] /= float64(n[dir])
	}
	return sum
}

// setupMirred is the kernel-native alternative: a VXLAN device to the target
// and tc mirred copying every TCP packet in both directions to it.
func setupMirred(src *netlab.Host) (undo func(), err error) {
	undo = func() {
		src.Run("tc", "qdisc", "del", "dev", "eth0", "clsact")
		src.Run("ip", "link", "del", "xmtc0")
	}
	for _, cmd := range [][]string{
		{"ip", "link", "add", "xmtc0", "mtu", "65000", "type", "vxlan", "id", "1", "remote", "192.168.0.147", "local", "192.168.0.230", "dstport", "4789", "nolearning"},
		{"ip", "link", "set", "xmtc0", "up"},
		{"tc", "qdisc", "add", "dev", "eth0", "clsact"},
		{"tc", "filter", "add", "dev", "eth0", "ingress", "protocol", "ip", "u32", "match", "ip", "protocol", "6", "0xff", "action", "mirred", "egress", "mirror", "dev", "xmtc0"},
		{"tc", "filter", "add", "dev", "eth0", "egress", "protocol", "ip", "u32", "match", "ip", "protocol", "6", "0xff", "action", "mirred", "egress", "mirror", "dev", "xmtc0"},
	} {
		if _, err := src.Run(cmd[0], cmd[1:]...); err != nil {
			return undo, err
		}
	}
	return undo, nil
}
