// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmirror/xmirror/internal/netlab"
)

// Machine is what the report says about the machine the numbers come from.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	Kernel   string `json:"kernel"`
	MemoryMB int    `json:"memory_mib"`
	Go       string `json:"go"`
	// Load averages when the run started and ended: other work on the machine
	// moves every number, and this says how much there was.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end,omitempty"`
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machineFacts() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryMB = int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
	}
	return m
}

// cpuTimes is the machine's busy and total time from /proc/stat, in clock ticks.
type cpuTimes struct{ busy, softirq, total uint64 }

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var t cpuTimes
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		t.total += v
		// idle (3) and iowait (4) are not busy; guest time is already in user.
		if i != 3 && i != 4 && i < 8 {
			t.busy += v
		}
		if i == 6 {
			t.softirq = v
		}
	}
	return t
}

// busyCores is how many CPUs were busy on average between a and b.
func busyCores(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total) * float64(runtime.NumCPU())
}

// softirqCores is how many CPUs were busy in softirq between a and b: where the
// kernel data paths (XDP, forwarding, nftables, socket delivery) spend their time.
func softirqCores(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.softirq-a.softirq) / float64(b.total-a.total) * float64(runtime.NumCPU())
}

// procStats is what /proc says about one process.
type procStats struct {
	CPU   time.Duration // user + system
	RSS   uint64        // resident set, bytes
	HWM   uint64        // peak resident set, bytes
	Valid bool
}

var clockTick = time.Second / 100 // USER_HZ is 100 on Linux

// readProc reads pid's /proc files; for no process (pid 0: a system that runs
// in the kernel only) it is not Valid.
func readProc(pid int) procStats {
	var ps procStats
	if pid <= 0 {
		return ps
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps
	}
	// Fields after the command name, which may hold spaces, start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ps
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return ps
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	ps.CPU = time.Duration(ut+st) * clockTick
	if s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(s))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "VmRSS":
				ps.RSS = kb << 10
			case "VmHWM":
				ps.HWM = kb << 10
			}
		}
	}
	ps.Valid = true
	return ps
}

// waitFor polls cond every 50 ms until it is true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// udpBound says whether something in h's namespace listens on UDP port.
func udpBound(h *netlab.Host, port int) bool {
	out, err := h.Run("ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
	return err == nil && strings.TrimSpace(out) != ""
}
