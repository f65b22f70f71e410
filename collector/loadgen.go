package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// CollectorReceiver measures an in-process Collector by its received count.
type CollectorReceiver struct {
	C      *Collector
	cancel context.CancelFunc
	done   chan error
	base   uint64
}

// NewCollectorReceiver starts c.Run; Close stops it.
func NewCollectorReceiver(c *Collector) *CollectorReceiver {
	ctx, cancel := context.WithCancel(context.Background())
	r := &CollectorReceiver{C: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	return r
}

func (r *CollectorReceiver) Name() string       { return "xmirror collect" }
func (r *CollectorReceiver) Addr() *net.UDPAddr { return r.C.Addr() }
func (r *CollectorReceiver) Begin() error       { r.base = r.C.Stats().Received; return nil }
func (r *CollectorReceiver) End() (uint64, error) {
	return r.C.Stats().Received - r.base, nil
}
func (r *CollectorReceiver) Close() error { r.cancel(); return <-r.done }

// BareReceiver is the ceiling: the same SO_REUSEPORT sockets and recvmmsg
// batches as the collector, but it only counts the datagrams.
type BareReceiver struct {
	conns []*net.UDPConn
	count atomic.Uint64
	base  uint64
	done  chan struct{}
}

// NewBareReceiver listens on addr with readers sockets.
func NewBareReceiver(addr string, readers, rcvbuf, batchSize int) (*BareReceiver, error) {
	conns, _, err := listenReuseport(addr, readers, rcvbuf)
	if err != nil {
		return nil, err
	}
	r := &BareReceiver{conns: conns, done: make(chan struct{})}
	for _, conn := range conns {
		go r.loop(conn, batchSize)
	}
	return r, nil
}

func (r *BareReceiver) loop(conn *net.UDPConn, batchSize int) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	b := newBatch(batchSize, 16384)
	var n int
	var errno syscall.Errno
	read := func(fd uintptr) bool {
		b.reset()
		n, errno = recvmmsg(fd, b)
		return errno != unix.EAGAIN
	}
	for rc.Read(read) == nil {
		if errno == 0 {
			r.count.Add(uint64(n))
		}
	}
}

func (r *BareReceiver) Name() string         { return "bare recvmmsg" }
func (r *BareReceiver) Addr() *net.UDPAddr   { return r.conns[0].LocalAddr().(*net.UDPAddr) }
func (r *BareReceiver) Begin() error         { r.base = r.count.Load(); return nil }
func (r *BareReceiver) End() (uint64, error) { return r.count.Load() - r.base, nil }
func (r *BareReceiver) Close() error {
	for _, c := range r.conns {
		_ = c.Close()
	}
	return nil
}

// TcpdumpReceiver runs `tcpdump -i lo -w FILE udp dst port P` for each step
// (what users run today) and counts what it says it captured. A socket that
// is never read holds the port so that the sender gets no ICMP errors.
type TcpdumpReceiver struct {
	cpu  time.Duration
	sink *net.UDPConn
	dir  string
	cmd  *exec.Cmd
	out  *bufio.Reader
	errc chan string
}

// NewTcpdumpReceiver binds the sink on 127.0.0.1 (port 0 picks one).
func NewTcpdumpReceiver(port int) (*TcpdumpReceiver, error) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, fmt.Errorf("tcpdump sink: %w", err)
	}
	_ = sink.SetReadBuffer(4096)
	dir, err := os.MkdirTemp("", "xmirror-tcpdump-")
	if err != nil {
		sink.Close()
		return nil, err
	}
	return &TcpdumpReceiver{sink: sink, dir: dir}, nil
}

func (r *TcpdumpReceiver) Name() string       { return "tcpdump -w" }
func (r *TcpdumpReceiver) Addr() *net.UDPAddr { return r.sink.LocalAddr().(*net.UDPAddr) }

var reListening = regexp.MustCompile(`listening on`)
var reCaptured = regexp.MustCompile(`(\d+) packets? captured`)

func (r *TcpdumpReceiver) Begin() error {
	file := filepath.Join(r.dir, "capture.pcap")
	_ = os.Remove(file)
	r.cmd = exec.Command("tcpdump", "-i", "lo", "-n", "-w", file, "udp", "dst", "port", strconv.Itoa(r.Addr().Port))
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start tcpdump: %w", err)
	}
	r.errc = make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.errc <- sc.Text()
		}
		close(r.errc)
	}()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-r.errc:
			if !ok {
				return errors.New("tcpdump exited before capturing")
			}
			if reListening.MatchString(line) {
				return nil
			}
		case <-timeout:
			return errors.New("tcpdump did not start")
		}
	}
}

func (r *TcpdumpReceiver) End() (uint64, error) {
	_ = r.cmd.Process.Signal(os.Interrupt)
	var captured uint64
	var found bool
	for line := range r.errc {
		if m := reCaptured.FindStringSubmatch(line); m != nil {
			captured, _ = strconv.ParseUint(m[1], 10, 64)
			found = true
		}
	}
	_ = r.cmd.Wait()
	r.cpu = 0
	if ru, ok := r.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	_ = os.Remove(filepath.Join(r.dir, "capture.pcap"))
	if !found {
		return 0, errors.New("tcpdump reported no capture count")
	}
	return captured, nil
}

// StepCPU is the CPU time tcpdump used in the last step.
func (r *TcpdumpReceiver) StepCPU() time.Duration { return r.cpu }

func (r *TcpdumpReceiver) Close() error {
	_ = os.RemoveAll(r.dir)
	return r.sink.Close()
}
