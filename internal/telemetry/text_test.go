// SPDX-License-Identifier: Apache-2.0

package telemetry

import (
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	in := `# HELP x
# TYPE xmirror_lb_packets_total counter
xmirror_lb_packets_total{backend="ECS-target-01",odd="a}b"} 12
xmirror_lb_packets_total{backend="ECS-target-02"} 10
xmirror_collector_files_total 2
xmirror_zero 0
go_goroutines 7
broken{ 1
novalue
xmirror_nan NaN
`
	s, err := ParseText(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 5 {
		t.Fatalf("got %d samples: %v", len(s), s)
	}
	if s[0].Labels != `backend="ECS-target-01",odd="a}b"` || s[0].Value != 12 {
		t.Errorf("first sample %+v", s[0])
	}
	if got := Sum(s, "xmirror_lb_packets_total"); got != 22 {
		t.Errorf("sum %v", got)
	}
	if got := Sum(s, "xmirror_lb_packets_total", `backend="ECS-target-02"`); got != 10 {
		t.Errorf("sum by label %v", got)
	}
	if got := s[2].String(); got != "xmirror_collector_files_total 2" {
		t.Errorf("String() = %q", got)
	}
}

func TestSampleLabel(t *testing.T) {
	s := Sample{Labels: `session="a \"quoted\", name",filter="f}",direction="outbound"`}
	for key, want := range map[string]string{"session": `a "quoted", name`, "filter": "f}", "direction": "outbound", "none": ""} {
		if got := s.Label(key); got != want {
			t.Errorf("Label(%q) = %q, want %q", key, got, want)
		}
	}
	for _, bad := range []string{`session=a`, `session="open`, `=`, `session="\q"`} {
		if got := (Sample{Labels: bad}).Label("session"); got != "" {
			t.Errorf("Label of %q = %q, want nothing", bad, got)
		}
	}
}

func FuzzParseText(f *testing.F) {
	f.Add("xmirror_a{b=\"c\"} 1\n# c\nx 2 123\n")
	f.Add("a{\"\\\"}\"} 1")
	f.Fuzz(func(t *testing.T, in string) {
		s, _ := ParseText(strings.NewReader(in))
		for _, x := range s {
			if x.Name == "" {
				t.Fatalf("sample without a name from %q", in)
			}
			_ = x.String()
			_ = x.Label("b")
		}
	})
}
