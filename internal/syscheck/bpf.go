// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/xdp"
)

// checkObjects probes every program type, helper and map type the objects use,
// as compiled: a kernel that lacks one would refuse to load the object.
func checkObjects(objs []*ebpf.CollectionSpec) []Result {
	helpers := map[ebpf.ProgramType][]asm.BuiltinFunc{}
	var progTypes []ebpf.ProgramType
	var mapTypes []ebpf.MapType
	for _, spec := range objs {
		for _, p := range spec.Programs {
			if !slices.Contains(progTypes, p.Type) {
				progTypes = append(progTypes, p.Type)
			}
			for _, ins := range p.Instructions {
				if fn := asm.BuiltinFunc(ins.Constant); ins.IsBuiltinCall() && !slices.Contains(helpers[p.Type], fn) {
					helpers[p.Type] = append(helpers[p.Type], fn)
				}
			}
		}
		for _, m := range spec.Maps {
			if !slices.Contains(mapTypes, m.Type) {
				mapTypes = append(mapTypes, m.Type)
			}
		}
	}
	var out []Result
	for _, pt := range progTypes {
		out = append(out, probeAll(fmt.Sprintf("program type %s", pt), []ebpf.ProgramType{pt},
			func(t ebpf.ProgramType) error { return features.HaveProgramType(t) }))
		out = append(out, probeAll(fmt.Sprintf("%s helpers (%d)", pt, len(helpers[pt])), helpers[pt],
			func(fn asm.BuiltinFunc) error { return features.HaveProgramHelper(pt, fn) }))
	}
	out = append(out, probeAll(fmt.Sprintf("map types (%d)", len(mapTypes)), mapTypes,
		func(mt ebpf.MapType) error { return features.HaveMapType(mt) }))
	return out
}

// probeAll runs probe on each item: a Pass row naming them, or a Fail row naming
// the missing ones and any probe that could not run.
func probeAll[T fmt.Stringer](check string, items []T, probe func(T) error) Result {
	var names, missing, broken []string
	for _, it := range items {
		names = append(names, it.String())
		err := probe(it)
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			missing = append(missing, it.String())
		default:
			broken = append(broken, fmt.Sprintf("%s: %v", it, err))
		}
	}
	r := Result{Check: check, Status: Pass, Detail: strings.Join(names, " ")}
	if len(names) == 0 {
		r.Detail = "none"
	}
	switch {
	case len(missing) > 0:
		r.Status, r.Detail = Fail, "kernel lacks "+strings.Join(missing, " ")
		r.Fix = "use a newer kernel (see the kernel matrix in docs/deploy.md)"
	case len(broken) > 0:
		r.Status, r.Detail = Fail, "probe failed: "+strings.Join(broken, "; ")
		r.Fix = "check the capabilities above and that no LSM (seccomp, SELinux, lockdown) forbids bpf()"
	}
	return r
}

// checkTCX attaches a program that passes every packet on to the loopback
// device's TCX ingress hook and detaches it: the kernel has TCX (6.6+) exactly
// when that works.
func checkTCX() Result {
	r := Result{Check: "tcx attach"}
	prog, err := passProgram()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("load a tc program: %v", err), "check the capabilities above"
		return r
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("attach to lo: %v", err)
		if errors.Is(err, ebpf.ErrNotSupported) {
			r.Detail = "the kernel has no TCX (Linux 6.6+)"
		}
		r.Fix = "use Linux 6.6 or later"
		return r
	}
	l.Close()
	r.Status, r.Detail = Pass, "TCX links attach (tested on lo)"
	return r
}

// checkClsact attaches the same pass-through program as a direct-action tc
// bpf filter on lo's clsact qdisc and removes both again (the qdisc only if it
// was not there): the source's kernel datapath holds a program that way.
func checkClsact() Result {
	r := Result{Check: "tc clsact"}
	fail := func(what string, err error) Result {
		r.Status, r.Detail = Warn, fmt.Sprintf("%s: %v", what, err)
		r.Fix = "--datapath kernel needs sch_ingress (clsact) and cls_bpf: load the modules or use the default ring datapath"
		return r
	}
	prog, err := passProgram()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("load a tc program: %v", err), "check the capabilities above"
		return r
	}
	defer prog.Close()
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: 1, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	err = netlink.QdiscAdd(qdisc)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fail("add a clsact qdisc to lo", err)
	}
	if err == nil {
		defer netlink.QdiscDel(qdisc)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: 1, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 1,
			Priority: 0xa2, Protocol: unix.ETH_P_ALL},
		Fd: prog.FD(), Name: "xmirror-check", DirectAction: true,
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fail("add a bpf filter to lo", err)
	}
	netlink.FilterDel(f)
	r.Status, r.Detail = Pass, "bpf filters attach to a clsact qdisc (tested on lo)"
	return r
}

// passProgram is a tc program that leaves every packet to what comes next.
func passProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1), // TCX_NEXT / TC_ACT_UNSPEC
			asm.Return(),
		},
	})
}

