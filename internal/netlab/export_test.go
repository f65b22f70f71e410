// SPDX-License-Identifier: Apache-2.0

package netlab

// Internals the external tests (package netlab_test, which imports labtest)
// reach.
var (
	NamePrefix = namePrefix
	NewNamedNS = newNamedNS
)
