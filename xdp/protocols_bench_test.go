// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/config"
)

// BenchmarkListenerProtocols measures GENEVE and GRE listeners beside the
// VXLAN one and a bare XDP_TX program in the same run, through the wrappers
// that restore the frame after every run (see BenchmarkDataPath). The inner
// flow is the same in every frame.
//
//	go test -run '^$' -bench ListenerProtocols -benchtime 3000000x -count 10 ./xdp/
func BenchmarkListenerProtocols(b *testing.B) {
	g := newGoldenLab(b)
	bo := loadBench(b, g.bal)
	spec := frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1}
	vx := vxlanFrame(b, spec)
	cases := []struct {
		name  string
		prog  *ebpf.Program
		proto string
		algo  string
		frame []byte
	}{
		{"bare_xdp_tx", bo.XmirrorBareBench, config.ProtocolVXLAN, "wrr", vx},
		{"vxlan_wrr_conntrack_hit", bo.XmirrorLbBench, config.ProtocolVXLAN, "wrr", vx},
		{"geneve_wrr_conntrack_hit_no_options", bo.XmirrorLbBench, config.ProtocolGENEVE, "wrr", geneveFrame(b, spec, geneveSpec{})},
		{"geneve_wrr_conntrack_hit_1_option", bo.XmirrorLbBench, config.ProtocolGENEVE, "wrr", geneveFrame(b, spec, geneveSpec{options: 1})},
		{"geneve_wrr_conntrack_hit_252_option_bytes", bo.XmirrorLbBench, config.ProtocolGENEVE, "wrr", geneveFrame(b, spec, geneveSpec{words: 63})},
		{"geneve_wrr_conntrack_hit_ipv4_payload", bo.XmirrorLbBench, config.ProtocolGENEVE, "wrr", geneveFrame(b, spec, geneveSpec{options: 1, ptype: geneveIPv4})},
		{"vxlan_maglev_inner_symmetric", bo.XmirrorLbBench, config.ProtocolVXLAN, "maglev", vx},
		{"geneve_maglev_inner_symmetric_1_option", bo.XmirrorLbBench, config.ProtocolGENEVE, "maglev", geneveFrame(b, spec, geneveSpec{options: 1})},
		{"gre_erspan2_wrr_conntrack_hit", bo.XmirrorLbBench, config.ProtocolGRE, "wrr", greFrame(b, spec, greSpec{erspan: 2})},
		{"gre_erspan3_wrr_conntrack_hit", bo.XmirrorLbBench, config.ProtocolGRE, "wrr", greFrame(b, spec, greSpec{erspan: 3, sub: true})},
		{"gre_erspan2_maglev_inner_symmetric", bo.XmirrorLbBench, config.ProtocolGRE, "maglev", greFrame(b, spec, greSpec{erspan: 2})},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := protocolConfig(c.proto, c.algo, "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
			if err := g.bal.Apply(cfg); err != nil {
				b.Fatal(err)
			}
			ret := g.runRepeated(b, c.prog, c.frame, 1)
			if ret != 3 {
				b.Fatalf("verdict %d, want 3 (XDP_TX)", ret)
			}
			b.SetBytes(int64(len(c.frame)))
		})
	}
}
