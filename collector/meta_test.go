// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFrameMeta: the comment, direction flag and time each tunnel header
// gives its packet.
func TestFrameMeta(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	secs := binary.BigEndian.AppendUint32([]byte{erspanPlatfTime << 2, 0, 0, 0}, 1_700_000_000)
	cases := []struct {
		name    string
		decap   Decapper
		in      []byte
		comment string
		flags   uint32
		time    int64
	}{
		{"VXLAN: nothing", Decap, vxlan(1, full), "", 0, 0},
		{"GENEVE, OAM, two options", DecapGENEVE,
			geneve(7, etherTypeTEB, geneveFlagOAM, []geneveOpt{{0x0108, 1, []byte{0, 0, 0, 9}}, {0x0108, 2, nil}}, full),
			"geneve vni=7 oam opt=class:0x0108,type:0x01,len:4,data:00000009 opt=class:0x0108,type:0x02,len:0", 0, 0},
		{"ERSPAN I", DecapGRE, gre(t, false, nil, nil, greProtoERSPAN, full), "erspan1", 0, 0},
		{"ERSPAN II", DecapGRE, erspan2(t, 9, 1023, 4095, 7, 0xfffff, full), "erspan2 id=1023 vlan=4095 cos=7 en=0 index=1048575 seq=9", 0, 0},
		{"ERSPAN III ingress, 100us: receive time", DecapGRE, erspan3(t, 1, erspan3Hdr{id: 5, ts: 123456, sgt: 77, truncated: true}, full),
			"erspan3 id=5 vlan=0 cos=0 bso=0 truncated dir=ingress hwid=0 sgt=77 ft=0 gra=100us ts=123456 seq=1", epbInbound, 0},
		{"ERSPAN III egress, IEEE 1588 with seconds: the switch's time", DecapGRE,
			erspan3(t, 1, erspan3Hdr{id: 5, gra: gra1588, ts: 999_999_999, sub: secs, egress: true}, full),
			"erspan3 id=5 vlan=0 cos=0 bso=0 dir=egress hwid=0 sgt=0 ft=0 gra=ieee1588 ts=999999999 platf=3 info=0x0c0000006553f100 seq=1",
			epbOutbound, 1_700_000_000*1e9 + 999_999_999},
		{"ERSPAN III, IEEE 1588 without seconds: receive time", DecapGRE, erspan3(t, 1, erspan3Hdr{id: 5, gra: gra1588, ts: 5}, full),
			"erspan3 id=5 vlan=0 cos=0 bso=0 dir=ingress hwid=0 sgt=0 ft=0 gra=ieee1588 ts=5 seq=1", epbInbound, 0},
		{"ERSPAN III, nanoseconds out of range: receive time", DecapGRE,
			erspan3(t, 1, erspan3Hdr{id: 5, gra: gra1588, ts: 1e9, sub: secs}, full),
			"erspan3 id=5 vlan=0 cos=0 bso=0 dir=ingress hwid=0 sgt=0 ft=0 gra=ieee1588 ts=1000000000 platf=3 info=0x0c0000006553f100 seq=1", epbInbound, 0},
		{"GRE bridging", DecapGRE, gre(t, true, u32p(42), u32p(7), etherTypeTEB, full), "gre key=42 seq=7", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr, r := tc.decap(tc.in)
			if r != ReasonNone {
				t.Fatal(r)
			}
			m := frameMeta(nil, &fr)
			if string(m.comment) != tc.comment || m.flags != tc.flags || m.time != tc.time {
				t.Errorf("comment %q flags %d time %d\nwant    %q flags %d time %d", m.comment, m.flags, m.time, tc.comment, tc.flags, tc.time)
			}
		})
	}
}

// TestERSPANTimeInPcap: a classic pcap file has no comment, but an
// absolute ERSPAN III time is still the packet's time.
func TestERSPANTimeInPcap(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Format: FormatPcap})
	secs := binary.BigEndian.AppendUint32([]byte{erspanPlatfTime << 2, 0, 0, 0}, 1_700_000_000)
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	c.handleWith(DecapGRE, seriesCache{}, loopback, t0.UnixNano(),
		erspan3(t, 1, erspan3Hdr{id: 5, gra: gra1588, ts: 42, sub: secs}, full))
	c.Rotate()
	pkts, _ := readCapture(t, onlyFile(t, out, "erspan-5/"))
	if len(pkts) != 1 || !pkts[0].ci.Timestamp.Equal(time.Unix(1_700_000_000, 42)) {
		t.Fatalf("packets %+v", pkts)
	}
}

// TestLiveMeta: the live pcapng stream (--write) carries the same
// comments and direction flags as the files.
func TestLiveMeta(t *testing.T) {
	var live bytes.Buffer
	c := offline(t, Options{OutputDir: t.TempDir(), Live: &live})
	full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	c.handleWith(DecapGRE, seriesCache{}, loopback, t0.UnixNano(), erspan3(t, 4, erspan3Hdr{id: 6, egress: true}, full))
	if err := c.Close(); err != nil { // stops the live writer after it wrote everything
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "live.pcapng")
	if err := os.WriteFile(path, live.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tsharkFields(t, path, "frame.comment", "frame.packet_flags_direction", "frame.interface_name")
	want := "erspan3 id=6 vlan=0 cos=0 bso=0 dir=egress hwid=0 sgt=0 ft=0 gra=100us ts=0 seq=4|0x00000002|127.0.0.1/erspan6"
	if len(got) != 1 || got[0] != want {
		t.Errorf("tshark reads %q, want %q", got, want)
	}
}
