// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/lock"
)

// Options configure a Collector. Zero values take the defaults noted.
type Options struct {
	// Listen is the UDP address to receive VXLAN on (default "0.0.0.0:4789";
	// port 0 picks a free port, see Addr); its host is where GENEVE and GRE
	// are received too.
	Listen string
	// OutputDir holds one directory per session; "" writes no files (then
	// Live or Tap must be set).
	OutputDir string
	// Live receives one pcapng stream of every session's packets (one
	// interface block per session and mirror source), e.g. stdout for
	// `| wireshark -k -i -`. A reader that falls behind loses packets
	// (xmirror_collector_live_drops_total); it never stalls receiving.
	Live io.Writer
	// Tap names a TAP device, created if needed, that receives every inner
	// frame, for an IDS to capture from; with {vni} in the name, each
	// configured session gets its own (e.g. "xm{vni}": xm100 for VNI 100)
	// and unnamed VNIs none. Drops are counted as for Live.
	Tap string

	Format Format
	// RotateSize closes a file once it reaches this many bytes (0 = never).
	RotateSize int64
	// RotateInterval closes files on wall-clock boundaries of this interval
	// (1h rotates on the hour, UTC); 0 = never.
	RotateInterval time.Duration
	// Keep is how many closed files each session keeps (0 = all); KeepBytes
	// caps their total size (0 = no cap). The newest file is always kept.
	Keep      int
	KeepBytes int64
	// KeepAge removes closed files older than this, MaxTotalSize the oldest
	// closed files while all sessions' files together are larger (0 = no
	// limit). MinFree removes the oldest closed files while the output
	// filesystem has less space free, and pauses writing (drops counted as
	// disk_low) when that is not enough. The newest file of a configured or
	// open session is never removed by any of them.
	KeepAge      time.Duration
	MaxTotalSize int64
	MinFree      int64
	// Compress gzips each closed file (name.pcapng.gz) before retention and
	// the post-rotate command see it.
	Compress bool
	// FileMode is the mode of capture files (default 0640); directories get
	// the same with x where r is set (0750). Group, a name or a number,
	// owns them ("" = the process's group).
	FileMode os.FileMode
	Group    string
	// FileName is the file name template (default DefaultFileName):
	// {session}, {host}, {vni} and {time} (UTC start, required).
	FileName string
	// Host names the collector in file names (default: the host name).
	Host string
	// Inputs are the tunnels received (default: VXLAN on Listen's port).
	Inputs []Input
	// Named are the sessions of the configuration, by protocol and id;
	// others are named "vni-N" (VXLAN) or "PROTOCOL-N". Sessions and
	// PacketLengths name VXLAN sessions by VNI, the same as Named entries
	// of ProtoVXLAN (packet lengths: the snaplen of their interface blocks;
	// missing or 0: whole frames).
	Named         map[Key]Session
	Sessions      map[uint32]string
	PacketLengths map[uint32]int
	// DropUnknownVNI drops packets of sessions not in Named instead of
	// capturing them.
	DropUnknownVNI bool
	// MaxSessions bounds the sessions (VNIs) not in Sessions captured at
	// once (default 1024): a sender spraying VNIs cannot make a directory,
	// a file and a buffer for each. Packets of other VNIs beyond the limit
	// are dropped as session_limit until a session goes idle.
	MaxSessions int
	// SessionIdle closes the file of a session without packets for this
	// long; a session not in Sessions is then forgotten, freeing its place
	// under MaxSessions (default 5m; negative = never).
	SessionIdle time.Duration
	// MaxSourceSeries bounds the per-source metric series across all
	// sessions (default 4096); sources beyond it count as source="other".
	MaxSourceSeries int
	// PostRotate is a command, split at spaces and run without a shell,
	// with each closed file's path as its last argument.
	PostRotate string
	// Receive is the receive path: ReceiveAuto (default), ReceiveXDP or
	// ReceiveSocket.
	Receive string
	// Readers is the number of SO_REUSEPORT sockets of the socket path,
	// one goroutine each (default: one per CPU).
	Readers int
	// Writers is the number of goroutines that write the files, each
	// owning the sessions whose VNI modulo Writers is its index (default 1).
	Writers int
	// HandoffBuffer is the memory of the batches in flight from the
	// receive path to each writer (default 64 MiB: at 800 kpps, 8 MiB held
	// 82 ms of packets, less than a write the page cache holds up; see
	// docs/collector.md); a writer that has them all makes its packets
	// drop as writer_behind.
	HandoffBuffer int
	// ReorderWindow is how long a writer holds packets to put those of
	// several receive goroutines into timestamp order (default 20ms).
	ReorderWindow time.Duration
	// RingSize is the bytes of the XDP path's ring buffer, a power of two
	// (default 16 MiB: about 120,000 records of a 96-byte cut, more than a
	// 32 MiB socket buffer holds, for a reader the scheduler keeps waiting);
	// a full ring drops as ring_full.
	RingSize int
	// RcvBuf is the SO_RCVBUF asked for each socket (default 32 MiB).
	RcvBuf int
	// Batch is how many datagrams one recvmmsg call takes (default 128).
	Batch int
	// MaxDatagram is the receive buffer per datagram (default 65536: any
	// UDP datagram over IPv4, such as a TCP aggregate a sender's kernel
	// passed through its VXLAN device unsegmented; only the pages a datagram
	// fills are touched); larger datagrams are dropped as socket_truncated.
	MaxDatagram int
	// WriteBuffer is the per-session buffer of whole blocks (default 1 MiB);
	// it is written out when full and at every FlushInterval.
	WriteBuffer int
	// FlushInterval bounds how long a packet stays in memory (default 1s).
	FlushInterval time.Duration
	// RetryInterval is how long a session waits after a write error before
	// it tries a new file, and how often it logs its drops (default 5s).
	RetryInterval time.Duration
	// Metrics receives the collector's metrics (default: a new set).
	Metrics *metrics.Set
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for interval rotation and retries (default time.Now).
	Now func() time.Time
	// Health, when set, is told true once every reader runs and false when
	// one stops (it drives /healthz).
	Health func(bool)
	// Application is written in pcapng section headers (default "xmirror").
	Application string
}

