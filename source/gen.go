// SPDX-License-Identifier: Apache-2.0

package source

//go:generate go tool bpf2go -target bpfel -type rule -type session -type iface -type state -type counters -type decision -type sample -type ring_rec -type hop -type xm_datapath -type xm_dir -type xm_action -type xm_rule_flag -type xm_if_flag -type xm_hash_mode -type xm_mark -type xm_wire source bpf/source.c
