// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/config"
)

// Balancer owns the loaded program and its maps: it writes backend tables
// into the idle slot and flips the active slot, attaches to the listener's
// interfaces and tracks backend health.
type Balancer struct {
	objs *objects
	opts Options

	mu      sync.Mutex
	cfg     *config.LoadBalancer
	ids     map[string]uint32    // backend key (address:port) -> stable id
	freedAt map[uint32]time.Time // id -> when its backend left (freeID)
	names   [MaxBackends]string
	healthy map[string]bool // backend key -> health; absent = healthy
	// wasDown: backends the previous run's live tables had taken out for
	// failing their checks (recoverIDs). Until this process's own first
	// probe of one answers, it stays out: assuming it healthy sent its
	// share of the traffic to a dead collector for a probe timeout at every
	// restart.
	wasDown map[string]bool
	// pending: backends a reload added while health checks ran, whose first
	// check has not answered. While another weighted backend takes new
	// flows they get none (assumed healthy, a collector whose host is down
	// drew its share of the flows until its first probe timed out).
	pending map[string]bool
	links   map[string]link.Link
	mode    string
	hc      *healthChecker
	// hcWanted: StartHealthChecks was called, so a reload that enables
	// health checks starts them.
	hcWanted bool

	// What a failed start puts back (Abort).
	lock         *pinLock
	pinnedBefore bool                     // a previous run's pins were there
	activeBefore uint32                   // the slot that run had made live
	prevProgs    map[string]*ebpf.Program // interface -> program its pinned link ran
	released     bool

	// ready: some backend takes new flows; failOpen: every weighted backend
	// failed its checks and takes them anyway (all_unhealthy: fail-open).
	ready, readyKnown, failOpen bool
	waiting                     bool   // tableState.waiting of the live tables
	starved                     string // backends the last Maglev table left without an entry
}

// Mode is the XDP attach mode in use ("" before Attach).
func (b *Balancer) Mode() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// backendKey identifies a backend across reloads and LB nodes.
func backendKey(addr netip.Addr, port uint16) string {
	return netip.AddrPortFrom(addr, port).String()
}

// recoverIDs keeps the ids of a previous run, so connection-table entries and
// counters of the pinned maps keep meaning the same backends.
func (b *Balancer) recoverIDs() error {
	slot, err := b.activeSlot()
	if err != nil {
		return err
	}
	for id := uint32(0); id < MaxBackends; id++ {
		var be lbLbBackend
		if err := b.objs.LbBackends.Lookup(slot*MaxBackends+id, &be); err != nil {
			return fmt.Errorf("read backend %d: %w", id, err)
		}
		if be.Addr == 0 {
			continue
		}
		key := backendKey(addrFromBE(be.Addr), portFromBE(be.Port))
		b.ids[key] = id
		b.names[id] = cString(be.Name[:])
		if be.Flags&backendAlive == 0 || be.Flags&backendFailing != 0 {
			b.wasDown[key] = true
		}
	}
	return nil
}

// syncActiveSlot gives a freshly loaded program the tables and the slot a
// previous run made live (its globals start at zero), so that if it is
// attached before the next Apply it reads what the running program does.
func (b *Balancer) syncActiveSlot() error {
	slot, err := b.activeSlot()
	if err != nil {
		return err
	}
	for s := uint32(0); s < slots; s++ {
		var sc lbLbSlot
		if err := b.objs.LbSlots.Lookup(s, &sc); err != nil {
			return fmt.Errorf("read slot %d: %w", s, err)
		}
		rows := make([]lbLbBackend, MaxBackends)
		for id := range rows {
			if err := b.objs.LbBackends.Lookup(s*MaxBackends+uint32(id), &rows[id]); err != nil {
				return fmt.Errorf("read backend %d of slot %d: %w", id, s, err)
			}
		}
		if err := b.publish(s, &sc, rows); err != nil {
			return err
		}
	}
	if err := b.objs.LbActiveSlot.Set(slot); err != nil {
		return fmt.Errorf("set active slot: %w", err)
	}
	return nil
}

