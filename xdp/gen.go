// SPDX-License-Identifier: Apache-2.0

package xdp

// The BPF object and its Go bindings are committed; `make generate` rebuilds them.
//go:generate go tool bpf2go -target bpfel -type lb_slot -type lb_backend -type lb_ct_line -type lb_maglev_line -type lb_acl_key -type lb_frag_key -type lb_traffic -type lb_cpu -type lb_stat -type lb_algo -type lb_affinity -type lb_acl_mode -type lb_backend_flag -type lb_hash_seed -type lb_inner_kind -type lb_encap lb bpf/lb.c -- -mcpu=v3
