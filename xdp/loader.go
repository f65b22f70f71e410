// SPDX-License-Identifier: Apache-2.0

package xdp

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// DefaultPinPath is where maps and links live so a restart keeps forwarding.
const DefaultPinPath = "/sys/fs/bpf/xmirror"

// Sentinel errors.
var (
	ErrNotAttached = errors.New("load balancer is not attached")
	ErrBadMode     = errors.New("xdp mode must be auto, native or generic")
)

// linkPrefix names pinned links; "lb_" like the maps, so that Detach removes
// only the load balancer's pins from a directory other parts may share.
const linkPrefix = "lb_link_"

// objects is the loaded program and maps, with the pin path they live under
// ("" when not pinned, as in unit tests).
type objects struct {
	lbObjects
	pinPath string
}

// loadObjects loads the program; with a pin path, pinned maps of a previous
// run are reused (with their connection table and counters) and new ones are
// pinned there.
func loadObjects(pinPath string) (_ *objects, err error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	if err := setConstants(spec); err != nil {
		return nil, err
	}
	opts := &ebpf.CollectionOptions{}
	if pinPath == "" {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	} else {
		opts.Maps.PinPath = pinPath
		if err := replaceStalePins(pinPath, spec); err != nil {
			return nil, err
		}
	}
	o := &objects{pinPath: pinPath}
	if err := spec.LoadAndAssign(&o.lbObjects, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load bpf program: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load bpf objects (pinned maps from another version: run `xmirror lb detach`): %w", err)
		}
		return nil, fmt.Errorf("load bpf objects: %w", err)
	}
	return o, nil
}

// setConstants fills in the program's load-time constants (.rodata).
func setConstants(spec *ebpf.CollectionSpec) error {
	// The data path's clock is jiffies times the tick length, which is the
	// resolution of the coarse clock (TICK_NSEC).
	var tick unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &tick); err != nil {
		return fmt.Errorf("coarse clock resolution: %w", err)
	}
	if tick.Nano() <= 0 {
		return fmt.Errorf("coarse clock resolution %d ns", tick.Nano())
	}
	if err := spec.Variables["lb_tick_ns"].Set(uint64(tick.Nano())); err != nil {
		return fmt.Errorf("set tick length: %w", err)
	}
	// Each CPU walks the WRR schedule from its own offset.
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count cpus: %w", err)
	}
	if err := spec.Variables["lb_ncpus"].Set(uint32(ncpu)); err != nil {
		return fmt.Errorf("set cpu count: %w", err)
	}
	return nil
}

// obsoletePins are maps earlier versions pinned that this one no longer
// uses (their contents now live in lb_percpu).
var obsoletePins = []string{"lb_stats", "lb_wrr_cursor", "lb_backend_stats", "lb_conntrack"}

// replaceStalePins lets a new binary start over the pins of an older one. The
// per-CPU map holds only counters and caches, so a pinned one of another
// layout is removed (the counters restart from zero) rather than refusing to
// load; the tables and connection table must match, or loading fails with a
// hint to detach. Pins of maps this version dropped are removed too. A
// program still attached keeps its maps until its link is updated: removing
// a pin only unlinks the name.
func replaceStalePins(pinPath string, spec *ebpf.CollectionSpec) error {
	for _, name := range obsoletePins {
		if err := os.Remove(filepath.Join(pinPath, name)); err == nil {
			slog.Info("removed pin of an older version", "map", name)
		} else if !os.IsNotExist(err) {
			return fmt.Errorf("remove old pin %s: %w", name, err)
		}
	}
	const name = "lb_percpu"
	ms, ok := spec.Maps[name]
	if !ok {
		return nil
	}
	p := filepath.Join(pinPath, name)
	m, err := ebpf.LoadPinnedMap(p, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open pinned %s: %w", name, err)
	}
	defer m.Close()
	if m.Type() == ms.Type && m.KeySize() == ms.KeySize && m.ValueSize() == ms.ValueSize && m.MaxEntries() == ms.MaxEntries {
		return nil
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove incompatible pin %s: %w", name, err)
	}
	// The bases of the traffic counters belong to the counters just dropped.
	if err := os.Remove(filepath.Join(pinPath, "lb_traffic_base")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove pin lb_traffic_base: %w", err)
	}
	slog.Warn("replaced a pinned map of another layout; its counters restart from zero", "map", name)
	return nil
}

// ErrPinsWouldVanish means the pins could not outlive the process: the only
// bpffs there is to pin to would be one this process mounts in a mount
// namespace of its own, which goes away with the process and detaches the
// program, though `xmirror lb` promises that it keeps forwarding.
var ErrPinsWouldVanish = errors.New("pins would vanish with this process")

