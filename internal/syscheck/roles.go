// SPDX-License-Identifier: Apache-2.0

package syscheck

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/source"
	"github.com/xmirror/xmirror/xdp"
)

// RoleOptions are the parts of the configuration that change what a role needs.
type RoleOptions struct {
	// Interfaces: the lb's listener interfaces, the XDP collector's receive
	// interfaces (the source attaches with TCX or tc, where the driver does not matter).
	Interfaces []string
	XDPMode    string // auto | native | generic
	PinPath    string // the lb's bpffs directory
	// PinsGoOnExit: the lb removes its pins when it exits (--detach-on-exit),
	// so they need not outlive it.
	PinsGoOnExit bool
	// CollectXDP: the collector receives through XDP instead of a socket.
	CollectXDP bool
	// CollectGRE: the collector's inputs include GRE (ERSPAN), read from a
	// raw IP socket.
	CollectGRE bool
	// CollectListen is the collector's listen address ("" = not checked).
	CollectListen string
	// CollectTap: the collector creates a TAP device (collector.tap), which
	// takes CAP_NET_ADMIN and /dev/net/tun.
	CollectTap bool
	// CollectPostRotate is the collector's post_rotate command ("" = none),
	// which it refuses to start with when it cannot be run.
	CollectPostRotate string
	// CollectGroup is the collector's group ("" = the process's), which
	// it refuses to start with when this host has no such group.
	CollectGroup string
	// TCPListen are the part's TCP listen addresses by key
	// ("metrics.listen", "collector.health_listen"); one in use by another
	// process stops it at start.
	TCPListen map[string]string
	// SourceConfig: the source's sessions, whose interfaces and targets
	// are resolved as its start does (nil = not checked).
	SourceConfig *config.Config
}

// LBCaps are what `xmirror lb` (and the XDP collector) need: load programs and
// maps (CAP_BPF), attach XDP and change links (CAP_NET_ADMIN), and pointer
// arithmetic and helpers that verify only with CAP_PERFMON.
var LBCaps = []Capability{CapBPF, CapNetAdmin, CapPerfmon}

// SourceCaps add CAP_NET_RAW for the socket that sends the mirrored packets.
var SourceCaps = []Capability{CapBPF, CapNetAdmin, CapPerfmon, CapNetRaw}

// ForRole returns what role needs on this host.
func ForRole(role string, o RoleOptions) (Requirements, error) {
	req := Requirements{Role: role}
	switch role {
	case RoleSource:
		spec, err := source.Spec()
		if err != nil {
			return req, fmt.Errorf("load the source's BPF object: %w", err)
		}
		req.Objects = []*ebpf.CollectionSpec{spec}
		// TCX where the kernel has it (6.6+), else tc clsact: the
		// programs' helpers (bpf_loop) set the minimum.
		req.TCX, req.TCFallback = true, true
		req.MinKernel, req.MinKernelWhy = Version{5, 17}, "bpf_loop"
		req.Caps = SourceCaps
		req.SourceConfig = o.SourceConfig
	case RoleLB:
		spec, err := xdp.Spec()
		if err != nil {
			return req, fmt.Errorf("load the load balancer's BPF object: %w", err)
		}
		req.Objects = []*ebpf.CollectionSpec{spec}
		req.XDPInterfaces, req.XDPMode, req.PinPath = o.Interfaces, o.XDPMode, o.PinPath
		req.PinsGoOnExit = o.PinsGoOnExit
		req.Forwarding = o.Interfaces
		req.MinKernel, req.MinKernelWhy = Version{5, 9}, "XDP links, bpf_jiffies64, devmap hash"
		req.Caps = LBCaps
	case RoleCollect:
		req.MinKernel, req.MinKernelWhy = Version{3, 9}, "SO_REUSEPORT"
		req.Listen, req.ListenXDP = o.CollectListen, o.CollectXDP
		if o.CollectXDP {
			spec, err := collector.Spec()
			if err != nil {
				return req, fmt.Errorf("load the collector's BPF object: %w", err)
			}
			req.Objects = []*ebpf.CollectionSpec{spec}
			req.XDPInterfaces, req.XDPMode = o.Interfaces, o.XDPMode
			req.MinKernel, req.MinKernelWhy = Version{5, 18}, "multi-buffer XDP (xdp.frags), bpf_xdp_load_bytes"
			req.Caps = LBCaps
		}
		if o.CollectGRE {
			req.Caps = append(slices.Clone(req.Caps), CapNetRaw)
		}
		if o.CollectTap && !slices.Contains(req.Caps, CapNetAdmin) {
			req.Caps = append(slices.Clone(req.Caps), CapNetAdmin)
		}
		req.Tun = o.CollectTap
		req.PostRotate = o.CollectPostRotate
		req.Group = o.CollectGroup
	default:
		return req, fmt.Errorf("role %q is not one of source, lb, collect", role)
	}
	req.TCPListen = o.TCPListen
	return req, nil
}
