// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// The scale-out lab: a generator sends to the VIP through a router (BIRD 2,
// ECMP over the BGP routes of three LB nodes) on one bridge; the nodes
// forward to two collectors.
const (
	soVIP     = "10.99.0.1"
	soRouter  = "10.0.0.254"
	soHold    = 3 * time.Second
	soSockets = 64 // generator source ports: ECMP hashes them over the nodes

	// The stream while a node dies: soRoundFlows flows in both directions
	// every soRoundEvery (10,000 datagrams/s); loss must end within
	// soLossMargin of the router dropping the node.
	soRoundFlows = 100
	soRoundEvery = 20 * time.Millisecond
	soLossMargin = time.Second
	soInFlight   = 250 * time.Millisecond
)

var soNodes = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}

const soLBConfig = `load_balancer:
  listener: {name: scale-out, vip: 10.99.0.1, port: 4789, interfaces: [eth0]}
  algorithm: maglev
  affinity: inner-symmetric
  backends:
    - {name: target-01, address: 10.0.0.11, port: 4789, weight: %d}
    - {name: target-02, address: 10.0.0.12, port: 4789, weight: %d}
  bgp:
    asn: 65001
    router_id: %s
    hold_time: 3s
    drain: 1s
    communities: ["65001:100"]
    peers: [{address: 10.0.0.254, asn: 65000}]
metrics: {listen: 127.0.0.1:9190}
`

// birdConfig is the router used in the test (and shown in docs/lb.md): one
// eBGP session per LB node, and the kernel protocol merging equal BGP routes
// into one multipath (ECMP) route.
func birdConfig(nodes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `router id %s;
protocol device { scan time 1; }
protocol kernel {
  ipv4 { export all; };
  merge paths on;
}
`, soRouter)
	for i, n := range nodes {
		fmt.Fprintf(&b, `protocol bgp lb%d {
  local %s as 65000;
  neighbor %s as 65001;
  hold time %d;
  keepalive time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export none; };
}
`, i+1, soRouter, n, int(soHold/time.Second))
	}
	return b.String()
}

// soLab is the running scale-out lab.
type soLab struct {
	t     *testing.T
	lab   *netlab.Lab
	bin   string
	dir   string
	pins  []string
	procs []*netlab.Part
	rs    []*receiver
	socks []*net.UDPConn
}

