// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want Version
		ok   bool
	}{
		{"6.18.44-fc-v1272", Version{6, 18}, true},
		{"5.14.0-427.el9.x86_64", Version{5, 14}, true},
		{"6.1.0-28-amd64", Version{6, 1}, true},
		{"6.6", Version{6, 6}, true},
		{"6.12rc1", Version{6, 12}, true},
		{"6", Version{}, false},
		{"x.y", Version{}, false},
	} {
		got, err := ParseRelease(tc.rel)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRelease(%q) = %v, %v", tc.rel, got, err)
		}
	}
	if !(Version{5, 15}).Less(Version{6, 6}) || (Version{6, 6}).Less(Version{6, 6}) || !(Version{6, 1}).Less(Version{6, 10}) {
		t.Error("Version.Less")
	}
}

func TestU64Attr(t *testing.T) {
	var b []byte
	attr := func(typ uint16, val []byte) {
		h := make([]byte, 4)
		binary.NativeEndian.PutUint16(h, uint16(4+len(val)))
		binary.NativeEndian.PutUint16(h[2:], typ)
		b = append(b, h...)
		b = append(b, val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(1, []byte{4, 0, 0, 0})
	attr(9, []byte{1}) // padded
	v := make([]byte, 8)
	binary.NativeEndian.PutUint64(v, 43)
	attr(3, v)
	if got, ok := u64Attr(b, 3); !ok || got != 43 {
		t.Errorf("u64Attr = %d, %v", got, ok)
	}
	if _, ok := u64Attr(b, 5); ok {
		t.Error("found an absent attribute")
	}
	if _, ok := u64Attr(b[:len(b)-3], 3); ok {
		t.Error("read a truncated attribute")
	}
}

type item string

func (i item) String() string { return string(i) }

func TestProbeAll(t *testing.T) {
	probe := func(i item) error {
		switch i {
		case "old":
			return fmt.Errorf("probe: %w", ebpf.ErrNotSupported)
		case "denied":
			return errors.New("operation not permitted")
		}
		return nil
	}
	if r := probeAll("x", []item{"a", "b"}, probe); r.Status != Pass || r.Detail != "a b" {
		t.Errorf("all present: %+v", r)
	}
	if r := probeAll("x", []item{"a", "old"}, probe); r.Status != Fail || r.Detail != "kernel lacks old" || r.Fix == "" {
		t.Errorf("one missing: %+v", r)
	}
	if r := probeAll("x", []item{"denied"}, probe); r.Status != Fail || !strings.Contains(r.Detail, "not permitted") {
		t.Errorf("probe error: %+v", r)
	}
}

func TestReport(t *testing.T) {
	r := &Report{Role: RoleLB, Results: []Result{
		{Check: "kernel", Status: Pass, Detail: "Linux 6.18"},
		{Check: "xdp eth0", Status: Warn, Detail: "generic", Fix: "better NIC"},
	}}
	if !r.OK() || r.Err() != nil {
		t.Fatalf("a warning must not stop the role: %v", r.Err())
	}
	r.add(Result{Check: "bpffs", Status: Fail, Detail: "not mounted", Fix: "mount -t bpf bpf /sys/fs/bpf"})
	if r.OK() {
		t.Fatal("OK with a failure")
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "bpffs: not mounted; mount -t bpf bpf /sys/fs/bpf") || strings.Contains(err.Error(), "eth0") {
		t.Errorf("Err: %v", err)
	}
	var buf bytes.Buffer
	r.WriteTable(&buf)
	for _, want := range []string{"CHECK (role lb)", "bpffs", "FAIL bpffs: mount", "warn xdp eth0: better NIC", "xmirror lb CANNOT run on this host"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestCheckCaps(t *testing.T) {
	if !hasCap(1<<uint(CapSysAdmin), CapBPF) || hasCap(1<<uint(CapSysAdmin), CapNetAdmin) || !hasCap(1<<uint(CapNetRaw), CapNetRaw) {
		t.Error("hasCap")
	}
	if r := checkCaps(nil); r.Status != Pass {
		t.Errorf("no caps needed: %+v", r)
	}
}

func TestForRole(t *testing.T) {
	for _, role := range Roles {
		req, err := ForRole(role, RoleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if (role == RoleCollect) != (len(req.Objects) == 0) {
			t.Errorf("%s: %d objects", role, len(req.Objects))
		}
	}
	if req, _ := ForRole(RoleCollect, RoleOptions{CollectXDP: true, Interfaces: []string{"eth0"}}); len(req.Caps) != 3 || len(req.XDPInterfaces) != 1 {
		t.Errorf("XDP collector: %+v", req)
	}
	if req, _ := ForRole(RoleCollect, RoleOptions{CollectGRE: true}); fmt.Sprint(req.Caps) != fmt.Sprint([]Capability{CapNetRaw}) {
		t.Errorf("GRE collector: caps %v, want CAP_NET_RAW only", req.Caps)
	}
	if req, _ := ForRole(RoleCollect, RoleOptions{CollectXDP: true, CollectGRE: true}); len(req.Caps) != 4 || len(LBCaps) != 3 {
		t.Errorf("XDP and GRE collector: caps %v", req.Caps)
	}
	if _, err := ForRole("proxy", RoleOptions{}); err == nil {
		t.Error("unknown role accepted")
	}
}
