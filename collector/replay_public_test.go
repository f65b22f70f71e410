// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// Captures of GENEVE and ERSPAN that real senders (Open vSwitch, Google
// Cloud, Cisco and Arista switches) wrote, from tcpdump's test suite
// (testdata/public/README.md): senders nobody here wrote, replayed into a
// real `xmirror collect`.
var publicCaptures = []string{
	"geneve.pcap",               // OVS: VNI 10 with two options (critical bit), VNI 11 without
	"geneve-gcp.pcap",           // Google Cloud: an IPv4 payload (protocol type 0x0800), three options
	"erspan-type-i-3.pcap",      // ERSPAN type I: no sequence number, no ERSPAN header
	"erspan-type-ii-1.pcap",     // ERSPAN II, session 666, PIM inside
	"erspan-type-ii-2.pcap",     // ERSPAN II, session 1, HSRP inside
	"erspan-type-ii-3.pcap",     // ERSPAN II, session 101, STP and VLAN-tagged CDP inside
	"erspan-type-iii-ft-0.pcap", // ERSPAN III without a GRE sequence number, session 0, VLAN-tagged ICMP
}

// genevePort is where the collector's GENEVE input listens by default (IANA).
const genevePort = 6081

// tunnelPacket is one GENEVE datagram or GRE packet of a capture, read by
// the test's own parser (not the collector's), with what the collector must
// write for it.
type tunnelPacket struct {
	capture string
	frame   int    // 1-based, as tshark numbers it
	gre     bool   // GRE (sent on a raw socket); else GENEVE (UDP)
	payload []byte // what follows the outer IPv4 (GRE) or UDP (GENEVE) header
	session string // the collector's name for the session: geneve-N, erspan-N
	inner   []byte // the mirrored frame
	// etherType is set when the tunnel carried an IP packet, not a frame:
	// the collector writes it behind an Ethernet header of its own.
	etherType uint16
}

// readTunnelPackets reads every GENEVE (UDP 6081) and GRE packet of a pcap
// file with an Ethernet link and IPv4 outer headers.
func readTunnelPackets(t *testing.T, name string) []tunnelPacket {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "public", name))
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []tunnelPacket
	for n := 1; ; n++ {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tp, err := parseTunnelPacket(data)
		if err != nil {
			t.Fatalf("%s frame %d: %v", name, n, err)
		}
		tp.capture, tp.frame = name, n
		out = append(out, tp)
	}
}

// parseTunnelPacket reads one Ethernet frame carrying IPv4 GRE or UDP to
// 6081, following RFC 8926, RFC 2784/2890 and draft-foschiano-erspan.
func parseTunnelPacket(f []byte) (tunnelPacket, error) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return tunnelPacket{}, fmt.Errorf("not Ethernet/IPv4")
	}
	ip := f[14:]
	ihl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return tunnelPacket{}, fmt.Errorf("bad IPv4 lengths %d/%d", ihl, total)
	}
	l4 := ip[ihl:total]
	switch ip[9] {
	case syscall.IPPROTO_UDP:
		if len(l4) < 8 || binary.BigEndian.Uint16(l4[2:]) != genevePort {
			return tunnelPacket{}, fmt.Errorf("udp, not to the GENEVE port")
		}
		return parseGENEVE(l4[8:binary.BigEndian.Uint16(l4[4:])])
	case syscall.IPPROTO_GRE:
		return parseGRE(l4)
	}
	return tunnelPacket{}, fmt.Errorf("ip protocol %d", ip[9])
}

func parseGENEVE(g []byte) (tunnelPacket, error) {
	hlen := 8 + int(g[0]&0x3f)*4
	if g[0]>>6 != 0 || len(g) < hlen {
		return tunnelPacket{}, fmt.Errorf("geneve header")
	}
	tp := tunnelPacket{payload: g, inner: g[hlen:],
		session: fmt.Sprintf("geneve-%d", binary.BigEndian.Uint32(g[4:])>>8)}
	if pt := binary.BigEndian.Uint16(g[2:]); pt != 0x6558 {
		tp.etherType = pt
	}
	return tp, nil
}

