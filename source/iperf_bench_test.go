// SPDX-License-Identifier: Apache-2.0

package source

import (
	"context"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// BenchmarkIperf reports iperf3 TCP throughput plain, with xmirror mirroring
// every packet (datapaths ring, kernel and perf) and with tc mirred, in both
// directions: Gbit/s and the cost relative to plain in the same round (the
// mean of plain measured first and last), in percent, each the median over
// the rounds. Every round measures every mode, so the modes see the same
// machine load. Run:
//
//	go test -run XXX -bench Iperf -benchtime 7x ./source/
//
// XM_IPERF_MODES (comma-separated modes) and XM_IPERF_OFFLOAD (on or off)
// narrow the run, e.g. to profile one datapath; XM_IPERF_SINK=target drops
// the mirrored traffic at the target instead of as it leaves the source
// (IperfOptions.Sink);
// XM_IPERF_MAX_DELAY (e.g. 100ms) sets the ring datapath's MaxDelay;
// XM_IPERF_WHOLE=1 mirrors whole frames instead of 96 bytes.
func BenchmarkIperf(b *testing.B) {
	labtest.RequireRoot(b)
	env := iperfEnv(b)
	for _, offload := range []bool{true, false} {
		name := map[bool]string{true: "offload-on", false: "offload-off"}[offload]
		if o := os.Getenv("XM_IPERF_OFFLOAD"); o != "" && o != name[len("offload-"):] {
			continue
		}
		b.Run(name, func(b *testing.B) {
			gbps := map[string][]float64{} // per mode-direction, one value per round
			cost := map[string][]float64{} // against plain in the same round
			var order []string
			for i := 0; i < b.N; i++ {
				opts := env
				opts.Duration, opts.Offload = 3*time.Second, offload
				res, err := IperfScenario(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				plain := PlainBaseline(res)
				for _, r := range res {
					key := r.Mode + "-" + r.Direction
					if _, ok := gbps[key]; !ok {
						order = append(order, key)
					}
					gbps[key] = append(gbps[key], r.BitsPerSecond/1e9)
					if p := plain[r.Direction]; r.Mode != ModePlain && p > 0 {
						cost[key] = append(cost[key], 100*(1-r.BitsPerSecond/p))
					}
					b.Logf("%s round %d %s %s: %.2f Gbit/s, %d retransmits, %d mirrored in %d sends, %d errors (%d in sends)", name, i, r.Mode, r.Direction, r.BitsPerSecond/1e9, r.Retransmits, r.Mirrored, r.Sends, r.Errors, r.SendErrors)
				}
			}
			// Medians: single rounds on a shared 2-core machine vary a lot.
			for _, key := range order {
				b.ReportMetric(median(gbps[key]), key+"-Gbit/s")
			}
			for _, key := range order {
				if len(cost[key]) > 0 {
					b.ReportMetric(median(cost[key]), key+"-cost-%")
				}
			}
		})
	}
}

// iperfEnv reads the options the iperf3 benchmarks take from the
// environment: XM_IPERF_MODES, XM_IPERF_SINK, XM_IPERF_MAX_DELAY and
// XM_IPERF_CPUS.
func iperfEnv(b *testing.B) IperfOptions {
	var o IperfOptions
	if m := os.Getenv("XM_IPERF_MODES"); m != "" {
		o.Modes = strings.Split(m, ",")
	}
	o.Sink = os.Getenv("XM_IPERF_SINK")
	o.Whole = os.Getenv("XM_IPERF_WHOLE") == "1"
	o.CPUs = os.Getenv("XM_IPERF_CPUS")
	if _, err := o.iperf(nil, nil); err != nil {
		b.Fatalf("XM_IPERF_CPUS: %v", err)
	}
	if v := os.Getenv("XM_IPERF_MAX_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("XM_IPERF_MAX_DELAY: %v", err)
		}
		o.MaxDelay = d
	}
	return o
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestPlainBaseline(t *testing.T) {
	res := []IperfResult{
		{Mode: ModePlain, Direction: "inbound", BitsPerSecond: 30},
		{Mode: ModePlain, Direction: "outbound", BitsPerSecond: 20},
		{Mode: ModeRing, Direction: "inbound", BitsPerSecond: 10},
		{Mode: ModePlain, Direction: "inbound", BitsPerSecond: 34},
		{Mode: ModePlain, Direction: "outbound", BitsPerSecond: 20},
	}
	got := PlainBaseline(res)
	if len(got) != 2 || got["inbound"] != 32 || got["outbound"] != 20 {
		t.Fatalf("PlainBaseline = %v, want inbound 32, outbound 20", got)
	}
	if got := PlainBaseline(res[2:3]); len(got) != 0 {
		t.Fatalf("PlainBaseline without plain runs = %v, want none", got)
	}
}

// BenchmarkOnOff reports what mirroring costs a running iperf3 TCP stream
// (IperfAlternating): per mode (datapath ring and tc mirred unless
// XM_IPERF_MODES says otherwise) and direction, one iperf3 connection during
// which the mode is switched on and off every second, b.N times on between
// b.N+1 plain segments; the cost of each segment against the plain ones
// either side, median over the segments, and the copies that reached the
// sink per packet of the stream over those segments (delivered-%,
// AlternatingResult.Delivered): a cost without the copies it paid for is
// no result. Offloads on (XM_IPERF_OFFLOAD=off turns them off), sink as in
// BenchmarkIperf (XM_IPERF_SINK, XM_IPERF_MAX_DELAY apply). Run:
//
//	go test -run XXX -bench OnOff -benchtime 20x ./source/
func BenchmarkOnOff(b *testing.B) {
	labtest.RequireRoot(b)
	env := iperfEnv(b)
	env.Offload = os.Getenv("XM_IPERF_OFFLOAD") != "off"
	res, err := IperfAlternating(context.Background(), AlternatingOptions{
		IperfOptions: env,
		Pairs:        b.N,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res {
		key := r.Mode + "-" + r.Direction
		costs := r.Costs()
		b.Logf("%d pairs, %s %s: plain %s Gbit/s; with it %s Gbit/s; cost %s %%; %d mirrored (%d directly), %d errors (%d in sends); copies at the sink %d of %d stream packets (%.1f%%)",
			b.N, r.Mode, r.Direction, gbitList(r.Plain), gbitList(r.With), pctList(costs), r.Mirrored, r.Direct, r.Errors, r.SendErrors, r.Copies, r.Stream, r.Delivered())
		b.ReportMetric(median(r.Plain)/1e9, key+"-plain-Gbit/s")
		b.ReportMetric(median(r.With)/1e9, key+"-Gbit/s")
		if len(costs) > 0 {
			b.ReportMetric(median(costs), key+"-cost-%")
		}
		b.ReportMetric(r.Delivered(), key+"-delivered-%")
	}
}

func gbitList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x/1e9, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

func pctList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

func TestAlternatingCosts(t *testing.T) {
	r := AlternatingResult{Plain: []float64{10, 12, 8}, With: []float64{10.45, 9}}
	got := r.Costs()
	// 10.45 against (10+12)/2 = 11: 5%; 9 against (12+8)/2 = 10: 10%.
	if len(got) != 2 || math.Abs(got[0]-5) > 1e-9 || math.Abs(got[1]-10) > 1e-9 {
		t.Fatalf("Costs = %v, want [5 10]", got)
	}
	// A segment with the mode but no plain one after it has no cost.
	r.Plain = r.Plain[:2]
	if got := r.Costs(); len(got) != 1 {
		t.Fatalf("Costs without the last plain segment = %v, want one", got)
	}
}

func TestIperfAffinity(t *testing.T) {
	for _, c := range []struct {
		cpus           string
		client, server string
		bad            bool
	}{
		{cpus: ""},
		{cpus: "0", client: "-A 0", server: "-A 0"},
		{cpus: "0,1", client: "-A 0", server: "-A 1"},
		{cpus: "x", bad: true},
		{cpus: "-1", bad: true},
		{cpus: "0,", bad: true},
		{cpus: "0,1,2", bad: true},
	} {
		ip, err := IperfOptions{CPUs: c.cpus}.iperf(nil, nil)
		if (err != nil) != c.bad {
			t.Errorf("CPUs %q: error %v, want error %v", c.cpus, err, c.bad)
			continue
		}
		client := strings.TrimSpace(strings.TrimPrefix(strings.Join(ip.ClientArgs(false), " "), "-c "+sourceIP))
		server := ""
		if ip.ServerCPU != "" {
			server = "-A " + ip.ServerCPU
		}
		if got := client; got != c.client {
			t.Errorf("CPUs %q: client %q, want %q", c.cpus, got, c.client)
		}
		if got := server; got != c.server {
			t.Errorf("CPUs %q: server %q, want %q", c.cpus, got, c.server)
		}
	}
}
