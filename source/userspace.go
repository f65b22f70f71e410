package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/perf"
	"golang.org/x/sys/unix"
)

// Datapaths: where the cut copy of a packet is encapsulated.
const (
	// DatapathKernel clones the packet to the VXLAN device, cuts the clone
	// and lets the vxlan driver encapsulate it.
	DatapathKernel = "kernel"
	// DatapathPerf copies only the cut frame to a per-CPU perf buffer and
	// encapsulates it in user space (raw socket). Cutting a clone copies the
	// whole packet, which is expensive for large GSO packets; this copies
	// only the bytes kept.
	DatapathPerf = "perf"
	// DatapathRing has the program write the cut frame, with its outer
	// IPv4/UDP/VXLAN headers in front, into one BPF ring buffer; user space
	// only sends the packets, in batches (sendmmsg through a raw socket),
	// and is woken once per batch rather than once per packet.
	DatapathRing = "ring"

	// DefaultDatapath is the datapath New uses when Options.Datapath is
	// empty: ring, the cheapest by measurement with offloads on and off
	// (docs/source.md, "Performance").
	DefaultDatapath = DatapathRing

	datapathKernel = 0 // keep in sync with bpf/consts.h
	datapathPerf   = 1
	datapathRing   = 2
)

// Datapaths lists the valid values of Options.Datapath.
var Datapaths = []string{DatapathRing, DatapathKernel, DatapathPerf}

var datapathNames = map[uint32]string{datapathKernel: DatapathKernel, datapathPerf: DatapathPerf, datapathRing: DatapathRing}

// perfSampleHeader is sizeof(struct sample). Keep in sync with bpf/structs.h.
const perfSampleHeader = int(unsafe.Sizeof(sourceSample{}))

// encapsulator reads cut frames from the perf buffer and sends them as VXLAN
// through a raw IPv4 socket carrying the tunnel mark.
type encapsulator struct {
	src       *Source
	rd        *perf.Reader
	fd        int
	portMin   uint32
	portRange uint32
	errs      [MaxSessions * 2]atomic.Uint64
	lost      atomic.Uint64
	wg        sync.WaitGroup
}

// startEncapsulator opens the socket (in the caller's network namespace) and
// the perf reader and starts the sending goroutine.
func (s *Source) startEncapsulator() (err error) {
	e := &encapsulator{src: s, fd: -1}
	// The tunnel mark keeps the source programs from mirroring our own packets.
	e.fd, err = rawSocket(s.mark)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			unix.Close(e.fd)
		}
	}()
	e.portMin, e.portRange = localPortRange()
	e.rd, err = perf.NewReader(s.objs.XmEvents, 1<<20)
	if err != nil {
		return fmt.Errorf("perf reader: %w", err)
	}
	s.encap = e
	e.wg.Add(1)
	go e.run()
	return nil
}

// localPortRange is the range the vxlan driver takes outer source ports from
// (net.ipv4.ip_local_port_range), so both datapaths pick the same port.
func localPortRange() (min, rng uint32) {
	min, max := uint32(32768), uint32(60999)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && lo < hi {
				min, max = uint32(lo), uint32(hi)
			}
		}
	}
	return min, max - min
}

// srcPort is udp_flow_src_port() of the kernel for a given flow hash.
func (e *encapsulator) srcPort(hash uint32) uint16 {
	hash ^= hash << 16
	return uint16((uint64(hash)*uint64(e.portRange))>>32 + uint64(e.portMin))
}

// batchSize is how many frames one sendmmsg call carries at most. With the
// GSO socket it also bounds the runs a batch is cut into: 256 records make
// runs of about a hundred under a bulk transfer, a third of the packets the
// kernel handles at 64, and about a fifth less of the sender's CPU.
const batchSize = 256

// mmsghdr is struct mmsghdr of linux/socket.h.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batch holds the packets of one sendmmsg call.
type batch struct {
	bufs [batchSize][]byte // reused buffers
	pkts [batchSize][]byte // the packets to send (in bufs)
	keys [batchSize]int
	dsts [batchSize]unix.RawSockaddrInet4
	lls  [batchSize]unix.RawSockaddrLinklayer // destinations when link is set
	link bool                                 // packets for an AF_PACKET socket
	runs *runs                                // runs leave as one GSO packet (AF_PACKET socket with a virtio-net header)
	iovs [batchSize]unix.Iovec
	msgs [batchSize]mmsghdr
	n    int
}

func (e *encapsulator) run() {
	defer e.wg.Done()
	defer senderThread(e.src.priority)()
	var rec perf.Record
	b := &batch{} // add grows each buffer to the largest packet it carried
	for {
		// Block for the first record, then take what is already there
		// without waiting, and send it all with one system call.
		e.rd.SetDeadline(time.Time{})
		err := e.rd.ReadInto(&rec)
		for err == nil {
			e.add(b, &rec)
			if b.n == batchSize {
				break
			}
			e.rd.SetDeadline(time.Now())
			err = e.rd.ReadInto(&rec)
		}
		e.flush(b)
		if errors.Is(err, perf.ErrClosed) {
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			slog.Warn("perf read", "err", err)
		}
	}
}

