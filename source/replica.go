// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
)

// A replica is a veth pair that gives outbound clones the offload treatment
// of their source interface. On an interface without TSO or checksum offload
// the kernel segments GSO packets and completes checksums after the tc hook
// and before tcpdump's tap; sending the clone into a veth end with the same
// offload settings makes the kernel do exactly that to the clone, and the
// other end hands the resulting packets (tc ingress, xm_replica) to the VXLAN
// device where they are cut like any other clone.
type replica struct {
	send, recv netlink.Link
	prog       hook
	offloads   offloads
}

func replicaNames(device string, ifindex uint32) (send, recv string) {
	base := replicaBase(device)
	return fmt.Sprintf("%ss%d", base, ifindex), fmt.Sprintf("%sr%d", base, ifindex)
}

// replicaBase is the start of the replicas' names: interface names have at
// most 15 bytes.
func replicaBase(device string) string {
	if len(device) > 8 {
		return device[:8]
	}
	return device
}

// ensureReplica creates (or adjusts) the replica of ifindex and returns the
// ifindex of its sending end.
func (s *Source) ensureReplica(ifindex uint32, want offloads) (uint32, error) {
	if r, ok := s.replicas[ifindex]; ok {
		if r.offloads != want {
			if err := setOffloads(r.send.Attrs().Name, want); err != nil {
				return 0, err
			}
			r.offloads = want
		}
		return uint32(r.send.Attrs().Index), nil
	}
	sendName, recvName := replicaNames(s.devName, ifindex)
	for _, n := range []string{sendName, recvName} {
		if old, err := netlink.LinkByName(n); err == nil {
			_ = netlink.LinkDel(old) // left behind by a killed run
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: sendName, MTU: 65535}, PeerName: recvName}
	if err := netlink.LinkAdd(veth); err != nil {
		return 0, fmt.Errorf("create replica veth %s: %w", sendName, err)
	}
	r := &replica{offloads: want}
	ok := false
	defer func() {
		if !ok {
			if r.prog != nil {
				r.prog.Close()
			}
			_ = netlink.LinkDel(veth)
		}
	}()
	var err error
	if r.send, err = netlink.LinkByName(sendName); err != nil {
		return 0, fmt.Errorf("find %s: %w", sendName, err)
	}
	if r.recv, err = netlink.LinkByName(recvName); err != nil {
		return 0, fmt.Errorf("find %s: %w", recvName, err)
	}
	for _, l := range []netlink.Link{r.send, r.recv} {
		if err := markOurs(l); err != nil {
			return 0, err
		}
	}
	for _, n := range []string{sendName, recvName} {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+n+"/disable_ipv6", []byte("1"), 0o644)
	}
	if err := setOffloads(sendName, want); err != nil {
		return 0, err
	}
	r.prog, err = s.attacher.attach(s.objs.XmReplica, r.recv.Attrs().Index, true, "replica")
	if err != nil {
		return 0, fmt.Errorf("attach replica program to %s: %w", recvName, err)
	}
	for _, l := range []netlink.Link{r.recv, r.send} {
		if err := netlink.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	ok = true
	if s.replicas == nil {
		s.replicas = map[uint32]*replica{}
	}
	s.replicas[ifindex] = r
	return uint32(r.send.Attrs().Index), nil
}

func (s *Source) removeReplica(ifindex uint32) error {
	r, ok := s.replicas[ifindex]
	if !ok {
		return nil
	}
	delete(s.replicas, ifindex)
	r.prog.Close()
	if err := netlink.LinkDel(r.send); err != nil {
		return fmt.Errorf("delete replica %s: %w", r.send.Attrs().Name, err)
	}
	return nil
}
