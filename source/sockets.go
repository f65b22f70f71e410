// SPDX-License-Identifier: Apache-2.0

package source

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The sockets the user-space datapaths send through. Every one carries the
// tunnel mark, so the source programs do not mirror what they send, and none
// is bound: they receive nothing.

// rawSocket is a raw IPv4 socket (the packets carry their own IPv4 header):
// the kernel routes each packet, fills in the IPv4 ID and checksum and
// resolves the neighbour.
func rawSocket(mark uint32) (int, error) {
	return markedSocket("raw socket", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW, mark)
}

// packetSocket is an AF_PACKET datagram socket for IPv4: the kernel builds
// the link-layer header from the destination address.
func packetSocket(mark uint32) (int, error) {
	return markedSocket("packet socket", unix.AF_PACKET, unix.SOCK_DGRAM, 0, mark)
}

// gsoSocket is an AF_PACKET socket for whole Ethernet frames that start
// with a virtio-net header, which is how a packet asks for segmentation
// offload (the kernel reads that header only on a socket of type SOCK_RAW).
func gsoSocket(mark uint32) (int, error) {
	fd, err := markedSocket("packet socket", unix.AF_PACKET, unix.SOCK_RAW, 0, mark)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket: set PACKET_VNET_HDR: %w", err)
	}
	return fd, nil
}

// markedSocket opens a sending socket whose packets carry mark, with a 4 MiB
// send buffer for batches.
func markedSocket(what string, domain, typ, proto int, mark uint32) (int, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: set SO_MARK: %w", what, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
