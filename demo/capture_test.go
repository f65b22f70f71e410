// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// seedFrame builds one inner frame of the seed's Step 5 capture.
func seedFrame(t testing.TB, srcMAC, dstMAC string, src, dst string, sport, dport uint16, flags string, seq, ack uint32, win uint16, tsval, tsecr uint32, payload string) []byte {
	t.Helper()
	smac, _ := net.ParseMAC(srcMAC)
	dmac, _ := net.ParseMAC(dstMAC)
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(), Flags: layers.IPv4DontFragment}
	ts := make([]byte, 8)
	for i, v := range []uint32{tsval, tsecr} {
		ts[4*i], ts[4*i+1], ts[4*i+2], ts[4*i+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: win,
		ACK: strings.Contains(flags, "."), PSH: strings.Contains(flags, "P"), SYN: strings.Contains(flags, "S"), FIN: strings.Contains(flags, "F"),
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts}}}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The seed's packets: what ECS-target-01 and ECS-target-02 printed in Step 5.
func seedFrames(t testing.TB) (target01, target02 []Frame) {
	const srcMAC, testMAC = "fa:16:3e:7e:d6:bc", "fa:16:3e:7e:d6:77"
	f1 := seedFrame(t, srcMAC, testMAC, "192.168.0.230", "192.168.0.161", 1234, 57032, "P.", 4181467553, 3509843935, 510, 476501697, 998055381, "source to test\n")
	f2 := seedFrame(t, testMAC, srcMAC, "192.168.0.161", "192.168.0.230", 57032, 1234, "P.", 3509843935, 4181467568, 502, 998197997, 476501697, "test to source\n")
	a1 := seedFrame(t, testMAC, srcMAC, "192.168.0.161", "192.168.0.230", 57032, 1234, ".", 3509843935, 4181467568, 502, 998154498, 476501697, "")
	a2 := seedFrame(t, srcMAC, testMAC, "192.168.0.230", "192.168.0.161", 1234, 57032, ".", 4181467568, 3509843950, 510, 476545196, 998197997, "")
	at := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04:05.000000", "2024-09-10 "+s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	target01 = []Frame{{Time: at("19:09:21.273376"), Data: f1, Length: len(f1)}, {Time: at("19:10:04.772581"), Data: f2, Length: len(f2)}}
	target02 = []Frame{{Time: at("19:09:21.273429"), Data: a1, Length: len(a1)}, {Time: at("19:10:04.772601"), Data: a2, Length: len(a2)}}
	return target01, target02
}

func TestSummarizerPrintsTheSeedLikeTcpdump(t *testing.T) {
	t01, t02 := seedFrames(t)
	want01 := []string{
		"fa:16:3e:7e:d6:bc > fa:16:3e:7e:d6:77, ethertype IPv4 (0x0800), length 81: 192.168.0.230.1234 > 192.168.0.161.57032: Flags [P.], seq 4181467553:4181467568, ack 3509843935, win 510, options [nop,nop,TS val 476501697 ecr 998055381], length 15",
		"fa:16:3e:7e:d6:77 > fa:16:3e:7e:d6:bc, ethertype IPv4 (0x0800), length 81: 192.168.0.161.57032 > 192.168.0.230.1234: Flags [P.], seq 1:16, ack 15, win 502, options [nop,nop,TS val 998197997 ecr 476501697], length 15",
	}
	want02 := []string{
		"fa:16:3e:7e:d6:77 > fa:16:3e:7e:d6:bc, ethertype IPv4 (0x0800), length 66: 192.168.0.161.57032 > 192.168.0.230.1234: Flags [.], ack 4181467568, win 502, options [nop,nop,TS val 998154498 ecr 476501697], length 0",
		"fa:16:3e:7e:d6:bc > fa:16:3e:7e:d6:77, ethertype IPv4 (0x0800), length 66: 192.168.0.230.1234 > 192.168.0.161.57032: Flags [.], ack 15, win 510, options [nop,nop,TS val 476545196 ecr 998197997], length 0",
	}
	for _, tc := range []struct {
		name   string
		frames []Frame
		want   []string
	}{{"ECS-target-01", t01, want01}, {"ECS-target-02", t02, want02}} {
		s := NewSummarizer()
		for i, f := range tc.frames {
			if got := s.Line(f); got != tc.want[i] {
				t.Errorf("%s frame %d:\n got %s\nwant %s", tc.name, i+1, got, tc.want[i])
			}
		}
	}
}

