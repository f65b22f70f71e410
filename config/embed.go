// SPDX-License-Identifier: Apache-2.0

package config

import _ "embed" // for SeedYAML

// SeedYAML is config/examples/seed.yaml, the seed scenario's deployment, built into
// the binary so that `xmirror demo` runs from anywhere.
//
//go:embed examples/seed.yaml
var SeedYAML []byte
