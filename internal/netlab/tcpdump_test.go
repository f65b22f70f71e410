// SPDX-License-Identifier: Apache-2.0

package netlab

import "testing"

func TestParseTcpdumpCounts(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      TcpdumpCounts
		complete  bool
	}{
		{"all", "listening on eth0\n12 packets captured\n12 packets received by filter\n0 packets dropped by kernel\n", TcpdumpCounts{12, 12, 0}, true},
		{"one", "1 packet captured\n1 packet received by filter\n0 packets dropped by kernel\n", TcpdumpCounts{1, 1, 0}, true},
		{"dropped", "10 packets captured\n12 packets received by filter\n2 packets dropped by kernel\n", TcpdumpCounts{10, 12, 2}, false},
		{"not stopped", "listening on eth0, link-type EN10MB\n", TcpdumpCounts{-1, -1, -1}, false},
		{"garbage", "x packets captured\n-3 packets captured\n", TcpdumpCounts{-1, -1, -1}, false},
	} {
		got := ParseTcpdumpCounts(tc.out)
		if got != tc.want || got.Complete() != tc.complete {
			t.Errorf("%s: %+v (complete %v), want %+v (complete %v)", tc.name, got, got.Complete(), tc.want, tc.complete)
		}
	}
}
