// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/ringbuf"
)

// Indexes of xm_col_counters, from enum xm_col_counter (bpf/consts.h).
const (
	colReceived  = int(collectXmColCounterXM_COL_RECEIVED)
	colFragment  = int(collectXmColCounterXM_COL_FRAGMENT)
	colNCounters = int(collectXmColCounterXM_COL_NCOUNTERS)
)

// colCounterReasons is the drop reason each counter is reported under
// (ReasonNone: not a drop).
var colCounterReasons = [colNCounters]Reason{
	collectXmColCounterXM_COL_SHORT:           ReasonShort,
	collectXmColCounterXM_COL_BAD_FLAGS:       ReasonBadFlags,
	collectXmColCounterXM_COL_SHORT_INNER:     ReasonShortInner,
	collectXmColCounterXM_COL_BAD_LENGTH:      ReasonBadLength,
	collectXmColCounterXM_COL_RING_FULL:       ReasonRingFull,
	collectXmColCounterXM_COL_GENEVE_SHORT:    ReasonGeneveShort,
	collectXmColCounterXM_COL_GENEVE_VERSION:  ReasonGeneveVersion,
	collectXmColCounterXM_COL_GENEVE_PROTOCOL: ReasonGeneveProtocol,
	collectXmColCounterXM_COL_GRE_SHORT:       ReasonGREShort,
	collectXmColCounterXM_COL_GRE_HEADER:      ReasonGREHeader,
	collectXmColCounterXM_COL_GRE_PROTOCOL:    ReasonGREProtocol,
	collectXmColCounterXM_COL_ERSPAN_SHORT:    ReasonERSPANShort,
	collectXmColCounterXM_COL_ERSPAN_VERSION:  ReasonERSPANVersion,
}

// recordDecap says what a ring record holds, from enum xm_col_proto
// (bpf/consts.h): the frame alone (VXLAN: nil), or the tunnel header and
// the frame, decapsulated again here to keep the header's metadata.
func recordDecap(proto uint8) Decapper {
	switch proto {
	case uint8(collectXmColProtoXM_COL_PROTO_GENEVE):
		return DecapGENEVE
	case uint8(collectXmColProtoXM_COL_PROTO_GRE):
		return DecapGRE
	}
	return nil
}

// maxGenevePorts is XM_COL_MAX_GENEVE: the GENEVE ports the program takes.
const maxGenevePorts = 4

// colRecHeaderLen is sizeof(struct col_rec): the frame follows it.
const colRecHeaderLen = 32

const (
	// ringTick is how long records may wait in the ring below ring_wake:
	// the reader's timer while traffic flows.
	ringTick = 2 * time.Millisecond
	// ringIdleLooks empty looks send the reader to sleep until a record
	// wakes it (ring_idle); ringIdleWait bounds that sleep all the same.
	ringIdleLooks = 50
	ringIdleWait  = 100 * time.Millisecond
	// ringReleaseEvery records, a long drain gives the ring's space back.
	ringReleaseEvery = 4096
)

// xdpReceiver takes the inputs' tunnels (VXLAN, GENEVE, GRE) to the listen
// address off the wire in xm_collect and reads the frames from the
// program's ring. Beside it each input has one socket (UDP without
// SO_REUSEPORT, or GRE's raw sockets): it holds the port, so that no other
// socket can bind it, and reads whatever reaches the kernel all the same:
// IP fragments, which the program passes for the kernel to reassemble,
// packets that arrive on an interface without the program (the weak host
// model delivers them) and those from the host itself over lo.
type xdpReceiver struct {
	c    *Collector
	sock receiver
	objs collectObjects
	// links[i] holds the program on ifaces[i]; linksMu guards them and
	// missing, which keepLinks (xdplinks.go) changes.
	linksMu sync.Mutex
	links   []link.Link
	ifaces  []string
	missing []string
	closed  bool
	// generic: the program may attach in generic mode (receive xdp asked
	// for; auto takes sockets instead, see errGenericXDP).
	generic bool
	addr    netip.Addr      // the listen address, which keepLinks follows to new interfaces
	refused map[string]bool // interfaces that took the address but not the program (logged once)
	checked time.Time       // of the links, last
	ns      netns.NsHandle  // the collector's network namespace (netns.None() until watchLinks)
	ring    *ringbuf.Reader
	// bootToWall is added to the program's boot-time stamps (CLOCK_BOOTTIME
	// ns) to make wall-clock ns; poll refreshes it, so a clock step moves
	// the stamps within a second.
	bootToWall atomic.Int64

	countersMu sync.Mutex
	counted    [colNCounters]uint64
	fragments  *metrics.Counter // first fragments the program passed to the kernel
	stopOnce   sync.Once
	closeOnce  sync.Once
}