// Collector receives VXLAN (and GENEVE, GRE) and writes per-session
// capture files.
type Collector struct {
	opts    Options
	log     *slog.Logger
	set     *metrics.Set
	now     func() time.Time
	section sectionInfo
	rcv     receiver
	locks   []*lock.NS             // held while the collector has its ports (receive.go)
	addr    *net.UDPAddr           // the VXLAN input's (else the first UDP input's) address
	bound   map[Input]*net.UDPAddr // the UDP inputs' addresses (ports given as 0 bound)
	rcvbuf  int
	writers []*writer
	writing sync.WaitGroup
	// writersMu orders Rotate's sync of the writers with their start and
	// stop; writersOn says they run.
	writersMu sync.Mutex
	writersOn bool
	// sinks are the receive goroutines' sides of the hand-off; flushReq
	// asks them to hand over what they hold (syncWriters).
	sinksMu  sync.Mutex
	sinks    []*sink
	flushReq atomic.Uint64

	out        *outDir
	disk       disk
	diskLow    atomic.Bool       // below MinFree: packets dropped as disk_low
	closed     *queue[closedJob] // closed files for compression, retention, post-rotate
	closedMu   sync.Mutex
	closedDone bool                        // closeFiles ran
	retained   map[string]*metrics.Counter // files removed, by rule

	mu       sync.RWMutex
	series   map[Key]*series
	names    map[string]Key // sanitised name -> session, to keep names unique
	unnamed  int            // series of VNIs not in Sessions (bounded by MaxSessions)
	limitLog time.Time      // when session_limit drops were last logged
	limitN   uint64         // session_limit drops since then

	sourceSeries atomic.Int64  // source metric series, bounded by MaxSourceSeries
	evictions    atomic.Uint64 // series evicted so far: writers prune their caches when it moves

	live       *liveStream        // nil without Options.Live
	tapAll     *tapOut            // one TAP for all sessions, or nil
	tapVNI     map[uint32]*tapOut // per-session TAPs of VXLAN sessions ({vni} in Options.Tap)
	exportStop chan struct{}      // closed to stop the live outputs' writers
	stopOnce   sync.Once
	liveGone   chan struct{} // closed when the only output, Live, failed
	goneOnce   sync.Once

	drops       [numReasons]*metrics.Counter
	received    *metrics.Counter
	socketDrops *metrics.Counter
	// written and writtenBytes count for the whole run, also the packets of
	// series since forgotten (idle, renamed), whose counters went with them.
	written, writtenBytes atomic.Uint64
	rotateReq             chan struct{}
	post                  sync.WaitGroup  // closed files being compressed and pruned
	hookq                 *queue[hookJob] // closed files for the post-rotate command
	hooks                 sync.WaitGroup  // post-rotate commands queued or running
	running               atomic.Int32
}