// publish copies one slot's listener and backends into the program's globals
// (lb_slot_cfg, lb_slot_backends), the copy the data path reads. Only the
// idle slot changes; the live slot is written back with the bytes it holds.
func (b *Balancer) publish(slot uint32, sc *lbLbSlot, rows []lbLbBackend) error {
	var cfgs [slots]lbLbSlot
	if err := b.objs.LbSlotCfg.Get(&cfgs); err != nil {
		return fmt.Errorf("read slot globals: %w", err)
	}
	var bes [slots * MaxBackends]lbLbBackend
	if err := b.objs.LbSlotBackends.Get(&bes); err != nil {
		return fmt.Errorf("read backend globals: %w", err)
	}
	cfgs[slot] = *sc
	copy(bes[slot*MaxBackends:(slot+1)*MaxBackends], rows)
	if err := b.objs.LbSlotBackends.Set(&bes); err != nil {
		return fmt.Errorf("write backend globals: %w", err)
	}
	if err := b.objs.LbSlotCfg.Set(&cfgs); err != nil {
		return fmt.Errorf("write slot globals: %w", err)
	}
	return nil
}

func (b *Balancer) activeSlot() (uint32, error) {
	var v uint32
	if err := b.objs.LbActive.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("read active slot: %w", err)
	}
	return v & 1, nil
}

// Apply validates cfg, writes its tables into the idle slot and makes that
// slot active with one 4-byte write: packets see either the old tables or the
// new ones, never a mix. Backends keep their ids (and flows) across calls.
func (b *Balancer) Apply(cfg *config.LoadBalancer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	added := b.markPending(cfg)
	if err := b.apply(cfg); err != nil {
		for _, k := range added {
			delete(b.pending, k)
		}
		return err
	}
	if b.hc != nil {
		b.hc.update(cfg)
	} else if b.hcWanted && cfg.HealthCheck.Enabled {
		b.startHealthChecks()
	}
	if b.links != nil {
		// Attached: a backend this reload adds may leave by an interface
		// the start did not put in the redirect map. Its neighbour is
		// asked for, not waited for (the kernel forwards until then).
		hops, err := b.addBackendEgress(cfg, true)
		if err != nil {
			slog.Error("add the backends' egress interfaces to the redirect map", "err", err)
		}
		requestNeighbours(hops)
	}
	return nil
}

// apply runs the three phases every table change goes through: stable ids
// for the backends, the new tables written into the idle slot, and the flip
// that makes that slot live.
func (b *Balancer) apply(cfg *config.LoadBalancer) error {
	slotCfg, err := slotFromConfig(cfg)
	if err != nil {
		return err
	}
	if err := checkBackends(cfg.Backends); err != nil {
		return err
	}
	if !cfg.HealthCheck.Enabled {
		// Without checks no backend is down; with them again later, each
		// starts as assumed healthy.
		clear(b.wasDown)
		clear(b.pending)
	}
	if err := b.assignIDs(cfg.Backends, time.Duration(cfg.FlowTimeout)); err != nil {
		return err
	}
	active, err := b.activeSlot()
	if err != nil {
		return err
	}
	idle := active ^ 1
	state, err := b.writeIdle(idle, active, cfg, slotCfg)
	if err != nil {
		return err
	}
	if err := b.flip(active, idle); err != nil {
		return err
	}
	b.cfg = cfg
	b.noteState(state)
	slog.Debug("applied load balancer tables", "slot", idle, "wrr_len", slotCfg.WrrLen, "maglev_size", slotCfg.MaglevSize)
	return nil
}

