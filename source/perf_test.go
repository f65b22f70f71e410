package source

import (
	"context"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// BenchmarkIperf reports iperf3 TCP throughput plain, with xmirror mirroring
// every packet (datapaths kernel and perf) and with tc mirred, in both
// directions: Gbit/s averaged over b.N rounds, and the cost relative to
// plain in percent. Every round measures every mode, so the modes see the
// same machine load. Run:
//
//	go test -run XXX -bench Iperf -benchtime 3x ./source/
func BenchmarkIperf(b *testing.B) {
	netlab.RequireRoot(b)
	for _, offload := range []bool{true, false} {
		name := map[bool]string{true: "offload-on", false: "offload-off"}[offload]
		b.Run(name, func(b *testing.B) {
			sum := map[string]float64{}
			var order []string
			for i := 0; i < b.N; i++ {
				res, err := IperfScenario(context.Background(), IperfOptions{Duration: 3 * time.Second, Offload: offload})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					key := r.Mode + "-" + r.Direction
					if _, ok := sum[key]; !ok {
						order = append(order, key)
					}
					sum[key] += r.BitsPerSecond
					b.Logf("%s round %d %s %s: %.2f Gbit/s, %d retransmits, %d mirrored", name, i, r.Mode, r.Direction, r.BitsPerSecond/1e9, r.Retransmits, r.Mirrored)
				}
			}
			for _, key := range order {
				b.ReportMetric(sum[key]/float64(b.N)/1e9, key+"-Gbit/s")
			}
			for _, key := range order {
				for _, dir := range []string{"inbound", "outbound"} {
					plain := sum[ModePlain+"-"+dir]
					if key != ModePlain+"-"+dir && len(key) > len(dir) && key[len(key)-len(dir):] == dir && plain > 0 {
						b.ReportMetric(100*(1-sum[key]/plain), key+"-cost-%")
					}
				}
			}
		})
	}
}
