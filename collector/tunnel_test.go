// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
)

// TestKeyNames: the names, interface tags and metric labels of sessions.
func TestKeyNames(t *testing.T) {
	for _, tc := range []struct {
		key                     Key
		name, tag, labels, desc string
	}{
		{VXLAN(7), "vni-7", "vni7", `vni="7"`, "VNI 7"},
		{Key{ProtoGENEVE, 7}, "geneve-7", "geneve7", `protocol="geneve",id="7"`, "GENEVE VNI 7"},
		{Key{ProtoERSPAN, 100}, "erspan-100", "erspan100", `protocol="erspan",id="100"`, "ERSPAN session 100"},
		{Key{ProtoGRE, 4294967295}, "gre-4294967295", "gre4294967295", `protocol="gre",id="4294967295"`, "GRE key 4294967295"},
	} {
		if n, g, l, d := tc.key.fallbackName(), tc.key.ifTag(), tc.key.labels(), tc.key.describe(); n != tc.name || g != tc.tag || l != tc.labels || d != tc.desc {
			t.Errorf("%v: %q %q %q %q", tc.key, n, g, l, d)
		}
	}
	for _, s := range []string{"vxlan", "geneve", "erspan", "gre"} {
		if p, err := ParseProtocol(s); err != nil || p.String() != s {
			t.Errorf("ParseProtocol(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParseProtocol("sflow"); err == nil {
		t.Error("sflow accepted")
	}
}

// TestTunnelSessionRules: unknown_vni, max_sessions and the file name
// template apply to the sessions of every protocol; VXLAN and GENEVE with
// the same id are two sessions.
func TestTunnelSessionRules(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, DropUnknownVNI: true, FileName: "{protocol}-{id}-{vni}-{time}",
		Named: map[Key]Session{{ProtoGENEVE, 7}: {Name: "gwlb"}, {ProtoERSPAN, 7}: {Name: "sw"}}, Sessions: map[uint32]string{7: "v"}})
	cache := seriesCache{}
	c.handleWith(DecapGENEVE, cache, loopback, t0.UnixNano(), geneve(7, etherTypeTEB, 0, nil, full))
	c.handleWith(DecapGENEVE, cache, loopback, t0.UnixNano(), geneve(8, etherTypeTEB, 0, nil, full))
	c.handleWith(DecapGRE, cache, loopback, t0.UnixNano(), erspan2(t, 1, 7, 0, 0, 0, full))
	c.handleWith(DecapGRE, cache, loopback, t0.UnixNano(), erspan2(t, 1, 9, 0, 0, 0, full))
	c.handle(cache, loopback, t0.UnixNano(), vxlan(7, full))
	c.Rotate()
	if st := c.Stats(); st.Drops["unknown_vni"] != 2 || st.Written != 3 {
		t.Errorf("stats %+v", st)
	}
	onlyFile(t, out+"/gwlb", "geneve-7-7-")
	onlyFile(t, out+"/sw", "erspan-7-7-")
	onlyFile(t, out+"/v", "vxlan-7-7-")

	limited := offline(t, Options{OutputDir: t.TempDir(), MaxSessions: 2})
	cache = seriesCache{}
	for id := uint32(1); id <= 3; id++ {
		limited.handleWith(DecapGENEVE, cache, loopback, t0.UnixNano(), geneve(id, etherTypeTEB, 0, nil, full))
	}
	limited.handleWith(DecapGRE, cache, loopback, t0.UnixNano(), gre(t, false, u32p(1), nil, etherTypeTEB, full))
	if st := limited.Stats(); st.Drops["session_limit"] != 2 || len(st.Sessions) != 2 {
		t.Errorf("max_sessions 2: stats %+v", st)
	}
}

// TestNamedSessionWithoutInput: a session collector.sessions names in a
// protocol that no input receives (ERSPAN on a collector left at the
// default VXLAN input) is said at start and at reload: before, the
// collector started without a word and its files never came.
func TestNamedSessionWithoutInput(t *testing.T) {
	var log netlab.SyncBuffer
	named := map[Key]Session{{ProtoERSPAN, 100}: {Name: "core-switch"}, {ProtoGENEVE, 7}: {Name: "gwlb"}}
	c, _ := testCollector(t, Options{Logger: textLogger(&log), Named: named,
		Inputs: []Input{{Proto: ProtoVXLAN}, {Proto: ProtoGENEVE, Port: 0}}})
	want := `msg="session of a protocol no input receives" session=core-switch protocol=erspan id=100 input=gre`
	if got := log.String(); !strings.Contains(got, want) || strings.Contains(got, "session=gwlb") {
		t.Fatalf("start log does not say (only) that core-switch is not received:\n%s", got)
	}
	before := len(log.String())
	c.Reload(map[Key]Session{{ProtoGRE, 42}: {Name: "bridge"}})
	want = `msg="session of a protocol no input receives" session=bridge protocol=gre id=42 input=gre`
	if got := log.String()[before:]; !strings.Contains(got, want) {
		t.Fatalf("reload log does not say bridge is not received:\n%s", got)
	}
}