// Stats is a snapshot of the collector's counters.
type Stats struct {
	Receive     string            // the receive path in use: socket or xdp
	Received    uint64            // datagrams read from the sockets or the XDP ring
	Written     uint64            // packets written to files
	Bytes       uint64            // captured bytes of written packets
	Drops       map[string]uint64 // by reason
	SocketDrops uint64            // datagrams the kernel dropped (SO_MEMINFO sk_drops)
	Sessions    map[string]SessionStats
}

// SessionStats are the counters of one session.
type SessionStats struct {
	// VNI is the session's id (the VNI, ERSPAN session id or GRE key)
	// and Protocol its tunnel.
	VNI                   uint32
	Protocol              string
	Packets, Bytes, Files uint64
	Truncated             uint64
}

func (o *Options) applyDefaults() {
	if o.Listen == "" {
		o.Listen = "0.0.0.0:4789"
	}
	if o.Receive == "" {
		o.Receive = ReceiveAuto
	}
	if o.Readers <= 0 {
		o.Readers = runtime.NumCPU()
	}
	if o.Writers <= 0 {
		o.Writers = 1
	}
	if o.HandoffBuffer <= 0 {
		o.HandoffBuffer = 64 << 20
	}
	if o.ReorderWindow <= 0 {
		o.ReorderWindow = 20 * time.Millisecond
	}
	if o.RingSize <= 0 {
		o.RingSize = 16 << 20
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 1024
	}
	if o.SessionIdle == 0 {
		o.SessionIdle = 5 * time.Minute
	}
	if o.MaxSourceSeries <= 0 {
		o.MaxSourceSeries = 4096
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.FileName == "" {
		o.FileName = DefaultFileName
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if h := SanitizeName(o.Host); h != "" {
		o.Host = h
	} else {
		o.Host = "localhost"
	}
	if o.RcvBuf <= 0 {
		o.RcvBuf = 32 << 20
	}
	if o.Batch <= 0 {
		o.Batch = 128
	}
	if o.MaxDatagram <= 0 {
		o.MaxDatagram = 65536
	}
	if o.WriteBuffer <= 0 {
		o.WriteBuffer = 1 << 20
	}
	// A buffer must hold the largest block (datagram plus block overhead
	// plus an interface block) at least twice over.
	o.WriteBuffer = max(o.WriteBuffer, 2*(o.MaxDatagram+1024))
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Application == "" {
		o.Application = "xmirror"
	}
	if len(o.Inputs) == 0 {
		o.Inputs = []Input{{Proto: ProtoVXLAN}}
	}
	o.Named = o.namedSessions()
}

// namedSessions merges Named and the VXLAN shorthand Sessions and
// PacketLengths into one new map.
func (o *Options) namedSessions() map[Key]Session {
	out := make(map[Key]Session, len(o.Named)+len(o.Sessions))
	for k, s := range o.Named {
		out[k] = s
	}
	for vni, name := range o.Sessions {
		out[VXLAN(vni)] = Session{Name: name, PacketLength: o.PacketLengths[vni]}
	}
	return out
}

// check rejects options New cannot run with.
func (o *Options) check() error {
	if o.RingSize&(o.RingSize-1) != 0 || o.RingSize < os.Getpagesize() {
		return fmt.Errorf("ring size %d is not a power of two of at least a page", o.RingSize)
	}
	if o.OutputDir == "" && o.Live == nil && o.Tap == "" {
		return errors.New("no output: give an output directory, a live output or a TAP device")
	}
	if o.Format != FormatPcap && o.Format != FormatPcapng {
		return fmt.Errorf("unknown format %d", o.Format)
	}
	if err := CheckInputs(o.Inputs, o.Listen); err != nil {
		return err
	}
	return CheckFileName(o.FileName)
}

// New checks the options, binds the listen address with the receive path
// (attaching the XDP program for ReceiveXDP), and recovers the files an
// earlier run left under their temporary names, handing them on like any
// closed file. Run starts receiving.
// CheckPostRotate says whether the post_rotate command cmd can be run (nil
// for none). New refuses a collector whose command cannot; `xmirror check
// --system --role collect` reports it before a start does.
func CheckPostRotate(cmd string) error {
	argv := strings.Fields(cmd)
	if len(argv) == 0 {
		return nil
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("post_rotate %q cannot be run: %w", cmd, err)
	}
	return nil
}

func New(opts Options) (c *Collector, err error) {
	opts.applyDefaults()
	if opts.Receive, err = ParseReceive(opts.Receive); err != nil {
		return nil, err
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	// Now, not at the first rotation an hour on: until then every closed
	// file would go unarchived.
	if err := CheckPostRotate(opts.PostRotate); err != nil {
		return nil, err
	}
	gid, err := LookupGroup(opts.Group)
	if err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	var out *outDir
	if opts.OutputDir != "" {
		if out, err = openOutDir(opts.OutputDir, opts.FileMode, gid, opts.Logger); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				out.close()
			}
		}()
	}
	c = &Collector{
		out:      out,
		closed:   newQueue[closedJob](),
		hookq:    newQueue[hookJob](),
		retained: make(map[string]*metrics.Counter),
		opts:     opts,
		log:      opts.Logger,
		set:      opts.Metrics,
		now:      opts.Now,
		section: sectionInfo{
			Hardware:    runtime.GOARCH,
			OS:          runtime.GOOS,
			Application: opts.Application,
			Comment:     "xmirror collect on " + opts.Host + ": decapsulated mirror traffic (" + inputNames(opts.Inputs) + ")",
		},
		series:    make(map[Key]*series),
		bound:     make(map[Input]*net.UDPAddr),
		names:     make(map[string]Key),
		rotateReq: make(chan struct{}, 1),
	}
	c.registerMetrics()
	// Reserve the configured names first so that an unknown VNI whose
	// vni-N name clashes cannot take a configured session's directory.
	for k, s := range opts.Named {
		c.sessionName(k, s.Name)
	}
	if err := c.checkNameLengths(opts.Named); err != nil {
		return nil, err
	}
	c.warnUnreceived(opts.Named)
	if c.out != nil {
		c.warnOpenFiles()
	}
	if err := c.startExports(); err != nil {
		return nil, err
	}
	batches := max(2, opts.HandoffBuffer/handoffBatchBytes)
	for range opts.Writers {
		c.writers = append(c.writers, newWriter(batches))
	}
	if c.rcv, err = c.openReceiver(); err != nil {
		c.stopExports()
		return nil, err
	}
	c.log.Info("collector receive path", "receive", c.rcv.mode(), "asked", opts.Receive)
	if c.out != nil {
		outfd, _, err := c.out.openOwn()
		if err != nil {
			c.stopExports()
			_ = c.releaseReceive()
			return nil, fmt.Errorf("output directory: %w", err)
		}
		go c.closedLoop(outfd)
	} else {
		go c.closedLoop(-1)
	}
	go c.hookLoop()
	// Last: a New that fails leaves the files for the next start (renamed,
	// they would never be compressed or handed to post_rotate), and one
	// refused on the port does not rename the running collector's files.
	if c.out != nil {
		c.recoverParts()
	}
	return c, nil
}

// warnOpenFiles says at start when the open-files limit leaves fewer
// descriptors than the sessions the collector may write at once need (a
// file and its directory each): beyond it, sessions drop their packets as
// write_error until others go idle, and without this the first sign was
// those drops.
func (c *Collector) warnOpenFiles() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	sessions := c.opts.MaxSessions + len(c.opts.Named)
	if c.opts.DropUnknownVNI {
		sessions = len(c.opts.Named)
	}
	// Sockets, the output directory, listeners and the closed files' work.
	const base = 64
	need := uint64(2*sessions + c.opts.Readers*len(c.opts.Inputs) + base)
	if lim.Cur >= need {
		return
	}
	c.log.Warn("open-files limit below what the sessions may need: sessions beyond it drop their packets (write_error, too many open files) until others go idle; raise LimitNOFILE= (systemd) or ulimit -n, or lower collector.max_sessions",
		"limit", lim.Cur, "need", need, "sessions", sessions, "max_sessions", c.opts.MaxSessions, "named", len(c.opts.Named))
}