// The summary matches what tcpdump itself prints for the same file, including a
// cut frame and a whole handshake with relative sequence numbers.
func TestSummarizerAgreesWithTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed")
	}
	t01, t02 := seedFrames(t)
	syn := seedFrame(t, "02:00:00:00:00:01", "02:00:00:00:00:02", "192.168.0.161", "192.168.0.230", 40000, 1234, "S", 1000, 0, 64240, 1, 0, "")
	synack := seedFrame(t, "02:00:00:00:00:02", "02:00:00:00:00:01", "192.168.0.230", "192.168.0.161", 1234, 40000, "S.", 5000, 1001, 65160, 2, 1, "")
	ack := seedFrame(t, "02:00:00:00:00:01", "02:00:00:00:00:02", "192.168.0.161", "192.168.0.230", 40000, 1234, ".", 1001, 5001, 502, 3, 2, "")
	big := seedFrame(t, "02:00:00:00:00:01", "02:00:00:00:00:02", "192.168.0.161", "192.168.0.230", 40000, 1234, "P.", 1001, 5001, 502, 4, 2, strings.Repeat("x", 400))
	fin := seedFrame(t, "02:00:00:00:00:01", "02:00:00:00:00:02", "192.168.0.161", "192.168.0.230", 40000, 1234, "F.", 1401, 5001, 502, 5, 2, "")
	frames := append(append([]Frame{}, t01...), t02...)
	for _, b := range [][]byte{syn, synack, ack, big, fin} {
		frames = append(frames, Frame{Time: time.Unix(1, 0), Data: b, Length: len(b)})
	}
	frames[len(frames)-2].Data = frames[len(frames)-2].Data[:96] // as the source cuts it
	path := filepath.Join(t.TempDir(), "x.pcap")
	writePcap(t, path, frames)
	out, err := exec.Command("tcpdump", "-nne", "-r", path).Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tcpdump printed %d lines for %d frames:\n%s", len(lines), len(frames), out)
	}
	s := NewSummarizer()
	for i, f := range frames {
		// tcpdump: "HH:MM:SS.ffffff <line>"; a cut frame ends in "[|tcp]" or not
		// depending on what is missing, so compare up to our annotation.
		_, tdLine, _ := strings.Cut(lines[i], " ")
		got, _, _ := strings.Cut(s.Line(f), " [cut to")
		if got != tdLine {
			t.Errorf("frame %d:\n ours    %s\n tcpdump %s", i+1, got, tdLine)
		}
	}
}

func writePcap(t testing.TB, path string, frames []Frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(96, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: fr.Length}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			t.Fatal(err)
		}
	}
}

func writePcapng(t testing.TB, path string, frames []Frame) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "192.168.0.230 vni 1", LinkType: layers.LinkTypeEthernet, SnapLength: 0}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: fr.Length}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestReadCaptureFileBothFormats(t *testing.T) {
	t01, t02 := seedFrames(t)
	frames := append(append([]Frame{}, t01...), t02...)
	frames[0].Data = frames[0].Data[:60] // a cut frame keeps its original length
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		write func(testing.TB, string, []Frame)
		iface string
	}{{"a.pcap", writePcap, ""}, {"a.pcapng", writePcapng, "192.168.0.230 vni 1"}} {
		path := filepath.Join(dir, tc.name)
		tc.write(t, path, frames)
		got, err := ReadCaptureFile(path)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != len(frames) {
			t.Fatalf("%s: %d frames, want %d", tc.name, len(got), len(frames))
		}
		for i := range got {
			if !bytes.Equal(got[i].Data, frames[i].Data) || got[i].Length != frames[i].Length || got[i].File != path || got[i].Iface != tc.iface {
				t.Errorf("%s frame %d: got len %d/%d iface %q, want %d/%d %q", tc.name, i, len(got[i].Data), got[i].Length, got[i].Iface, len(frames[i].Data), frames[i].Length, tc.iface)
			}
			if !got[i].Time.Equal(frames[i].Time) {
				t.Errorf("%s frame %d: time %v, want %v", tc.name, i, got[i].Time, frames[i].Time)
			}
		}
		if !got[0].Cut() || got[1].Cut() {
			t.Errorf("%s: Cut() wrong", tc.name)
		}
	}
	if _, err := ReadCapture(bufio.NewReader(strings.NewReader("this is not a capture"))); err == nil {
		t.Error("a text file read as a capture")
	}
}

func TestCaptureFilesSkipsOpenFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"s/s-1.pcapng", "s/s-2.pcapng.tmp", "s/.s-3.pcapng.part", "t/t-1.pcap", "t/readme"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(n)), 0o755)
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := CaptureFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "s/s-1.pcapng"), filepath.Join(dir, "t/t-1.pcap")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCompare(t *testing.T) {
	t01, t02 := seedFrames(t)
	ref := []Frame{t01[0], t02[0], t01[1], t02[1]} // tcpdump's order on the source
	mark := func(fs []Frame, file, target string) []Frame {
		out := append([]Frame{}, fs...)
		for i := range out {
			out[i].File, out[i].Target = file, target
		}
		return out
	}
	got := append(mark(t01, "a", HostTarget01), mark(t02, "b", HostTarget02)...)
	if mm := Compare(ref, got); len(mm) != 0 {
		t.Fatalf("same frames split over two files: %v", mm)
	}
	// One direction split over two files (a failover): merged by time.
	split := append(mark(t01[:1], "a", HostTarget01), mark(t01[1:], "c", HostTarget02)...)
	split = append(split, mark(t02, "b", HostTarget02)...)
	if mm := Compare(ref, split); len(mm) != 0 {
		t.Fatalf("split flow: %v", mm)
	}

	cut := append([]Frame{}, got...)
	cut[0].Data = cut[0].Data[:70]
	extra := append(append([]Frame{}, got...), Frame{Data: seedFrame(t, "02:00:00:00:00:01", "02:00:00:00:00:02", "192.168.0.161", "192.168.0.230", 1, 1235, "S", 1, 0, 1, 1, 1, ""), Length: 74, File: "b"})
	badLen := append([]Frame{}, got...)
	badLen[1].Length++
	// ECS-test's data packet before its earlier ACK, in one file: wrong order.
	reordered := append(mark(t01[:1], "a", HostTarget01), mark([]Frame{t01[1], t02[0], t02[1]}, "b", HostTarget02)...)
	for _, tc := range []struct {
		name string
		got  []Frame
		want string
	}{
		{"missing", got[1:], "1 frames collected, tcpdump captured 2"},
		{"extra flow", extra, "did not capture"},
		{"bytes", cut, "bytes differ"},
		{"original length", badLen, "original length"},
		{"order", reordered, "original length"},
	} {
		mm := Compare(ref, tc.got)
		if len(mm) == 0 || !strings.Contains(mm[0].String(), tc.want) {
			t.Errorf("%s: got %v, want a %q mismatch", tc.name, mm, tc.want)
		}
	}

	// As in the seed, each target received frames of both directions.
	pl := Placement(got)
	in := FlowOf(t02[0].Data)
	if strings.Join(pl[in], ",") != HostTarget01+","+HostTarget02 || strings.Join(pl[in.Reverse()], ",") != HostTarget01+","+HostTarget02 {
		t.Errorf("placement %v", pl)
	}
	pl = Placement(mark(got, "a", HostTarget01))
	if strings.Join(pl[in], ",") != HostTarget01 {
		t.Errorf("placement %v", pl)
	}
}

func TestFlowOf(t *testing.T) {
	t01, _ := seedFrames(t)
	fl := FlowOf(t01[0].Data)
	if fl.String() != "tcp 192.168.0.230.1234 > 192.168.0.161.57032" {
		t.Errorf("flow %v", fl)
	}
	if c := fl.Conversation(); c != fl.Reverse().Conversation() {
		t.Errorf("conversation not direction-free: %v %v", c, fl.Reverse().Conversation())
	}
	// Cut inside the TCP header: still IPv4, still the addresses.
	if fl := FlowOf(t01[0].Data[:40]); fl.Src.Addr.String() != "192.168.0.230" {
		t.Errorf("cut frame flow %v", fl)
	}
	if fl := FlowOf([]byte{1, 2, 3}); fl.Proto != "eth" {
		t.Errorf("garbage flow %v", fl)
	}
}

func FuzzReadCapture(f *testing.F) {
	t01, _ := seedFrames(f)
	dir := f.TempDir()
	for _, w := range []func(testing.TB, string, []Frame){writePcap, writePcapng} {
		p := filepath.Join(dir, "seed")
		w(f, p, t01)
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, _ := ReadCapture(bufio.NewReader(bytes.NewReader(b)))
		s := NewSummarizer()
		for _, fr := range frames {
			s.Line(fr)
			FlowOf(fr.Data)
		}
	})
}

func FuzzSummarizer(f *testing.F) {
	t01, t02 := seedFrames(f)
	for _, fr := range append(t01, t02...) {
		f.Add(fr.Data, fr.Length)
		f.Add(fr.Data[:50], fr.Length)
	}
	f.Fuzz(func(t *testing.T, b []byte, length int) {
		s := NewSummarizer()
		s.Line(Frame{Data: b, Length: length})
		s.Line(Frame{Data: b, Length: length})
		fl := FlowOf(b)
		_ = fl.Conversation().String()
	})
}
