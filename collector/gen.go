// SPDX-License-Identifier: Apache-2.0

package collector

// The BPF object and its Go bindings are committed; `make generate` rebuilds them.
//go:generate go tool bpf2go -target bpfel -type col_rec -type xm_col_counter -type xm_col_proto collect bpf/collect.c
