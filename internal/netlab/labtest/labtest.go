// SPDX-License-Identifier: Apache-2.0

// Package labtest holds what only tests need of the network labs: skipping
// when not root, a lab removed when the test ends, the xmirror binary built
// once per test process. It imports testing, so product code (bench, demo,
// cmd/xmirror) must not import it: they use internal/netlab.
package labtest

import (
	"os"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipped: needs root for BPF, network namespaces and veth (CI runs as root; try `sudo go test`)")
	}
}

// ForTest builds a lab with hosts for the test and removes it when the test ends,
// also when it fails or panics. It skips the test when not root.
func ForTest(tb testing.TB, hosts ...netlab.HostSpec) *netlab.Lab {
	tb.Helper()
	RequireRoot(tb)
	label := tb.Name()
	if i := strings.LastIndex(label, "/"); i >= 0 {
		label = label[i+1:]
	}
	if len(label) > 16 {
		label = label[:16]
	}
	l, err := netlab.New(label)
	if err != nil {
		tb.Fatalf("netlab: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("netlab cleanup: %v", err)
		}
	})
	for _, spec := range hosts {
		if _, err := l.AddHost(spec); err != nil {
			tb.Fatalf("netlab: %v", err)
		}
	}
	return l
}
