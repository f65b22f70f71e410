// SPDX-License-Identifier: Apache-2.0

package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var xmirrorBuild struct {
	once sync.Once
	path string
	err  error
}

// XmirrorBinary builds cmd/xmirror from this tree once per test process and returns
// its path: integration tests run the parts as the real binary, the way users do.
// The binary is left in a temporary directory for the life of the process.
func XmirrorBinary(tb testing.TB) string {
	tb.Helper()
	b := &xmirrorBuild
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "xmirror-test-bin-")
		if err != nil {
			b.err = err
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		b.path = filepath.Join(dir, "xmirror")
		out, err := exec.Command(gobin, "build", "-o", b.path, "github.com/xmirror/xmirror/cmd/xmirror").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if b.err != nil {
		tb.Fatalf("build xmirror: %v", b.err)
	}
	return b.path
}

// Main runs the tests of a package that uses XmirrorBinary and removes the
// binary afterwards: a package's TestMain is `func TestMain(m *testing.M) { labtest.Main(m) }`.
func Main(m *testing.M) {
	code := m.Run()
	if p := xmirrorBuild.path; p != "" {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}
