package source

//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -cflags "$BPF_CFLAGS" -target bpfel -type rule -type session -type iface -type state -type counters -type decision -type sample source bpf/source.c