// registerMetrics creates the collector's drop, receive and storage series.
func (c *Collector) registerMetrics() {
	for r := ReasonShort; r < numReasons; r++ {
		c.drops[r] = c.set.GetOrCreateCounter(`xmirror_collector_drops_total{reason="` + r.String() + `"}`)
	}
	c.received = c.set.GetOrCreateCounter("xmirror_collector_received_total")
	c.socketDrops = c.set.GetOrCreateCounter("xmirror_collector_socket_drops_total")
	for _, rule := range []string{"keep", "keep_size", "keep_age", "max_total_size", "min_free"} {
		c.retained[rule] = c.set.GetOrCreateCounter(`xmirror_collector_retention_removed_total{rule="` + rule + `"}`)
	}
	for name, v := range map[string]*atomic.Int64{"stored_files": &c.disk.files, "stored_bytes": &c.disk.bytes, "free_bytes": &c.disk.free} {
		c.set.GetOrCreateGauge("xmirror_collector_"+name, func() float64 { return float64(v.Load()) })
	}
	c.set.GetOrCreateGauge("xmirror_collector_disk_low", func() float64 {
		if c.diskLow.Load() {
			return 1
		}
		return 0
	})
}

// Receive is the receive path in use: ReceiveSocket or ReceiveXDP.
func (c *Collector) Receive() string { return c.rcv.mode() }

