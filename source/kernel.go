// SPDX-License-Identifier: Apache-2.0

package source

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/vishvananda/netlink"
)

// kernelPath is datapath kernel: the source programs clone packets to a
// VXLAN device in external (collect_md) mode, where xm_tunnel cuts the clone
// and sets the tunnel key, and the vxlan driver encapsulates it.
type kernelPath struct {
	device netlink.Link
	tunnel hook // xm_tunnel on the device's egress
	drop   hook // xm_drop on its ingress (a tc filter: it outlives the process)
}

// startKernel creates the VXLAN device name with the tunnel program on its
// egress and the drop program on its ingress. What a killed run left behind
// is gone already (removeLeftovers).
//
// In external mode the device also decapsulates whatever reaches UDP 4789 of
// the host and hands it to the stack as received on the device. The drop
// program closes that door, and it is a tc filter, which the device holds,
// not a TCX link, which the process holds: it stays when the process is
// killed, until the device is deleted. The device comes up only after it.
func startKernel(objs *sourceObjects, name string, at *attacher) (_ datapath, err error) {
	if old, err := netlink.LinkByName(name); err == nil {
		if _, ok := old.(*netlink.Vxlan); !ok {
			return nil, fmt.Errorf("%w: device %s exists and is not a VXLAN device: name another source.device", ErrConfig, name)
		}
		// A killed run's device is gone already (removeLeftovers), unless
		// its deletion failed: one without the alias belongs to someone
		// else (an overlay, a VXLAN an operator set up) and must stay.
		if old.Attrs().Alias != deviceAlias {
			return nil, fmt.Errorf("%w: device %s exists and is a VXLAN device xmirror did not create: name another source.device", ErrConfig, name)
		}
		slog.Warn("replacing stale VXLAN device", "device", name)
		if err := netlink.LinkDel(old); err != nil {
			return nil, fmt.Errorf("delete stale %s: %w", name, err)
		}
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 65000},
		FlowBased: true,
		Port:      int(vxlanPort),
		Learning:  false,
	}
	if err := netlink.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("create vxlan device %s: %w", name, err)
	}
	k := &kernelPath{}
	defer func() {
		if err != nil {
			k.close()
			if k.device == nil {
				_ = netlink.LinkDel(vx)
			}
		}
	}()
	if k.device, err = netlink.LinkByName(name); err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	if err := markOurs(k.device); err != nil {
		return nil, err
	}
	ifindex := k.device.Attrs().Index
	// The device is only a tunnel endpoint for our clones: no IPv6 chatter.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
	if k.drop, err = attachTC(objs.XmDrop, ifindex, true, "drop"); err != nil {
		return nil, fmt.Errorf("attach drop program to %s: %w", name, err)
	}
	if k.tunnel, err = at.attach(objs.XmTunnel, ifindex, false, "tunnel"); err != nil {
		return nil, fmt.Errorf("attach tunnel program to %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(k.device); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	return k, nil
}

func (k *kernelPath) name() string { return DatapathKernel }

func (k *kernelPath) fill(st *sourceState) {
	st.Datapath = sourceXmDatapathXM_DATAPATH_KERNEL
	st.VxlanIfindex = uint32(k.device.Attrs().Index)
}

func (k *kernelPath) running(*Program) {}

// errors: the programs count the clones that fail.
func (k *kernelPath) errors(uint16, int) uint64 { return 0 }

func (k *kernelPath) writeMetrics(io.Writer) {}

// close detaches the programs and deletes the device.
func (k *kernelPath) close() error {
	var errs []error
	for _, l := range []*hook{&k.tunnel, &k.drop} {
		if *l != nil {
			(*l).Close()
			*l = nil
		}
	}
	if k.device != nil {
		if err := netlink.LinkDel(k.device); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", k.device.Attrs().Name, err))
		}
		k.device = nil
	}
	return errors.Join(errs...)
}
