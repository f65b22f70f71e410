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

var testSpec = FrameSpec{
	SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a},
	DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b},
	SrcIP:  netip.MustParseAddr("192.168.0.230"),
	DstIP:  netip.MustParseAddr("192.168.0.147"),
	VNI:    7,
	Size:   100,
}

// decoded holds the layers of a generated frame.
type decoded struct {
	eth, inEth layers.Ethernet
	ip, inIP   layers.IPv4
	udp        layers.UDP
	vx         layers.VXLAN
	tcp        layers.TCP
	payload    gopacket.Payload
}

func decodeVXLAN(t *testing.T, frame []byte) *decoded {
	t.Helper()
	d := &decoded{}
	df := gopacket.NilDecodeFeedback
	// Layer by layer: a DecodingLayerParser holds one decoder per layer type, and a
	// VXLAN frame has two Ethernet and two IPv4 headers.
	steps := []struct {
		l    gopacket.DecodingLayer
		name string
	}{{&d.eth, "outer ethernet"}, {&d.ip, "outer ipv4"}, {&d.udp, "udp"}, {&d.vx, "vxlan"},
		{&d.inEth, "inner ethernet"}, {&d.inIP, "inner ipv4"}, {&d.tcp, "tcp"}}
	data := frame
	for _, s := range steps {
		if err := s.l.DecodeFromBytes(data, df); err != nil {
			t.Fatalf("decode %s: %v", s.name, err)
		}
		data = s.l.LayerPayload()
	}
	d.payload = data
	return d
}

