// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Frame is one packet of a capture file: the bytes kept and the length the packet
// had on the wire.
type Frame struct {
	Time   time.Time
	Data   []byte // captured bytes (at most the snap length)
	Length int    // original length on the wire
	File   string // file the frame was read from
	Target string // collector host whose file held it; "" for a reference capture
	Iface  string // pcapng interface name, when the file has one
}

// Cut reports whether the capture kept fewer bytes than the packet had.
func (f Frame) Cut() bool { return len(f.Data) < f.Length }

// Capture file magic numbers: pcap in both byte orders and resolutions, and the
// pcapng section header block type.
const (
	pcapMagicMicro   = 0xa1b2c3d4
	pcapMagicNano    = 0xa1b23c4d
	pcapngBlockMagic = 0x0a0d0d0a
)

// ReadCaptureFile reads every frame of a pcap or pcapng file (told apart by the
// magic number, not the name). Frames of a link type other than Ethernet are an
// error: xmirror only writes Ethernet.
func ReadCaptureFile(path string) ([]Frame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	frames, err := ReadCapture(bufio.NewReader(f))
	for i := range frames {
		frames[i].File = path
	}
	if err != nil {
		return frames, fmt.Errorf("read %s: %w", path, err)
	}
	return frames, nil
}

// ReadCapture reads a pcap or pcapng stream to its end. A malformed stream is an
// error, never a crash: gopacket's pcapng reader panics on some bad blocks (a zero
// timestamp resolution divides by zero), so that is turned into an error too.
func ReadCapture(r *bufio.Reader) (frames []Frame, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed capture: %v", p)
		}
	}()
	head, err := r.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read magic: %w", err)
	}
	le, be := binary.LittleEndian.Uint32(head), binary.BigEndian.Uint32(head)
	switch {
	case le == pcapngBlockMagic:
		return readPcapng(r)
	case le == pcapMagicMicro || le == pcapMagicNano || be == pcapMagicMicro || be == pcapMagicNano:
		return readPcap(r)
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file (magic %#08x)", le)
	}
}

func readPcap(r io.Reader) ([]Frame, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("link type %s, want Ethernet", pr.LinkType())
	}
	return readFrames(pr, nil)
}

func readPcapng(r io.Reader) ([]Frame, error) {
	// WantMixedLinkType: a file whose first interface block comes after other
	// blocks (or a file with no packet yet) must still read; the link type is then
	// checked per packet.
	nr, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, fmt.Errorf("pcapng section header: %w", err)
	}
	return readFrames(nr, func(fr *Frame, ci gopacket.CaptureInfo) error {
		if len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok && lt != layers.LinkTypeEthernet {
				return fmt.Errorf("link type %s, want Ethernet", lt)
			}
		}
		if iface, err := nr.Interface(ci.InterfaceIndex); err == nil {
			fr.Iface = iface.Name
		}
		return nil
	})
}

// packetReader is what pcapgo's pcap and pcapng readers have in common.
type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// readFrames reads every packet up to the end of the file; each, when set,
// checks a packet and completes its frame.
func readFrames(r packetReader, each func(*Frame, gopacket.CaptureInfo) error) ([]Frame, error) {
	var frames []Frame
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		fr := Frame{Time: ci.Timestamp, Data: data, Length: ci.Length}
		if err == nil && each != nil {
			err = each(&fr, ci)
		}
		if err != nil {
			return frames, fmt.Errorf("packet %d: %w", len(frames)+1, err)
		}
		frames = append(frames, fr)
	}
}

// CaptureFiles lists the closed capture files under dir (recursively), sorted by
// path. Files still open carry a temporary name and are left out.
func CaptureFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".pcapng") || strings.HasSuffix(path, ".pcap")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list capture files: %w", err)
	}
	sort.Strings(files)
	return files, nil
}

// Endpoint is an address and, for TCP and UDP, a port.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
}

func (e Endpoint) String() string {
	if e.Port == 0 {
		return e.Addr.String()
	}
	return fmt.Sprintf("%s.%d", e.Addr, e.Port)
}

func (e Endpoint) less(o Endpoint) bool {
	if c := e.Addr.Compare(o.Addr); c != 0 {
		return c < 0
	}
	return e.Port < o.Port
}

// Flow is the directional identity of a frame: protocol and both endpoints. Frames
// that are not IP get Proto "eth" and the ethertype as Other.
type Flow struct {
	Proto    string // tcp, udp, icmp, icmpv6, ip-N, eth
	Src, Dst Endpoint
	Other    string
}

func (f Flow) String() string {
	if f.Proto == "eth" {
		return "ethertype " + f.Other
	}
	return fmt.Sprintf("%s %s > %s", f.Proto, f.Src, f.Dst)
}

// Reverse is the flow of the other direction.
func (f Flow) Reverse() Flow {
	f.Src, f.Dst = f.Dst, f.Src
	return f
}

// Conversation is the flow without direction: the lesser endpoint first.
func (f Flow) Conversation() Flow {
	if f.Dst.less(f.Src) {
		return f.Reverse()
	}
	return f
}

// frameLayers are the headers of a frame the demo reads, decoded in place.
type frameLayers struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	arp     layers.ARP
	decoded []gopacket.LayerType
}

// decodeFrame decodes data's headers. A cut or odd frame still yields the
// layers before the cut, with the error that stopped the decoding.
func decodeFrame(data []byte) (*frameLayers, error) {
	l := &frameLayers{}
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &l.eth, &l.dot1q, &l.ip4, &l.ip6, &l.tcp, &l.udp, &l.icmp4, &l.icmp6, &l.arp)
	p.IgnoreUnsupported = true
	err := p.DecodeLayers(data, &l.decoded)
	return l, err
}

