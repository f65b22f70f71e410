// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Constants of the source data path. Limits are #defines so a build can
 * override them (-DXM_MAX_RULES=...); Go reads them back from the maps'
 * sizes (contract_test.go checks its own limits against them). Values Go
 * needs as well are enums: bpf2go generates them (-type), so the Go side
 * never holds a copy. */
#ifndef XM_SOURCE_CONSTS_H
#define XM_SOURCE_CONSTS_H

/* Rules per direction in one buffer of the rule table. */
#ifndef XM_MAX_RULES
#define XM_MAX_RULES 8192
#endif

/* Sessions (stable ids assigned by the control plane). */
#ifndef XM_MAX_SESSIONS
#define XM_MAX_SESSIONS 256
#endif

/* Source interfaces. */
#ifndef XM_MAX_IFACES
#define XM_MAX_IFACES 64
#endif

/* Target addresses whose VXLAN is never mirrored. */
#ifndef XM_MAX_TARGETS
#define XM_MAX_TARGETS 256
#endif

/* Rules evaluated per bpf_loop callback. */
#ifndef XM_WALK_BATCH
#define XM_WALK_BATCH 4
#endif

/* The longest refill of a rate-limit bucket, in ns: one second fills a
 * bucket whose burst is one second's worth (compile.go), and keeps the
 * refill (gap * rate, rates up to 2^31 per second) within 64 bits. */
#define XM_BUCKET_MAX_GAP_NS 1000000000ULL

/* VLAN tags in a frame's data skipped to find the IP header: 802.1Q, or
 * 802.1ad with 802.1Q behind it (QinQ). A tag the kernel keeps in metadata
 * (skb->vlan_present) is not in the data and does not count. */
#ifndef XM_MAX_VLAN_TAGS
#define XM_MAX_VLAN_TAGS 2
#endif

/* Extension headers walked in IPv6 before giving up on ports. */
#ifndef XM_MAX_V6_EXT
#define XM_MAX_V6_EXT 4
#endif

enum xm_dir {
	XM_DIR_IN = 0,
	XM_DIR_OUT = 1,
};

enum xm_action {
	XM_ACTION_ACCEPT = 1,
	XM_ACTION_REJECT = 2,
};

/* rule.flags */
enum xm_rule_flag {
	XM_RULE_ANY_PROTO = 0x1, /* protocol "all" */
	XM_RULE_PORTS = 0x2,     /* a port range narrower than all: tcp/udp only */
};

/* state.datapath: where the cut copy of a packet is encapsulated. */
enum xm_datapath {
	XM_DATAPATH_KERNEL = 0, /* clone to the VXLAN device, which encapsulates */
	XM_DATAPATH_PERF = 1,   /* copy the cut frame to a perf buffer; user space encapsulates */
	XM_DATAPATH_RING = 2,   /* cut frame with outer headers to the ring buffer; user space sends (the default) */
};

/* Bytes of the BPF ring buffer (datapath ring): a power of two. */
#ifndef XM_RING_SIZE
#define XM_RING_SIZE (8 << 20)
#endif

/* The wire: outer IPv4 (20) + UDP (8) + VXLAN (8) that the ring path writes
 * in front of the frame (source/outer.go knows the same layout, and
 * TestOuterLayout compares the two), the VXLAN port, Ethernet. */
enum xm_wire {
	XM_OUTER_LEN = 36,
	XM_VXLAN_PORT = 4789,
	XM_ETH_HLEN = 14,
	XM_ETH_P_IP = 0x0800,
	XM_ETH_P_IPV6 = 0x86DD,
	XM_ETH_P_8021Q = 0x8100,
	XM_ETH_P_8021AD = 0x88A8,
	XM_VLAN_HLEN = 4,
	/* A VLAN tag sits behind the two MAC addresses. */
	XM_ETH_ADDRS_LEN = 12,
	/* The outer IPv4 DSCP of every mirrored packet: Lower Effort (RFC
	 * 8622), which is what mirrored traffic is, and the mark by which
	 * every xmirror source recognises mirrored traffic and never mirrors
	 * it again (is_mirror in source.c). */
	XM_MIRROR_DSCP = 1,
	XM_MIRROR_TOS = XM_MIRROR_DSCP << 2,
};

/* session.hash_mode */
enum xm_hash_mode {
	XM_HASH_SYMMETRIC = 0,
	XM_HASH_DIRECTIONAL = 1,
};

/* skb->mark of a clone on its way to the VXLAN device: a magic in the top
 * five bits, then direction, session id and source ifindex. The mark is the
 * only thing that survives the trip through the replica veth (below), and the
 * tunnel program drops anything without the magic that the kernel might send
 * through the VXLAN device. */
enum xm_mark {
	XM_MARK_MAGIC = 0xB0000000U,
	XM_MARK_MAGIC_MASK = 0xF8000000U,
	/* A direct clone (direct.h) on its way to the next hop's egress. */
	XM_MARK_DIRECT = 0xB8000000U,
	/* Both magics: no source program mirrors a packet under it. */
	XM_MARK_ANY_MASK = 0xF0000000U,
	XM_MARK_DIR_SHIFT = 26,
	XM_MARK_SESS_SHIFT = 16,
	XM_MARK_SESS_MASK = 0x3ffU,
	XM_MARK_IF_MASK = 0xffffU,
};

/* iface.flags */
/* The interface leaves segmentation or checksumming to the kernel, which does
 * it after the tc hook and before tcpdump sees the packet: outbound clones go
 * through a replica veth with the same offload settings, so the kernel does
 * the same work on them before they are cut. */
enum xm_if_flag {
	XM_IF_REPLICA = 0x1,
};

/* tc verdicts as returned to TCX: TC_ACT_UNSPEC lets the next program or the
 * stack decide, so the original packet is never affected. */
#define XM_TC_NEXT -1
#define XM_TC_OK 0
#define XM_TC_SHOT 2

/* skb->pkt_type of the kernel's local copy of a broadcast or multicast the
 * host sends (dev_loopback_xmit; PACKET_LOOPBACK of linux/if_packet.h). */
#define XM_PACKET_LOOPBACK 5

#endif
