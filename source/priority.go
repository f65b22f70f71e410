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
// sender's priority. The goroutine never unlocks it, so the thread ends with
// the goroutine and its policy reaches no other goroutine.
func senderThread(priority string) {
	if priority != PriorityIdle {
		return
	}
	runtime.LockOSThread()
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		slog.Warn("sender stays at normal priority", "err", err)
	}
}
