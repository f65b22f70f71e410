// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Indexes of the counters map. keep in sync with bpf/peer.c
const (
	counterReceived  = 0
	counterForwarded = 1
)

// Counts is what a counter saw.
type Counts struct {
	Packets, Bytes uint64
}

// XDPPeer is a benchmark program attached to one interface: the counter (tunnel
// frames in, count, drop) or the minimal forwarder (the XDP ceiling).
type XDPPeer struct {
	objs peerObjects
	link link.Link
}

// AttachCounter attaches the counter to ifindex in the calling thread's network
// namespace: it counts and drops the generator's tunnels (IPv4 UDP to 4789 or
// 6081, IPv4 GRE) and passes everything else, so ARP and the other traffic of
// the host keep working.
func AttachCounter(ifindex int) (*XDPPeer, error) {
	return attachPeer(ifindex, func(o *peerObjects) *ebpf.Program { return o.XdpCount }, nil)
}

// AttachDropCounter attaches a counter that counts and drops every frame, for
// a link that carries nothing else.
func AttachDropCounter(ifindex int) (*XDPPeer, error) {
	return attachPeer(ifindex, func(o *peerObjects) *ebpf.Program { return o.XdpDropAll }, nil)
}

// AttachForwarder attaches the minimal XDP forwarder to ifindex: VXLAN to vip leaves
// by the same interface towards backend (address and MAC), from srcMAC.
func AttachForwarder(ifindex int, srcMAC, backendMAC net.HardwareAddr, vip, backend netip.Addr) (*XDPPeer, error) {
	if len(srcMAC) != 6 || len(backendMAC) != 6 || !vip.Is4() || !backend.Is4() {
		return nil, errors.New("forwarder needs Ethernet MACs and IPv4 addresses")
	}
	var cfg peerFwdConfig
	copy(cfg.SrcMac[:], srcMAC)
	copy(cfg.DstMac[:], backendMAC)
	// Addresses are compared and written in network order: keep the bytes as they are.
	v, b := vip.As4(), backend.As4()
	cfg.Vip = nativeU32(v)
	cfg.Backend = nativeU32(b)
	return attachPeer(ifindex, func(o *peerObjects) *ebpf.Program { return o.XdpFwd }, func(o *peerObjects) error {
		return o.FwdCfg.Put(uint32(0), &cfg)
	})
}

func attachPeer(ifindex int, prog func(*peerObjects) *ebpf.Program, setup func(*peerObjects) error) (_ *XDPPeer, err error) {
	p := &XDPPeer{}
	if err := loadPeerObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load peer programs: %w", err)
	}
	defer func() {
		if err != nil {
			p.objs.Close()
		}
	}()
	if setup != nil {
		if err := setup(&p.objs); err != nil {
			return nil, fmt.Errorf("configure peer: %w", err)
		}
	}
	p.link, err = link.AttachXDP(link.XDPOptions{Program: prog(&p.objs), Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("attach xdp to ifindex %d: %w", ifindex, err)
	}
	return p, nil
}

// Received is what the counter counted (and dropped).
func (p *XDPPeer) Received() (Counts, error) { return p.read(counterReceived) }

// Forwarded is what the forwarder sent on.
func (p *XDPPeer) Forwarded() (Counts, error) { return p.read(counterForwarded) }

func (p *XDPPeer) read(idx uint32) (Counts, error) {
	var per []peerCountValue
	if err := p.objs.Counters.Lookup(idx, &per); err != nil {
		return Counts{}, fmt.Errorf("read counters: %w", err)
	}
	var c Counts
	for _, v := range per {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
	}
	return c, nil
}

// Close detaches the program.
func (p *XDPPeer) Close() error {
	var err error
	if p.link != nil {
		err = p.link.Close()
	}
	return errors.Join(err, p.objs.Close())
}

// nativeU32 reinterprets network-order bytes as the little-endian integer the
// program sees when it loads them.
func nativeU32(b [4]byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// ReceivedBy is what the counter counted per outer destination address.
func (p *XDPPeer) ReceivedBy() (map[netip.Addr]Counts, error) {
	out := map[netip.Addr]Counts{}
	var key uint32
	var per []peerCountValue
	it := p.objs.ByDst.Iterate()
	for it.Next(&key, &per) {
		var c Counts
		for _, v := range per {
			c.Packets += v.Packets
			c.Bytes += v.Bytes
		}
		// The key holds the address bytes in network order.
		a := netip.AddrFrom4([4]byte{byte(key), byte(key >> 8), byte(key >> 16), byte(key >> 24)})
		out[a] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read per-destination counters: %w", err)
	}
	return out, nil
}
