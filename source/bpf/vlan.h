// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* VLAN tags the kernel keeps in metadata. At tc ingress it has moved a
 * frame's tag (the outer one of QinQ) out of the data into skb->vlan_proto
 * and skb->vlan_tci (skb->vlan_present); at tc egress so has a VLAN device
 * with tx offload above the interface. tcpdump (libpcap, from
 * PACKET_AUXDATA) shows the tag in place, behind the MAC addresses, and
 * counts it in the frame's length and in its cut: so do the copies. Tags in
 * the data are part of the frame already (parsing.h skips them). */
#ifndef XM_SOURCE_VLAN_H
#define XM_SOURCE_VLAN_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

/* A tag as it sits in a frame. */
struct vlan_tag {
	__be16 proto;
	__be16 tci;
};

/* meta_tag_len is the bytes a tag in metadata adds to the frame: 4 or 0. */
static __always_inline __u32 meta_tag_len(const struct __sk_buff *skb)
{
	return skb->vlan_present ? XM_VLAN_HLEN : 0;
}

/* load_tagged copies the first n bytes of the frame, its tag in metadata
 * in place, to buf: the MAC addresses, the tag, the rest of the data. The
 * caller checked XM_ETH_HLEN <= n <= room, and buf holds room bytes, at
 * least XM_ETH_ADDRS_LEN + XM_VLAN_HLEN: the whole tag is written even when
 * n ends inside it. Returns 0 or an error. */
static __always_inline long load_tagged(struct __sk_buff *skb, __u8 *buf, __u64 n)
{
	struct vlan_tag *tag = (void *)(buf + XM_ETH_ADDRS_LEN);

	if (bpf_skb_load_bytes(skb, 0, buf, XM_ETH_ADDRS_LEN))
		return -1;
	tag->proto = skb->vlan_proto;
	tag->tci = bpf_htons(skb->vlan_tci);
	if (n <= XM_ETH_ADDRS_LEN + XM_VLAN_HLEN)
		return 0;
	return bpf_skb_load_bytes(skb, XM_ETH_ADDRS_LEN, buf + XM_ETH_ADDRS_LEN + XM_VLAN_HLEN,
				  n - XM_ETH_ADDRS_LEN - XM_VLAN_HLEN);
}

#endif
