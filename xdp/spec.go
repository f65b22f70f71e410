// SPDX-License-Identifier: Apache-2.0

package xdp

import "github.com/cilium/ebpf"

// Spec is the load balancer's BPF object as compiled: `xmirror check --system`
// probes the kernel for the program types, helpers and map types it uses.
func Spec() (*ebpf.CollectionSpec, error) { return loadLb() }
