// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestMain(m *testing.M) { labtest.Main(m) }

// listenVXLAN counts the VXLAN datagrams a backend's kernel delivers on UDP
// 4789 (checksums verified: offload is off), by flow and direction.
func listenVXLAN(t *testing.T, h *netlab.Host) *receiver {
	return listen(t, h, "udp4", ":4789", func(pkt []byte) string {
		if len(pkt) >= 8+9 && pkt[0] == 0x08 {
			return ""
		}
		return fmt.Sprintf("not VXLAN: %x", pkt[:min(len(pkt), 16)])
	})
}

// vxlanPayload is the UDP payload the mirror source sends for inner flow i in
// direction dir (1 = reverse): VXLAN + an inner TCP frame whose payload ends
// with (flow, dir, seq) so receivers can tell flows apart.
func vxlanPayload(flow uint32, dir uint8, seq uint32) []byte {
	a := netip.AddrFrom4([4]byte{172, 16, byte(flow >> 8), byte(flow)})
	b := netip.AddrFrom4([4]byte{172, 17, byte(flow >> 16), byte(flow >> 3)})
	pa, pb := uint16(1024+flow%50000), uint16(80+flow%7)
	if dir == 1 {
		a, b, pa, pb = b, a, pb, pa
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: a.AsSlice(), DstIP: b.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(pa), DstPort: layers.TCPPort(pb), ACK: true, Window: 100}
	tcp.SetNetworkLayerForChecksum(ip)
	tag := make([]byte, 9)
	binary.BigEndian.PutUint32(tag, flow)
	tag[4] = dir
	binary.BigEndian.PutUint32(tag[5:], seq)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.VXLAN{ValidIDFlag: true, VNI: 1},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, tcp, gopacket.Payload(tag))
	return buf.Bytes()
}

// sender sends from the mirror source host to the VIP; each flow uses its
// own outer source port, as a directional-hash source (AWS) would.
type sender struct {
	conn *net.UDPConn
}

func newSender(t *testing.T, h *netlab.Host) *sender {
	t.Helper()
	s := &sender{}
	if err := h.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.0.0.230")})
		s.conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return s
}

var vipUDP = &net.UDPAddr{IP: net.ParseIP("10.0.0.1"), Port: 4789}

func (s *sender) send(t *testing.T, flow uint32, dir uint8, seq uint32) {
	t.Helper()
	if _, err := s.conn.WriteToUDP(vxlanPayload(flow, dir, seq), vipUDP); err != nil {
		t.Fatal(err)
	}
}

