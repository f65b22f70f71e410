// SPDX-License-Identifier: Apache-2.0

package xdp

// The benchmark programs live in an object of their own, loaded only here.
//go:generate go tool bpf2go -target bpfel -no-global-types lbbench bpf/lb_bench.c -- -mcpu=v3

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkDataPath measures the load balancer under BPF_PROG_TEST_RUN beside
// a bare XDP_TX program in the same run (the difference is what xmirror's data
// path costs). wrr_conntrack_hit is a steady flow's packet: its bucket of the
// connection table is live. Both run through wrappers that restore the frame
// after every run, since the kernel repeats a program over the same,
// rewritten, buffer.
// The *_65536_flows cases send consecutive runs to consecutive ones of
// 65,536 round-robin flows, as the live benchmark does, so the tables are
// read with the cache misses that many flows cause (compare them with
// bare_xdp_tx_65536_flows, which pays the same rewrite).
//
//	go test -run '^$' -bench DataPath -benchtime 3000000x -count 10 ./xdp/
func BenchmarkDataPath(b *testing.B) {
	g := newGoldenLab(b)
	bo := loadBench(b, g.bal)
	frame := vxlanFrame(b, frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1})
	other := vxlanFrame(b, frameSpec{src: mirror, dst: netip.MustParseAddr("10.0.0.99"), sport: 40001, vni: 1})
	cases := []struct {
		name   string
		prog   *ebpf.Program
		algo   string
		aff    string
		frame  []byte
		expect uint32
	}{
		{"bare_xdp_tx_no_restore", bo.XmirrorBareTx, "wrr", "inner-symmetric", frame, 3},
		{"bare_xdp_tx", bo.XmirrorBareBench, "wrr", "inner-symmetric", frame, 3},
		{"wrr_conntrack_hit", bo.XmirrorLbBench, "wrr", "inner-symmetric", frame, 3},
		{"wrr_outer_conntrack_hit", bo.XmirrorLbBench, "wrr", "outer", frame, 3},
		{"wrr_none_per_packet", bo.XmirrorLbBench, "wrr", "none", frame, 3},
		{"maglev_inner_symmetric", bo.XmirrorLbBench, "maglev", "inner-symmetric", frame, 3},
		{"maglev_outer", bo.XmirrorLbBench, "maglev", "outer", frame, 3},
		{"not_listener_pass", bo.XmirrorLbBench, "wrr", "inner-symmetric", other, 2},
		{"bare_xdp_tx_65536_flows", bo.XmirrorBareBenchFlows, "wrr", "inner-symmetric", frame, 3},
		{"wrr_65536_flows", bo.XmirrorLbBenchFlows, "wrr", "inner-symmetric", frame, 3},
		{"wrr_4096_flows", bo.XmirrorLbBenchFlows, "wrr", "inner-symmetric", frame, 3},
		{"maglev_4096_flows", bo.XmirrorLbBenchFlows, "maglev", "inner-symmetric", frame, 3},
		{"maglev_65536_flows", bo.XmirrorLbBenchFlows, "maglev", "inner-symmetric", frame, 3},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := lbConfig(c.algo, c.aff, backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
			if err := g.bal.Apply(cfg); err != nil {
				b.Fatal(err)
			}
			flows := 65536
			if strings.Contains(c.name, "_4096_flows") {
				flows = 4096
			}
			setBenchFlows(b, bo, flows)
			// Every flow once before timing: the timed runs measure
			// flows the connection table knows, not the first pass's
			// insertions (a case run first on a cold table paid them,
			// and the next one not).
			ret := g.runRepeated(b, c.prog, c.frame, flows)
			if ret != c.expect {
				b.Fatalf("verdict %d, want %d", ret, c.expect)
			}
			b.SetBytes(int64(len(c.frame)))
		})
	}
}

// loadBench loads the benchmark programs (bpf/lb_bench.c) over bal's maps
// and globals, so they run the production data path on bal's tables.
func loadBench(tb testing.TB, bal *Balancer) *lbbenchObjects {
	tb.Helper()
	spec, err := loadLbbench()
	if err != nil {
		tb.Fatal(err)
	}
	if err := setConstants(spec); err != nil {
		tb.Fatal(err)
	}
	repl := bal.mapsByName()
	repl[".bss"] = globalsMap(tb, bal.objs.XmirrorLb)
	var o lbbenchObjects
	if err := spec.LoadAndAssign(&o, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		tb.Fatalf("load benchmark programs: %v", err)
	}
	tb.Cleanup(func() { o.Close() })
	return &o
}

// globalsMap is the .bss map of prog (its writable globals), found through
// the maps the kernel says the program uses.
func globalsMap(tb testing.TB, prog *ebpf.Program) *ebpf.Map {
	tb.Helper()
	info, err := prog.Info()
	if err != nil {
		tb.Fatal(err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			tb.Fatal(err)
		}
		mi, err := m.Info()
		if err == nil && strings.HasSuffix(mi.Name, ".bss") {
			tb.Cleanup(func() { m.Close() })
			return m
		}
		m.Close()
	}
	tb.Fatal("program has no .bss map")
	return nil
}

// setBenchFlows makes the *_flows programs cycle through n flows (a power of
// two) on every CPU.
func setBenchFlows(tb testing.TB, bo *lbbenchObjects, n int) {
	tb.Helper()
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	masks := make([]uint32, ncpu)
	for i := range masks {
		masks[i] = uint32(n - 1)
	}
	if err := bo.LbBenchFlow.Put(uint32(1), masks); err != nil {
		tb.Fatal(err)
	}
}

// TestBenchProgramsLoad: the benchmark programs pass the verifier, so
// BenchmarkDataPath runs. They inline the whole data path with a frame
// restore around it, which takes the verifier more steps than xmirror_lb:
// from 79d625f (inner frames with three VLAN tags, ICMP errors by the packet
// they quote) they ran past its limit of a million instructions and the
// benchmark failed to load while every test passed. The log says how many
// steps each program took.
func TestBenchProgramsLoad(t *testing.T) {
	g := newGoldenLab(t)
	bo := loadBench(t, g.bal)
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"xmirror_lb", g.bal.objs.XmirrorLb}, {"xmirror_lb_bench", bo.XmirrorLbBench}, {"xmirror_lb_bench_flows", bo.XmirrorLbBenchFlows}} {
		info, err := p.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := info.VerifiedInstructions(); ok {
			t.Logf("%s: the verifier processed %d instructions (limit 1,000,000)", p.name, n)
		}
	}
}
