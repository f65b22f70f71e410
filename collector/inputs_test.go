// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"encoding/binary"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// inputPaths runs a test of the GENEVE and GRE inputs in a lab (GRE reads
// every packet of IP protocol 47 in its namespace, so it gets one of its
// own) against both receive paths of VXLAN.
func inputPaths(t *testing.T, fn func(t *testing.T, env collectEnv)) {
	for _, r := range []string{ReceiveSocket, ReceiveXDP} {
		t.Run(r, func(t *testing.T) { fn(t, collectEnv{lab: newColLab(t, 0), receive: r}) })
	}
}

// sendGRE sends each packet as the payload of an IPv4 packet of protocol
// 47 from the lab's sender to the collector.
func (env collectEnv) sendGRE(t *testing.T, pkts ...[]byte) {
	t.Helper()
	err := env.lab.sender.Do(func() error {
		conn, err := net.DialIP("ip4:gre", &net.IPAddr{IP: net.ParseIP(labSenderAddr)}, &net.IPAddr{IP: net.ParseIP(labColAddr)})
		if err != nil {
			return err
		}
		defer conn.Close()
		for _, p := range pkts {
			if _, err := conn.Write(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send gre: %v", err)
	}
}

// TestInputs: GENEVE (options, critical bit, an IPv4 payload) and GRE
// (ERSPAN I, II, III with an IEEE 1588 timestamp, bridging with a key)
// beside VXLAN, sent from another namespace: sessions split by protocol
// and id, inner frames byte for byte, metadata in the pcapng blocks,
// malformed headers counted by reason.
func TestInputs(t *testing.T) { inputPaths(t, testInputs) }

func testInputs(t *testing.T, env collectEnv) {
	out := t.TempDir()
	c, stop := env.collector(t, Options{OutputDir: out,
		Inputs: []Input{{Proto: ProtoVXLAN}, {Proto: ProtoGENEVE, Port: DefaultGenevePort}, {Proto: ProtoGRE}},
		Named:  map[Key]Session{{ProtoGENEVE, 7}: {Name: "gwlb"}, {ProtoERSPAN, 101}: {Name: "core-switch", PacketLength: 128}}})
	full := tcpFrame(t, ipSource, ipTest, 1234, 57032, 1, 2, []byte("source to test\n"))
	opt := []geneveOpt{{class: 0x0101, typ: 0x80, data: []byte{0xa, 0xb, 0xc, 0xd}}}
	env.send(t, labSenderAddr, &net.UDPAddr{IP: net.ParseIP(labColAddr), Port: DefaultGenevePort},
		geneve(7, etherTypeTEB, geneveFlagCrit, opt, full),
		geneve(8, etherTypeIPv4, 0, nil, full[ethHeaderLen:]),
		[]byte{2, 0, 0x65, 0x58, 0, 0, 7, 0}) // options past the end
	env.send(t, labSenderAddr, c.Addr(), vxlan(7, full)) // VXLAN 7 is not GENEVE 7
	sub := binary.BigEndian.AppendUint32([]byte{erspanPlatfTime << 2, 0, 0, 0}, 1_700_000_000)
	env.sendGRE(t,
		erspan2(t, 1, 100, 10, 3, 77, full),
		erspan3(t, 2, erspan3Hdr{id: 101, vlan: 20, hwid: 3, egress: true, gra: gra1588, ts: 5, sub: sub}, full),
		gre(t, true, u32p(42), u32p(3), etherTypeTEB, full),
		gre(t, false, nil, nil, greProtoERSPAN, full),
		[]byte{0x40, 0, 0x65, 0x58}) // routing bit
	waitReceived(t, c, 9)
	if x, ok := c.rcv.(*xdpReceiver); ok { // every tunnel took the XDP path, none the sockets beside it
		var sum uint64
		var perCPU []uint64
		if err := x.objs.XmColCounters.Lookup(uint32(colReceived), &perCPU); err != nil {
			t.Fatal(err)
		}
		for _, v := range perCPU {
			sum += v
		}
		if sum != 7 {
			t.Errorf("xm_collect handed %d frames to the ring, want 7", sum)
		}
	}
	stop()
	if st := c.Stats(); st.Drops["geneve_short"] != 1 || st.Drops["gre_header"] != 1 || st.Written != 7 {
		t.Errorf("stats %+v", st)
	}
	ipFrame := append(binary.BigEndian.AppendUint16(make([]byte, 12), etherTypeIPv4), full[ethHeaderLen:]...)
	for dir, want := range map[string]struct {
		frame   []byte
		comment string
		flags   string
	}{
		"gwlb":        {full, "geneve vni=7 critical opt=class:0x0101,type:0x80,len:4,data:0a0b0c0d", ""},
		"geneve-8":    {ipFrame, "geneve vni=8 proto=0x0800", ""},
		"vni-7":       {full, "", ""},
		"erspan-100":  {full, "erspan2 id=100 vlan=10 cos=3 en=0 index=77 seq=1", ""},
		"core-switch": {full, "erspan3 id=101 vlan=20 cos=0 bso=0 dir=egress hwid=3 sgt=0 ft=0 gra=ieee1588 ts=5 platf=3 info=0x0c0000006553f100 seq=2", "0x00000002"}, // outbound
		"gre-42":      {full, "gre key=42 seq=3", ""},
		"erspan-0":    {full, "erspan1", ""},
	} {
		path := onlyFile(t, filepath.Join(out, dir), dir)
		pkts, _ := readCapture(t, path)
		if len(pkts) != 1 || !bytes.Equal(pkts[0].data, want.frame) {
			t.Errorf("%s: %d packets, first equal: %v", dir, len(pkts), len(pkts) > 0 && bytes.Equal(pkts[0].data, want.frame))
			continue
		}
		got := tsharkFields(t, path, "frame.comment", "frame.packet_flags_direction", "ip.src", "tcp.srcport")
		if line := want.comment + "|" + want.flags + "|192.168.0.230|1234"; len(got) != 1 || got[0] != line {
			t.Errorf("%s: tshark reads %q, want %q", dir, got, line)
		}
		if dir == "core-switch" && !pkts[0].ci.Timestamp.Equal(time.Unix(1_700_000_000, 5)) {
			t.Errorf("ERSPAN III IEEE 1588 time: packet stamped %v", pkts[0].ci.Timestamp)
		}
	}
}

// TestInputsSecondCollector: a second collector for the same GENEVE port
// or the same GRE address is refused, like one on the VXLAN port.
func TestInputsSecondCollector(t *testing.T) {
	env := collectEnv{lab: newColLab(t, 0), receive: ReceiveSocket}
	env.collector(t, Options{Inputs: []Input{{Proto: ProtoGENEVE, Port: DefaultGenevePort}, {Proto: ProtoGRE}}})
	for _, in := range []Input{{Proto: ProtoGENEVE, Port: DefaultGenevePort}, {Proto: ProtoGRE}} {
		err := env.lab.col.Do(func() error {
			c, err := New(withTestDefaults(Options{Listen: labColAddr + ":4789", OutputDir: t.TempDir(), Inputs: []Input{in}}))
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "another xmirror collect already receives") {
			t.Errorf("second collector with input %s: %v", in, err)
		}
	}
}

// labUDP is the collector's address in the lab at port.
func labUDP(port int) *net.UDPAddr { return &net.UDPAddr{IP: net.ParseIP(labColAddr), Port: port} }

// TestInputsIPv6: GENEVE and ERSPAN over IPv6 (a raw IPv6 socket reads GRE
// without the IPv6 header) on both receive paths.
func TestInputsIPv6(t *testing.T) {
	for _, receive := range []string{ReceiveSocket, ReceiveXDP} {
		t.Run(receive, func(t *testing.T) {
			lab := labtest.ForTest(t,
				netlab.HostSpec{Name: "sender", Addrs: []string{"fd00::1/64"}},
				netlab.HostSpec{Name: "col", Addrs: []string{"fd00::2/64"}})
			out := t.TempDir()
			var c *Collector
			err := lab.Host("col").Do(func() (err error) {
				c, err = New(withTestDefaults(Options{Listen: "[fd00::2]:4789", Receive: receive, OutputDir: out, Readers: 1,
					Inputs: []Input{{Proto: ProtoGENEVE, Port: DefaultGenevePort}, {Proto: ProtoGRE}}}))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			stop := runCollector(t, c)
			full := tcpFrame(t, ipSource, ipTest, 1, 2, 3, 4, []byte("over IPv6"))
			err = lab.Host("sender").Do(func() error {
				u, err := net.Dial("udp6", "[fd00::2]:6081")
				if err != nil {
					return err
				}
				defer u.Close()
				if _, err := u.Write(geneve(7, etherTypeTEB, 0, nil, full)); err != nil {
					return err
				}
				g, err := net.Dial("ip6:gre", "fd00::2")
				if err != nil {
					return err
				}
				defer g.Close()
				_, err = g.Write(erspan3(t, 1, erspan3Hdr{id: 9}, full))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			waitReceived(t, c, 2)
			stop()
			for _, session := range []string{"geneve-7", "erspan-9"} {
				pkts, ifs := readCapture(t, onlyFile(t, filepath.Join(out, session), session))
				if len(pkts) != 1 || !bytes.Equal(pkts[0].data, full) || len(ifs) != 1 || !strings.HasPrefix(ifs[0].Name, "fd00::1/") {
					t.Errorf("%s: %d packets, interfaces %+v", session, len(pkts), ifs)
				}
			}
		})
	}
}
