// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/lock"
)

// Source is a running mirror source: the programs attached to the source
// interfaces, the datapath that sends what they hand it, and the maps
// describing the sessions.
//
// Its methods call netlink and attach programs in the caller's network
// namespace; call them all from the same one.
type Source struct {
	mu      sync.Mutex
	inst    *lock.NS // the network namespace is this source's (instance.go)
	objs    sourceObjects
	dp      datapath
	watch   *watch // of the targets' health
	ifaces  *ifaceKeeper
	missing map[string]error // source interfaces not mirrored (gone, no IPv4 address, ...) and why
	// applyFailed is why the interface keeper could not apply the
	// configuration again at its last try ("" when it could), so that a
	// failure that lasts is logged once.
	applyFailed string
	attacher    attacher
	links       map[uint32][2]hook // ifindex -> ingress, egress
	replicas    map[uint32]*replica
	ids         map[string]uint16 // session name -> counter slot
	prog        *Program          // running
	active      uint32            // the buffer prog is in
	mark        uint32            // of the datapath's own packets
	devName     string            // the VXLAN device (kernel), prefix of the replicas' names
	cfg         *config.Config
	// noAttach fills the maps without attaching (tests of the programs).
	noAttach bool
	noDirect bool // Options.NoDirect
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
	// Attach is AttachAuto, AttachTCX or AttachTC: how the programs are
	// attached; empty means AttachAuto.
	Attach string
	// MaxDelay is how long a mirrored packet may wait in the ring before
	// the sender looks (datapath ring), between MinMaxDelay and
	// MaxMaxDelay; 0 means DefaultMaxDelay. Longer is cheaper for the
	// mirrored traffic; collector timestamps move by up to as much.
	MaxDelay time.Duration
	// NoDirect sends every copy of the ring datapath through the ring,
	// none directly from the kernel (bpf/direct.h).
	NoDirect bool
}

