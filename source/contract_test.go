// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/xmirror/xmirror/config"
)

// TestContract checks the Go side of the boundary with the programs against
// the compiled object: the limits against the maps' sizes, the generated
// structs against the maps' value sizes and the BTF, so that a change on one
// side fails here instead of corrupting maps or records.
func TestContract(t *testing.T) {
	spec, err := loadSource()
	if err != nil {
		t.Fatal(err)
	}
	// config refuses a source.mark that looks like a clone's mark.
	if markMagic != config.CloneMarkMagic || markAnyMask != config.CloneMarkMask {
		t.Errorf("clone marks 0x%x/0x%x, config checks 0x%x/0x%x", markMagic, markAnyMask, config.CloneMarkMagic, config.CloneMarkMask)
	}
	for _, c := range []struct {
		m     string
		max   int
		value uintptr // 0: not checked
	}{
		{"xm_rules", 2 * 2 * MaxRules, unsafe.Sizeof(sourceRule{})},
		{"xm_sessions", 2 * MaxSessions, unsafe.Sizeof(sourceSession{})},
		{"xm_counters", 2 * MaxSessions, unsafe.Sizeof(sourceCounters{})},
		{"xm_buckets", MaxSessions, unsafe.Sizeof(sourceBucket{})},
		{"xm_ifaces", MaxIfaces, unsafe.Sizeof(sourceIface{})},
		{"xm_targets", MaxTargets, unsafe.Sizeof(uint32(0))},
		{"xm_state", 1, unsafe.Sizeof(sourceState{})},
		{"xm_decision", 1, unsafe.Sizeof(sourceDecision{})},
	} {
		m, ok := spec.Maps[c.m]
		if !ok {
			t.Errorf("map %s missing", c.m)
			continue
		}
		if int(m.MaxEntries) != c.max {
			t.Errorf("%s holds %d entries, Go's limits make %d", c.m, m.MaxEntries, c.max)
		}
		if uintptr(m.ValueSize) != c.value {
			t.Errorf("%s values are %d bytes, Go's type %d", c.m, m.ValueSize, c.value)
		}
	}
	// The headers of the records that travel through the ring and perf
	// buffers, which no map declares.
	for _, c := range []struct {
		name  string
		goLen int
	}{
		{"ring_rec", ringRecLen},
		{"sample", perfSampleLen},
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(c.name, &st); err != nil {
			t.Fatalf("struct %s: %v", c.name, err)
		}
		if int(st.Size) != c.goLen {
			t.Errorf("struct %s is %d bytes, Go reads %d", c.name, st.Size, c.goLen)
		}
	}
	// The perf datapath puts a tag in metadata back from these (appendTagged).
	var smp *btf.Struct
	if err := spec.Types.TypeByName("sample", &smp); err != nil {
		t.Fatal(err)
	}
	goOff := map[string]uintptr{
		"caplen":     unsafe.Offsetof(sourceSample{}.Caplen),
		"vlan_proto": unsafe.Offsetof(sourceSample{}.VlanProto),
		"vlan_tci":   unsafe.Offsetof(sourceSample{}.VlanTci),
	}
	for _, m := range smp.Members {
		if off, ok := goOff[m.Name]; ok {
			if uintptr(m.Offset.Bytes()) != off {
				t.Errorf("sample.%s at byte %d, Go reads byte %d", m.Name, m.Offset.Bytes(), off)
			}
			delete(goOff, m.Name)
		}
	}
	if len(goOff) != 0 {
		t.Errorf("struct sample lacks %v", goOff)
	}
	if n := spec.Maps["xm_ring"].MaxEntries; n&(n-1) != 0 || spec.Maps["xm_ring"].Type != ebpf.RingBuf {
		t.Errorf("xm_ring: %v of %d bytes, want a ring buffer of a power of two", spec.Maps["xm_ring"].Type, n)
	}
	// The clone's mark carries the session id and the ifindex.
	if MaxSessions-1 > int(sourceXmMarkXM_MARK_SESS_MASK) {
		t.Errorf("%d sessions do not fit the mark's session field %#x", MaxSessions, sourceXmMarkXM_MARK_SESS_MASK)
	}
}

// TestOuterLayout checks that the outer headers the ring datapath's program
// writes are the ones appendOuter writes (which the perf datapath sends): one
// layout on both sides of the boundary.
func TestOuterLayout(t *testing.T) {
	s := ringSource(t, mustParse(t, ringSession(96)))
	frame := tcp4(t, "10.0.0.1", "10.0.0.2", 1234, 40000, 200)
	if ret, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame}); err != nil || int32(ret) != -1 {
		t.Fatalf("run: %d, %v", int32(ret), err)
	}
	recs := readRing(t, s)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	pkt, _, _, err := parseRingRecord(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	sport := binary.BigEndian.Uint16(pkt[20:]) // from the flow hash: TestRingRecords
	want := appendOuter(nil, outerFields{
		local:  addrWord(netip.MustParseAddr("10.255.0.1")),
		remote: addrWord(netip.MustParseAddr("10.255.0.2")),
		ttl:    defaultTTL,
		sport:  sport,
		vni:    4097,
	}, 96)
	want = append(want, frame[:96]...)
	if !bytes.Equal(pkt, want) {
		t.Errorf("the program's outer packet differs from appendOuter's:\n % x\n % x", pkt[:outerLen], want[:outerLen])
	}
	if !outerOK(want) || outerDst(want) != [4]byte{10, 255, 0, 2} || !bytes.Equal(innerFrame(want), frame[:96]) {
		t.Errorf("outerOK, outerDst or innerFrame misread appendOuter's packet")
	}
}
