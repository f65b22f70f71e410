// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/config"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version and the commit it was built from",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "xmirror %s (commit %s)\n", version, commit)
			return nil
		},
	}
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate a configuration file and print it with defaults applied, or probe this host (--system)",
		Description: "Without --system: reads --config, prints the effective configuration, exit 2 when it is invalid.\n" +
			"With --system: probes what each part needs on this host (kernel, BPF program types, helpers and\n" +
			"maps, TCX, native XDP on the configured interfaces, bpffs, capabilities, memlock) and prints a\n" +
			"table with what to do; exit 0 only when every role asked about (--role, else all) can run.\n" +
			"Each part runs the same probes when it starts.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "system", Usage: "probe this host instead of printing the configuration"},
			&cli.StringFlag{Name: "role", Usage: "with --system: source, lb or collect (default all three)"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("system") {
				return checkSystem(c)
			}
			if c.IsSet("role") {
				return usagef("check: --role needs --system")
			}
			cfg, err := loadConfig(c.String("config"))
			if err != nil {
				return err
			}
			out, err := cfg.Marshal()
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write(out)
			return err
		},
	}
}

// configFlag is --config of the parts and of check: the default path is where
// the package installs the configuration.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "YAML configuration `FILE`"}
}

// loadConfig reads, validates and fills in defaults; a bad or missing file is a
// usage error. Every problem is listed, one per line, so one run shows them all.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			lines := make([]string, len(errs))
			for i, e := range errs {
				lines[i] = "  " + e.Error()
			}
			return nil, usagef("config %s: %d %s:\n%s", path, len(errs), plural(len(errs), "error", "errors"), strings.Join(lines, "\n"))
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("%w", err)
		}
		return nil, usageError{err}
	}
	return cfg, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