// New validates cfg against the system, loads the programs, starts the
// datapath, fills the maps and attaches the programs. Nothing stays behind
// on error.
func New(cfg *config.Config, opts Options) (_ *Source, err error) {
	set, err := opts.check()
	if err != nil {
		return nil, err
	}
	s := &Source{
		noDirect: opts.NoDirect,
		attacher: attacher{mode: set.attach},
		links:    map[uint32][2]hook{},
		ids:      map[string]uint16{},
		devName:  config.DefaultDevice,
	}
	if cfg.Source != nil {
		s.mark = cfg.Source.Mark
		if cfg.Source.Device != "" {
			s.devName = cfg.Source.Device
		}
	}
	prog, err := s.compile(cfg)
	if err != nil {
		return nil, err
	}
	if s.inst, err = claimInstance(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	ifindexes := make([]int, 0, len(prog.Ifaces))
	for ifindex := range prog.Ifaces {
		ifindexes = append(ifindexes, int(ifindex))
	}
	removeLeftovers(s.devName, ifindexes)
	if err := s.load(opts.RecordDecision, set.maxDelay, prog); err != nil {
		return nil, err
	}
	if s.dp, err = s.startDatapath(set); err != nil {
		return nil, err
	}
	if err := s.apply(prog); err != nil {
		return nil, err
	}
	if s.watch, err = startWatch(s.dp, s.mark); err != nil {
		return nil, err
	}
	s.watch.running(prog)
	s.cfg = cfg
	s.ifaces = s.keepInterfaces()
	slog.Info("mirror source attached", "datapath", s.dp.name(), "sessions", len(prog.Sessions),
		"interfaces", len(prog.Ifaces), "inbound_rules", len(prog.Rules[dirIn]), "outbound_rules", len(prog.Rules[dirOut]))
	return s, nil
}

// compile validates cfg (as config.Parse and `xmirror check` do, for a
// configuration built in Go), resolves it in the system, gives its sessions
// their stable ids and compiles it. On error the ids stay as they were.
func (s *Source) compile(cfg *config.Config) (*Program, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	res, err := resolve(cfg, int(vxlanPort))
	if err != nil {
		return nil, err
	}
	old := maps.Clone(s.ids)
	if err := s.assignIDs(cfg); err != nil {
		s.ids = old
		return nil, err
	}
	prog, err := compile(cfg, res, s.ids)
	if err != nil {
		s.ids = old
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return prog, nil
}

// load loads the programs and their maps; recordDecision puts them in test
// mode, maxDelay sets when the ring datapath's program wakes the reader, and
// the ring's size follows the longest cut of prog's sessions (a reload keeps
// it).
func (s *Source) load(recordDecision bool, maxDelay time.Duration, prog *Program) error {
	spec, err := loadSource()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	if ring := spec.Maps["xm_ring"]; prog != nil {
		ring.MaxEntries = ringSizeFor(prog, ring.MaxEntries)
	}
	if recordDecision {
		if err := spec.Variables["record_decision"].Set(uint32(1)); err != nil {
			return fmt.Errorf("set record_decision: %w", err)
		}
	}
	if err := spec.Variables["ring_wake"].Set(ringWakeFor(maxDelay)); err != nil {
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

// apply makes prog the running program in the phases the load balancer's
// tables go through too (xdp/balancer.go): the sessions' ids are already
// stable (assignIDs, in compile); writeIdle writes prog into the idle buffer
// and attaches new interfaces; flip makes that buffer live; retire removes
// what only the old program used. A packet in flight sees the old or the
// new program, never a mix.
func (s *Source) apply(prog *Program) error {
	idle := s.active ^ 1
	if s.prog == nil {
		idle = 0
	}
	st, err := s.writeIdle(idle, prog)
	if err != nil {
		return err
	}
	if err := s.flip(idle, st, prog); err != nil {
		return err
	}
	s.retire(prog)
	return nil
}

// writeIdle writes sessions, interfaces (with their replicas), rules,
// targets and the rule counts of prog into buffer idle, and attaches the
// programs to the interfaces new in prog. It returns the state to flip to.
func (s *Source) writeIdle(idle uint32, prog *Program) (sourceState, error) {
	var st sourceState
	for id, sess := range prog.Sessions {
		if err := s.objs.XmSessions.Put(idle*MaxSessions+uint32(id), sess); err != nil {
			return st, fmt.Errorf("write session %d: %w", id, err)
		}
	}
	if err := s.writeIfaces(prog); err != nil {
		return st, err
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
			r.Direct = boolByte(prog.directRule(r, dir))
			key := uint32((int(idle)*2+dir)*MaxRules + i)
			if err := s.objs.XmRules.Put(key, r); err != nil {
				return st, fmt.Errorf("write rule %d: %w", i, err)
			}
		}
	}
	for _, t := range prog.Targets {
		if err := s.objs.XmTargets.Put(addrWord(t), uint32(1)); err != nil {
			return st, fmt.Errorf("write target %s: %w", t, err)
		}
	}
	if err := s.objs.XmState.Lookup(uint32(0), &st); err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	s.dp.fill(&st)
	st.TunnelMark = s.mark
	st.Nrules[idle][dirIn] = uint32(len(prog.Rules[dirIn]))
	st.Nrules[idle][dirOut] = uint32(len(prog.Rules[dirOut]))
	// The idle buffer's counts, before an interface new in prog reads them.
	if err := s.objs.XmState.Put(uint32(0), st); err != nil {
		return st, fmt.Errorf("write state: %w", err)
	}
	for ifindex := range prog.Ifaces {
		if _, ok := s.links[ifindex]; ok || s.noAttach {
			continue
		}
		if err := s.attach(ifindex); err != nil {
			return st, err
		}
	}
	// Direct sends only while the programs go with the process: tc
	// filters stay after a kill, and a killed source must send nothing.
	st.Direct = uint32(boolByte(!s.noDirect && (s.noAttach || s.attacher.mode == AttachTCX)))
	return st, nil
}

// writeIfaces writes the interfaces of prog, each with the sending end of
// its replica when it needs one (created here).
func (s *Source) writeIfaces(prog *Program) error {
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
	return nil
}

// flip makes buffer idle, written by writeIdle, the one the programs read:
// one write of the state.
func (s *Source) flip(idle uint32, st sourceState, prog *Program) error {
	st.Active = idle
	if err := s.objs.XmState.Put(uint32(0), st); err != nil {
		return fmt.Errorf("switch rules: %w", err)
	}
	s.active = idle
	s.dp.running(prog)
	if s.watch != nil {
		s.watch.running(prog)
	}
	return nil
}

// retire removes what only the program before prog used (interfaces,
// replicas, targets) and makes prog the running one.
func (s *Source) retire(prog *Program) {
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
}

func (s *Source) attach(ifindex uint32) error {
	in, err := s.attacher.attach(s.objs.XmSourceIngress, int(ifindex), true, "ingress")
	if err != nil {
		return fmt.Errorf("attach ingress to ifindex %d: %w", ifindex, err)
	}
	out, err := s.attacher.attach(s.objs.XmSourceEgress, int(ifindex), false, "egress")
	if err != nil {
		in.Close()
		return fmt.Errorf("attach egress to ifindex %d: %w", ifindex, err)
	}
	s.links[ifindex] = [2]hook{in, out}
	return nil
}

// Reload applies a new configuration without detaching: the rules switch
// atomically; interfaces are attached or detached as sessions change. On
// error the running configuration stays in place. The VXLAN device, the
// tunnel mark and the hash mode's device stay as started.
func (s *Source) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prog, err := s.compile(cfg)
	if err != nil {
		return err
	}
	if err := s.apply(prog); err != nil {
		return err
	}
	s.cfg = cfg
	slog.Info("mirror source reloaded", "sessions", len(prog.Sessions), "interfaces", len(prog.Ifaces),
		"inbound_rules", len(prog.Rules[dirIn]), "outbound_rules", len(prog.Rules[dirOut]))
	s.warnKept(cfg)
	return nil
}

// warnKept logs the settings of cfg that a reload does not apply: the
// tunnel mark and the VXLAN device stay as the source started (changing
// them would mean recreating the device and relabelling packets in flight),
// and a user who changed them must not take "reloaded" for applied.
func (s *Source) warnKept(cfg *config.Config) {
	// As New reads them.
	mark, dev := uint32(0), config.DefaultDevice
	if cfg.Source != nil {
		mark = cfg.Source.Mark
		if cfg.Source.Device != "" {
			dev = cfg.Source.Device
		}
	}
	if mark != s.mark {
		slog.Warn("reload keeps source.mark: a new mark takes a restart",
			"running", fmt.Sprintf("%#x", s.mark), "file", fmt.Sprintf("%#x", mark))
	}
	if dev != s.devName {
		slog.Warn("reload keeps source.device: a new device takes a restart", "running", s.devName, "file", dev)
	}
}

// Close stops the datapath, detaches every program and frees the maps.
func (s *Source) Close() error {
	// first, without the lock: a check in progress takes it
	s.ifaces.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.watch != nil {
		s.watch.close()
		s.watch = nil
	}
	if s.dp != nil {
		if err := s.dp.close(); err != nil {
			errs = append(errs, fmt.Errorf("stop datapath %s: %w", s.dp.name(), err))
		}
		s.dp = nil
	}
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
	if err := s.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	s.inst.Release()
	s.inst = nil
	return errors.Join(errs...)
}
