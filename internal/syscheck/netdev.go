// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var (
	errNoInterface   = errors.New("no such interface")
	errNoXDPFeatures = errors.New("the kernel does not report XDP features")
)

// The generic netlink "netdev" family (include/uapi/linux/netdev.h, Linux 6.3+).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXDPFeatures = 3
	netdevXDPActBasic     = 1 << 0 // XDP_PASS/DROP/ABORTED/TX in the driver
)

// nativeXDP reports whether ifname's driver runs XDP programs natively. It asks
// the kernel instead of attaching a test program, which would reset some NICs.
func nativeXDP(ifname string) (bool, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return false, errNoInterface
	}
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return false, errNoXDPFeatures
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	// The generic netlink header written out: nl.Genlmsg serializes four bytes
	// from its two-byte struct, sending whatever follows it as the reserved field,
	// which the kernel rejects with EINVAL.
	req.AddData(rawData{netdevCmdDevGet, 1, 0, 0})
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(ifc.Index))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return false, fmt.Errorf("netdev dev-get %s: %w", ifname, err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		if v, ok := u64Attr(m[nl.SizeofGenlmsg:], netdevAttrXDPFeatures); ok {
			return v&netdevXDPActBasic != 0, nil
		}
	}
	return false, errNoXDPFeatures
}

// u64Attr finds the 8-byte netlink attribute typ in b (a flat list of
// length-type-value attributes padded to 4 bytes).
func u64Attr(b []byte, typ uint16) (uint64, bool) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) & 0x3fff // without the nested/byte-order flags
		if l < 4 || l > len(b) {
			return 0, false
		}
		if t == typ && l >= 12 {
			return binary.NativeEndian.Uint64(b[4:12]), true
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return 0, false
}

// rawData is netlink request data sent as is: an nl.NetlinkRequestData,
// whose Len and Serialize the netlink package calls when it sends req.
type rawData []byte

func (d rawData) Len() int          { return len(d) }
func (d rawData) Serialize() []byte { return d }
