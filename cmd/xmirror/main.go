// SPDX-License-Identifier: Apache-2.0

// Command xmirror is self-hosted cloud-style traffic mirroring: a tc BPF mirror
// source, an XDP VXLAN load balancer and a per-session pcap collector.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xmirror/xmirror/internal/earlyhup"
	"github.com/xmirror/xmirror/internal/telemetry"
)

// Set by the build: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError marks an error as the user's (bad flags or configuration): exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "xmirror",
		Usage:   "mirror filtered interface traffic as VXLAN, load-balance it, and write per-session pcap files",
		Version: version + " (" + commit + ")",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		},
		Before: setupLogging,
		Commands: []*cli.Command{
			sourceCommand(),
			lbCommand(),
			collectCommand(),
			demoCommand(),
			benchCommand(),
			checkCommand(),
			versionCommand(),
			manCommand(),
			completionCommand(),
		},
		// Without a command: help. With an unknown one: a usage error (exit 2),
		// not urfave/cli's "No help topic" with exit 0.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q: `xmirror --help` lists the commands", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		EnableBashCompletion: true,
		OnUsageError:         func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		ExitErrHandler:       func(*cli.Context, error) {},
	}
}

// refuseArgs makes a command that takes no arguments (ArgsUsage " ") refuse
// them with a usage error: `xmirror lb statu` must not start a load balancer,
// and a flag after a stray word (which urfave/cli leaves unparsed) must not be
// silently ignored.
func refuseArgs(cmd *cli.Command) {
	if cmd.ArgsUsage != " " || cmd.Action == nil {
		return
	}
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if !c.Args().Present() {
			return action(c)
		}
		var subs []string // urfave/cli adds "help" to every command
		for _, s := range c.Command.Subcommands {
			if s.Name != "help" {
				subs = append(subs, s.Name)
			}
		}
		if len(subs) > 0 {
			return usagef("%s: unknown subcommand %q (subcommands are %s)", name(c), c.Args().First(), strings.Join(subs, ", "))
		}
		return usagef("%s takes no arguments, got %q", name(c), c.Args().First())
	}
}

// name is the command's path without the program name: "lb status".
func name(c *cli.Context) string { return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ") }

func setupLogging(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usagef("--log-level: %q is not one of debug, info, warn, error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, opts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, opts)))
	default:
		return usagef("--log-format: %q is not one of text, json", c.String("log-format"))
	}
	return nil
}

// partCommands reload on SIGHUP: runPart takes it over from earlyhup.
var partCommands = map[string]bool{"source": true, "lb": true, "collect": true}

// releaseHUP gives SIGHUP its default action back (earlyhup) before cmd,
// which does not reload, runs: closing the terminal of `xmirror demo` ends it.
func releaseHUP(cmd *cli.Command) {
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		earlyhup.Release()
		if before != nil {
			return before(c)
		}
		return nil
	}
}

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	telemetry.SetBuild(version, commit)
	app := newApp()
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
		refuseArgs(cmd)
		if !partCommands[cmd.Name] {
			releaseHUP(cmd)
		}
		for _, sub := range cmd.Subcommands {
			sub.OnUsageError = app.OnUsageError
			refuseArgs(sub)
			releaseHUP(sub)
		}
	}
	// Help, version and usage errors end before any command's Before.
	defer earlyhup.Release()
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "xmirror:", err)
	var ue usageError
	// urfave/cli reports a missing required flag with an unexported error type.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "Required flag") {
		return exitUsage
	}
	return exitRuntime
}
