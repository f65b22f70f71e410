// SPDX-License-Identifier: Apache-2.0

package source

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab"
)

// The iperf3 scenarios of the source's benchmarks (iperf_bench_test.go):
// the TCP throughput between two namespaces with and without a mirror.

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
	// Sink is where the mirrored VXLAN is dropped (nftables netdev
	// ingress): SinkWire (default) as it leaves the source, at the source's
	// bridge port, so the source pays what it pays for a remote target (its
	// own stack, the transmit and one receive at the peer, as a NIC's
	// transmit would cost); SinkTarget at the target's eth0, which also
	// charges the lab's bridge and the target's receive path to the two
	// cores iperf3 runs on.
	Sink string
	// Whole mirrors whole frames instead of the seed's 96 bytes.
	Whole bool
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

// iperf is the iperf3 pair of the lab: the server on the source's address,
// pinned as o.CPUs says.
func (o IperfOptions) iperf(src, test *netlab.Host) (netlab.Iperf, error) {
	ip := netlab.Iperf{Server: src, Client: test, Addr: sourceIP}
	if o.CPUs == "" {
		return ip, nil
	}
	c, s, two := strings.Cut(o.CPUs, ",")
	if !two {
		s = c
	}
	for _, v := range []string{c, s} {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			return ip, fmt.Errorf("iperf3 CPUs %q: want N or N,M (CPU numbers)", o.CPUs)
		}
	}
	ip.ClientCPU, ip.ServerCPU = c, s
	return ip, nil
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
	Direct        uint64 // of Mirrored, the copies the ring datapath sent directly (bpf/direct.h)
}

// iperfYAML mirrors every TCP packet both ways, as the seed session would.
const iperfYAML = `
filters:
  - name: all-tcp
    inbound: [{priority: 1, action: accept, protocol: tcp}]
    outbound: [{priority: 1, action: accept, protocol: tcp}]
sessions:
  - {name: perf, priority: 1, vni: 1, packet_length: 96, filter: all-tcp, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`

// noMatchYAML is iperfYAML with rules no packet of the TCP stream matches.
var noMatchYAML = strings.ReplaceAll(iperfYAML, "protocol: tcp", "protocol: udp")

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
	ip, err := opts.iperf(src, test)
	if err != nil {
		return res, err
	}
	rep, err := ip.Run(ctx, reverse, "-t", strconv.Itoa(int(d.Seconds())))
	if err != nil {
		return res, err
	}
	res.BitsPerSecond = rep.BitsPerSecond
	res.Retransmits = rep.Retransmits
	if s != nil {
		res.Mirrored, res.Errors, res.Direct = mirrorTotals(s)
		if r, ok := s.dp.(*ringPath); ok {
			res.Sends = r.sends()
			res.SendErrors = r.errs.total()
		}
	}
	return res, nil
}

// mirrorTotals sums the packets s mirrored and failed to mirror over its
// sessions and directions (0 when its counters cannot be read).
func mirrorTotals(s *Source) (packets, errors, direct uint64) {
	stats, err := s.Stats()
	if err != nil {
		return 0, 0, 0
	}
	for _, st := range stats {
		packets += st.Packets
		errors += st.Errors
		direct += st.Direct
	}
	return packets, errors, direct
}

// iperfLab is the lab of the iperf3 scenarios: source, test and target on
// one bridge, with the mirrored VXLAN dropped at the sink (IperfOptions.Sink).
type iperfLab struct {
	*netlab.Lab
	src, test, target *netlab.Host
	copies            *vxlanCounter // the mirrored copies that reached the sink
}

func (l *iperfLab) Close() error {
	if l.copies != nil {
		l.copies.Close()
	}
	return l.Lab.Close()
}

func newIperfLab(opts IperfOptions) (_ *iperfLab, err error) {
	lab, err := netlab.New("srciperf")
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
	sinkHost, sinkDev, sinkDo := target.Run, "eth0", target.Do
	switch opts.Sink {
	case "", SinkWire:
		sinkDev, sinkDo = src.Port, lab.SwitchDo
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
		{"nft", "add", "table", "netdev", "xmiperf"},
		{"nft", "add", "chain", "netdev", "xmiperf", "in", "{ type filter hook ingress device " + sinkDev + " priority 0 ; }"},
		{"nft", "add", "rule", "netdev", "xmiperf", "in", "udp", "dport", "4789", "drop"},
	} {
		if _, err := sinkHost(cmd[0], cmd[1:]...); err != nil {
			return nil, fmt.Errorf("vxlan sink: %w", err)
		}
	}

	l := &iperfLab{Lab: lab, src: src, test: test, target: target}
	if err := sinkDo(func() (err error) {
		l.copies, err = newVXLANCounter(sinkDev)
		return err
	}); err != nil {
		return nil, err
	}
	return l, nil
}

