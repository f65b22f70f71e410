// SPDX-License-Identifier: Apache-2.0

package source

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// monotonicNs is the clock bpf_ktime_get_ns reads.
func monotonicNs(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestRateLimitBucket runs the token bucket on golden states. Two of them
// are what a busy host produces: another CPU took the bucket's lock with a
// clock read after this CPU's (the bucket's last refill is later than this
// packet's time), and a session idle for hours at a high rate, where the
// refill overflowed 64 bits. Both used to hand out a full bucket, or none,
// instead of what the rate allows.
func TestRateLimitBucket(t *testing.T) {
	for _, c := range []struct {
		name     string
		rate     int
		tokens   uint64 // in nanopackets: 1e9 per packet
		lastNs   func(now uint64) uint64
		limited  bool   // the packet is over the rate
		maxAfter uint64 // at most these tokens left after it
	}{
		{"full bucket passes", 5, 5e9, func(now uint64) uint64 { return now }, false, 4e9},
		{"empty bucket limits", 5, 0, func(now uint64) uint64 { return now }, true, 1e9},
		// Another CPU read the clock 1 ms after this packet's program did and
		// refilled first: this packet finds the bucket empty and a refill time
		// ahead of its own. It must be limited, and the bucket stay empty.
		{"refill time ahead of the packet's", 5, 0, func(now uint64) uint64 { return now + 1e6 }, true, 1e9},
		// 2^20 packets a second idle for 2^44 ns (4.9 hours): the refill,
		// 2^64 nanopackets, wrapped to 0. The bucket must be full.
		{"idle for hours at a high rate", 1 << 20, 0, func(now uint64) uint64 { return now - 1<<44 }, false, (1<<20 - 1) * 1e9},
	} {
		t.Run(c.name, func(t *testing.T) {
			yaml := strings.Replace(ringSession(96), "target: 10.255.0.2}", "target: 10.255.0.2, rate_limit: "+strconv.Itoa(c.rate)+"}", 1)
			s := ringSource(t, mustParse(t, yaml))
			id := uint32(s.ids["s1"])
			now := monotonicNs(t)
			if err := s.objs.XmBuckets.Put(id, sourceBucket{Tokens: c.tokens, LastNs: c.lastNs(now)}); err != nil {
				t.Fatal(err)
			}
			frame := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 5678, 100)
			if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}}); err != nil {
				t.Fatalf("run: %v", err)
			}
			mirrored, _, limited := rateCounts(t, s)
			if (limited == 1) != c.limited || mirrored+limited != 1 {
				t.Errorf("mirrored %d, rate-limited %d; want limited %v", mirrored, limited, c.limited)
			}
			var b sourceBucket
			if err := s.objs.XmBuckets.Lookup(id, &b); err != nil {
				t.Fatal(err)
			}
			if b.Tokens > c.maxAfter {
				t.Errorf("bucket holds %d nanopackets after the packet, at most %d expected", b.Tokens, c.maxAfter)
			}
			if c.name == "idle for hours at a high rate" && b.Tokens < c.maxAfter-1e9 {
				t.Errorf("bucket holds %d nanopackets after the packet, want about %d (full less one)", b.Tokens, c.maxAfter)
			}
		})
	}
}

// TestRateLimitTwoCPUs runs one session's packets on two CPUs at once, as a
// busy host does: no more may pass the bucket than its burst and the rate
// over the time taken. (Before the bucket took a refill time ahead of a
// packet's as no refill, about 14 times as many passed.)
func TestRateLimitTwoCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs: the fault is two CPUs racing for one bucket")
	}
	const rate = 1000
	yaml := strings.Replace(ringSession(96), "target: 10.255.0.2}", "target: 10.255.0.2, rate_limit: "+strconv.Itoa(rate)+"}", 1)
	s := ringSource(t, mustParse(t, yaml))
	frame := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 5678, 100)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for cpu := 0; cpu < 2; cpu++ {
		wg.Add(1)
		go func(cpu int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			for i := 0; i < 5; i++ {
				opts := &ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}, Repeat: 200000}
				if _, err := s.objs.XmSourceIngress.Run(opts); err != nil {
					errs <- err
					return
				}
			}
		}(cpu)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mirrored, errors, limited := rateCounts(t, s)
	passed := mirrored + errors // the ring may fill: past the bucket either way
	allowed := rate + uint64(float64(rate)*elapsed.Seconds()) + 1
	t.Logf("%v: %d passed the bucket, %d rate-limited; the rate allows %d", elapsed, passed, limited, allowed)
	// At least every run: a run interrupted by a signal is run again.
	if passed > allowed || passed+limited < 2*5*200000 {
		t.Errorf("%d packets passed a bucket of %d a second in %v (at most %d), %d rate-limited", passed, rate, elapsed, allowed, limited)
	}
}

// rateCounts sums the source's counters over its sessions and directions:
// packets mirrored, packets that passed the rate limit but were not sent
// (errors), and packets the rate limit held back.
func rateCounts(t *testing.T, s *Source) (mirrored, errors, limited uint64) {
	t.Helper()
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stats {
		mirrored += st.Packets
		errors += st.Errors
		limited += st.RateLimited
	}
	return mirrored, errors, limited
}
