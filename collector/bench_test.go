// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	ladderRates = flag.String("ladder.rates", "50000,100000,200000,300000,400000,600000,800000,1200000,0",
		"packets per second of each ladder step (0 = as fast as the sender can)")
	ladderStep    = flag.Duration("ladder.step", time.Second, "duration of each ladder step")
	ladderSenders = flag.Int("ladder.senders", 1, "sending threads")
	ladderReaders = flag.Int("ladder.readers", 0, "receiver sockets of the collector and the bare loop (0 = one per CPU)")
)

func parseRates(tb testing.TB) []int {
	var rates []int
	for _, f := range strings.Split(*ladderRates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			tb.Fatalf("-ladder.rates: %v", err)
		}
		rates = append(rates, n)
	}
	return rates
}

// BenchmarkLadder sends 150-byte VXLAN frames over loopback at increasing
// rates to three receivers in turn: a bare recvmmsg loop that only counts
// (the ceiling), the collector writing pcapng, and tcpdump -w. It reports the
// highest rate each took without loss and the loss at the top rate:
//
//	go test -run '^$' -bench Ladder -benchtime 1x ./collector/
func BenchmarkLadder(b *testing.B) {
	rates := parseRates(b)
	run := func(b *testing.B, r Receiver) {
		defer r.Close()
		res, err := RunLadder(context.Background(), r, rates, *ladderStep, LoadSpec{Senders: *ladderSenders})
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s:", res.Name)
		for _, s := range res.Steps {
			b.Logf("  asked %8d pps  sent %9.0f pps  received %9d/%-9d  loss %6.2f%%  receiver CPU %6.0f ns/pkt",
				s.Rate, s.Achieved, s.Received, s.Sent, 100*s.Loss, s.RxCPU)
		}
		b.ReportMetric(res.MaxLossless, "lossless-pps")
		b.ReportMetric(res.TopRate, "top-pps")
		b.ReportMetric(100*res.TopLoss, "top-loss-%")
		b.ReportMetric(res.TopRxCPU, "rx-cpu-ns/pkt")
	}
	b.Run("bare-recvmmsg", func(b *testing.B) {
		r, err := newSinkReceiver("127.0.0.1:0", numReaders(), 32<<20)
		if err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
	b.Run("collector", func(b *testing.B) {
		c, err := New(Options{Listen: "127.0.0.1:0", OutputDir: b.TempDir(), RotateSize: 100 << 20, Keep: 2,
			Readers: *ladderReaders, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		run(b, newCollectorReceiver(c))
	})
	b.Run("tcpdump", func(b *testing.B) {
		r, err := newTcpdumpReceiver(0)
		if err != nil {
			b.Skip(err)
		}
		run(b, r)
	})
}

func numReaders() int {
	o := Options{Readers: *ladderReaders}
	o.applyDefaults()
	return o.Readers
}

// handleCollector is a collector of one reader, never run, whose handle the
// per-packet benchmarks call directly.
func handleCollector(b *testing.B) *Collector {
	c, err := New(Options{Listen: "127.0.0.1:0", Readers: 1, OutputDir: b.TempDir(), RotateSize: 64 << 20, Keep: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkHandle is the per-packet path without the socket: decapsulate,
// look up the session, append to the file buffer (flushed when full). It
// must not allocate.
func BenchmarkHandle(b *testing.B) {
	c := handleCollector(b)
	payload := loadPayload(1, 100)
	cache := seriesCache{}
	ts := time.Now().UnixNano()
	c.handle(cache, loopback, ts, payload)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.handle(cache, loopback, ts+int64(i), payload)
	}
	b.StopTimer()
	c.Rotate()
}

// BenchmarkHandoff is the per-packet path as the receive path and a writer
// run it: decapsulate, copy into the writer's batch (handed over every 64
// datagrams, a receive burst), and the writer appending to the file buffer
// on its own goroutine. Packets the writer is too slow for are counted as
// writer_behind and reported per op.
func BenchmarkHandoff(b *testing.B) {
	c := handleCollector(b)
	payload := loadPayload(1, 100)
	c.startWriters()
	k := c.newSink()
	ts := time.Now().UnixNano()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fr, _ := Decap(payload)
		k.add(loopback, ts+int64(i), fr)
		if i%64 == 63 {
			k.flush()
		}
	}
	k.flush()
	c.stopWriters()
	b.StopTimer()
	b.ReportMetric(float64(c.Stats().Drops["writer_behind"])/float64(b.N), "behind/op")
	c.Rotate()
}

func BenchmarkDecap(b *testing.B) {
	payload := loadPayload(1, 100)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, r := Decap(payload); r != ReasonNone {
			b.Fatal(r)
		}
	}
}

// TestHandleDoesNotAllocate holds the per-packet path to zero allocations.
func TestHandleDoesNotAllocate(t *testing.T) {
	c := offline(t, Options{OutputDir: t.TempDir()})
	payload := loadPayload(1, 100)
	cache := seriesCache{}
	ts := time.Now().UnixNano()
	c.handle(cache, loopback, ts, payload)
	allocs := testing.AllocsPerRun(1000, func() {
		ts++
		c.handle(cache, loopback, ts, payload)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
	c.Rotate()
}

// TestTunnelHandleDoesNotAllocate: GENEVE with options and ERSPAN III,
// whose metadata is formatted into every packet's block, do not allocate
// per packet either.
func TestTunnelHandleDoesNotAllocate(t *testing.T) {
	inner := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 46))
	for _, tc := range []struct {
		name    string
		decap   Decapper
		payload []byte
	}{
		{"geneve", DecapGENEVE, geneve(7, etherTypeTEB, geneveFlagCrit, []geneveOpt{{0x0101, 0x80, []byte{1, 2, 3, 4}}}, inner)},
		{"erspan3", DecapGRE, erspan3(t, 1, erspan3Hdr{id: 100, vlan: 10, egress: true, sub: make([]byte, 8)}, inner)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := offline(t, Options{OutputDir: t.TempDir()})
			cache := seriesCache{}
			ts := time.Now().UnixNano()
			c.handleWith(tc.decap, cache, loopback, ts, tc.payload)
			allocs := testing.AllocsPerRun(1000, func() {
				ts++
				c.handleWith(tc.decap, cache, loopback, ts, tc.payload)
			})
			if allocs != 0 {
				t.Errorf("%v allocations per packet", allocs)
			}
			c.Rotate()
		})
	}
}
