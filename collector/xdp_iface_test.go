// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestXDPLinkLocalListen: a link-local IPv6 listen address names its
// interface with a zone ([fe80::77:2%eth0]:4789), as the socket path needs
// it. Before, the XDP path compared the zoned address with the interfaces'
// unzoned ones and refused to start: "no interface holds the listen address
// fe80::77:2%eth0", although eth0 held it (auto mode fell back to sockets,
// giving that as the reason).
func TestXDPLinkLocalListen(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "sender", Addrs: []string{"fe80::77:1/64"}},
		netlab.HostSpec{Name: "col", Addrs: []string{"fe80::77:2/64"}})
	sender, col := lab.Host("sender"), lab.Host("col")
	var (
		c    *Collector
		stop func()
	)
	err := col.Do(func() error {
		var err error
		c, err = New(withTestDefaults(Options{Listen: "[fe80::77:2%eth0]:4789", Receive: ReceiveXDP, OutputDir: t.TempDir()}))
		if err != nil {
			return err
		}
		stop = runCollector(t, c)
		return nil
	})
	if err != nil {
		t.Fatalf("collector on a link-local address with receive xdp: %v", err)
	}
	if c.Receive() != ReceiveXDP {
		t.Fatalf("receives with %s", c.Receive())
	}
	frame := vxlan(7, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil))
	err = sender.Do(func() error {
		to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[fe80::77:2%eth0]:4789"))
		conn, err := net.DialUDP("udp6", nil, to)
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 5 {
			if _, err := conn.Write(frame); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	waitReceived(t, c, 5)
	stop()
	if st := c.Stats(); st.Written != 5 {
		t.Errorf("stats %+v, want 5 written", st)
	}
}
