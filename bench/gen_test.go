// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

var testSpec = FrameSpec{
	SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a},
	DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b},
	SrcIP:  netip.MustParseAddr("192.168.0.230"),
	DstIP:  netip.MustParseAddr("192.168.0.147"),
	ID:     7,
	Size:   100,
}

// protoSpecs is testSpec in every protocol, GENEVE with 0, 2 and the most options.
func protoSpecs() map[string]FrameSpec {
	m := map[string]FrameSpec{}
	for _, p := range Protocols {
		s := testSpec
		s.Protocol = p
		m[string(p)] = s
	}
	for _, n := range []int{2, MaxGeneveOptions} {
		s := testSpec
		s.Protocol, s.GeneveOptions = GENEVE, n
		m[fmt.Sprintf("geneve-%dopt", n)] = s
	}
	return m
}

// decoded holds the layers of a generated frame, decoded by gopacket (ERSPAN
// III, which gopacket lacks, by hand; tshark checks it in TestFramesTshark).
type decoded struct {
	eth, inEth layers.Ethernet
	ip, inIP   layers.IPv4
	udp        layers.UDP // VXLAN and GENEVE
	vx         layers.VXLAN
	gn         layers.Geneve
	gre        layers.GRE
	erspan2    layers.ERSPANII
	id         uint32 // the session id: VNI, ERSPAN session id or GRE key
	tcp        layers.TCP
	payload    gopacket.Payload
}

// geneveDecoder completes gopacket's Geneve (v1.1.19) into a DecodingLayer,
// and splits header from payload itself: gopacket counts the header's length
// in a uint8, which wraps with more than 247 bytes of options.
type geneveDecoder struct{ *layers.Geneve }

func (g geneveDecoder) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := g.Geneve.DecodeFromBytes(data, df); err != nil {
		return err
	}
	n := 8 + int(data[0]&0x3f)*4
	g.BaseLayer = layers.BaseLayer{Contents: data[:n], Payload: data[n:]}
	return nil
}

func (geneveDecoder) CanDecode() gopacket.LayerClass    { return layers.LayerTypeGeneve }
func (geneveDecoder) NextLayerType() gopacket.LayerType { return layers.LayerTypeEthernet }

func decodeFrame(t *testing.T, p Protocol, frame []byte) *decoded {
	t.Helper()
	d := &decoded{}
	df := gopacket.NilDecodeFeedback
	// Layer by layer: a DecodingLayerParser holds one decoder per layer type, and a
	// tunnel frame has two Ethernet and two IPv4 headers.
	type step struct {
		l    gopacket.DecodingLayer
		name string
	}
	steps := []step{{&d.eth, "outer ethernet"}, {&d.ip, "outer ipv4"}}
	switch p {
	case VXLAN:
		steps = append(steps, step{&d.udp, "udp"}, step{&d.vx, "vxlan"})
	case GENEVE:
		steps = append(steps, step{&d.udp, "udp"}, step{geneveDecoder{&d.gn}, "geneve"})
	case ERSPAN2:
		steps = append(steps, step{&d.gre, "gre"}, step{&d.erspan2, "erspan ii"})
	default:
		steps = append(steps, step{&d.gre, "gre"})
	}
	data := frame
	for _, s := range steps {
		if err := s.l.DecodeFromBytes(data, df); err != nil {
			t.Fatalf("decode %s: %v\n%s", s.name, err, hex.Dump(frame))
		}
		data = s.l.LayerPayload()
	}
	switch p {
	case VXLAN:
		d.id = d.vx.VNI
	case GENEVE:
		d.id = d.gn.VNI
	case ERSPAN2:
		d.id = uint32(d.erspan2.SessionID)
	case ERSPAN3:
		if len(data) < 12 || data[0]>>4 != 2 {
			t.Fatalf("no erspan iii header: % x", data[:min(len(data), 12)])
		}
		d.id = uint32(binary.BigEndian.Uint16(data[2:]) & 0x3ff)
		data = data[12:]
	case GRE:
		d.id = d.gre.Key
	}
	for _, s := range []step{{&d.inEth, "inner ethernet"}, {&d.inIP, "inner ipv4"}, {&d.tcp, "tcp"}} {
		if err := s.l.DecodeFromBytes(data, df); err != nil {
			t.Fatalf("decode %s: %v\n%s", s.name, err, hex.Dump(frame))
		}
		data = s.l.LayerPayload()
	}
	d.payload = data
	return d
}

