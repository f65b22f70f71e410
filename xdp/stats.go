// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/config"
)

// BackendStatus is one backend of the active tables with its traffic.
type BackendStatus struct {
	ID      uint32
	Name    string
	Address netip.Addr
	Port    uint16 // 0: the listener's port is kept
	Weight  int
	Healthy bool // in the tables (configured and passing health checks)
	// FailOpen: in the tables though failing its health checks, because
	// every weighted backend fails them and all_unhealthy is fail-open.
	FailOpen bool
	// Pending: added by a reload and held out of the tables until its
	// first health check passes.
	Pending bool
	Packets uint64
	Bytes   uint64
}

// Status is what the pinned (or live) maps say about the load balancer.
type Status struct {
	Listener  netip.AddrPort
	Protocol  string // vxlan | geneve | gre
	Algorithm string
	Affinity  string
	ACL       string
	Mode      string
	Slot      uint32
	WRRLen    uint32
	Maglev    uint32
	Backends  []BackendStatus
	Counters  [statMax]uint64
}

// Counter returns the total of one verdict reason.
func (s *Status) Counter(st Stat) uint64 { return s.Counters[st] }

// statusMaps are the maps a status read needs.
type statusMaps struct {
	active, slots, backends, percpu, base *ebpf.Map
}

func readStatus(m statusMaps) (*Status, error) {
	var slot uint32
	if err := m.active.Lookup(uint32(0), &slot); err != nil {
		return nil, fmt.Errorf("read active slot: %w", err)
	}
	slot &= 1
	var cfg lbLbSlot
	if err := m.slots.Lookup(slot, &cfg); err != nil {
		return nil, fmt.Errorf("read slot: %w", err)
	}
	st := &Status{
		Listener:  netip.AddrPortFrom(addrFromBE(cfg.Vip), portFromBE(cfg.Port)),
		Protocol:  protocolName(cfg.Encap),
		Algorithm: [...]string{"wrr", "maglev"}[cfg.Algorithm&1],
		Affinity:  "inner-symmetric",
		ACL:       "all",
		Mode:      modeName(cfg.XdpMode),
		Slot:      slot,
		WRRLen:    cfg.WrrLen,
		Maglev:    cfg.MaglevSize,
	}
	switch cfg.Affinity {
	case affOuter:
		st.Affinity = "outer"
	case affNone:
		st.Affinity = "none"
	}
	if cfg.AclMode == aclAllowlist {
		st.ACL = "allowlist"
	}
	// The counters share each CPU's value with its caches.
	per, err := readPerCPU(m.percpu)
	if err != nil {
		return nil, err
	}
	for _, c := range per {
		for i := range st.Counters {
			st.Counters[i] += c.Stats[i]
		}
	}
	for id := uint32(0); id < MaxBackends; id++ {
		var be lbLbBackend
		if err := m.backends.Lookup(slot*MaxBackends+id, &be); err != nil {
			return nil, fmt.Errorf("read backend %d: %w", id, err)
		}
		if be.Addr == 0 {
			continue
		}
		var base lbLbTraffic
		if err := m.base.Lookup(id, &base); err != nil {
			return nil, fmt.Errorf("read backend %d traffic base: %w", id, err)
		}
		packets, bytes := trafficOf(per, id)
		bs := BackendStatus{ID: id, Name: cString(be.Name[:]), Address: addrFromBE(be.Addr), Port: portFromBE(be.Port),
			Weight:   int(be.Weight),
			Healthy:  be.Flags&backendAlive != 0 && be.Flags&backendFailing == 0,
			FailOpen: be.Flags&backendAlive != 0 && be.Flags&backendFailing != 0,
			Pending:  be.Flags&backendPending != 0,
			// an id's counters run on from its previous backend's
			Packets: packets - min(packets, base.Packets), Bytes: bytes - min(bytes, base.Bytes)}
		st.Backends = append(st.Backends, bs)
	}
	return st, nil
}

// protocolName is the listener protocol of a slot's encap code.
func protocolName(encap uint8) string {
	switch encap {
	case encapGENEVE:
		return config.ProtocolGENEVE
	case encapGRE:
		return config.ProtocolGRE
	}
	return config.ProtocolVXLAN
}