// checkXDP asks the kernel whether ifname's driver runs XDP natively.
func checkXDP(ifname, mode string) Result {
	r := Result{Check: "xdp " + ifname}
	native, err := nativeXDP(ifname)
	switch {
	case errors.Is(err, errNoInterface):
		r.Status, r.Detail, r.Fix = Fail, errNoInterface.Error(), "create it, or name the right one in the configuration"
	case mode == "generic":
		r.Status, r.Detail = Pass, "generic mode configured"
	case errors.Is(err, errNoXDPFeatures):
		r.Status = Warn
		r.Detail = "cannot tell: the kernel reports XDP features from Linux 6.3"
		r.Fix = "watch the log: xmirror says which mode it attached in"
	case err != nil:
		r.Status, r.Detail, r.Fix = Warn, "cannot tell: "+err.Error(), "watch the log: xmirror says which mode it attached in"
	case native:
		r.Status, r.Detail = Pass, "native XDP supported by the driver"
	case mode == "native":
		r.Status, r.Detail = Fail, "the driver has no native XDP and xdp_mode is native"
		r.Fix = "set xdp_mode: auto (or generic) to run in generic mode, slower"
	default:
		r.Status, r.Detail = Warn, "the driver has no native XDP: runs in generic mode, slower"
		r.Fix = "use a NIC whose driver supports XDP for full speed"
	}
	return r
}

// checkLBXDPFree: xmirror lb refuses to start on a listener interface that
// runs an XDP program other than the load balancer pinned under its pin
// path (another pin path's, one an operator attached with ip link); before,
// this table passed such an interface and said the lb could run.
func checkLBXDPFree(ifname, pinPath string) Result {
	r := Result{Check: "xdp program on " + ifname}
	id, err := xdp.ForeignXDP(ifname, pinPath)
	switch {
	case err != nil:
		r.Status, r.Detail, r.Fix = Warn, "cannot tell: "+err.Error(), "watch the log: xmirror lb says why it does not start"
	case id != 0:
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is attached already and is not the load balancer pinned under %s: xmirror lb refuses to attach beside it", collector.XDPProgramName(id), pinPath)
		r.Fix = "detach it (ip link set dev " + ifname + " xdp off, or stop what attached it), or set pin_path to where its load balancer is pinned"
	default:
		r.Status, r.Detail = Pass, "none attached but this pin path's load balancer"
	}
	return r
}

// checkBPFFS: the pin path must be on a bpf filesystem. Under /sys/fs/bpf a
// part that holds CAP_SYS_ADMIN mounts one itself, unless the pins must
// outlive it (persist) and the mount would be in a private mount namespace.
func checkBPFFS(pinPath string, persist bool) Result {
	r := Result{Check: "bpffs"}
	dir := filepath.Clean(pinPath)
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		r.Status, r.Detail = Pass, fmt.Sprintf("%s is on bpffs", dir)
		return r
	}
	const root = "/sys/fs/bpf"
	underRoot := strings.HasPrefix(filepath.Clean(pinPath)+"/", root+"/")
	if persist && xdp.PinsWouldVanish(pinPath) {
		r.Status = Fail
		r.Detail = root + " is not mounted in this mount namespace, which is not the host's: pins made here would vanish with the process"
		r.Fix = "run it with nsenter --net=/run/netns/NAME rather than ip netns exec, which gives a command a /sys of its own"
		return r
	}
	if set, err := effectiveCaps(); underRoot && err == nil && set&(1<<uint(CapSysAdmin)) != 0 {
		r.Status, r.Detail = Pass, root+" is not mounted; xmirror mounts it (holds CAP_SYS_ADMIN)"
		return r
	}
	r.Status = Fail
	r.Detail = fmt.Sprintf("%s (for pin path %s) is not on a bpf filesystem", dir, pinPath)
	r.Fix = "mount -t bpf bpf " + root + " (systemd does at boot; a container needs -v /sys/fs/bpf:/sys/fs/bpf)"
	if !underRoot {
		r.Fix = "point pin_path into a mounted bpffs such as " + root
	}
	return r
}

// checkForwarding: bpf_fib_lookup finds no route unless IPv4 forwarding is
// on for the ingress interface; the lb turns it on, which a container's
// read-only /proc/sys does not allow.
func checkForwarding(ifname string) Result {
	r := Result{Check: "forwarding " + ifname}
	p := "/proc/sys/net/ipv4/conf/" + ifname + "/forwarding"
	cur, err := os.ReadFile(p)
	switch {
	case err != nil:
		r.Status, r.Detail = Fail, fmt.Sprintf("read %s: %v", p, err)
	case strings.TrimSpace(string(cur)) == "1":
		r.Status, r.Detail = Pass, "IPv4 forwarding is on"
	// With the effective ids and capabilities, as the write will be made:
	// CAP_NET_ADMIN writes a net sysctl whoever owns the process. EROFS on a
	// read-only mount, whatever the capabilities.
	case unix.Faccessat(unix.AT_FDCWD, p, unix.W_OK, unix.AT_EACCESS) == nil:
		r.Status, r.Detail = Pass, "IPv4 forwarding is off: xmirror lb turns it on"
	default:
		r.Status, r.Detail = Fail, "IPv4 forwarding is off and "+p+" cannot be written (a container's read-only /proc/sys)"
		r.Fix = "sysctl -w net.ipv4.conf." + ifname + ".forwarding=1 on the host before starting the lb"
	}
	return r
}