// ensureBPFFS mounts bpffs on /sys/fs/bpf when the pin path lies under it and
// it is not mounted, then creates dir. Without persist (the pins go on exit
// anyway) it also mounts in a private mount namespace, as a fresh `ip netns
// exec` has: its /sys is a new one, without the host's bpffs.
func ensureBPFFS(dir string, persist bool) error {
	const root = bpffsRoot
	if strings.HasPrefix(filepath.Clean(dir)+"/", root+"/") {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", root, err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			if persist && privateMounts() {
				return fmt.Errorf("%w: %s has no bpffs in this mount namespace, which is not the host's "+
					"(`ip netns exec` gives a command a /sys of its own); start it with "+
					"`nsenter --net=/run/netns/NAME`, which keeps the host's mounts, or with --detach-on-exit",
					ErrPinsWouldVanish, root)
			}
			if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
				return fmt.Errorf("mount bpffs on %s: %w", root, err)
			}
			slog.Info("mounted bpffs", "path", root)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			// The unit's user cannot write root's /sys/fs/bpf: its
			// ExecStartPre=+ lines make the default pin path only.
			return fmt.Errorf("create pin path: %w (under the systemd unit, ExecStartPre=+ makes %s for the xmirror user: change those lines for this pin path in a drop-in, docs/deploy.md)", err, DefaultPinPath)
		}
		return fmt.Errorf("create pin path: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin path %s is not on a bpf filesystem", dir)
	}
	return nil
}

const bpffsRoot = "/sys/fs/bpf"

// PinsWouldVanish: pins under pinPath would go with this process, because
// the bpffs for them would be one it mounts in a private mount namespace
// (ensureBPFFS refuses that unless the pins go on exit anyway).
func PinsWouldVanish(pinPath string) bool {
	if !strings.HasPrefix(filepath.Clean(pinPath)+"/", bpffsRoot+"/") {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(bpffsRoot, &st) == nil && st.Type != unix.BPF_FS_MAGIC && privateMounts()
}

// privateMounts: this process's mount namespace is not the one it was started
// from (its parent's; `ip netns exec` and `unshare -m` make one for the
// command they run) or not PID 1's. A namespace that cannot be read (a unit
// without CAP_SYS_PTRACE cannot read PID 1's) counts as the same.
func privateMounts() bool {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	for _, pid := range []int{os.Getppid(), 1} {
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && other != self {
			return true
		}
	}
	return false
}

// XDP attach modes.
const (
	ModeAuto    = "auto"
	ModeNative  = "native"
	ModeGeneric = "generic"
)

// modeCode is stored in lb_slot.xdp_mode for `xmirror lb status`.
func modeCode(m string) uint8 {
	switch m {
	case ModeNative:
		return 1
	case ModeGeneric:
		return 2
	}
	return 0
}

func modeName(c uint8) string {
	switch c {
	case 1:
		return ModeNative
	case 2:
		return ModeGeneric
	}
	return "unknown"
}

// attached is what attach did: a link per interface, the program each link
// a previous run had pinned ran before it was taken over (to give back if
// the start fails), and the mode in use.
type attached struct {
	links     map[string]link.Link
	prev      map[string]*ebpf.Program
	mode      string
	requested string // the mode asked for
}

// attach puts prog on each interface. A link pinned by an earlier run is
// updated in place (the old program keeps forwarding until the new one takes
// over: nothing is lost); otherwise a new link is made in the requested mode
// (auto: see autoMode, falling back to generic if native fails). On error
// every interface is left as it was.
func (o *objects) attach(ifaces []string, mode string, prog *ebpf.Program) (_ *attached, err error) {
	if mode == "" {
		mode = ModeAuto
	}
	if mode != ModeAuto && mode != ModeNative && mode != ModeGeneric {
		return nil, fmt.Errorf("%w: %q", ErrBadMode, mode)
	}
	// a, not the named result: `return nil, err` clears that before the
	// deferred undo runs.
	a := &attached{links: make(map[string]link.Link), prev: make(map[string]*ebpf.Program), mode: mode, requested: mode}
	defer func() {
		if err != nil {
			for name, l := range a.links {
				if uerr := undoLink(name, l, a.prev[name], o.pinPath != ""); uerr != nil {
					err = errors.Join(err, uerr)
				}
			}
			for _, p := range a.prev {
				p.Close()
			}
		}
	}()
	if o.pinPath != "" {
		if err := pinProgram(o.pinPath, prog); err != nil {
			return nil, err
		}
	}
	for _, name := range ifaces {
		iface, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		if o.pinPath != "" {
			taken, err := a.takeOver(filepath.Join(o.pinPath, linkPrefix+name), iface, prog)
			if err != nil {
				return nil, err
			}
			if taken {
				continue
			}
		}
		l, used, err := attachXDP(iface, mode, prog)
		if err != nil {
			return nil, err
		}
		a.links[name] = l
		if a.mode == ModeAuto || a.mode == ModeNative && used == ModeGeneric {
			a.mode = used
		}
		if o.pinPath != "" {
			if err := l.Pin(filepath.Join(o.pinPath, linkPrefix+name)); err != nil {
				return nil, fmt.Errorf("pin xdp link of %s: %w", name, err)
			}
		}
		slog.Info("attached xdp program", "interface", name, "mode", used)
	}
	return a, nil
}

// progPrefix names the pins of the programs the links run, by program id.
// A run that takes a link over keeps the link's program to give it back if
// its start fails, and opening a program by id (BPF_PROG_GET_FD_BY_ID)
// takes CAP_SYS_ADMIN, which the unit does not grant: every restart under
// the unit failed there. Opening a pin needs only its file's permission.
const progPrefix = "lb_prog_"

func programID(prog *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := prog.Info()
	if err != nil {
		return 0, fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("the kernel does not tell the program's id")
	}
	return id, nil
}

func progPin(dir string, id ebpf.ProgramID) string {
	return filepath.Join(dir, fmt.Sprintf("%s%d", progPrefix, id))
}

// pinProgram pins prog under dir by its id, before a link runs it, so that a
// process killed at any point leaves the program of every link pinned.
func pinProgram(dir string, prog *ebpf.Program) error {
	id, err := programID(prog)
	if err != nil {
		return err
	}
	p := progPin(dir, id)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := prog.Pin(p); err != nil {
		return fmt.Errorf("pin the xdp program: %w", err)
	}
	return nil
}

// previousProgram opens the program a pinned link runs: from its pin, else
// by id (a run of an earlier version pinned none; that takes CAP_SYS_ADMIN).
func previousProgram(dir string, id ebpf.ProgramID) (*ebpf.Program, error) {
	p, err := ebpf.LoadPinnedProgram(progPin(dir, id), nil)
	if err == nil {
		return p, nil
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, pinAccessError(progPin(dir, id), err)
	}
	p, err = ebpf.NewProgramFromID(id)
	if errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("%w: it is not pinned as %s%d (the run that attached it was of an earlier version), and opening it by id takes CAP_SYS_ADMIN: start the lb once as root, or `xmirror lb detach` first", err, progPrefix, id)
	}
	return p, err
}

