// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestIsPrime(t *testing.T) {
	for n, want := range map[int]bool{0: false, 1: false, 2: true, 251: true, 65537: true, 65536: false, 131071: true} {
		if IsPrime(n) != want {
			t.Errorf("IsPrime(%d) = %v", n, !want)
		}
	}
}

// TestSourceLimits: what the mirror source cannot load, validation refuses,
// so that `xmirror check` and `xmirror source` agree.
func TestSourceLimits(t *testing.T) {
	rules := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "      - {priority: %d, action: accept, protocol: tcp}\n", i)
		}
		return b.String()
	}
	doc := func(inbound int, sources string) string {
		return "filters:\n  - name: f\n    inbound:\n" + rules(inbound) +
			"sessions:\n  - {name: s, priority: 1, vni: 1, filter: f, sources: " + sources + ", target: 10.0.0.1}\n"
	}
	if _, err := Parse([]byte(doc(MaxSourceRules, "[eth0]"))); err != nil {
		t.Errorf("%d rules on one interface: %v", MaxSourceRules, err)
	}
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"one rule too many", doc(MaxSourceRules+1, "[eth0]"), "the enabled sessions make 8193 inbound rules"},
		{"rules once per interface", doc(MaxSourceRules/2+1, "[eth0, eth1]"), "the enabled sessions make 8194 inbound rules"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "at most 8192 per direction") {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestCheckFileName: the templates collector.file_name takes, as `xmirror
// check` and `xmirror collect` both judge them (the collector's
// FuzzFileName checks that every accepted one makes plain file names).
func TestCheckFileName(t *testing.T) {
	for _, ok := range []string{DefaultFileName, "{time}", "{session}.{host}.{time}", "{protocol}_{id}_{vni}_{time}.x", "capture-{time}"} {
		if err := CheckFileName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "{session}", "{session}-{host}", "{time}{time}", "{session}/{time}", "../{time}",
		"{time} x", "{nope}-{time}", "{time}{ti{host}me}", ".{time}", "{time}\x00"} {
		if CheckFileName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestBackendLimit: the load balancer's tables hold 64 backends. `xmirror
// check` passed a file with 65 and `xmirror lb` then refused it at start;
// validation now says so first, naming the key.
func TestBackendLimit(t *testing.T) {
	doc := func(n int) string {
		var b strings.Builder
		b.WriteString("load_balancer:\n  listener: {vip: 10.0.0.1, interfaces: [eth0]}\n  backends:\n")
		for i := range n {
			fmt.Fprintf(&b, "    - {name: b%d, address: 10.1.%d.%d}\n", i, i/200, i%200+1)
		}
		return b.String()
	}
	if _, err := Parse([]byte(doc(64))); err != nil {
		t.Errorf("64 backends: %v", err)
	}
	_, err := Parse([]byte(doc(65)))
	if err == nil || !strings.Contains(err.Error(), "load_balancer.backends: 65 backends, at most 64") {
		t.Errorf("65 backends: error %v", err)
	}
}
