// SPDX-License-Identifier: Apache-2.0

package source

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
)

// mirrorAllYAML mirrors every IPv4 packet both ways, cut to 64 bytes.
const mirrorAllYAML = `
filters:
  - name: all
    inbound: [{priority: 1, action: accept, protocol: all}]
    outbound: [{priority: 1, action: accept, protocol: all}]
sessions:
  - {name: everything, priority: 1, vni: 9, packet_length: 64, filter: all, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`

// TestOriginalUnchanged sends the same frames out of the source interface and
// the same datagrams into it, without and with mirroring of every packet, and
// checks that the receivers get identical bytes.
func TestOriginalUnchanged(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "offload-off", true: "offload-on"}[offload], func(t *testing.T) {
			lab := seedLab(t, offload)
			src, test := lab.Host("source"), lab.Host("test")
			frames := outboundFrames(t, src, test)

			plainOut, plainIn := exchange(t, src, test, frames)
			s := startSource(t, src, seedConfig(t, mirrorAllYAML))
			mirroredOut, mirroredIn := exchange(t, src, test, frames)

			if len(plainOut) != len(frames) || len(mirroredOut) != len(frames) {
				t.Fatalf("test host received %d frames without and %d with mirroring, want %d", len(plainOut), len(mirroredOut), len(frames))
			}
			for i := range plainOut {
				if !bytes.Equal(plainOut[i], mirroredOut[i]) {
					t.Errorf("outbound frame %d changed by mirroring:\n %x\n %x", i, plainOut[i], mirroredOut[i])
				}
			}
			if len(plainIn) != len(mirroredIn) || len(plainIn) == 0 {
				t.Fatalf("source received %d datagrams without and %d with mirroring", len(plainIn), len(mirroredIn))
			}
			for i := range plainIn {
				if !bytes.Equal(plainIn[i], mirroredIn[i]) {
					t.Errorf("inbound datagram %d changed by mirroring", i)
				}
			}
			stats, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			var out, in uint64
			for _, st := range stats {
				if st.Direction == "outbound" {
					out += st.Packets
				} else {
					in += st.Packets
				}
			}
			if out < uint64(len(frames)) || in < uint64(len(plainIn)) {
				t.Errorf("mirrored %d outbound (want >= %d) and %d inbound (want >= %d)", out, len(frames), in, len(plainIn))
			}
		})
	}
}

// outboundFrames are fixed frames from source to test: TCP, UDP, ICMP, small
// and full-size.
func outboundFrames(t *testing.T, src, test *netlab.Host) [][]byte {
	var out [][]byte
	withMACs := func(f []byte) []byte {
		copy(f[0:6], test.MAC)
		copy(f[6:12], src.MAC)
		return f
	}
	for _, n := range []int{0, 10, 500, 1400} {
		out = append(out, withMACs(tcp4(t, sourceIP, testIP, 1234, 40000, n)))
		out = append(out, withMACs(udp4(t, sourceIP, testIP, 5353, 40001, n)))
	}
	out = append(out, withMACs(icmp4(t, sourceIP, testIP)))
	return out
}

// exchange sends frames out of source's eth0 with a packet socket and
// captures what the test host receives; then sends UDP datagrams from test
// to a socket on source and returns what that socket read.
func exchange(t *testing.T, src, test *netlab.Host, frames [][]byte) (received [][]byte, datagrams [][]byte) {
	t.Helper()
	c := startCapture(t, test, "recv", "ether src "+src.MAC.String()+" and not arp and not ip6")
	inNS(t, src, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: src.Ifindex, Halen: 6}
		copy(sa.Addr[:], test.MAC)
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	for _, p := range c.packets(t) {
		if p.Layer(layers.LayerTypeIPv4) != nil {
			received = append(received, p.Data())
		}
	}

	var conn *net.UDPConn
	inNS(t, src, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(sourceIP), Port: 7777})
		return err
	})
	defer conn.Close()
	inNS(t, test, func() error {
		u, err := net.Dial("udp4", sourceIP+":7777")
		if err != nil {
			return err
		}
		defer u.Close()
		for _, n := range []int{1, 100, 1000, 1472} {
			if _, err := u.Write(payload(n)); err != nil {
				return err
			}
		}
		return nil
	})
	buf := make([]byte, 2000)
	for i := 0; i < 4; i++ {
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read datagram %d: %v", i, err)
		}
		datagrams = append(datagrams, append([]byte(nil), buf[:n]...))
	}
	return received, datagrams
}
