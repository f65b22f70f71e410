package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// ringRecHeader is sizeof(struct ring_rec); outerLen is XM_OUTER_LEN (outer
// IPv4 + UDP + VXLAN). Keep in sync with bpf/structs.h and bpf/consts.h.
const (
	ringRecHeader = int(unsafe.Sizeof(sourceRingRec{}))
	outerLen      = 36
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

// idleLooks is how many empty looks make the reader sleep.
func idleLooks(delay time.Duration) int {
	return max(int(ringIdleAfter/delay), 2)
}

// errRecord is a ring record that does not hold a valid packet.
var errRecord = errors.New("malformed ring record")

// hopRefresh is how long a resolved next hop is used before it is looked up
// again (route, link, neighbour); hopRetry is the same for a target whose
// neighbour is not resolved yet: the raw socket's first packet makes the
// kernel resolve it, which takes a round trip, and until the next lookup
// every packet pays for the raw socket.
var (
	hopRefresh = time.Second
	hopRetry   = 50 * time.Millisecond
)

// ringSender reads the records of datapath ring, each an outer IPv4 packet
// built by the program, and sends them in batches. A packet whose next hop
// is a resolved neighbour on an Ethernet interface goes out through an
// AF_PACKET socket straight to that interface, a flow's runs as one UDP GSO
// packet each (gso.go; without PACKET_VNET_HDR, one datagram per packet and
// the kernel adds the Ethernet header): cheaper than the raw IPv4 socket,
// which routes each packet and passes it through netfilter and the
// neighbour layer (BenchmarkSendPath). Everything else, and the first packets to a target
// whose neighbour is not resolved yet, take the raw socket, which makes the
// kernel resolve it. Both sockets carry the tunnel mark.
type ringSender struct {
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
	idle              *ebpf.Variable // ring_idle in the program's memory
	// fence orders the store of ring_idle before the look at the ring
	// (a locked instruction), as the program's submit does on its side.
	fence atomic.Int32
	errs  [MaxSessions * 2]atomic.Uint64
	bad   atomic.Uint64 // malformed records (never expected)
	wg    sync.WaitGroup
	// send sends and empties a batch (sendBatch; tests replace it).
	send      func(*batch)
	priority  string        // of the sending thread
	tick      time.Duration // how often the reader looks while traffic flows
	idleLooks int           // empty looks before it sleeps
	// lookup finds the next hop of a target (resolve; tests replace it).
	lookup func(dst [4]byte) *nextHop
}

// nextHop is where packets to one target go at the link layer.
type nextHop struct {
	ll   unix.RawSockaddrLinklayer
	eth  [ethLen]byte // the Ethernet header, for the GSO socket
	ok   bool         // resolved: use the AF_PACKET socket
	kick bool         // the neighbour is stale: send one packet through the raw socket so the kernel revalidates it
	at   time.Time    // when it was looked up
}

// startRing opens the raw socket (in the caller's network namespace) and the
// ring reader and starts the sending goroutine.
func (s *Source) startRing() (err error) {
	r := &ringSender{pfd: -1, mark: s.mark, hops: map[[4]byte]*nextHop{}, priority: s.priority,
		tick: s.maxDelay, idleLooks: idleLooks(s.maxDelay)}
	r.fd, err = rawSocket(s.mark)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			r.closeSockets()
		}
	}()
	r.linkB.link = true
	// Without an AF_PACKET socket or a netlink handle every packet takes the
	// raw socket: slower, not wrong.
	fd, err := gsoSocket(s.mark)
	if err == nil {
		r.linkB.runs = &runs{}
	} else {
		slog.Warn("ring datapath: no segmentation offload, one send per packet", "err", err)
		fd, err = packetSocket(s.mark)
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
	r.idle = s.objs.RingIdle
	r.rd, err = ringbuf.New(s.objs.XmRing)
	if err != nil {
		return err
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
	s.ring = r
	r.wg.Add(1)
	go r.run()
	return nil
}

// rawSocket is a raw IPv4 socket (the packets carry their own IPv4 header)
// whose packets carry mark, so the source programs do not mirror them.
func rawSocket(mark uint32) (int, error) {
	return markedSocket("raw socket", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW, mark)
}

// packetSocket is an AF_PACKET datagram socket for IPv4 (the kernel builds
// the link-layer header from the destination address) whose packets carry
// mark. It is never bound, so it receives nothing.
func packetSocket(mark uint32) (int, error) {
	return markedSocket("packet socket", unix.AF_PACKET, unix.SOCK_DGRAM, 0, mark)
}

// markedSocket opens a sending socket whose packets carry mark, with a 4 MiB
// send buffer for batches.
func markedSocket(what string, domain, typ, proto int, mark uint32) (int, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: set SO_MARK: %w", what, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	return fd, nil
}

func (r *ringSender) closeSockets() {
	unix.Close(r.fd)
	if r.pfd >= 0 {
		unix.Close(r.pfd)
	}
	if r.nl != nil {
		r.nl.Close()
	}
}

func (r *ringSender) run() {
	defer r.wg.Done()
	defer senderThread(r.priority)()
	empty := 0
	for {
		wait := r.tick
		sleeping := empty >= r.idleLooks
		if sleeping {
			// Announce the sleep, then look once more: a record
			// submitted before the program saw the flag has not woken us.
			r.setIdle(1)
			r.fence.Add(1)
			wait = ringIdleWait
			if r.rd.Available() > 0 {
				wait = 0
			}
		}
		err := r.rd.Wait(wait)
		if sleeping {
			r.setIdle(0)
		}
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			// Not expected (the descriptor is ours); do not spin on it.
			slog.Warn("ring read", "err", err)
			time.Sleep(r.tick)
		}
		if r.drain() > 0 {
			empty = 0
		} else {
			empty++
		}
	}
}

