// SPDX-License-Identifier: Apache-2.0

// Package bgp announces a load balancer node's VIP to routers with an
// embedded GoBGP speaker, so that several nodes share the VIP by ECMP: the
// VIP/32 with the node itself as next hop while the node can forward, no
// route while it cannot, and a withdrawal followed by a drain wait before a
// stopping node goes away.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/VictoriaMetrics/metrics"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xmirror/xmirror/config"
)

// connectRetry is how often a session that is down is tried again.
const connectRetry = 2 * time.Second

// ErrRestartNeeded: a change Reconfigure cannot make to a running speaker
// (the ASN and router id of the BGP instance).
var ErrRestartNeeded = errors.New("needs a restart")

// Speaker holds the BGP sessions of one LB node and its announcement.
type Speaker struct {
	vip netip.Addr
	srv *server.BgpServer
	// listener is the interfaces the program runs on; a session whose
	// local address (the route's next hop) is elsewhere is reported.
	// Empty: not checked.
	listener []string

	wake chan struct{} // the wanted announcement changed
	done chan struct{} // the reconcile loop ended

	mu       sync.Mutex
	cfg      config.BGP
	want     bool   // announce: the node is attached and some backend takes new flows
	stopping bool   // Stop began: never announce again
	stale    bool   // the announced path's attributes changed: announce it again
	pathUUID []byte // of the announced path; nil when not announced
	sessions map[string]api.PeerState_SessionState
	failures map[string]string // why a session that is not established last failed, by peer
	// logged is the failures logged per peer since its session was last
	// established: retries that fail in turn for two reasons (a router
	// refusing, then closing at once during its idle hold time) log each
	// reason once, not on every retry.
	logged     map[string]map[string]bool
	announces  uint64 // times the VIP was announced
	withdrawns uint64 // times it was withdrawn
}

// Start runs the speaker and opens a session with every peer. Nothing is
// announced until Announce(true). listener is the interfaces the program
// runs on (see Speaker.listener).
func Start(cfg config.BGP, vip netip.Addr, listener []string) (_ *Speaker, err error) {
	s := &Speaker{cfg: cfg, vip: vip, listener: listener, wake: make(chan struct{}, 1), done: make(chan struct{}),
		sessions: make(map[string]api.PeerState_SessionState), failures: make(map[string]string),
		logged: make(map[string]map[string]bool)}
	s.srv = server.NewBgpServer(server.LoggerOption(slogLogger{sessionFailed: s.sessionFailed}))
	go s.srv.Serve()
	ctx := context.Background()
	// ListenPort -1: the node dials its routers and accepts nothing.
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: -1}}); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("start bgp: %w", err)
	}
	defer func() {
		if err != nil {
			s.srv.StopBgp(ctx, &api.StopBgpRequest{})
			s.srv.Stop()
		}
	}()
	if err := s.srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.peerEvent); err != nil {
		return nil, fmt.Errorf("watch bgp sessions: %w", err)
	}
	for _, p := range cfg.Peers {
		// known before GoBGP's first event about it
		s.mu.Lock()
		s.sessions[p.Address.String()] = api.PeerState_IDLE
		s.mu.Unlock()
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerOf(cfg, p)}); err != nil {
			return nil, fmt.Errorf("bgp peer %s: %w", p.Address, err)
		}
	}
	go s.reconcile()
	slog.Info("bgp started", "asn", cfg.ASN, "router_id", cfg.RouterID, "peers", len(cfg.Peers))
	return s, nil
}

// peerOf is the GoBGP description of one router.
func peerOf(cfg config.BGP, p config.BGPPeer) *api.Peer {
	hold := uint64(time.Duration(cfg.HoldTime) / time.Second)
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: hold / 3,
			ConnectRetry: uint64(connectRetry / time.Second)}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
	}
}

// Announce sets whether the VIP should be announced; it returns at once
// (the Balancer calls it with its lock held) and the change follows.
func (s *Speaker) Announce(want bool) {
	s.mu.Lock()
	s.want = want
	s.mu.Unlock()
	s.poke()
}

