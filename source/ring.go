// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/ringbuf"
)

// Batching of the ring datapath. The program wakes the reader only when the
// unread data crosses ring_wake bytes; below that the reader looks every
// maxDelay (Options.MaxDelay), the longest a mirrored packet waits in the
// ring while traffic flows. Each wakeup costs a context switch (tens of
// microseconds of a CPU on a virtual machine, where waking an idle CPU exits
// to the hypervisor) and each look a round of the Go scheduler, and both
// show in the mirrored traffic's throughput (docs/source.md, "Performance"):
// a longer delay is cheaper. After the reader found the ring empty for
// ringIdleAfter it sleeps for up to ringIdleWait and asks the program
// (ring_idle) to wake it with the next record.
const (
	// DefaultMaxDelay is the MaxDelay New uses when Options.MaxDelay is 0:
	// with it, mirroring every packet of an iperf3 stream cost about 5%
	// in the lab, against about 10% at 10 ms (docs/source.md,
	// "Performance", for the figures of today's code).
	DefaultMaxDelay = 100 * time.Millisecond
	// MinMaxDelay and MaxMaxDelay bound Options.MaxDelay.
	MinMaxDelay = time.Millisecond
	MaxMaxDelay = time.Second

	ringIdleAfter = 200 * time.Millisecond
	ringIdleWait  = 200 * time.Millisecond
)

// ringWakeFor is the unread data past which the program wakes the reader
// for a given delay: 256 KiB per 10 ms (about 1,300 records of a 96-byte
// cut), at least 64 KiB, at most 4 MiB (half the ring).
func ringWakeFor(delay time.Duration) uint32 {
	w := int64(256<<10) * int64(delay) / int64(10*time.Millisecond)
	return uint32(min(max(w, 64<<10), 4<<20))
}

// The ring's size: the compiled default (XM_RING_SIZE, 8 MiB: 55,000
// records of a 96-byte cut) or, for longer cuts, room for ringRecords
// records of the longest, up to ringMax. Whole frames take ten times the room
// of the seed's cut: in 8 MiB about 5,000 of them, 25 ms of a 200,000
// packets/s stream, and a sender that waited longer for a CPU lost a fifth
// of them with the default MaxDelay (BenchmarkIperf, whole frames).
const (
	ringRecords = 20000
	ringMax     = 64 << 20
)

// ringSizeFor is the size of the ring for the sessions of prog (a power of
// two, as the kernel wants); def is the compiled default.
func ringSizeFor(prog *Program, def uint32) uint32 {
	longest := uint32(0)
	for _, s := range prog.Sessions {
		longest = max(longest, s.Snaplen)
	}
	need := uint64(ringRecords) * uint64(8+ringRecLen+outerLen+int(longest))
	size := uint64(def)
	for size < need && size < ringMax {
		size <<= 1
	}
	return uint32(size)
}

// idleLooks is how many empty looks make the reader sleep.
func idleLooks(delay time.Duration) int {
	return max(int(ringIdleAfter/delay), 2)
}

// ringPath is datapath ring: it reads the records of the ring buffer
// (internal/ringbuf), each an outer IPv4 packet built by the program, and sends
// them in batches (batch.go). A packet whose next hop is a resolved
// neighbour on an Ethernet interface (nexthop.go) goes out through an
// AF_PACKET socket straight to that interface, a flow's runs as one UDP GSO
// packet each (gso.go; without PACKET_VNET_HDR, one datagram per packet and
// the kernel adds the Ethernet header): cheaper than the raw IPv4 socket,
// which routes each packet and passes it through netfilter and the
// neighbour layer (BenchmarkSendPath). Everything else, and the first
// packets to a target whose neighbour is not resolved yet, take the raw
// socket, which makes the kernel resolve it (sockets.go).
type ringPath struct {
	rd   *ringbuf.Reader
	fd   int // raw IPv4 socket
	pfd  int // AF_PACKET socket, -1 without one
	mark uint32
	nl   *netlink.Handle // in the source's network namespace
	hops map[[4]byte]*nextHop
	now  time.Time // of the current drain
	// rawB and linkB collect packets for the two sockets. The GSO socket's
	// packets stay in the ring until they are sent (see add).
	rawB, linkB       batch
	rawSent, linkSent atomic.Uint64
	ports             portRange
	idle              *ebpf.Variable // ring_idle in the program's memory
	errs              sendErrors
	bad               atomic.Uint64 // malformed records (never expected)
	wg                sync.WaitGroup
	// send sends and empties a batch (sendBatch; tests replace it).
	send      func(*batch)
	priority  string        // of the sending thread
	tick      time.Duration // how often the reader looks while traffic flows
	idleLooks int           // empty looks before it sleeps
	// lookup finds the next hop of a target (resolve; tests replace it).
	lookup func(dst [4]byte) *nextHop
	// direct keeps the next hops of direct sends (direct.go); nil without.
	direct *directHops
}

