// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
)

// listenGRE counts the GRE packets a backend's kernel delivers to a raw
// socket (IPv4 header checksum verified by that kernel, the GRE checksum
// here), by flow and direction.
func listenGRE(t *testing.T, h *netlab.Host) *receiver {
	return listen(t, h, "ip4:gre", "0.0.0.0", func(g []byte) string {
		if len(g) < 4+9 || binary.BigEndian.Uint16(g)&greC != 0 && checksum(g) != 0 {
			return fmt.Sprintf("short or bad GRE checksum: %x", g[:min(len(g), 16)])
		}
		return ""
	})
}

// erspanPacket is the GRE packet a switch sends for inner flow (flow, dir):
// ERSPAN II (or III with its sub-header for dir 1), GRE sequence number, and
// a GRE checksum on every other flow.
func erspanPacket(flow uint32, dir uint8, seq uint32) []byte {
	g := greSpec{erspan: 2 + int(dir), sub: dir == 1, session: 5, csum: flow%2 == 0}
	flags := uint16(greS)
	if g.csum {
		flags |= greC
	}
	ptype := uint16(greERSPAN)
	if g.erspan == 3 {
		ptype = greERSPAN3
	}
	p := binary.BigEndian.AppendUint16(nil, flags)
	p = binary.BigEndian.AppendUint16(p, ptype)
	if g.csum {
		p = append(p, 0, 0, 0, 0)
	}
	p = binary.BigEndian.AppendUint32(p, seq)
	p = append(append(p, erspanHeader(g)...), vxlanPayload(flow, dir, seq)[8:]...)
	if g.csum {
		binary.BigEndian.PutUint16(p[4:], checksum(p))
	}
	return p
}

// TestGREListener runs the real binary with a GRE listener in namespaces:
// ERSPAN II and III of both directions of 500 inner flows, sent through a
// raw socket, reach one backend's kernel per flow with their GRE checksums
// valid; a GRE header longer than its packet is dropped and counted.
func TestGREListener(t *testing.T) {
	lab, bin, pin, rs := listenerLab(t, listenGRE)
	lbh := lab.Host("lb")
	var snd net.PacketConn
	if err := lab.Host("src").Do(func() (err error) {
		snd, err = net.ListenPacket("ip4:gre", "10.0.0.230")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	p := startLBConfig(t, lbh, bin, pin, listenerTestConfig("switches", "gre", "maglev"))
	vipIP := &net.IPAddr{IP: net.ParseIP("10.0.0.1")}

	const flows = 500
	sendFlows(t, flows, func(f uint32, dir uint8) error {
		_, err := snd.WriteTo(erspanPacket(f, dir, f), vipIP)
		return err
	})
	checkPlaced(t, rs, flows, 40, 60, func() string { return lbStatus(lbh, bin, pin) + "\n" + p.Output() })

	// checksum, key and sequence announced, 4 bytes there: dropped, counted
	checkMalformedDropped(t, rs, lbh, "a GRE header longer than its packet", func() {
		if _, err := snd.WriteTo([]byte{0xb0, 0, 0x88, 0xbe}, vipIP); err != nil {
			t.Fatal(err)
		}
	})
	if out, err := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms"); err != nil || !strings.Contains(out, "gre 10.0.0.1  ") {
		t.Errorf("status: %v\n%s", err, out)
	}
}