func parseGRE(g []byte) (tunnelPacket, error) {
	flags, proto := binary.BigEndian.Uint16(g), binary.BigEndian.Uint16(g[2:])
	off := 4
	for _, bit := range []uint16{0x8000, 0x2000, 0x1000} { // checksum, key, sequence
		if flags&bit != 0 {
			off += 4
		}
	}
	tp := tunnelPacket{gre: true, payload: g}
	e := g[off:]
	switch {
	case proto == 0x88be && flags&0x1000 == 0: // type I
		tp.session, tp.inner = "erspan-0", e
	case proto == 0x88be && e[0]>>4 == 1: // type II
		tp.session, tp.inner = fmt.Sprintf("erspan-%d", binary.BigEndian.Uint16(e[2:])&0x3ff), e[8:]
	case proto == 0x22eb && e[0]>>4 == 2: // type III, with the platform sub-header when O is set
		hlen := 12
		if e[11]&1 != 0 {
			hlen += 8
		}
		tp.session, tp.inner = fmt.Sprintf("erspan-%d", binary.BigEndian.Uint16(e[2:])&0x3ff), e[hlen:]
	default:
		return tunnelPacket{}, fmt.Errorf("gre protocol %#04x flags %#04x", proto, flags)
	}
	return tp, nil
}

// TestPublicCapturesParse runs every datagram of the public captures through
// the collector's parsers (DecapGENEVE, DecapGRE): the session, the inner
// frame and the tunnel header must be what the test's own parser found.
func TestPublicCapturesParse(t *testing.T) {
	for _, name := range publicCaptures {
		for _, tp := range readTunnelPackets(t, name) {
			decap := DecapGENEVE
			if tp.gre {
				decap = DecapGRE
			}
			fr, reason := decap(tp.payload)
			if reason != ReasonNone {
				t.Errorf("%s frame %d: refused: %v", name, tp.frame, reason)
				continue
			}
			tunnel := tp.payload[:len(tp.payload)-len(tp.inner)]
			if fr.Key.String() != tp.session || !bytes.Equal(fr.Inner, tp.inner) || fr.EtherType != tp.etherType || !bytes.Equal(fr.Tunnel, tunnel) {
				t.Errorf("%s frame %d: session %s, %d-byte frame, ethertype %#04x, %d-byte tunnel header; want %s, %d, %#04x, %d",
					name, tp.frame, fr.Key, len(fr.Inner), fr.EtherType, len(fr.Tunnel), tp.session, len(tp.inner), tp.etherType, len(tunnel))
			}
			if fr.OrigLen < fr.capLen() {
				t.Errorf("%s frame %d: original length %d below the %d bytes captured", name, tp.frame, fr.OrigLen, fr.capLen())
			}
		}
	}
}

// TestReplayPublicCaptures replays the GENEVE datagrams and GRE packets of
// public captures into `xmirror collect` in a network namespace: GENEVE over
// UDP to 6081, GRE on a raw IPv4 socket of protocol 47, each from the
// sender's address to the collector's (the kernel writes fresh outer
// headers, so the outer destination and checksums are the lab's). Every
// inner frame must be in its session's file byte for byte, in order; tshark
// must dissect the written frames as it dissects them inside the original
// captures; and each packet's comment and direction flag must say what
// tshark reads in its GENEVE or ERSPAN header.
func TestReplayPublicCaptures(t *testing.T) {
	labtest.RequireRoot(t)
	var pkts []tunnelPacket
	for _, name := range publicCaptures {
		pkts = append(pkts, readTunnelPackets(t, name)...)
	}
	original := map[string][]string{} // capture: tshark's lines, shared by both paths
	for _, receive := range []string{ReceiveSocket, ReceiveXDP} {
		t.Run(receive, func(t *testing.T) {
			env := collectEnv{lab: newColLab(t, 0), receive: receive}
			dir := t.TempDir()
			p := env.start(t, "--input", "vxlan", "--input", "geneve", "--input", "gre", "--out", dir, "--format", "pcapng")
			replay(t, env, pkts)
			p.waitMetric(t, "xmirror_collector_packets_total", uint64(len(pkts)))
			if err := p.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("collector: %v", err)
			}
			checkSessions(t, dir, pkts, original)
		})
	}
}

// checkSessions checks that dir holds one file per session of pkts, each
// with the session's frames.
func checkSessions(t *testing.T, dir string, pkts []tunnelPacket, original map[string][]string) {
	t.Helper()
	written := sessionFiles(t, dir)
	want := map[string][]tunnelPacket{}
	for _, tp := range pkts {
		want[tp.session] = append(want[tp.session], tp)
	}
	if len(written) != len(want) {
		t.Errorf("sessions written %v, want %d sessions", keys(written), len(want))
	}
	for session, tps := range want {
		path, ok := written[session]
		if !ok {
			t.Errorf("session %s: no file (have %v)", session, keys(written))
			continue
		}
		checkSessionFile(t, path, tps, original)
	}
}

