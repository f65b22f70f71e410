// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkClassify measures the source program per packet under
// BPF_PROG_TEST_RUN (decision-recording mode: classification only, no
// clone), for the seed filter and for a packet that matches the last of N
// rules. Compare against the harness overhead (~30 ns) of the same machine.
//
//	go test -run XXX -bench Classify ./source/
func BenchmarkClassify(b *testing.B) {
	seed := mustParse(b, strings.Replace(seedYAML, "sources: [eth0]", "sources: [lo]", 1))
	cases := []struct {
		name  string
		yaml  string
		frame []byte
	}{
		{"seed-match", "", tcp4(b, testIP, sourceIP, 57032, 1234, 15)},
		{"seed-nomatch", "", tcp4(b, testIP, sourceIP, 57032, 80, 15)},
		{"not-ip", "", arp(b)},
	}
	for _, n := range []int{10, 100, 1000} {
		var rules strings.Builder
		for i := 1; i < n; i++ {
			fmt.Fprintf(&rules, "{priority: %d, action: accept, protocol: tcp, destination_ports: %d},\n", i, 10000+i)
		}
		fmt.Fprintf(&rules, "{priority: %d, action: accept, protocol: tcp, destination_ports: 1234}", n)
		cases = append(cases, struct {
			name  string
			yaml  string
			frame []byte
		}{fmt.Sprintf("last-of-%d-rules", n), oneSession(rules.String(), ""), tcp4(b, "10.0.0.2", "10.0.0.1", 5000, 1234, 0)})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := seed
			if c.yaml != "" {
				cfg = mustParse(b, c.yaml)
			}
			s := testSource(b, cfg)
			b.ResetTimer()
			_, d, err := s.objs.XmSourceIngress.Benchmark(c.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d)/float64(time.Nanosecond), "ns/packet")
		})
	}
}