// startRing opens the sockets (in the caller's network namespace) and the
// ring reader and starts the sending goroutine; with direct, also the
// keeper of direct sends' next hops.
func startRing(objs *sourceObjects, mark uint32, priority string, maxDelay time.Duration, direct bool) (_ datapath, err error) {
	r := &ringPath{pfd: -1, mark: mark, hops: map[[4]byte]*nextHop{}, priority: priority,
		tick: maxDelay, idleLooks: idleLooks(maxDelay), ports: localPortRange()}
	r.fd, err = rawSocket(mark)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.closeSockets()
		}
	}()
	r.linkB.link = true
	// Without an AF_PACKET socket or a netlink handle every packet takes the
	// raw socket: slower, not wrong.
	fd, err := gsoSocket(mark)
	if err == nil {
		r.linkB.runs = &runs{}
	} else {
		slog.Warn("ring datapath: no segmentation offload, one send per packet", "err", err)
		fd, err = packetSocket(mark)
	}
	if err == nil {
		r.pfd = fd
		if r.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			slog.Warn("ring datapath: no netlink handle, sending through the raw socket only", "err", err)
		} else {
			r.lookup = r.resolve
		}
	} else {
		slog.Warn("ring datapath: no AF_PACKET socket, sending through the raw socket only", "err", err)
	}
	r.idle = objs.RingIdle
	r.rd, err = ringbuf.New(objs.XmRing)
	if err != nil {
		return nil, err
	}
	if direct {
		r.direct = startDirect(objs.XmHops, objs.XmDirectEgress, mark)
	}
	r.send = func(b *batch) {
		switch {
		case b.runs != nil:
			b.runs.send(r.pfd, b, &r.errs)
		case b.link:
			sendBatch(r.pfd, b, &r.errs)
		default:
			sendBatch(r.fd, b, &r.errs)
		}
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

func (r *ringPath) name() string { return DatapathRing }

func (r *ringPath) fill(st *sourceState) {
	st.Datapath = sourceXmDatapathXM_DATAPATH_RING
	st.PortMin, st.PortRange = r.ports.min, r.ports.span
}

func (r *ringPath) running(prog *Program) {
	if r.direct != nil {
		r.direct.running(prog)
	}
}

func (r *ringPath) errors(id uint16, dir int) uint64 { return r.errs.of(id, dir) }

func (r *ringPath) writeMetrics(w io.Writer) {
	fmt.Fprintf(w, "# HELP xmirror_source_ring_sent_packets_total Packets the ring datapath handed to a socket: packet (AF_PACKET, next hop resolved) or raw (raw IPv4).\n# TYPE xmirror_source_ring_sent_packets_total counter\n")
	fmt.Fprintf(w, "xmirror_source_ring_sent_packets_total{socket=\"packet\"} %d\n", r.linkSent.Load())
	fmt.Fprintf(w, "xmirror_source_ring_sent_packets_total{socket=\"raw\"} %d\n", r.rawSent.Load())
	fmt.Fprintf(w, "# HELP xmirror_source_ring_sends_total Packets the ring datapath handed to the kernel: a run of mirrored packets sent as one segmentation-offload packet counts once.\n# TYPE xmirror_source_ring_sends_total counter\n")
	fmt.Fprintf(w, "xmirror_source_ring_sends_total %d\n", r.sends())
}

func (r *ringPath) closeSockets() {
	unix.Close(r.fd)
	if r.pfd >= 0 {
		unix.Close(r.pfd)
	}
	if r.nl != nil {
		r.nl.Close()
	}
}

func (r *ringPath) run() {
	defer r.wg.Done()
	defer senderThread(r.priority)()
	p := ringbuf.Pacer{Tick: r.tick, IdleWait: ringIdleWait, IdleLooks: r.idleLooks, SetIdle: r.setIdle}
	for {
		err := p.Wait(r.rd, true)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			// Not expected (the descriptor is ours); do not spin on it.
			slog.Warn("ring read", "err", err)
			time.Sleep(r.tick)
		}
		p.Looked(r.drain())
	}
}

