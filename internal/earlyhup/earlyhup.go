// SPDX-License-Identifier: Apache-2.0

// Package earlyhup catches SIGHUP from the moment the program initialises,
// so that a reload signal sent while a part is still starting is not the
// default action, which ends the process.
//
// The parts reload on SIGHUP, and catch it from runPart on; before that the
// binary spends 60–110 ms in package initialisation and reading its
// configuration (gopacket's layer tables alone take 25–55 ms). A SIGHUP in
// that window ended the process with "Hangup", exit status 129, and systemd
// counts a death by SIGHUP as clean: `Restart=on-failure` did not start it
// again. `systemctl restart` then `systemctl reload` (a configuration
// manager's handlers, logrotate's postrotate) left the part down for good.
//
// Import it for its side effect from package main; runPart calls Handover
// once the part catches SIGHUP itself, every other command Release.
package earlyhup

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

var (
	caught = make(chan os.Signal, 1)
	once   sync.Once
)

func init() { signal.Notify(caught, syscall.SIGHUP) }

// stop ends the early catch and says whether a SIGHUP arrived during it;
// only the first call can say so.
func stop() bool {
	got := false
	once.Do(func() {
		signal.Stop(caught)
		select {
		case <-caught:
			got = true
		default:
		}
	})
	return got
}

// Handover ends the early catch; the caller catches SIGHUP already. It
// reports whether one arrived before: the caller owes it a reload.
func Handover() bool { return stop() }

// Release ends the early catch for a command that does not reload on
// SIGHUP: from now on SIGHUP has its default action again, and one that
// arrived meanwhile has it now.
func Release() {
	if stop() {
		signal.Reset(syscall.SIGHUP)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
	}
}