// markPending records the backends cfg adds to a running configuration
// whose health checks run (and go on running with cfg), and returns them.
func (b *Balancer) markPending(cfg *config.LoadBalancer) []string {
	if b.hc == nil || b.cfg == nil || !b.cfg.HealthCheck.Enabled || !cfg.HealthCheck.Enabled {
		return nil
	}
	had := make(map[string]bool, len(b.cfg.Backends))
	for _, be := range b.cfg.Backends {
		had[backendKey(be.Address, be.Port)] = true
	}
	var added []string
	for _, be := range cfg.Backends {
		k := backendKey(be.Address, be.Port)
		if _, known := b.healthy[k]; !had[k] && !known {
			b.pending[k] = true
			added = append(added, k)
		}
	}
	return added
}

// tableState is what a table change means for new flows.
type tableState struct {
	ready    bool // some backend takes new flows
	failOpen bool // every weighted backend failed its checks and takes them anyway
	// waiting: a weighted backend in the tables has not answered its first
	// check, so not being ready may be only a matter of time.
	waiting bool
}

// noteState logs and reports changes of readiness and fail-open.
func (b *Balancer) noteState(s tableState) {
	if s.failOpen != b.failOpen {
		if s.failOpen {
			slog.Warn("every weighted backend is unhealthy: failing open, sending to all of them (health_check.all_unhealthy: fail-open)")
		} else {
			slog.Info("a backend is healthy again: fail-open ends")
		}
	}
	changed := !b.readyKnown || s.ready != b.ready
	// Not ready for another reason: the first checks answered, and none
	// found a backend to take new flows.
	why := !s.ready && (changed || s.waiting != b.waiting)
	b.ready, b.failOpen, b.waiting, b.readyKnown = s.ready, s.failOpen, s.waiting, true
	switch {
	case !why:
	case s.waiting:
		slog.Info("not ready: waiting for the first health check of a backend with weight")
	default:
		slog.Warn("no backend takes new flows (weights 0, or unhealthy with all_unhealthy: drop): not ready")
	}
	if !changed {
		return
	}
	if b.opts.OnReady != nil {
		b.opts.OnReady(s.ready)
	}
}

// Ready reports whether some backend takes new flows, and whether that is
// because the LB fails open.
func (b *Balancer) Ready() (ready, failOpen bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready, b.failOpen
}

// checkBackends refuses what the tables cannot hold, and backends that are
// this node's own addresses (the LB would send to itself; where it runs is
// known only here, not to `xmirror check`).
func checkBackends(bes []config.Backend) error {
	if len(bes) > MaxBackends {
		return fmt.Errorf("%d backends: at most %d", len(bes), MaxBackends)
	}
	for _, be := range bes {
		if be.Weight < 0 || be.Weight > config.MaxWeight {
			return fmt.Errorf("backend %s weight %d: must be 0..%d", be.Name, be.Weight, config.MaxWeight)
		}
	}
	own, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list this node's addresses: %w", err)
	}
	for i, be := range bes {
		for _, a := range own {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == be.Address {
				err := fmt.Errorf("backends[%d] (%s): %s is an address of this node: the load balancer would send to itself", i, be.Name, be.Address)
				if be.Line > 0 { // as the file's other errors say where
					err = fmt.Errorf("%w (line %d)", err, be.Line)
				}
				return err
			}
		}
	}
	return nil
}

// assignIDs is the stable-ids phase: known backends keep their ids (and so
// their flows and counters), backends that left free theirs, and new ones
// take free ids (freeID) with their traffic counters starting at zero.
func (b *Balancer) assignIDs(bes []config.Backend, flowTimeout time.Duration) error {
	now := time.Now()
	want := make(map[string]bool, len(bes))
	for _, be := range bes {
		want[backendKey(be.Address, be.Port)] = true
	}
	used := make(map[uint32]bool)
	for k, id := range b.ids {
		if want[k] {
			used[id] = true
		} else {
			delete(b.ids, k)
			delete(b.wasDown, k)
			delete(b.pending, k)
			b.names[id] = ""
			b.freedAt[id] = now
		}
	}
	var fresh []uint32
	for _, be := range bes {
		k := backendKey(be.Address, be.Port)
		if _, ok := b.ids[k]; ok {
			continue
		}
		if id, ok := freeID(used, b.freedAt, now, flowTimeout); ok {
			used[id] = true
			delete(b.freedAt, id)
			b.ids[k] = id
			fresh = append(fresh, id)
		}
	}
	return b.zeroTraffic(fresh)
}

