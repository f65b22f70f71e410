// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/collector"
	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/internal/syscheck"
	"github.com/xmirror/xmirror/xdp"
)

// requireSystem runs the probes of `xmirror check --system` for role before a
// part starts: a host that cannot run it is refused with the failing checks
// and what to do, instead of a verifier or attach error halfway through setup.
func requireSystem(role string, o syscheck.RoleOptions) error {
	req, err := syscheck.ForRole(role, o)
	if err != nil {
		return err
	}
	rep := syscheck.Run(req)
	for _, r := range rep.Results {
		if r.Status == syscheck.Warn {
			slog.Warn("system check", "check", r.Check, "detail", r.Detail, "fix", r.Fix)
		}
	}
	return rep.Err()
}

// roleOptions takes from cfg what changes a role's requirements.
func roleOptions(role string, cfg *config.Config) syscheck.RoleOptions {
	var o syscheck.RoleOptions
	switch {
	case role == syscheck.RoleLB && cfg != nil && cfg.LoadBalancer != nil:
		lb := cfg.LoadBalancer
		o.Interfaces = lb.Listener.Interfaces
		o.XDPMode = cmp.Or(lb.XDPMode, xdp.ModeAuto)
		o.PinPath = cmp.Or(lb.PinPath, xdp.DefaultPinPath)
	case role == syscheck.RoleLB:
		o.XDPMode, o.PinPath = xdp.ModeAuto, xdp.DefaultPinPath
	case role == syscheck.RoleSource && cfg != nil && len(cfg.Sessions) > 0:
		o.SourceConfig = cfg
	case role == syscheck.RoleCollect && cfg != nil && cfg.Collector != nil:
		o = collectRoleOptions(*cfg.Collector)
	}
	return o
}

// collectRoleOptions: the listen address must be this host's; receive xdp
// needs the XDP probes on the interfaces that hold it (auto falls back to
// sockets, so it needs nothing more). A GRE input needs CAP_NET_RAW for its
// raw socket, a TAP output CAP_NET_ADMIN and /dev/net/tun, a post_rotate
// command a program the collector can run, a group one this host has.
func collectRoleOptions(cc config.Collector) syscheck.RoleOptions {
	o := syscheck.RoleOptions{CollectListen: cc.Listen, CollectTap: cc.Tap != "", CollectPostRotate: cc.PostRotate, CollectGroup: cc.Group, CollectGRE: slices.ContainsFunc(cc.Inputs, func(in config.Input) bool {
		return in.Protocol == config.ProtocolGRE || in.Protocol == config.ProtocolERSPAN
	})}
	if cc.Receive != collector.ReceiveXDP {
		return o
	}
	ifaces, _ := collector.XDPInterfaces(cc.Listen) // none: the collector says why at start
	o.CollectXDP, o.Interfaces, o.XDPMode = true, ifaces, xdp.ModeAuto
	return o
}

// checkSystem is `xmirror check --system`: one table per role, exit 0 only when
// every role asked about can run here.
func checkSystem(c *cli.Context) error {
	roles := syscheck.Roles
	if r := c.String("role"); r != "" {
		if !slices.Contains(syscheck.Roles, r) {
			return usagef("--role: %q is not one of source, lb, collect", r)
		}
		roles = []string{r}
	}
	var cfg *config.Config
	if path := c.String("config"); c.IsSet("config") || fileExists(path) {
		var err error
		if cfg, err = loadConfig(path); err != nil {
			return err
		}
	}
	failed := 0
	for i, role := range roles {
		if i > 0 {
			fmt.Fprintln(c.App.Writer)
		}
		req, err := syscheck.ForRole(role, roleOptions(role, cfg))
		if err != nil {
			return err
		}
		rep := syscheck.Run(req)
		if err := rep.WriteTable(c.App.Writer); err != nil {
			return err
		}
		if !rep.OK() {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("check --system: %d of %d %s cannot run on this host", failed, len(roles), plural(len(roles), "role", "roles"))
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
