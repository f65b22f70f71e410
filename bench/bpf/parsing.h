// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* Header parsing for the benchmark peers: is this IPv4 UDP to the VXLAN port, or
 * any of the tunnels the generator sends? */
#ifndef XMIRROR_BENCH_PARSING_H
#define XMIRROR_BENCH_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "consts.h"

struct vxlan_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
};

/* parse_vxlan fills p and returns 1 when the frame is IPv4/UDP to VXLAN_PORT
 * (without IP options: the generator and the systems under test never add them). */
static __always_inline int parse_vxlan(void *data, void *data_end, struct vxlan_pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return 0;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return 0;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return 0;
	if (udp->dest != bpf_htons(VXLAN_PORT))
		return 0;
	p->eth = eth;
	p->ip = ip;
	p->udp = udp;
	return 1;
}

/* parse_tunnel returns the IPv4 header when the frame is one of the generator's
 * tunnels: UDP to VXLAN_PORT or GENEVE_PORT, or GRE (ERSPAN, bridging). */
static __always_inline struct iphdr *parse_tunnel(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return 0;
	if (ip->protocol == IPPROTO_GRE)
		return ip;
	struct udphdr *udp = (void *)(ip + 1);
	if (ip->protocol != IPPROTO_UDP || (void *)(udp + 1) > data_end)
		return 0;
	if (udp->dest != bpf_htons(VXLAN_PORT) && udp->dest != bpf_htons(GENEVE_PORT))
		return 0;
	return ip;
}

#endif