// freeID picks an id for a new backend: the lowest unused one that no
// backend left within the flow timeout, else the one left longest ago. wrr
// buckets still name a backend that left, and are live again as soon as its
// id is: a new backend that took it within the flow timeout would inherit
// all of those flows at once, not its share by weight.
func freeID(used map[uint32]bool, freedAt map[uint32]time.Time, now time.Time, flowTimeout time.Duration) (uint32, bool) {
	var oldest uint32
	var oldestAt time.Time
	found := false
	for id := uint32(0); id < MaxBackends; id++ {
		if used[id] {
			continue
		}
		at, freed := freedAt[id]
		if !freed || now.Sub(at) > flowTimeout {
			return id, true
		}
		if !found || at.Before(oldestAt) {
			oldest, oldestAt, found = id, at, true
		}
	}
	return oldest, found
}

// writeIdle is the write-the-idle-buffer phase: backends, schedule or Maglev
// table, allowlist and listener go into slot idle, which no packet reads, and
// are copied into the data path's globals. slotCfg gets the table sizes and
// the next generation.
func (b *Balancer) writeIdle(idle, active uint32, cfg *config.LoadBalancer, slotCfg *lbLbSlot) (tableState, error) {
	rows, tbs, state := b.backendRows(cfg)
	keys := make([]uint32, MaxBackends)
	for i := range keys {
		keys[i] = idle*MaxBackends + uint32(i)
	}
	if err := batchPut(b.objs.LbBackends, keys, rows); err != nil {
		return state, fmt.Errorf("write backends: %w", err)
	}
	if err := b.writeTable(idle, slotCfg, tbs); err != nil {
		return state, err
	}
	if err := b.writeACL(idle, cfg.Listener.AccessControl); err != nil {
		return state, err
	}
	var cur lbLbSlot
	if err := b.objs.LbSlots.Lookup(active, &cur); err != nil {
		return state, fmt.Errorf("read active slot: %w", err)
	}
	if b.mode != "" {
		slotCfg.XdpMode = modeCode(b.mode)
	} else {
		// Not attached yet by this process: keep what a previous run recorded.
		slotCfg.XdpMode = cur.XdpMode
	}
	if err := b.objs.LbSlots.Put(idle, slotCfg); err != nil {
		return state, fmt.Errorf("write slot: %w", err)
	}
	return state, b.publish(idle, slotCfg, rows)
}

// backendRows are the backend table rows by id and the live backends
// (configured and healthy, or all of them when failing open), as the table
// builders want them.
func (b *Balancer) backendRows(cfg *config.LoadBalancer) ([]lbLbBackend, []tableBackend, tableState) {
	rows := make([]lbLbBackend, MaxBackends)
	var tbs []tableBackend
	state := tableState{failOpen: b.allWeightedDown(cfg)}
	hold := b.holdPending(cfg)
	for _, be := range cfg.Backends {
		k := backendKey(be.Address, be.Port)
		id := b.ids[k]
		b.names[id] = be.Name
		row := lbLbBackend{Addr: addrToBE(be.Address), Port: portToBE(be.Port), Weight: uint8(be.Weight)}
		row.CsumIp, row.CsumUdp = csumDiffs(cfg.Listener.VIP, listenerPort(cfg), be.Address, be.Port)
		copy(row.Name[:len(row.Name)-1], toInt8(be.Name))
		if hold && b.pending[k] {
			row.Flags = backendPending
		} else if healthy := b.isHealthy(k); healthy || state.failOpen {
			row.Flags = backendAlive
			if !healthy {
				row.Flags |= backendFailing
			}
			tbs = append(tbs, tableBackend{ID: id, Key: k, Weight: be.Weight})
			// Until its first check answers, a backend gets traffic (it is
			// assumed healthy) but does not make the node ready: with bgp
			// that would announce a node that may serve nothing.
			checked := b.checked(cfg, k)
			state.ready = state.ready || (be.Weight > 0 && checked)
			state.waiting = state.waiting || (be.Weight > 0 && !checked)
		}
		rows[id] = row
	}
	return rows, tbs, state
}

