// Package source is xmirror's mirror source: tc (TCX) BPF programs on the
// source interfaces classify packets against the sessions' filter rules and
// clone the accepted ones to a VXLAN device in external mode, where a second
// program cuts them to the session length and sets the tunnel key (VNI,
// target, outer source address, DF) and the flow hash the driver turns into
// the outer UDP source port. The control plane compiles the configuration into
// the maps, resolves routes to the targets, reloads without detaching and
// exports per-session counters.
package source
