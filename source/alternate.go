package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
)

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
	seconds := int(total.Seconds()*1.5) + 5

	server, args, err := iperfEnds(lab.src, opts.IperfOptions, reverse, "-t", strconv.Itoa(seconds), "--forceflush")
	if err != nil {
		return res, err
	}
	defer server.Stop()
	client, err := lab.test.Start("iperf3", args...)
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
		bps, err := segmentRate(ctx, client, receiver, opts.Settle, opts.Segment)
		if s != nil {
			packets, errs := mirrorTotals(s)
			res.Mirrored += packets
			res.Errors += errs
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

// segmentRate waits settle, then measures the rate in bits per second at
// which the receiver's eth0 received over d, in segmentSlices slices, and
// returns their median. The host this was built on loses about 0.2 s
// every 10 to 12 s (a fifth of a second's throughput, in plain segments as
// much as with a mode; nothing in the guest runs then): the median of the
// slices leaves such a stall out, while a mode's own cost, paid on every
// packet, shows in every slice.
func segmentRate(ctx context.Context, client *netlab.Proc, receiver *netlab.Host, settle, d time.Duration) (float64, error) {
	if err := sleepCtx(ctx, client, settle); err != nil {
		return 0, err
	}
	b0, t0, err := rxBytes(receiver)
	if err != nil {
		return 0, err
	}
	rates := make([]float64, 0, segmentSlices)
	for range segmentSlices {
		if err := sleepCtx(ctx, client, d/segmentSlices); err != nil {
			return 0, err
		}
		b1, t1, err := rxBytes(receiver)
		if err != nil {
			return 0, err
		}
		rates = append(rates, float64(b1-b0)*8/t1.Sub(t0).Seconds())
		b0, t0 = b1, t1
	}
	slices.Sort(rates)
	return rates[segmentSlices/2], nil
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