// poke wakes the reconcile loop, unless Stop closed it.
func (s *Speaker) poke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reconcile makes the announcement follow what is wanted.
func (s *Speaker) reconcile() {
	defer close(s.done)
	for range s.wake {
		s.mu.Lock()
		want := s.want && !s.stopping
		have := s.pathUUID != nil
		stale := s.stale
		s.stale = false
		s.mu.Unlock()
		var err error
		switch {
		case want && (!have || stale):
			// a path for the same prefix replaces the announced one
			err = s.announce()
		case !want && have:
			err = s.withdraw()
		}
		if err != nil {
			slog.Error("bgp", "err", err)
		}
	}
}

func (s *Speaker) announce() error {
	path, err := s.path()
	if err != nil {
		return err
	}
	r, err := s.srv.AddPath(context.Background(), &api.AddPathRequest{Path: path})
	if err != nil {
		return fmt.Errorf("announce %s/32: %w", s.vip, err)
	}
	s.mu.Lock()
	s.pathUUID = r.Uuid
	s.announces++
	s.mu.Unlock()
	slog.Info("bgp: announced the vip", "prefix", s.vip.String()+"/32")
	return nil
}

func (s *Speaker) withdraw() error {
	s.mu.Lock()
	uuid := s.pathUUID
	s.mu.Unlock()
	if uuid == nil {
		return nil
	}
	if err := s.srv.DeletePath(context.Background(), &api.DeletePathRequest{Uuid: uuid}); err != nil {
		return fmt.Errorf("withdraw %s/32: %w", s.vip, err)
	}
	s.mu.Lock()
	s.pathUUID = nil
	s.withdrawns++
	s.mu.Unlock()
	slog.Info("bgp: withdrew the vip", "prefix", s.vip.String()+"/32")
	return nil
}

// path is the VIP/32 with the node as next hop (0.0.0.0: GoBGP puts the
// session's local address there), origin IGP, the configured communities
// and MED.
func (s *Speaker) path() (*api.Path, error) {
	s.mu.Lock()
	med, comms := s.cfg.MED, s.cfg.Communities
	s.mu.Unlock()
	nlri, err := anypb.New(&api.IPAddressPrefix{PrefixLen: 32, Prefix: s.vip.String()})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{
		&api.OriginAttribute{Origin: 0},
		&api.NextHopAttribute{NextHop: "0.0.0.0"},
		&api.MultiExitDiscAttribute{Med: med},
	}
	if len(comms) > 0 {
		cs, err := communities(comms)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: cs})
	}
	pattrs := make([]*anypb.Any, len(attrs))
	for i, a := range attrs {
		if pattrs[i], err = anypb.New(a); err != nil {
			return nil, err
		}
	}
	return &api.Path{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Nlri: nlri, Pattrs: pattrs}, nil
}

// communities parses "ASN:value" communities (validated with the config).
func communities(in []string) ([]uint32, error) {
	out := make([]uint32, 0, len(in))
	for _, c := range in {
		a, b, _ := strings.Cut(c, ":")
		hi, err1 := strconv.ParseUint(a, 10, 16)
		lo, err2 := strconv.ParseUint(b, 10, 16)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("community %q: %w", c, err)
		}
		out = append(out, uint32(hi)<<16|uint32(lo))
	}
	return out, nil
}

