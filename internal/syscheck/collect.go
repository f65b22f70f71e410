// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/collector"
)

// checkListen: the collector receives on its listen address, which must be
// one of this host's (any of them, "0.0.0.0", with sockets); receive xdp
// attaches to the interfaces that hold it, so it needs a concrete one.
func checkListen(listen string, xdp bool) Result {
	r := Result{Check: "listen " + listen}
	ifaces, err := collector.XDPInterfaces(listen)
	if err == nil {
		r.Status, r.Detail = Pass, "held by "+strings.Join(ifaces, ", ")
		return r
	}
	host, _, splitErr := net.SplitHostPort(listen)
	addr, parseErr := netip.ParseAddr(host)
	anyAddr := splitErr == nil && (host == "" || (parseErr == nil && addr.IsUnspecified()))
	switch {
	case anyAddr && !xdp:
		r.Status, r.Detail = Pass, "every address of this host"
	case anyAddr:
		r.Status, r.Detail = Fail, "receive xdp attaches to the interfaces that hold the listen address: "+listen+" names none"
		r.Fix = "listen on an address of the interface mirrored traffic arrives on, or use receive: socket"
	default:
		r.Status, r.Detail = Fail, fmt.Sprintf("no interface of this host holds it (%v)", err)
		r.Fix = "listen on an address of this host (or 0.0.0.0 with receive: socket or auto)"
	}
	return r
}

// checkTun: the collector's TAP device is made through /dev/net/tun, which
// a unit with PrivateDevices=yes (the shipped one) does not have.
func checkTun() Result {
	r := Result{Check: "tap device"}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("collector.tap needs /dev/net/tun: %v", err)
		r.Fix = "in the unit: PrivateDevices=no, DeviceAllow=/dev/net/tun rw and CAP_NET_ADMIN (docs/deploy.md, the collector's TAP output)"
		return r
	}
	f.Close()
	r.Status, r.Detail = Pass, "/dev/net/tun opens"
	return r
}

// tapSysctl stands for the sysctls the collector writes to make a TAP
// device passive (accept_ra, disable_ipv6, rp_filter under /proc/sys/net):
// the device's own do not exist before it is made, and a read-only mount
// refuses all of them alike.
const tapSysctl = "/proc/sys/net/ipv4/conf/default/rp_filter"

// checkTapSysctls: a unit with ProtectKernelTunables=yes (the shipped
// collector's) mounts /proc/sys read-only, so the TAP device cannot be made
// passive and the collector fails at start; this table said it could run.
func checkTapSysctls() Result {
	r := Result{Check: "tap sysctls"}
	// With the effective ids and capabilities, as the write will be made.
	if err := unix.Faccessat(unix.AT_FDCWD, tapSysctl, unix.W_OK, unix.AT_EACCESS); errors.Is(err, unix.EROFS) {
		r.Status, r.Detail = Fail, "collector.tap sets the device's accept_ra, disable_ipv6 and rp_filter, and /proc/sys is read-only"
		r.Fix = "in the unit: ProtectKernelTunables=no (docs/deploy.md, the collector's TAP output)"
		return r
	}
	r.Status, r.Detail = Pass, "/proc/sys/net can be written"
	return r
}

// checkPostRotate: the collector refuses to start with a post_rotate
// command it cannot run (what `xmirror check` cannot see: it reads the
// file, not this host's PATH).
func checkPostRotate(cmd string) Result {
	r := Result{Check: "post_rotate"}
	if err := collector.CheckPostRotate(cmd); err != nil {
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = "install the command, give its full path, or make it executable (the collector runs it without a shell)"
		return r
	}
	r.Status, r.Detail = Pass, strings.Fields(cmd)[0]+" can be run"
	return r
}

// checkGroup: the collector refuses to start with a group this host does
// not have (what `xmirror check` cannot see: it reads the file, not the
// host's groups).
func checkGroup(group string) Result {
	r := Result{Check: "group"}
	gid, err := collector.LookupGroup(group)
	if err != nil {
		r.Status, r.Detail = Fail, err.Error()
		r.Fix = "create the group (groupadd " + group + "), or name one this host has in collector.group"
		return r
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("%s is gid %d", group, gid)
	return r
}

// checkXDPFree: receive xdp refuses to start on an interface that runs an
// XDP program already (another collector's, the load balancer's, one an
// operator attached with ip link); before, this table passed such an
// interface and said the collector could run.
func checkXDPFree(ifname string) Result {
	r := Result{Check: "xdp program on " + ifname}
	if other := collector.XDPAttached(ifname); other != "" {
		r.Status, r.Detail = Fail, other+" is attached already: the collector's program cannot attach beside it"
		r.Fix = "detach it (ip link set dev " + ifname + " xdp off, or stop what attached it), or use receive: socket or auto"
		return r
	}
	r.Status, r.Detail = Pass, "none attached"
	return r
}