func (r *ringPath) setIdle(v uint32) {
	if err := r.idle.Set(v); err != nil {
		slog.Warn("set ring_idle", "err", err)
	}
}

// drain takes every record in the ring and sends them, batchSize per
// system call, and gives their space back to the programs. It returns the
// number of records taken.
func (r *ringPath) drain() int {
	n := 0
	r.now = time.Now()
	for {
		rec, ok := r.rd.Next()
		if !ok {
			break
		}
		n++
		// Under sustained traffic a drain may never find the ring empty:
		// the clock that ages next hops moves on with it.
		if n%batchSize == 0 {
			r.now = time.Now()
		}
		r.add(rec)
	}
	for _, b := range []*batch{&r.rawB, &r.linkB} {
		if b.n > 0 {
			r.send(b)
		}
	}
	r.rd.Release()
	return n
}

// sendAndRelease sends b and, once no batch holds packets in the ring, gives
// the space of the records read so far back to the programs (a drain under
// sustained traffic may go on for long).
func (r *ringPath) sendAndRelease(b *batch) {
	r.send(b)
	if r.linkB.n == 0 || r.linkB.runs == nil {
		r.rd.Release()
	}
}

// add puts the packet of a ring record into the batch of the socket it
// takes, and sends that batch when it is full. Packets leave in ring order:
// before a packet goes into one batch, the other is sent. Packets for the
// GSO socket are sent from the ring, where the program wrote them; the
// other paths change the packet or may wait behind a release, so they get a
// copy.
func (r *ringPath) add(rec []byte) {
	pkt, key, dst, err := parseRingRecord(rec)
	if err != nil {
		r.bad.Add(1)
		return
	}
	hop := r.hop(dst)
	b, other := &r.rawB, &r.linkB
	if hop != nil {
		b, other = &r.linkB, &r.rawB
	}
	if other.n > 0 {
		r.sendAndRelease(other)
	}
	i := b.n
	if b.runs != nil {
		b.pkts[i] = pkt
	} else {
		b.bufs[i] = append(b.bufs[i][:0], pkt...)
		b.pkts[i] = b.bufs[i]
	}
	b.keys[i] = key
	if hop != nil {
		b.lls[i] = hop.ll
		if b.runs != nil {
			b.runs.eths[i] = &hop.eth
			b.runs.admit(b, i)
		} else {
			// The raw socket fills in the IPv4 checksum; here we do.
			setIPv4Checksum(pkt)
		}
		r.linkSent.Add(1)
	} else {
		b.dsts[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst}
		r.rawSent.Add(1)
	}
	b.n++
	if b.n == batchSize {
		r.sendAndRelease(b)
	}
}

// errRecord is a ring record that does not hold a valid packet.
var errRecord = errors.New("malformed ring record")

// ringRecLen is sizeof(struct ring_rec), the header of every record.
const ringRecLen = int(unsafe.Sizeof(sourceRingRec{}))

// parseRingRecord checks a ring record and returns its outer packet, its
// counter key (session * 2 + direction) and the packet's destination.
func parseRingRecord(raw []byte) (pkt []byte, key int, dst [4]byte, err error) {
	if len(raw) < ringRecLen {
		return nil, 0, dst, errRecord
	}
	// Records start 8-byte aligned in the ring (and in the tests' buffers).
	h := (*sourceRingRec)(unsafe.Pointer(&raw[0]))
	n := int(h.Pktlen)
	if n > len(raw)-ringRecLen || int(h.Session) >= MaxSessions || h.Dir > 1 {
		return nil, 0, dst, errRecord
	}
	pkt = raw[ringRecLen : ringRecLen+n]
	if !outerOK(pkt) {
		return nil, 0, dst, errRecord
	}
	return pkt, int(h.Session)*2 + int(h.Dir), outerDst(pkt), nil
}

// sends is the number of packets handed to the kernel: one per packet on
// the raw socket, one per run on the GSO socket.
func (r *ringPath) sends() uint64 {
	if r.linkB.runs == nil {
		return r.rawSent.Load() + r.linkSent.Load()
	}
	return r.rawSent.Load() + r.linkB.runs.sent.Load()
}

func (r *ringPath) close() error {
	// Direct sends stop first: from then on every copy takes the ring.
	if r.direct != nil {
		r.direct.close()
	}
	r.rd.Interrupt()
	r.wg.Wait()
	r.rd.Close()
	r.closeSockets()
	return nil
}
