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
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/nsthread"
)

// Direct sends of the ring datapath (bpf/direct.h): a whole-frame copy that
// needs no segmentation leaves from the kernel, cloned to the egress of the
// target's next hop and encapsulated there by the source program, instead
// of through the ring and a socket. The programs do it for a target only
// while xm_hops holds its next hop; directHops keeps that map: the
// neighbours of the targets of whole-frame sessions, and the egress program
// that encapsulates the clones on their interface. On a source interface
// that is xm_source_egress; on any other, directHops attaches
// xm_direct_egress first (a TCX link: it goes with the process) and writes
// the hop only then, and removes the hop before it detaches: a clone must
// never leave as the bare original frame.

// directHops writes xm_hops from the routes and neighbours of the system,
// every hopRefresh and whenever the running program changes.
type directHops struct {
	m      *ebpf.Map
	nl     *netlink.Handle
	ns     netns.NsHandle // the source's network namespace
	mu     sync.Mutex
	want   map[uint32]bool // targets of whole-frame sessions
	ifaces map[uint32]bool // where the source programs are attached
	put    map[uint32]sourceHop
	// extra holds xm_direct_egress on next-hop interfaces that are not
	// source interfaces; attach attaches it (nil: such hops are not used).
	extra  map[uint32]hook
	attach func(ifindex uint32) (hook, error)
	warned map[uint32]bool // interfaces whose attach failure was logged
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
func startDirect(m *ebpf.Map, egress *ebpf.Program, mark uint32) *directHops {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		slog.Warn("ring datapath: no netlink handle for direct sends, every copy takes the ring", "err", err)
		return nil
	}
	// The syncs run on any thread, the source's namespace is the caller's:
	// the netlink handle is bound to it, the attachments enter it.
	ns, err := netns.Get()
	if err != nil {
		nl.Close()
		slog.Warn("ring datapath: no handle of the network namespace for direct sends, every copy takes the ring", "err", err)
		return nil
	}
	d := newDirectHops(m)
	d.nl, d.ns = nl, ns
	d.lookup = func(dst [4]byte) *nextHop { return resolveHop(nl, mark, dst, time.Now()) }
	d.attach = func(ifindex uint32) (h hook, err error) {
		err = nsthread.Run(ns, func() (err error) {
			h, err = attachTCX(egress, int(ifindex), false)
			return err
		})
		return h, err
	}
	// NTF_USE: as if traffic used the entry: the kernel creates it if
	// need be and resolves or revalidates it (ip neigh … use).
	d.use = func(h *nextHop) error {
		return nl.NeighSet(&netlink.Neigh{LinkIndex: int(h.ll.Ifindex), Family: netlink.FAMILY_V4, IP: h.neigh, Flags: netlink.NTF_USE})
	}
	d.wg.Add(1)
	go d.run()
	return d
}

func newDirectHops(m *ebpf.Map) *directHops {
	return &directHops{m: m, want: map[uint32]bool{}, ifaces: map[uint32]bool{},
		put: map[uint32]sourceHop{}, extra: map[uint32]hook{}, warned: map[uint32]bool{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
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
		// A target not resolved yet is looked up again soon (the kernel
		// was asked to resolve it), less often the longer it stays so: its
		// route may leave by an interface where no program can be
		// attached, and then it never will.
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
		if !d.want[dst] || !d.encapsulates(h.Ifindex) {
			d.remove(dst)
		}
	}
	d.pruneExtra()
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// sync resolves every wanted target and writes or removes its hop, and
// tells whether every one has a hop. A stale neighbour keeps its hop (its
// address is the last one known, as the kernel's own sends would use) and
// is revalidated by the kernel: direct sends bypass the neighbour layer,
// which would otherwise never see traffic to it.
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
		if !nh.ok || !d.ensureEgress(uint32(nh.ll.Ifindex)) {
			d.remove(dst)
			all = false
			// Ask the kernel to resolve it, as a first packet would.
			if !nh.ok && nh.neigh != nil && d.use != nil {
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
	d.pruneExtra()
	return all
}

// encapsulates tells whether an egress program finishes direct clones on
// ifindex.
func (d *directHops) encapsulates(ifindex uint32) bool {
	return d.ifaces[ifindex] || d.extra[ifindex] != nil
}

// ensureEgress makes sure direct clones are finished on ifindex, attaching
// xm_direct_egress where no source program is. False: they cannot be.
func (d *directHops) ensureEgress(ifindex uint32) bool {
	if d.encapsulates(ifindex) {
		return true
	}
	if d.attach == nil || ifindex == 0 {
		return false
	}
	h, err := d.attach(ifindex)
	if err != nil {
		if !d.warned[ifindex] {
			d.warned[ifindex] = true
			slog.Warn("direct sends: cannot attach to the next hop's interface, its targets take the ring", "ifindex", ifindex, "err", err)
		}
		return false
	}
	d.extra[ifindex] = h
	return true
}

// pruneExtra detaches xm_direct_egress where no hop leaves any more, or
// where a source program took over: after the hops that used it are gone.
func (d *directHops) pruneExtra() {
	used := map[uint32]bool{}
	for _, h := range d.put {
		used[h.Ifindex] = true
	}
	for ifindex, l := range d.extra {
		// Kept while it is the one finishing a hop's clones; where a
		// source program is attached as well, that one does it.
		if used[ifindex] && !d.ifaces[ifindex] {
			continue
		}
		if err := l.Close(); err != nil {
			slog.Warn("detach direct egress", "ifindex", ifindex, "err", err)
		}
		delete(d.extra, ifindex)
	}
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
	d.pruneExtra()
	d.mu.Unlock()
	if d.nl != nil {
		d.nl.Close()
		d.ns.Close()
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
