// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// TestMaglevAcrossProcesses: the Maglev table is a pure function of the
// backends' addresses, ports and weights, so LB nodes behind ECMP agree on
// every flow. Another process, given the same backends in another order (so
// with other ids), builds a table that names the same backend in every slot.
func TestMaglevAcrossProcesses(t *testing.T) {
	if order := os.Getenv("XM_MAGLEV_ORDER"); order != "" {
		var idx []int
		for _, f := range strings.Split(order, ",") {
			i, _ := strconv.Atoi(f)
			idx = append(idx, i)
		}
		fmt.Println("digest", maglevDigest(idx))
		return
	}
	here := maglevDigest([]int{0, 1, 2, 3, 4})
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMaglevAcrossProcesses$")
	cmd.Env = append(os.Environ(), "XM_MAGLEV_ORDER=4,2,0,3,1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "digest "+here) {
		t.Fatalf("another process built a different table: here %s, there:\n%s", here, out)
	}
}

// maglevDigest builds the table of five fixed backends (weights 1-3) taken
// in the given order, ids assigned in that order, and hashes which backend
// (by address:port) each slot names.
func maglevDigest(order []int) string {
	all := []struct {
		addr   string
		port   uint16
		weight int
	}{{"10.0.0.11", 4789, 2}, {"10.0.0.12", 4789, 1}, {"10.0.0.13", 4790, 3}, {"10.0.1.7", 4789, 1}, {"192.168.5.5", 4789, 2}}
	var bs []tableBackend
	keys := map[uint32]string{}
	for id, i := range order {
		k := backendKey(netip.MustParseAddr(all[i].addr), all[i].port)
		bs = append(bs, tableBackend{ID: uint32(id), Key: k, Weight: all[i].weight})
		keys[uint32(id)] = k
	}
	h := sha256.New()
	for _, id := range maglevTable(bs, DefaultMaglevSize) {
		io.WriteString(h, keys[id])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
