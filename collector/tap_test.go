// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// tapTestPort is where a local socket waits for mirrored broadcasts.
const tapTestPort = 46467

// TestTapPassive: the TAP device is a passive monitoring interface. Frames
// written into it as the collector writes them (a Router Advertisement,
// IPv4 broadcasts from a routed source and from 0.0.0.0, an ARP request for
// the host's address) are received by the device and act on nothing: no
// route or address appears, no local socket gets a datagram, no ARP answer
// goes out, nothing is learnt, and the host writes nothing into the device.
// Before, on a host with IPv6 on, the device got a link-local address, the
// RA a default route and a global address, the broadcasts reached the
// socket and the ARP request was answered.
func TestTapPassive(t *testing.T) {
	t.Run("filter", func(t *testing.T) { testTapPassive(t, true) })
	// Without CAP_BPF or TCX: the sysctls and ARP off alone, which let
	// broadcasts from 0.0.0.0 through (logged at start).
	t.Run("sysctls", func(t *testing.T) {
		tapFilter = func(int) (link.Link, error) { return nil, errors.New("no filter in this test") }
		t.Cleanup(func() { tapFilter = dropIngress })
		testTapPassive(t, false)
	})
}

func testTapPassive(t *testing.T, filter bool) {
	lab := labtest.ForTest(t, netlab.HostSpec{Name: "c", Addrs: []string{"192.168.0.6/24", "fd00::6/64"}})
	h := lab.Host("c")
	if out, err := h.Run("ip", "route", "add", "default", "via", "192.168.0.1"); err != nil {
		t.Fatalf("default route: %v %s", err, out)
	}
	var tap *tapDevice
	var sock *net.UDPConn
	if err := h.Do(func() (err error) {
		if tap, err = openTap("xmtap0", slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			return err
		}
		sock, err = net.ListenUDP("udp4", &net.UDPAddr{Port: tapTestPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tap.Close(); _ = sock.Close() })

	frames := [][]byte{
		routerAdvertisement(t),
		broadcastUDP(t, net.IPv4(10, 9, 9, 9)),
		arpRequest(t, net.IPv4(192, 168, 0, 99), net.IPv4(192, 168, 0, 6)),
	}
	if filter {
		frames = append(frames, broadcastUDP(t, net.IPv4zero))
	}
	for _, fr := range frames {
		// A TAP device hands a written frame to the stack before the
		// write returns: what it does with it is done below.
		if _, err := tap.Write(fr); err != nil {
			t.Fatalf("write to the tap: %v", err)
		}
	}
	if err := h.Do(func() error {
		l, err := netlink.LinkByName("xmtap0")
		if err != nil {
			return err
		}
		if st := l.Attrs().Statistics; st == nil || st.RxPackets != uint64(len(frames)) {
			t.Errorf("tap statistics %+v: want %d frames received", st, len(frames))
		}
		if addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL); err != nil || len(addrs) != 0 {
			t.Errorf("tap addresses %v (%v), want none", addrs, err)
		}
		if routes, err := netlink.RouteList(l, netlink.FAMILY_ALL); err != nil || len(routes) != 0 {
			t.Errorf("routes through the tap %v (%v), want none", routes, err)
		}
		if neigh, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_ALL); err != nil || len(neigh) != 0 {
			t.Errorf("neighbours learnt on the tap %v (%v), want none", neigh, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, sock); got != "" {
		t.Errorf("a local socket got the mirrored broadcast from %s", got)
	}
	// What the host sends through the device waits in it for a reader.
	fd := int(tap.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	if n, err := unix.Read(fd, buf); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("the host wrote into the tap: %x (%v)", buf[:max(n, 0)], err)
	}
}

// pending is the source of a datagram waiting on conn, "" when none is.
func pending(t *testing.T, conn *net.UDPConn) string {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var from unix.Sockaddr
	var rerr error
	buf := make([]byte, 64)
	if err := raw.Read(func(fd uintptr) bool {
		_, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if errors.Is(rerr, unix.EAGAIN) {
		return ""
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	if sa, ok := from.(*unix.SockaddrInet4); ok {
		return net.IP(sa.Addr[:]).String()
	}
	return "?"
}

var macRouter = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}

// routerAdvertisement is an RA from fe80::1 to all nodes: a default
// router, and the prefix 2001:db8:1::/64 to make addresses from.
func routerAdvertisement(t *testing.T) []byte {
	eth := &layers.Ethernet{SrcMAC: macRouter, DstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: net.ParseIP("fe80::1"), DstIP: net.ParseIP("ff02::1")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	_ = icmp.SetNetworkLayerForChecksum(ip)
	prefix := []byte{64, 0xc0, 0, 1, 0x51, 0x80, 0, 0, 0x38, 0x40, 0, 0, 0, 0} // /64, on-link, autonomous, 86400 s, 14400 s
	prefix = append(prefix, net.ParseIP("2001:db8:1::")...)
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		{Type: layers.ICMPv6OptSourceAddress, Data: macRouter},
		{Type: layers.ICMPv6OptPrefixInfo, Data: prefix},
	}}
	return serialize(t, eth, ip, icmp, ra)
}

// broadcastUDP is a datagram from src to 255.255.255.255:tapTestPort.
func broadcastUDP(t *testing.T, src net.IP) []byte {
	eth := &layers.Ethernet{SrcMAC: macRouter, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.To4(), DstIP: net.IPv4bcast.To4()}
	udp := &layers.UDP{SrcPort: 68, DstPort: tapTestPort}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, udp, gopacket.Payload("mirrored"))
}

// arpRequest asks for the address of target on behalf of sender.
func arpRequest(t *testing.T, sender, target net.IP) []byte {
	eth := &layers.Ethernet{SrcMAC: macRouter, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macRouter, SourceProtAddress: sender.To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.To4()}
	return serialize(t, eth, arp)
}
