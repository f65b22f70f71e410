package source

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
)

// Source is a running mirror source: the programs attached to the source
// interfaces, the VXLAN device and the maps describing the sessions.
//
// Its methods call netlink and attach programs in the caller's network
// namespace; call them all from the same one.
type Source struct {
	mu       sync.Mutex
	objs     sourceObjects
	device   netlink.Link
	tunnel   link.Link
	drop     link.Link
	links    map[uint32][2]link.Link // ifindex -> ingress, egress
	ids      map[string]uint16       // session name -> counter slot
	prog     *Program
	active   uint32
	mark     uint32
	port     int
	cfg      *config.Config
	replicas map[uint32]*replica
	datapath uint32
	maxDelay time.Duration // datapath ring: the reader's look interval
	priority string        // of the user-space sender
	devName  string
	encap    *encapsulator
	ring     *ringSender
	live     atomic.Pointer[Program] // what the data path runs, for the encapsulator
	// noAttach fills the maps without attaching (tests of the programs).
	noAttach bool
}

// Options tune New.
type Options struct {
	// RecordDecision loads the programs in test mode: they record the
	// classification in a map and never clone.
	RecordDecision bool
	// Datapath is DatapathRing, DatapathKernel or DatapathPerf; empty means
	// DefaultDatapath.
	Datapath string
	// SendPriority is PriorityIdle or PriorityNormal, the priority of the
	// thread that sends mirrored packets (datapaths ring and perf); empty
	// means DefaultPriority.
	SendPriority string
	// MaxDelay is how long a mirrored packet may wait in the ring before
	// the sender looks (datapath ring), between MinMaxDelay and
	// MaxMaxDelay; 0 means DefaultMaxDelay. Longer is cheaper for the
	// mirrored traffic; collector timestamps move by up to as much.
	MaxDelay time.Duration
}

// New validates cfg against the system, creates the VXLAN device, loads and
// fills the maps and attaches the programs. Nothing stays behind on error.
func New(cfg *config.Config, opts Options) (_ *Source, err error) {
	section := cfg.Source
	if section == nil {
		section = &config.Source{}
	}
	device := section.Device
	if device == "" {
		device = config.DefaultDevice
	}
	s := &Source{
		links: map[uint32][2]link.Link{},
		ids:   map[string]uint16{},
		mark:  section.Mark,
		port:  config.DefaultVXLANPort,
	}
	if opts.Datapath == "" {
		opts.Datapath = DefaultDatapath
	}
	switch opts.Datapath {
	case DatapathKernel:
		s.datapath = datapathKernel
	case DatapathPerf:
		s.datapath = datapathPerf
	case DatapathRing:
		s.datapath = datapathRing
	default:
		return nil, fmt.Errorf("%w: datapath %q is not %s, %s or %s", ErrConfig, opts.Datapath, DatapathKernel, DatapathRing, DatapathPerf)
	}
	switch d := opts.MaxDelay; {
	case d == 0:
		s.maxDelay = DefaultMaxDelay
	case d < MinMaxDelay || d > MaxMaxDelay:
		return nil, fmt.Errorf("%w: max delay %v is not between %v and %v", ErrConfig, d, MinMaxDelay, MaxMaxDelay)
	default:
		s.maxDelay = d
	}
	switch opts.SendPriority {
	case "":
		s.priority = DefaultPriority
	case PriorityIdle, PriorityNormal:
		s.priority = opts.SendPriority
	default:
		return nil, fmt.Errorf("%w: send priority %q is not %s or %s", ErrConfig, opts.SendPriority, PriorityIdle, PriorityNormal)
	}
	if s.mark&markMagicMask == markMagic {
		return nil, fmt.Errorf("%w: source.mark 0x%x collides with the marks of xmirror's clones (0x%x/0x%x)", ErrConfig, s.mark, uint32(markMagic), uint32(markMagicMask))
	}
	res, err := resolve(cfg, s.port)
	if err != nil {
		return nil, err
	}
	if err := s.assignIDs(cfg); err != nil {
		return nil, err
	}
	prog, err := compile(cfg, res, s.ids)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.load(opts); err != nil {
		return nil, err
	}
	s.devName = device
	// The perf and ring datapaths encapsulate in user space: no VXLAN
	// device (which would also occupy UDP 4789 on this host).
	switch s.datapath {
	case datapathKernel:
		if err := s.createDevice(device); err != nil {
			return nil, err
		}
	case datapathPerf:
		if err := s.startEncapsulator(); err != nil {
			return nil, err
		}
	case datapathRing:
		if err := s.startRing(); err != nil {
			return nil, err
		}
	}
	if err := s.apply(prog); err != nil {
		return nil, err
	}
	s.cfg = cfg
	slog.Info("mirror source attached", "datapath", datapathNames[s.datapath], "sessions", len(prog.Sessions),
		"interfaces", len(prog.Ifaces), "inbound_rules", len(prog.Rules[dirIn]), "outbound_rules", len(prog.Rules[dirOut]))
	return s, nil
}

