// SPDX-License-Identifier: Apache-2.0

package source

import (
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestPerfCopyKeepsItsSession: with datapath perf the program cuts the copy
// and user space puts the outer headers in front of it. A copy cut before a
// reload and sent after it got the VNI of the new configuration (SIGHUP 30
// times while 1,000 echo requests a second were mirrored, alternating VNI 5
// with a 64-byte cut and VNI 6 with 128: 46 of 3,000 copies arrived as VNI 6
// cut at 64 or VNI 5 cut at 128). The copy carries the session as the
// program saw it.
func TestPerfCopyKeepsItsSession(t *testing.T) {
	before := mustParse(t, strings.Replace(ringSession(64), "vni: 4097", "vni: 5", 1))
	s := loadTestSource(t, before, sourceXmDatapathXM_DATAPATH_PERF, Options{})
	rd, err := perf.NewReader(s.objs.XmEvents, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	frame := udp4(t, "10.0.0.1", "10.0.0.2", 1234, 5678, 200)
	if _, err := s.objs.XmSourceIngress.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}}); err != nil {
		t.Fatalf("run: %v", err)
	}
	// The reload, while the sample waits in the perf buffer.
	after := mustParse(t, strings.Replace(ringSession(128), "vni: 4097", "vni: 6", 1))
	if err := s.assignIDs(after); err != nil {
		t.Fatal(err)
	}
	prog, err := compile(after, fakeResolved(after), s.ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(prog); err != nil {
		t.Fatal(err)
	}
	p := &perfPath{ports: localPortRange()}
	p.running(prog)
	rd.SetDeadline(time.Now().Add(time.Second))
	rec, err := rd.Read()
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	b := &batch{}
	p.add(b, &rec)
	if b.n != 1 {
		t.Fatalf("%d packets from the sample (lost %d)", b.n, p.lost.Load())
	}
	pkt := gopacket.NewPacket(b.pkts[0], layers.LayerTypeIPv4, gopacket.Default)
	vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if vx == nil {
		t.Fatalf("no VXLAN in %x", b.pkts[0])
	}
	if vx.VNI != 5 || len(vx.Payload) != 64 {
		t.Errorf("copy cut before the reload went out as VNI %d with %d bytes, want VNI 5 with 64", vx.VNI, len(vx.Payload))
	}
}