func (r *ringSender) setIdle(v uint32) {
	if err := r.idle.Set(v); err != nil {
		slog.Warn("set ring_idle", "err", err)
	}
}

// drain takes every record in the ring and sends them, batchSize per
// system call, and gives their space back to the programs. It returns the
// number of records taken.
func (r *ringSender) drain() int {
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
func (r *ringSender) sendAndRelease(b *batch) {
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
func (r *ringSender) add(rec []byte) {
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
			binary.BigEndian.PutUint16(pkt[10:], ipv4Checksum(pkt[:20]))
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

// hop returns the link-layer next hop for dst, nil when the packet has to
// take the raw socket.
func (r *ringSender) hop(dst [4]byte) *nextHop {
	if r.pfd < 0 || r.lookup == nil {
		return nil
	}
	h := r.hops[dst]
	if h == nil || r.now.Sub(h.at) > hopRefresh || (!h.ok && r.now.Sub(h.at) > hopRetry) {
		h = r.lookup(dst)
		r.hops[dst] = h
	}
	if !h.ok {
		return nil
	}
	if h.kick {
		h.kick = false
		return nil
	}
	return h
}

// resolve looks up the route to dst (with the tunnel mark, as the raw socket
// would), its interface and the neighbour entry of the next hop.
func (r *ringSender) resolve(dst [4]byte) *nextHop {
	h := &nextHop{at: r.now}
	ip := net.IP(dst[:])
	routes, err := r.nl.RouteGetWithOptions(ip, &netlink.RouteGetOptions{Mark: r.mark})
	if err != nil || len(routes) == 0 || routes[0].LinkIndex <= 0 ||
		(routes[0].Type != 0 && routes[0].Type != unix.RTN_UNICAST) {
		return h
	}
	rt := routes[0]
	nh := ip
	if rt.Gw != nil {
		nh = rt.Gw
	}
	link, err := r.nl.LinkByIndex(rt.LinkIndex)
	if err != nil || link.Attrs().EncapType != "ether" || len(link.Attrs().HardwareAddr) != 6 {
		return h
	}
	neighs, err := r.nl.NeighList(rt.LinkIndex, netlink.FAMILY_V4)
	if err != nil {
		return h
	}
	for _, n := range neighs {
		if !n.IP.Equal(nh) || len(n.HardwareAddr) != 6 {
			continue
		}
		switch {
		case n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT) != 0:
		case n.State&(netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0:
			h.kick = true
		default:
			continue
		}
		h.ll = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(rt.LinkIndex), Halen: 6}
		copy(h.ll.Addr[:], n.HardwareAddr)
		copy(h.eth[0:], n.HardwareAddr)
		copy(h.eth[6:], link.Attrs().HardwareAddr)
		binary.BigEndian.PutUint16(h.eth[12:], unix.ETH_P_IP)
		h.ok = true
		break
	}
	return h
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipv4Checksum is the checksum of an IPv4 header whose checksum field is
// zero or already set (it is skipped).
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i != 10 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// parseRingRecord checks a ring record and returns its outer packet, its
// counter key (session * 2 + direction) and the packet's destination.
func parseRingRecord(raw []byte) (pkt []byte, key int, dst [4]byte, err error) {
	if len(raw) < ringRecHeader {
		return nil, 0, dst, errRecord
	}
	n := int(binary.NativeEndian.Uint32(raw[0:]))
	session := int(binary.NativeEndian.Uint16(raw[4:]))
	dir := int(raw[6])
	if n < outerLen+14 || n > len(raw)-ringRecHeader || session >= MaxSessions || dir > 1 {
		return nil, 0, dst, errRecord
	}
	pkt = raw[ringRecHeader : ringRecHeader+n]
	// IPv4 without options, UDP, total length as recorded.
	if pkt[0] != 0x45 || pkt[9] != unix.IPPROTO_UDP || int(binary.BigEndian.Uint16(pkt[2:])) != n {
		return nil, 0, dst, errRecord
	}
	copy(dst[:], pkt[16:20])
	return pkt, session*2 + dir, dst, nil
}

// sends is the number of packets handed to the kernel: one per packet on
// the raw socket, one per run on the GSO socket.
func (r *ringSender) sends() uint64 {
	if r.linkB.runs == nil {
		return r.rawSent.Load() + r.linkSent.Load()
	}
	return r.rawSent.Load() + r.linkB.runs.sent.Load()
}

// sendErrors is the number of packets whose send failed, all sessions.
func (r *ringSender) sendErrors() (n uint64) {
	for i := range r.errs {
		n += r.errs[i].Load()
	}
	return n
}

// errors returns the send failures of a session and direction.
func (r *ringSender) errors(id uint16, dir int) uint64 {
	if r == nil {
		return 0
	}
	return r.errs[int(id)*2+dir].Load()
}

func (r *ringSender) close() {
	if r == nil {
		return
	}
	r.rd.Interrupt()
	r.wg.Wait()
	r.rd.Close()
	r.closeSockets()
}
