// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* Test-only programs over the product's code: what a BPF_PROG_TEST_RUN
 * context cannot set up by itself. Loaded by the tests with the product's
 * maps in place of their own. */
#include "source.c"

/* xm_test_direct_port finishes a direct clone whose tc_index carries cb[0],
 * as direct_clone leaves it: test contexts cannot set tc_index. */
SEC("tc")
int xm_test_direct_port(struct __sk_buff *skb)
{
	skb->tc_index = skb->cb[0];
	return direct_finish(skb);
}

/* Test contexts cannot set skb->vlan_*: these programs give the frame a
 * VLAN tag in metadata first (bpf_skb_vlan_push on an skb without one only
 * sets skb->vlan_proto and vlan_tci), as the kernel leaves it at tc
 * ingress, or at tc egress below a VLAN device with tx offload. cb[0]
 * holds the tag: TPID << 16 | TCI. */
static __always_inline int with_meta_tag(struct __sk_buff *skb)
{
	__u32 tag = skb->cb[0];

	return bpf_skb_vlan_push(skb, bpf_htons(tag >> 16), tag & 0xffff);
}

SEC("tc")
int xm_test_vlan_ingress(struct __sk_buff *skb)
{
	if (with_meta_tag(skb))
		return XM_TC_SHOT;
	return handle(skb, XM_DIR_IN);
}

SEC("tc")
int xm_test_vlan_egress(struct __sk_buff *skb)
{
	if (with_meta_tag(skb))
		return XM_TC_SHOT;
	return handle(skb, XM_DIR_OUT);
}

SEC("tc")
int xm_test_vlan_tunnel(struct __sk_buff *skb)
{
	if (with_meta_tag(skb))
		return XM_TC_SHOT;
	return tunnel(skb);
}

/* In the namespace labs, ahead of the source program on an interface's
 * egress: IPv4 UDP datagrams to test_vlan_port leave with the tag
 * test_vlan_tag (TPID << 16 | TCI) in metadata, as from a VLAN device with
 * tx offload on top of the interface (the test kernel has no 8021q). */
volatile const __u32 test_vlan_port = 0;
volatile const __u32 test_vlan_tag = 0;

SEC("tc")
int xm_test_vlan_push(struct __sk_buff *skb)
{
	struct flow f = {};

	if (skb->vlan_present || parse_flow(skb, &f) < 0 || f.ethertype != XM_ETH_P_IP || f.proto != IPPROTO_UDP ||
	    !f.has_ports || f.dport != test_vlan_port)
		return XM_TC_NEXT;
	bpf_skb_vlan_push(skb, bpf_htons(test_vlan_tag >> 16), test_vlan_tag & 0xffff);
	return XM_TC_NEXT;
}
