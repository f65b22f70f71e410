// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h): each reads or writes one offload
// as a struct ethtool_value, which is all the replica veth needs.
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
	ethtoolGSG     = 0x18
	ethtoolSSG     = 0x19
	ethtoolGTSO    = 0x1e
	ethtoolSTSO    = 0x1f
	ethtoolGGSO    = 0x23
	ethtoolSGSO    = 0x24
	ethtoolGFLAGS  = 0x25
	ethtoolGGRO    = 0x2b

	ethFlagLRO = 1 << 15 // in ETHTOOL_GFLAGS
)

// offloads are the transmit offloads that decide what the kernel does to a
// packet between the tc egress hook and the capture tap: segmentation (gso,
// tso) and checksum completion (tx).
type offloads struct {
	TxCsum, SG, TSO, GSO bool
}

// softTx says whether the kernel completes checksums or segments packets in
// software after the tc hook, so that tcpdump sees something else than the
// skb the hook saw.
func (o offloads) softTx() bool { return !o.TxCsum || !o.TSO }

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func ethtool(fd int, ifname string, cmd, data uint32) (uint32, error) {
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, errno
	}
	return v.data, nil
}

// ethtoolGet reads the values of the get commands cmds of ifname, in the
// calling thread's namespace.
func ethtoolGet(ifname string, cmds ...uint32) ([]uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	vals := make([]uint32, len(cmds))
	for i, cmd := range cmds {
		if vals[i], err = ethtool(fd, ifname, cmd, 0); err != nil {
			return nil, fmt.Errorf("ethtool %s get 0x%x: %w", ifname, cmd, err)
		}
	}
	return vals, nil
}

// getOffloads reads the offloads of ifname in the calling thread's namespace.
func getOffloads(ifname string) (offloads, error) {
	v, err := ethtoolGet(ifname, ethtoolGTXCSUM, ethtoolGSG, ethtoolGTSO, ethtoolGGSO)
	if err != nil {
		return offloads{}, err
	}
	return offloads{TxCsum: v[0] != 0, SG: v[1] != 0, TSO: v[2] != 0, GSO: v[3] != 0}, nil
}

// rxAggregates tells whether ifname may hand the stack aggregates of
// received segments (GRO or LRO on), in the calling thread's namespace.
func rxAggregates(ifname string) (bool, error) {
	v, err := ethtoolGet(ifname, ethtoolGGRO, ethtoolGFLAGS)
	if err != nil {
		return true, err
	}
	return v[0] != 0 || v[1]&ethFlagLRO != 0, nil
}

// setOffloads gives ifname the offloads o, in dependency order (TSO needs SG
// and checksumming on; turning off goes the other way).
func setOffloads(ifname string, o offloads) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	b := func(x bool) uint32 {
		if x {
			return 1
		}
		return 0
	}
	steps := []struct {
		cmd uint32
		val bool
	}{{ethtoolSTXCSUM, o.TxCsum}, {ethtoolSSG, o.SG}, {ethtoolSTSO, o.TSO}, {ethtoolSGSO, o.GSO}}
	if !o.TxCsum || !o.SG {
		// Switch the dependent offloads off first.
		steps = []struct {
			cmd uint32
			val bool
		}{{ethtoolSGSO, o.GSO}, {ethtoolSTSO, o.TSO}, {ethtoolSSG, o.SG}, {ethtoolSTXCSUM, o.TxCsum}}
	}
	for _, st := range steps {
		if _, err := ethtool(fd, ifname, st.cmd, b(st.val)); err != nil {
			return fmt.Errorf("ethtool %s set 0x%x=%t: %w", ifname, st.cmd, st.val, err)
		}
	}
	return nil
}
