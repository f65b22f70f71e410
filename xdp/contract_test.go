// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/xmirror/xmirror/config"
)

// TestContract checks the Go side of the boundary with the BPF program
// against the object itself: the limits Go indexes maps and globals with,
// and the sizes of the layouts it reads and writes. (The enums need no
// check: bpf2go generates them from the object's BTF.)
func TestContract(t *testing.T) {
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	maps := []struct {
		name               string
		entries            uint32
		keySize, valueSize uintptr
	}{
		{"lb_active", 1, 4, 4},
		{"lb_slots", slots, 4, unsafe.Sizeof(lbLbSlot{})},
		{"lb_backends", slots * MaxBackends, 4, unsafe.Sizeof(lbLbBackend{})},
		{"lb_wrr", slots * wrrMax, 4, 4},
		{"lb_maglev", slots * maglevLines, 4, unsafe.Sizeof(lbLbMaglevLine{})},
		{"lb_flows", ctBuckets / ctLine, 4, unsafe.Sizeof(lbLbCtLine{})},
		{"lb_acl", slots * aclMax, unsafe.Sizeof(lbLbAclKey{}), 1},
		{"lb_frags", fragsMax, unsafe.Sizeof(lbLbFragKey{}), 4},
		{"lb_percpu", 1, 4, unsafe.Sizeof(lbLbCpu{})},
		{"lb_traffic_base", MaxBackends, 4, unsafe.Sizeof(lbLbTraffic{})},
	}
	for _, m := range maps {
		ms, ok := spec.Maps[m.name]
		if !ok {
			t.Errorf("map %s: not in the object", m.name)
			continue
		}
		if m.entries != 0 && ms.MaxEntries != m.entries {
			t.Errorf("map %s: %d entries, Go assumes %d", m.name, ms.MaxEntries, m.entries)
		}
		if uintptr(ms.KeySize) != m.keySize || uintptr(ms.ValueSize) != m.valueSize {
			t.Errorf("map %s: key/value %d/%d bytes, Go's %d/%d", m.name, ms.KeySize, ms.ValueSize, m.keySize, m.valueSize)
		}
	}
	named := mapsOf(&lbMaps{})
	for name := range spec.Maps {
		if _, ok := named[name]; !ok && !strings.HasPrefix(name, ".") {
			t.Errorf("map %s: not among the maps Close unpins", name)
		}
	}
	globals := []struct {
		name string
		size uintptr
	}{
		{"lb_slot_cfg", slots * unsafe.Sizeof(lbLbSlot{})},
		{"lb_slot_backends", slots * MaxBackends * unsafe.Sizeof(lbLbBackend{})},
		{"lb_active_slot", 4},
		{"lb_listener_macs", ifaceSlots * unsafe.Sizeof(lbLbIfmac{})},
	}
	for _, g := range globals {
		v, ok := spec.Variables[g.name]
		if !ok {
			t.Errorf("global %s: not in the object", g.name)
			continue
		}
		if uintptr(v.Size()) != g.size {
			t.Errorf("global %s: %d bytes, Go writes %d", g.name, v.Size(), g.size)
		}
	}
	var pc lbLbCpu
	if len(pc.Stats) != int(statMax) || len(pc.Nh) != MaxBackends || len(pc.Traffic) != MaxBackends {
		t.Errorf("lb_cpu: %d stats, %d next hops, %d traffic counters; Go assumes %d, %d, %d",
			len(pc.Stats), len(pc.Nh), len(pc.Traffic), statMax, MaxBackends, MaxBackends)
	}
	var line lbLbCtLine
	if len(line.Bucket) != ctLine || unsafe.Sizeof(line) != 64 {
		t.Errorf("lb_ct_line: %d buckets in %d bytes, Go assumes %d in one 64-byte cache line",
			len(line.Bucket), unsafe.Sizeof(line), ctLine)
	}
	var be lbLbBackend
	if len(be.Name)-1 != config.MaxBackendName {
		t.Errorf("lb_backend.name holds %d bytes and a NUL; config.MaxBackendName is %d", len(be.Name)-1, config.MaxBackendName)
	}
	for i, n := range statNames {
		if n == "" {
			t.Errorf("verdict reason %d has no metric name", i)
		}
	}
}