func newSOLab(t *testing.T) *soLab {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatalf("BIRD 2 is not installed (make deps installs bird2): %v", err)
	}
	specs := []netlab.HostSpec{
		{Name: "gen", Addrs: []string{"10.0.0.230/24"}},
		{Name: "rtr", Addrs: []string{soRouter + "/24"}},
		{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
		{Name: "b2", Addrs: []string{"10.0.0.12/24"}},
	}
	for i, n := range soNodes {
		specs = append(specs, netlab.HostSpec{Name: fmt.Sprintf("lb%d", i+1), Addrs: []string{n + "/24"}, PeerXDP: true})
	}
	l := &soLab{t: t, lab: labtest.ForTest(t, specs...), bin: labtest.XmirrorBinary(t), dir: t.TempDir()}
	rtr := l.lab.Host("rtr")
	// A one-armed router would send the generator ICMP redirects to one
	// node (which it would follow, bypassing ECMP): no redirects.
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"} {
		if _, err := rtr.Run("sysctl", "-w", kv); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(soNodes)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rtr.Start("bird", "-f", "-c", conf, "-s", filepath.Join(l.dir, "bird.ctl"), "-P", filepath.Join(l.dir, "bird.pid")); err != nil {
		t.Fatal(err)
	}
	gen := l.lab.Host("gen")
	for _, kv := range []string{"net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.eth0.accept_redirects=0"} {
		if _, err := gen.Run("sysctl", "-w", kv); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gen.Run("ip", "route", "add", soVIP+"/32", "via", soRouter); err != nil {
		t.Fatal(err)
	}
	l.rs = []*receiver{listenVXLAN(t, l.lab.Host("b1")), listenVXLAN(t, l.lab.Host("b2"))}
	if err := gen.Do(func() error {
		for range soSockets {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.0.0.230")})
			if err != nil {
				return err
			}
			l.socks = append(l.socks, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range l.socks {
			c.Close()
		}
	})
	l.pins = make([]string, len(soNodes))
	l.procs = make([]*netlab.Part, len(soNodes))
	for i := range soNodes {
		l.pins[i] = testPinPath(t)
		l.start(i)
	}
	return l
}

// writeConfig writes LB node i's configuration with these weights.
func (l *soLab) writeConfig(i, w1, w2 int) string {
	l.t.Helper()
	cfg := filepath.Join(l.dir, fmt.Sprintf("lb%d.yaml", i+1))
	if err := os.WriteFile(cfg, fmt.Appendf(nil, soLBConfig, w1, w2, soNodes[i]), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return cfg
}

// editConfig replaces old with new in LB node i's configuration file.
func (l *soLab) editConfig(i int, old, new string) {
	l.t.Helper()
	cfg := filepath.Join(l.dir, fmt.Sprintf("lb%d.yaml", i+1))
	b, err := os.ReadFile(cfg)
	if err != nil || !strings.Contains(string(b), old) {
		l.t.Fatalf("%s: %v, or no %q in it", cfg, err, old)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// waitRoute waits until the router's BGP route to the VIP shows every one
// of attrs (as `birdc show route all` prints them).
func (l *soLab) waitRoute(d time.Duration, attrs ...string) {
	l.t.Helper()
	var out string
	for t0 := time.Now(); time.Since(t0) < d; time.Sleep(50 * time.Millisecond) {
		out, _ = l.lab.Host("rtr").Run("birdc", "-s", filepath.Join(l.dir, "bird.ctl"), "show", "route", "all", soVIP+"/32")
		all := true
		for _, a := range attrs {
			all = all && strings.Contains(out, a)
		}
		if all {
			return
		}
	}
	l.t.Fatalf("the router's route does not show %q after %s:\n%s", attrs, d, out)
}

// start runs LB node i (again) and waits until it is ready.
func (l *soLab) start(i int) {
	l.t.Helper()
	cfg := l.writeConfig(i, 2, 1)
	l.procs[i] = startLB(l.t, l.lab.Host(fmt.Sprintf("lb%d", i+1)), l.bin, cfg, l.pins[i], "--detach-on-exit")
}

// nextHops are the next hops of the router's kernel route to the VIP.
func (l *soLab) nextHops() []string {
	out, _ := l.lab.Host("rtr").Run("ip", "-4", "route", "show", soVIP+"/32")
	var hops []string
	for _, f := range strings.Split(out, "\n") {
		fs := strings.Fields(f)
		for i := 0; i+1 < len(fs); i++ {
			if fs[i] == "via" {
				hops = append(hops, fs[i+1])
			}
		}
	}
	return hops
}

// waitHops waits until the router's route has n next hops and says how long it took.
func (l *soLab) waitHops(n int, d time.Duration) time.Duration {
	l.t.Helper()
	t0 := time.Now()
	for time.Since(t0) < d {
		if len(l.nextHops()) == n {
			return time.Since(t0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _ := l.lab.Host("rtr").Run("birdc", "-s", filepath.Join(l.dir, "bird.ctl"), "show", "protocols")
	l.t.Fatalf("the router has next hops %v, want %d after %s\n%s", l.nextHops(), n, d, out)
	return 0
}

// send sends datagram seq of every flow in both directions, each direction
// of a flow from its own source port, so ECMP may pick different nodes for
// the two directions of one flow.
func (l *soLab) send(flows int, seq uint32) {
	l.t.Helper()
	vip := &net.UDPAddr{IP: net.ParseIP(soVIP), Port: 4789}
	for f := range uint32(flows) {
		for dir := range uint8(2) {
			c := l.socks[(int(f)*2+int(dir))%len(l.socks)]
			if _, err := c.WriteToUDP(vxlanPayload(f, dir, seq), vip); err != nil {
				l.t.Fatal(err)
			}
		}
		if f%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func (l *soLab) reset() {
	for _, r := range l.rs {
		r.reset()
	}
}

// placement is, per flow, the collector (0 or 1) that got it; it fails the
// test when a flow's datagrams reached both.
func (l *soLab) placement(flows int) map[uint32]int {
	l.t.Helper()
	out := map[uint32]int{}
	for f := range uint32(flows) {
		on := -1
		for i, r := range l.rs {
			for dir := range uint8(2) {
				if !r.has(f, dir) {
					continue
				}
				if on >= 0 && on != i {
					l.t.Fatalf("flow %d reached both collectors", f)
				}
				on = i
			}
		}
		if on >= 0 {
			out[f] = on
		}
	}
	return out
}

// TestScaleOutBGP: three LB nodes announce the VIP to a real router (BIRD 2)
// that spreads the traffic over them by ECMP. Every flow (both directions,
// whichever node each reached) lands on exactly one collector, the one the
// Maglev table of the configuration names; a node killed with SIGKILL
// leaves the router's route within the hold time and no flow changes
// collector; a node stopped with SIGTERM withdraws before it detaches (no
// datagram lost); restarted nodes join again.
func TestScaleOutBGP(t *testing.T) {
	l := newSOLab(t)
	l.waitHops(3, 15*time.Second)
	if hops := l.nextHops(); strings.Join(hops, ",") != strings.Join(soNodes, ",") {
		t.Errorf("router next hops %v, want %v", hops, soNodes)
	}

	// 2,000 flows, both directions.
	const flows = 2000
	l.send(flows, 0)
	if got := waitCount(l.rs, 2*flows, 5*time.Second); got != 2*flows {
		t.Fatalf("received %d of %d datagrams", got, 2*flows)
	}
	first := l.placement(flows)
	predict := maglevPrediction(t)
	onB1 := 0
	for f, c := range first {
		if want := predict(f); c != want {
			t.Fatalf("flow %d reached collector %d, the configuration's Maglev table says %d", f, c, want)
		}
		if c == 0 {
			onB1++
		}
	}
	// weights 2:1; 2,000 flows sample the table with a spread of about 1%
	if share := float64(onB1) / flows; share < 0.63 || share > 0.70 {
		t.Errorf("collector 1 got %.3f of the flows, want about 2/3", share)
	}
	t.Logf("collector shares %.3f / %.3f (weights 2:1)", float64(onB1)/flows, 1-float64(onB1)/flows)
	for i := range soNodes {
		if tx := nodeForwarded(t, l.lab.Host(fmt.Sprintf("lb%d", i+1))); tx == 0 {
			t.Errorf("ECMP sent node %d nothing", i+1)
		}
	}
	status, err := l.lab.Host("lb1").Run(l.bin, "lb", "status", "--config", filepath.Join(l.dir, "lb1.yaml"),
		"--pin-path", l.pins[0], "--interval", "10ms")
	if err != nil || !strings.Contains(status, "10.99.0.1/32 announced") || !strings.Contains(status, "established") {
		t.Errorf("lb status does not show the session and the announcement: %v\n%s", err, status)
	}
	// A node started with --metrics-listen, not its file's metrics.listen:
	// status is told the same (it could only ask the file's address).
	moved := filepath.Join(l.dir, "lb1-moved.yaml")
	b, _ := os.ReadFile(filepath.Join(l.dir, "lb1.yaml"))
	if err := os.WriteFile(moved, []byte(strings.Replace(string(b), "127.0.0.1:9190", "127.0.0.1:1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	status, err = l.lab.Host("lb1").Run(l.bin, "lb", "status", "--config", moved, "--metrics-listen", "127.0.0.1:9190",
		"--pin-path", l.pins[0], "--interval", "10ms")
	if err != nil || !strings.Contains(status, "10.99.0.1/32 announced") {
		t.Errorf("lb status --metrics-listen does not read the running node: %v\n%s", err, status)
	}

	// Node 3 dies under a steady stream: its link goes down (no FIN or RST
	// reaches the router) and the process gets SIGKILL. What ECMP sends
	// there is lost until the router's hold timer drops the node; then
	// nothing is lost, and no flow changes collector.
	lb3 := l.lab.Host("lb3")
	l.killUnderLoad(first, func() {
		if _, err := lb3.Run("ip", "link", "set", "eth0", "down"); err != nil {
			t.Fatal(err)
		}
		if err := l.procs[2].Cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
	})

	// SIGTERM node 2 while traffic flows: withdrawn, drained, then detached,
	// and not a datagram lost.
	l.reset()
	stop := make(chan struct{})
	go func() {
		time.Sleep(300 * time.Millisecond)
		l.procs[1].Signal(syscall.SIGTERM)
		close(stop)
	}()
	sent := 0
	for seq := uint32(2); ; seq++ {
		l.send(200, seq)
		sent += 400
		select {
		case <-stop:
		default:
			continue
		}
		break
	}
	<-l.procs[1].Done()
	for seq := uint32(100); seq < 105; seq++ { // after it left
		l.send(200, seq)
		sent += 400
	}
	if got := waitCount(l.rs, sent, 5*time.Second); got != sent {
		t.Fatalf("lost %d of %d datagrams while a node stopped with SIGTERM\n%s\n%s", sent-got, sent, l.procs[1].Output(), l.diagnose())
	}
	out := l.procs[1].Output()
	w, d := strings.Index(out, "withdrew the vip"), strings.Index(out, "detached and removed pins")
	if w < 0 || d < 0 || w > d {
		t.Errorf("SIGTERM did not withdraw before detaching:\n%s", out)
	}
	if hops := l.nextHops(); len(hops) != 1 || hops[0] != soNodes[0] {
		t.Errorf("after SIGTERM the router has next hops %v, want only %s", hops, soNodes[0])
	}

	// SIGHUP changes the announcement's community and MED: the router
	// learns the new ones without the session restarting. A new VIP is
	// refused: logged, counted, and the running node keeps announcing.
	l.editConfig(0, `communities: ["65001:100"]`, `communities: ["65001:200"]`+"\n    med: 7")
	l.procs[0].Signal(syscall.SIGHUP)
	l.waitRoute(5*time.Second, "(65001,200)", "BGP.med: 7")
	l.editConfig(0, "vip: "+soVIP, "vip: 10.99.0.9")
	l.procs[0].Signal(syscall.SIGHUP)
	refused := "load_balancer.listener.vip changed (10.99.0.1 -> 10.99.0.9): only a restart applies it"
	for t0 := time.Now(); !strings.Contains(l.procs[0].Output(), refused); time.Sleep(50 * time.Millisecond) {
		if time.Since(t0) > 5*time.Second {
			t.Fatalf("a new vip was not refused on SIGHUP:\n%s", l.procs[0].Output())
		}
	}
	if hops := l.nextHops(); len(hops) != 1 {
		t.Errorf("after a refused reload the router has next hops %v, want %s", hops, soNodes[0])
	}

	// A node with no backend to send to (every weight 0, by SIGHUP)
	// withdraws; given weights again, it announces again.
	l.writeConfig(0, 0, 0)
	l.procs[0].Signal(syscall.SIGHUP)
	l.waitHops(0, 5*time.Second)
	l.writeConfig(0, 2, 1)
	l.procs[0].Signal(syscall.SIGHUP)
	l.waitHops(1, 5*time.Second)

	// Both come back and the router has three next hops again.
	if _, err := lb3.Run("ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	l.start(1)
	l.start(2)
	l.waitHops(3, 15*time.Second)
}

// killUnderLoad streams rounds of soRoundFlows flows (both directions, a
// sequence number per round) every soRoundEvery, runs kill half a second in,
// and goes on until the hold time and soLossMargin have passed since. It
// fails the test when a datagram sent after the router dropped the node
// plus soLossMargin, or well before the kill, was lost, when the router took
// longer than the hold time (and a second) to drop the node, or when a flow
// reached another collector than first says. It logs what was lost and over
// how long.
func (l *soLab) killUnderLoad(first map[uint32]int, kill func()) {
	t := l.t
	t.Helper()
	l.reset()
	sentAt := map[uint32]time.Time{}
	var killed, dropped time.Time
	start := time.Now()
	seq := uint32(1000)
	for ; ; seq++ {
		now := time.Now()
		if killed.IsZero() && now.Sub(start) >= 500*time.Millisecond {
			kill()
			killed = time.Now()
		}
		if !killed.IsZero() && now.Sub(killed) >= soHold+soLossMargin {
			break
		}
		if !killed.IsZero() && dropped.IsZero() && seq%5 == 0 && len(l.nextHops()) == len(soNodes)-1 {
			dropped = time.Now()
		}
		sentAt[seq] = now
		l.send(soRoundFlows, seq)
		time.Sleep(time.Until(now.Add(soRoundEvery)))
	}
	if dropped.IsZero() {
		l.waitHops(len(soNodes)-1, time.Second)
		dropped = time.Now()
	}
	time.Sleep(300 * time.Millisecond) // the last rounds in flight

	var lost, sent int
	var firstLost, lastLost time.Time
	for s, at := range sentAt {
		got := l.rs[0].seqCount(s) + l.rs[1].seqCount(s)
		sent += 2 * soRoundFlows
		if got == 2*soRoundFlows {
			continue
		}
		lost += 2*soRoundFlows - got
		if firstLost.IsZero() || at.Before(firstLost) {
			firstLost = at
		}
		if at.After(lastLost) {
			lastLost = at
		}
		// (the rounds just before the kill may still be on their way: on
		// a loaded machine, tens of milliseconds)
		if at.Before(killed.Add(-soInFlight)) {
			t.Errorf("round %d, sent %s before the kill, lost %d datagrams", s, killed.Sub(at).Round(time.Millisecond), 2*soRoundFlows-got)
		}
		if at.After(dropped.Add(soLossMargin)) {
			t.Errorf("round %d, sent %s after the router dropped the dead node, lost %d datagrams",
				s, at.Sub(dropped).Round(time.Millisecond), 2*soRoundFlows-got)
		}
	}
	if took := dropped.Sub(killed); took > soHold+time.Second {
		t.Errorf("the router dropped the dead node after %s, hold time %s", took, soHold)
	}
	window := time.Duration(0)
	if lost > 0 {
		window = lastLost.Sub(firstLost) + soRoundEvery
	}
	t.Logf("node killed under %d datagrams/s: the router dropped it after %s (hold time %s); lost %d of %d datagrams (%.1f%%) "+
		"over %s, from %s to %s after the kill",
		int(float64(2*soRoundFlows)/soRoundEvery.Seconds()), dropped.Sub(killed).Round(10*time.Millisecond), soHold, lost, sent,
		100*float64(lost)/float64(sent), window.Round(10*time.Millisecond),
		firstLost.Sub(killed).Round(10*time.Millisecond), lastLost.Sub(killed).Round(10*time.Millisecond))
	for f, c := range l.placement(soRoundFlows) {
		if c != first[f] {
			t.Fatalf("flow %d moved from collector %d to %d when a node died", f, first[f], c)
		}
	}
}

// maglevPrediction is, per test flow, the collector the configuration's
// Maglev table gives it: a function of the backends and weights alone.
func maglevPrediction(t *testing.T) func(flow uint32) int {
	t.Helper()
	bs := []tableBackend{
		{ID: 0, Key: backendKey(netip.MustParseAddr("10.0.0.11"), 4789), Weight: 2},
		{ID: 1, Key: backendKey(netip.MustParseAddr("10.0.0.12"), 4789), Weight: 1},
	}
	tab := maglevTable(bs, DefaultMaglevSize)
	outer := vxlanFrame(t, frameSpec{src: mirror, dst: netip.MustParseAddr(soVIP), sport: 1, vni: 1})[:14+20+8]
	return func(flow uint32) int {
		frame := append(append([]byte(nil), outer...), vxlanPayload(flow, 0, 0)...)
		h, ok := FlowHash(frame, "inner-symmetric")
		if !ok {
			t.Fatalf("flow %d does not hash", flow)
		}
		return int(tab[maglevIndex(h, len(tab))])
	}
}

// nodeForwarded is what an LB node sent with XDP_TX, from its /metrics.
func nodeForwarded(t *testing.T, h *netlab.Host) float64 {
	s, err := telemetry.ParseText(strings.NewReader(httpGet(t, h, "/metrics")))
	if err != nil {
		t.Fatal(err)
	}
	return telemetry.Sum(s, "xmirror_lb_packets_total", `reason="tx"`)
}

// diagnose is what the router and the live nodes say, for failure messages.
func (l *soLab) diagnose() string {
	var b strings.Builder
	rtr := l.lab.Host("rtr")
	for _, args := range [][]string{{"ip", "route"}, {"ip", "neigh"}, {"ip", "-s", "link", "show", "eth0"}} {
		out, _ := rtr.Run(args[0], args[1:]...)
		fmt.Fprintf(&b, "rtr$ %s\n%s", strings.Join(args, " "), out)
	}
	for _, args := range [][]string{{"ip", "neigh"}, {"ip", "-s", "link", "show", "eth0"}, {"ip", "route"}} {
		out, _ := l.lab.Host("gen").Run(args[0], args[1:]...)
		fmt.Fprintf(&b, "gen$ %s\n%s", strings.Join(args, " "), out)
	}
	l.lab.SwitchDo(func() error {
		links, _ := netlink.LinkList()
		for _, ln := range links {
			a := ln.Attrs()
			if a.Statistics != nil {
				fmt.Fprintf(&b, "switch %s %s rx %d tx %d txdrop %d\n", a.Name, a.OperState, a.Statistics.RxPackets, a.Statistics.TxPackets, a.Statistics.TxDropped)
			}
		}
		return nil
	})
	for i := range soNodes {
		h := l.lab.Host(fmt.Sprintf("lb%d", i+1))
		code, body, err := h.Get(context.Background(), lbMetrics, "/metrics")
		if err != nil || code != 200 {
			continue
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "xmirror_lb_packets_total") {
				fmt.Fprintf(&b, "lb%d %s\n", i+1, line)
			}
		}
	}
	return b.String()
}