func (s *Source) load(opts Options) error {
	spec, err := loadSource()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	if opts.RecordDecision {
		if err := spec.Variables["record_decision"].Set(uint32(1)); err != nil {
			return fmt.Errorf("set record_decision: %w", err)
		}
	}
	if err := spec.Variables["ring_wake"].Set(ringWakeFor(s.maxDelay)); err != nil {
		return fmt.Errorf("set ring_wake: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load bpf programs: %+v", ve)
		}
		return fmt.Errorf("load bpf programs: %w", err)
	}
	return nil
}

// createDevice creates the VXLAN device in external (collect_md) mode with the
// tunnel program on its egress. A device left behind by a killed run is
// replaced.
func (s *Source) createDevice(name string) error {
	if old, err := netlink.LinkByName(name); err == nil {
		if _, ok := old.(*netlink.Vxlan); !ok {
			return fmt.Errorf("%w: device %s exists and is not a VXLAN device", ErrConfig, name)
		}
		slog.Warn("replacing stale VXLAN device", "device", name)
		if err := netlink.LinkDel(old); err != nil {
			return fmt.Errorf("delete stale %s: %w", name, err)
		}
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 65000},
		FlowBased: true,
		Port:      s.port,
		Learning:  false,
	}
	if err := netlink.LinkAdd(vx); err != nil {
		return fmt.Errorf("create vxlan device %s: %w", name, err)
	}
	dev, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	s.device = dev
	// The device is only a tunnel endpoint for our clones: no IPv6 chatter.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
	s.tunnel, err = link.AttachTCX(link.TCXOptions{
		Interface: dev.Attrs().Index,
		Program:   s.objs.XmTunnel,
		Attach:    ebpf.AttachTCXEgress,
	})
	if err != nil {
		return fmt.Errorf("attach tunnel program to %s: %w", name, err)
	}
	s.drop, err = link.AttachTCX(link.TCXOptions{
		Interface: dev.Attrs().Index,
		Program:   s.objs.XmDrop,
		Attach:    ebpf.AttachTCXIngress,
	})
	if err != nil {
		return fmt.Errorf("attach drop program to %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(dev); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// assignIDs gives every session a stable counter slot; slots of sessions no
// longer in the file are freed.
func (s *Source) assignIDs(cfg *config.Config) error {
	want := map[string]bool{}
	for _, sess := range cfg.Sessions {
		want[sess.Name] = true
	}
	for name := range s.ids {
		if !want[name] {
			delete(s.ids, name)
		}
	}
	used := map[uint16]bool{}
	for _, id := range s.ids {
		used[id] = true
	}
	names := make([]string, 0, len(want))
	for n := range want {
		if _, ok := s.ids[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	next := uint16(0)
	for _, n := range names {
		for used[next] {
			next++
		}
		if int(next) >= MaxSessions {
			return fmt.Errorf("%w: more than %d sessions", ErrConfig, MaxSessions)
		}
		s.ids[n] = next
		used[next] = true
		s.resetCounters(next)
	}
	return nil
}

func (s *Source) resetCounters(id uint16) {
	if s.objs.XmCounters == nil {
		return
	}
	zero := make([]sourceCounters, ebpf.MustPossibleCPU())
	for dir := uint32(0); dir < 2; dir++ {
		_ = s.objs.XmCounters.Put(uint32(id)*2+dir, zero)
	}
}

// apply writes prog into the inactive buffer, attaches new interfaces, flips
// the active buffer and then removes what the new program no longer uses.
func (s *Source) apply(prog *Program) error {
	next := s.active ^ 1
	if s.prog == nil {
		next = 0
	}
	for id, sess := range prog.Sessions {
		if err := s.objs.XmSessions.Put(next*MaxSessions+uint32(id), sess); err != nil {
			return fmt.Errorf("write session %d: %w", id, err)
		}
	}
	for ifindex, ifc := range prog.Ifaces {
		if ifc.Flags&ifReplica != 0 && !s.noAttach {
			send, err := s.ensureReplica(ifindex, prog.Offloads[ifindex])
			if err != nil {
				return err
			}
			ifc.Replica = send
		} else {
			ifc.Flags &^= ifReplica
		}
		prog.Ifaces[ifindex] = ifc
		if err := s.objs.XmIfaces.Put(ifindex, ifc); err != nil {
			return fmt.Errorf("write interface %d: %w", ifindex, err)
		}
	}
	// Interfaces first: each rule carries its interface's outer source
	// address and replica, so the programs need not look them up per packet.
	for dir := 0; dir < 2; dir++ {
		for i, r := range prog.Rules[dir] {
			ifc := prog.Ifaces[r.Ifindex]
			r.Local = ifc.Local
			if dir == dirOut {
				r.Replica = ifc.Replica // 0 without a replica
			}
			key := uint32((int(next)*2+dir)*MaxRules + i)
			if err := s.objs.XmRules.Put(key, r); err != nil {
				return fmt.Errorf("write rule %d: %w", i, err)
			}
		}
	}
	for _, t := range prog.Targets {
		if err := s.objs.XmTargets.Put(addrWord(t), uint32(1)); err != nil {
			return fmt.Errorf("write target %s: %w", t, err)
		}
	}
	var st sourceState
	if err := s.objs.XmState.Lookup(uint32(0), &st); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	if s.device != nil {
		st.VxlanIfindex = uint32(s.device.Attrs().Index)
	}
	st.TunnelMark = s.mark
	st.Datapath = s.datapath
	st.PortMin, st.PortRange = localPortRange()
	st.Nrules[next][dirIn] = uint32(len(prog.Rules[dirIn]))
	st.Nrules[next][dirOut] = uint32(len(prog.Rules[dirOut]))
	// Counts of the inactive buffer first, then the switch: a packet in
	// flight sees either the old or the new program, never a mix.
	if err := s.objs.XmState.Put(uint32(0), st); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	for ifindex := range prog.Ifaces {
		if _, ok := s.links[ifindex]; ok || s.noAttach {
			continue
		}
		if err := s.attach(ifindex); err != nil {
			return err
		}
	}
	st.Active = next
	if err := s.objs.XmState.Put(uint32(0), st); err != nil {
		return fmt.Errorf("switch rules: %w", err)
	}
	s.active = next
	s.live.Store(prog)

	// Clean up what only the old program used.
	for ifindex, l := range s.links {
		if _, ok := prog.Ifaces[ifindex]; !ok {
			l[0].Close()
			l[1].Close()
			delete(s.links, ifindex)
			_ = s.objs.XmIfaces.Delete(ifindex)
		}
	}
	for ifindex := range s.replicas {
		if ifc, ok := prog.Ifaces[ifindex]; !ok || ifc.Flags&ifReplica == 0 {
			if err := s.removeReplica(ifindex); err != nil {
				slog.Warn("remove replica", "err", err)
			}
		}
	}
	if s.prog != nil {
		keep := map[netip.Addr]bool{}
		for _, t := range prog.Targets {
			keep[t] = true
		}
		for _, t := range s.prog.Targets {
			if !keep[t] {
				_ = s.objs.XmTargets.Delete(addrWord(t))
			}
		}
	}
	s.prog = prog
	return nil
}

func (s *Source) attach(ifindex uint32) error {
	in, err := link.AttachTCX(link.TCXOptions{Interface: int(ifindex), Program: s.objs.XmSourceIngress, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attach ingress to ifindex %d: %w", ifindex, err)
	}
	out, err := link.AttachTCX(link.TCXOptions{Interface: int(ifindex), Program: s.objs.XmSourceEgress, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		in.Close()
		return fmt.Errorf("attach egress to ifindex %d: %w", ifindex, err)
	}
	s.links[ifindex] = [2]link.Link{in, out}
	return nil
}

// Reload applies a new configuration without detaching: the rules switch
// atomically; interfaces are attached or detached as sessions change. On
// error the running configuration stays in place. The VXLAN device, the
// tunnel mark and the hash mode's device stay as started.
func (s *Source) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := resolve(cfg, s.port)
	if err != nil {
		return err
	}
	oldIDs := make(map[string]uint16, len(s.ids))
	for k, v := range s.ids {
		oldIDs[k] = v
	}
	if err := s.assignIDs(cfg); err != nil {
		s.ids = oldIDs
		return err
	}
	prog, err := compile(cfg, res, s.ids)
	if err != nil {
		s.ids = oldIDs
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := s.apply(prog); err != nil {
		return err
	}
	s.cfg = cfg
	slog.Info("mirror source reloaded", "sessions", len(prog.Sessions), "interfaces", len(prog.Ifaces),
		"inbound_rules", len(prog.Rules[dirIn]), "outbound_rules", len(prog.Rules[dirOut]))
	return nil
}

// Close detaches every program, deletes the VXLAN device and frees the maps.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	s.encap.close()
	s.encap = nil
	s.ring.close()
	s.ring = nil
	for ifindex, l := range s.links {
		for _, x := range l {
			if err := x.Close(); err != nil {
				errs = append(errs, fmt.Errorf("detach ifindex %d: %w", ifindex, err))
			}
		}
		delete(s.links, ifindex)
	}
	for ifindex := range s.replicas {
		if err := s.removeReplica(ifindex); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range []*link.Link{&s.tunnel, &s.drop} {
		if *l != nil {
			(*l).Close()
			*l = nil
		}
	}
	if s.device != nil {
		if err := netlink.LinkDel(s.device); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", s.device.Attrs().Name, err))
		}
		s.device = nil
	}
	if err := s.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