// Addr is the bound UDP address of VXLAN (useful with port 0), or of the
// first UDP input without VXLAN.
func (c *Collector) Addr() *net.UDPAddr { return c.addr }

// InputAddr is the bound UDP address of the first input of protocol p
// (GENEVE: useful with port 0), nil for GRE or an input not received.
func (c *Collector) InputAddr(p Protocol) *net.UDPAddr {
	for _, in := range c.opts.Inputs {
		if in.Proto == p {
			return c.bound[in]
		}
	}
	return nil
}

// Readers is the number of receive goroutines.
func (c *Collector) Readers() int { return len(c.rcv.loops()) }

// RcvBuf is the receive buffer size the kernel granted per socket.
func (c *Collector) RcvBuf() int { return c.rcvbuf }

// Metrics is the set holding the collector's metrics.
func (c *Collector) Metrics() *metrics.Set { return c.set }

func (c *Collector) drop(r Reason)            { c.drops[r].Inc() }
func (c *Collector) dropN(r Reason, n uint64) { c.drops[r].AddInt64(int64(n)) }

// handle decapsulates and writes one VXLAN datagram on the caller's
// goroutine (tests and benchmarks of the per-packet path); cache is the
// caller's own session -> series map, which spares the shared lock on
// every packet.
func (c *Collector) handle(cache seriesCache, src netip.Addr, tsNanos int64, payload []byte) {
	c.handleWith(Decap, cache, src, tsNanos, payload)
}

// handleWith is handle with another tunnel's decapsulation.
func (c *Collector) handleWith(decap Decapper, cache seriesCache, src netip.Addr, tsNanos int64, payload []byte) {
	fr, reason := decap(payload)
	if reason != ReasonNone {
		c.drop(reason)
		return
	}
	if fr.EtherType != 0 {
		fr = fr.flatten(nil)
	}
	r := rx{c: c, cache: cache}
	r.write(src, tsNanos, &fr)
	r.release()
}

