// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netlink"

	"github.com/xmirror/xmirror/internal/netlab"
)

// lbTopo is where a load balancer under test sits: frames leave the generator by
// genIf and reach the LB on lbIf (the listener interface); the LB sends backend
// traffic to nextHop.
type lbTopo struct {
	lab      *netlab.Lab
	gen, lb  *netlab.Host
	genIf    ifRef // in gen's namespace
	lbIf     ifRef // in lb's namespace
	vip      netip.Addr
	backends [2]netip.Addr
	nextHop  net.HardwareAddr // MAC the LB sends backend-bound frames to
	// counterOn is the host and interface the backends' traffic is counted on.
	counterHost *netlab.Host
	counterIf   ifRef
}

type ifRef struct {
	name  string
	index int
	mac   net.HardwareAddr
	addr  netip.Addr
}

// The direct topology of the lb scenario: one veth pair between the generator and
// the LB, no bridge. The backends are addresses routed back to the generator's
// end, where the XDP counter tells them apart by destination. Frames stay
// xdp_frames all the way for XDP load balancers, as on a NIC, instead of being
// turned into skbs by a bridge that would cost more than any load balancer.
const (
	directGen = "10.88.0.1"
	directLB  = "10.88.0.2"
	directB1  = "10.88.1.11"
	directB2  = "10.88.1.12"
)

func directHosts() []netlab.HostSpec {
	return []netlab.HostSpec{
		{Name: "gen", Addrs: []string{"10.88.9.1/24"}, MTU: labMTU},
		{Name: "lb", Addrs: []string{"10.88.9.2/24"}, MTU: labMTU},
	}
}

