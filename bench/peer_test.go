// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

func mustLoadPeer(t testing.TB) *peerObjects {
	t.Helper()
	labtest.RequireRoot(t)
	var o peerObjects
	if err := loadPeerObjects(&o, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return &o
}

func udpFrame(t testing.TB, dst string, dport uint16) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("10.0.0.1"), DstIP: net.ParseIP(dst)}
	udp := &layers.UDP{SrcPort: 1000, DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(make([]byte, 20)))
	return buf.Bytes()
}

func TestCounterProgram(t *testing.T) {
	o := mustLoadPeer(t)
	arp := append([]byte(nil), udpFrame(t, "10.0.0.2", VXLANPort)...)
	binary.BigEndian.PutUint16(arp[12:], uint16(layers.EthernetTypeARP))
	tunnel := func(p Protocol) []byte {
		s := testSpec
		s.Protocol = p
		frame, _, _, err := buildFrame(s)
		if err != nil {
			t.Fatal(err)
		}
		return frame
	}
	cases := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"vxlan", udpFrame(t, "10.0.0.2", VXLANPort), xdpDrop},
		{"geneve", tunnel(GENEVE), xdpDrop},
		{"erspan3", tunnel(ERSPAN3), xdpDrop},
		{"gre", tunnel(GRE), xdpDrop},
		{"other udp port", udpFrame(t, "10.0.0.2", 53), xdpPass},
		{"not ipv4", arp, xdpPass},
		{"truncated", udpFrame(t, "10.0.0.2", VXLANPort)[:30], xdpPass},
	}
	for _, c := range cases {
		if ret, _ := runXDP(t, o.XdpCount, c.frame); ret != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, ret, c.want)
		}
	}
	p := &XDPPeer{objs: *o}
	got, err := p.Received()
	if err != nil {
		t.Fatal(err)
	}
	var want Counts
	for _, c := range cases {
		if c.want == xdpDrop {
			want.Packets++
			want.Bytes += uint64(len(c.frame))
		}
	}
	if got != want {
		t.Errorf("counted %+v, want %+v", got, want)
	}
}

func TestForwarderProgram(t *testing.T) {
	o := mustLoadPeer(t)
	var cfg peerFwdConfig
	copy(cfg.SrcMac[:], []byte{2, 0, 0, 0, 0, 0xaa})
	copy(cfg.DstMac[:], []byte{2, 0, 0, 0, 0, 0xbb})
	cfg.Vip = nativeU32(netip.MustParseAddr("10.0.0.2").As4())
	cfg.Backend = nativeU32(netip.MustParseAddr("10.0.0.9").As4())
	if err := o.FwdCfg.Put(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	ret, out := runXDP(t, o.XdpFwd, udpFrame(t, "10.0.0.2", VXLANPort))
	if ret != xdpTX {
		t.Fatalf("vip: verdict %d, want XDP_TX", ret)
	}
	pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !bytes.Equal(eth.DstMAC, cfg.DstMac[:]) || !bytes.Equal(eth.SrcMAC, cfg.SrcMac[:]) || !ip.DstIP.Equal(net.ParseIP("10.0.0.9")) || udp.Checksum != 0 {
		t.Errorf("rewritten %s > %s, to %s, udp csum %#x", eth.SrcMAC, eth.DstMAC, ip.DstIP, udp.Checksum)
	}
	want := ip.Checksum
	ip.Checksum = 0
	buf := gopacket.NewSerializeBuffer()
	ip.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true})
	if got := binary.BigEndian.Uint16(buf.Bytes()[10:]); got != want {
		t.Errorf("ipv4 checksum %#04x, want %#04x", want, got)
	}
	if ret, _ := runXDP(t, o.XdpFwd, udpFrame(t, "10.0.0.3", VXLANPort)); ret != xdpPass {
		t.Errorf("not the vip: verdict %d, want XDP_PASS", ret)
	}
}

// FuzzPeerPrograms feeds arbitrary frames to the counter and the forwarder: the
// verifier proves memory safety, this checks the verdicts stay in the expected set.
func FuzzPeerPrograms(f *testing.F) {
	f.Add(udpFrame(f, "10.0.0.2", VXLANPort))
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	o := mustLoadPeer(f)
	var cfg peerFwdConfig
	cfg.Vip = nativeU32(netip.MustParseAddr("10.0.0.2").As4())
	if err := o.FwdCfg.Put(uint32(0), &cfg); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 4000 {
			return // the kernel refuses these inputs before the program runs
		}
		for _, p := range []*ebpf.Program{o.XdpCount, o.XdpFwd} {
			ret, err := p.Run(&ebpf.RunOptions{Data: frame})
			if err != nil {
				t.Fatal(err)
			}
			if ret != xdpPass && ret != xdpDrop && ret != xdpTX {
				t.Fatalf("verdict %d", ret)
			}
		}
	})
}
