// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestBootToWallOffset: a reading preempted between the boot and wall clock
// reads (the first sample here, 3 ms late) does not set the offset; the
// narrowest sample does. With one sample, a loaded host could put the XDP
// path's stamps milliseconds off the socket path's kernel stamps.
func TestBootToWallOffset(t *testing.T) {
	const offset = 1_700_000_000_000_000_000
	boot := int64(5_000_000_000)
	sample := 0
	read := func(clock int32) int64 {
		switch clock {
		case unix.CLOCK_BOOTTIME:
			boot += 100
			return boot
		case unix.CLOCK_REALTIME:
			sample++
			if sample == 1 {
				boot += 3_000_000 // preempted after the first boot read
			}
			boot += 100
			return boot + offset
		}
		t.Fatalf("clock %d", clock)
		return 0
	}
	got := bootToWallOffset(read)
	if d := got - offset; d < -200 || d > 200 {
		t.Fatalf("offset off by %d ns", d)
	}
}
