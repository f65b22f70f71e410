// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/xmirror/xmirror/config"
)

// testRouter is a GoBGP instance on a loopback address standing in for a
// router: passive, it accepts the speaker (AS 65001 from 127.0.0.1) and
// keeps what it learns.
type testRouter struct {
	addr netip.Addr
	port uint16
	srv  *server.BgpServer
}

func startTestRouter(t *testing.T, addr string) *testRouter {
	t.Helper()
	return startTestRouterWith(t, addr, nil)
}

// startTestRouterWith starts a router whose session with the speaker is
// changed by edit first (a password, say).
func startTestRouterWith(t *testing.T, addr string, edit func(*api.Peer)) *testRouter {
	t.Helper()
	// a free port on that address (closed again right away)
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	r := &testRouter{addr: netip.MustParseAddr(addr), port: port, srv: server.NewBgpServer(server.LoggerOption(slogLogger{}))}
	go r.srv.Serve()
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: addr,
		ListenPort: int32(port), ListenAddresses: []string{addr}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		r.srv.Stop()
	})
	peer := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport: &api.Transport{PassiveMode: true},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
	}
	if edit != nil {
		edit(peer)
	}
	if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *testRouter) peer() config.BGPPeer {
	return config.BGPPeer{Address: r.addr, ASN: 65000, Port: r.port}
}

// learnt is the route to prefix the router has (MED, communities), if any.
type learnt struct {
	ok          bool
	med         uint32
	communities []uint32
}

func (r *testRouter) route(t *testing.T, prefix string) learnt {
	t.Helper()
	var got learnt
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}}, func(d *api.Destination) {
		if d.Prefix != prefix {
			return
		}
		for _, p := range d.Paths {
			if p.IsWithdraw {
				continue
			}
			got.ok = true
			for _, a := range p.Pattrs {
				var med api.MultiExitDiscAttribute
				var cs api.CommunitiesAttribute
				if a.UnmarshalTo(&med) == nil {
					got.med = med.Med
				} else if a.UnmarshalTo(&cs) == nil {
					got.communities = cs.Communities
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitRoute waits until the router's route to prefix is want.
func (r *testRouter) waitRoute(t *testing.T, prefix string, want learnt, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.route(t, prefix)
		if got.ok == want.ok && (!want.ok || got.med == want.med && slices.Equal(got.communities, want.communities)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: router %s has %+v for %s, want %+v", what, r.addr, got, prefix, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReconfigure: a running speaker takes new peers, drops removed ones and
// announces again with a new MED and communities, without a restart; a new
// ASN or router id is refused. The routers are GoBGP instances on loopback
// addresses.
func TestReconfigure(t *testing.T) {
	a, b := startTestRouter(t, "127.0.0.2"), startTestRouter(t, "127.0.0.3")
	cfg := config.BGP{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), HoldTime: config.Duration(3 * time.Second),
		Peers: []config.BGPPeer{a.peer()}, MED: 10, Communities: []string{"65001:100"}}
	s, err := Start(cfg, netip.MustParseAddr("10.99.0.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.Announce(true)
	const vip = "10.99.0.1/32"
	a.waitRoute(t, vip, learnt{ok: true, med: 10, communities: []uint32{65001<<16 | 100}}, "announced")

	// A second router, a new MED and community: both routers have the new path.
	next := cfg
	next.Peers = []config.BGPPeer{a.peer(), b.peer()}
	next.MED, next.Communities = 20, []string{"65001:200"}
	if err := s.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	want := learnt{ok: true, med: 20, communities: []uint32{65001<<16 | 200}}
	a.waitRoute(t, vip, want, "new attributes")
	b.waitRoute(t, vip, want, "new peer")

	// The first router removed: its session closes and it forgets the route.
	last := next
	last.Peers = []config.BGPPeer{b.peer()}
	if err := s.Reconfigure(last); err != nil {
		t.Fatal(err)
	}
	a.waitRoute(t, vip, learnt{}, "peer removed")
	if st := s.Status(); len(st.Sessions) != 1 || st.Sessions[0].Peer != b.addr || !st.Announced {
		t.Errorf("status after the removal: %+v", st)
	}

	// The instance's own identity needs a restart.
	other := last
	other.ASN = 65002
	if err := s.Reconfigure(other); !errors.Is(err, ErrRestartNeeded) {
		t.Errorf("a new ASN: %v, want ErrRestartNeeded", err)
	}
	b.waitRoute(t, vip, want, "refused change")
}
