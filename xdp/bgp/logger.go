// SPDX-License-Identifier: Apache-2.0

package bgp

import (
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogLogger hands GoBGP's log lines to the process's slog logger, so the
// speaker logs like the rest of xmirror. GoBGP's info lines are chatty per
// message and go to debug.
type slogLogger struct{}

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f)+2)
	out = append(out, "component", "gobgp")
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (slogLogger) Panic(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (slogLogger) Fatal(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (slogLogger) Error(msg string, f gobgplog.Fields) { slog.Error(msg, attrs(f)...) }
func (slogLogger) Warn(msg string, f gobgplog.Fields)  { slog.Warn(msg, attrs(f)...) }
func (slogLogger) Info(msg string, f gobgplog.Fields)  { slog.Debug(msg, attrs(f)...) }
func (slogLogger) Debug(msg string, f gobgplog.Fields) { slog.Debug(msg, attrs(f)...) }

func (slogLogger) SetLevel(gobgplog.LogLevel) {}

func (slogLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
