// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// TestSessionFailureShown: a session that does not come up says why, in
// Status (lb status) and /metrics. With a wrong peer ASN or a TCP MD5
// password only the router has, the session sat in idle or active with no
// reason anywhere, and the password case logged nothing at all.
func TestSessionFailureShown(t *testing.T) {
	wrongASN := startTestRouter(t, "127.0.0.2")
	password := startTestRouter(t, "127.0.0.3")
	// A router that expects another AS of the node: it answers the OPEN
	// with a NOTIFICATION.
	refuses := startTestRouterWith(t, "127.0.0.4", func(p *api.Peer) { p.Conf.PeerAsn = 65002 })
	bad := wrongASN.peer()
	bad.ASN = 65009 // the router is AS 65000
	// A password the router does not have: it drops the signed segments.
	signed := password.peer()
	signed.Password = "s3cret"
	cfg := config.BGP{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), HoldTime: config.Duration(3 * time.Second),
		Peers: []config.BGPPeer{bad, signed, refuses.peer()}}
	s, err := Start(cfg, netip.MustParseAddr("10.99.0.1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	s.Announce(true)

	want := map[netip.Addr][]string{
		wrongASN.addr: {"open/bad peer as", "65009", "65000"},
		password.addr: {"cannot connect", "TCP MD5"},
		refuses.addr:  {"the router closed the session after the OPEN"},
	}
	// Each reason as it is shown: a retry may fail otherwise (a GoBGP
	// router in its idle hold time closes the connection at once).
	shown := map[netip.Addr]bool{}
	for deadline := time.Now().Add(10 * time.Second); len(shown) < len(want); time.Sleep(20 * time.Millisecond) {
		st := s.Status()
		for _, ss := range st.Sessions {
			all := !ss.Established
			for _, w := range want[ss.Peer] {
				all = all && strings.Contains(ss.Failure, w)
			}
			if all {
				shown[ss.Peer] = true
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions do not say why they fail (shown so far %v): %+v", shown, st.Sessions)
		}
	}
	set := metrics.NewSet()
	s.RegisterMetrics(set)
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, p := range []netip.Addr{wrongASN.addr, password.addr, refuses.addr} {
		if !strings.Contains(b.String(), `xmirror_lb_bgp_session_failure{peer="`+p.String()+`",reason="`) {
			t.Errorf("no xmirror_lb_bgp_session_failure for %s:\n%s", p, b.String())
		}
	}

	// The right ASN: the session comes up and the failure goes.
	if err := s.Reconfigure(config.BGP{ASN: cfg.ASN, RouterID: cfg.RouterID, HoldTime: cfg.HoldTime,
		Peers: []config.BGPPeer{wrongASN.peer()}}); err != nil {
		t.Fatal(err)
	}
	wrongASN.waitRoute(t, "10.99.0.1/32", learnt{ok: true}, "right asn")
	if st := s.Status(); len(st.Sessions) != 1 || !st.Sessions[0].Established || st.Sessions[0].Failure != "" {
		t.Errorf("after the fix: %+v", st.Sessions)
	}
}

// TestConnectFailureHints: a connect that times out, and one refused with
// "no route to host" by a router one hop short (the node sends to eBGP
// routers with TTL 1, so a ping to the address works), name their likely
// causes.
func TestConnectFailureHints(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, "TCP MD5 password"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, "more than one hop away"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
	} {
		got := sessionFailure("failed to connect", gobgplog.Fields{"Key": "10.0.0.254", "Error": c.err})
		if !strings.HasPrefix(got, "cannot connect: ") || !strings.Contains(got, c.want) {
			t.Errorf("%v: %q, want it to say %q", c.err, got, c.want)
		}
	}
}

// TestSessionOffListener: a session whose local address (the next hop the
// router installs) is on an interface the program does not run on is
// reported: the router's traffic for the VIP arrives there and is
// dropped. A node peering over a second interface announced the VIP, lb
// status showed the session established, and all of that router's
// traffic was lost (IpInAddrErrors).
func TestSessionOffListener(t *testing.T) {
	for _, c := range []struct {
		router   string
		listener []string
		want     string
	}{
		{"127.0.0.5", []string{"xm-nothere0"}, "the session runs over lo (local address 127.0.0.1"},
		{"127.0.0.6", []string{"lo"}, ""},
	} {
		r := startTestRouter(t, c.router)
		cfg := config.BGP{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), HoldTime: config.Duration(3 * time.Second),
			Peers: []config.BGPPeer{r.peer()}}
		s, err := Start(cfg, netip.MustParseAddr("10.99.0.1"), c.listener)
		if err != nil {
			t.Fatal(err)
		}
		s.Announce(true)
		r.waitRoute(t, "10.99.0.1/32", learnt{ok: true}, "announced")
		var st Status
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st = s.Status()
			if st.Sessions[0].Established || time.Now().After(deadline) {
				break
			}
		}
		if got := st.Sessions[0].Failure; !st.Sessions[0].Established || (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("listener %v: session %+v, want the failure to say %q", c.listener, st.Sessions[0], c.want)
		}
		s.Stop()
	}
}

// TestSessionFailureLoggedOncePerReason: retries that fail in turn for two
// reasons (a GoBGP router answering the OPEN with a NOTIFICATION, then
// closing the next connection at once during its idle hold time) log each
// reason once until the session is established, not a warning per retry.
func TestSessionFailureLoggedOncePerReason(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	s := &Speaker{sessions: map[string]api.PeerState_SessionState{"10.0.0.254": api.PeerState_ACTIVE},
		failures: map[string]string{}, logged: map[string]map[string]bool{}}
	refused := sentNotification + "open/bad peer as: as number mismatch expected 65009, received 65000"
	closed := "the connection to the router was closed or reset (read failed)"
	for range 3 {
		s.sessionFailed("10.0.0.254", refused)
		s.sessionFailed("10.0.0.254", closed)
	}
	if n := strings.Count(logs.String(), "bgp session with a router fails"); n != 2 {
		t.Errorf("%d warnings for 6 failures of 2 reasons, want 2:\n%s", n, logs.String())
	}
	if got := s.failures["10.0.0.254"]; got != closed {
		t.Errorf("failure %q, want the last one %q", got, closed)
	}
}

// TestSessionFailureLabelParses: a router's shutdown text with control
// characters becomes a label value /metrics can carry.
func TestSessionFailureLabelParses(t *testing.T) {
	peer := netip.MustParseAddr("10.0.0.254")
	s := &Speaker{vip: netip.MustParseAddr("10.99.0.1"), cfg: config.BGP{Peers: []config.BGPPeer{{Address: peer, ASN: 65000}}},
		sessions: map[string]api.PeerState_SessionState{peer.String(): api.PeerState_ACTIVE},
		failures: map[string]string{}, logged: map[string]map[string]bool{}}
	s.sessionFailed(peer.String(), routerSent+"cease/administrative shutdown: maintenance\tuntil 10:00\x00")
	set := metrics.NewSet()
	s.RegisterMetrics(set)
	var b bytes.Buffer
	set.WritePrometheus(&b)
	samples, err := telemetry.ParseText(&b)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range samples {
		if x.Name == "xmirror_lb_bgp_session_failure" {
			if r := x.Label("reason"); !strings.HasSuffix(r, "maintenance until 10:00 ") {
				t.Errorf("reason %q", r)
			}
			return
		}
	}
	t.Errorf("no xmirror_lb_bgp_session_failure in\n%s", b.String())
}