// checkTunnel checks the outer headers of a frame of spec s with session id id.
func checkTunnel(t *testing.T, s FrameSpec, d *decoded, id uint32) {
	t.Helper()
	if d.id != id {
		t.Errorf("session id %d, want %d", d.id, id)
	}
	if d.ip.Flags&layers.IPv4DontFragment == 0 {
		t.Error("outer IPv4 without DF")
	}
	if !bytes.Equal(d.eth.DstMAC, s.DstMAC) || !d.ip.DstIP.Equal(s.DstIP.AsSlice()) {
		t.Errorf("outer destination %s %s", d.eth.DstMAC, d.ip.DstIP)
	}
	switch s.protocol() {
	case VXLAN, GENEVE:
		port := map[Protocol]layers.UDPPort{VXLAN: VXLANPort, GENEVE: GENEVEPort}[s.protocol()]
		if d.ip.Protocol != layers.IPProtocolUDP || d.udp.DstPort != port || d.udp.Checksum != 0 {
			t.Errorf("udp to %d with checksum %#x, want %d and 0", d.udp.DstPort, d.udp.Checksum, port)
		}
	default:
		if d.ip.Protocol != layers.IPProtocolGRE || d.gre.ChecksumPresent || d.gre.Version != 0 {
			t.Errorf("ip protocol %d, gre %+v", d.ip.Protocol, d.gre)
		}
	}
	switch s.protocol() {
	case VXLAN:
		if !d.vx.ValidIDFlag {
			t.Error("vxlan without the I flag")
		}
	case GENEVE:
		if d.gn.Protocol != layers.EthernetTypeTransparentEthernetBridging ||
			len(d.gn.Options) != s.GeneveOptions || d.gn.CriticalOption || d.gn.OAMPacket {
			t.Errorf("geneve %+v, want bridging, %d options", d.gn, s.GeneveOptions)
		}
		for i, o := range d.gn.Options {
			if o.Class != 0xffff || o.Type != uint8(i+1) || o.Length != geneveOptLen {
				t.Errorf("geneve option %d: %+v", i, o)
			}
		}
	case ERSPAN2:
		if !d.gre.SeqPresent || d.gre.Protocol != greERSPAN2 || d.erspan2.Version != 1 {
			t.Errorf("gre %+v erspan %+v, want S bit, 0x88be, version 1", d.gre, d.erspan2)
		}
	case ERSPAN3:
		if !d.gre.SeqPresent || d.gre.Protocol != greERSPAN3 {
			t.Errorf("gre %+v, want S bit and 0x22eb", d.gre)
		}
	case GRE:
		if !d.gre.KeyPresent || d.gre.SeqPresent || d.gre.Protocol != layers.EthernetTypeTransparentEthernetBridging {
			t.Errorf("gre %+v, want a key and bridging", d.gre)
		}
	}
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
	for name, spec := range protoSpecs() {
		for _, size := range []int{MinSize, 100, 1500} {
			s := spec
			s.Size = size
			frame, _, _, err := buildFrame(s)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(frame) != s.WireSize() {
				t.Fatalf("%s size %d: frame is %d bytes, want %d", name, size, len(frame), s.WireSize())
			}
			d := decodeFrame(t, s.protocol(), frame)
			checkTunnel(t, s, d, 7)
			checksumsValid(t, d)
			if got := frame[s.layout().outer:]; !bytes.Equal(got, mustInner(t, size)) {
				t.Errorf("%s size %d: inner frame differs from the mirrored one", name, size)
			}
		}
	}
	bad := map[string]func(*FrameSpec){
		"size below":         func(s *FrameSpec) { s.Size = MinSize - 1 },
		"size above":         func(s *FrameSpec) { s.Size = MaxSize + 1 },
		"protocol":           func(s *FrameSpec) { s.Protocol = "nvgre" },
		"vni":                func(s *FrameSpec) { s.ID = 1 << 24 },
		"erspan session id":  func(s *FrameSpec) { s.Protocol, s.ID = ERSPAN3, 1024 },
		"options":            func(s *FrameSpec) { s.Protocol, s.GeneveOptions = GENEVE, MaxGeneveOptions+1 },
		"options not geneve": func(s *FrameSpec) { s.GeneveOptions = 1 },
		"port with gre":      func(s *FrameSpec) { s.Protocol, s.DstPort = GRE, 4789 },
	}
	for name, change := range bad {
		s := testSpec
		change(&s)
		if _, _, _, err := buildFrame(s); err == nil {
			t.Errorf("%s: accepted %+v", name, s)
		}
	}
}

