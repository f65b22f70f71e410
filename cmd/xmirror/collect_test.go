// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestCollectUsage: collect's flags are held to the rules of the file's
// keys and exit 2 naming the flag, as a bad value in the file does. Before,
// these started the collector and failed at runtime with exit 1 (or, for
// --readers 5000, ran with 5000 sockets).
func TestCollectUsage(t *testing.T) {
	// A /metrics address in use stops a collector that got past the
	// checks before it runs (exit 1), so no case can hang.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	badGroup := filepath.Join(t.TempDir(), "group.yaml")
	if err := os.WriteFile(badGroup, []byte("collector:\n  output_dir: "+t.TempDir()+"\n  group: nosuchgroup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"listen without port", []string{"--listen", "127.0.0.1"}, `--listen: "127.0.0.1" is not host:port`},
		{"group", []string{"--group", "nosuchgroup"}, `--group: "nosuchgroup" is no group on this host`},
		{"group in the file", []string{"--config", badGroup}, `collector.group: "nosuchgroup" is no group on this host`},
		{"xdp on every address", []string{"--receive", "xdp", "--listen", "0.0.0.0:46000"},
			`--receive: xdp needs a listen address an interface holds; listen "0.0.0.0:46000" is the wildcard`},
		{"readers above the file's range", []string{"--readers", "5000"}, "--readers: 5000 is out of range 0..1024"},
		{"readers beyond open files", []string{"--readers", "100000"}, "--readers: 100000 is out of range 0..1024"},
		{"max sessions", []string{"--max-sessions", "-1"}, "--max-sessions: -1 is out of range 1..1048576"},
		{"max sessions 0", []string{"--max-sessions", "0"}, "--max-sessions: 0 is out of range 1..1048576"},
		{"keep", []string{"--keep", "-1"}, "--keep: -1 is negative"},
		{"file name", []string{"--file-name", "{session}/{time}"}, `--file-name: "{session}/{time}": only`},
		{"tap", []string{"--tap", "a/b"}, `--tap: "a/b" is not an interface name`},
		{"input on the vxlan port", []string{"--listen", "127.0.0.1:46001", "--input", "vxlan", "--input", "geneve:46001"},
			"--input: 46001 is collector.listen's port, where vxlan is received"},
		{"several", []string{"--readers", "5000", "--listen", "127.0.0.1"}, "2 errors:\n  "},
		// the second bind failed at start, exit 1
		{"health on the metrics port", []string{"--health-listen", fmt.Sprintf(":%d", busy.Addr().(*net.TCPAddr).Port)}, "takes the TCP port of --metrics-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"collect", "--out", t.TempDir(), "--metrics-listen", busy.Addr().String()}, tc.args...)
			code, _, errOut := runCaptured(t, args...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, exitUsage, tc.want, errOut)
			}
		})
	}
}

// TestCollectFlagKeys: every flag an error may be named by is a flag of
// collect.
func TestCollectFlagKeys(t *testing.T) {
	flags := map[string]bool{}
	for _, f := range collectCommand().Flags {
		for _, n := range f.Names() {
			flags[n] = true
		}
	}
	for flag := range collectFlagKeys {
		if !flags[flag] {
			t.Errorf("collectFlagKeys names --%s, which collect does not have", flag)
		}
	}
}

// TestCollectLiveIgnoresInstalledConfig: `--write` without --out and
// --config writes no files (docs/collector.md), also on a host where the
// package installed /etc/xmirror/xmirror.yaml: that file was read, so the
// command served its metrics and wrote its files (or failed on its busy
// metrics port while the service ran).
func TestCollectLiveIgnoresInstalledConfig(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("needs unshare (Debian package util-linux): run make deps")
	}
	out := t.TempDir()
	etc := t.TempDir()
	yaml := "collector: {output_dir: " + out + "}\nmetrics: {listen: '127.0.0.1:46990'}\n"
	if err := os.WriteFile(filepath.Join(etc, "xmirror.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// The installed file, in a mount namespace of the test's own.
	wrap := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mkdir -p /etc/xmirror && mount --bind "$XM_ETC" /etc/xmirror && exec "$@"`, "sh"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := helperCmd(ctx, wrap, "collect", "--listen", "127.0.0.1:46991", "--write", os.DevNull)
	cmd.Env = append(cmd.Env, "XM_ETC="+etc)
	logs, _ := cmd.CombinedOutput()
	if strings.Contains(string(logs), "serving metrics") || strings.Contains(string(logs), out) {
		t.Errorf("--write alone read the installed configuration:\n%s", logs)
	}
	if !strings.Contains(string(logs), "collector listening") {
		t.Errorf("the live collector did not run:\n%s", logs)
	}
	if entries, _ := os.ReadDir(out); len(entries) > 0 {
		t.Errorf("--write alone wrote into the installed output_dir: %v", entries)
	}
}

// TestCollectStopSummary: the line `xmirror collect` logs when it stops
// names every reason packets were dropped for, with the total. Before, it
// named socket_drops, ring_full and writer_behind only: a run that lost
// 9,580 of 14,000 packets to write_error (too many open files) ended with
// "received=14000 written=4420 socket_drops=0 ring_full=0 writer_behind=0".
func TestCollectStopSummary(t *testing.T) {
	st := collector.Stats{Received: 14000, Written: 4420, SocketDrops: 3,
		Drops: map[string]uint64{"write_error": 9580, "session_limit": 17, "ring_full": 0, "short": 0}}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("collector stopped", stopSummary(st)...)
	for _, want := range []string{"received=14000", "written=4420", "socket_drops=3", "dropped=9597", "write_error=9580", "session_limit=17"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("stop summary %q lacks %s", b.String(), want)
		}
	}
	if strings.Contains(b.String(), "short=") {
		t.Errorf("stop summary %q names a reason without drops", b.String())
	}
}

// TestCollectReloadSettingsIgnoreLines: a SIGHUP after a session was added
// to sessions[] warned "the collector section changed; only its sessions
// apply now ..." whenever the file listed collector.inputs: their line
// numbers, which moved down with the new session, were compared as
// settings. Only what the section says counts.
func TestCollectReloadSettingsIgnoreLines(t *testing.T) {
	const session = "  - {name: %s, priority: %d, vni: %d, filter: f, sources: [eth0], target: 10.0.0.9}\n"
	yaml := func(sessions ...string) *config.Config {
		t.Helper()
		text := "filters: [{name: f}]\nsessions:\n" + strings.Join(sessions, "") +
			"collector:\n  output_dir: /tmp/pcap\n  inputs: [vxlan, geneve, {protocol: gre}]\n"
		cfg, err := config.Parse([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	one := sessionsOf(yaml(fmt.Sprintf(session, "a", 1, 1)))
	two := sessionsOf(yaml(fmt.Sprintf(session, "a", 1, 1), fmt.Sprintf(session, "b", 2, 2)))
	if !reflect.DeepEqual(one.settings, two.settings) {
		t.Errorf("adding a session changed the collector settings:\n%+v\n%+v", one.settings, two.settings)
	}
	if len(two.named) != 2 {
		t.Errorf("named sessions %v", two.named)
	}
}