func (x *xdpReceiver) mode() string { return ReceiveXDP }

// listenXDP binds the port, loads xm_collect for the listen address and
// attaches it to every interface that holds the address. Anything it did
// is undone when a step fails.
// socketsError is a failure of the sockets the XDP path opens beside its
// program: the socket path would fail the same way, so auto mode does not
// fall back on it.
type socketsError struct{ err error }

func (e socketsError) Error() string { return e.err.Error() }
func (e socketsError) Unwrap() error { return e.err }

func (c *Collector) listenXDP(ap netip.AddrPort, generic bool) (_ receiver, err error) {
	if ap.Addr().IsUnspecified() {
		return nil, fmt.Errorf("receive xdp: listen %s: XDP needs an address an interface holds, not the wildcard", ap)
	}
	ifaces, err := interfacesWith(ap.Addr())
	if err != nil {
		return nil, err
	}
	x := &xdpReceiver{c: c, ifaces: ifaces, generic: generic, addr: ap.Addr(), refused: map[string]bool{}, ns: netns.None(), fragments: c.set.GetOrCreateCounter("xmirror_collector_xdp_fragments_total")}
	locked := len(c.locks)
	defer func() {
		if err != nil {
			x.stop()
			_ = x.close()
			c.releaseLocksFrom(locked) // auto mode takes the port again with sockets
		}
	}()
	if x.sock, err = c.openInputs(ap, false); err != nil {
		return nil, socketsError{err}
	}
	if err := x.load(ap.Addr(), c.programInputs()); err != nil {
		return nil, err
	}
	for _, name := range ifaces {
		if err := x.attach(name); err != nil {
			return nil, err
		}
	}
	if x.ring, err = ringbuf.New(x.objs.XmColRing); err != nil {
		return nil, err
	}
	x.setClock()
	x.watchLinks()
	return x, nil
}

// interfacesWith lists the interfaces that hold addr. A zone (a link-local
// address, fe80::2%eth0) names the one interface: the interfaces' own
// addresses carry none, and the socket beside the program receives only
// there.
func interfacesWith(addr netip.Addr) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	zone := addr.Zone()
	bare := addr.WithZone("")
	var out []string
	for _, ifc := range ifs {
		if zone != "" && zone != ifc.Name && zone != strconv.Itoa(ifc.Index) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == bare {
					out = append(out, ifc.Name)
					break
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("receive xdp: no interface holds the listen address %s", addr)
	}
	return out, nil
}

// programInputs are the inputs as the program takes them, with the ports
// the sockets beside it were given.
func (c *Collector) programInputs() programInputs {
	var in programInputs
	for _, i := range c.opts.Inputs {
		switch i.Proto {
		case ProtoVXLAN:
			in.vxlan = uint16(c.bound[i].Port)
		case ProtoGENEVE:
			in.geneve = append(in.geneve, uint16(c.bound[i].Port))
		case ProtoGRE, ProtoERSPAN:
			in.gre = true
		}
	}
	return in
}

// programInputs say what xm_collect takes at the listen address: VXLAN on
// a port (0: no VXLAN), GENEVE on ports, GRE.
type programInputs struct {
	vxlan  uint16
	geneve []uint16
	gre    bool
}

// networkPort is a port in network order, as the program compares it.
func networkPort(port uint16) uint16 {
	return binary.NativeEndian.Uint16([]byte{byte(port >> 8), byte(port)})
}

// load loads xm_collect with the listener compiled in and the ring sized
// by RingSize.
func (x *xdpReceiver) load(addr netip.Addr, in programInputs) error {
	spec, err := loadCollect()
	if err != nil {
		return fmt.Errorf("load xdp receive program: %w", err)
	}
	spec.Maps["xm_col_ring"].MaxEntries = uint32(x.c.opts.RingSize)
	var words [4]uint32
	family := uint32(4)
	raw := addr.As16()
	if addr.Is4() {
		a4 := addr.As4()
		words[0] = binary.NativeEndian.Uint32(a4[:])
	} else {
		family = 6
		for i := range words {
			words[i] = binary.NativeEndian.Uint32(raw[4*i:])
		}
	}
	if len(in.geneve) > maxGenevePorts {
		return fmt.Errorf("receive xdp: %d GENEVE ports, the program takes %d", len(in.geneve), maxGenevePorts)
	}
	var geneve [maxGenevePorts]uint16
	for i, p := range in.geneve {
		geneve[i] = networkPort(p)
	}
	flag := func(on bool) uint8 {
		if on {
			return 1
		}
		return 0
	}
	for name, v := range map[string]any{"listen_family": family, "listen_addr": words, "listen_port": networkPort(in.vxlan),
		"vxlan_on": flag(in.vxlan != 0), "geneve_ports": geneve, "gre_on": flag(in.gre)} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := spec.LoadAndAssign(&x.objs, nil); err != nil {
		return fmt.Errorf("load xdp receive program: %w", err)
	}
	return nil
}