// add turns one perf record into a packet of the batch.
func (e *encapsulator) add(b *batch, rec *perf.Record) {
	if rec.LostSamples > 0 {
		e.lost.Add(rec.LostSamples)
		return
	}
	raw := rec.RawSample
	if len(raw) < perfSampleHeader {
		e.lost.Add(1)
		return
	}
	var h sourceSample
	h.Caplen = binary.NativeEndian.Uint32(raw[0:])
	h.Len = binary.NativeEndian.Uint32(raw[4:])
	h.Hash = binary.NativeEndian.Uint32(raw[8:])
	h.Ifindex = binary.NativeEndian.Uint32(raw[12:])
	h.Session = binary.NativeEndian.Uint16(raw[16:])
	h.Dir = raw[18]
	frame := raw[perfSampleHeader:]
	if int(h.Caplen) > len(frame) {
		e.lost.Add(1)
		return
	}
	key := (int(h.Session)%MaxSessions)*2 + int(h.Dir&1)
	pkt, remote, err := e.build(b.bufs[b.n][:0], &h, frame[:h.Caplen])
	if err != nil {
		e.errs[key].Add(1)
		return
	}
	i := b.n
	b.bufs[i] = pkt
	b.pkts[i] = pkt
	b.keys[i] = key
	b.dsts[i] = unix.RawSockaddrInet4{Family: unix.AF_INET}
	binary.NativeEndian.PutUint32(b.dsts[i].Addr[:], remote)
	b.n++
}

// flush sends the batch with sendmmsg; packets the kernel refuses count as
// errors of their session.
func (e *encapsulator) flush(b *batch) {
	sendBatch(e.fd, b, &e.errs)
}

// sendBatch sends the packets of b through the raw socket fd with sendmmsg
// and empties b; a packet the kernel refuses counts in errs (by session and
// direction) and the rest of the batch is still sent.
func sendBatch(fd int, b *batch, errs *[MaxSessions * 2]atomic.Uint64) {
	for i := 0; i < b.n; i++ {
		b.iovs[i] = unix.Iovec{Base: &b.pkts[i][0]}
		b.iovs[i].SetLen(len(b.pkts[i]))
		b.msgs[i] = mmsghdr{hdr: unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&b.dsts[i])),
			Namelen: unix.SizeofSockaddrInet4,
			Iov:     &b.iovs[i],
		}}
		if b.link {
			b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.lls[i]))
			b.msgs[i].hdr.Namelen = unix.SizeofSockaddrLinklayer
		}
		b.msgs[i].hdr.SetIovlen(1)
	}
	sendMessages(fd, b.msgs[:b.n], func(i int) { errs[b.keys[i]].Add(1) })
	b.n = 0
}

// sendMessages sends msgs with as few sendmmsg calls as the kernel allows. A
// message the kernel refuses is handed to failed (by index) and skipped, and
// the rest are still sent.
func sendMessages(fd int, msgs []mmsghdr, failed func(i int)) {
	for sent := 0; sent < len(msgs); {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[sent])), uintptr(len(msgs)-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || r == 0 {
			failed(sent)
			sent++
			continue
		}
		sent += int(r)
	}
}

// build puts outer IPv4 (DF, TTL, the source interface's address; the
// kernel fills in length, ID and checksum), UDP (checksum 0) and VXLAN (I
// flag, VNI) in front of the frame; it returns the packet and the target.
func (e *encapsulator) build(b []byte, h *sourceSample, frame []byte) ([]byte, uint32, error) {
	prog := e.src.live.Load()
	if prog == nil {
		return nil, 0, errors.New("no program")
	}
	sess, ok := prog.Sessions[h.Session]
	if !ok {
		return nil, 0, errors.New("unknown session")
	}
	ifc, ok := prog.Ifaces[h.Ifindex]
	if !ok {
		return nil, 0, errors.New("unknown interface")
	}
	udpLen := 8 + 8 + len(frame)
	b = append(b,
		0x45, 0, 0, 0, // version, IHL, TOS, total length (kernel)
		0, 0, 0x40, 0, // ID (kernel), DF
		sess.Ttl, unix.IPPROTO_UDP, 0, 0, // TTL, protocol, checksum (kernel)
	)
	b = binary.NativeEndian.AppendUint32(b, ifc.Local) // both already in network order in memory
	b = binary.NativeEndian.AppendUint32(b, sess.Remote)
	b = binary.BigEndian.AppendUint16(b, e.srcPort(h.Hash))
	b = binary.BigEndian.AppendUint16(b, 4789)
	b = binary.BigEndian.AppendUint16(b, uint16(udpLen))
	b = append(b, 0, 0, 0x08, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, sess.Vni<<8)
	b = append(b, frame...)
	return b, sess.Remote, nil
}

// errors returns the send failures of a session and direction.
func (e *encapsulator) errors(id uint16, dir int) uint64 {
	if e == nil {
		return 0
	}
	return e.errs[int(id)*2+dir].Load()
}

func (e *encapsulator) close() {
	if e == nil {
		return
	}
	e.rd.Close()
	e.wg.Wait()
	unix.Close(e.fd)
}
