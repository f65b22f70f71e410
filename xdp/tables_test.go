package xdp

import (
	"fmt"
	"testing"
)

func TestWRRSchedule(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    string
	}{
		{[]int{1, 1}, "[0 1]"},
		{[]int{5, 1, 1}, "[0 0 1 0 2 0 0]"}, // nginx's example: a a b a c a a
		{[]int{2, 4}, "[1 0 1]"},            // divided by the gcd
		{[]int{0, 3}, "[1]"},
		{[]int{0, 0}, "[]"},
		{nil, "[]"},
	} {
		var bs []tableBackend
		for i, w := range tc.weights {
			bs = append(bs, tableBackend{ID: uint32(i), Weight: w})
		}
		if got := fmt.Sprint(wrrSchedule(bs)); got != tc.want {
			t.Errorf("weights %v: schedule %s, want %s", tc.weights, got, tc.want)
		}
	}
}

func maglevBackends(n int) []tableBackend {
	var bs []tableBackend
	for i := range n {
		bs = append(bs, tableBackend{ID: uint32(i), Key: fmt.Sprintf("10.0.0.%d:4789", 10+i), Weight: 1})
	}
	return bs
}

func TestMaglevWeights(t *testing.T) {
	bs := maglevBackends(3)
	bs[1].Weight, bs[2].Weight = 2, 5
	tab := maglevTable(bs, DefaultMaglevSize)
	count := map[uint32]int{}
	for _, id := range tab {
		count[id]++
	}
	for _, b := range bs {
		share, want := float64(count[b.ID])/float64(len(tab)), float64(b.Weight)/8
		if share < want-0.005 || share > want+0.005 {
			t.Errorf("backend %d: %.4f of the table, want %.4f", b.ID, share, want)
		}
	}
	// Same backends in another order: the same table (every LB node agrees).
	rev := []tableBackend{bs[2], bs[0], bs[1]}
	if fmt.Sprint(maglevTable(rev, 251)) != fmt.Sprint(maglevTable(bs, 251)) {
		t.Error("table depends on the order of the backends")
	}
}

// TestMaglevRemap: removing one of N backends moves about 1/N of the table.
func TestMaglevRemap(t *testing.T) {
	for _, n := range []int{3, 5, 10} {
		bs := maglevBackends(n)
		before := maglevTable(bs, DefaultMaglevSize)
		after := maglevTable(append(append([]tableBackend(nil), bs[:1]...), bs[2:]...), DefaultMaglevSize)
		moved := 0
		for i := range before {
			if before[i] != after[i] {
				moved++
			}
		}
		frac, ideal := float64(moved)/float64(len(before)), 1/float64(n)
		t.Logf("%d backends, one removed: %.4f of the flows move (ideal %.4f)", n, frac, ideal)
		if frac > ideal*1.25 {
			t.Errorf("%d backends: %.4f of the flows moved, want about %.4f", n, frac, ideal)
		}
	}
}
