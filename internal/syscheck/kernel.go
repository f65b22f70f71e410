// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Version is a kernel release's major.minor.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && v.Minor < o.Minor
}

// ParseRelease reads the major.minor of a release such as "6.18.0-1-amd64".
func ParseRelease(rel string) (Version, error) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR", rel)
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	maj, err1 := strconv.Atoi(parts[0])
	mn, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR", rel)
	}
	return Version{maj, mn}, nil
}

func release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func checkKernel(req Requirements) Result {
	rel := release()
	r := Result{Check: "kernel", Detail: "Linux " + rel}
	v, err := ParseRelease(rel)
	if err != nil {
		r.Status, r.Detail = Warn, err.Error()
		return r
	}
	if v.Less(req.MinKernel) {
		r.Status = Fail
		r.Detail += fmt.Sprintf(", older than %s", req.MinKernel)
		r.Fix = fmt.Sprintf("xmirror %s needs Linux %s or later (%s); see docs/deploy.md for the distributions that qualify",
			req.Role, req.MinKernel, req.MinKernelWhy)
		return r
	}
	r.Status = Pass
	r.Detail += fmt.Sprintf(" (needs %s+: %s)", req.MinKernel, req.MinKernelWhy)
	return r
}

// Capability is a Linux capability number.
type Capability int

// The capabilities the parts use (linux/capability.h).
const (
	CapNetAdmin Capability = 12
	CapNetRaw   Capability = 13
	CapSysAdmin Capability = 21
	CapPerfmon  Capability = 38
	CapBPF      Capability = 39
)

func (c Capability) String() string {
	switch c {
	case CapNetAdmin:
		return "CAP_NET_ADMIN"
	case CapNetRaw:
		return "CAP_NET_RAW"
	case CapSysAdmin:
		return "CAP_SYS_ADMIN"
	case CapPerfmon:
		return "CAP_PERFMON"
	case CapBPF:
		return "CAP_BPF"
	}
	return fmt.Sprintf("cap(%d)", int(c))
}

// effectiveCaps reads this process's effective capability set.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}

func hasCap(set uint64, c Capability) bool {
	if set&(1<<uint(c)) != 0 {
		return true
	}
	// CAP_SYS_ADMIN still grants what CAP_BPF and CAP_PERFMON split off from it.
	return (c == CapBPF || c == CapPerfmon) && set&(1<<uint(CapSysAdmin)) != 0
}

func checkCaps(need []Capability) Result {
	r := Result{Check: "capabilities"}
	if len(need) == 0 {
		r.Status, r.Detail = Pass, "none needed"
		return r
	}
	set, err := effectiveCaps()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "cannot read them: "+err.Error(), "run on Linux with /proc mounted"
		return r
	}
	var names, missing []string
	for _, c := range need {
		names = append(names, c.String())
		if !hasCap(set, c) {
			missing = append(missing, c.String())
		}
	}
	if len(missing) > 0 {
		r.Status = Fail
		r.Detail = "missing " + strings.Join(missing, " ")
		r.Fix = "run as root, or give the process " + strings.Join(names, " ") +
			" (the systemd unit's AmbientCapabilities=, the container's --cap-add)"
		return r
	}
	r.Status, r.Detail = Pass, strings.Join(names, " ")
	return r
}

// memcgAccounting is the release from which BPF memory is charged to the cgroup
// instead of RLIMIT_MEMLOCK.
var memcgAccounting = Version{5, 11}

func checkMemlock() Result {
	r := Result{Check: "memlock"}
	if v, err := ParseRelease(release()); err == nil && !v.Less(memcgAccounting) {
		r.Status, r.Detail = Pass, "not used: BPF memory is charged to the cgroup (Linux 5.11+)"
		return r
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "set LimitMEMLOCK=infinity"
		return r
	}
	if lim.Cur == unix.RLIM_INFINITY || lim.Cur >= 256<<20 {
		r.Status, r.Detail = Pass, fmt.Sprintf("RLIMIT_MEMLOCK %s", limitText(lim.Cur))
		return r
	}
	r.Status = Fail
	r.Detail = fmt.Sprintf("RLIMIT_MEMLOCK %s is too small for the BPF maps on this kernel", limitText(lim.Cur))
	r.Fix = "raise it: LimitMEMLOCK=infinity in the unit, ulimit -l unlimited, or docker run --ulimit memlock=-1"
	return r
}

func limitText(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return fmt.Sprintf("%d KiB", v>>10)
}

func checkBTF() Result {
	r := Result{Check: "btf", Status: Pass}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		r.Detail = "no /sys/kernel/btf/vmlinux: not required (the objects use no CO-RE), bpftool shows less"
		return r
	}
	r.Detail = "/sys/kernel/btf/vmlinux present"
	return r
}
