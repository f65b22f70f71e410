// SPDX-License-Identifier: Apache-2.0

package demo

import (
	"strings"

	"github.com/xmirror/xmirror/internal/telemetry"
)

// Interesting keeps xmirror's own counters that are not zero: what a person reading
// the demo wants, without the Go runtime and process metrics.
func Interesting(samples []telemetry.Sample) []telemetry.Sample {
	var out []telemetry.Sample
	for _, s := range samples {
		if strings.HasPrefix(s.Name, "xmirror_") && s.Value != 0 {
			out = append(out, s)
		}
	}
	return out
}