func mustInner(t *testing.T, size int) []byte {
	t.Helper()
	in, err := innerFrame(size)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

var update = flag.Bool("update", false, "rewrite testdata/frames/*.hex from the frame builders")

// TestFrameGolden keeps every protocol's frame byte for byte: a change to a
// builder shows as a diff of testdata/frames (go test -run FrameGolden -update).
func TestFrameGolden(t *testing.T) {
	for name, s := range protoSpecs() {
		s.Size = MinSize
		frame, _, _, err := buildFrame(s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "frames", name+".hex")
		got := hex.Dump(frame)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s: frame differs from %s:\n%s", name, path, got)
		}
	}
}

// expertWarn is Wireshark's PI_WARN: a dissector's complaint about the packet.
const expertWarn = 0x00600000

// TestFramesTshark has tshark dissect every protocol's frame: the tunnel
// fields it reads must be what the spec says, and nothing may be malformed.
func TestFramesTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (make deps)")
	}
	names := slices.Sorted(maps.Keys(protoSpecs()))
	path := filepath.Join(t.TempDir(), "frames.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		frame, _, _, err := buildFrame(protoSpecs()[name])
		if err != nil {
			t.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	cmd := exec.Command("tshark", "-r", path, "-n", "-T", "fields", "-E", "separator=|",
		"-e", "frame.protocols", "-e", "vxlan.vni", "-e", "geneve.vni", "-e", "geneve.option.class",
		"-e", "erspan.version", "-e", "erspan.spanid", "-e", "erspan.ft", "-e", "erspan.gra",
		"-e", "gre.key", "-e", "ip.src", "-e", "tcp.srcport", "-e", "_ws.malformed", "-e", "_ws.expert.severity")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	// Fields: protocols, vxlan.vni, geneve.vni, option classes, erspan version,
	// span id, frame type, granularity, gre key.
	inner := ":eth:ethertype:ip:tcp"
	opts := func(n int) string { return strings.TrimSuffix(strings.Repeat("0xffff,", n), ",") }
	want := map[string]string{
		"vxlan":        "eth:ethertype:ip:udp:vxlan" + inner + "|7|||||||",
		"geneve":       "eth:ethertype:ip:udp:geneve" + inner + "||0x000007||||||",
		"geneve-2opt":  "eth:ethertype:ip:udp:geneve" + inner + "||0x000007|" + opts(2) + "|||||",
		"geneve-31opt": "eth:ethertype:ip:udp:geneve" + inner + "||0x000007|" + opts(31) + "|||||",
		"erspan2":      "eth:ethertype:ip:gre:erspan" + inner + "||||1|7|||",
		"erspan3":      "eth:ethertype:ip:gre:erspan" + inner + "||||2|7|0|1|",
		"gre":          "eth:ethertype:ip:gre" + inner + "||||||||0x00000007",
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s", len(lines), len(names), out)
	}
	for i, name := range names {
		f := strings.Split(lines[i], "|")
		if got := strings.Join(f[:9], "|"); got != want[name] {
			t.Errorf("%s: tshark reads\n %s\nwant\n %s", name, got, want[name])
		}
		if f[9] != testSpec.SrcIP.String()+","+innerSrc.String() {
			t.Errorf("%s: ip.src %q", name, f[9])
		}
		if f[10] != "20000" || f[11] != "" {
			t.Errorf("%s: tcp port %q, malformed %q", name, f[10], f[11])
		}
		// Notes (a TCP segment without its handshake) are fine; warnings are not.
		for _, sev := range strings.Split(f[12], ",") {
			if v, _ := strconv.ParseInt(sev, 0, 64); v >= expertWarn {
				t.Errorf("%s: tshark expert severity %s", name, sev)
			}
		}
	}
}

func mustLoadGen(t testing.TB, gc genGenConfig) *genObjects {
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

func genConfigFor(t testing.TB, s FrameSpec, flows, ids int) (genGenConfig, []byte) {
	t.Helper()
	frame, ipBase, tcpBase, err := buildFrame(s)
	if err != nil {
		t.Fatal(err)
	}
	return *genProgramConfig(GenConfig{FrameSpec: s, Flows: flows, IDs: ids}, frame, ipBase, tcpBase), frame
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

// TestGenProgramFlows runs the generator on every protocol's frame through
// BPF_PROG_TEST_RUN and checks what it wrote for several flows: session id,
// inner flow, outer source port or sequence number, and valid checksums.
func TestGenProgramFlows(t *testing.T) {
	for name, spec := range protoSpecs() {
		t.Run(name, func(t *testing.T) {
			gc, frame := genConfigFor(t, spec, 5000, 3)
			objs := mustLoadGen(t, gc)
			// Garbage in the input stands for a recycled page a receiver rewrote: the
			// program must write every header byte itself.
			in := append([]byte(nil), frame...)
			copy(in, bytes.Repeat([]byte{0xa5}, int(gc.HdrLen)))
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
				d := decodeFrame(t, spec.protocol(), out)
				checkTunnel(t, spec, d, spec.ID+f%3)
				checksumsValid(t, d)
				oport, saddr, sport := flowFields(f)
				if uint16(d.tcp.SrcPort) != sport || netip.AddrFrom4([4]byte(d.inIP.SrcIP.To4())) != saddr {
					t.Errorf("flow %d: inner %s:%d, want %s:%d", f, d.inIP.SrcIP, d.tcp.SrcPort, saddr, sport)
				}
				l := spec.layout()
				if l.sport != 0 && uint16(d.udp.SrcPort) != oport {
					t.Errorf("flow %d: outer sport %d, want %d", f, d.udp.SrcPort, oport)
				}
				if l.seq != 0 && d.gre.Seq != f {
					t.Errorf("flow %d: gre sequence %d, want %d", f, d.gre.Seq, f)
				}
				if l.ts != 0 && binary.BigEndian.Uint32(out[l.ts:]) == 0xa5a5a5a5 {
					t.Errorf("flow %d: erspan timestamp not written", f)
				}
				if !bytes.Equal(out[gc.HdrLen:], frame[gc.HdrLen:]) {
					t.Errorf("flow %d: payload changed", f)
				}
				seenPorts[uint16(d.udp.SrcPort)] = true
			}
			if spec.layout().sport != 0 && len(seenPorts) < 6 {
				t.Errorf("outer source ports %v: want distinct ports per flow", seenPorts)
			}
		})
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
	if ret, _ := runXDP(t, objs.XdpGen, frame[:gc.HdrLen-1]); ret != xdpAborted {
		t.Errorf("short frame: verdict %d, want XDP_ABORTED", ret)
	}
}

// BenchmarkGenProgram is the generator program's cost per sent frame for
// each protocol under BPF_PROG_TEST_RUN (no live frames: the frame is not
// transmitted), against an XDP program that only returns XDP_TX in the same
// run: go test -run XXX -bench GenProgram ./bench/
func BenchmarkGenProgram(b *testing.B) {
	labtest.RequireRoot(b)
	names := slices.Sorted(maps.Keys(protoSpecs()))
	for _, name := range append([]string{"xdp_tx only"}, names...) {
		b.Run(name, func(b *testing.B) {
			var prog *ebpf.Program
			frame := make([]byte, 150)
			if name == "xdp_tx only" {
				p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual MIT/GPL",
					Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpTX), asm.Return()}})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				prog = p
			} else {
				gc, f := genConfigFor(b, protoSpecs()[name], 65536, 4)
				prog, frame = mustLoadGen(b, gc).XdpGen, f
			}
			ret, per, err := prog.Benchmark(frame, b.N, nil)
			if err != nil || ret != xdpTX {
				b.Fatalf("verdict %d: %v", ret, err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}