// holdPending: backends added by a reload wait for their first check,
// because a weighted backend that is not waiting takes new flows.
func (b *Balancer) holdPending(cfg *config.LoadBalancer) bool {
	if len(b.pending) == 0 {
		return false
	}
	for _, be := range cfg.Backends {
		k := backendKey(be.Address, be.Port)
		if be.Weight > 0 && !b.pending[k] && b.isHealthy(k) {
			return true
		}
	}
	return false
}

// allWeightedDown: health checks found every backend with weight unhealthy
// and all_unhealthy says fail-open (its default).
func (b *Balancer) allWeightedDown(cfg *config.LoadBalancer) bool {
	hc := cfg.HealthCheck
	if !hc.Enabled || hc.AllUnhealthy == config.AllUnhealthyDrop {
		return false
	}
	weighted := false
	for _, be := range cfg.Backends {
		// A backend waiting for its first check neither keeps the others
		// from failing open nor fails itself.
		if be.Weight > 0 && !b.pending[backendKey(be.Address, be.Port)] {
			if b.isHealthy(backendKey(be.Address, be.Port)) {
				return false
			}
			weighted = true
		}
	}
	return weighted
}

// writeTable writes the slot's WRR schedule or Maglev table and records its
// length in slotCfg.
func (b *Balancer) writeTable(slot uint32, slotCfg *lbLbSlot, tbs []tableBackend) error {
	switch slotCfg.Algorithm {
	case algoWRR:
		seq := wrrSchedule(tbs)
		if len(seq) > wrrMax {
			return fmt.Errorf("wrr schedule of %d entries: at most %d", len(seq), wrrMax)
		}
		if err := putTable(b.objs.LbWrr, slot*wrrMax, seq); err != nil {
			return fmt.Errorf("write wrr schedule: %w", err)
		}
		slotCfg.WrrLen = uint32(len(seq))
	case algoMaglev:
		tab := maglevTable(tbs, int(slotCfg.MaglevSize))
		if err := putMaglev(b.objs.LbMaglev, slot*maglevLines, tab); err != nil {
			return fmt.Errorf("write maglev table: %w", err)
		}
		slotCfg.MaglevSize = uint32(len(tab))
		b.warnStarved(tbs, tab)
	}
	return nil
}

// warnStarved says when weighted backends got no entry in a Maglev table
// too small for their weights (they get no flows while status shows them
// healthy and weighted), once per change of that set.
func (b *Balancer) warnStarved(tbs []tableBackend, tab []uint32) {
	has := make(map[uint32]bool, len(tbs))
	for _, id := range tab {
		has[id] = true
	}
	var names []string
	for _, tb := range tbs {
		if tb.Weight > 0 && !has[tb.ID] {
			names = append(names, b.names[tb.ID])
		}
	}
	starved := strings.Join(names, ",")
	if starved != "" && starved != b.starved {
		slog.Warn("maglev_table_size is too small for the weights: these weighted backends have no entry and get no flows; raise it (65537 is the default)",
			"maglev_table_size", len(tab), "backends", names)
	}
	b.starved = starved
}

// flip is the last phase: everything is in place in slot idle before this
// single write of the global the data path reads. lb_active follows for
// status readers, a restarted control plane and a program of an older
// version still attached during a restart (it reads lb_active itself).
func (b *Balancer) flip(active, idle uint32) error {
	if err := b.objs.LbActiveSlot.Set(idle); err != nil {
		return fmt.Errorf("switch active slot: %w", err)
	}
	if err := b.objs.LbActive.Put(uint32(0), idle); err != nil {
		// Keep the two agreeing, or the next Apply would write the live slot.
		if rerr := b.objs.LbActiveSlot.Set(active); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("switch active slot: %w", err)
	}
	return nil
}

