// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
	"github.com/xmirror/xmirror/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the seed scenario on this machine in network namespaces (needs root)",
		Description: "Builds the seed's network (ECS-source, ECS-test, ELB-A, ECS-target-01/02 on\n" +
			"192.168.0.0/24) in network namespaces, runs xmirror source, lb and collect there with\n" +
			"config/examples/seed.yaml, sends the seed's Step 5 conversation and traffic the filter\n" +
			"must not mirror, then prints what was mirrored where, the files written, their packets\n" +
			"and the counters. The namespaces are removed on exit, also on Ctrl-C or failure.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "./demo-pcap", Usage: "`DIR` for the capture files (DIR/<target>/<session>/), configs, logs"},
			&cli.StringFlag{Name: "affinity", Value: "inner-symmetric", Usage: "load balancer affinity: inner-symmetric or outer (outer also hashes directionally at the source, like AWS: directions may split as in the seed)"},
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "seed-shaped configuration `FILE` (default: the built-in config/examples/seed.yaml)"},
			&cli.BoolFlag{Name: "health-check", Usage: "turn the load balancer's HTTP health checks of the collectors on"},
			&cli.BoolFlag{Name: "keep-running", Usage: "after the report, restart the collectors and keep everything up until Ctrl-C"},
		},
		Action: func(c *cli.Context) error {
			switch c.String("affinity") {
			case "inner-symmetric", "outer":
			default:
				return usagef("--affinity: %q is not one of inner-symmetric, outer", c.String("affinity"))
			}
			if os.Geteuid() != 0 {
				return usagef("demo needs root (network namespaces, BPF); try: sudo xmirror demo")
			}
			seed := config.SeedYAML
			if p := c.String("config"); p != "" {
				b, err := config.ReadFile(p)
				if err != nil {
					return usagef("--config: %w", err)
				}
				seed = b
			}
			if err := demo.CheckConfig(seed); err != nil {
				return usagef("--config: %w", err)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{
				OutDir:      c.String("out"),
				Config:      seed,
				Affinity:    c.String("affinity"),
				HealthCheck: c.Bool("health-check"),
				Out:         c.App.Writer,
			}, c.Bool("keep-running"))
		},
	}
}
