// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"testing"
)

// seedFrames are well-formed and edge-case frames for the fuzzers.
func seedFrames(tb testing.TB) [][]byte {
	std := vxlanFrame(tb, frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1})
	f1, f2 := fragment(std, 24)
	return [][]byte{
		std,
		vxlanFrame(tb, frameSpec{src: mirror, dst: vip, sport: 1, vlan: 7, ipOptions: true}),
		vxlanFrame(tb, frameSpec{src: mirror, dst: vip, sport: 2, innerSrc: b1Addr, inDst: b2Addr, innerICMP: true}),
		f1, f2, std[:50], std[:14],
		withTTL(std, 1), withTTL(std, 2), shorten(std, 60),
	}
}

// FuzzFlowHash: the Go mirror of the data path's parser never panics and is
// deterministic on any bytes.
func FuzzFlowHash(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkDeterministic(t, func(aff string) (uint32, bool) { return FlowHash(frame, aff) })
		if len(frame) > 8 {
			innerHash(frame)
		}
	})
}

// FuzzDataPath runs arbitrary frames through the BPF program: it never
// aborts, and what it forwards keeps its length and goes, with the mirror
// source unchanged, to the backend the Go mirror of the hash predicts (so the
// program's fast parse of common frames and its general parser agree).
func FuzzDataPath(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	g := newGoldenLab(f)
	cfg := lbConfig("maglev", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))
	cfg.MaglevSize = 65537
	if err := g.bal.Apply(cfg); err != nil {
		f.Fatal(err)
	}
	predict := g.maglevPredictor(1, 1)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses these, as drivers never pass them
		}
		ret, out := g.runOneVerdict(t, frame)
		switch ret {
		case 1, 2: // drop, pass
		case 3:
			if len(out) != len(frame) {
				t.Fatalf("forwarded frame changed length %d -> %d", len(frame), len(out))
			}
			l3 := l3Offset(out)
			if string(out[l3+12:l3+16]) != string(frame[l3+12:l3+16]) {
				t.Fatalf("outer source changed")
			}
			ihl := int(frame[l3]&0xf) * 4
			if checksum(frame[l3:l3+ihl]) != 0 || frame[l3+8] < 2 {
				t.Fatalf("forwarded a header with a bad checksum or TTL %d", frame[l3+8])
			}
			if out[l3+8] != frame[l3+8]-1 || checksum(out[l3:l3+ihl]) != 0 {
				t.Fatalf("TTL %d -> %d, checksum of the result %#x", frame[l3+8], out[l3+8], checksum(out[l3:l3+ihl]))
			}
			h, ok := FlowHash(frame, "inner-symmetric")
			if !ok {
				t.Fatalf("forwarded a frame the Go mirror does not hash")
			}
			want := predict(h)
			if rec, ok := g.fragRecord(frame); ok {
				want = rec // a later fragment follows its first
			}
			if d := string(out[l3+16 : l3+20]); d != string(want.AsSlice()) {
				t.Fatalf("forwarded to %x, the Go mirror says %s (hash %#x)", d, want, h)
			}
		default:
			t.Fatalf("verdict %d", ret)
		}
	})
}
