// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Direct sends of the ring datapath (bpf/direct.h): a whole-frame copy that
// needs no segmentation leaves from the kernel, cloned to the egress of the
// target's next hop and encapsulated there by the source program, instead
// of through the ring and a socket. The programs do it for a target only
// while xm_hops holds its next hop; directHops keeps that map: the
// neighbours of the targets of whole-frame sessions, resolved on an
// interface the source programs are attached to (its egress program is what
// encapsulates the clone: on any other interface the clone would leave as
// the bare original frame).

// directHops writes xm_hops from the routes and neighbours of the system,
// every hopRefresh and whenever the running program changes.
type directHops struct {
	m      *ebpf.Map
	nl     *netlink.Handle
	mark   uint32
	mu     sync.Mutex
	want   map[uint32]bool // targets of whole-frame sessions
	ifaces map[uint32]bool // where the source programs are attached
	put    map[uint32]sourceHop
	// lookup resolves a target (resolveHop; tests replace it), use asks
	// the kernel to resolve or revalidate a neighbour (NTF_USE).
	lookup func(dst [4]byte) *nextHop
	use    func(h *nextHop) error
	kick   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

// startDirect starts keeping m for the ring datapath; nil when it cannot
// (no netlink handle): every copy then takes the ring.
func startDirect(m *ebpf.Map, mark uint32) *directHops {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		slog.Warn("ring datapath: no netlink handle for direct sends, every copy takes the ring", "err", err)
		return nil
	}
	d := newDirectHops(m, mark)
	d.nl = nl
	d.lookup = func(dst [4]byte) *nextHop { return resolveHop(nl, mark, dst, time.Now()) }
	// NTF_USE: as if traffic used the entry: the kernel creates it if
	// need be and resolves or revalidates it (ip neigh … use).
	d.use = func(h *nextHop) error {
		return nl.NeighSet(&netlink.Neigh{LinkIndex: int(h.ll.Ifindex), Family: netlink.FAMILY_V4, IP: h.neigh, Flags: netlink.NTF_USE})
	}
	d.wg.Add(1)
	go d.run()
	return d
}

func newDirectHops(m *ebpf.Map, mark uint32) *directHops {
	return &directHops{m: m, mark: mark, want: map[uint32]bool{}, ifaces: map[uint32]bool{},
		put: map[uint32]sourceHop{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

func (d *directHops) run() {
	defer d.wg.Done()
	retry := hopRetry
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		case <-d.kick:
			retry = hopRetry
		}
		// A target not resolved yet is looked up again soon (the ring's
		// raw socket makes the kernel resolve it), less often the longer it
		// stays so: its route may leave by an interface without the
		// programs, and then it never will.
		next := hopRefresh
		if !d.sync() {
			next, retry = retry, min(2*retry, hopRefresh)
		}
		t.Reset(next)
	}
}

// running takes the targets and interfaces of the program the data path
// runs from now on. Hops that leave through an interface the program is no
// longer attached to go at once, before the caller detaches it; new ones
// follow on the next sync, which it asks for.
func (d *directHops) running(prog *Program) {
	d.mu.Lock()
	d.want = map[uint32]bool{}
	for _, s := range prog.Sessions {
		if s.Direct != 0 {
			d.want[s.Remote] = true
		}
	}
	d.ifaces = map[uint32]bool{}
	for ifindex := range prog.Ifaces {
		d.ifaces[ifindex] = true
	}
	for dst, h := range d.put {
		if !d.want[dst] || !d.ifaces[h.Ifindex] {
			d.remove(dst)
		}
	}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// sync resolves every wanted target and writes or removes its hop, and
// tells whether every one has a hop. A stale
// neighbour keeps its hop (its address is the last one known, as the
// kernel's own sends would use) and is revalidated by the kernel: direct
// sends bypass the neighbour layer, which would otherwise never see traffic
// to it.
func (d *directHops) sync() (all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	all = true
	for dst := range d.put {
		if !d.want[dst] {
			d.remove(dst)
		}
	}
	for dst := range d.want {
		nh := d.lookup(wordBytes(dst))
		if !d.ifaces[uint32(nh.ll.Ifindex)] {
			d.remove(dst)
			all = false
			continue
		}
		if !nh.ok {
			// Ask the kernel to resolve it, as a first packet would.
			d.remove(dst)
			all = false
			if nh.neigh != nil && d.use != nil {
				if err := d.use(nh); err != nil {
					slog.Debug("resolve neighbour", "addr", nh.neigh, "err", err)
				}
			}
			continue
		}
		if nh.kick && d.use != nil {
			if err := d.use(nh); err != nil {
				slog.Debug("revalidate neighbour", "addr", nh.neigh, "err", err)
			}
		}
		h := sourceHop{Ifindex: uint32(nh.ll.Ifindex)}
		copy(h.Dst[:], nh.eth[0:6])
		copy(h.Src[:], nh.eth[6:12])
		if old, ok := d.put[dst]; ok && old == h {
			continue
		}
		if err := d.m.Put(dst, h); err != nil {
			slog.Warn("write direct hop", "target", hopTarget(dst), "err", err)
			all = false
			continue
		}
		d.put[dst] = h
	}
	return all
}

// remove deletes dst's hop: its copies take the ring again.
func (d *directHops) remove(dst uint32) {
	if _, ok := d.put[dst]; !ok {
		return
	}
	if err := d.m.Delete(dst); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		slog.Warn("remove direct hop", "target", hopTarget(dst), "err", err)
		return
	}
	delete(d.put, dst)
}

// close stops the syncs and removes every hop: from then on the programs
// send every copy through the ring.
func (d *directHops) close() {
	close(d.done)
	d.wg.Wait()
	d.mu.Lock()
	for dst := range d.put {
		d.remove(dst)
	}
	d.mu.Unlock()
	if d.nl != nil {
		d.nl.Close()
	}
}

// wordBytes is the address of a map word in network order (addrWord's
// inverse).
func wordBytes(w uint32) (b [4]byte) {
	binary.NativeEndian.PutUint32(b[:], w)
	return b
}

func hopTarget(dst uint32) string {
	b := wordBytes(dst)
	return net.IP(b[:]).String()
}
