// SPDX-License-Identifier: Apache-2.0

package source

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestIPv6Traffic mirrors an IPv6 TCP conversation (the tunnel stays IPv4)
// and checks it against tcpdump with the equivalent filter.
func TestIPv6Traffic(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{sourceIP + "/24", "fd00::230/64"}},
		netlab.HostSpec{Name: "test", Addrs: []string{testIP + "/24", "fd00::161/64"}},
		netlab.HostSpec{Name: "target", Addrs: []string{targetIP + "/24"}},
	)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	cfg := seedConfig(t, `
filters:
  - name: v6
    inbound: [{priority: 1, action: accept, protocol: tcp, ethertype: ipv6, source: "fd00::161/128", destination_ports: 1234}]
    outbound: [{priority: 1, action: accept, protocol: tcp, ethertype: ipv6, destination: "fd00::161/128", source_ports: 1234}]
sessions:
  - {name: v6, priority: 1, vni: 6, packet_length: 96, filter: v6, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`)
	startSource(t, src, cfg)
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", "96", "ip6 and tcp and host fd00::161 and port 1234")

	var ln net.Listener
	inNS(t, src, func() (err error) { ln, err = net.Listen("tcp6", "[fd00::230]:1234"); return err })
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello over IPv6, long enough to be cut at 96 bytes of frame....\n"))
			c.Close()
		}
	}()
	inNS(t, test, func() error {
		var c net.Conn
		var err error
		// The address may still be in duplicate address detection.
		for i := 0; i < 50; i++ {
			if c, err = net.DialTimeout("tcp6", "[fd00::230]:1234", time.Second); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 200)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				return nil
			}
		}
	})
	// IPv4 traffic on the same port is not mirrored by this filter.
	seedConversation(t, src, test)

	want := atSource.packets(t)
	got := atTarget.packets(t)
	if len(want) < 5 || len(got) != len(want) {
		t.Fatalf("target received %d, tcpdump saw %d IPv6 packets", len(got), len(want))
	}
	left := map[string]int{}
	for _, w := range want {
		left[string(w.Data())]++
	}
	for i, p := range got {
		vni, inner, _, _ := decap(t, p)
		if vni != 6 {
			t.Errorf("packet %d: vni %d", i, vni)
		}
		if gopacketDecode(inner).Layer(layers.LayerTypeIPv6) == nil {
			t.Errorf("packet %d is not IPv6: %s", i, describe(inner))
		}
		if left[string(inner)] == 0 {
			t.Errorf("packet %d not in tcpdump's capture: %s", i, describe(inner))
		}
		left[string(inner)]--
	}
	cut := 0
	for _, w := range want {
		if len(w.Data()) == 96 {
			cut++
		}
	}
	if cut == 0 {
		t.Error("no frame was long enough to be cut: the test does not exercise cutting")
	}
}
