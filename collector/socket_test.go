// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"
)

// recvOnce reads one batch from conn with the collector's receive code.
func recvOnce(t *testing.T, conn *net.UDPConn, b *batch) int {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var errno syscall.Errno
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	err = rc.Read(func(fd uintptr) bool {
		b.reset()
		n, errno = recvmmsg(fd, b)
		return errno != unix.EAGAIN
	})
	if err != nil || errno != 0 {
		t.Fatalf("recvmmsg: %v %v", err, errno)
	}
	return n
}

// TestKernelTimestampAndDrops checks the receive path: every datagram
// carries a kernel receive time, and the datagrams a full socket dropped are
// counted in socket_drops_total.
func TestKernelTimestampAndDrops(t *testing.T) {
	conns, granted, err := listenUDP("127.0.0.1:0", 1, 1, true) // the kernel rounds up to its minimum
	if err != nil {
		t.Fatal(err)
	}
	defer conns[0].Close()
	t.Logf("SO_RCVBUF granted %d", granted)
	before := time.Now()
	payload := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 1000)))
	var ps [][]byte
	for i := 0; i < 200; i++ {
		ps = append(ps, payload)
	}
	send(t, "127.0.0.2", conns[0].LocalAddr().(*net.UDPAddr), ps...)
	b := newBatch(8, 16384)
	n := recvOnce(t, conns[0], b)
	if n == 0 {
		t.Fatal("nothing received")
	}
	ts := b.timestamp(0)
	if ts < before.Add(-time.Second).UnixNano() || ts > time.Now().UnixNano() {
		t.Errorf("kernel timestamp %v not within the test (%v)", time.Unix(0, ts), before)
	}
	if src := b.source(0); src != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("source %v", src)
	}
	if got := b.payload(0); string(got) != string(payload) {
		t.Errorf("payload differs")
	}
	c := &Collector{socketDrops: metrics.NewSet().NewCounter("drops")}
	r := &socketReceiver{c: c, conns: []packetConn{conns[0]}, lastDrops: make([]uint32, 1)}
	r.poll()
	dropped := c.socketDrops.Get()
	if dropped == 0 || dropped+uint64(n) > 200 {
		t.Errorf("socket drops %d after 200 datagrams into a %d-byte buffer (%d read)", dropped, granted, n)
	}
	r.poll() // nothing new: the counter must not move
	if got := c.socketDrops.Get(); got != dropped {
		t.Errorf("socket drops moved from %d to %d without traffic", dropped, got)
	}
}

// TestTruncatedDatagram: a datagram larger than the buffer is flagged.
func TestTruncatedDatagram(t *testing.T) {
	c, stop := testCollector(t, Options{MaxDatagram: 1024})
	send(t, "127.0.0.1", c.Addr(), vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 2000))),
		vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	waitReceived(t, c, 2)
	stop()
	st := c.Stats()
	if st.Drops["socket_truncated"] != 1 || st.Written != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAggregateDatagram: a sender's kernel that passes a TCP aggregate
// (GSO) through its VXLAN device without segmenting it (a veth to the
// collector) sends one datagram of up to 64 KiB, one inner frame as tcpdump
// on that link shows it. With the default buffer it is written whole: the
// 16 KiB buffer dropped nearly all bulk TCP mirrored by the kernel's own
// VXLAN device as socket_truncated.
func TestAggregateDatagram(t *testing.T) {
	c, stop := testCollector(t, Options{})
	big := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 60000)))
	send(t, "127.0.0.1", c.Addr(), big)
	waitReceived(t, c, 1)
	stop()
	st := c.Stats()
	if st.Drops["socket_truncated"] != 0 || st.Written != 1 {
		t.Errorf("a %d-byte datagram: stats %+v", len(big), st)
	}
}

// TestIPv6Listener: an IPv6 socket receives from IPv6 mirror sources and
// names their interface blocks after the IPv6 address.
func TestIPv6Listener(t *testing.T) {
	if ln, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	out := t.TempDir()
	c, stop := testCollector(t, Options{Listen: "[::1]:0", OutputDir: out})
	send(t, "::1", c.Addr(), vxlan(3, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)))
	waitReceived(t, c, 1)
	stop()
	got := files(t, out)
	if len(got) != 1 {
		t.Fatalf("files %v", got)
	}
	_, ifs := readCapture(t, out+"/"+got[0])
	if len(ifs) != 1 || ifs[0].Name != "::1/vni3" {
		t.Errorf("interfaces %+v", ifs)
	}
}

// TestZeroChecksumIPv6: VXLAN and GENEVE over IPv6 with a UDP checksum of
// zero (RFC 6935, RFC 7348 "MUST be accepted"; what Open vSwitch and Linux
// tunnel devices send unless told to checksum) are written. The kernel
// dropped them before the socket saw them (Udp6InCsumErrors), so a
// collector on the socket path wrote nothing and counted nothing.
func TestZeroChecksumIPv6(t *testing.T) {
	if ln, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	c, stop := testCollector(t, Options{Listen: "[::1]:0", Readers: 1,
		Inputs: []Input{{Proto: ProtoVXLAN}, {Proto: ProtoGENEVE, Port: 0}}})
	frame := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("zero checksum"))
	for _, dg := range []struct {
		to      *net.UDPAddr
		payload []byte
	}{
		{c.Addr(), vxlan(3, frame)},
		{c.InputAddr(ProtoGENEVE), geneve(7, etherTypeTEB, 0, nil, frame)},
	} {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_NO_CHECK6_TX, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		conn, err := d.Dial("udp6", dg.to.String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if _, err := conn.Write(dg.payload); err != nil {
			t.Fatalf("send: %v", err)
		}
		conn.Close()
	}
	waitReceived(t, c, 2)
	stop()
	if st := c.Stats(); st.Written != 2 {
		t.Errorf("stats %+v", st)
	}
}
