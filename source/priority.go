// SPDX-License-Identifier: Apache-2.0

package source

import (
	"log/slog"
	"runtime"

	"golang.org/x/sys/unix"
)

// Priorities of the goroutine that sends the mirrored packets (datapaths
// ring and perf), Options.SendPriority.
const (
	// PriorityIdle runs the sender as SCHED_IDLE: it takes only CPU time
	// the host's own work leaves, as a cloud mirror puts production traffic
	// first. On a CPU kept fully busy the ring fills and mirrored packets are
	// dropped and counted (xmirror_source_errors_total) before the mirrored
	// traffic slows down.
	PriorityIdle = "idle"
	// PriorityNormal runs the sender like any other thread of the host.
	PriorityNormal = "normal"

	// DefaultPriority is the priority New uses when Options.SendPriority is
	// empty.
	DefaultPriority = PriorityIdle
)

// Priorities lists the valid values of Options.SendPriority.
var Priorities = []string{PriorityIdle, PriorityNormal}

// senderThread gives the calling goroutine a thread of its own at the
// sender's priority and returns what the goroutine runs last. The goroutine
// never unlocks the thread, so the thread ends with it; but the runtime may
// clone a new thread from it as it ends, and a clone keeps SCHED_IDLE, so
// the returned function puts the thread back at normal priority first.
func senderThread(priority string) (restore func()) {
	if priority != PriorityIdle {
		return func() {}
	}
	runtime.LockOSThread()
	if err := setPolicy(unix.SCHED_IDLE); err != nil {
		slog.Warn("sender stays at normal priority", "err", err)
		return func() {}
	}
	return func() {
		if err := setPolicy(unix.SCHED_NORMAL); err != nil {
			slog.Warn("sender back to normal priority", "err", err)
		}
	}
}

// setPolicy sets the scheduling policy of the calling thread.
func setPolicy(policy uint32) error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
