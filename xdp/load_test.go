// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"regexp"
	"strconv"
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
// the benchmark object on its own and reads what the verifier processed.
func TestVerifierBudget(t *testing.T) {
	labtest.RequireRoot(t)
	processed := regexp.MustCompile(`processed (\d+) insns`)
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
			coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
				Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
			})
			if err != nil {
				t.Errorf("%s/%s does not load: %v", obj, name, err)
				continue
			}
			m := processed.FindStringSubmatch(coll.Programs[name].VerifierLog)
			coll.Close()
			if m == nil {
				t.Errorf("%s/%s: no instruction count in the verifier's log", obj, name)
				continue
			}
			n, _ := strconv.Atoi(m[1])
			t.Logf("%s/%s: %d instructions processed", obj, name, n)
			if n > verifierBudget {
				t.Errorf("%s/%s: the verifier processed %d instructions, more than the budget of %d", obj, name, n, verifierBudget)
			}
		}
	}
}
