// SPDX-License-Identifier: Apache-2.0

package bench

import "testing"

// TestGenContract checks the Go side of the boundary with xdp_gen: the header
// buffer holds the longest headers Go builds. The session id kinds come from
// the object (bpf2go -type gen_id_kind), and the offsets Go hands over are
// checked by running the program (TestGenProgramFlows).
func TestGenContract(t *testing.T) {
	if n := len(genGenConfig{}.Hdr); n != genHdrMax {
		t.Errorf("gen_config.hdr holds %d bytes, Go builds headers up to %d", n, genHdrMax)
	}
	for _, p := range Protocols {
		s := testSpec
		s.Protocol = p
		if p == GENEVE {
			s.GeneveOptions = MaxGeneveOptions
		}
		if n := s.layout().outer + innerHdr; n < genHdrMin || n > genHdrMax {
			t.Errorf("%s: %d header bytes, the program takes %d..%d", p, n, genHdrMin, genHdrMax)
		}
	}
}
