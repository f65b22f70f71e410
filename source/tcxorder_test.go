// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket/layers"
)

// TestIngressBeforeOtherPrograms: a TCX program another tool attached to
// the source interface's ingress before the source started (a firewall, a
// CNI that redirects packets to pods) must not hide packets from the
// mirror: tcpdump shows every packet the interface receives, before any tc
// program, and so must the copies. Before, the source's program was
// appended behind the others, and what they dropped or redirected was
// never mirrored (after a restart of xmirror source on a host whose CNI
// attached in between, for instance).
func TestIngressBeforeOtherPrograms(t *testing.T) {
	lab := seedLab(t, false)
	src, test, target := lab.Host("source"), lab.Host("test"), lab.Host("target")
	cfg := seedConfig(t, `
filters:
  - name: udp
    inbound: [{priority: 1, action: accept, protocol: udp, destination_ports: 9000}]
sessions:
  - {name: udp, priority: 1, vni: 9, filter: udp, sources: [eth0], target: 192.168.0.147}
metrics: {listen: "off"}
`)
	// The firewall: drops every frame of 200 bytes at ingress.
	const dropLen = 200
	fw, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R0, asm.R1, 0, asm.Word), // __sk_buff.len
			asm.JEq.Imm(asm.R0, dropLen, "drop"),
			asm.Mov.Imm(asm.R0, -1), // TCX_NEXT
			asm.Return(),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("drop"), // TCX_DROP
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	inNS(t, src, func() error {
		l, err := link.AttachTCX(link.TCXOptions{Interface: src.Ifindex, Program: fw, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	sinkVXLAN(t, target)
	atTarget := startCapture(t, target, "target", "-s", "2048", "udp", "port", "4789")
	atSource := startCapture(t, src, "source", "-s", "2048", "udp and dst port 9000")
	s := startSourceOpts(t, src, cfg, Options{Datapath: DatapathRing, Attach: AttachTCX})

	const n = 10
	var sink net.PacketConn
	inNS(t, src, func() (err error) { sink, err = net.ListenPacket("udp4", sourceIP+":9000"); return err })
	defer sink.Close()
	inNS(t, test, func() error {
		c, err := net.Dial("udp4", sourceIP+":9000")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			size := dropLen - 42 // Ethernet, IPv4 and UDP headers
			if i%2 == 1 {
				size = 100
			}
			msg := make([]byte, size)
			copy(msg, fmt.Sprintf("datagram %d", i))
			if _, err := c.Write(msg); err != nil {
				return err
			}
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	want, got := atSource.packets(t), atTarget.packets(t)
	if len(want) != n {
		t.Fatalf("tcpdump on eth0 saw %d of %d datagrams", len(want), n)
	}
	left := map[string]int{}
	for _, w := range want {
		left[string(w.Data())]++
	}
	for i, g := range got {
		_, inner, _, _ := decap(t, g)
		if left[string(inner)] == 0 {
			t.Errorf("copy %d not seen by tcpdump: %s", i, describe(inner))
			continue
		}
		left[string(inner)]--
	}
	for w, k := range left {
		if k > 0 {
			u, _ := gopacketDecode([]byte(w)).Layer(layers.LayerTypeUDP).(*layers.UDP)
			t.Errorf("a %d-byte frame tcpdump saw was not mirrored (%d times; udp %v)", len(w), k, u != nil)
		}
	}
	stats, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var mirrored uint64
	for _, st := range stats {
		mirrored += st.Packets
	}
	if mirrored != n {
		t.Errorf("%d mirrored, want %d", mirrored, n)
	}
}
