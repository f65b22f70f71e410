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
	if cfg != nil {
		health := ""
		if role == syscheck.RoleCollect { // with --config: the section's, or its default
			health = config.DefaultHealthListen
			if cfg.Collector != nil {
				health = cmp.Or(cfg.Collector.HealthListen, health)
			}
		}
		o.TCPListen = tcpListens(cfg.Metrics.Listen, health)
	}
	return o
}

// tcpListens are a part's TCP listen addresses (/metrics, the collector's
// /healthz) by the key that sets them, for the system check.
func tcpListens(metrics, health string) map[string]string {
	m := map[string]string{}
	if metrics != "" && metrics != config.MetricsOff {
		m["metrics.listen"] = metrics
	}
	if health != "" && health != config.MetricsOff {
		m["collector.health_listen"] = health
	}
	return m
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
		if r, ok := sectionRow(role, cfg, c.String("config"), c.IsSet("role")); ok {
			rep.Results = append(rep.Results, r)
		}
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

// sectionRow is a row for a configuration that lacks what role refuses to
// start without (lb: a load_balancer section, source: sessions), which the
// table passed before: it fails when the role was asked for (--role), and
// warns when every role is checked against one host's file.
func sectionRow(role string, cfg *config.Config, path string, asked bool) (syscheck.Result, bool) {
	r := syscheck.Result{Check: "configuration", Status: syscheck.Warn}
	switch {
	case cfg == nil:
		return r, false
	case role == syscheck.RoleLB && cfg.LoadBalancer == nil:
		r.Detail, r.Fix = path+" has no load_balancer section: xmirror lb refuses to start with it", "add the section, or check the file the lb runs with"
	case role == syscheck.RoleSource && len(cfg.Sessions) == 0:
		r.Detail, r.Fix = path+" has no sessions: xmirror source refuses to start with it", "add sessions, or check the file the source runs with"
	default:
		return r, false
	}
	if asked {
		r.Status = syscheck.Fail
	}
	return r, true
}
