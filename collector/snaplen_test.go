// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
)

// overSnap returns the packets of a pcapng (one section) that hold more
// bytes than the snap length their interface declares, as "if N: caplen >
// snaplen" strings.
func overSnap(t *testing.T, raw []byte) (bad []string, ifs int) {
	t.Helper()
	var snaps []uint32
	for off := 0; off+12 <= len(raw); {
		typ := binary.LittleEndian.Uint32(raw[off:])
		n := int(binary.LittleEndian.Uint32(raw[off+4:]))
		if n < 12 || off+n > len(raw) {
			t.Fatalf("block at %d: length %d of %d", off, n, len(raw))
		}
		switch typ {
		case ngBlockIDB:
			snaps = append(snaps, binary.LittleEndian.Uint32(raw[off+12:]))
		case 6: // enhanced packet block
			id := binary.LittleEndian.Uint32(raw[off+8:])
			caplen := binary.LittleEndian.Uint32(raw[off+20:])
			if int(id) >= len(snaps) {
				t.Fatalf("packet on interface %d of %d", id, len(snaps))
			}
			if caplen > snaps[id] {
				bad = append(bad, fmt.Sprintf("if %d: %d > %d", id, caplen, snaps[id]))
			}
		}
		off += n
	}
	return bad, len(snaps)
}

// lockedBuffer collects the live stream.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	return len(p), nil
}

// TestFramesLongerThanPacketLength: a session whose packet_length is 96
// receives whole frames (an AWS mirror session with its own packet length,
// a source whose configuration changed first). Its file declared snaplen
// 96 and then held 200-byte packets, and the live stream mixed interfaces
// of snaplen 96 and 262144: tcpdump stopped at the first such packet
// ("invalid packet capture length 200, bigger than snaplen of 96") or
// interface ("an interface has a snapshot length 262144 different from the
// snapshot length of the first interface"). Now the first longer frame
// starts a new file that declares whole frames, the live stream declares
// whole frames for every interface, and the collector cuts nothing.
func TestFramesLongerThanPacketLength(t *testing.T) {
	out := t.TempDir()
	live := &lockedBuffer{}
	c := offline(t, Options{OutputDir: out, Live: live, Sessions: map[uint32]string{1: "s", 2: "w"},
		PacketLengths: map[uint32]int{1: 96}})
	cache := seriesCache{}
	whole := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, make([]byte, 146))
	sizes := []int{96, 96, len(whole), 96, len(whole)}
	for i, n := range sizes {
		c.handle(cache, loopback, t0.Add(time.Duration(i)*time.Millisecond).UnixNano(), vxlan(1, whole[:n]))
	}
	c.handle(cache, loopback, t0.Add(time.Second).UnixNano(), vxlan(2, whole))
	c.Rotate()
	tcpdump := func(what, path string) {
		if _, err := exec.LookPath("tcpdump"); err != nil {
			return
		}
		if out, err := exec.Command("tcpdump", "-nr", path).CombinedOutput(); err != nil {
			t.Errorf("%s: tcpdump -r: %v\n%s", what, err, out)
		}
	}
	var got []int
	names := files(t, filepath.Join(out, "s"))
	namer := c.namer("s", Key{})
	sort.Slice(names, func(i, j int) bool {
		a, _ := namer.key(names[i])
		b, _ := namer.key(names[j])
		return a < b
	})
	if len(names) != 2 {
		t.Errorf("files %v, want two: the one declaring 96, then one declaring whole frames", names)
	}
	for _, f := range names {
		path := filepath.Join(out, "s", f)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bad, _ := overSnap(t, raw); len(bad) > 0 {
			t.Errorf("%s: packets longer than their interface's snap length: %v", f, bad)
		}
		pkts, _ := readCapture(t, path)
		for _, p := range pkts {
			got = append(got, len(p.data))
		}
		tcpdump(f, path)
	}
	if fmt.Sprint(got) != fmt.Sprint(sizes) {
		t.Errorf("files hold frames of %v bytes, want %v: all, as sent", got, sizes)
	}
	var stream []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		live.mu.Lock()
		stream = append(stream[:0], live.b...)
		live.mu.Unlock()
		if countPackets(stream, FormatPcapng) == len(sizes)+1 {
			break
		}
	}
	if n := countPackets(stream, FormatPcapng); n != len(sizes)+1 {
		t.Errorf("live stream: %d packets, want %d", n, len(sizes)+1)
	}
	if bad, _ := overSnap(t, stream); len(bad) > 0 {
		t.Errorf("live stream: packets longer than their interface's snap length: %v", bad)
	}
	path := filepath.Join(t.TempDir(), "live.pcapng")
	if err := os.WriteFile(path, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	tcpdump("live stream", path)
}

// TestLiveStreamInterfaceCap: sessions keep coming and going for longer
// than the live stream has interface blocks for (65,536 (session, source)
// pairs; a pcapng section cannot take one back). Every packet of a new
// pair is then dropped from the stream, and was dropped with nothing
// logged: a day-long `--write - | wireshark` with VNI churn went blind to
// new sessions, and live_drops_total read like a slow reader. Now it is
// logged, once.
func TestLiveStreamInterfaceCap(t *testing.T) {
	defer func(n int) { maxLiveInterfaces = n }(maxLiveInterfaces)
	maxLiveInterfaces = 4
	live := &lockedBuffer{}
	var log netlab.SyncBuffer
	c := offline(t, Options{Live: live, Logger: textLogger(&log)})
	cache := seriesCache{}
	for vni := range uint32(10) {
		c.handle(cache, loopback, t0.Add(time.Duration(vni)*time.Millisecond).UnixNano(),
			vxlan(vni+1, tcpFrame(t, ipSource, ipTest, 1, 2, vni, 4, nil)))
	}
	if d := c.live.drops.Get(); d != 6 {
		t.Errorf("live drops %d, want 6", d)
	}
	if n := strings.Count(log.String(), "live output: interface limit reached"); n != 1 {
		t.Errorf("the limit logged %d times, want once:\n%s", n, log.String())
	}
}
