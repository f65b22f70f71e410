// SPDX-License-Identifier: Apache-2.0

package collector

// The load ladder of BenchmarkLadder: a sendmmsg VXLAN sender, steps of
// increasing rate, and three receivers measured the same way (the collector,
// bench's recvmmsg sink as the ceiling, tcpdump -w).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/bench"
	"github.com/xmirror/xmirror/internal/netlab"
)

// LoadSpec describes the VXLAN traffic SendVXLAN generates.
type LoadSpec struct {
	// InnerSize is the inner frame length (default 100: a 150-byte frame on
	// the wire with the outer Ethernet, IPv4, UDP and VXLAN headers).
	InnerSize int
	// VNI of every packet (default 1).
	VNI uint32
	// Flows is the number of sending sockets, i.e. outer source ports, which
	// SO_REUSEPORT spreads over the receivers (default 8).
	Flows int
	// Batch is the number of datagrams per sendmmsg (default 64).
	Batch int
	// Senders is the number of sending threads (default 1). On loopback the
	// sender also runs the kernel's receive path up to the socket queue.
	Senders int
}

func (s *LoadSpec) applyDefaults() {
	if s.InnerSize < ethHeaderLen+20 {
		s.InnerSize = 100
	}
	if s.VNI == 0 {
		s.VNI = 1
	}
	if s.Flows <= 0 {
		s.Flows = 8
	}
	if s.Batch <= 0 {
		s.Batch = 64
	}
	if s.Senders <= 0 {
		s.Senders = 1
	}
}

// loadPayload is a VXLAN datagram holding an Ethernet/IPv4/UDP frame of
// size bytes.
func loadPayload(vni uint32, size int) []byte {
	b := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	frame := make([]byte, size)
	copy(frame, []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := frame[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	le := size - 14
	ip[2], ip[3] = byte(le>>8), byte(le)
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	return append(b, frame...)
}

// SendVXLAN sends VXLAN datagrams to target at rate packets per second (0:
// as fast as it can) for d, with sendmmsg on blocking sockets from
// spec.Senders threads. It returns how many the kernel accepted and the CPU
// time the sending threads used (on loopback that includes the kernel's
// receive path up to the receiver's socket queue).
func SendVXLAN(ctx context.Context, target *net.UDPAddr, rate int, d time.Duration, spec LoadSpec) (uint64, time.Duration, error) {
	spec.applyDefaults()
	ip4 := target.IP.To4()
	if ip4 == nil {
		return 0, 0, errors.New("load generator: IPv4 target required")
	}
	payload := loadPayload(spec.VNI, spec.InnerSize)
	fds := make([]int, 0, spec.Flows)
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for i := 0; i < max(spec.Flows, spec.Senders); i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("load generator socket: %w", err)
		}
		fds = append(fds, fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: target.Port, Addr: [4]byte(ip4)}); err != nil {
			return 0, 0, fmt.Errorf("load generator connect: %w", err)
		}
	}
	var total, cpu atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < spec.Senders; i++ {
		var mine []int
		for j := i; j < len(fds); j += spec.Senders {
			mine = append(mine, fds[j])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0 := threadCPU()
			total.Add(sendLoop(ctx, mine, payload, rate/spec.Senders, start, start.Add(d), spec.Batch))
			cpu.Add(uint64(threadCPU() - c0))
		}()
	}
	wg.Wait()
	return total.Load(), time.Duration(cpu.Load()), nil
}

func rusageCPU(ru *unix.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return rusageCPU(&ru)
}

// processCPU is the CPU time of this process.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return rusageCPU(&ru)
}

// sendLoop paces sendmmsg batches over fds in turn until end.
func sendLoop(ctx context.Context, fds []int, payload []byte, rate int, start, end time.Time, batch int) uint64 {
	hdrs := make([]unix.Mmsghdr, batch)
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(len(payload))
	for i := range hdrs {
		hdrs[i].Hdr.Iov = &iov
		hdrs[i].Hdr.Iovlen = 1
	}
	var sent uint64
	flow := 0
	for i := 0; ; i++ {
		if i%64 == 0 && ctx.Err() != nil {
			break
		}
		now := time.Now()
		if now.After(end) {
			break
		}
		n := batch
		if rate > 0 {
			due := int64(float64(rate)*now.Sub(start).Seconds()) - int64(sent)
			if due <= 0 {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			n = int(min(due, int64(batch)))
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fds[flow]), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(n), 0, 0, 0)
		if errno == 0 {
			sent += uint64(r)
		}
		flow = (flow + 1) % len(fds)
	}
	runtime.KeepAlive(payload)
	return sent
}