// replay sends every packet from the lab's sender to its collector.
func replay(t *testing.T, env collectEnv, pkts []tunnelPacket) {
	t.Helper()
	col := netip.MustParseAddr(labColAddr).As4()
	var geneve [][]byte
	err := env.lab.sender.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_GRE)
		if err != nil {
			return fmt.Errorf("raw gre socket: %w", err)
		}
		defer unix.Close(fd)
		for _, tp := range pkts {
			if !tp.gre {
				geneve = append(geneve, tp.payload)
				continue
			}
			if err := unix.Sendto(fd, tp.payload, 0, &unix.SockaddrInet4{Addr: col}); err != nil {
				return fmt.Errorf("send %s frame %d: %w", tp.capture, tp.frame, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	env.lab.send(t, &net.UDPAddr{IP: net.IP(col[:]), Port: genevePort}, geneve...)
}

// sessionFiles maps each session directory under dir to its one closed file.
func sessionFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files(t, dir) {
		session, _, _ := strings.Cut(f, string(filepath.Separator))
		if _, dup := out[session]; dup || strings.HasSuffix(f, ".part") {
			t.Fatalf("files %v: want one closed file per session", files(t, dir))
		}
		out[session] = filepath.Join(dir, f)
	}
	return out
}

// checkSessionFile compares a session's file with the frames sent for it:
// the bytes, then tshark's dissection against the original capture's
// (original caches tshark's lines of each capture).
func checkSessionFile(t *testing.T, path string, tps []tunnelPacket, original map[string][]string) {
	t.Helper()
	got, _ := readCapture(t, path)
	if len(got) != len(tps) {
		t.Errorf("%s: %d packets, want %d", path, len(got), len(tps))
		return
	}
	for i, tp := range tps {
		data := got[i].data
		if tp.etherType != 0 {
			// An IP payload is written behind a synthesized Ethernet header.
			if len(data) < 14 || binary.BigEndian.Uint16(data[12:]) != tp.etherType {
				t.Errorf("%s frame %d: written % x, want EtherType %#04x first", tp.capture, tp.frame, data[:min(len(data), 14)], tp.etherType)
				continue
			}
			data = data[14:]
		}
		if !bytes.Equal(data, tp.inner) {
			t.Errorf("%s frame %d: written frame differs from the mirrored one\n got % x\nwant % x", tp.capture, tp.frame, data, tp.inner)
		}
	}
	written := tsharkFields(t, path, append(dissectFields, metaFields...)...)
	for i, tp := range tps {
		if original[tp.capture] == nil {
			original[tp.capture] = tsharkFields(t, filepath.Join("testdata", "public", tp.capture), append(dissectFields, tunnelFields...)...)
		}
		got := strings.Split(written[i], "|")
		orig := strings.Split(original[tp.capture][tp.frame-1], "|")
		n := len(dissectFields)
		if want := innerDissection(orig[:n], tp); !equalDissection(got[:n], want, tp.etherType != 0) {
			t.Errorf("%s frame %d: tshark reads the written frame as\n %v\nand inside the capture as\n %v", tp.capture, tp.frame, got[:n], want)
		}
		if want := wantMeta(orig[n:]); !want.matches(got[n], got[n+1]) {
			t.Errorf("%s frame %d: comment %q, direction %q; from tshark's reading of the tunnel header: %+v",
				tp.capture, tp.frame, got[n], got[n+1], want)
		}
	}
}

// metaFields are what the collector keeps of the tunnel header in pcapng:
// the packet comment and the EPB direction (1 inbound, 2 outbound).
var metaFields = []string{"frame.comment", "frame.packet_flags_direction"}

// tunnelFields are tshark's reading of the tunnel headers in the original
// captures, the second opinion on what the comment and direction must say.
var tunnelFields = []string{"geneve.vni", "geneve.flags.critical", "geneve.proto_type", "geneve.option.class",
	"geneve.option.type", "geneve.option", "gre.proto", "gre.sequence_number", "erspan.version", "erspan.spanid", "erspan.vlan",
	"erspan.direction"}

// metaWant is what a packet's comment and direction must be: the comment
// exactly, or (ERSPAN, whose comment has fields tshark does not name) its
// start and end.
type metaWant struct {
	comment   string
	exact     bool
	end       string
	direction uint64 // epb_flags direction: 1 inbound, 2 outbound, 0 none
}

func (w metaWant) matches(comment, direction string) bool {
	if w.exact && comment != w.comment {
		return false
	}
	dir, _ := strconv.ParseUint(direction, 0, 32) // tshark: "0x00000001"
	return strings.HasPrefix(comment, w.comment) && strings.HasSuffix(comment, w.end) && dir == w.direction
}

// wantMeta is the comment and direction a packet must have, built from
// tshark's reading of its tunnel headers (tunnelFields), in the collector's
// comment format (docs/collector.md): "geneve vni=N [critical] [proto=0x…]
// opt=class:0x…,type:0x…,len:N,data:…", "erspan1", "erspan2 id=N vlan=N …
// seq=N", "erspan3 id=N vlan=N … dir=ingress|egress …".
func wantMeta(f []string) (want metaWant) {
	field := func(name string) string { return f[slices.Index(tunnelFields, name)] }
	switch {
	case field("geneve.vni") != "":
		vni, _ := strconv.ParseUint(field("geneve.vni"), 0, 32)
		c := fmt.Sprintf("geneve vni=%d", vni)
		if field("geneve.flags.critical") == "1" {
			c += " critical"
		}
		if pt := field("geneve.proto_type"); pt != "0x6558" {
			c += " proto=" + pt
		}
		if field("geneve.option.class") != "" {
			classes, types := strings.Split(field("geneve.option.class"), ","), strings.Split(field("geneve.option.type"), ",")
			data := strings.Split(field("geneve.option"), ",")
			for i := range classes {
				ty, _ := strconv.ParseUint(types[i], 0, 8)
				d := strings.ReplaceAll(data[i], ":", "")[8:] // tshark's option includes its 4-byte header
				c += fmt.Sprintf(" opt=class:%s,type:0x%02x,len:%d", classes[i], ty, len(d)/2)
				if d != "" {
					c += ",data:" + d
				}
			}
		}
		want.comment, want.exact = c, true
	case field("erspan.version") == "":
		want.comment = "erspan1"
	default:
		id, _ := strconv.ParseUint(field("erspan.spanid"), 0, 16)
		vlan, _ := strconv.ParseUint(field("erspan.vlan"), 0, 16)
		want.comment = fmt.Sprintf("erspan%d id=%d vlan=%d", map[string]int{"1": 2, "2": 3}[field("erspan.version")], id, vlan)
		if field("erspan.version") == "2" {
			want.direction = map[string]uint64{"0": 1, "1": 2}[field("erspan.direction")]
		}
	}
	if seq := field("gre.sequence_number"); seq != "" {
		want.end = " seq=" + seq
	}
	return want
}

// dissectFields are what tshark must read the same in the written frame
// and inside the original capture.
var dissectFields = []string{"frame.protocols", "eth.src", "eth.dst", "vlan.id", "ip.src", "ip.dst",
	"ip.proto", "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "icmp.type", "stp.root.hw", "_ws.malformed"}

// innerDissection is tshark's reading of tp's inner frame inside its
// original capture (f, of dissectFields): each field with the tunnel's
// outer values dropped.
func innerDissection(f []string, tp tunnelPacket) []string {
	f = slices.Clone(f)
	// The protocols behind the tunnel's: ...:geneve:eth:... or ...:erspan:eth:...
	for _, tun := range []string{":geneve:", ":erspan:"} {
		if _, after, ok := strings.Cut(f[0], tun); ok {
			f[0] = after
		}
	}
	outer := map[string]bool{"eth.src": true, "eth.dst": true, "ip.src": true, "ip.dst": true, "ip.proto": true}
	if !tp.gre {
		outer["udp.srcport"], outer["udp.dstport"] = true, true
	}
	for i, name := range dissectFields {
		if outer[name] {
			_, rest, _ := strings.Cut(f[i], ",")
			f[i] = rest
		}
	}
	return f
}

// equalDissection compares two readings; a frame the collector put behind
// its own Ethernet header has that header's fields and protocols in front.
func equalDissection(got, want []string, synthesized bool) bool {
	if len(got) != len(want) {
		return false
	}
	for i, name := range dissectFields {
		g := got[i]
		switch {
		case synthesized && name == "frame.protocols":
			g = strings.TrimPrefix(g, "eth:ethertype:")
		case synthesized && (name == "eth.src" || name == "eth.dst"):
			continue
		}
		if g != want[i] {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
