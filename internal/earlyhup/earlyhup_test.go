// SPDX-License-Identifier: Apache-2.0

package earlyhup

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestReleaseKeepsDefault: a command that does not reload still ends on a
// SIGHUP that came while it started (the default, as before earlyhup), and
// on one that comes later. The test binary runs itself as that command.
func TestReleaseKeepsDefault(t *testing.T) {
	switch os.Getenv("EARLYHUP_HELPER") {
	case "early":
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond) // held, not the default
		Release()
		time.Sleep(5 * time.Second)
		os.Exit(0)
	case "late":
		Release()
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		time.Sleep(5 * time.Second)
		os.Exit(0)
	}
	for _, when := range []string{"early", "late"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReleaseKeepsDefault$")
		cmd.Env = append(os.Environ(), "EARLYHUP_HELPER="+when)
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Errorf("%s: the command was not ended by SIGHUP: %v", when, err)
			continue
		}
		if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGHUP {
			t.Errorf("%s: ended by %v, want SIGHUP", when, err)
		}
	}
}

// TestHandoverReportsEarly: a part that catches SIGHUP itself learns of
// the one that came before, and a later Release does not end it.
func TestHandoverReportsEarly(t *testing.T) {
	if os.Getenv("EARLYHUP_HELPER") == "handover" {
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond)
		if !Handover() {
			os.Exit(3)
		}
		Release()
		time.Sleep(100 * time.Millisecond)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHandoverReportsEarly$")
	cmd.Env = append(os.Environ(), "EARLYHUP_HELPER=handover")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("handover: %v (exit 3: the early SIGHUP was not reported)\n%s", err, out)
	}
}
