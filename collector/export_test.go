// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGzip: compress gzip turns each closed file into NAME.pcapng.gz that
// tshark reads; retention counts the compressed files and the post-rotate
// command gets their names.
func TestGzip(t *testing.T) {
	out, copies := t.TempDir(), t.TempDir()
	c := offline(t, Options{OutputDir: out, Compress: true, Keep: 2, PostRotate: "cp -t " + copies,
		Sessions: map[uint32]string{1: "s"}})
	cache := seriesCache{}
	for i := 0; i < 3; i++ {
		for j := 0; j < 5; j++ {
			c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Second).UnixNano(),
				vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, uint32(j), 0, make([]byte, 100))))
		}
		c.Rotate()
	}
	got := files(t, out)
	if strings.Join(got, " ") != "s/s-20260102T100011Z.pcapng.gz s/s-20260102T100012Z.pcapng.gz" {
		t.Fatalf("files %v, want the two newest, compressed", got)
	}
	c.tick() // the storage metrics count the compressed files
	var size int64
	for _, f := range got {
		info, _ := os.Stat(filepath.Join(out, f))
		size += info.Size()
	}
	if n, b := c.disk.files.Load(), c.disk.bytes.Load(); n != 2 || b != size || c.disk.free.Load() <= 0 {
		t.Errorf("stored_files %d, stored_bytes %d, free %d; want 2, %d, > 0", n, b, c.disk.free.Load(), size)
	}
	if cp := files(t, copies); len(cp) != 3 || !strings.HasSuffix(cp[0], ".pcapng.gz") {
		t.Errorf("post-rotate saw %v, want the three .gz files", cp)
	}
	for _, f := range got {
		if lines := tsharkFields(t, filepath.Join(out, f), "frame.len"); len(lines) != 5 {
			t.Errorf("%s: tshark read %d packets, want 5", f, len(lines))
		}
		raw, _ := os.ReadFile(filepath.Join(out, f))
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if countPackets(plain, FormatPcapng) != 5 {
			t.Errorf("%s: %d packets", f, countPackets(plain, FormatPcapng))
		}
	}
}

// isbs returns the interface statistics blocks of a pcapng file:
// interface id -> {received, dropped}.
func isbs(t *testing.T, raw []byte) map[uint32][2]uint64 {
	t.Helper()
	out := map[uint32][2]uint64{}
	for off := 0; off+12 <= len(raw); off += int(le.Uint32(raw[off+4:])) {
		if le.Uint32(raw[off:]) != ngBlockISB {
			continue
		}
		n := int(le.Uint32(raw[off+4:]))
		blk := raw[off : off+n]
		var st [2]uint64
		for o := 20; o+4 <= n-4; {
			code, l := le.Uint16(blk[o:]), int(le.Uint16(blk[o+2:]))
			if code == ngOptEnd {
				break
			}
			switch code {
			case ngOptISBIfRecv:
				st[0] = le.Uint64(blk[o+4:])
			case ngOptISBIfDrop:
				st[1] = le.Uint64(blk[o+4:])
			}
			o += 4 + pad4(l)
		}
		out[le.Uint32(blk[8:])] = st
	}
	return out
}

// TestStatisticsBlocks: a closed pcapng file ends with one interface
// statistics block per mirror source, whose received and dropped counts
// are those of /metrics; the interfaces' snaplen is the session's packet
// length.
func TestStatisticsBlocks(t *testing.T) {
	out := t.TempDir()
	c := offline(t, Options{OutputDir: out, Sessions: map[uint32]string{1: "s"}, PacketLengths: map[uint32]int{1: 96}})
	cache := seriesCache{}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	fr := vxlan(1, tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 40)))
	for i := 0; i < 7; i++ {
		c.handle(cache, a, t0.UnixNano(), fr)
	}
	c.diskLow.Store(true) // pause: 2 of b's packets and 1 of a's dropped
	c.handle(cache, b, t0.UnixNano(), fr)
	c.handle(cache, b, t0.UnixNano(), fr)
	c.handle(cache, a, t0.UnixNano(), fr)
	c.diskLow.Store(false)
	for i := 0; i < 3; i++ {
		c.handle(cache, b, t0.UnixNano(), fr)
	}
	c.Rotate()
	path := onlyFile(t, out, "")
	raw, _ := os.ReadFile(path)
	_, ifs := readCapture(t, path)
	if len(ifs) != 2 || ifs[0].SnapLength != 96 || ifs[1].SnapLength != 96 {
		t.Errorf("interfaces %+v, want two of snaplen 96", ifs)
	}
	var metrics bytes.Buffer
	c.set.WritePrometheus(&metrics)
	st := isbs(t, raw)
	for id, src := range map[uint32]string{0: "10.0.0.1", 1: "10.0.0.2"} {
		line := fmt.Sprintf(`xmirror_collector_source_packets_total{session="s",source=%q} %d`, src, st[id][0])
		if !strings.Contains(metrics.String(), line) {
			t.Errorf("interface %d: received %d, not in /metrics:\n%s", id, st[id][0], metrics.String())
		}
	}
	if st[0] != [2]uint64{8, 1} || st[1] != [2]uint64{5, 2} {
		t.Errorf("statistics %v, want {0: 8 received 1 dropped, 1: 5 received 2 dropped}", st)
	}
	if !strings.Contains(metrics.String(), `xmirror_collector_session_drops_total{session="s",vni="1"} 3`) {
		t.Errorf("session drops not 3 in /metrics")
	}
	if lines := tsharkFields(t, path, "frame.len"); len(lines) != 10 {
		t.Errorf("tshark read %d packets, want 10", len(lines))
	}
}

// TestSourceSeriesCap: beyond MaxSourceSeries across all sessions, new
// mirror sources count as source="other"; the series come back when an
// idle session is forgotten.
func TestSourceSeriesCap(t *testing.T) {
	clock := &fakeClock{t: t0}
	c := offline(t, Options{OutputDir: t.TempDir(), MaxSourceSeries: 10, SessionIdle: time.Minute, Now: clock.Now})
	cache := seriesCache{}
	fr := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, nil)
	for vni := uint32(1); vni <= 50; vni++ {
		for i := 0; i < 20; i++ {
			c.handle(cache, netip.AddrFrom4([4]byte{10, 0, byte(vni), byte(i)}), t0.UnixNano(), vxlan(vni, fr))
		}
	}
	count := func() (sources, others int) {
		var b bytes.Buffer
		c.set.WritePrometheus(&b)
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "xmirror_collector_source_packets_total{") {
				sources++
				if strings.Contains(l, `source="other"`) {
					others++
				}
			}
		}
		return
	}
	if s, o := count(); s != 10+50 || o != 50 {
		t.Errorf("%d source series (%d other), want 10 plus one other for each of the 50 sessions", s, o)
	}
	c.Rotate()
	if st := c.Stats(); st.Written != 1000 {
		t.Errorf("written %d, want all 1000", st.Written)
	}
	clock.Set(t0.Add(2 * time.Minute))
	c.tick()
	if s, _ := count(); s != 0 || c.sourceSeries.Load() != 0 {
		t.Errorf("after the sessions went idle: %d series, %d counted", s, c.sourceSeries.Load())
	}
}