// Reconfigure applies a changed configuration to the running speaker:
// sessions with removed peers close, new peers are dialled, a peer whose
// settings changed (ASN, port, password, hold time) is deleted and added
// again (its session starts over), the announcement (if made) is sent again
// when its MED or communities changed, and a new drain applies to the next
// Stop. The ASN and router id belong to the running BGP instance: changing
// them is refused with ErrRestartNeeded and nothing changes.
func (s *Speaker) Reconfigure(cfg config.BGP) error {
	s.mu.Lock()
	old := s.cfg
	s.mu.Unlock()
	if cfg.ASN != old.ASN || cfg.RouterID != old.RouterID {
		return fmt.Errorf("bgp asn or router_id changed (%d %s -> %d %s): %w",
			old.ASN, old.RouterID, cfg.ASN, cfg.RouterID, ErrRestartNeeded)
	}
	ctx := context.Background()
	was, now := peersOf(old), peersOf(cfg)
	var errs []error
	for addr, p := range was {
		if q, ok := now[addr]; ok && proto.Equal(p, q) {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr}); err != nil {
			errs = append(errs, fmt.Errorf("remove bgp peer %s: %w", addr, err))
		}
		s.mu.Lock()
		delete(s.sessions, addr)
		delete(s.failures, addr)
		delete(s.logged, addr)
		s.mu.Unlock()
		slog.Info("bgp: peer removed", "peer", addr)
	}
	for addr, q := range now {
		if p, ok := was[addr]; ok && proto.Equal(p, q) {
			continue
		}
		s.mu.Lock()
		s.sessions[addr] = api.PeerState_IDLE
		s.mu.Unlock()
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: q}); err != nil {
			errs = append(errs, fmt.Errorf("bgp peer %s: %w", addr, err))
		}
		slog.Info("bgp: peer added", "peer", addr)
	}
	s.mu.Lock()
	s.cfg = cfg
	s.stale = cfg.MED != old.MED || !slices.Equal(cfg.Communities, old.Communities)
	s.mu.Unlock()
	s.poke()
	return errors.Join(errs...)
}

// peersOf is every peer's GoBGP description, by address.
func peersOf(cfg config.BGP) map[string]*api.Peer {
	out := make(map[string]*api.Peer, len(cfg.Peers))
	for _, p := range cfg.Peers {
		out[p.Address.String()] = peerOf(cfg, p)
	}
	return out
}

// peerEvent records session state changes.
func (s *Speaker) peerEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.Peer == nil || pe.Peer.State == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	addr, st := pe.Peer.State.NeighborAddress, pe.Peer.State.SessionState
	s.mu.Lock()
	prev, known := s.sessions[addr]
	if known {
		s.sessions[addr] = st
	}
	var offListener string
	if st == api.PeerState_ESTABLISHED {
		delete(s.failures, addr)
		delete(s.logged, addr)
		if pe.Peer.Transport != nil {
			offListener = notOnListener(pe.Peer.Transport.LocalAddress, s.listener)
		}
		if offListener != "" {
			s.failures[addr] = offListener
		}
	}
	why := s.failures[addr]
	s.mu.Unlock()
	if !known || prev == st {
		return
	}
	switch {
	case st == api.PeerState_ESTABLISHED && offListener != "":
		slog.Error("bgp session established, but traffic for the vip would be lost", "peer", addr, "reason", offListener)
	case st == api.PeerState_ESTABLISHED:
		slog.Info("bgp session established", "peer", addr)
	case prev == api.PeerState_ESTABLISHED:
		slog.Warn("bgp session down", "peer", addr, "state", stateName(st), "reason", why)
	}
}

// sessionFailed records why the session with peer failed (from GoBGP's
// log, see slogLogger). A session that does not come up (a wrong ASN or
// password, a router that does not answer) is logged once per reason
// until it is established, not on every retry; an established one that
// goes down is logged by peerEvent with this reason.
func (s *Speaker) sessionFailed(peer, reason string) {
	// A router's text (a shutdown communication, RFC 8203) may hold
	// control characters, which no metric label may.
	reason = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, reason)
	s.mu.Lock()
	st, known := s.sessions[peer]
	// GoBGP may say the same twice, the second time with less (a
	// NOTIFICATION's text, then only its code; the NOTIFICATION the
	// speaker sent about the router's OPEN, then that the OPEN exchange
	// failed): keep the first.
	cur := s.failures[peer]
	if !known || s.stopping || strings.HasPrefix(cur, reason) ||
		reason == routerRefused && strings.HasPrefix(cur, sentNotification) {
		s.mu.Unlock()
		return
	}
	s.failures[peer] = reason
	log := st != api.PeerState_ESTABLISHED && !s.logged[peer][reason]
	if log {
		if s.logged[peer] == nil {
			s.logged[peer] = map[string]bool{}
		}
		s.logged[peer][reason] = true
	}
	s.mu.Unlock()
	if log {
		slog.Warn("bgp session with a router fails", "peer", peer, "reason", reason)
	}
}

