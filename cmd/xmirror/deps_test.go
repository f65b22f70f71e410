// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: the shipped binary carries product code only.
// Test helpers live in packages that import testing (internal/netlab/labtest),
// so a product package that reaches one links testing into bin/xmirror.
func TestBinaryLinksNoTestCode(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/xmirror/xmirror/cmd/xmirror").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, banned := range []string{"testing", "github.com/xmirror/xmirror/internal/netlab/labtest"} {
		if slices.Contains(deps, banned) {
			t.Errorf("bin/xmirror links %s; find the product package that imports it with: go list -f '{{.ImportPath}} {{.Imports}}' -deps ./cmd/xmirror | grep -w %s", banned, banned)
		}
	}
}
