// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestDecap(t *testing.T) {
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("source to test\n"))
	cut := full[:40] // Ethernet + IPv4 + 6 bytes of TCP
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = udp.SetNetworkLayerForChecksum(ip6)
	vlan := serialize(t,
		&layers.Ethernet{SrcMAC: macSource, DstMAC: macTest, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv6},
		ip6, udp, gopacket.Payload(make([]byte, 200)))
	// Three tags: a frame received with 802.1ad and two 802.1Q tags, whose
	// outermost the kernel kept in metadata and the source put back in place
	// (docs/source.md, VLAN tags): the source mirrors it, cut.
	tag3 := serialize(t,
		&layers.Ethernet{SrcMAC: macSource, DstMAC: macTest, EthernetType: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 1, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 2, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 3, Type: layers.EthernetTypeIPv6},
		ip6, udp, gopacket.Payload(make([]byte, 3000)))
	// A minimum-size Ethernet frame: 60 bytes with padding after a short
	// IPv4 packet; the IP length says less than what was captured.
	padded := append(tcpFrame(t, ipSource, ipTest, 1, 2, 0, 0, nil), make([]byte, 6)...)

	cases := []struct {
		name    string
		in      []byte
		reason  Reason
		vni     uint32
		inner   []byte
		origLen int
	}{
		{"empty", nil, ReasonShort, 0, nil, 0},
		{"short header", []byte{0x08, 0, 0, 0, 0, 0, 1}, ReasonShort, 0, nil, 0},
		{"no I flag", append([]byte{0x00, 0, 0, 0, 0, 0, 1, 0}, full...), ReasonBadFlags, 0, nil, 0},
		{"GPE-like flags without I", append([]byte{0x0c ^ 0x08, 0, 0, 0, 0, 0, 1, 0}, full...), ReasonBadFlags, 0, nil, 0},
		{"short inner", vxlan(1, full[:13]), ReasonShortInner, 0, nil, 0},
		{"whole frame", vxlan(1, full), ReasonNone, 1, full, len(full)},
		{"max VNI", vxlan(0xffffff, full), ReasonNone, 0xffffff, full, len(full)},
		{"reserved bits ignored (RFC 7348)", append([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 7, 0xff}, full...), ReasonNone, 7, full, len(full)},
		{"cut frame: IPv4 length", vxlan(1, cut), ReasonNone, 1, cut, len(full)},
		{"cut before the IP length", vxlan(1, full[:16]), ReasonNone, 1, full[:16], 16},
		{"VLAN + IPv6, cut", vxlan(3, vlan[:96]), ReasonNone, 3, vlan[:96], len(vlan)},
		{"three VLAN tags + IPv6, cut", vxlan(3, tag3[:200]), ReasonNone, 3, tag3[:200], len(tag3)},
		{"Ethernet padding", vxlan(1, padded), ReasonNone, 1, padded, len(padded)},
		{"not IP", vxlan(1, append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06}, make([]byte, 28)...)), ReasonNone, 1, nil, 42},
		{"bad IP version", vxlan(1, append(append([]byte{}, full[:14]...), 0x65, 0, 0xff, 0xff)), ReasonNone, 1, nil, 18},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fr, r := Decap(tc.in)
			if r != tc.reason {
				t.Fatalf("reason %v, want %v", r, tc.reason)
			}
			if r != ReasonNone {
				return
			}
			if fr.Key.ID != tc.vni {
				t.Errorf("VNI %d, want %d", fr.Key.ID, tc.vni)
			}
			if tc.inner != nil && !bytes.Equal(fr.Inner, tc.inner) {
				t.Errorf("inner frame differs")
			}
			if fr.OrigLen != tc.origLen {
				t.Errorf("original length %d, want %d", fr.OrigLen, tc.origLen)
			}
		})
	}
}

func TestReasonNames(t *testing.T) {
	for r := Reason(0); r < numReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"mirror-session-01": "mirror-session-01",
		"../../etc":         "_.._etc",
		"..":                "",
		".hidden":           "hidden",
		"a/b\\c":            "a_b_c",
		"tab\there\x00":     "tab_here_",
		"":                  "",
		"ünï":               "__n__",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecap feeds arbitrary datagrams to the decapsulation: it must never
// panic, and what it accepts must be consistent.
func FuzzDecap(f *testing.F) {
	f.Add(vxlan(1, tcpFrame(f, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello"))))
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0, 1, 0x86, 0xdd, 0x60})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, r := Decap(b)
		if r != ReasonNone {
			return
		}
		if len(fr.Inner) < ethHeaderLen || len(fr.Inner) != len(b)-vxlanHeaderLen {
			t.Fatalf("inner length %d from %d bytes", len(fr.Inner), len(b))
		}
		if fr.OrigLen < len(fr.Inner) || fr.OrigLen > len(fr.Inner)+0x10000+ipv6HeaderLen+22 {
			t.Fatalf("original length %d for %d captured", fr.OrigLen, len(fr.Inner))
		}
		if fr.Key.ID > 0xffffff {
			t.Fatalf("VNI %d", fr.Key.ID)
		}
	})
}

