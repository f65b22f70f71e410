// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"io"
	"time"
)

// Datapaths: where the cut copy of a packet is encapsulated.
const (
	// DatapathRing has the program write the cut frame, with its outer
	// IPv4/UDP/VXLAN headers in front, into one BPF ring buffer; user space
	// only sends the packets, in batches (sendmmsg, UDP GSO), and is woken
	// once per batch rather than once per packet (ring.go).
	DatapathRing = "ring"
	// DatapathKernel clones the packet to a VXLAN device, cuts the clone
	// and lets the vxlan driver encapsulate it (kernel.go).
	DatapathKernel = "kernel"
	// DatapathPerf copies only the cut frame to a per-CPU perf buffer and
	// encapsulates it in user space (raw socket). Cutting a clone copies the
	// whole packet, which is expensive for large GSO packets; this copies
	// only the bytes kept (perfbuf.go).
	DatapathPerf = "perf"

	// DefaultDatapath is the datapath New uses when Options.Datapath is
	// empty: ring, the cheapest by measurement with offloads on and off
	// (docs/source.md, "Performance").
	DefaultDatapath = DatapathRing
)

// Datapaths lists the valid values of Options.Datapath.
var Datapaths = []string{DatapathRing, DatapathKernel, DatapathPerf}

// The programs' names of the datapaths (state.datapath).
var datapathKinds = map[string]sourceXmDatapath{
	DatapathRing:   sourceXmDatapathXM_DATAPATH_RING,
	DatapathKernel: sourceXmDatapathXM_DATAPATH_KERNEL,
	DatapathPerf:   sourceXmDatapathXM_DATAPATH_PERF,
}

// A datapath carries out one of the Datapath* modes: it owns what the mode
// needs besides the programs (a VXLAN device, a reader and sockets) and
// counts what fails on its side.
type datapath interface {
	// name is its Datapath* name.
	name() string
	// fill writes its part of the programs' state.
	fill(st *sourceState)
	// running tells it the program the data path runs from now on.
	running(prog *Program)
	// errors is the number of packets of a session and direction it
	// failed to send.
	errors(id uint16, dir int) uint64
	// writeMetrics writes its own metrics (Prometheus text).
	writeMetrics(w io.Writer)
	close() error
}

// settings are the checked Options of one source.
type settings struct {
	datapath string
	attach   string        // Attach*
	priority string        // of the user-space sender
	maxDelay time.Duration // datapath ring: the reader's look interval
}

// check fills in the defaults of opts and refuses values out of range.
func (o Options) check() (settings, error) {
	st := settings{datapath: o.Datapath, priority: o.SendPriority, maxDelay: o.MaxDelay}
	if st.datapath == "" {
		st.datapath = DefaultDatapath
	}
	switch o.Attach {
	case "":
		st.attach = AttachAuto
	case AttachAuto, AttachTCX, AttachTC:
		st.attach = o.Attach
	default:
		return st, fmt.Errorf("%w: attach %q is not %s, %s or %s", ErrConfig, o.Attach, AttachAuto, AttachTCX, AttachTC)
	}
	if _, ok := datapathKinds[st.datapath]; !ok {
		return st, fmt.Errorf("%w: datapath %q is not %s, %s or %s", ErrConfig, o.Datapath, DatapathKernel, DatapathRing, DatapathPerf)
	}
	switch d := st.maxDelay; {
	case d == 0:
		st.maxDelay = DefaultMaxDelay
	case d < MinMaxDelay || d > MaxMaxDelay:
		return st, fmt.Errorf("%w: max delay %v is not between %v and %v", ErrConfig, d, MinMaxDelay, MaxMaxDelay)
	}
	switch o.SendPriority {
	case "":
		st.priority = DefaultPriority
	case PriorityIdle, PriorityNormal:
	default:
		return st, fmt.Errorf("%w: send priority %q is not %s or %s", ErrConfig, o.SendPriority, PriorityIdle, PriorityNormal)
	}
	return st, nil
}

// startDatapath starts the datapath of set in the caller's network
// namespace, on the loaded programs.
func (s *Source) startDatapath(set settings) (datapath, error) {
	switch set.datapath {
	case DatapathKernel:
		return startKernel(&s.objs, s.devName, &s.attacher)
	case DatapathPerf:
		return startPerf(&s.objs, s.mark, set.priority)
	default:
		// Nothing keeps next hops that no program would use.
		return startRing(&s.objs, s.mark, set.priority, set.maxDelay, !s.noDirect && set.attach != AttachTC)
	}
}