// startMode sets up what mode runs on the source interface; stop undoes it.
// s is the xmirror source of the xmirror modes, else nil.
func startMode(src *netlab.Host, mode string, opts IperfOptions) (s *Source, stop func(), err error) {
	stop = func() {}
	switch mode {
	case ModePlain:
	case ModeXmirror, ModePerf, ModeRing, ModeRingNormal, ModeNoMatch:
		yaml := iperfYAML
		if mode == ModeNoMatch {
			yaml = noMatchYAML
		}
		if opts.Whole {
			yaml = strings.Replace(yaml, "packet_length: 96", "packet_length: 0", 1)
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
			s, err = New(cfg, Options{Datapath: dp, SendPriority: prio, MaxDelay: opts.MaxDelay})
			return err
		}); err != nil {
			return nil, stop, err
		}
		stop = func() { src.Do(s.Close) }
	case ModeMirred:
		m := netlab.Mirred{Iface: "eth0", Device: "xmtc0", Remote: targetIP, Local: sourceIP, MTU: 65000, TCPOnly: true}
		undo, err := m.Setup(src)
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

// AlternatingOptions configure IperfAlternating.
type AlternatingOptions struct {
	IperfOptions // Offload, Modes (plain is implied), Sink, MaxDelay, CPUs; Duration is unused
	// Pairs is the number of segments with the mode per iperf3 run, each
	// between two plain ones (default 10).
	Pairs int
	// Segment is the measured time of a segment (default 1s); Settle is
	// how long after switching the mode on or off the measurement starts
	// (default 300ms), so that loading the programs is not counted.
	Segment, Settle time.Duration
}

// AlternatingResult is one iperf3 run of IperfAlternating: the throughput of
// each plain segment and of each segment with the mode, in bits per second,
// in the order they ran (plain, mode, plain, …, mode, plain).
type AlternatingResult struct {
	Mode      string
	Direction string // "inbound" (test sends to source) or "outbound" (source sends)
	Plain     []float64
	With      []float64
	Mirrored  uint64 // packets the xmirror source mirrored over all its segments
	Errors    uint64 // packets it failed to mirror
	// SendErrors and Direct: of those, the ring datapath's failed sends
	// and the copies it sent directly from the kernel.
	SendErrors, Direct uint64
	// Stream and Copies count, over the measured windows of the segments
	// with the mode, the packets of the stream (sent and received by the
	// test host's eth0) and the mirrored copies that reached the sink.
	Stream, Copies uint64
}

// Delivered is the copies that reached the sink per packet of the stream,
// in percent (0 without packets). With offloads off one packet is one copy
// for every mode, so 100 is lossless mirroring; a copy in flight at either
// end of a window (the ring datapath holds them up to MaxDelay) counts in
// the next, so it may read a little above or below. With offloads on the
// interfaces count GSO aggregates: xmirror sends one cut copy per
// aggregate (what tcpdump sees), tc mirred copies the aggregate whole and
// the kernel sends it as many packets, so only xmirror's figure reads as
// a share there.
func (r AlternatingResult) Delivered() float64 {
	if r.Stream == 0 {
		return 0
	}
	return 100 * float64(r.Copies) / float64(r.Stream)
}

// Costs is, for each segment with the mode, its throughput cost in percent
// against the mean of the plain segments before and after it.
func (r AlternatingResult) Costs() []float64 {
	var costs []float64
	for i, w := range r.With {
		if i+1 >= len(r.Plain) {
			break
		}
		if base := (r.Plain[i] + r.Plain[i+1]) / 2; base > 0 {
			costs = append(costs, 100*(1-w/base))
		}
	}
	return costs
}

// IperfAlternating measures what a mode costs a running TCP stream: one
// iperf3 connection per mode and direction, during which the mode is
// switched on and off every segment (plain first and last). The throughput
// of a segment is what the receiving interface counted over it, so each
// segment with the mode is compared with the plain ones just before and
// after it on the same connection, seconds apart. IperfScenario compares
// separate iperf3 runs, tens of seconds apart, and on a shared machine the
// speed moves between them; here that drift mostly cancels, and so does
// what differs between connections (the start of TCP, the CPUs the
// processes land on). Needs root and iperf3.
func IperfAlternating(ctx context.Context, opts AlternatingOptions) (results []AlternatingResult, err error) {
	if opts.Pairs <= 0 {
		opts.Pairs = 10
	}
	if opts.Segment <= 0 {
		opts.Segment = time.Second
	}
	if opts.Settle <= 0 {
		opts.Settle = 300 * time.Millisecond
	}
	modes := opts.Modes
	if len(modes) == 0 {
		modes = []string{ModeRing, ModeMirred}
	}
	lab, err := newIperfLab(opts.IperfOptions)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	for _, mode := range modes {
		if mode == ModePlain {
			continue
		}
		for _, reverse := range []bool{false, true} {
			if err := ctx.Err(); err != nil {
				return results, err
			}
			r, err := alternate(ctx, lab, mode, reverse, opts)
			if err != nil {
				return results, fmt.Errorf("%s: %w", mode, err)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// alternate runs one iperf3 connection and switches mode on and off under it.
func alternate(ctx context.Context, lab *iperfLab, mode string, reverse bool, opts AlternatingOptions) (res AlternatingResult, err error) {
	res = AlternatingResult{Mode: mode, Direction: "inbound"}
	// The receiving end's interface counts the stream.
	receiver := lab.src
	if reverse {
		res.Direction = "outbound"
		receiver = lab.test
	}
	// Past the start of the connection: about two seconds in, its
	// throughput drops for a tenth of a second (seen in 100-ms samples).
	const warmup = 3 * time.Second
	segments := 2*opts.Pairs + 1
	// The schedule takes a little longer than its sleeps (switching the
	// mode, reading counters): iperf3 runs on and is stopped at the end.
	total := warmup + time.Duration(segments)*(opts.Segment+opts.Settle)
	seconds := int(total.Seconds()*3) + 10

	ip, err := opts.iperf(lab.src, lab.test)
	if err != nil {
		return res, err
	}
	server, err := ip.Serve()
	if err != nil {
		return res, err
	}
	defer server.Stop()
	client, err := lab.test.Start("iperf3", ip.ClientArgs(reverse, "-t", strconv.Itoa(seconds), "--forceflush")...)
	if err != nil {
		return res, err
	}
	defer client.Stop()
	if err := sleepCtx(ctx, client, warmup); err != nil {
		return res, err
	}

	for seg := 0; seg < segments; seg++ {
		on := seg%2 == 1
		stop := func() {}
		var s *Source
		if on {
			if s, stop, err = startMode(lab.src, mode, opts.IperfOptions); err != nil {
				stop()
				return res, err
			}
		}
		bps, n, err := segmentRate(ctx, client, lab, receiver, opts.Settle, opts.Segment)
		if on {
			res.Stream += n.stream
			res.Copies += n.copies
		}
		if s != nil {
			packets, errs, direct := mirrorTotals(s)
			res.Mirrored += packets
			res.Errors += errs
			res.Direct += direct
			if r, ok := s.dp.(*ringPath); ok {
				res.SendErrors += r.errs.total()
			}
		}
		stop()
		if err != nil {
			return res, err
		}
		if on {
			res.With = append(res.With, bps)
		} else {
			res.Plain = append(res.Plain, bps)
		}
	}
	return res, nil
}

// segmentSlices is how many slices segmentRate measures a segment in.
const segmentSlices = 5

// windowCount is what a measured window of a segment saw: packets of the
// stream and mirrored copies at the sink.
type windowCount struct{ stream, copies uint64 }

// segmentRate waits settle, then measures the rate in bits per second at
// which the receiver's eth0 received over d, in segmentSlices slices, and
// returns their median, and what the window saw. The host this was built
// on loses about 0.2 s every 10 to 12 s (a fifth of a second's throughput,
// in plain segments as much as with a mode; nothing in the guest runs
// then): the median of the slices leaves such a stall out, while a mode's
// own cost, paid on every packet, shows in every slice.
func segmentRate(ctx context.Context, client *netlab.Proc, lab *iperfLab, receiver *netlab.Host, settle, d time.Duration) (float64, windowCount, error) {
	var n windowCount
	if err := sleepCtx(ctx, client, settle); err != nil {
		return 0, n, err
	}
	s0, c0, err := lab.counts()
	if err != nil {
		return 0, n, err
	}
	b0, t0, err := rxBytes(receiver)
	if err != nil {
		return 0, n, err
	}
	rates := make([]float64, 0, segmentSlices)
	for range segmentSlices {
		if err := sleepCtx(ctx, client, d/segmentSlices); err != nil {
			return 0, n, err
		}
		b1, t1, err := rxBytes(receiver)
		if err != nil {
			return 0, n, err
		}
		rates = append(rates, float64(b1-b0)*8/t1.Sub(t0).Seconds())
		b0, t0 = b1, t1
	}
	s1, c1, err := lab.counts()
	if err != nil {
		return 0, n, err
	}
	slices.Sort(rates)
	return rates[segmentSlices/2], windowCount{stream: s1 - s0, copies: c1 - c0}, nil
}

// counts reads the packets the test host's eth0 sent and received (the
// iperf3 stream: every one of them is mirrored) and the copies counted at
// the sink.
func (l *iperfLab) counts() (stream, copies uint64, err error) {
	err = l.test.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		st := link.Attrs().Statistics
		if st == nil {
			return errors.New("eth0: no statistics")
		}
		stream = st.RxPackets + st.TxPackets
		return nil
	})
	return stream, l.copies.count(), err
}

// rxBytes reads the bytes eth0 of h received so far, and when.
func rxBytes(h *netlab.Host) (n uint64, at time.Time, err error) {
	err = h.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if link.Attrs().Statistics == nil {
			return errors.New("eth0: no statistics")
		}
		n, at = link.Attrs().Statistics.RxBytes, time.Now()
		return nil
	})
	return n, at, err
}

// sleepCtx sleeps d unless ctx ends or the iperf3 client exits first.
func sleepCtx(ctx context.Context, client *netlab.Proc, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-client.Done():
		return fmt.Errorf("iperf3 client ended early (%v): %s", client.Wait(), client.Output())
	}
}
