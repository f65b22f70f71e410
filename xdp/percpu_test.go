// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestWRRCursorPerCPU: the first new flow on CPU 0 and the first on CPU 1
// start at different places in the schedule, so with two equal backends
// they go to different backends (before, both took the schedule's entry 1).
func TestWRRCursorPerCPU(t *testing.T) {
	labtest.RequireRoot(t)
	if n, err := ebpf.PossibleCPU(); err != nil || n < 2 {
		t.Skipf("needs 2 possible cpus (have %d, %v)", n, err)
	}
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil || !online.IsSet(0) || !online.IsSet(1) {
		t.Skip("cpus 0 and 1 must both be usable")
	}
	g := newGoldenLab(t)
	if err := g.bal.Apply(lbConfig("wrr", "inner-symmetric", backend("b1", b1Addr, 0, 1), backend("b2", b2Addr, 0, 1))); err != nil {
		t.Fatal(err)
	}
	dst := map[int]netip.Addr{}
	for cpu := 0; cpu < 2; cpu++ {
		f := vxlanFrame(t, frameSpec{src: mirror, dst: vip, sport: 40001, vni: 1,
			innerSrc: netip.MustParseAddr("192.168.0.230"), inDst: netip.MustParseAddr("192.168.0.161"),
			innerSP: uint16(50000 + cpu), innerDP: 80})
		err := g.lb.Do(func() error {
			// Do runs on a locked thread: pin it to one CPU for the run,
			// then give it back every CPU it had.
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				return fmt.Errorf("pin to cpu %d: %w", cpu, err)
			}
			defer unix.SchedSetaffinity(0, &online)
			ret, out, err := runXDP(g.bal.objs.XmirrorLb, f, g.lb.Ifindex)
			if err != nil {
				return err
			}
			if ret != 3 || len(out) < 34 {
				return fmt.Errorf("cpu %d: verdict %d, %d bytes", cpu, ret, len(out))
			}
			dst[cpu] = netip.AddrFrom4([4]byte(out[30:34]))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if dst[0] == dst[1] {
		t.Fatalf("the first new flows of cpu 0 and cpu 1 both went to %s", dst[0])
	}
}

// TestStalePinsReplaced: a new binary starts over the pins of an older one:
// the dropped maps' pins go away and a per-CPU map of another layout is
// replaced instead of failing the load.
func TestStalePinsReplaced(t *testing.T) {
	labtest.RequireRoot(t)
	pin := fmt.Sprintf("/sys/fs/bpf/xmirror-stale-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if err := ensureBPFFS(pin, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Detach(pin) })
	for _, m := range []struct {
		name string
		typ  ebpf.MapType
		size uint32
	}{{"lb_stats", ebpf.PerCPUArray, 8}, {"lb_wrr_cursor", ebpf.PerCPUArray, 4}, {"lb_percpu", ebpf.PerCPUArray, 8}} {
		old, err := ebpf.NewMap(&ebpf.MapSpec{Name: m.name, Type: m.typ, KeySize: 4, ValueSize: m.size, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Pin(filepath.Join(pin, m.name)); err != nil {
			t.Fatal(err)
		}
		old.Close()
	}
	o, err := loadObjects(pin)
	if err != nil {
		t.Fatalf("load over old pins: %v", err)
	}
	defer o.Close()
	for _, name := range obsoletePins {
		if _, err := os.Stat(filepath.Join(pin, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old pin %s left: %v", name, err)
		}
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "lb_percpu"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.ValueSize() != o.LbPercpu.ValueSize() || m.ValueSize() == 8 {
		t.Fatalf("pinned lb_percpu value size %d, want %d", m.ValueSize(), o.LbPercpu.ValueSize())
	}
	// and a second load reuses it (same layout)
	o2, err := loadObjects(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if mapID(t, o.LbPercpu) != mapID(t, o2.LbPercpu) {
		t.Fatal("a compatible pinned lb_percpu was not reused")
	}
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Skip("map ids not available")
	}
	return id
}