// pinAccessError says that pin, made by another user (`xmirror lb` run as
// root, then the unit's xmirror user), cannot be opened by this process.
func pinAccessError(pin string, err error) error {
	owner := ""
	var st unix.Stat_t
	if unix.Stat(pin, &st) == nil {
		owner = fmt.Sprintf(", pin owner %d, mode %#o", st.Uid, st.Mode&0o777)
	}
	return fmt.Errorf("%s cannot be opened by this process (uid %d%s): %w; "+
		"give the pin path to the user the lb runs as (chown -R; the unit's ExecStartPre= does), or run `xmirror lb detach` as its owner",
		pin, os.Geteuid(), owner, err)
}

// unpinOtherPrograms removes the pins of programs other than keep: those of
// earlier runs, which no link runs any longer.
func unpinOtherPrograms(dir string, keep ebpf.ProgramID) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read pin path: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), progPrefix) && e.Name() != filepath.Base(progPin(dir, keep)) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// takeOver updates the link a previous run pinned at pin, if any, to prog,
// remembering the program it ran. A link whose interface is gone (deleted,
// perhaps created again under its name: another index) holds nothing: it
// is unpinned and the caller attaches anew.
func (a *attached) takeOver(pin string, iface *net.Interface, prog *ebpf.Program) (bool, error) {
	name := iface.Name
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return false, nil
	}
	info, err := l.Info()
	if err != nil {
		l.Close()
		return false, fmt.Errorf("read the pinned xdp link of %s: %w", name, err)
	}
	if x := info.XDP(); x != nil && int(x.Ifindex) != iface.Index {
		err := l.Unpin()
		l.Close()
		if err != nil {
			return false, fmt.Errorf("unpin the xdp link of a former %s: %w", name, err)
		}
		slog.Warn("the pinned xdp link was for an interface that is gone: attaching anew", "interface", name)
		return false, nil
	}
	prev, err := previousProgram(filepath.Dir(pin), info.Program)
	if err != nil {
		l.Close()
		return false, fmt.Errorf("open the program of the pinned xdp link of %s: %w", name, err)
	}
	if err := l.Update(prog); err != nil {
		prev.Close()
		l.Close()
		return false, fmt.Errorf("update xdp program on %s: %w", name, err)
	}
	a.links[name], a.prev[name] = l, prev
	// The link keeps the mode it was made in: say which, and that another
	// xdp_mode does not change it (a restart with xdp_mode generic over a
	// native link was reported as generic and ran native).
	used := xdpModeOf(iface.Index)
	switch {
	case used == "":
		if a.mode == ModeAuto {
			a.mode = "pinned"
		}
	case a.mode == a.requested || a.mode == ModeAuto || used == ModeGeneric:
		a.mode = used
	}
	if used != "" && a.requested != ModeAuto && used != a.requested {
		slog.Warn("the pinned xdp link keeps its mode; xdp_mode applies after `xmirror lb detach` and a start (the interface is without the program in between)",
			"interface", name, "mode", used, "xdp_mode", a.requested)
	}
	slog.Info("updated pinned xdp link", "interface", name, "mode", cmp.Or(used, "unknown"))
	return true, nil
}

