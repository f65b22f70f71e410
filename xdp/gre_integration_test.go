package xdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// listenGRE counts the GRE packets a backend's kernel delivers to a raw
// socket (IPv4 header checksum verified by that kernel, the GRE checksum
// here), by flow and direction.
func listenGRE(t *testing.T, h *netlab.Host) *receiver {
	t.Helper()
	r := &receiver{got: make(map[uint64]int)}
	if err := h.Do(func() (err error) {
		r.conn, err = net.ListenPacket("ip4:gre", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	// room for a whole burst on a loaded host (as for VXLAN and GENEVE)
	r.conn.(*net.IPConn).SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := r.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			g := buf[:n]
			r.mu.Lock()
			r.n++
			switch {
			case !from.(*net.IPAddr).IP.Equal(net.ParseIP("10.0.0.230")):
				r.bad = append(r.bad, "outer source "+from.String())
			case n < 4+9 || binary.BigEndian.Uint16(g)&greC != 0 && checksum(g) != 0:
				r.bad = append(r.bad, fmt.Sprintf("short or bad GRE checksum: %x", g[:min(n, 16)]))
			default:
				tail := g[n-9:]
				r.got[uint64(binary.BigEndian.Uint32(tail))<<8|uint64(tail[4])]++
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// erspanPacket is the GRE packet a switch sends for inner flow (flow, dir):
// ERSPAN II (or III with its sub-header for dir 1), GRE sequence number, and
// a GRE checksum on every other flow.
func erspanPacket(flow uint32, dir uint8, seq uint32) []byte {
	g := greSpec{erspan: 2 + int(dir), sub: dir == 1, session: 5, csum: flow%2 == 0}
	flags := uint16(greS)
	if g.csum {
		flags |= greC
	}
	ptype := uint16(greERSPAN)
	if g.erspan == 3 {
		ptype = greERSPAN3
	}
	p := binary.BigEndian.AppendUint16(nil, flags)
	p = binary.BigEndian.AppendUint16(p, ptype)
	if g.csum {
		p = append(p, 0, 0, 0, 0)
	}
	p = binary.BigEndian.AppendUint32(p, seq)
	p = append(append(p, erspanHeader(g)...), vxlanPayload(flow, dir, seq)[8:]...)
	if g.csum {
		binary.BigEndian.PutUint16(p[4:], checksum(p))
	}
	return p
}

const greTestConfig = `load_balancer:
  listener: {name: switches, protocol: gre, vip: 10.0.0.1, interfaces: [eth0]}
  algorithm: maglev
  affinity: inner-symmetric
  backends:
    - {name: target-01, address: 10.0.0.11}
    - {name: target-02, address: 10.0.0.12}
metrics: {listen: 127.0.0.1:9190}
`

// TestGREListener runs the real binary with a GRE listener in namespaces:
// ERSPAN II and III of both directions of 500 inner flows, sent through a
// raw socket, reach one backend's kernel per flow with their GRE checksums
// valid; a GRE header longer than its packet is dropped and counted.
func TestGREListener(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "src", Addrs: []string{"10.0.0.230/24"}},
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.0.0.1/24"}, GRO: true, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.0.0.11/24"}},
		netlab.HostSpec{Name: "b2", Addrs: []string{"10.0.0.12/24"}},
	)
	bin := labtest.XmirrorBinary(t)
	pin := fmt.Sprintf("/sys/fs/bpf/xmirror-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	t.Cleanup(func() { Detach(pin) })
	lbh := lab.Host("lb")
	rs := []*receiver{listenGRE(t, lab.Host("b1")), listenGRE(t, lab.Host("b2"))}
	var snd net.PacketConn
	if err := lab.Host("src").Do(func() (err error) {
		snd, err = net.ListenPacket("ip4:gre", "10.0.0.230")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte(greTestConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startLB(t, lbh, bin, cfg, pin, "--detach-on-exit")
	defer func() { p.Signal(syscall.SIGTERM); <-p.Done() }()
	vipIP := &net.IPAddr{IP: net.ParseIP("10.0.0.1")}

	const flows = 500
	for f := range uint32(flows) {
		for dir := range uint8(2) {
			if _, err := snd.WriteTo(erspanPacket(f, dir, f), vipIP); err != nil {
				t.Fatal(err)
			}
		}
		if f%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if got := waitCount(rs, 2*flows, 5*time.Second); got != 2*flows {
		st, _ := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms")
		t.Fatalf("received %d of %d packets\n%s\n%s", got, 2*flows, st, p.Output())
	}
	onB1 := 0
	for f := range uint32(flows) {
		f0, f1 := rs[0].has(f, 0), rs[0].has(f, 1)
		if f0 != f1 || f0 == rs[1].has(f, 0) || f1 == rs[1].has(f, 1) {
			t.Fatalf("flow %d split: b1 %v/%v b2 %v/%v", f, f0, f1, rs[1].has(f, 0), rs[1].has(f, 1))
		}
		if f0 {
			onB1++
		}
	}
	if onB1 < flows*40/100 || onB1 > flows*60/100 {
		t.Errorf("b1 got %d of %d flows, want about half", onB1, flows)
	}
	for _, r := range rs {
		if len(r.bad) > 0 {
			t.Fatalf("bad packets: %v", r.bad[:min(3, len(r.bad))])
		}
	}

	// checksum, key and sequence announced, 4 bytes there: dropped, counted
	for _, r := range rs {
		r.reset()
	}
	if _, err := snd.WriteTo([]byte{0xb0, 0, 0x88, 0xbe}, vipIP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := waitCount(rs, 1, 0); n != 0 {
		t.Errorf("a GRE header longer than its packet was delivered (%d)", n)
	}
	if m := httpGet(t, lbh, "/metrics"); !strings.Contains(m, `xmirror_lb_packets_total{reason="drop_malformed"} 1`) {
		t.Errorf("/metrics does not count the malformed GRE packet:\n%s", grepLines(m, "drop_malformed"))
	}
	if out, err := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms"); err != nil || !strings.Contains(out, "gre 10.0.0.1  ") {
		t.Errorf("status: %v\n%s", err, out)
	}
}
