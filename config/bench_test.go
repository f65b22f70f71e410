// SPDX-License-Identifier: Apache-2.0

package config

import (
	"os"
	"testing"
)

// BenchmarkParseFull measures a full parse + validate + defaults of the
// example with every key (config reloads should stay cheap).
func BenchmarkParseFull(b *testing.B) {
	data, err := os.ReadFile("examples/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