// xdpModeOf is the mode of the XDP program on the interface of index idx,
// as the kernel reports it ("" when it cannot tell).
func xdpModeOf(idx int) string {
	l, err := netlink.LinkByIndex(idx)
	if err != nil || l.Attrs().Xdp == nil {
		return ""
	}
	switch l.Attrs().Xdp.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return ModeNative
	case nl.XDP_ATTACHED_SKB:
		return ModeGeneric
	}
	return ""
}

// attachXDP makes a new XDP link on iface in mode and returns the mode used.
func attachXDP(iface *net.Interface, mode string, prog *ebpf.Program) (link.Link, string, error) {
	used := mode
	if mode == ModeAuto {
		used = autoMode(iface.Name)
	}
	flags := map[string]link.XDPAttachFlags{ModeNative: link.XDPDriverMode, ModeGeneric: link.XDPGenericMode}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: flags[used]})
	if err != nil && mode == ModeAuto && used == ModeNative {
		slog.Warn("native xdp failed, falling back to generic", "interface", iface.Name, "err", err)
		used = ModeGeneric
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: link.XDPGenericMode})
	}
	if err != nil {
		return nil, "", fmt.Errorf("attach xdp to %s: %w", iface.Name, err)
	}
	if used == ModeNative {
		warnVeth(iface.Name)
	}
	return l, used, nil
}

// Detach removes every pinned link (which detaches the program) and every
// pinned map under pinPath, then the directory itself. It is refused
// (ErrPinPathBusy, naming the process) while an `xmirror lb` controls the pin
// path: that process would go on reloading and health-checking tables no
// program reads, and take pins it no longer has for its own.
func Detach(pinPath string) error {
	if _, err := os.Stat(pinPath); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("pin path: %w", err)
	}
	l, err := lockPinPath(pinPath)
	if err != nil {
		return err
	}
	defer l.release()
	return removePins(pinPath)
}

// removePins is Detach for the process that holds the pin path's lock.
func removePins(pinPath string) error {
	entries, err := os.ReadDir(pinPath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("read pin path: %w", err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(pinPath, e.Name())
		// Only the load balancer's pins: other parts may share the directory.
		if !strings.HasPrefix(e.Name(), "lb_") {
			continue
		}
		if strings.HasPrefix(e.Name(), linkPrefix) {
			if l, err := link.LoadPinnedLink(p, nil); err == nil {
				if err := l.Unpin(); err != nil {
					errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
				}
				l.Close()
				continue
			}
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	// The directory goes only when nothing else is pinned in it, and when
	// this process may remove it: under the unit, ExecStartPre=+ made it in
	// root's /sys/fs/bpf for the xmirror user, and it stays, empty, for the
	// next start.
	if err := os.Remove(pinPath); err != nil && !os.IsNotExist(err) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, os.ErrPermission) {
		errs = append(errs, fmt.Errorf("remove pin path: %w", err))
	}
	return errors.Join(errs...)
}

// warnVeth says what a native program on a veth needs: frames it sends back
// out with XDP_TX are dropped by the other end unless that end runs XDP too.
func warnVeth(name string) {
	if peerXDP, err := vethPeerRunsXDP(name); err == nil && !peerXDP {
		slog.Warn("native XDP on a veth whose peer runs no XDP program: XDP_TX frames are dropped there (attach e.g. xdp pass to the peer, or use generic mode)", "interface", name)
	}
}
