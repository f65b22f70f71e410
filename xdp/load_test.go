// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestProgramLoads(t *testing.T) {
	labtest.RequireRoot(t)
	o, err := loadObjects("")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
}

// verifierBudget is what any of the load balancer's programs may cost the
// verifier: half of the kernel's limit of 1,000,000 processed instructions,
// so that a kernel or compiler that prunes less well still loads them.
// Inlining the general inner parser into every path once took xmirror_lb to
// 748,602 and the benchmark wrapper over the limit (`go test -bench
// DataPath` then failed to load).
const verifierBudget = 500_000

// TestVerifierBudget loads every program of the production object and of
// the benchmark object on its own and asks the kernel how many instructions
// the verifier processed.
func TestVerifierBudget(t *testing.T) {
	labtest.RequireRoot(t)
	for obj, load := range map[string]func() (*ebpf.CollectionSpec, error){"lb": loadLb, "lbbench": loadLbbench} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		if err := setConstants(spec); err != nil {
			t.Fatal(err)
		}
		for name, prog := range spec.Programs {
			one := spec.Copy()
			one.Programs = map[string]*ebpf.ProgramSpec{name: prog}
			for _, m := range one.Maps {
				m.Pinning = ebpf.PinNone
			}
			coll, err := ebpf.NewCollection(one)
			if err != nil {
				t.Errorf("%s/%s does not load: %v", obj, name, err)
				continue
			}
			info, err := coll.Programs[name].Info()
			coll.Close()
			if err != nil {
				t.Fatal(err)
			}
			n, ok := info.VerifiedInstructions()
			if !ok {
				t.Skip("the kernel does not say how many instructions the verifier processed")
			}
			t.Logf("%s/%s: %d instructions processed", obj, name, n)
			if n > verifierBudget {
				t.Errorf("%s/%s: the verifier processed %d instructions, more than the budget of %d", obj, name, n, verifierBudget)
			}
		}
	}
}