// checked: the backend's health is known, or not checked at all.
func (b *Balancer) checked(cfg *config.LoadBalancer, key string) bool {
	_, known := b.healthy[key]
	return known || !cfg.HealthCheck.Enabled
}

// isHealthy: the backend's last state by this process's checks; before its
// first answer, healthy unless the previous run had found it down.
func (b *Balancer) isHealthy(key string) bool {
	if h, ok := b.healthy[key]; ok {
		return h
	}
	return !b.wasDown[key]
}

// listenerPort is the listener's UDP port, its protocol's when unset (0 for
// GRE, which has none).
func listenerPort(cfg *config.LoadBalancer) uint16 {
	return cmp.Or(cfg.Listener.Port, cfg.Listener.DefaultPort())
}

// slotFromConfig translates the listener and algorithm settings.
func slotFromConfig(cfg *config.LoadBalancer) (*lbLbSlot, error) {
	if !cfg.Listener.VIP.Is4() {
		return nil, fmt.Errorf("listener vip %s: only IPv4 is supported", cfg.Listener.VIP)
	}
	s := &lbLbSlot{Vip: addrToBE(cfg.Listener.VIP), Port: portToBE(listenerPort(cfg))}
	switch cfg.Listener.Protocol {
	case "", config.ProtocolVXLAN:
		s.Encap = encapVXLAN
	case config.ProtocolGENEVE:
		s.Encap = encapGENEVE
	case config.ProtocolGRE:
		s.Encap = encapGRE
	default:
		return nil, fmt.Errorf("listener protocol %q: must be vxlan, geneve or gre", cfg.Listener.Protocol)
	}
	switch cfg.Algorithm {
	case "", "wrr":
		s.Algorithm = algoWRR
	case "maglev":
		s.Algorithm = algoMaglev
		s.MaglevSize = uint32(cmp.Or(cfg.MaglevSize, DefaultMaglevSize))
		if s.MaglevSize > MaglevMax || !config.IsPrime(int(s.MaglevSize)) {
			return nil, fmt.Errorf("maglev_table_size %d: must be a prime up to %d", s.MaglevSize, MaglevMax)
		}
	default:
		return nil, fmt.Errorf("algorithm %q: must be wrr or maglev", cfg.Algorithm)
	}
	switch cfg.Affinity {
	case "", "inner-symmetric":
		s.Affinity = affInnerSymmetric
	case "outer":
		s.Affinity = affOuter
	case "none":
		s.Affinity = affNone
	default:
		return nil, fmt.Errorf("affinity %q: must be inner-symmetric, outer or none", cfg.Affinity)
	}
	switch cfg.Listener.AccessControl.Mode {
	case "", "all":
		s.AclMode = aclAll
	case "allowlist":
		s.AclMode = aclAllowlist
	default:
		return nil, fmt.Errorf("access_control.mode %q: must be all or allowlist", cfg.Listener.AccessControl.Mode)
	}
	s.FlowTimeoutNs = uint64(time.Duration(cfg.FlowTimeout).Nanoseconds())
	return s, nil
}

// writeACL replaces the idle slot's allowlist.
func (b *Balancer) writeACL(slot uint32, ac config.AccessControl) error {
	var stale []lbLbAclKey
	var k lbLbAclKey
	var v uint8
	it := b.objs.LbAcl.Iterate()
	for it.Next(&k, &v) {
		if uint32(k.Slot) == slot {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read allowlist: %w", err)
	}
	for _, k := range stale {
		if err := b.objs.LbAcl.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear allowlist: %w", err)
		}
	}
	if ac.Mode != "allowlist" {
		return nil
	}
	for _, p := range ac.Allowlist {
		if !p.Addr().Is4() {
			return fmt.Errorf("allowlist %s: only IPv4 sources reach an IPv4 listener", p)
		}
		p = p.Masked()
		key := lbLbAclKey{Prefixlen: 32 + uint32(p.Bits()), Slot: uint8(slot), Addr: addrToBE(p.Addr())}
		if err := b.objs.LbAcl.Put(key, uint8(1)); err != nil {
			return fmt.Errorf("write allowlist %s: %w", p, err)
		}
	}
	return nil
}

