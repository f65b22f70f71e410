// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// seedFrames rebuilds the two inner frames of Step 5 of the seed: the data
// packet "source to test" from ECS-source and the ACK ECS-test answered with.
func seedFrames(tb testing.TB) (data, ack []byte) {
	tb.Helper()
	frame := func(srcMAC, dstMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, seq, ackn uint32, psh bool, win uint16, tsval, tsecr uint32, payload []byte) []byte {
		ts := make([]byte, 8)
		be32 := func(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
		be32(ts[0:], tsval)
		be32(ts[4:], tsecr)
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ackn, ACK: true, PSH: psh, Window: win,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts}}}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		return serialize(tb, &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload))
	}
	// 19:09:21.273376 ... length 81: 192.168.0.230.1234 > 192.168.0.161.57032: Flags [P.],
	// seq 4181467553:4181467568, ack 3509843935, win 510, options [nop,nop,TS val 476501697 ecr 998055381], length 15
	data = frame(macSource, macTest, ipSource, ipTest, 1234, 57032, 4181467553, 3509843935, true, 510, 476501697, 998055381, []byte("source to test\n"))
	// 19:09:21.273429 ... length 66: 192.168.0.161.57032 > 192.168.0.230.1234: Flags [.],
	// ack 4181467568, win 502, options [nop,nop,TS val 998154498 ecr 476501697], length 0
	ack = frame(macTest, macSource, ipTest, ipSource, 57032, 1234, 3509843935, 4181467568, false, 502, 998154498, 476501697, nil)
	if len(data) != 81 || len(ack) != 66 {
		tb.Fatalf("seed frames are %d and %d bytes, the seed shows 81 and 66", len(data), len(ack))
	}
	return data, ack
}

// TestSeedPackets sends the seed's two VXLAN frames from 192.168.0.230 to a
// collector on 192.168.0.6:4789 (ECS-target-01) in a network namespace lab
// and checks that exactly those inner frames are written for VNI 1.
func TestSeedPackets(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "source", Addrs: []string{"192.168.0.230/24"}},
		netlab.HostSpec{Name: "target", Addrs: []string{"192.168.0.6/24"}})
	data, ack := seedFrames(t)
	out := t.TempDir()
	var c *Collector
	// The sockets belong to the namespace they are created in.
	err := lab.Host("target").Do(func() (err error) {
		c, err = New(Options{Listen: "192.168.0.6:4789", OutputDir: out, Readers: 1,
			Sessions: map[uint32]string{1: "mirror-session-01"},
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runCollector(t, c)
	err = lab.Host("source").Do(func() error {
		conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: ipSource, Port: 32816}, &net.UDPAddr{IP: net.IPv4(192, 168, 0, 6), Port: 4789})
		if err != nil {
			return err
		}
		defer conn.Close()
		for _, f := range [][]byte{data, ack} {
			if _, err := conn.Write(vxlan(1, f)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitReceived(t, c, 2)
	stop()

	path := onlyFile(t, out, "mirror-session-01/mirror-session-01-")
	pkts, ifs := readCapture(t, path)
	if len(pkts) != 2 || string(pkts[0].data) != string(data) || string(pkts[1].data) != string(ack) {
		t.Fatalf("the file does not hold exactly the seed's two frames: %d packets", len(pkts))
	}
	if len(ifs) != 1 || ifs[0].Name != "192.168.0.230/vni1" {
		t.Errorf("interfaces %+v, want one named 192.168.0.230/vni1", ifs)
	}
	lines := tsharkFields(t, path, "frame.len", "eth.src", "eth.dst", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
		"tcp.flags.str", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value", "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.len", "frame.interface_name")
	want := []string{
		"81|fa:16:3e:7e:d6:bc|fa:16:3e:7e:d6:77|192.168.0.230|1234|192.168.0.161|57032|·······AP···|4181467553|3509843935|510|476501697|998055381|15|192.168.0.230/vni1",
		"66|fa:16:3e:7e:d6:77|fa:16:3e:7e:d6:bc|192.168.0.161|57032|192.168.0.230|1234|·······A····|3509843935|4181467568|502|998154498|476501697|0|192.168.0.230/vni1",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
