// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/perf"
	"golang.org/x/sys/unix"
)

// perfPath is datapath perf: the programs copy the cut frame, behind a
// struct sample, to a per-CPU perf buffer; a goroutine puts the outer
// headers in front (appendOuter), a VLAN tag the kernel kept in metadata
// back in the frame (appendTagged), and sends batches through a raw IPv4
// socket.
type perfPath struct {
	rd       *perf.Reader
	fd       int // raw IPv4 socket
	ports    portRange
	priority string // of the sending thread
	errs     sendErrors
	lost     atomic.Uint64 // samples lost (buffer full) or malformed
	wg       sync.WaitGroup
}

// perfSampleLen is sizeof(struct sample), the header of every sample.
const perfSampleLen = int(unsafe.Sizeof(sourceSample{}))

// startPerf opens the socket (in the caller's network namespace) and the
// perf reader and starts the sending goroutine.
func startPerf(objs *sourceObjects, mark uint32, priority string) (_ datapath, err error) {
	p := &perfPath{ports: localPortRange(), priority: priority}
	if p.fd, err = rawSocket(mark); err != nil {
		return nil, err
	}
	if p.rd, err = perf.NewReader(objs.XmEvents, 1<<20); err != nil {
		unix.Close(p.fd)
		return nil, fmt.Errorf("perf reader: %w", err)
	}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

func (p *perfPath) name() string { return DatapathPerf }

func (p *perfPath) fill(st *sourceState) { st.Datapath = sourceXmDatapathXM_DATAPATH_PERF }

// running: the samples carry their outer headers' fields.
func (p *perfPath) running(*Program) {}

func (p *perfPath) errors(id uint16, dir int) uint64 { return p.errs.of(id, dir) }

func (p *perfPath) writeMetrics(w io.Writer) {
	fmt.Fprintf(w, "# HELP xmirror_source_perf_lost_samples_total Cut frames lost because the perf buffer was full (datapath perf).\n# TYPE xmirror_source_perf_lost_samples_total counter\n")
	fmt.Fprintf(w, "xmirror_source_perf_lost_samples_total %d\n", p.lost.Load())
}

func (p *perfPath) run() {
	defer p.wg.Done()
	defer senderThread(p.priority)()
	var rec perf.Record
	b := &batch{} // add grows each buffer to the largest packet it carried
	for {
		// Block for the first record, then take what is already there
		// without waiting, and send it all with one system call.
		p.rd.SetDeadline(time.Time{})
		err := p.rd.ReadInto(&rec)
		for err == nil {
			p.add(b, &rec)
			if b.n == batchSize {
				break
			}
			p.rd.SetDeadline(time.Now())
			err = p.rd.ReadInto(&rec)
		}
		sendBatch(p.fd, b, &p.errs)
		if errors.Is(err, perf.ErrClosed) {
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			slog.Warn("perf read", "err", err)
		}
	}
}

// add turns one perf record into a packet of the batch.
func (p *perfPath) add(b *batch, rec *perf.Record) {
	if rec.LostSamples > 0 {
		p.lost.Add(rec.LostSamples)
		return
	}
	raw := rec.RawSample
	if len(raw) < perfSampleLen {
		p.lost.Add(1)
		return
	}
	h := (*sourceSample)(unsafe.Pointer(&raw[0]))
	frame := raw[perfSampleLen:]
	n := int(h.Caplen)
	if h.VlanProto != 0 {
		// The tag is in the header, not in the data (struct sample).
		n = max(n-vlanLen, macsLen)
	}
	if n > len(frame) {
		p.lost.Add(1)
		return
	}
	key := (int(h.Session)%MaxSessions)*2 + int(h.Dir&1)
	pkt, remote, err := p.build(b.bufs[b.n][:0], h, frame[:n])
	if err != nil {
		p.errs[key].Add(1)
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

// build puts the outer headers the sample carries (its session's as the
// program saw it, so a reload since changes nothing) in front of the frame
// (its data from the sample, with the sample's tag put back); it returns the
// packet and the target.
func (p *perfPath) build(b []byte, h *sourceSample, frame []byte) ([]byte, uint32, error) {
	if h.Remote == 0 || h.Local == 0 {
		return nil, 0, errors.New("sample without outer addresses")
	}
	o := outerFields{local: h.Local, remote: h.Remote, ttl: h.Ttl, sport: p.ports.sourcePort(h.Hash), vni: h.Vni}
	if h.VlanProto == 0 {
		b = appendOuter(b, o, len(frame))
		return append(b, frame...), h.Remote, nil
	}
	b = appendOuter(b, o, int(h.Caplen))
	return appendTagged(b, frame, h.VlanProto, h.VlanTci, int(h.Caplen)), h.Remote, nil
}

// Of an Ethernet frame: the MAC addresses, behind which a VLAN tag sits, and
// the tag.
const (
	macsLen = int(sourceXmWireXM_ETH_ADDRS_LEN)
	vlanLen = int(sourceXmWireXM_VLAN_HLEN)
)

// appendTagged appends the frame whose data is data (at least the MAC
// addresses) with the VLAN tag proto, tci put behind the MAC addresses, as
// tcpdump shows a frame whose tag the kernel keeps in metadata, cut to n
// bytes.
func appendTagged(b, data []byte, proto, tci uint16, n int) []byte {
	start := len(b)
	b = append(b, data[:macsLen]...)
	b = binary.BigEndian.AppendUint16(b, proto)
	b = binary.BigEndian.AppendUint16(b, tci)
	b = append(b, data[macsLen:]...)
	return b[:start+min(n, len(b)-start)]
}

func (p *perfPath) close() error {
	p.rd.Close()
	p.wg.Wait()
	return unix.Close(p.fd)
}
