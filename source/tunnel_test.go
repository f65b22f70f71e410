// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/config"
)

// skbContext is the head of struct __sk_buff as BPF_PROG_TEST_RUN accepts it:
// only mark, priority and the ifindexes may be set.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority, IngressIfindex, Ifindex uint32
}

func TestTunnelProgram(t *testing.T) {
	cfg := mustParse(t, oneSession(`{priority: 1, action: accept, protocol: all}`, ``))
	s := testSource(t, cfg)
	id := uint32(s.ids["s1"])
	mark := func(dir, ifindex uint32) uint32 { return markMagic | dir<<26 | id<<16 | ifindex }
	long := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	short := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 10)

	for _, c := range []struct {
		name    string
		frame   []byte
		mark    uint32
		wantRet int32
		wantOut []byte
		counter func(sourceCounters) uint64
	}{
		{"cut to the session length", long, mark(uint32(dirOut), 1), 0, long[:96], func(c sourceCounters) uint64 { return c.Cut }},
		{"shorter frame kept whole", short, mark(uint32(dirIn), 1), 0, short, func(c sourceCounters) uint64 { return c.Packets }},
		{"foreign packet dropped", long, 0x1234, 2, nil, nil},
		{"tunnel mark dropped", long, uint32(config.DefaultMark), 2, nil, nil},
		{"unknown source interface dropped", long, mark(uint32(dirIn), 77), 2, nil, func(c sourceCounters) uint64 { return c.Errors }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := sumCounters(t, s, id)
			out := make([]byte, len(c.frame)+256)
			opts := &ebpf.RunOptions{Data: c.frame, DataOut: out, Context: skbContext{Mark: c.mark}}
			ret, err := s.objs.XmTunnel.Run(opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if int32(ret) != c.wantRet {
				t.Fatalf("returned %d, want %d", int32(ret), c.wantRet)
			}
			if c.wantOut != nil && !bytes.Equal(opts.DataOut, c.wantOut) {
				t.Errorf("output %d bytes, want %d:\n %x\n %x", len(opts.DataOut), len(c.wantOut), opts.DataOut, c.wantOut)
			}
			if c.counter != nil {
				after := sumCounters(t, s, id)
				if c.counter(after) != c.counter(before)+1 {
					t.Errorf("counter did not move: %+v -> %+v", before, after)
				}
			}
		})
	}
}

// sumCounters sums the counters of session id over CPUs and directions.
func sumCounters(t *testing.T, s *Source, id uint32) sourceCounters {
	t.Helper()
	var sum sourceCounters
	for dir := uint32(0); dir < 2; dir++ {
		per := make([]sourceCounters, ebpf.MustPossibleCPU())
		if err := s.objs.XmCounters.Lookup(id*2+dir, &per); err != nil {
			t.Fatal(err)
		}
		for _, c := range per {
			sum.Packets += c.Packets
			sum.Cut += c.Cut
			sum.Errors += c.Errors
			sum.Direct += c.Direct
		}
	}
	return sum
}