// clockStepBack is how far a packet's receive time may fall behind the
// one before it in its session before it is taken for a step of the wall
// clock rather than a packet that a receive goroutine held up: far beyond
// the reorder window, far below the steps that NTP or a restored VM make.
const clockStepBack = time.Second

// seriesCache is a writer's own session -> series map, keyed by
// Key.packed: a uint64 key takes the map's fast path, where the struct
// cost a generic hash on every packet.
type seriesCache map[uint64]*series

// rx is one writer's per-packet state. It keeps the series of the last
// packet locked until the end of the batch (or a packet of another
// session), so that a batch of one session costs one lock, not one per
// packet; the ticker and rotation wait at most one batch for it.
type rx struct {
	c     *Collector
	cache seriesCache // session -> series, spares the shared lock
	held  *series     // locked by this writer, or nil
	// last is the time of each session's latest packet (nil: no clamping);
	// heldLast is the held series' entry, kept out of the map while held.
	last     map[uint64]int64 // by Key.packed
	heldLast int64
	// evictions is the collector's count of evicted series when the cache
	// was last pruned of them.
	evictions uint64
}

// write appends one decapsulated frame to its session's file.
func (r *rx) write(src netip.Addr, tsNanos int64, fr *Frame) {
	s := r.held
	if s == nil || s.key != fr.Key {
		r.release()
		if s = r.lookup(fr.Key); s == nil {
			return
		}
		s.mu.Lock()
		if s.evicted.Load() { // idle and forgotten since the writer cached it
			s.mu.Unlock()
			delete(r.cache, fr.Key.packed())
			if s = r.lookup(fr.Key); s == nil {
				return
			}
			s.mu.Lock()
		}
		r.held = s
		if r.last != nil {
			r.heldLast = r.last[fr.Key.packed()]
		}
	}
	if r.last != nil {
		if tsNanos < r.heldLast-int64(clockStepBack) {
			// The wall clock stepped back: clamping would stamp every
			// packet with the time before the step until the clock caught
			// up (an hour for an hour's step). A new file keeps each file
			// in time order and the packets their own times.
			if s.f != nil {
				r.c.log.Warn("receive time went back: the clock stepped; the session starts a new file",
					"session", s.name, "back", time.Duration(r.heldLast-tsNanos))
				s.closeLocked("clock_step")
			}
		} else {
			tsNanos = max(tsNanos, r.heldLast)
		}
		r.heldLast = tsNanos
	}
	if reason := s.writeLocked(src, tsNanos, fr); reason != ReasonNone {
		r.c.drop(reason)
	}
}

// lookup finds the series of a session, or counts the drop and returns
// nil. Called without a series lock held: seriesFor takes the collector's
// lock.
func (r *rx) lookup(key Key) *series {
	if n := r.c.evictions.Load(); n != r.evictions {
		r.evictions = n
		r.prune()
	}
	if s, ok := r.cache[key.packed()]; ok {
		return s
	}
	s, reason := r.c.seriesFor(key)
	if s == nil {
		// Not cached: the cache must not grow with sprayed VNIs.
		r.c.drop(reason)
		return nil
	}
	r.cache[key.packed()] = s
	return s
}

// prune forgets the evicted series, so that a flood of VNIs coming and
// going does not grow the cache.
func (r *rx) prune() {
	for key, s := range r.cache {
		if s.evicted.Load() {
			delete(r.cache, key)
			delete(r.last, key)
		}
	}
}

// release unlocks the held series (at the end of every batch).
func (r *rx) release() {
	if r.held != nil {
		if r.last != nil {
			r.last[r.held.key.packed()] = r.heldLast
		}
		r.held.mu.Unlock()
		r.held = nil
	}
}

