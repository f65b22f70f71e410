// SPDX-License-Identifier: Apache-2.0

package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/source"
	"github.com/xmirror/xmirror/xdp"
)

// TestSPDXHeaders: every tracked source file names its license (Apache-2.0; the
// BPF C, loaded into the kernel, MIT OR GPL-2.0-only). Generated bindings,
// documentation, data and the license texts themselves are exempt.
func TestSPDXHeaders(t *testing.T) {
	out, err := exec.Command("git", "-C", "..", "ls-files").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		base := filepath.Base(f)
		if strings.Contains(f, "/testdata/") || strings.HasPrefix(f, "LICENSE") || strings.Contains(f, "_bpfel") ||
			strings.HasSuffix(f, ".o") || strings.HasSuffix(f, ".md") || strings.HasSuffix(f, ".json") ||
			base == "go.mod" || base == "go.sum" || base == "control" || base == "copyright" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		want := "SPDX-License-Identifier: Apache-2.0"
		if strings.HasSuffix(f, ".c") || strings.HasSuffix(f, ".h") {
			want = "SPDX-License-Identifier: MIT OR GPL-2.0-only"
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", f, want)
		}
	}
}

// TestBPFObjectsLicense: every program xmirror loads declares the dual license
// that LICENSES/ gives the BPF C, which the kernel accepts as GPL-compatible.
func TestBPFObjectsLicense(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){
		"source": source.Spec, "lb": xdp.Spec, "collector": collector.Spec,
	} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range spec.Programs {
			if p.License != "Dual MIT/GPL" {
				t.Errorf("%s: program %s declares license %q, want \"Dual MIT/GPL\"", name, p.Name, p.License)
			}
		}
	}
}