// Receiver is what a load ladder measures. Begin is called before each
// step, End after it (and a drain pause) with the number of datagrams the
// receiver took during the step.
type Receiver interface {
	Name() string
	Addr() *net.UDPAddr
	Begin() error
	End() (uint64, error)
	Close() error
}

// ExternalReceiver is a Receiver in another process; StepCPU is the CPU time
// it used during the last step. For receivers in this process the ladder
// takes the process's CPU time minus the sender's.
type ExternalReceiver interface {
	StepCPU() time.Duration
}

// LadderStep is one rate of a ladder.
type LadderStep struct {
	Rate     int     // asked rate in packets per second (0 = unpaced)
	Sent     uint64  // datagrams the sender's kernel accepted
	Received uint64  // datagrams the receiver took
	Achieved float64 // sent per second
	Loss     float64 // 1 - received/sent
	// RxCPU is the receiver's CPU time per received datagram, in ns
	// (user space plus its system calls; the kernel's loopback receive
	// path runs on the sender's thread and is not in it).
	RxCPU float64
}

// LadderResult is a receiver's ladder: MaxLossless is the highest achieved
// rate received without loss, TopLoss the loss at the last (highest) step.
type LadderResult struct {
	Name        string
	Steps       []LadderStep
	MaxLossless float64
	TopRate     float64
	TopLoss     float64
	TopRxCPU    float64 // RxCPU at the top step
}

// RunLadder sends at each rate for step against r and records the loss.
func RunLadder(ctx context.Context, r Receiver, rates []int, step time.Duration, spec LoadSpec) (LadderResult, error) {
	res := LadderResult{Name: r.Name()}
	for _, rate := range rates {
		if err := r.Begin(); err != nil {
			return res, fmt.Errorf("%s: %w", r.Name(), err)
		}
		t0, cpu0 := time.Now(), processCPU()
		sent, sendCPU, err := SendVXLAN(ctx, r.Addr(), rate, step, spec)
		el := time.Since(t0)
		if err != nil {
			return res, err
		}
		time.Sleep(300 * time.Millisecond) // let the receiver drain its queue
		got, err := r.End()
		if err != nil {
			return res, fmt.Errorf("%s: %w", r.Name(), err)
		}
		rxCPU := processCPU() - cpu0 - sendCPU
		if ext, ok := r.(ExternalReceiver); ok {
			rxCPU = ext.StepCPU()
		}
		st := LadderStep{Rate: rate, Sent: sent, Received: min(got, sent), Achieved: float64(sent) / el.Seconds()}
		if got > 0 {
			st.RxCPU = float64(rxCPU.Nanoseconds()) / float64(got)
		}
		if sent > 0 {
			st.Loss = 1 - float64(st.Received)/float64(sent)
		}
		res.Steps = append(res.Steps, st)
		if st.Received == st.Sent && st.Achieved > res.MaxLossless {
			res.MaxLossless = st.Achieved
		}
		res.TopRate, res.TopLoss, res.TopRxCPU = st.Achieved, st.Loss, st.RxCPU
	}
	return res, nil
}

// collectorReceiver measures an in-process Collector by its received count.
type collectorReceiver struct {
	C      *Collector
	cancel context.CancelFunc
	done   chan error
	base   uint64
}

