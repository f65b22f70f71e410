// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/internal/netlab"
)

// listenGENEVE counts the GENEVE datagrams a backend's kernel delivers on
// UDP 6081 (checksums verified: offload is off), by flow and direction.
func listenGENEVE(t *testing.T, h *netlab.Host) *receiver {
	return listen(t, h, "udp4", ":6081", func(pkt []byte) string {
		if n := len(pkt); n >= geneveHeaderLen+9 && pkt[0]>>6 == 0 && n >= geneveHeaderSize(pkt)+9 {
			return ""
		}
		return fmt.Sprintf("not GENEVE: %x", pkt[:min(len(pkt), 16)])
	})
}

// genevePayload is vxlanPayload's inner frame for (flow, dir, seq) behind a
// GENEVE header with options (a different count per packet).
func genevePayload(flow uint32, dir uint8, seq uint32, gs geneveSpec) []byte {
	return append(geneveHeader(gs, 1), vxlanPayload(flow, dir, seq)[8:]...)
}

// TestGENEVEListener runs the real binary with a GENEVE listener in
// namespaces: both directions of many inner flows, each packet with other
// options, reach one backend's kernel intact (port 6081, outer source kept),
// for wrr and maglev; a datagram whose options run past its end is dropped
// and counted; status names the protocol.
func TestGENEVEListener(t *testing.T) {
	lab, bin, pin, rs := listenerLab(t, listenGENEVE)
	lbh := lab.Host("lb")
	snd := newSender(t, lab.Host("src"))
	vip := &net.UDPAddr{IP: net.ParseIP("10.0.0.1"), Port: 6081}

	for _, algo := range []string{"wrr", "maglev"} {
		t.Run(algo, func(t *testing.T) {
			p := startLBConfig(t, lbh, bin, pin, listenerTestConfig("gwlb", "geneve", algo))
			resetAll(rs)
			const flows = 500
			sendFlows(t, flows, func(f uint32, dir uint8) error {
				gs := geneveSpec{options: int(f+uint32(dir)) % 5, critical: dir == 1}
				_, err := snd.conn.WriteToUDP(genevePayload(f, dir, 0, gs), vip)
				return err
			})
			checkPlaced(t, rs, flows, 40, 60, func() string { return lbStatus(lbh, bin, pin) + "\n" + p.Output() })

			// options announced past the datagram's end: dropped, counted
			checkMalformedDropped(t, rs, lbh, "a GENEVE datagram with options past its end", func() {
				bad := genevePayload(1, 0, 1, geneveSpec{options: 1, optLen: 63})
				if _, err := snd.conn.WriteToUDP(bad, vip); err != nil {
					t.Fatal(err)
				}
			})
			out, err := lbh.Run(bin, "lb", "status", "--pin-path", pin, "--interval", "10ms")
			if err != nil || !strings.Contains(out, "geneve 10.0.0.1:6081") || !strings.Contains(out, "10.0.0.11:6081") {
				t.Errorf("status: %v\n%s", err, out)
			}
		})
	}
}

// grepLines is the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