// Run receives until ctx is done or the receive path fails, then writes
// what was handed off, flushes, closes and renames every file. The receive
// path (sockets, XDP program) is released when Run returns.
func (c *Collector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.releaseReceive()
	var wg sync.WaitGroup
	loops := c.rcv.loops()
	errc := make(chan error, len(loops))
	c.startWriters()
	// Healthy before the receivers start, so that one failing at once
	// cannot be overwritten by a late "healthy".
	if c.opts.Health != nil {
		c.opts.Health(true)
	}
	for i, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := c.newSink()
			c.running.Add(1)
			err := loop(k)
			k.flush()
			c.running.Add(-1)
			if c.opts.Health != nil {
				c.opts.Health(false)
			}
			if err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("receiver %d (%s): %w", i, c.rcv.mode(), err)
				cancel()
			}
		}()
	}
	go func() {
		<-ctx.Done()
		c.rcv.stop()
	}()
	t := time.NewTicker(c.opts.FlushInterval)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-c.liveGone:
			cancel()
			break loop
		case <-t.C:
			c.tick()
		}
	}
	wg.Wait()
	c.stopWriters()
	for _, s := range c.allSeries() {
		s.rotate("shutdown")
	}
	c.waitClosedWork(true)
	c.closeFiles()
	c.stopExports()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// closeFiles stops the closed-file worker and closes the output directory
// (the sessions closed theirs with their files).
func (c *Collector) closeFiles() {
	c.closedMu.Lock()
	done := c.closedDone
	if !done {
		c.closedDone = true
		c.closed.close()
	}
	c.closedMu.Unlock()
	if done {
		return
	}
	if c.out != nil {
		c.out.close()
	}
}

// Close closes the files of a Collector whose Run was never called and
// releases its receive path.
func (c *Collector) Close() error {
	for _, s := range c.allSeries() {
		s.rotate("close")
	}
	c.waitClosedWork(true)
	c.closeFiles()
	c.stopExports()
	return c.releaseReceive()
}

// releaseReceive releases the receive path (sockets, the XDP program and
// its ring) and the port's lock; Run calls it when it returns.
func (c *Collector) releaseReceive() error {
	c.rcv.stop()
	err := c.rcv.close()
	c.releaseLocks()
	return err
}

func (c *Collector) tick() {
	c.rcv.poll()
	if c.out != nil {
		c.out.follow(c.log)
	}
	now := c.now()
	var idle []*series
	for _, s := range c.allSeries() {
		if s.tick(now) && !s.named {
			idle = append(idle, s)
		}
	}
	if len(idle) > 0 {
		c.evictIdle(idle)
	}
	c.logLimit(now)
	c.enforceDisk(now)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// closedWorkWait bounds how long a rotation or shutdown waits for the
// closed files' compression, retention and post-rotate commands.
const closedWorkWait = 10 * time.Second

// waitClosedWork waits, up to closedWorkWait in all, for the files closed
// so far to be compressed and pruned, then for their post-rotate
// commands. When stopping, what is still left undone is logged: the
// process exits without it.
func (c *Collector) waitClosedWork(stopping bool) {
	deadline := time.Now().Add(closedWorkWait)
	if !waitTimeout(&c.post, closedWorkWait) {
		if stopping {
			c.log.Warn("stopping before every closed file was compressed and pruned", "waited", closedWorkWait)
		}
		return
	}
	if !waitTimeout(&c.hooks, time.Until(deadline)) && stopping {
		c.log.Warn("stopping while post-rotate commands still run or wait; they are not waited for",
			"cmd", c.opts.PostRotate, "waited", closedWorkWait)
	}
}

// Stats returns a snapshot of the counters.
func (c *Collector) Stats() Stats {
	c.rcv.poll()
	st := Stats{
		Receive:     c.rcv.mode(),
		Received:    c.received.Get(),
		SocketDrops: c.socketDrops.Get(),
		Drops:       make(map[string]uint64),
		Sessions:    make(map[string]SessionStats),
	}
	for r := ReasonShort; r < numReasons; r++ {
		st.Drops[r.String()] = c.drops[r].Get()
	}
	for _, s := range c.allSeries() {
		ss := SessionStats{VNI: s.key.ID, Protocol: s.key.Proto.String(), Packets: s.packets.Get(), Bytes: s.bytes.Get(),
			Files: s.files.Get(), Truncated: s.cut.Get()}
		st.Sessions[s.name] = ss
	}
	st.Written, st.Bytes = c.written.Load(), c.writtenBytes.Load()
	return st
}