// FuzzValidPrefix checks the crash-recovery walk over arbitrary files.
func FuzzValidPrefix(f *testing.F) {
	ng := appendNgSHB(nil, sectionInfo{Application: "x"})
	ng = appendNgIDB(ng, "a", "b", 0)
	ng = appendNgEPB(ng, 0, 1, []byte{1, 2, 3}, 3, nil)
	f.Add(ng, false)
	f.Add(appendPcapRecord(appendPcapHeader(nil), 1, []byte{1, 2}, 2), true)
	f.Fuzz(func(t *testing.T, b []byte, pcap bool) {
		format := FormatPcapng
		if pcap {
			format = FormatPcap
		}
		n := validPrefix(b, format)
		if n < 0 || n > len(b) {
			t.Fatalf("prefix %d of %d", n, len(b))
		}
		if n > 0 && validPrefix(b[:n], format) != n {
			t.Fatalf("prefix of the prefix differs")
		}
		if k := countPackets(b[:n], format); k < 0 || k > n/12 {
			t.Fatalf("%d packets in %d bytes", k, n)
		}
		// The streamed walk of recovery agrees with the count.
		if sn, k, err := scanCapture(bytes.NewReader(b), format); int(sn) != n || k != countPackets(b[:n], format) || err != nil {
			t.Fatalf("scanCapture: %d bytes, %d packets, %v; want %d bytes, %d packets", sn, k, err, n, countPackets(b[:n], format))
		}
	})
}

// FuzzFileName: every template CheckFileName accepts names files that its
// namer recognises again, in start-time and sequence order.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{DefaultFileName, "{time}", "{host}_{vni}_{session}_{time}.x", "{time}-{time}", "a/{time}",
		"{protocol}-{id}-{time}"} {
		f.Add(s, "sess-1", "host.a", uint32(7), 3)
	}
	f.Fuzz(func(t *testing.T, tmpl, session, host string, id uint32, seq int) {
		proto := Protocol(id % uint32(numProtocols)) // every protocol, from the same corpus
		session, host = SanitizeName(session), SanitizeName(host)
		if CheckFileName(tmpl) != nil || session == "" || host == "" || seq < 0 || seq > 1e6 {
			return
		}
		n := newFileNamer(tmpl, session, host, Key{Proto: proto, ID: id}, ".pcapng")
		name := n.name(t0, seq)
		if strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
			t.Fatalf("%q made %q", tmpl, name)
		}
		k1, ok1 := n.key(name)
		k2, ok2 := n.key(n.name(t0.Add(time.Second), 0) + gzExt)
		if !ok1 || !ok2 || k1 >= k2 {
			t.Fatalf("%q: %q -> %q %v, next second %q %v", tmpl, name, k1, ok1, k2, ok2)
		}
	})
}

// FuzzHandle runs arbitrary datagrams through the whole per-packet path into
// a real file: every datagram is written or counted as dropped, and the file
// stays readable.
func FuzzHandle(f *testing.F) {
	f.Add(vxlan(1, tcpFrame(f, ipSource, ipTest, 1234, 57032, 1, 2, []byte("hello"))))
	f.Add([]byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0x81, 0x00})
	out := f.TempDir()
	c, err := New(Options{Listen: "127.0.0.1:0", Readers: 1, OutputDir: out, MaxSessions: 16, RotateSize: 1 << 20, Keep: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	cache := seriesCache{}
	var n uint64
	f.Fuzz(func(t *testing.T, b []byte) {
		c.handle(cache, loopback, int64(n), b)
		n++
		c.Rotate()
		st := c.Stats()
		var drops uint64
		for _, d := range st.Drops {
			drops += d
		}
		if st.Written+drops != n {
			t.Fatalf("%d datagrams, %d written, %d dropped", n, st.Written, drops)
		}
	})
}
