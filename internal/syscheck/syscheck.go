// SPDX-License-Identifier: Apache-2.0

// Package syscheck probes whether this host can run a part of xmirror: kernel,
// BPF program types, helpers and maps the part's objects use, TCX, native XDP on
// the named interfaces, bpffs, capabilities and memlock. `xmirror check --system`
// prints the report; every part runs the same probes when it starts and refuses
// to start with the report's failures.
package syscheck

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/config"
)

// Roles a host can have.
const (
	RoleSource  = "source"
	RoleLB      = "lb"
	RoleCollect = "collect"
)

// Roles lists every role in the order the docs use.
var Roles = []string{RoleSource, RoleLB, RoleCollect}

// Requirements says what a role needs on this host.
type Requirements struct {
	Role string
	// MinKernel is the oldest release with everything the role uses, and why.
	MinKernel    Version
	MinKernelWhy string
	// Objects are the BPF objects the role loads (none for the socket collector).
	Objects []*ebpf.CollectionSpec
	// TCX: the role attaches tc programs through TCX links (Linux 6.6+), and
	// some (the kernel datapath's) as tc bpf filters on a clsact qdisc.
	TCX bool
	// TCFallback: without TCX the role attaches through tc clsact (a
	// warning, not a failure).
	TCFallback bool
	// XDPInterfaces get an XDP program; XDPMode is auto, native or generic.
	XDPInterfaces []string
	XDPMode       string
	// PinPath is the bpffs directory the role pins to ("" = none);
	// PinsGoOnExit: they need not outlive the process.
	PinPath      string
	PinsGoOnExit bool
	// Caps are the capabilities the role needs.
	Caps []Capability
	// Listen is the address the role receives on ("" = none); ListenXDP:
	// through XDP on the interfaces that hold it.
	Listen    string
	ListenXDP bool
	// Tun: the role opens /dev/net/tun (the collector's TAP device).
	Tun bool
	// PostRotate is the collector's post_rotate command ("" = none).
	PostRotate string
	// Group owns the collector's files ("" = the process's group).
	Group string
	// SourceConfig: the source's sessions to resolve on this host (nil = none).
	SourceConfig *config.Config
	// TCPListen are the TCP listen addresses by key (metrics.listen, ...).
	TCPListen map[string]string
	// Forwarding: IPv4 forwarding must be on (or be turned on) on these
	// interfaces (the lb's listeners: bpf_fib_lookup needs it).
	Forwarding []string
}

// Status of one check.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn" // runs, but not as well as it could
	Fail Status = "FAIL"
)

// Result is one row of the report.
type Result struct {
	Check  string
	Status Status
	Detail string
	Fix    string // what to do, for Warn and Fail
}

// Report is the outcome of Run.
type Report struct {
	Role    string
	Results []Result
}

// OK reports whether the role can run: no check failed.
func (r *Report) OK() bool {
	for _, x := range r.Results {
		if x.Status == Fail {
			return false
		}
	}
	return true
}

// Err is nil when the role can run, else an error listing each failure with
// what to do about it.
func (r *Report) Err() error {
	var lines []string
	for _, x := range r.Results {
		if x.Status == Fail {
			lines = append(lines, fmt.Sprintf("  %s: %s; %s", x.Check, x.Detail, x.Fix))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("this host cannot run xmirror %s (`xmirror check --system --role %s` shows every check):\n%s",
		r.Role, r.Role, strings.Join(lines, "\n"))
}

// WriteTable prints the report as a table, then what to do for each row that
// did not pass.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK (role %s)\tRESULT\tDETAIL\n", r.Role)
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", x.Check, x.Status, x.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, x := range r.Results {
		if x.Status != Pass && x.Fix != "" {
			fmt.Fprintf(w, "%s %s: %s\n", x.Status, x.Check, x.Fix)
		}
	}
	verdict := "can run"
	if !r.OK() {
		verdict = "CANNOT run"
	}
	_, err := fmt.Fprintf(w, "xmirror %s %s on this host\n", r.Role, verdict)
	return err
}

// Run probes the host for req. It loads tiny test programs (as the parts do),
// so on a host where the role can run it needs the role's capabilities too.
func Run(req Requirements) *Report {
	r := &Report{Role: req.Role}
	r.add(checkKernel(req))
	caps := checkCaps(req.Caps)
	r.add(caps)
	if len(req.Objects) > 0 {
		r.add(checkMemlock())
		r.add(checkBTF())
		if caps.Status == Fail {
			r.add(Result{Check: "bpf features", Status: Fail,
				Detail: "not probed: loading a BPF program needs the capabilities above", Fix: caps.Fix})
		} else {
			r.add(checkObjects(req.Objects)...)
		}
	}
	if req.TCX {
		tcx, clsact := checkTCX(), checkClsact()
		if tcx.Status == Fail && req.TCFallback && strings.Contains(tcx.Detail, "no TCX") {
			tcx.Status, tcx.Detail = Warn, tcx.Detail+": the source attaches with tc clsact instead"
			tcx.Fix = "nothing to do (Linux 6.6 or later attaches through TCX links, which go with the process)"
			if clsact.Status == Warn {
				clsact.Status = Fail
				clsact.Fix = "without TCX every program attaches through tc clsact: load sch_ingress and cls_bpf"
			}
		}
		r.add(tcx, clsact)
	}
	for _, ifname := range req.XDPInterfaces {
		x := checkXDP(ifname, req.XDPMode)
		if req.ListenXDP && x.Status == Warn && strings.Contains(x.Detail, "no native XDP") {
			// Worse than slower for a collector (docs/collector.md).
			x.Detail += "; a collector there takes the kernel's UDP GSO and GRO aggregates for single datagrams and writes each as one frame"
			x.Fix = "receive: auto (sockets on such an interface) or socket, or a NIC whose driver supports XDP"
		}
		r.add(x)
		switch {
		case req.ListenXDP:
			r.add(checkXDPFree(ifname))
		case req.Role == RoleLB && x.Detail != errNoInterface.Error(): // the row says so already
			r.add(checkLBXDPFree(ifname, req.PinPath))
		}
	}
	if req.PinPath != "" {
		r.add(checkBPFFS(req.PinPath, !req.PinsGoOnExit))
	}
	if req.Listen != "" {
		r.add(checkListen(req.Listen, req.ListenXDP))
	}
	if req.Tun {
		r.add(checkTun(), checkTapSysctls())
	}
	if req.SourceConfig != nil {
		r.add(checkSourceHost(req.SourceConfig))
	}
	if req.PostRotate != "" {
		r.add(checkPostRotate(req.PostRotate))
	}
	if req.Group != "" {
		r.add(checkGroup(req.Group))
	}
	for _, ifname := range req.Forwarding {
		r.add(checkForwarding(ifname))
	}
	for _, key := range slices.Sorted(maps.Keys(req.TCPListen)) {
		r.add(checkTCPListen(key, req.TCPListen[key], req.Role))
	}
	return r
}

func (r *Report) add(rs ...Result) { r.Results = append(r.Results, rs...) }
