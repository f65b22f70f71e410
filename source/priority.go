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
// never unlocks the thread, so no other goroutine runs on it and the runtime
// ends the thread with the goroutine; while it is locked, the runtime makes
// new threads from a template thread, never by cloning this one, so none
// inherits SCHED_IDLE. The one thread Go cannot end is the main thread, which
// it parks for good instead: the returned function tries to put the thread
// back at normal priority for that case. Without CAP_SYS_NICE (the source's
// unit) the kernel refuses, and that is fine: a parked thread runs nothing.
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
			slog.Debug("sender thread stays SCHED_IDLE until it ends", "err", err)
		}
	}
}

// setPolicy sets the scheduling policy of the calling thread.
func setPolicy(policy uint32) error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
