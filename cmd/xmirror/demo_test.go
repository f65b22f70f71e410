// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemoUsageErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--affinity", "sideways"}, "--affinity"},
		{[]string{"demo", "extra"}, "no arguments"},
		{[]string{"demo", "--no-such-flag"}, "no-such-flag"},
		{[]string{"demo", "--config", missing}, ""}, // missing file, or not root: both usage errors
	} {
		code, _, errOut := runCaptured(t, tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, exitUsage, errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, tc.want)
		}
	}
}

func TestDemoRefusesAConfigForAnotherNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the root check comes first")
	}
	b, err := os.ReadFile("../../config/examples/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other.yaml")
	os.WriteFile(p, []byte(strings.Replace(string(b), "vip: 192.168.0.147", "vip: 10.1.1.1", 1)), 0o644)
	code, _, errOut := runCaptured(t, "demo", "--config", p)
	if code != exitUsage || !strings.Contains(errOut, "vip") {
		t.Errorf("exit %d, stderr %q; want a usage error about the vip", code, errOut)
	}
}
