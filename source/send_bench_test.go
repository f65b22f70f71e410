// SPDX-License-Identifier: Apache-2.0

package source

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// BenchmarkSendPath measures what one mirrored packet (132 bytes: outer
// headers and a 96-byte cut) costs the kernel to send, batchSize per sendmmsg, from
// a namespace into its veth, dropped as it reaches the bridge (nftables netdev
// ingress on the host's bridge port): the raw IPv4 socket of datapath ring,
// and an AF_PACKET socket (with and without PACKET_QDISC_BYPASS), which skips
// routing, netfilter and the neighbour layer. ns/op is per packet. With
// XM_SEND_EGRESS_DROP=1 the raw case drops at the sender's own eth0 egress
// instead (nftables netdev egress): the cost of the stack without the veth.
// Run:
//
//	go test -run XXX -bench SendPath ./source/
func BenchmarkSendPath(b *testing.B) {
	labtest.RequireRoot(b)
	lab, err := netlab.New("sendpath")
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	a, err := lab.AddHost(netlab.HostSpec{Name: "a", Addrs: []string{"10.77.0.1/24"}})
	if err != nil {
		b.Fatal(err)
	}
	t, err := lab.AddHost(netlab.HostSpec{Name: "t", Addrs: []string{"10.77.0.2/24"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.Run("ping", "-c1", "-W1", "10.77.0.2"); err != nil {
		b.Fatal(err)
	}
	if err := lab.SwitchDo(func() error {
		for _, c := range [][]string{
			{"add", "table", "netdev", "xmsend"},
			{"add", "chain", "netdev", "xmsend", "in", "{ type filter hook ingress device " + a.Port + " priority 0 ; }"},
			{"add", "rule", "netdev", "xmsend", "in", "udp", "dport", "4789", "drop"},
		} {
			if out, err := runCmd("nft", c...); err != nil {
				b.Fatalf("nft: %v: %s", err, out)
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	pkt := make([]byte, outerLen+96)
	copy(pkt, []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2})
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], 4789)
	binary.BigEndian.PutUint16(pkt[24:], uint16(len(pkt)-20))
	pkt[28] = 0x08
	binary.BigEndian.PutUint16(pkt[10:], ipv4Checksum(pkt[:20]))

	// ll is the link-layer destination of an AF_PACKET socket, nil for the
	// raw socket.
	run := func(b *testing.B, fd int, ll *unix.RawSockaddrLinklayer) {
		bt := &batch{link: ll != nil}
		var errs sendErrors
		b.ResetTimer()
		for i := 0; i < b.N; i += batchSize {
			n := min(batchSize, b.N-i)
			for j := 0; j < n; j++ {
				bt.pkts[j] = pkt
				bt.dsts[j] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{10, 77, 0, 2}}
				if ll != nil {
					bt.lls[j] = *ll
				}
			}
			bt.n = n
			sendBatch(fd, bt, &errs)
		}
		b.StopTimer()
		if e := errs[0].Load(); e > 0 {
			b.Errorf("%d sends failed", e)
		}
	}
	b.Run("raw", func(b *testing.B) {
		if os.Getenv("XM_SEND_EGRESS_DROP") != "" {
			if out, err := a.Run("nft", "add table netdev xmeg ; add chain netdev xmeg out { type filter hook egress device eth0 priority 0 ; } ; add rule netdev xmeg out udp dport 4789 drop"); err != nil {
				b.Fatalf("%v %s", err, out)
			}
		}
		a.Do(func() error {
			fd, err := rawSocket(0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			run(b, fd, nil)
			return nil
		})
	})
	for _, bypass := range []bool{false, true} {
		b.Run(map[bool]string{false: "packet", true: "packet-qdisc-bypass"}[bypass], func(b *testing.B) {
			a.Do(func() error {
				fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				if bypass {
					if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
						b.Fatal(err)
					}
				}
				ll := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(a.Ifindex), Halen: 6}
				copy(ll.Addr[:], t.MAC)
				run(b, fd, &ll)
				return nil
			})
		})
	}
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// BenchmarkRingSenders measures what the ring datapath's AF_PACKET sends
// cost per mirrored packet of one flow, from a namespace without offloads
// into its veth, dropped at the bridge port (as BenchmarkSendPath, with the
// copies that arrive counted there: delivered/op): runs of up to 128
// packets as one UDP GSO packet (the sender in use; the veth, without UDP
// segmentation offload, segments them in software) against one message per
// packet, for the seed's 96-byte cut and for whole 1,500-byte frames (a
// 1,450-byte cut). ns/op is per packet, the time of the sending thread
// including the kernel's work in its system calls. An AF_PACKET transmit
// ring was measured here too and dropped (docs/source.md, "Performance"). Run:
//
//	go test -run XXX -bench RingSenders ./source/
func BenchmarkRingSenders(b *testing.B) {
	labtest.RequireRoot(b)
	lab, err := netlab.New("senders")
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	a, err := lab.AddHost(netlab.HostSpec{Name: "a", Addrs: []string{"10.77.0.1/24"}})
	if err != nil {
		b.Fatal(err)
	}
	t, err := lab.AddHost(netlab.HostSpec{Name: "t", Addrs: []string{"10.77.0.2/24"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := lab.SwitchDo(func() error {
		out, err := runCmd("nft", "add table netdev xmsend ; add chain netdev xmsend in { type filter hook ingress device "+a.Port+" priority 0 ; } ; add rule netdev xmsend in udp dport 4789 drop")
		if err != nil {
			b.Fatalf("nft: %v: %s", err, out)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var copies *vxlanCounter
	if err := lab.SwitchDo(func() (err error) {
		copies, err = newVXLANCounter(a.Port)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer copies.Close()
	// delivered reports the share of the b.N packets that reached the
	// bridge port since c0.
	delivered := func(b *testing.B, c0 uint64) {
		time.Sleep(10 * time.Millisecond) // the last ones may be in the veth's backlog
		b.ReportMetric(float64(copies.count()-c0)/float64(b.N), "delivered/op")
	}
	hop := &nextHop{ok: true, ll: unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(a.Ifindex), Halen: 6}}
	copy(hop.ll.Addr[:], t.MAC)
	copy(hop.eth[:], t.MAC)
	copy(hop.eth[6:], a.MAC)
	binary.BigEndian.PutUint16(hop.eth[12:], unix.ETH_P_IP)
	for _, cut := range []int{96, 1450} {
		pkt := make([]byte, outerLen+cut)
		copy(pkt, []byte{0x45, 0x04, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2})
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[20:], 40000)
		binary.BigEndian.PutUint16(pkt[22:], 4789)
		binary.BigEndian.PutUint16(pkt[24:], uint16(len(pkt)-20))
		pkt[28] = 0x08
		b.Run(fmt.Sprintf("gso/cut-%d", cut), func(b *testing.B) {
			a.Do(func() error {
				fd, err := gsoSocket(0)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				bt := &batch{link: true, runs: &runs{}}
				var errs sendErrors
				c0 := copies.count()
				b.ResetTimer()
				for i := 0; i < b.N; i += batchSize {
					n := min(batchSize, b.N-i)
					for j := 0; j < n; j++ {
						bt.pkts[j], bt.lls[j] = pkt, hop.ll
						bt.runs.eths[j] = &hop.eth
						bt.runs.admit(bt, j)
						bt.n++
					}
					bt.runs.send(fd, bt, &errs)
				}
				b.StopTimer()
				delivered(b, c0)
				if e := errs.total(); e > 0 {
					b.Errorf("%d sends failed", e)
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("packet/cut-%d", cut), func(b *testing.B) {
			a.Do(func() error {
				fd, err := packetSocket(0)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				bt := &batch{link: true}
				var errs sendErrors
				c0 := copies.count()
				b.ResetTimer()
				for i := 0; i < b.N; i += batchSize {
					n := min(batchSize, b.N-i)
					for j := 0; j < n; j++ {
						bt.pkts[j], bt.lls[j] = pkt, hop.ll
					}
					bt.n = n
					sendBatch(fd, bt, &errs)
				}
				b.StopTimer()
				delivered(b, c0)
				if e := errs.total(); e > 0 {
					b.Errorf("%d sends failed", e)
				}
				return nil
			})
		})
	}
}
