// SPDX-License-Identifier: Apache-2.0

package netlab_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func TestTwoHostsTalk(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "a", Addrs: []string{"10.99.0.1/24"}},
		netlab.HostSpec{Name: "b", Addrs: []string{"10.99.0.2/24", "fd99::2/64"}, MTU: 9000, GRO: true},
	)
	a, b := lab.Host("a"), lab.Host("b")
	if a.Iface != "eth0" || a.Ifindex == 0 || len(a.MAC) != 6 {
		t.Fatalf("host a: iface %q ifindex %d mac %v", a.Iface, a.Ifindex, a.MAC)
	}
	if out, err := a.Run("ping", "-c", "1", "-W", "2", "10.99.0.2"); err != nil {
		t.Fatalf("ping across the bridge: %v\n%s", err, out)
	}
	out, err := b.Run("ip", "-o", "link", "show", "eth0")
	if err != nil || !strings.Contains(out, "mtu 9000") {
		t.Fatalf("b's eth0 should have mtu 9000: %v %s", err, out)
	}
	out, err = a.Run("ethtool", "-k", "eth0")
	if err != nil || !strings.Contains(out, "tx-checksumming: off") {
		t.Fatalf("offload should be off on a's eth0: %v %s", err, out)
	}

	// A socket opened in Do stays in b's namespace: a UDP datagram from a reaches it.
	var conn net.PacketConn
	if err := b.Do(func() (err error) {
		conn, err = net.ListenPacket("udp4", "10.99.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	if err := a.Do(func() error {
		c, err := net.Dial("udp4", "10.99.0.2:"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hi"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	n, from, err := conn.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hi" || !strings.HasPrefix(from.String(), "10.99.0.1:") {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	labtest.RequireRoot(t)
	lab, err := netlab.New("close")
	if err != nil {
		t.Fatal(err)
	}
	h, err := lab.AddHost(netlab.HostSpec{Name: "h", Addrs: []string{"10.98.0.1/24"}})
	if err != nil {
		lab.Close()
		t.Fatal(err)
	}
	p, err := h.Start("sleep", "600")
	if err != nil {
		lab.Close()
		t.Fatal(err)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("process still running after Close")
	}
	for _, name := range []string{h.NS, lab.Name + "-sw"} {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists (%v)", name, err)
		}
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStopReportsCleanExit(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "h"})
	p, err := lab.Host("h").Start("sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Output(), "ready") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v (output %q)", err, p.Output())
	}
	if !strings.Contains(p.Output(), "bye") {
		t.Fatalf("SIGTERM handler did not run: %q", p.Output())
	}
}

// A process Start began keeps running when the thread of the goroutine that
// called Start ends (the kernel sends Pdeathsig when the forking thread
// exits, and Go ends a thread whose goroutine returns locked to it, unless it
// is the main thread: hence several callers).
func TestStartSurvivesCallersThread(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "h"})
	const callers = 4
	started := make(chan *netlab.Proc, callers)
	for range callers {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			p, err := lab.Host("h").Start("sleep", "600")
			if err != nil {
				t.Error(err)
			}
			started <- p
		}()
	}
	var procs []*netlab.Proc
	for range callers {
		if p := <-started; p != nil {
			procs = append(procs, p)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for i, p := range procs {
		select {
		case <-p.Done():
			t.Errorf("process %d died with its caller's thread: %v", i, p.Wait())
		default:
		}
		p.Stop()
	}
}

func TestSweepRemovesNamespacesOfDeadOwners(t *testing.T) {
	labtest.RequireRoot(t)
	// A pid above pid_max cannot be alive.
	stale := netlab.NamePrefix + "4194305-1-stale-sw"
	ns, err := netlab.NewNamedNS(stale)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	t.Cleanup(func() { netns.DeleteNamed(stale) })
	lab, err := netlab.New("sweep")
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if _, err := os.Stat(filepath.Join("/run/netns", stale)); !os.IsNotExist(err) {
		t.Fatalf("stale namespace %s survived New (%v)", stale, err)
	}
}

func TestPeerXDPAttachesPassProgram(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.97.0.1/24"}, PeerXDP: true},
		netlab.HostSpec{Name: "other", Addrs: []string{"10.97.0.2/24"}},
	)
	attached := func(h *netlab.Host) bool {
		var on bool
		if err := lab.SwitchDo(func() error {
			l, err := netlink.LinkByName(h.Port)
			if err != nil {
				return err
			}
			on = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return on
	}
	if !attached(lab.Host("lb")) {
		t.Error("PeerXDP host: no XDP program on its bridge port")
	}
	if attached(lab.Host("other")) {
		t.Error("host without PeerXDP: XDP program on its bridge port")
	}
	// The pass program must not stop ordinary traffic.
	if out, err := lab.Host("lb").Run("ping", "-c", "1", "-W", "2", "10.97.0.2"); err != nil {
		t.Fatalf("ping through the XDP_PASS port: %v\n%s", err, out)
	}
}

// TestSwitchIsPlain: the bridge's namespace keeps bridged frames out of
// br_netfilter, and with offloads on a host's bridge port segments UDP GSO
// packets (tx-udp-segmentation off) while the host's own eth0 keeps it.
func TestSwitchIsPlain(t *testing.T) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "a", Addrs: []string{"10.99.0.1/24"}, Offload: true})
	a := lab.Host("a")
	var calls []byte
	var port []byte
	err := lab.SwitchDo(func() (err error) {
		calls, err = os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		if os.IsNotExist(err) {
			calls, err = []byte("0\n"), nil // no br_netfilter at all
		}
		if err != nil {
			return err
		}
		port, err = exec.Command("ethtool", "-k", a.Port).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(calls)) != "0" {
		t.Errorf("bridge-nf-call-iptables in the switch: %q", calls)
	}
	if !strings.Contains(string(port), "tx-udp-segmentation: off") {
		t.Errorf("bridge port %s should not pass UDP GSO packets on:\n%s", a.Port, port)
	}
	out, err := a.Run("ethtool", "-k", "eth0")
	if err != nil || !strings.Contains(out, "tx-udp-segmentation: on") {
		t.Errorf("a's eth0 should keep UDP segmentation offload: %v\n%s", err, out)
	}
}
