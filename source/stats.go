// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/cilium/ebpf"
)

// Stats are the counters of one session in one direction, summed over CPUs.
type Stats struct {
	Session     string
	Filter      string
	Direction   string // inbound | outbound
	Packets     uint64 // mirrored
	Bytes       uint64 // mirrored bytes (after cutting)
	Cut         uint64 // mirrored frames that were cut
	Direct      uint64 // of Packets, sent directly from the kernel (datapath ring, bpf/direct.h)
	RateLimited uint64 // accepted but not mirrored: over the rate limit
	Errors      uint64
}

// Stats reads the counters of every configured session, by session priority.
func (s *Source) Stats() ([]Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Stats
	per := make([]sourceCounters, ebpf.MustPossibleCPU())
	for _, sess := range enabledSessionsAll(s) {
		id := s.ids[sess]
		for dir := uint32(0); dir < 2; dir++ {
			if err := s.objs.XmCounters.Lookup(uint32(id)*2+dir, &per); err != nil {
				return nil, fmt.Errorf("read counters of %s: %w", sess, err)
			}
			st := Stats{Session: sess, Filter: s.filterOf(sess), Direction: dirName(int(dir))}
			for _, c := range per {
				st.Packets += c.Packets
				st.Bytes += c.Bytes
				st.Cut += c.Cut
				st.Direct += c.Direct
				st.RateLimited += c.Ratelimited
				st.Errors += c.Errors
			}
			if s.dp != nil {
				st.Errors += s.dp.errors(id, int(dir))
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// enabledSessionsAll lists every session of the running configuration (enabled
// or not: a disabled session keeps its counters) by priority.
func enabledSessionsAll(s *Source) []string {
	if s.cfg == nil {
		return nil
	}
	sessions := append(s.cfg.Sessions[:0:0], s.cfg.Sessions...)
	sort.SliceStable(sessions, func(i, j int) bool { return sessions[i].Priority < sessions[j].Priority })
	names := make([]string, 0, len(sessions))
	for _, x := range sessions {
		if _, ok := s.ids[x.Name]; ok {
			names = append(names, x.Name)
		}
	}
	return names
}

func (s *Source) filterOf(session string) string {
	for _, x := range s.cfg.Sessions {
		if x.Name == session {
			return x.Filter
		}
	}
	return ""
}

// WriteMetrics writes the counters in the Prometheus text format; register it
// with metrics.Set.RegisterMetricsWriter so /metrics reads the maps on scrape.
func (s *Source) WriteMetrics(w io.Writer) {
	stats, err := s.Stats()
	if err != nil {
		return
	}
	type metric struct {
		name, help string
		val        func(Stats) uint64
	}
	for _, m := range []metric{
		{"xmirror_source_mirrored_packets_total", "Packets mirrored to the target.", func(x Stats) uint64 { return x.Packets }},
		{"xmirror_source_mirrored_bytes_total", "Bytes of mirrored frames after cutting.", func(x Stats) uint64 { return x.Bytes }},
		{"xmirror_source_cut_packets_total", "Mirrored frames cut to the session length.", func(x Stats) uint64 { return x.Cut }},
		{"xmirror_source_direct_packets_total", "Of the mirrored packets, those the ring datapath sent directly from the kernel (whole frames, next hop resolved).", func(x Stats) uint64 { return x.Direct }},
		{"xmirror_source_ratelimited_packets_total", "Accepted packets not mirrored because of the session rate limit.", func(x Stats) uint64 { return x.RateLimited }},
		{"xmirror_source_errors_total", "Packets the data path failed to clone or encapsulate.", func(x Stats) uint64 { return x.Errors }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for _, x := range stats {
			fmt.Fprintf(w, "%s{session=%q,filter=%q,direction=%q} %d\n", m.name, x.Session, x.Filter, x.Direction, m.val(x))
		}
	}
	s.mu.Lock()
	prog, dp, watch, missing := s.prog, s.dp, s.watch, s.missing
	var names []string // the source interfaces of the configuration
	if s.cfg != nil {
		names = sourceNames(s.cfg)
	}
	s.mu.Unlock()
	if prog != nil {
		fmt.Fprintf(w, "# HELP xmirror_source_rules Compiled filter rules in the data path.\n# TYPE xmirror_source_rules gauge\n")
		fmt.Fprintf(w, "xmirror_source_rules{direction=\"inbound\"} %d\n", len(prog.Rules[dirIn]))
		fmt.Fprintf(w, "xmirror_source_rules{direction=\"outbound\"} %d\n", len(prog.Rules[dirOut]))
		attached := 0
		for _, name := range prog.IfNames {
			if missing[name] == nil {
				attached++
			}
		}
		fmt.Fprintf(w, "# HELP xmirror_source_interfaces Interfaces with the source programs attached.\n# TYPE xmirror_source_interfaces gauge\n")
		fmt.Fprintf(w, "xmirror_source_interfaces %d\n", attached)
		fmt.Fprintf(w, "# HELP xmirror_source_interface_up Whether a source interface of the configuration is mirrored (0: it is gone or cannot be a source now).\n# TYPE xmirror_source_interface_up gauge\n")
		for _, name := range names {
			fmt.Fprintf(w, "xmirror_source_interface_up{interface=%q} %d\n", name, upGauge(missing[name] == nil))
		}
		fmt.Fprintf(w, "# HELP xmirror_source_interface_problem Why a source interface is not mirrored (detail), 1 while it lasts.\n# TYPE xmirror_source_interface_problem gauge\n")
		for _, name := range names {
			if why := missing[name]; why != nil {
				fmt.Fprintf(w, "xmirror_source_interface_problem{interface=%q,detail=%q} 1\n", name, why.Error())
			}
		}
	}
	if dp != nil {
		dp.writeMetrics(w)
	}
	if watch != nil {
		watch.writeMetrics(w)
	}
}

// Targets returns the health of the targets of the running configuration.
func (s *Source) Targets() []TargetHealth {
	s.mu.Lock()
	watch := s.watch
	s.mu.Unlock()
	if watch == nil {
		return nil
	}
	return watch.health()
}

// Ready is nil while the source runs and every target looks reachable, else
// what is wrong: what /healthz answers.
func (s *Source) Ready() error {
	s.mu.Lock()
	watch, missing := s.watch, s.missing
	s.mu.Unlock()
	if watch == nil {
		return errors.New("not running")
	}
	return errors.Join(missingError(missing), watch.ready())
}

func upGauge(up bool) int {
	if up {
		return 1
	}
	return 0
}
