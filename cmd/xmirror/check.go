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
		Name:      "check",
		Usage:     "validate a configuration file and print it with defaults applied",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			// Not Required: urfave/cli reports a missing required flag as a
			// plain error (exit 1); a missing --config is a usage error (exit 2).
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML configuration `FILE` (required)"},
		},
		Action: func(c *cli.Context) error {
			if c.String("config") == "" {
				return usagef("check: --config FILE is required")
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
