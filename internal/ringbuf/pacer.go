// SPDX-License-Identifier: Apache-2.0

package ringbuf

import (
	"sync/atomic"
	"time"
)

// Pacer paces a reader the way both of xmirror's ring readers look at their
// ring: on a short tick while records flow, so records below the programs'
// wakeup mark wait at most a tick; after IdleLooks empty looks, asleep
// until a program wakes the reader (the programs force a wakeup while their
// ring_idle flag is set), or IdleWait at the most.
type Pacer struct {
	Tick      time.Duration  // wait while records flow
	IdleWait  time.Duration  // the longest sleep once idle
	IdleLooks int            // empty looks before the reader sleeps
	SetIdle   func(v uint32) // stores the programs' ring_idle flag
	empty     int            // empty looks in a row
	fence     atomic.Int32   // orders the store of ring_idle before the look at the ring
}

// Wait waits on r until the next look. mayIdle false keeps the reader on
// its tick (a caller that holds records back). It returns r.Wait's error.
func (p *Pacer) Wait(r *Reader, mayIdle bool) error {
	wait := p.Tick
	sleeping := mayIdle && p.empty >= p.IdleLooks
	if sleeping {
		// Announce the sleep, then look once more: a record submitted
		// before the program saw the flag woke nobody. The locked add
		// orders the two, as the program's submit does on its side.
		p.SetIdle(1)
		p.fence.Add(1)
		wait = p.IdleWait
		if r.Available() > 0 {
			wait = 0
		}
	}
	err := r.Wait(wait)
	if sleeping {
		p.SetIdle(0)
	}
	return err
}

// Looked records how many records the last look found.
func (p *Pacer) Looked(n int) {
	if n > 0 {
		p.empty = 0
	} else {
		p.empty++
	}
}
