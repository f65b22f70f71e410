// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

// TestBenchUsageErrors: bad protocols and GENEVE options are usage errors.
func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--protocols", "vxlan,nvgre"}, "--protocols"},
		{[]string{"bench", "--geneve-options", "40"}, "geneve options"},
	} {
		code, _, errOut := runCaptured(t, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q lacks %q", tc.args, code, exitUsage, errOut, tc.want)
		}
	}
}

// TestBenchGenUsageErrors: every bad generator flag is a usage error naming the flag.
func TestBenchGenUsageErrors(t *testing.T) {
	base := []string{"bench", "gen", "--iface", "lo", "--dst-ip", "127.0.0.2", "--dst-mac", "02:00:00:00:00:02", "--src-ip", "127.0.0.1", "--count", "1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--protocol", "nvgre"}, "--protocol"},
		{[]string{"--protocol", "erspan3", "--vni", "1024"}, "--vni"},
		{[]string{"--protocol", "gre", "--dst-port", "4789"}, "--dst-port"},
		{[]string{"--protocol", "vxlan", "--geneve-options", "2"}, "--geneve-options"},
		{[]string{"--protocol", "geneve", "--geneve-options", "32"}, "--geneve-options"},
		{[]string{"--dst-port", "70000"}, "--dst-port"},
	} {
		code, _, errOut := runCaptured(t, append(append([]string(nil), base...), tc.args...)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, exitUsage, errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, tc.want)
		}
	}
}
