// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/config"
)

// runCaptured runs the CLI as main would and returns its exit code, stdout and
// stderr. It swaps os.Stdout/os.Stderr, so tests using it must not be parallel.
func runCaptured(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
	code = run(append([]string{"xmirror"}, args...))
	outF.Close()
	errF.Close()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return code, string(o), string(e)
}

func TestCheckSeed(t *testing.T) {
	code, out, errOut := runCaptured(t, "check", "--config", "../../config/examples/seed.yaml")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	// The output is the effective config: it parses, and defaults are filled in.
	cfg, err := config.Parse([]byte(out))
	if err != nil {
		t.Fatalf("check output does not parse: %v\n%s", err, out)
	}
	if cfg.SessionByVNI(1) == nil || cfg.LoadBalancer == nil || len(cfg.LoadBalancer.Backends) != 2 {
		t.Errorf("effective config lost the seed's content:\n%s", out)
	}
	for _, want := range []string{"maglev_table_size: 65537", "mark: 0x786d6972", "destination_ports: 1234", "size: 100MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckBroken(t *testing.T) {
	code, out, errOut := runCaptured(t, "check", "--config", "../../config/examples/broken.yaml")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitUsage, out, errOut)
	}
	if out != "" {
		t.Errorf("printed a config for a broken file:\n%s", out)
	}
	_, err := config.Load("../../config/examples/broken.yaml")
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) < 10 {
		t.Fatalf("broken.yaml: want many config.Errors, got %v", err)
	}
	if !strings.Contains(errOut, fmt.Sprintf("%d errors:\n", len(errs))) {
		t.Errorf("stderr lacks the error count:\n%s", errOut)
	}
	for _, e := range errs {
		if !strings.Contains(errOut, "\n  "+e.Error()+"\n") && !strings.HasSuffix(errOut, "\n  "+e.Error()+"\n") {
			t.Errorf("stderr lacks %q:\n%s", e.Error(), errOut)
		}
	}
}

func TestCheckUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"missing file", []string{"check", "--config", filepath.Join(t.TempDir(), "nope.yaml")}},
		{"no --config", []string{"check"}},
		{"unknown flag", []string{"check", "--config", "../../config/examples/seed.yaml", "--bogus"}},
		{"bad log level", []string{"--log-level", "loud", "version"}},
		// refused before anything starts, as the same value in the file is
		{"bad --metrics-listen", []string{"collect", "--out", t.TempDir(), "--metrics-listen", "bogus"}},
		{"bad --health-listen", []string{"collect", "--out", t.TempDir(), "--health-listen", ":99999"}},
		// rates over no time were printed as millions per second
		{"lb status --interval 0", []string{"lb", "status", "--pin-path", t.TempDir(), "--interval", "0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errOut := runCaptured(t, tc.args...); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCaptured(t, "version")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := "xmirror " + version + " (commit " + commit + ")\n"; out != want {
		t.Errorf("version printed %q, want %q", out, want)
	}
}

// TestCheckRefusesWhatSourceRefuses: check and source share one validation,
// so check refuses a configuration source could not run.
func TestCheckRefusesWhatSourceRefuses(t *testing.T) {
	seed, err := os.ReadFile("../../config/examples/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules strings.Builder
	for i := 1; i <= config.MaxSourceRules+1; i++ {
		fmt.Fprintf(&rules, "      - {priority: %d, action: accept, protocol: tcp}\n", i)
	}
	many := "filters:\n  - name: f\n    inbound:\n" + rules.String() +
		"sessions:\n  - {name: s, priority: 1, vni: 1, filter: f, sources: [eth0], target: 192.168.0.147}\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"target port", strings.Replace(string(seed), "target: 192.168.0.147", "target: 192.168.0.147:4790", 1), "port 4790"},
		{"rules", many, "8193 inbound rules"},
		{"mark of a clone", string(seed) + "source: {mark: 0xB0000001}\n", "collides with the marks of xmirror's clones"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCaptured(t, "check", "--config", path)
			if code != exitUsage || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, exitUsage, c.want, errOut)
			}
		})
	}
}

// TestCheckRefusesWhatCollectRefuses: check and collect share one
// validation of the collector section: a file name template collect could
// not use is refused by both, with its field path and line. Before, check
// passed it and collect exited 2 without a line.
func TestCheckRefusesWhatCollectRefuses(t *testing.T) {
	for _, c := range []struct{ tmpl, want string }{
		{"{session}/{time}", `collector.file_name: "{session}/{time}": only`},
		{"{session}-{host}", `collector.file_name: "{session}-{host}" must contain {time} once`},
	} {
		path := filepath.Join(t.TempDir(), "x.yaml")
		yaml := "collector:\n  output_dir: " + t.TempDir() + "\n  file_name: '" + c.tmpl + "'\nmetrics: {listen: 'off'}\n"
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"check", "collect"} {
			code, _, errOut := runCaptured(t, cmd, "--config", path)
			if code != exitUsage || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "(line 3)") {
				t.Errorf("%s %q: exit %d, want %d with %q (line 3); stderr:\n%s", cmd, c.tmpl, code, exitUsage, c.want, errOut)
			}
		}
	}
}