// Stop is the graceful end: withdraw the VIP, wait cfg.Drain so routers
// send the traffic elsewhere while this node still forwards, then close the
// sessions.
func (s *Speaker) Stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	close(s.wake)
	// Only once the loop has ended is no announcement in flight: one
	// that finished after a look before this would never be withdrawn.
	<-s.done
	s.mu.Lock()
	announced := s.pathUUID != nil
	drain := time.Duration(s.cfg.Drain)
	s.mu.Unlock()
	if announced {
		if err := s.withdraw(); err != nil {
			slog.Error("bgp", "err", err)
		}
		slog.Info("bgp: draining before stopping", "drain", drain)
		time.Sleep(drain)
	}
	if err := s.srv.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
		slog.Error("stop bgp", "err", err)
	}
	s.srv.Stop()
	slog.Info("bgp stopped")
}

// Session is one router's session as the speaker sees it.
type Session struct {
	Peer        netip.Addr
	ASN         uint32
	State       string // idle, connect, active, opensent, openconfirm, established
	Established bool
	// Failure is why the session last failed, while it is not established
	// (a connection refused or unanswered, a NOTIFICATION sent or received),
	// or, while it is, that it runs over an interface the program is not
	// on (where the router's traffic for the VIP is dropped).
	Failure string
}

// Status is the speaker's sessions and announcement.
type Status struct {
	Sessions    []Session
	Prefix      netip.Prefix
	Announced   bool
	Announces   uint64
	Withdrawals uint64
}

// Status reports the sessions (by peer address) and whether the VIP is
// announced.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Prefix: netip.PrefixFrom(s.vip, 32), Announced: s.pathUUID != nil,
		Announces: s.announces, Withdrawals: s.withdrawns}
	for _, p := range s.cfg.Peers {
		ss := s.sessions[p.Address.String()]
		st.Sessions = append(st.Sessions, Session{Peer: p.Address, ASN: p.ASN, State: stateName(ss),
			Established: ss == api.PeerState_ESTABLISHED, Failure: s.failures[p.Address.String()]})
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].Peer.Less(st.Sessions[j].Peer) })
	return st
}

func stateName(st api.PeerState_SessionState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "PeerState_"))
}

// RegisterMetrics adds the sessions and the announcement to set.
func (s *Speaker) RegisterMetrics(set *metrics.Set) {
	set.RegisterMetricsWriter(func(w io.Writer) {
		st := s.Status()
		for _, ss := range st.Sessions {
			up := uint64(0)
			if ss.Established {
				up = 1
			}
			metrics.WriteGaugeUint64(w, fmt.Sprintf(`xmirror_lb_bgp_session_up{peer=%q,asn="%d",state=%q}`, ss.Peer, ss.ASN, ss.State), up)
			if ss.Failure != "" {
				metrics.WriteGaugeUint64(w, fmt.Sprintf(`xmirror_lb_bgp_session_failure{peer=%q,reason=%q}`, ss.Peer, ss.Failure), 1)
			}
		}
		announced := uint64(0)
		if st.Announced {
			announced = 1
		}
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`xmirror_lb_bgp_announced{prefix=%q}`, st.Prefix), announced)
		metrics.WriteCounterUint64(w, "xmirror_lb_bgp_announcements_total", st.Announces)
		metrics.WriteCounterUint64(w, "xmirror_lb_bgp_withdrawals_total", st.Withdrawals)
	})
}
