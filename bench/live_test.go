// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"testing"
	"time"

	"github.com/xmirror/xmirror/internal/netlab"
	"github.com/xmirror/xmirror/internal/netlab/labtest"
)

// TestGenerateLive sends real frames from one namespace to another and counts them
// at the receiver with the XDP counter.
func TestGenerateLive(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "gen", Addrs: []string{"10.99.0.1/24"}, GRO: true, MTU: 1600},
		netlab.HostSpec{Name: "recv", Addrs: []string{"10.99.0.2/24"}, MTU: 1600})
	gen, recv := lab.Host("gen"), lab.Host("recv")
	var ctr *XDPPeer
	if err := recv.Do(func() (err error) { ctr, err = AttachCounter(recv.Ifindex); return err }); err != nil {
		t.Fatal(err)
	}
	defer ctr.Close()

	for _, tc := range []struct {
		name  string
		proto Protocol
		rate  float64
		count uint64
		dur   time.Duration
	}{
		{"count", VXLAN, 50000, 5000, 0},
		{"duration", VXLAN, 20000, 0, 300 * time.Millisecond},
		{"max", VXLAN, 0, 200000, 0},
		{"geneve", GENEVE, 50000, 5000, 0},
		{"erspan2", ERSPAN2, 50000, 5000, 0},
		{"erspan3", ERSPAN3, 50000, 5000, 0},
		{"gre", GRE, 50000, 5000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := ctr.Received()
			var res GenResult
			spec := FrameSpec{Protocol: tc.proto, SrcMAC: gen.MAC, DstMAC: recv.MAC, SrcIP: gen.Addr, DstIP: recv.Addr, ID: 1, Size: 100}
			err := gen.Do(func() (err error) {
				res, err = Generate(context.Background(), GenConfig{
					FrameSpec: spec, Ifindex: gen.Ifindex, CPU: -1, Flows: 1000, Rate: tc.rate, Count: tc.count, Duration: tc.dur,
				})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let the receiver's queue drain
			after, err := ctr.Received()
			if err != nil {
				t.Fatal(err)
			}
			got := after.Packets - before.Packets
			t.Logf("sent %d in %v (%.0f pps, %d calls, %d runs, cpu %v), received %d", res.Sent, res.Elapsed, res.PPS, res.Calls, res.Runs, res.CPU, got)
			if tc.count > 0 && res.Sent != tc.count {
				t.Errorf("sent %d, want %d", res.Sent, tc.count)
			}
			if tc.dur > 0 && (res.Sent == 0 || res.Elapsed > 2*tc.dur) {
				t.Errorf("duration run sent %d in %v", res.Sent, res.Elapsed)
			}
			if got == 0 || got > res.Sent {
				t.Errorf("received %d of %d", got, res.Sent)
			}
			if want := uint64(spec.WireSize()); got > 0 && (after.Bytes-before.Bytes)/got != want {
				t.Errorf("bytes per frame %d, want %d", (after.Bytes-before.Bytes)/got, want)
			}
		})
	}
}

// TestForwarderLive runs the XDP ceiling forwarder between a generator and a
// counting backend.
func TestForwarderLive(t *testing.T) {
	lab := labtest.ForTest(t,
		netlab.HostSpec{Name: "gen", Addrs: []string{"10.98.0.1/24"}, GRO: true, MTU: labMTU},
		netlab.HostSpec{Name: "lb", Addrs: []string{"10.98.0.2/24"}, GRO: true, MTU: labMTU, PeerXDP: true},
		netlab.HostSpec{Name: "b1", Addrs: []string{"10.98.0.3/24"}, MTU: labMTU})
	gen, lb, b1 := lab.Host("gen"), lab.Host("lb"), lab.Host("b1")
	var ctr, fwd *XDPPeer
	if err := b1.Do(func() (err error) { ctr, err = AttachCounter(b1.Ifindex); return err }); err != nil {
		t.Fatal(err)
	}
	defer ctr.Close()
	if err := lb.Do(func() (err error) {
		fwd, err = AttachForwarder(lb.Ifindex, lb.MAC, b1.MAC, lb.Addr, b1.Addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	// The bridge learns the LB's MAC, so the generator's frames are not flooded to
	// the backend: what it counts came through the forwarder.
	if err := warmNeighbours(lb, b1.Addr.String(), gen.Addr.String()); err != nil {
		t.Fatal(err)
	}
	var res GenResult
	err := gen.Do(func() (err error) {
		res, err = Generate(context.Background(), GenConfig{
			FrameSpec: FrameSpec{SrcMAC: gen.MAC, DstMAC: lb.MAC, SrcIP: gen.Addr, DstIP: lb.Addr, ID: 1, Size: 100},
			Ifindex:   gen.Ifindex, CPU: -1, Flows: 1000, IDs: 4, Rate: 100000, Count: 20000,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	f, _ := fwd.Forwarded()
	got, _ := ctr.Received()
	t.Logf("sent %d in %v, forwarded %d, received %d", res.Sent, res.Elapsed, f.Packets, got.Packets)
	if f.Packets != res.Sent || got.Packets != res.Sent {
		t.Errorf("sent %d, forwarded %d, received %d: want all", res.Sent, f.Packets, got.Packets)
	}
}
