// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestProcessInputs runs the real binary with collector.inputs and
// collector.sessions from its configuration, in a lab, on both receive
// paths: GENEVE (0, 1 and many options, the critical bit, an IPv4 payload),
// ERSPAN II and III (with and without the platform sub-header) and GRE
// bridging, sent from another namespace over UDP and a raw socket. The
// files hold the inner frames byte for byte, one series per (protocol, id),
// tshark dissects them as it dissects the originals, malformed headers are
// counted by reason, and SIGHUP renames a GENEVE session.
func TestProcessInputs(t *testing.T) { inputPaths(t, testProcessInputs) }

func testProcessInputs(t *testing.T, env collectEnv) {
	out := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "xmirror.yaml")
	writeConfig := func(gwlb string) {
		yaml := fmt.Sprintf(`collector:
  output_dir: %s
  inputs: [vxlan, geneve, {protocol: gre}]
  sessions:
    - {name: %s, protocol: geneve, id: 7}
    - {name: core-switch, protocol: erspan, id: 100, packet_length: 128}
`, out, gwlb)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("gwlb")
	p := env.start(t, "--config", cfg)
	frame := func(seq uint32) []byte {
		return tcpFrame(t, ipSource, ipTest, 1234, 57032, seq, 2, []byte(fmt.Sprintf("segment %d\n", seq)))
	}
	opt := []geneveOpt{{0x0101, 0x80, []byte{1, 2, 3, 4}}}
	many := []geneveOpt{{1, 1, make([]byte, 64)}, {2, 2, nil}, {0x0108, 3, make([]byte, 8)}}
	sub := []byte{erspanPlatfTime << 2, 0, 0, 1, 0x65, 0x8f, 0x2b, 0x00}
	want := map[string][][]byte{
		"gwlb":        {frame(1), frame(2), frame(3)},
		"geneve-8":    {frame(4)},
		"core-switch": {frame(5), frame(6)},
		"erspan-200":  {frame(7)},
		"gre-42":      {frame(8)},
	}
	geneveTo := labUDP(DefaultGenevePort)
	env.send(t, labSenderAddr, geneveTo,
		geneve(7, etherTypeTEB, 0, nil, frame(1)),
		geneve(7, etherTypeTEB, geneveFlagCrit, opt, frame(2)),
		geneve(7, etherTypeTEB, 0, many, frame(3)),
		geneve(8, etherTypeIPv4, 0, nil, frame(4)[ethHeaderLen:]),
		append([]byte{0x40, 0, 0x65, 0x58, 0, 0, 7, 0}, frame(9)...)) // version 1
	env.sendGRE(t,
		erspan2(t, 1, 100, 10, 0, 3, frame(5)),
		erspan3(t, 2, erspan3Hdr{id: 100, gra: gra1588, ts: 7, sub: sub, egress: true}, frame(6)),
		erspan3(t, 3, erspan3Hdr{id: 200, vlan: 5}, frame(7)),
		gre(t, true, u32p(42), u32p(4), etherTypeTEB, frame(8)),
		[]byte{0x40, 0, 0x65, 0x58}) // routing bit
	p.waitMetric(t, "xmirror_collector_received_total", 10)
	p.waitMetric(t, "xmirror_collector_packets_total", 8)
	for reason, n := range map[string]uint64{"geneve_version": 1, "gre_header": 1} {
		if got := p.metric(t, `xmirror_collector_drops_total{reason="`+reason+`"}`); got != n {
			t.Errorf("drops %s: %d, want %d", reason, got, n)
		}
	}
	if got := p.metric(t, `xmirror_collector_packets_total{session="gwlb",protocol="geneve",id="7"}`); got != 3 {
		t.Errorf("packets of gwlb: %d, want 3", got)
	}

	writeConfig("aws-gwlb")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "sessions reloaded")
	env.send(t, labSenderAddr, geneveTo, geneve(7, etherTypeTEB, 0, nil, frame(10)))
	want["aws-gwlb"] = [][]byte{frame(10)}
	p.waitMetric(t, `xmirror_collector_packets_total{session="aws-gwlb",protocol="geneve",id="7"}`, 1)
	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for session, frames := range want {
		checkProcessSession(t, onlyFile(t, filepath.Join(out, session), session), frames, session == "geneve-8")
	}
}

// checkProcessSession checks a session's file: the frames in order, byte
// for byte (with synth, their IP packets behind the collector's Ethernet
// header), and tshark's dissection of the inner IP and TCP the same as of
// the originals.
func checkProcessSession(t *testing.T, path string, frames [][]byte, synth bool) {
	t.Helper()
	pkts, _ := readCapture(t, path)
	if len(pkts) != len(frames) {
		t.Fatalf("%s: %d packets, want %d", path, len(pkts), len(frames))
	}
	for i, p := range pkts {
		want := frames[i]
		if synth {
			want = append(binary.BigEndian.AppendUint16(make([]byte, 12), etherTypeIPv4), want[ethHeaderLen:]...)
		}
		if !bytes.Equal(p.data, want) {
			t.Errorf("%s: packet %d differs from what was sent", path, i+1)
		}
	}
	orig := filepath.Join(t.TempDir(), "original.pcap")
	f, err := os.Create(orig)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	_ = w.WriteFileHeader(65536, layers.LinkTypeEthernet)
	for i, fr := range frames {
		ci := pkts[i].ci
		ci.CaptureLength, ci.Length = len(fr), len(fr)
		if err := w.WritePacket(ci, fr); err != nil {
			t.Fatal(err)
		}
	}
	_ = f.Close()
	fields := []string{"ip.src", "ip.dst", "ip.len", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.flags", "tcp.payload"}
	got, wantLines := tsharkFields(t, path, fields...), tsharkFields(t, orig, fields...)
	if fmt.Sprint(got) != fmt.Sprint(wantLines) {
		t.Errorf("%s: tshark reads\n%q\nfrom the originals\n%q", path, got, wantLines)
	}
}
