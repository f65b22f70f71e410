// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"net"

	"github.com/cilium/ebpf"
)

// Spec is the XDP receive path's BPF object as compiled: `xmirror check
// --system` probes the kernel for the program types, helpers and map types it
// uses.
func Spec() (*ebpf.CollectionSpec, error) { return loadCollect() }

// XDPInterfaces are the interfaces the XDP receive path attaches to for listen:
// those that hold its address.
func XDPInterfaces(listen string) ([]string, error) {
	ap, err := resolveListen(listen)
	if err != nil {
		return nil, err
	}
	return interfacesWith(ap.Addr())
}

// XDPAttached names the XDP program on interface ifname, as the XDP receive
// path refuses to start beside it ("" when there is none or no such
// interface).
func XDPAttached(ifname string) string {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return ""
	}
	return attachedXDP(ifc.Index)
}