// newDirectTopo builds the lab of the lb scenario.
func (r *runner) newDirectTopo() (_ *lbTopo, err error) {
	lab, err := r.newLab("lb", directHosts()...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lab.Close()
		}
	}()
	gen, lb := lab.Host("gen"), lab.Host("lb")
	t := &lbTopo{lab: lab, gen: gen, lb: lb, vip: netip.MustParseAddr(directLB),
		backends: [2]netip.Addr{netip.MustParseAddr(directB1), netip.MustParseAddr(directB2)}, counterHost: gen}
	lbNS, err := os.Open(lab.NetNSPath("lb"))
	if err != nil {
		return nil, fmt.Errorf("open lb namespace: %w", err)
	}
	defer lbNS.Close()
	err = gen.Do(func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "g0", MTU: labMTU}, PeerName: "l0",
			PeerNamespace: netlink.NsFd(int(lbNS.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth g0/l0: %w", err)
		}
		ref, err := upWithAddr("g0", directGen, "rx", "off", "tx", "off", "tso", "off", "gso", "off")
		t.genIf = ref
		return err
	})
	if err != nil {
		return nil, err
	}
	err = lb.Do(func() error {
		// GRO on: the frames the generator sends with XDP_TX are dropped by a veth
		// without XDP or NAPI, and the kernel-path systems have no XDP program.
		ref, err := upWithAddr("l0", directLB, "rx", "off", "tx", "off", "tso", "off", "gso", "off")
		if err != nil {
			return err
		}
		// veth starts its NAPI when GRO changes on a running device; GRO asked
		// for before the device was up left it off here (measured: the frames
		// were dropped until GRO was turned off and on again).
		for _, v := range []string{"off", "on"} {
			if out, err := exec.Command("ethtool", "-K", "l0", "gro", v).CombinedOutput(); err != nil {
				return fmt.Errorf("ethtool -K l0 gro %s: %w: %s", v, err, out)
			}
		}
		t.lbIf = ref
		link, err := netlink.LinkByName("l0")
		if err != nil {
			return err
		}
		gw := net.ParseIP(directGen)
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: t.genIf.mac}); err != nil {
			return fmt.Errorf("neighbour %s: %w", directGen, err)
		}
		_, backends, _ := net.ParseCIDR("10.88.1.0/24")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: backends, Gw: gw}); err != nil {
			return fmt.Errorf("route to the backends: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.nextHop = t.genIf.mac
	t.counterIf = t.genIf
	return t, nil
}

// upWithAddr brings name up with addr/24 and the given ethtool -K features, in the
// calling thread's namespace.
func upWithAddr(name, addr string, features ...string) (ifRef, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return ifRef{}, fmt.Errorf("find %s: %w", name, err)
	}
	a, _ := netlink.ParseAddr(addr + "/24")
	if err := netlink.AddrAdd(link, a); err != nil {
		return ifRef{}, fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if out, err := exec.Command("ethtool", append([]string{"-K", name}, features...)...).CombinedOutput(); err != nil {
		return ifRef{}, fmt.Errorf("ethtool -K %s: %w: %s", name, err, out)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return ifRef{}, fmt.Errorf("set %s up: %w", name, err)
	}
	return ifRef{name: name, index: link.Attrs().Index, mac: link.Attrs().HardwareAddr, addr: netip.MustParseAddr(addr)}, nil
}

// The bridge topology of the e2e scenario: real collector hosts on the lab bridge.
const (
	addrGen = "10.77.0.1"
	addrLB  = "10.77.0.2"
	addrB1  = "10.77.0.11"
	addrB2  = "10.77.0.12"
)

func bridgeHosts() []netlab.HostSpec {
	return []netlab.HostSpec{
		// GRO on the generator's and the LB's veths, and XDP on the LB's bridge end:
		// frames XDP sends into a veth are dropped unless the other end runs XDP (GRO
		// is enough for BPF_PROG_TEST_RUN's frames, not for XDP_TX from the veth's own
		// NAPI poll; see netlab.HostSpec.PeerXDP).
		{Name: "gen", Addrs: []string{addrGen + "/24"}, MTU: labMTU, GRO: true},
		{Name: "lb", Addrs: []string{addrLB + "/24"}, MTU: labMTU, GRO: true, PeerXDP: true},
		{Name: "b1", Addrs: []string{addrB1 + "/24"}, MTU: labMTU},
		{Name: "b2", Addrs: []string{addrB2 + "/24"}, MTU: labMTU},
	}
}

func (r *runner) newBridgeTopo() (*lbTopo, error) {
	lab, err := r.newLab("e2e", bridgeHosts()...)
	if err != nil {
		return nil, err
	}
	gen, lb := lab.Host("gen"), lab.Host("lb")
	ref := func(h *netlab.Host) ifRef { return ifRef{name: h.Iface, index: h.Ifindex, mac: h.MAC, addr: h.Addr} }
	return &lbTopo{lab: lab, gen: gen, lb: lb, genIf: ref(gen), lbIf: ref(lb), vip: lb.Addr,
		backends: [2]netip.Addr{netip.MustParseAddr(addrB1), netip.MustParseAddr(addrB2)},
		nextHop:  lab.Host("b1").MAC}, nil
}

// steerRxOffGen sets RPS on host's eth0 so that the stack's receive work (IP, UDP,
// socket delivery) for what arrives there runs on the CPUs other than the
// generator's, where the receiving process runs too: a collector host whose one
// core handles both, as on a real machine. Without it the generator's CPU does that
// work in softirq, and the generator, not the receiver, sets the top rate. sysfs
// shows a namespace's devices only when mounted from inside it, which
// `ip netns exec` does.
func steerRxOffGen(h *netlab.Host) error {
	n := runtime.NumCPU()
	if n < 2 {
		return nil
	}
	var mask uint64
	for c := 0; c < n && c < 64; c++ {
		if c != genCPU {
			mask |= 1 << c
		}
	}
	script := fmt.Sprintf("for q in /sys/class/net/%s/queues/rx-*; do echo %x > $q/rps_cpus; done", h.Iface, mask)
	out, err := exec.Command("ip", "netns", "exec", h.NS, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rps on %s of %s: %w: %s", h.Iface, h.Name, err, out)
	}
	return nil
}
