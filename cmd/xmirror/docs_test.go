// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"strings"
	"testing"
)

// TestManAndCompletion: the man page and the completion come from the command
// definitions, so every command is in them.
func TestManAndCompletion(t *testing.T) {
	code, man, errOut := runCaptured(t, "man")
	if code != exitOK || !strings.HasPrefix(man, ".nh\n.TH xmirror 8") {
		t.Fatalf("man: exit %d, %q\n%s", code, man[:min(len(man), 80)], errOut)
	}
	for _, cmd := range []string{"source", "lb", "collect", "check", "bench", "demo", "version", "--system", "--health-listen"} {
		if !strings.Contains(man, cmd) {
			t.Errorf("man page lacks %q", cmd)
		}
	}
	for shell, want := range map[string]string{"bash": "complete -o bashdefault -o default -F _xmirror xmirror", "zsh": "#compdef xmirror", "fish": "complete -c xmirror"} {
		if code, out, _ := runCaptured(t, "completion", shell); code != exitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, lacks %q", shell, code, want)
		}
	}
	if code, _, _ := runCaptured(t, "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, exitUsage)
	}
	// What the bash script asks the binary for.
	out, err := helperCmd(context.Background(), nil, "lb", "--generate-bash-completion").Output()
	if err != nil || !strings.Contains(string(out), "status\ndetach\n") {
		t.Errorf("lb completion candidates: %q, %v", out, err)
	}
}

func TestVersionFlagAndUnknownCommand(t *testing.T) {
	if code, out, _ := runCaptured(t, "--version"); code != exitOK || !strings.Contains(out, version) || !strings.Contains(out, commit) {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	code, out, errOut := runCaptured(t, "bogus")
	if code != exitUsage || !strings.Contains(errOut, `unknown command "bogus"`) || out != "" {
		t.Errorf("unknown command: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, args := range [][]string{{"lb", "statu"}, {"check", "bogus", "--config", "x.yaml"}, {"source", "status", "extra"}, {"collect", "out"}} {
		if code, _, errOut := runCaptured(t, args...); code != exitUsage || !strings.Contains(errOut, "takes no arguments, got") && !strings.Contains(errOut, "unknown subcommand") {
			t.Errorf("%v: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
	if code, out, _ := runCaptured(t); code != exitOK || !strings.Contains(out, "COMMANDS:") {
		t.Errorf("no command: exit %d, want the help:\n%s", code, out)
	}
}
