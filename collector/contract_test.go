// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestContract checks the Go side of the boundary with xm_collect against
// the compiled object: the counters map against the generated enum and the
// reasons Go reports them under, the globals the loader writes and the
// record header it reads, so that a change on one side fails here instead
// of miscounting or misreading records.
func TestContract(t *testing.T) {
	spec, err := loadCollect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name               string
		typ                ebpf.MapType
		entries            uint32 // 0: set by the loader
		keySize, valueSize uint32
	}{
		{"xm_col_counters", ebpf.PerCPUArray, uint32(colNCounters), 4, 8},
		{"xm_col_ring", ebpf.RingBuf, 0, 0, 0},
	} {
		ms, ok := spec.Maps[m.name]
		if !ok {
			t.Errorf("map %s: not in the object", m.name)
			continue
		}
		if ms.Type != m.typ || (m.entries != 0 && ms.MaxEntries != m.entries) {
			t.Errorf("map %s: %v of %d entries, Go assumes %v of %d", m.name, ms.Type, ms.MaxEntries, m.typ, m.entries)
		}
		if ms.KeySize != m.keySize || ms.ValueSize != m.valueSize {
			t.Errorf("map %s: key/value %d/%d bytes, Go's %d/%d", m.name, ms.KeySize, ms.ValueSize, m.keySize, m.valueSize)
		}
	}
	for _, g := range []struct {
		name string
		size uint32
	}{
		{"listen_family", 4},
		{"listen_addr", 16},
		{"listen_port", 2},
		{"vxlan_on", 1},
		{"geneve_ports", 2 * maxGenevePorts}, // XM_COL_MAX_GENEVE ports
		{"gre_on", 1},
		{"ring_wake", 4},
		{"ring_idle", 4},
	} {
		v, ok := spec.Variables[g.name]
		if !ok {
			t.Errorf("global %s: not in the object", g.name)
			continue
		}
		if v.Size() != g.size {
			t.Errorf("global %s: %d bytes, Go writes %d", g.name, v.Size(), g.size)
		}
	}
	var rec *btf.Struct
	if err := spec.Types.TypeByName("col_rec", &rec); err != nil {
		t.Fatalf("struct col_rec: %v", err)
	}
	if rec.Size != colRecHeaderLen {
		t.Errorf("struct col_rec is %d bytes, Go reads the frame after %d", rec.Size, colRecHeaderLen)
	}
	// Every counter but received and fragment is a drop, reported under a
	// reason of its own.
	seen := map[Reason]int{}
	for i, r := range colCounterReasons {
		isDrop := i != colReceived && i != colFragment
		if isDrop != (r != ReasonNone) {
			t.Errorf("counter %d: reported as drop reason %q", i, r)
		}
		if j, dup := seen[r]; dup && r != ReasonNone {
			t.Errorf("counters %d and %d both report reason %q", j, i, r)
		}
		seen[r] = i
	}
}