// checksumsValid re-serializes the decoded layers with fresh checksums and compares.
func checksumsValid(t *testing.T, d *decoded) {
	t.Helper()
	ip := d.inIP
	tcp := d.tcp
	if err := tcp.SetNetworkLayerForChecksum(&ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &ip, &tcp, d.payload); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if got, want := binary.BigEndian.Uint16(out[10:]), d.inIP.Checksum; got != want {
		t.Errorf("inner IPv4 checksum %#04x, want %#04x", want, got)
	}
	if got, want := binary.BigEndian.Uint16(out[20+16:]), d.tcp.Checksum; got != want {
		t.Errorf("inner TCP checksum %#04x, want %#04x", want, got)
	}
	oip := d.ip
	oip.Checksum = 0
	obuf := gopacket.NewSerializeBuffer()
	if err := oip.SerializeTo(obuf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(obuf.Bytes()[10:]); got != d.ip.Checksum {
		t.Errorf("outer IPv4 checksum %#04x, want %#04x", d.ip.Checksum, got)
	}
}

func TestBuildFrame(t *testing.T) {
	for _, size := range []int{MinSize, 100, 1500} {
		s := testSpec
		s.Size = size
		frame, _, _, err := buildFrame(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(frame) != s.WireSize() {
			t.Fatalf("size %d: frame is %d bytes, want %d", size, len(frame), s.WireSize())
		}
		d := decodeVXLAN(t, frame)
		if !d.vx.ValidIDFlag || d.vx.VNI != 7 || d.udp.DstPort != VXLANPort || d.udp.Checksum != 0 {
			t.Errorf("outer: flag %v vni %d port %d udp csum %#x", d.vx.ValidIDFlag, d.vx.VNI, d.udp.DstPort, d.udp.Checksum)
		}
		if d.ip.Flags&layers.IPv4DontFragment == 0 {
			t.Error("outer IPv4 without DF")
		}
		checksumsValid(t, d)
	}
	for _, bad := range []int{MinSize - 1, MaxSize + 1} {
		s := testSpec
		s.Size = bad
		if _, _, _, err := buildFrame(s); err == nil {
			t.Errorf("size %d accepted", bad)
		}
	}
}

func mustLoadGen(t *testing.T, gc genGenConfig) *genObjects {
	t.Helper()
	labtest.RequireRoot(t)
	var objs genObjects
	if err := loadGenObjects(&objs, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	if err := objs.GenCfg.Put(uint32(0), &gc); err != nil {
		t.Fatal(err)
	}
	return &objs
}

func genConfigFor(t *testing.T, s FrameSpec, flows, vnis uint32) (genGenConfig, []byte) {
	t.Helper()
	frame, ipBase, tcpBase, err := buildFrame(s)
	if err != nil {
		t.Fatal(err)
	}
	gc := genGenConfig{Flows: flows, Vnis: vnis, VniBase: s.VNI, IpCsumBase: ipBase, TcpCsumBase: tcpBase}
	copy(gc.Hdr[:], frame)
	a := innerSrc.As4()
	gc.InnerSaddr = binary.BigEndian.Uint32(a[:])
	return gc, frame
}

func runXDP(t *testing.T, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	ret, err := prog.Run(&ebpf.RunOptions{Data: in, DataOut: out})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return ret, out[:len(in)]
}

const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTX      = 3
)

func TestGenProgramFlows(t *testing.T) {
	gc, frame := genConfigFor(t, testSpec, 5000, 3)
	objs := mustLoadGen(t, gc)
	// Garbage in the input stands for a recycled page a receiver rewrote: the program
	// must write every header byte itself.
	in := append([]byte(nil), frame...)
	copy(in, bytes.Repeat([]byte{0xa5}, hdrLen))
	seenPorts := map[uint16]bool{}
	for _, f := range []uint32{0, 1, 2, 3, 4095, 4096, 4097} {
		// Advance the program's counter to flow f.
		st := genGenState{Sent: uint64(f)}
		if err := objs.GenProgress.Put(uint32(0), &st); err != nil {
			t.Fatal(err)
		}
		ret, out := runXDP(t, objs.XdpGen, in)
		if ret != xdpTX {
			t.Fatalf("flow %d: verdict %d, want XDP_TX", f, ret)
		}
		d := decodeVXLAN(t, out)
		oport, saddr, sport := flowFields(f)
		if uint16(d.udp.SrcPort) != oport || uint16(d.tcp.SrcPort) != sport || netip.AddrFrom4([4]byte(d.inIP.SrcIP.To4())) != saddr {
			t.Errorf("flow %d: outer sport %d inner %s:%d, want %d %s:%d", f, d.udp.SrcPort, d.inIP.SrcIP, d.tcp.SrcPort, oport, saddr, sport)
		}
		if want := testSpec.VNI + f%3; d.vx.VNI != want || !d.vx.ValidIDFlag {
			t.Errorf("flow %d: vni %d flag %v, want %d", f, d.vx.VNI, d.vx.ValidIDFlag, want)
		}
		if !bytes.Equal(d.eth.DstMAC, testSpec.DstMAC) || !d.ip.DstIP.Equal(testSpec.DstIP.AsSlice()) {
			t.Errorf("flow %d: outer destination %s %s", f, d.eth.DstMAC, d.ip.DstIP)
		}
		checksumsValid(t, d)
		seenPorts[oport] = true
	}
	if len(seenPorts) < 6 {
		t.Errorf("outer source ports %v: want distinct ports per flow", seenPorts)
	}
}

func TestGenProgramLimits(t *testing.T) {
	gc, frame := genConfigFor(t, testSpec, 1, 1)
	gc.Count = 2
	objs := mustLoadGen(t, gc)
	for i, want := range []uint32{xdpTX, xdpTX, xdpDrop, xdpDrop} {
		if ret, _ := runXDP(t, objs.XdpGen, frame); ret != want {
			t.Errorf("run %d: verdict %d, want %d", i, ret, want)
		}
	}
	var st genGenState
	if err := objs.GenProgress.Lookup(uint32(0), &st); err != nil {
		t.Fatal(err)
	}
	if st.Sent != 2 || st.Runs != 4 || st.Done != 1 {
		t.Errorf("state %+v, want sent 2 runs 4 done", st)
	}

	// A one-second interval: the first run sends, the next ones wait.
	gc.Count = 0
	gc.IntervalNs = 1e9
	objs = mustLoadGen(t, gc)
	for i, want := range []uint32{xdpTX, xdpDrop, xdpDrop} {
		if ret, _ := runXDP(t, objs.XdpGen, frame); ret != want {
			t.Errorf("paced run %d: verdict %d, want %d", i, ret, want)
		}
	}

	// Too short a frame for the headers is aborted, not written past its end.
	gc.IntervalNs = 0
	objs = mustLoadGen(t, gc)
	if ret, _ := runXDP(t, objs.XdpGen, frame[:hdrLen-1]); ret != xdpAborted {
		t.Errorf("short frame: verdict %d, want XDP_ABORTED", ret)
	}
}