// readPerCPU reads every CPU's lb_cpu value.
func readPerCPU(percpu *ebpf.Map) ([]lbLbCpu, error) {
	var per []lbLbCpu
	if err := percpu.Lookup(uint32(0), &per); err != nil {
		return nil, fmt.Errorf("read per-CPU counters: %w", err)
	}
	return per, nil
}

// trafficOf sums backend id's forwarded packets and bytes over the CPUs.
func trafficOf(per []lbLbCpu, id uint32) (packets, bytes uint64) {
	for i := range per {
		packets += per[i].Traffic[id].Packets
		bytes += per[i].Traffic[id].Bytes
	}
	return packets, bytes
}

// Status reads the live maps.
func (b *Balancer) Status() (*Status, error) {
	o := b.objs
	st, err := readStatus(statusMaps{o.LbActive, o.LbSlots, o.LbBackends, o.LbPercpu, o.LbTrafficBase})
	if err != nil {
		return nil, err
	}
	if m := b.Mode(); m != "" {
		st.Mode = m
	}
	return st, nil
}

// ErrNotRunning means nothing is pinned under the pin path.
var ErrNotRunning = errors.New("no load balancer pinned")

// ReadPinnedStatus reads the maps a running (or exited, still attached) `xmirror lb` pinned.
func ReadPinnedStatus(pinPath string) (*Status, error) {
	load := func(name string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w under %s", ErrNotRunning, pinPath)
			}
			return nil, fmt.Errorf("open pinned %s: %w", name, err)
		}
		return m, nil
	}
	var ms []*ebpf.Map
	defer func() {
		for _, m := range ms {
			m.Close()
		}
	}()
	var sm statusMaps
	for _, x := range []struct {
		name string
		dst  **ebpf.Map
	}{{"lb_active", &sm.active}, {"lb_slots", &sm.slots}, {"lb_backends", &sm.backends}, {"lb_percpu", &sm.percpu}, {"lb_traffic_base", &sm.base}} {
		m, err := load(x.name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
		*x.dst = m
	}
	return readStatus(sm)
}

// RegisterMetrics adds the load balancer's counters to set; they are read
// from the per-CPU maps on every scrape.
func (b *Balancer) RegisterMetrics(set *metrics.Set) {
	set.RegisterMetricsWriter(func(w io.Writer) {
		st, err := b.Status()
		if err != nil {
			metrics.WriteGaugeUint64(w, "xmirror_lb_up", 0)
			return
		}
		metrics.WriteGaugeUint64(w, "xmirror_lb_up", 1)
		// Verdicts sum to the packets seen; events are counted beside them
		// (a fragment, a connection-table miss), so they get a metric of
		// their own that no one adds to the packets by mistake.
		for i, v := range st.Counters {
			if Stat(i).Verdict() {
				metrics.WriteCounterUint64(w, fmt.Sprintf(`xmirror_lb_packets_total{reason=%q}`, Stat(i).String()), v)
			} else {
				metrics.WriteCounterUint64(w, fmt.Sprintf(`xmirror_lb_events_total{event=%q}`, Stat(i).String()), v)
			}
		}
		metrics.WriteGaugeUint64(w, "xmirror_lb_active_slot", uint64(st.Slot))
		ready, failOpen := b.Ready()
		metrics.WriteGaugeUint64(w, "xmirror_lb_ready", boolGauge(ready))
		metrics.WriteGaugeUint64(w, "xmirror_lb_fail_open", boolGauge(failOpen))
		for _, be := range st.Backends {
			l := fmt.Sprintf(`{backend=%q,address=%q}`, be.Name, be.Address.String())
			metrics.WriteCounterUint64(w, "xmirror_lb_backend_packets_total"+l, be.Packets)
			metrics.WriteCounterUint64(w, "xmirror_lb_backend_bytes_total"+l, be.Bytes)
			metrics.WriteGaugeUint64(w, "xmirror_lb_backend_weight"+l, uint64(be.Weight))
			metrics.WriteGaugeUint64(w, "xmirror_lb_backend_healthy"+l, boolGauge(be.Healthy))
		}
	})
}

func boolGauge(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