// errGenericXDP: receive auto does not attach in generic mode. There the
// program runs on the socket buffer after the kernel has put datagrams
// together: a sender's UDP GSO packet over a veth (the xmirror source's ring
// datapath sends them) or a GRO list reaches it as one datagram, which it
// would write as one frame, the inner frames one after the other with their
// VXLAN headers between them. The sockets get them cut apart again.
var errGenericXDP = errors.New("no native XDP, and generic mode would take the kernel's UDP GSO and GRO aggregates for single datagrams")

// attach attaches the program to one interface, natively where the driver
// can and in generic mode otherwise (receive xdp only). An interface that
// has an XDP program already is refused with the program's name: the
// kernel would refuse a second one anyway, and that one may be another
// collector's.
func (x *xdpReceiver) attach(name string) error {
	l, err := x.attachLink(name)
	if err != nil {
		return err
	}
	x.links = append(x.links, l)
	return nil
}

// attachLink is attach without keeping the link.
func (x *xdpReceiver) attachLink(name string) (link.Link, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	if other := attachedXDP(ifc.Index); other != "" {
		return nil, fmt.Errorf("attach xdp to %s: %s is attached already (another collector or the load balancer?)", name, other)
	}
	mode := "native"
	l, err := link.AttachXDP(link.XDPOptions{Program: x.objs.XmCollect, Interface: ifc.Index, Flags: link.XDPDriverMode})
	if err != nil && !x.generic {
		return nil, fmt.Errorf("attach xdp to %s: %w (%v)", name, errGenericXDP, err)
	}
	if err != nil {
		mode = "generic"
		x.c.log.Warn("native xdp unavailable, attaching in generic mode: a UDP GSO or GRO aggregate (a sender on a veth of this host) is written as one frame; receive auto takes sockets here",
			"interface", name, "err", err)
		l, err = link.AttachXDP(link.XDPOptions{Program: x.objs.XmCollect, Interface: ifc.Index, Flags: link.XDPGenericMode})
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("attach xdp to %s: another XDP program is attached: %w", name, err)
		}
		return nil, fmt.Errorf("attach xdp to %s: %w", name, err)
	}
	x.c.log.Info("attached xdp receive program", "interface", name, "mode", mode)
	return l, nil
}

// attachedXDP names the XDP program on an interface ("" when none).
func attachedXDP(ifindex int) string {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
		return ""
	}
	return XDPProgramName(l.Attrs().Xdp.ProgId)
}

// XDPProgramName names a loaded XDP program for messages: `XDP program
// "name" (id N)`; the name is empty without the right to open it by id
// (CAP_SYS_ADMIN).
func XDPProgramName(id uint32) string {
	name := ""
	if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
		if info, err := p.Info(); err == nil {
			name = info.Name
		}
		p.Close()
	}
	return fmt.Sprintf("XDP program %q (id %d)", name, id)
}

// setClock measures CLOCK_REALTIME - CLOCK_BOOTTIME (see bootToWallOffset).
func (x *xdpReceiver) setClock() {
	x.bootToWall.Store(bootToWallOffset(readClock))
}

func readClock(id int32) int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(id, &ts)
	return ts.Nano()
}

// clockSamples is how many boot, wall, boot readings bootToWallOffset takes.
const clockSamples = 8

// bootToWallOffset returns CLOCK_REALTIME - CLOCK_BOOTTIME in ns. It reads
// the boot clock on both sides of the wall clock and keeps the sample whose
// two boot readings are closest: a thread preempted between the readings
// would otherwise put the ring's stamps milliseconds off the socket path's
// kernel stamps (SO_TIMESTAMPNS), and a session's packets that arrive by
// both paths (fragments the program passes on) out of order.
func bootToWallOffset(read func(clock int32) int64) int64 {
	var best, width int64 = 0, -1
	for i := 0; i < clockSamples; i++ {
		b1 := read(unix.CLOCK_BOOTTIME)
		w := read(unix.CLOCK_REALTIME)
		b2 := read(unix.CLOCK_BOOTTIME)
		if width < 0 || b2-b1 < width {
			best, width = w-(b1+b2)/2, b2-b1
		}
	}
	return best
}

func (x *xdpReceiver) loops() []func(*sink) error {
	return append(x.sock.loops(), x.ringLoop)
}