// sendPaced sends one datagram of each of flows inner flows (direction 0,
// sequence seq), pausing a millisecond every 100 so that a burst fits the
// receivers' buffers.
func (s *sender) sendPaced(t *testing.T, flows, seq uint32) {
	t.Helper()
	for f := range flows {
		s.send(t, f, 0, seq)
		if f%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// healthServer is a backend's TCP health endpoint, closable to fail checks.
func healthServer(t *testing.T, h *netlab.Host) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = tcpHealthEndpoint(":9091")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

// tcpHealthEndpoint listens on addr and closes every connection it accepts,
// until it is closed: what a TCP health check needs of a backend.
func tcpHealthEndpoint(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln, nil
}

const lbTestConfig = `load_balancer:
  listener: {name: listener-A, vip: 10.0.0.1, port: 4789, interfaces: [eth0]}
  algorithm: %s
  affinity: inner-symmetric
  backends:
    - {name: target-01, address: 10.0.0.11, port: 4789, weight: %d}
    - {name: target-02, address: 10.0.0.12, port: 4789, weight: %d}
  health_check: {enabled: true, type: tcp, port: 9091, interval: 200ms, timeout: 100ms,
                 healthy_threshold: 1, unhealthy_threshold: 2}
metrics: {listen: 127.0.0.1:9190}
`

// startLB runs `xmirror lb` in the lb namespace and waits for /healthz.
func startLB(t *testing.T, lb *netlab.Host, bin, cfg, pin string, extra ...string) *netlab.Part {
	t.Helper()
	args := append([]string{bin, "--log-level", "debug", "lb", "--config", cfg, "--pin-path", pin}, extra...)
	p, err := lb.StartPart("lb", lbMetrics, args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitHealthy(context.Background(), 15*time.Second); err != nil {
		t.Fatalf("%v: %s", err, p.Output())
	}
	return p
}

// TestIntegration runs the real binary on a namespace topology: a mirror
// source sends VXLAN of many inner flows to the VIP, the XDP program on the LB
// spreads it over two collectors. It checks symmetric placement, outer source
// and checksums (the receivers' kernels verify them: offload is off), a health
// failure, a SIGHUP weight change and a restart, the last two with no loss.
func TestIntegration(t *testing.T) {
	lab, bin, pin, rs := listenerLab(t, listenVXLAN)
	r1, r2 := rs[0], rs[1]
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "lb.yaml")
	writeCfg := func(algo string, w1, w2 int) {
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(lbTestConfig, algo, w1, w2)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("wrr", 1, 1)
	lbh := lab.Host("lb")
	h1 := healthServer(t, lab.Host("b1"))
	defer h1.Close()
	h2 := healthServer(t, lab.Host("b2"))
	p := startLB(t, lbh, bin, cfgPath, pin)
	snd := newSender(t, lab.Host("src"))

	// 1. Many flows, both directions: every datagram arrives, a flow's two
	// directions share a backend, both backends get a fair share.
	const flows = 2000
	for f := range uint32(flows) {
		snd.send(t, f, 0, 0)
		snd.send(t, f, 1, 0)
		if f%200 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	checkPlaced(t, rs, flows, 45, 55, func() string { return lbStatus(lbh, bin, pin) + "\n" + p.Output() })

	// Datagrams larger than the MTU leave the source as IP fragments: every
	// fragment of one datagram goes to the same backend, which reassembles it.
	r1.reset()
	r2.reset()
	big := append(vxlanPayload(7, 0, 9)[:8+14+20+20], make([]byte, 2400)...)
	for range 50 {
		if _, err := snd.conn.WriteToUDP(big, vipUDP); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitCount(rs, 50, 5*time.Second); got != 50 {
		st, _ := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms")
		t.Fatalf("reassembled %d of 50 fragmented datagrams\n%s", got, st)
	}
	r1.reset()
	r2.reset()

	// 2. b2's health check fails: within three intervals no new datagram
	// reaches it, and its flows go to b1.
	onB2 := []uint32{}
	for f := range uint32(flows) {
		if r2.has(f, 0) {
			onB2 = append(onB2, f)
		}
	}
	h2.Close()
	// three intervals, and the timeout of the probe that was in flight
	time.Sleep(3*200*time.Millisecond + 100*time.Millisecond)
	r1.reset()
	r2.reset()
	for _, f := range onB2 {
		snd.send(t, f, 0, 1)
	}
	waitCount(rs, len(onB2), 3*time.Second)
	if r2.count() != 0 || r1.count() != len(onB2) {
		t.Fatalf("after b2 failed: b1 got %d, b2 got %d of %d datagrams of b2's flows\n%s", r1.count(), r2.count(), len(onB2), p.Output())
	}
	if !strings.Contains(p.Output(), "backend unhealthy") {
		t.Errorf("the transition was not logged:\n%s", p.Output())
	}
	h2 = healthServer(t, lab.Host("b2"))
	defer h2.Close()
	waitLog(t, p.Proc, "backend healthy", 1)

	// 3. Zero loss while SIGHUP changes the weights and while the control
	// plane restarts; new flows follow the new weights.
	sent := 0
	stream := func(base uint32, n int, mid func()) {
		for i := range n {
			snd.send(t, base+uint32(i), 0, 2)
			sent++
			if i == n/2 && mid != nil {
				mid()
			}
			if i%100 == 0 {
				time.Sleep(500 * time.Microsecond)
			}
		}
	}
	// noLoss resets the counts, streams and fails unless every datagram
	// arrived.
	noLoss := func(what string, base uint32, n int, mid func()) {
		t.Helper()
		r1.reset()
		r2.reset()
		sent = 0
		stream(base, n, mid)
		if got := waitCount(rs, sent, 5*time.Second); got != sent {
			t.Fatalf("lost datagrams %s: %d of %d", what, got, sent)
		}
	}
	hup := func() {
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("wrr", 3, 1)
	noLoss("during SIGHUP", 100000, 4000, hup)
	waitLog(t, p.Proc, "msg=reloaded", 1) // the new weights are in before shares are counted
	noLoss("after SIGHUP", 200000, 4000, nil)
	if share := float64(r1.count()) / float64(sent); share < 0.72 || share > 0.78 {
		t.Errorf("b1 share %.3f after weights 3:1, want 0.75", share)
	}

	// Switch to maglev on the fly: still no loss, same 3:1 shares.
	writeCfg("maglev", 3, 1)
	noLoss("switching to maglev", 500000, 4000, hup)
	waitLog(t, p.Proc, "msg=reloaded", 2)
	noLoss("under maglev", 600000, 4000, nil)
	if share := float64(r1.count()) / float64(sent); share < 0.72 || share > 0.78 {
		t.Errorf("maglev: b1 share %.3f with weights 3:1, want 0.75", share)
	}
	writeCfg("wrr", 3, 1)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p.Proc, `msg=reloaded`, 3)

	// A broken file on SIGHUP is logged and the running tables stay.
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(lbTestConfig, "wrr", 500, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p.Proc, "reload failed", 1)
	writeCfg("wrr", 3, 1)
	metricsText := httpGet(t, lbh, "/metrics")
	// Verdicts and events are separate metrics: summing packets_total over
	// its reasons counts every packet once.
	if strings.Contains(metricsText, `xmirror_lb_packets_total{reason="conntrack_hit"}`) {
		t.Errorf("/metrics counts an event as a packet verdict")
	}
	for _, want := range []string{`xmirror_lb_packets_total{reason="tx"}`, `xmirror_lb_events_total{event="conntrack_miss"}`,
		`xmirror_lb_backend_packets_total{backend="target-01",address="10.0.0.11"}`,
		`xmirror_lb_backend_healthy{backend="target-02",address="10.0.0.12"} 1`, "xmirror_lb_reloads_total 3", "xmirror_lb_reload_errors_total 1"} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	r1.reset()
	r2.reset()
	sent = 0
	var p2 *netlab.Part
	stream(300000, 6000, func() {
		// The old process exits, the pinned program keeps forwarding, the
		// new one takes the link over.
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-p.Done()
	})
	p2 = startLB(t, lbh, bin, cfgPath, pin, "--detach-on-exit")
	stream(400000, 2000, nil)
	if got := waitCount(rs, sent, 5*time.Second); got != sent {
		t.Fatalf("lost datagrams across a restart: %d of %d\nold:\n%s\nnew:\n%s", got, sent, p.Output(), p2.Output())
	}
	if !strings.Contains(p2.Output(), "updated pinned xdp link") {
		t.Errorf("restart did not reuse the pinned link:\n%s", p2.Output())
	}

	// status reads the pinned maps.
	out, err := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "100ms")
	if err != nil || !strings.Contains(out, "target-01") || !strings.Contains(out, "10.0.0.1:4789") {
		t.Errorf("status: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)
	if err := p2.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p2.Done()
	if _, err := os.Stat(filepath.Join(pin, "lb_active")); !os.IsNotExist(err) {
		t.Errorf("--detach-on-exit left pins behind: %v", err)
	}
}

// lbMetrics is where the tests' load balancers serve /metrics and /healthz,
// inside their namespace.
const lbMetrics = "127.0.0.1:9190"

// httpStatus GETs path from the LB's metrics server inside its namespace.
func httpStatus(h *netlab.Host, path string) int {
	code, _, _ := h.Get(context.Background(), lbMetrics, path)
	return code
}

func httpGet(t *testing.T, h *netlab.Host, path string) string {
	t.Helper()
	code, body, err := h.Get(context.Background(), lbMetrics, path)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: status %d, %v", path, code, err)
	}
	return string(body)
}

// waitLog waits until the process has logged substr n times.
func waitLog(t *testing.T, p *netlab.Proc, substr string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); strings.Count(p.Output(), substr) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged %d times:\n%s", substr, n, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatusNamesProcess: after `xmirror lb` ended (SIGTERM, a crash), the
// pinned program forwards on and `lb status` printed the same table as
// with the process running: backends "healthy" as last checked, with no
// check running and no reload reaching the tables. It says which process
// controls the pin path, or that none does.
func TestStatusNamesProcess(t *testing.T) {
	lab, bin, pin, _ := listenerLab(t, listenVXLAN)
	lbh := lab.Host("lb")
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(listenerTestConfig("l", "vxlan", "wrr")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startLB(t, lbh, bin, cfg, pin)
	if st := lbStatus(lbh, bin, pin); !strings.Contains(st, fmt.Sprintf("process    pid %d ", p.Cmd.Process.Pid)) {
		t.Errorf("status of a running lb does not name its pid %d:\n%s", p.Cmd.Process.Pid, st)
	}
	p.Signal(syscall.SIGTERM)
	<-p.Done()
	if st := lbStatus(lbh, bin, pin); !strings.Contains(st, "process    none: no xmirror lb runs on this pin path") || !strings.Contains(st, "target-01") {
		t.Errorf("status after the lb stopped (program still pinned):\n%s", st)
	}
	if out, err := lbh.Run(bin, "lb", "detach", "--pin-path", pin); err != nil {
		t.Errorf("detach: %v\n%s", err, out)
	}
}
