package xdp

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkDataPath measures the load balancer under BPF_PROG_TEST_RUN beside
// a bare XDP_TX program in the same run (the difference is what xmirror's data
// path costs). wrr_conntrack_hit is a hit in the per-CPU front cache (a steady
// flow's packets); wrr_shared_table_hit skips that cache and asks the shared
// connection table, as a flow's first packet on a CPU does. Both run through wrappers that restore the frame after every
// run, since the kernel repeats a program over the same, rewritten, buffer.
//
//	go test -run '^$' -bench DataPath -benchtime 3000000x -count 10 ./xdp/
func BenchmarkDataPath(b *testing.B) {
	g := newGoldenLab(b)
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
		{"bare_xdp_tx_no_restore", g.bal.objs.XmirrorBareTx, "wrr", "inner-symmetric", frame, 3},
		{"bare_xdp_tx", g.bal.objs.XmirrorBareBench, "wrr", "inner-symmetric", frame, 3},
		{"wrr_conntrack_hit", g.bal.objs.XmirrorLbBench, "wrr", "inner-symmetric", frame, 3},
		{"wrr_shared_table_hit", g.bal.objs.XmirrorLbBenchShared, "wrr", "inner-symmetric", frame, 3},
		{"wrr_outer_conntrack_hit", g.bal.objs.XmirrorLbBench, "wrr", "outer", frame, 3},
		{"wrr_none_per_packet", g.bal.objs.XmirrorLbBench, "wrr", "none", frame, 3},
		{"maglev_inner_symmetric", g.bal.objs.XmirrorLbBench, "maglev", "inner-symmetric", frame, 3},
		{"maglev_outer", g.bal.objs.XmirrorLbBench, "maglev", "outer", frame, 3},
		{"not_listener_pass", g.bal.objs.XmirrorLbBench, "wrr", "inner-symmetric", other, 2},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := lbConfig(c.algo, c.aff, backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
			if err := g.bal.Apply(cfg); err != nil {
				b.Fatal(err)
			}
			var ret uint32
			err := g.lb.Do(func() error {
				// warm the connection table
				if _, _, err := runXDP(c.prog, c.frame, g.lb.Ifindex); err != nil {
					return err
				}
				in := append([]byte(nil), c.frame...)
				b.ResetTimer()
				var err error
				ret, err = c.prog.Run(&ebpf.RunOptions{
					Data:    in,
					Context: xdpMd{DataEnd: uint32(len(in)), IngressIfindex: uint32(g.lb.Ifindex)},
					Repeat:  uint32(b.N),
					Reset:   b.ResetTimer,
				})
				b.StopTimer()
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			if ret != c.expect {
				b.Fatalf("verdict %d, want %d", ret, c.expect)
			}
			b.SetBytes(int64(len(c.frame)))
		})
	}
}
