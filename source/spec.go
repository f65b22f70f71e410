// SPDX-License-Identifier: Apache-2.0

package source

import "github.com/cilium/ebpf"

// Spec is the source's BPF object as compiled: `xmirror check --system` probes
// the kernel for the program types, helpers and map types it uses.
func Spec() (*ebpf.CollectionSpec, error) { return loadSource() }