// newCollectorReceiver starts c.Run; Close stops it.
func newCollectorReceiver(c *Collector) *collectorReceiver {
	ctx, cancel := context.WithCancel(context.Background())
	r := &collectorReceiver{C: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	return r
}

func (r *collectorReceiver) Name() string       { return "xmirror collect" }
func (r *collectorReceiver) Addr() *net.UDPAddr { return r.C.Addr() }
func (r *collectorReceiver) Begin() error       { r.base = r.C.Stats().Received; return nil }
func (r *collectorReceiver) End() (uint64, error) {
	return r.C.Stats().Received - r.base, nil
}
func (r *collectorReceiver) Close() error { r.cancel(); return <-r.done }

// sinkReceiver is the ceiling: bench's recvmmsg sink (`xmirror bench sink`),
// SO_REUSEPORT sockets that only count the datagrams.
type sinkReceiver struct {
	sink   *bench.Sink
	cancel context.CancelFunc
	done   chan error
	base   uint64
}

// newSinkReceiver listens on addr with readers sockets of rcvbuf bytes.
func newSinkReceiver(addr string, readers, rcvbuf int) (*sinkReceiver, error) {
	s, err := bench.ListenSink(addr, readers, rcvbuf)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &sinkReceiver{sink: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	return r, nil
}

func (r *sinkReceiver) Name() string         { return "bare recvmmsg" }
func (r *sinkReceiver) Addr() *net.UDPAddr   { return r.sink.Addr().(*net.UDPAddr) }
func (r *sinkReceiver) Begin() error         { r.base = r.sink.Counts().Packets; return nil }
func (r *sinkReceiver) End() (uint64, error) { return r.sink.Counts().Packets - r.base, nil }
func (r *sinkReceiver) Close() error {
	r.cancel()
	return errors.Join(<-r.done, r.sink.Close())
}

// tcpdumpReceiver runs `tcpdump -i lo -w FILE udp dst port P` for each step
// (what users run today) and counts what it says it captured. A socket that
// is never read holds the port so that the sender gets no ICMP errors.
type tcpdumpReceiver struct {
	cpu  time.Duration
	hold *net.UDPConn
	dir  string
	dump *localTcpdump
}

// newTcpdumpReceiver binds the port holder on 127.0.0.1 (port 0 picks one).
func newTcpdumpReceiver(port int) (*tcpdumpReceiver, error) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	hold, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, fmt.Errorf("tcpdump port holder: %w", err)
	}
	_ = hold.SetReadBuffer(4096)
	dir, err := os.MkdirTemp("", "xmirror-tcpdump-")
	if err != nil {
		hold.Close()
		return nil, err
	}
	return &tcpdumpReceiver{hold: hold, dir: dir}, nil
}

func (r *tcpdumpReceiver) Name() string       { return "tcpdump -w" }
func (r *tcpdumpReceiver) Addr() *net.UDPAddr { return r.hold.LocalAddr().(*net.UDPAddr) }

func (r *tcpdumpReceiver) Begin() (err error) {
	file := filepath.Join(r.dir, "capture.pcap")
	_ = os.Remove(file)
	r.dump, err = startLocalTcpdump("-i", "lo", "-n", "-w", file, "udp", "dst", "port", strconv.Itoa(r.Addr().Port))
	return err
}

func (r *tcpdumpReceiver) End() (uint64, error) {
	counts, err := r.dump.Stop()
	r.cpu = r.dump.cpu()
	_ = os.Remove(filepath.Join(r.dir, "capture.pcap"))
	if err != nil {
		return 0, err
	}
	return uint64(counts.Captured), nil
}

// localTcpdump is tcpdump in this process's namespace: the ladder runs on
// loopback, outside any lab, where netlab's Host.StartTcpdump does not reach.
type localTcpdump struct {
	cmd  *exec.Cmd
	out  netlab.SyncBuffer
	done chan error
}

// startLocalTcpdump runs `tcpdump args...` and returns once it prints
// "listening on": from then on it sees every packet.
func startLocalTcpdump(args ...string) (*localTcpdump, error) {
	t := &localTcpdump{cmd: exec.Command("tcpdump", args...), done: make(chan error, 1)}
	t.cmd.Stdout, t.cmd.Stderr = &t.out, &t.out
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tcpdump: %w", err)
	}
	go func() { t.done <- t.cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(t.out.String(), "listening on") {
		select {
		case err := <-t.done:
			return nil, fmt.Errorf("tcpdump exited: %v: %s", err, strings.TrimSpace(t.out.String()))
		case <-deadline:
			t.cmd.Process.Kill()
			<-t.done
			return nil, fmt.Errorf("tcpdump did not start listening within 10s: %s", strings.TrimSpace(t.out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return t, nil
}

// Stop interrupts tcpdump, which then writes out what it holds, and returns
// the counts it prints.
func (t *localTcpdump) Stop() (netlab.TcpdumpCounts, error) {
	t.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-t.done:
	case <-time.After(10 * time.Second):
		t.cmd.Process.Kill()
		<-t.done
		err = errors.New("did not stop within 10s after SIGINT; killed")
	}
	c := netlab.ParseTcpdumpCounts(t.out.String())
	if err == nil && c.Captured < 0 {
		err = errors.New("no count of captured packets")
	}
	if err != nil {
		return c, fmt.Errorf("tcpdump: %w: %s", err, strings.TrimSpace(t.out.String()))
	}
	return c, nil
}

// cpu is the user and system time tcpdump used; call it after Stop.
func (t *localTcpdump) cpu() time.Duration {
	if ru, ok := t.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return 0
}

// StepCPU is the CPU time tcpdump used in the last step.
func (r *tcpdumpReceiver) StepCPU() time.Duration { return r.cpu }

func (r *tcpdumpReceiver) Close() error {
	_ = os.RemoveAll(r.dir)
	return r.hold.Close()
}
