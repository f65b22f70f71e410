// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/telemetry"
)

func TestDeriveConfigFromTheSeed(t *testing.T) {
	b, err := deriveConfig(config.SeedYAML,
		edit{"load_balancer.affinity", "outer"},
		edit{"load_balancer.health_check.enabled", "true"},
		edit{"load_balancer.health_check.interval", "1s"},
		edit{"load_balancer.health_check.timeout", "500ms"},
		edit{"source.hash", "directional"}, // a section the seed does not have
		edit{"collector.output_dir", "/tmp/x y/ECS-target-01"},
		edit{"metrics.listen", "192.168.0.6:9090"}, // inside a flow-style mapping
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatalf("derived configuration does not parse: %v\n%s", err, b)
	}
	lb := cfg.LoadBalancer
	if lb.Affinity != "outer" || !lb.HealthCheck.Enabled || lb.HealthCheck.Interval.D() != time.Second {
		t.Errorf("load balancer edits lost: %+v", lb)
	}
	if cfg.Source == nil || cfg.Source.Hash != "directional" {
		t.Errorf("source.hash not set: %+v", cfg.Source)
	}
	if cfg.Collector.OutputDir != "/tmp/x y/ECS-target-01" || cfg.Metrics.Listen != "192.168.0.6:9090" {
		t.Errorf("collector edits lost: %+v %+v", cfg.Collector, cfg.Metrics)
	}
	// Everything else is the seed, comments included.
	if cfg.Sessions[0].VNI != 1 || cfg.Sessions[0].PacketLength != 96 || len(lb.Backends) != 2 || lb.Algorithm != "wrr" {
		t.Errorf("seed values lost: %+v", cfg.Sessions[0])
	}
	if !strings.Contains(string(b), "# Table 5: mirror-filter-01") {
		t.Error("comments lost")
	}
	if err := checkSeed(cfg); err != nil {
		t.Errorf("the seed does not fit the demo: %v", err)
	}
}

func TestCheckSeedRefusesOtherAddresses(t *testing.T) {
	for _, tc := range []struct{ path, value, want string }{
		{"load_balancer.listener.vip", "10.0.0.1", "vip"},
	} {
		b, err := deriveConfig(config.SeedYAML, edit{tc.path, tc.value})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if err := checkSeed(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: got %v, want an error about %s", tc.path, tc.value, err, tc.want)
		}
	}
	if _, err := deriveConfig([]byte("- a\n- b\n"), edit{"x", "y"}); err == nil {
		t.Error("a sequence document was edited")
	}
	if _, err := deriveConfig([]byte("a: 1\n"), edit{"a.b", "y"}); err == nil {
		t.Error("a scalar was treated as a mapping")
	}
}

func TestInteresting(t *testing.T) {
	s, err := telemetry.ParseText(strings.NewReader(`# TYPE xmirror_lb_packets_total counter
xmirror_lb_packets_total{backend="ECS-target-01",odd="a}b"} 12
xmirror_lb_packets_total{backend="ECS-target-02"} 10
xmirror_collector_files_total 2
xmirror_zero 0
go_goroutines 7
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := Interesting(s); len(got) != 3 || got[2].String() != "xmirror_collector_files_total 2" {
		t.Errorf("interesting %v", got)
	}
}

func FuzzDeriveConfig(f *testing.F) {
	f.Add(string(config.SeedYAML), "load_balancer.affinity", "outer")
	f.Add("a: {b: 1}\n", "a.c.d", "x: y")
	f.Fuzz(func(t *testing.T, doc, path, value string) {
		if path == "" {
			return
		}
		b, err := deriveConfig([]byte(doc), edit{path, value})
		if err != nil {
			return
		}
		// The result is YAML that reads back with the value where it was put.
		if _, err := deriveConfig(b); err != nil {
			t.Fatalf("derived document does not parse: %v\n%s", err, b)
		}
	})
}
