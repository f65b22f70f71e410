// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestLoopedBroadcastNotMirrored: a broadcast or a multicast to a group the
// host has joined (ff02::1 always) that the source host sends leaves by
// eth0 and comes back in at eth0's ingress as the kernel's local copy
// (dev_loopback_xmit: PACKET_LOOPBACK, no Ethernet header). tcpdump never
// shows that copy; the mirror must not copy it either. Before, sessions
// that accept all IPv4 or IPv6 mirrored it as an inbound frame made of the
// bare IP packet read as Ethernet, beside the outbound one tcpdump shows.
// The source address's third octet (70, 0x46) makes the IPv4 packet read at
// the Ethernet header's offset look like IPv4 too.
func TestLoopedBroadcastNotMirrored(t *testing.T) {
	for _, datapath := range Datapaths {
		t.Run(datapath, func(t *testing.T) { testLoopedBroadcast(t, datapath) })
	}
}

func testLoopedBroadcast(t *testing.T, datapath string) {
	const srcIP, dstIP = "10.9.70.230", "10.9.70.147"
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{srcIP + "/24", "fd00::230/64"}},
		netlab.HostSpec{Name: "target", Addrs: []string{dstIP + "/24"}},
	)
	src, target := lab.Host("source"), lab.Host("target")
	cfg := seedConfig(t, `
filters:
  - name: all
    inbound:  [{priority: 1, action: accept}, {priority: 2, action: accept, ethertype: ipv6}]
    outbound: [{priority: 1, action: accept}, {priority: 2, action: accept, ethertype: ipv6}]
sessions:
  - {name: all, priority: 1, vni: 7, filter: all, sources: [eth0], target: `+dstIP+`}
metrics: {listen: "off"}
`)
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", "2048", "not (udp and port 4789)")
	startSourceOpts(t, src, cfg, Options{Datapath: datapath})

	const n = 5
	inNS(t, src, func() error {
		for _, to := range []string{"10.9.70.255:9999", "[ff02::1%eth0]:9999"} {
			network := "udp4"
			if strings.HasPrefix(to, "[") {
				network = "udp6"
			}
			raddr, err := net.ResolveUDPAddr(network, to)
			if err != nil {
				return err
			}
			c, err := net.ListenUDP(network, nil)
			if err != nil {
				return err
			}
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1) })
			for i := 0; i < n; i++ {
				if _, err := c.WriteToUDP([]byte(fmt.Sprintf("looped %s %d", to, i)), raddr); err != nil {
					c.Close()
					return fmt.Errorf("send to %s: %w", to, err)
				}
			}
			c.Close()
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the ring datapath's copies wait up to --max-delay
	want, got := atSource.packets(t), atTarget.packets(t)

	// The source host's own chatter (ARP, MLD, neighbour discovery) may
	// fall just outside one capture: only UDP to port 9999 and frames that
	// are neither IPv4, IPv6 nor ARP (such as the bare IP packet read as
	// Ethernet) count.
	counted := func(frame []byte) bool {
		p := gopacketDecode(frame)
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 9999 {
			return true
		}
		return p.Layer(layers.LayerTypeIPv4) == nil && p.Layer(layers.LayerTypeIPv6) == nil && p.Layer(layers.LayerTypeARP) == nil
	}
	left := map[string]int{}
	sent := 0
	for _, w := range want {
		if counted(w.Data()) {
			left[string(w.Data())]++
			sent++
		}
	}
	if sent != 2*n {
		t.Fatalf("tcpdump on eth0 saw %d of the %d datagrams sent", sent, 2*n)
	}
	for i, g := range got {
		_, inner, _, _ := decap(t, g)
		if !counted(inner) {
			continue
		}
		if left[string(inner)] == 0 {
			t.Errorf("copy %d is no frame tcpdump saw on eth0:\n %x\n %s", i, inner, describe(inner))
			continue
		}
		left[string(inner)]--
	}
	for w, k := range left {
		if k > 0 {
			t.Errorf("seen by tcpdump, not mirrored (%d times): %s", k, describe([]byte(w)))
		}
	}
}