// FlowOf decodes a frame's headers (it may be cut short) into its flow.
func FlowOf(data []byte) Flow {
	l, _ := decodeFrame(data)
	var fl Flow
	for _, lt := range l.decoded {
		switch lt {
		case layers.LayerTypeEthernet:
			fl = Flow{Proto: "eth", Other: fmt.Sprintf("%#04x", uint16(l.eth.EthernetType))}
		case layers.LayerTypeIPv4:
			src, _ := netip.AddrFromSlice(l.ip4.SrcIP.To4())
			dst, _ := netip.AddrFromSlice(l.ip4.DstIP.To4())
			fl = Flow{Proto: fmt.Sprintf("ip-%d", l.ip4.Protocol), Src: Endpoint{Addr: src}, Dst: Endpoint{Addr: dst}}
		case layers.LayerTypeIPv6:
			src, _ := netip.AddrFromSlice(l.ip6.SrcIP)
			dst, _ := netip.AddrFromSlice(l.ip6.DstIP)
			fl = Flow{Proto: fmt.Sprintf("ip-%d", l.ip6.NextHeader), Src: Endpoint{Addr: src}, Dst: Endpoint{Addr: dst}}
		case layers.LayerTypeTCP:
			fl.Proto, fl.Src.Port, fl.Dst.Port = "tcp", uint16(l.tcp.SrcPort), uint16(l.tcp.DstPort)
		case layers.LayerTypeUDP:
			fl.Proto, fl.Src.Port, fl.Dst.Port = "udp", uint16(l.udp.SrcPort), uint16(l.udp.DstPort)
		case layers.LayerTypeICMPv4:
			fl.Proto = "icmp"
		case layers.LayerTypeICMPv6:
			fl.Proto = "icmpv6"
		}
	}
	if fl.Proto == "" {
		fl = Flow{Proto: "eth", Other: "short"}
	}
	return fl
}

// Mismatch is one difference between a reference capture and the collectors' files.
type Mismatch struct {
	Flow   Flow
	Index  int // position of the frame within its flow
	Reason string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s, frame %d of the flow: %s", m.Flow, m.Index+1, m.Reason)
}

// byFlow groups frames by directional flow, keeping their order. Frames of one flow
// that come from several files (rotation, a backend failing over) are merged by
// time; within one file the file's order stands.
func byFlow(frames []Frame) map[Flow][]Frame {
	perFile := map[Flow]map[string][]Frame{}
	for _, f := range frames {
		fl := FlowOf(f.Data)
		if perFile[fl] == nil {
			perFile[fl] = map[string][]Frame{}
		}
		perFile[fl][f.File] = append(perFile[fl][f.File], f)
	}
	out := make(map[Flow][]Frame, len(perFile))
	for fl, files := range perFile {
		if len(files) == 1 {
			for _, fs := range files {
				out[fl] = fs
			}
			continue
		}
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		var all []Frame
		for _, n := range names {
			all = append(all, files[n]...)
		}
		sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
		out[fl] = all
	}
	return out
}

// Compare checks that got (the union of the collectors' files) holds exactly the
// frames of want (a tcpdump capture on the mirror source): per directional flow the
// same frames, byte for byte, with the same original lengths, in the same order.
// It returns every difference, nil when there is none.
func Compare(want, got []Frame) []Mismatch {
	w, g := byFlow(want), byFlow(got)
	var out []Mismatch
	for _, fl := range sortedFlows(w) {
		wf, gf := w[fl], g[fl]
		if len(gf) != len(wf) {
			out = append(out, Mismatch{fl, 0, fmt.Sprintf("%d frames collected, tcpdump captured %d", len(gf), len(wf))})
		}
		for i := 0; i < len(wf) && i < len(gf); i++ {
			switch {
			case gf[i].Length != wf[i].Length:
				out = append(out, Mismatch{fl, i, fmt.Sprintf("original length %d, tcpdump saw %d", gf[i].Length, wf[i].Length)})
			case !bytes.Equal(gf[i].Data, wf[i].Data):
				out = append(out, Mismatch{fl, i, fmt.Sprintf("bytes differ (%d captured, tcpdump kept %d)", len(gf[i].Data), len(wf[i].Data))})
			default:
				continue
			}
			break // after the first difference the rest of the flow is shifted: one line is enough
		}
	}
	for _, fl := range sortedFlows(g) {
		if _, ok := w[fl]; !ok {
			out = append(out, Mismatch{fl, 0, fmt.Sprintf("%d frames that tcpdump did not capture (in %s)", len(g[fl]), g[fl][0].File)})
		}
	}
	return out
}

func sortedFlows(m map[Flow][]Frame) []Flow {
	fls := make([]Flow, 0, len(m))
	for fl := range m {
		fls = append(fls, fl)
	}
	sort.Slice(fls, func(i, j int) bool { return fls[i].String() < fls[j].String() })
	return fls
}

// Placement says which targets received each directional flow.
func Placement(frames []Frame) map[Flow][]string {
	seen := map[Flow]map[string]bool{}
	for _, f := range frames {
		fl := FlowOf(f.Data)
		if seen[fl] == nil {
			seen[fl] = map[string]bool{}
		}
		seen[fl][f.Target] = true
	}
	out := map[Flow][]string{}
	for fl, ts := range seen {
		for t := range ts {
			out[fl] = append(out[fl], t)
		}
		sort.Strings(out[fl])
	}
	return out
}
