// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// GenConfig is one generator run.
type GenConfig struct {
	FrameSpec
	Ifindex  int           // interface the frames leave by (in the caller's netns)
	Flows    int           // distinct inner 5-tuples and outer source ports; 0 means 1
	IDs      int           // distinct session ids (VNIs, ERSPAN session ids, GRE keys) from ID on; 0 means 1
	Rate     float64       // packets per second; 0 sends as fast as one core can
	Count    uint64        // packets to send; 0 = no limit
	Duration time.Duration // how long to send; 0 = no limit
	// CPU pins the generating thread to one CPU for the run when >= 0, so that
	// repeated runs share the work out the same way.
	CPU int
	// Progress, when set, is called between kernel calls with the packets sent so far.
	Progress func(sent uint64)
}

// GenResult is what a generator run did.
type GenResult struct {
	Sent    uint64        // frames transmitted (XDP_TX verdicts)
	Runs    uint64        // program runs, sending or not
	Elapsed time.Duration // first run to last frame sent
	PPS     float64       // Sent / Elapsed
	Calls   int           // BPF_PROG_TEST_RUN calls
	CPU     time.Duration // CPU time of the generating thread
}

// xdpMd mirrors the kernel's struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// callTarget is how long one kernel call should last: long enough that the call's
// setup (page pool, about 25 ms) is a small share, short enough to notice ctx.
const callTarget = time.Second

// ErrNoLimit is returned when a run has neither count, duration nor a cancelable
// context, so it would never end.
var ErrNoLimit = errors.New("generator needs a count, a duration or a context that ends")

// Generate transmits tunnel frames (cfg.Protocol) out of cfg.Ifindex until cfg.Count frames are
// sent, cfg.Duration passed or ctx is done. The interface is looked up in the
// network namespace of the calling thread, so call it from inside the namespace
// (netlab's Host.Do, or a process started in it).
func Generate(ctx context.Context, cfg GenConfig) (GenResult, error) {
	if cfg.Count == 0 && cfg.Duration == 0 && ctx.Done() == nil {
		return GenResult{}, ErrNoLimit
	}
	if cfg.Ifindex <= 0 {
		return GenResult{}, errors.New("generator needs an interface")
	}
	frame, ipBase, tcpBase, err := buildFrame(cfg.FrameSpec)
	if err != nil {
		return GenResult{}, fmt.Errorf("build frame: %w", err)
	}
	var objs genObjects
	if err := loadGenObjects(&objs, nil); err != nil {
		return GenResult{}, fmt.Errorf("load generator: %w", err)
	}
	defer objs.Close()
	if err := objs.GenCfg.Put(uint32(0), genProgramConfig(cfg, frame, ipBase, tcpBase)); err != nil {
		return GenResult{}, fmt.Errorf("write generator config: %w", err)
	}

	// The thread's CPU time is the generator's cost; keep the goroutine on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cfg.CPU >= 0 {
		restore, err := pinThread(cfg.CPU)
		if err != nil {
			return GenResult{}, err
		}
		defer restore()
	}
	cpu0 := threadCPU()
	st, calls, err := runGenerator(ctx, &objs, cfg, frame)
	if err != nil {
		return GenResult{}, err
	}
	res := GenResult{Sent: st.Sent, Runs: st.Runs, Calls: calls, CPU: threadCPU() - cpu0}
	if st.LastNs > st.StartNs {
		res.Elapsed = time.Duration(st.LastNs - st.StartNs)
		res.PPS = float64(st.Sent) / res.Elapsed.Seconds()
	}
	return res, nil
}

// genProgramConfig is what the generator program reads from its config map:
// the headers of flow 0 and where the fields it varies per flow are.
func genProgramConfig(cfg GenConfig, frame []byte, ipBase, tcpBase uint32) *genGenConfig {
	l := cfg.layout()
	gc := &genGenConfig{
		Count:       cfg.Count,
		DurationNs:  uint64(cfg.Duration),
		Flows:       uint32(max(cfg.Flows, 1)),
		Ids:         uint32(max(cfg.IDs, 1)),
		IdBase:      cfg.ID,
		IpCsumBase:  ipBase,
		TcpCsumBase: tcpBase,
		HdrLen:      uint16(l.outer + innerHdr),
		OffInner:    uint16(l.outer),
		OffId:       uint16(l.id),
		OffSport:    uint16(l.sport),
		OffSeq:      uint16(l.seq),
		OffTs:       uint16(l.ts),
		IdKind:      l.idKind,
	}
	copy(gc.Hdr[:], frame[:gc.HdrLen])
	a := innerSrc.As4()
	gc.InnerSaddr = uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if cfg.Rate > 0 {
		gc.IntervalNs = uint64(float64(time.Second) / cfg.Rate)
	}
	return gc
}

// pinThread pins the calling (locked) thread to cpu; restore undoes it.
func pinThread(cpu int) (restore func(), err error) {
	var orig, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("read cpu affinity: %w", err)
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, fmt.Errorf("pin generator to cpu %d: %w", cpu, err)
	}
	return func() { unix.SchedSetaffinity(0, &orig) }, nil
}

// runGenerator calls the program with live frames until it reports done or
// ctx ends, each call sized to last about callTarget.
func runGenerator(ctx context.Context, objs *genObjects, cfg GenConfig, frame []byte) (st genGenState, calls int, err error) {
	md := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(cfg.Ifindex)}
	repeat := uint32(1 << 22)
	for ctx.Err() == nil {
		t0 := time.Now()
		before := st.Runs
		_, err := objs.XdpGen.Run(&ebpf.RunOptions{
			Data:    frame,
			Repeat:  repeat,
			Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: &md,
		})
		calls++
		if err != nil {
			return st, calls, fmt.Errorf("run generator: %w", err)
		}
		if err := objs.GenProgress.Lookup(uint32(0), &st); err != nil {
			return st, calls, fmt.Errorf("read generator state: %w", err)
		}
		if cfg.Progress != nil {
			cfg.Progress(st.Sent)
		}
		if st.Done != 0 {
			break
		}
		if el := time.Since(t0); el > 0 && st.Runs > before {
			repeat = nextRepeat(cfg, st, float64(st.Runs-before)/el.Seconds())
		}
	}
	return st, calls, nil
}

// nextRepeat sizes the next call to last about callTarget at the rate runs go
// now (perSec), and not much beyond the count or the duration left.
func nextRepeat(cfg GenConfig, st genGenState, perSec float64) uint32 {
	repeat := uint32(min(max(perSec*callTarget.Seconds(), 1<<16), 1<<31))
	if cfg.Count > 0 && st.Sent < cfg.Count {
		left := float64(cfg.Count - st.Sent)
		if cfg.Rate > 0 {
			left = perSec * (left/cfg.Rate + 0.01)
		}
		repeat = uint32(min(float64(repeat), max(left+64, 1<<12)))
	}
	if cfg.Duration > 0 {
		left := cfg.Duration - time.Duration(monotonicNs()-st.StartNs)
		if left > 0 {
			// A little beyond the deadline, so the program reaches it and stops.
			repeat = uint32(min(float64(repeat), max(perSec*(left.Seconds()+0.01), 1<<12)))
		}
	}
	return repeat
}

// monotonicNs reads the clock bpf_ktime_get_ns uses.
func monotonicNs() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// threadCPU is the user+system CPU time of the calling thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
