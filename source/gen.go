package source

//go:generate go tool bpf2go -target bpfel -type rule -type session -type iface -type state -type counters -type decision -type sample -type ring_rec source bpf/source.c