// ringLoop reads the ring until stop. While traffic flows it wakes on its
// timer or when the unread data crosses ring_wake; after a while without
// records it tells the program (ring_idle) to wake it with the next one.
func (x *xdpReceiver) ringLoop(k *sink) error {
	p := ringbuf.Pacer{Tick: ringTick, IdleWait: ringIdleWait, IdleLooks: ringIdleLooks, SetIdle: x.setIdle}
	for {
		// No sleep while the sink holds a batch back (handoffDelay).
		err := p.Wait(x.ring, !k.pending())
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		p.Looked(x.drain(k))
	}
}

func (x *xdpReceiver) setIdle(v uint32) {
	if err := x.objs.RingIdle.Set(v); err != nil {
		x.c.log.Warn("set ring_idle", "err", err)
	}
}

// drain hands every record in the ring to the writers and gives the ring's
// space back; it returns the number of records.
func (x *xdpReceiver) drain(k *sink) int {
	n := 0
	off := x.bootToWall.Load()
	for {
		rec, ok := x.ring.Next()
		if !ok {
			break
		}
		n++
		x.record(k, rec, off)
		if n%ringReleaseEvery == 0 {
			x.ring.Release()
			x.c.received.Add(ringReleaseEvery)
		}
	}
	x.ring.Release()
	x.c.received.Add(n % ringReleaseEvery)
	k.flushOld(time.Now())
	return n
}

// record hands one ring record (struct col_rec, then the frame, or the
// tunnel header and the frame) on.
func (x *xdpReceiver) record(k *sink, rec []byte, bootToWall int64) {
	if len(rec) < colRecHeaderLen {
		return
	}
	n := int(binary.NativeEndian.Uint16(rec[28:30]))
	if colRecHeaderLen+n > len(rec) {
		return
	}
	var src netip.Addr
	if rec[30] == 6 {
		src = netip.AddrFrom16([16]byte(rec[8:24])).Unmap()
	} else {
		src = netip.AddrFrom4([4]byte(rec[8:12]))
	}
	ts := int64(binary.NativeEndian.Uint64(rec[0:8])) + bootToWall
	data := rec[colRecHeaderLen : colRecHeaderLen+n]
	decap := recordDecap(rec[31])
	if decap == nil { // VXLAN: the frame alone
		k.add(src, ts, Frame{Key: VXLAN(binary.NativeEndian.Uint32(rec[24:28])), Inner: data, OrigLen: OriginalLength(data)})
		return
	}
	fr, reason := decap(data)
	if reason != ReasonNone { // the program checked the header: not reached
		x.c.drop(reason)
		return
	}
	k.add(src, ts, fr)
}

// poll adds the program's drops since the last poll to the drop metrics
// and refreshes the clock offset.
func (x *xdpReceiver) poll() {
	if x.sock != nil {
		x.sock.poll()
	}
	x.keepLinks()
	x.setClock()
	x.countersMu.Lock()
	defer x.countersMu.Unlock()
	if x.objs.XmColCounters == nil {
		return
	}
	for i := range colNCounters {
		var perCPU []uint64
		if err := x.objs.XmColCounters.Lookup(uint32(i), &perCPU); err != nil {
			continue
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		if i == colFragment && sum > x.counted[i] {
			x.fragments.AddInt64(int64(sum - x.counted[i]))
		}
		if r := colCounterReasons[i]; r != ReasonNone && sum > x.counted[i] {
			x.c.dropN(r, sum-x.counted[i])
			// A malformed datagram reached the collector, as on the
			// socket path; a full ring is like a full socket buffer.
			if r != ReasonRingFull {
				x.c.received.AddInt64(int64(sum - x.counted[i]))
			}
		}
		x.counted[i] = sum
	}
}

// stop ends the ring loop and the socket's loop.
func (x *xdpReceiver) stop() {
	x.stopOnce.Do(func() {
		if x.objs.XmColCounters != nil {
			x.poll()
		}
		if x.ring != nil {
			x.ring.Interrupt()
		}
		if x.sock != nil {
			x.sock.stop()
		}
	})
}

// close detaches the program from every interface and releases the ring
// and the maps: nothing of the collector stays in the kernel.
func (x *xdpReceiver) close() error {
	var errs []error
	x.closeOnce.Do(func() {
		x.linksMu.Lock()
		x.closed = true
		for _, l := range x.links {
			if err := l.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach xdp: %w", err))
			}
		}
		if x.ns.IsOpen() {
			x.ns.Close()
			x.ns = netns.None()
		}
		x.linksMu.Unlock()
		if x.ring != nil {
			x.ring.Close()
		}
		if err := x.objs.Close(); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}