// zeroTraffic starts newly assigned ids' traffic counters at zero: the
// per-CPU counters the data path increments run on, so their current sums
// become the ids' bases, which status readers subtract (lb_traffic_base).
func (b *Balancer) zeroTraffic(ids []uint32) error {
	if len(ids) == 0 {
		return nil
	}
	per, err := readPerCPU(b.objs.LbPercpu)
	if err != nil {
		return err
	}
	for _, id := range ids {
		packets, bytes := trafficOf(per, id)
		if err := b.objs.LbTrafficBase.Put(id, lbLbTraffic{Packets: packets, Bytes: bytes}); err != nil {
			return fmt.Errorf("reset backend counters: %w", err)
		}
	}
	return nil
}

// batchPut writes keys/values in one syscall where the kernel allows.
func batchPut[V any](m *ebpf.Map, keys []uint32, values []V) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, values, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(keys[i], values[i]); err != nil {
			return err
		}
	}
	return nil
}

func putTable(m *ebpf.Map, base uint32, ids []uint32) error {
	keys := make([]uint32, len(ids))
	for i := range keys {
		keys[i] = base + uint32(i)
	}
	return batchPut(m, keys, ids)
}

// putMaglev writes a Maglev table of backend ids from value base on, as
// struct lb_maglev_line values of maglevLine one-byte ids.
func putMaglev(m *ebpf.Map, base uint32, ids []uint32) error {
	lines := make([]lbLbMaglevLine, (len(ids)+maglevLine-1)/maglevLine)
	keys := make([]uint32, len(lines))
	for i := range keys {
		keys[i] = base + uint32(i)
	}
	for i, id := range ids {
		if id >= MaxBackends {
			return fmt.Errorf("maglev entry %d: backend id %d out of range", i, id)
		}
		lines[i/maglevLine].Id[i%maglevLine] = uint8(id)
	}
	return batchPut(m, keys, lines)
}

// Byte-order helpers: the BPF program compares raw network-order words, and
// cilium/ebpf stores struct fields in host order.
// csumDiffs are the one's complement differences (RFC 1624) that rewriting
// the destination from vip:lport to addr:port (and, in the IP header, the
// TTL one lower) adds to the IP header and UDP checksums, in the byte order the BPF program loads them (port 0 keeps the
// listener's). The data path adds them (lb_csum_add in bpf/lb_csum.h)
// instead of recomputing per packet; the golden tests check the result
// against checksums computed from scratch.
func csumDiffs(vip netip.Addr, lport uint16, addr netip.Addr, port uint16) (ip, udp uint16) {
	o, n := vip.As4(), addr.As4()
	addrs := uint32(^binary.BigEndian.Uint16(o[0:])) + uint32(^binary.BigEndian.Uint16(o[2:])) +
		uint32(binary.BigEndian.Uint16(n[0:])) + uint32(binary.BigEndian.Uint16(n[2:]))
	// The TTL one lower: its word (TTL, protocol) loses 0x0100, which is
	// adding the complement 0xfeff (LB_CSUM_TTL_INC in C undoes it).
	ip = csumFold(addrs + 0xfeff)
	ports := addrs
	if port != 0 && port != lport {
		ports += uint32(^lport) + uint32(port)
	}
	return portToBE(ip), portToBE(csumFold(ports))
}

func csumFold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func addrToBE(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func addrFromBE(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func portToBE(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func portFromBE(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func toInt8(s string) []int8 {
	out := make([]int8, len(s))
	for i := range len(s) {
		out[i] = int8(s[i])
	}
	return out
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
