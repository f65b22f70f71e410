// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Structures shared by the source programs and the Go control plane: bpf2go
 * generates the Go types from them (keep the field order and padding
 * explicit), and TestContract checks the maps' value sizes against them. */
#ifndef XM_SOURCE_STRUCTS_H
#define XM_SOURCE_STRUCTS_H

#include <linux/types.h>
#include "consts.h"

/* One compiled filter rule. Rules of one (session, interface) pair form a
 * block; next is the index of the first rule after the block, so a reject or
 * an interface mismatch skips the whole session in one step. Addresses and
 * masks are in network byte order; IPv4 uses word 0. */
struct rule {
	__u32 ifindex;
	__u16 session;
	__u8 action;
	__u8 flags;
	__u16 ethertype; /* host order */
	__u8 proto;
	__u8 direct; /* accepted copies may leave directly (direct.h) */
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u32 next;
	__u32 src[4];
	__u32 src_mask[4];
	__u32 dst[4];
	__u32 dst_mask[4];
	/* Of the rule's interface, so the per-packet path needs no lookup of
	 * it: the outer source address (network order) and, for outbound rules
	 * of an interface with a replica, the replica's sending end (else 0). */
	__u32 local;
	__u32 replica;
};

/* A mirror session as the tunnel program needs it. */
struct session {
	__u32 vni;
	__u32 remote;  /* IPv4, network order */
	__u32 snaplen; /* effective: min(packet_length, path MTU - 50) */
	__u32 rate_pps; /* 0 = unlimited */
	__u32 burst;
	__u8 ttl;
	__u8 hash_mode;
	__u8 direct; /* whole frames: datapath ring may send copies directly (direct.h) */
	__u8 pad;
};

/* A source interface. The programs read only local, and only off the
 * per-packet path (tunnel, replica); the source programs take local and
 * replica from the matching rule. flags and replica record for the control
 * plane which interfaces have a replica. */
struct iface {
	__u32 local;   /* IPv4, network order: outer source address */
	__u32 flags;   /* XM_IF_* */
	__u32 replica; /* ifindex of the replica veth's sending end */
	__u32 pad;
};

/* Global state; one entry. active selects the buffer of rules/sessions in use,
 * switched last by the control plane so a reload is hitless. */
struct state {
	__u32 active;
	__u32 vxlan_ifindex;
	__u32 tunnel_mark;
	enum xm_datapath datapath;
	__u32 nrules[2][2]; /* [buffer][direction] */
	__u32 port_min;     /* outer UDP source ports (datapath ring): */
	__u32 port_range;   /*   net.ipv4.ip_local_port_range, as the vxlan driver uses */
	/* Direct sends allowed (direct.h): only while the programs go with the
	 * process (TCX links), so a killed source sends nothing. */
	__u32 direct;
};

/* Per-CPU counters per session and direction. */
struct counters {
	__u64 packets;     /* mirrored packets handed to the tunnel */
	__u64 bytes;       /* bytes of the mirrored frames after cutting */
	__u64 cut;         /* frames cut to the session length */
	__u64 ratelimited; /* accepted but over the rate limit: not mirrored */
	__u64 errors;      /* clone or encapsulation failures */
	__u64 direct;      /* of packets, those sent directly from the kernel (direct.h) */
};

/* The link-layer next hop of a target (datapath ring), resolved by user
 * space: a direct clone leaves through ifindex with this Ethernet header. */
struct hop {
	__u32 ifindex;
	__u8 dst[6]; /* the neighbour's MAC */
	__u8 src[6]; /* ifindex's MAC */
};

/* Token bucket of a rate-limited session. */
struct bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens; /* in nanopackets: 1e9 per packet */
	__u64 last_ns;
};

/* Header of a perf-buffer sample (datapath perf); the frame's data follows
 * it: caplen bytes, or, with a VLAN tag in metadata (vlan_proto not 0),
 * caplen less the tag but at least the MAC addresses, and user space puts
 * the tag behind them and cuts the frame to caplen (vlan.h). */
struct sample {
	__u32 caplen; /* bytes of the copy, a tag in metadata counted */
	__u32 len;    /* the frame's length, a tag in metadata counted */
	__u32 hash;   /* flow hash for the outer UDP source port */
	__u32 ifindex;
	__u16 session;
	__u8 dir;
	__u8 pad;
	__u16 vlan_proto; /* host order; 0: no tag in metadata */
	__u16 vlan_tci;
	/* The session's outer header as the program saw it: a reload between
	 * the copy and its send must not give it the next configuration's. */
	__u32 vni;
	__u32 remote; /* network order, as struct session */
	__u32 local;  /* the interface's address, network order */
	__u8 ttl;
	__u8 pad2[3];
};

/* Header of a ring-buffer record (datapath ring). The outer IPv4 packet
 * follows it, ready for a raw socket: IPv4 (DF, TTL, the interface's address;
 * ID and checksum left to the kernel), UDP (source port from the flow hash,
 * checksum 0), VXLAN (I flag, VNI), then the cut frame, a VLAN tag in
 * metadata in place. */
struct ring_rec {
	__u32 pktlen; /* bytes of the outer packet */
	__u16 session;
	__u8 dir;
	__u8 pad;
};

/* The classification result, recorded only when record_decision is set
 * (tests). */
struct decision {
	__u32 packets;
	__s32 session; /* -1: not mirrored */
	__u32 rule;    /* index of the accepting rule */
	__u32 dir;
};

#endif
