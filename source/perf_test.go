package source

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
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
// XM_IPERF_MAX_DELAY (e.g. 100ms) sets the ring datapath's MaxDelay.
func BenchmarkIperf(b *testing.B) {
	netlab.RequireRoot(b)
	var modes []string
	if m := os.Getenv("XM_IPERF_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	var maxDelay time.Duration
	if v := os.Getenv("XM_IPERF_MAX_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("XM_IPERF_MAX_DELAY: %v", err)
		}
		maxDelay = d
	}
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
				res, err := IperfScenario(context.Background(), IperfOptions{Duration: 3 * time.Second, Offload: offload, Modes: modes, Sink: os.Getenv("XM_IPERF_SINK"), MaxDelay: maxDelay})
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
