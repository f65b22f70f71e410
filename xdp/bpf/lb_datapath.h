// SPDX-License-Identifier: MIT OR GPL-2.0-only
/* The load balancer's data path: its globals and lb_process, the whole
 * per-packet decision. Included by lb.c (the production program) and by
 * lb_bench.c (the benchmark wrappers tests load), so both run the same code
 * over the same maps. */
#ifndef XMIRROR_LB_DATAPATH_H
#define XMIRROR_LB_DATAPATH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "lb_hash.h"
#include "lb_csum.h"
#include "lb_parsing.h"
#include "lb_geneve.h"
#include "lb_gre.h"

/* One load the compiler may not repeat or merge: other CPUs change the word. */
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

#ifndef AF_INET
#define AF_INET 2
#endif

/* The enums Go takes its constants from (bpf2go -type). An object's BTF
 * describes only types something uses: this pointer, never read, is that
 * use. */
struct lb_go_enums {
	enum lb_stat stat;
	enum lb_algo algo;
	enum lb_affinity affinity;
	enum lb_acl_mode acl_mode;
	enum lb_backend_flag backend_flag;
	enum lb_hash_seed hash_seed;
	enum lb_inner_kind inner_kind;
	enum lb_encap encap;
};
const struct lb_go_enums *lb_go_enums __attribute__((unused));

/* Length of a jiffy in ns, set by the control plane before loading (the
 * resolution of CLOCK_MONOTONIC_COARSE); 4 ms is HZ=250. */
volatile const __u64 lb_tick_ns = 4000000;

/* Possible CPUs, set by the control plane before loading: CPU c starts its
 * walk of the WRR schedule c/lb_ncpus of the way in, so the first new flows
 * on different CPUs do not all go to the schedule's first entry. */
volatile const __u32 lb_ncpus = 1;

/* The live slot, a copy of lb_active the control plane writes right after
 * it: a global is one load where the map is a lookup. Not pinned (.bss), so
 * a restarted control plane sets it from lb_active before it attaches. */
volatile __u32 lb_active_slot;

/* The data path's copies of lb_slots and lb_backends, written by the control
 * plane next to the pinned maps and before the slot flips. A global is one
 * address; a map lookup would put the key on the stack, load it back and
 * bounds-check it on the way to every field. The pinned maps stay the record
 * for status readers and a restarted control plane, which copies them back. */
struct lb_slot lb_slot_cfg[LB_SLOTS];
struct lb_backend lb_slot_backends[LB_SLOTS * LB_MAX_BACKENDS];

/* The MAC of each listener interface, by ifindex % LB_IFACE_SLOTS, written
 * by the control plane as it attaches. A switch floods a frame whose
 * destination it has not learnt (or has forgotten, as when a port goes
 * down) to every port, and XDP sees frames before the stack drops those
 * for other hosts: without this check every LB node on the segment would
 * forward the same datagram. */
struct lb_ifmac lb_listener_macs[LB_IFACE_SLOTS];

/* lb_now is the data path's clock in ns, as coarse as bpf_ktime_get_coarse_ns
 * (both advance once per tick) but without a helper call: the verifier turns
 * bpf_jiffies64 into one load. Its epoch is not boot; only differences are
 * used. */
static __always_inline __u64 lb_now(void)
{
	return bpf_jiffies64() * lb_tick_ns;
}

/* reason is a constant at every call: a plain increment of this CPU's value. */
static __always_inline void lb_count(struct lb_cpu *pc, __u32 reason)
{
	if (reason < LB_STAT_MAX)
		pc->stats[reason] += 1;
}

static __always_inline int lb_verdict(struct lb_cpu *pc, __u32 reason, int action)
{
	lb_count(pc, reason);
	return action;
}

/* Backend id from the slot's WRR schedule at position pos. */
static __always_inline int lb_wrr_at(__u32 slot, struct lb_slot *cfg, __u32 pos, __u32 *id)
{
	__u32 key = slot * LB_WRR_MAX + pos % cfg->wrr_len;
	__u32 *v = bpf_map_lookup_elem(&lb_wrr, &key);

	if (!v)
		return -1;
	*id = *v;
	return 0;
}

/* Next backend of the smooth WRR schedule for this CPU. */
static __always_inline int lb_wrr_next(struct lb_cpu *pc, __u32 slot, struct lb_slot *cfg, __u32 *id)
{
	__u32 n = lb_ncpus;

	/* A CPU's first pick seeds its cursor cpu/ncpus of the way into the
	 * schedule, so the first new flows of different CPUs spread out (the
	 * seed of CPU 0 is 0: it is tried again, which costs a compare). */
	if (pc->wrr_cursor == 0 && n > 1)
		pc->wrr_cursor = (__u64)bpf_get_smp_processor_id() * cfg->wrr_len / n;
	pc->wrr_cursor += 1;
	return lb_wrr_at(slot, cfg, pc->wrr_cursor, id);
}

/* lb_maglev_index is the table entry of hash: the high word of hash * size
 * (multiply-shift range reduction), where hash % size is a division on
 * every packet (about 1.5 ns more here). Mirrored by maglevIndex in
 * xdp/tables.go. */
static __always_inline __u32 lb_maglev_index(__u32 hash, __u32 size)
{
	return ((__u64)hash * size) >> 32;
}

static __always_inline int lb_maglev_at(__u32 slot, struct lb_slot *cfg, __u32 hash, __u32 *id)
{
	__u32 i = lb_maglev_index(hash, cfg->maglev_size);
	__u32 key = slot * LB_MAGLEV_LINES + i / LB_MAGLEV_LINE;
	struct lb_maglev_line *l = bpf_map_lookup_elem(&lb_maglev, &key);

	if (!l)
		return -1;
	*id = l->id[i % LB_MAGLEV_LINE];
	return 0;
}

/* Six bytes as one 32- and one 16-bit move: memcpy on packet data compiles
 * to single bytes on BPF. */
static __always_inline void lb_copy_mac(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

static __always_inline struct lb_backend *lb_backend_get(__u32 slot, __u32 id)
{
	if (id >= LB_MAX_BACKENDS || slot >= LB_SLOTS)
		return NULL;
	return &lb_slot_backends[slot * LB_MAX_BACKENDS + id];
}

#define LB_CT_ID_SHIFT 25
#define LB_CT_SEEN_MASK ((1u << LB_CT_ID_SHIFT) - 1)

static __always_inline __u32 lb_ct_entry(__u32 id, __u32 t)
{
	return ((id + 1) << LB_CT_ID_SHIFT) | (t & LB_CT_SEEN_MASK);
}

/* The backend id of a non-empty bucket (ids are below LB_MAX_BACKENDS; the
 * mask keeps the verifier sure of it). */
static __always_inline __u32 lb_ct_id(__u32 e)
{
	return ((e >> LB_CT_ID_SHIFT) - 1) & (LB_MAX_BACKENDS - 1);
}

/* lb_ct_live: bucket e holds a backend alive in the slot and was seen within
 * the flow timeout (0: none). */
static __always_inline int lb_ct_live(__u32 e, __u32 slot, struct lb_slot *cfg, __u32 t)
{
	struct lb_backend *b;

	if (!(e >> LB_CT_ID_SHIFT))
		return 0;
	b = lb_backend_get(slot, lb_ct_id(e));
	if (!b || !(b->flags & LB_BACKEND_ALIVE))
		return 0;
	return cfg->flow_timeout_ns == 0 ||
	       ((t - e) & LB_CT_SEEN_MASK) <= (cfg->flow_timeout_ns >> LB_CT_TIME_SHIFT);
}

/* lb_wrr_flow finds the backend of the flow's bucket in the shared connection
 * table, or gives the bucket the next schedule entry and records it. A
 * bucket whose backend is no longer alive in the active slot, or that was
 * idle too long, is free and taken by the next packet that falls in it. A
 * live bucket is never taken: a new flow that falls in one follows it, so no
 * flow ever moves while it (or another flow of its bucket) sends. Buckets
 * are claimed with a compare-and-swap; of two CPUs claiming one at once (the
 * two directions of a new flow) the loser follows the winner. */
static __always_inline int lb_wrr_flow(struct lb_cpu *pc, __u32 slot, struct lb_slot *cfg, __u32 hash, __u32 *id, __u64 now)
{
	__u32 key = (hash & (LB_CT_BUCKETS - 1)) / LB_CT_LINE, t = now >> LB_CT_TIME_SHIFT;
	struct lb_ct_line *line;
	__u32 *bucket, e, old;

	line = bpf_map_lookup_elem(&lb_flows, &key);
	if (!line)
		return -1;
	bucket = &line->bucket[hash & (LB_CT_LINE - 1)];
	e = READ_ONCE(*bucket);
	if (lb_ct_live(e, slot, cfg, t)) {
		/* refreshed at most once per LB_CT_TOUCH_NS, so a busy bucket's
		 * line is not written on every packet by every CPU */
		if (((t - e) & LB_CT_SEEN_MASK) > (LB_CT_TOUCH_NS >> LB_CT_TIME_SHIFT))
			__sync_val_compare_and_swap(bucket, e, lb_ct_entry(lb_ct_id(e), t));
		*id = lb_ct_id(e);
		lb_count(pc, LB_STAT_CT_HIT);
		return 0;
	}
	lb_count(pc, LB_STAT_CT_MISS);
	if (cfg->wrr_len == 0 || lb_wrr_next(pc, slot, cfg, id))
		return -1;
	old = __sync_val_compare_and_swap(bucket, e, lb_ct_entry(*id, t));
	/* Another CPU claimed the bucket first: follow it. (If what it wrote is
	 * not live either, this packet goes unrecorded; the next tries again.) */
	if (old != e && lb_ct_live(old, slot, cfg, t))
		*id = lb_ct_id(old);
	return 0;
}

static __always_inline int lb_acl_allows(struct lb_slot *cfg, __u32 slot, __be32 saddr)
{
	struct lb_acl_key k;

	if (cfg->acl_mode != LB_ACL_ALLOWLIST)
		return 1;
	/* built only when needed: the common "all" mode stores nothing */
	k = (struct lb_acl_key){ .prefixlen = 64, .slot = slot, .addr = saddr };
	return bpf_map_lookup_elem(&lb_acl, &k) != NULL;
}

/* lb_frag_key_of is the lb_frags key of an outer fragment (before the
 * rewrite: the destination is the VIP). */
static __always_inline struct lb_frag_key lb_frag_key_of(struct iphdr *ip)
{
	struct lb_frag_key k = {};

	k.saddr = ip->saddr;
	k.daddr = ip->daddr;
	k.id = ip->id;
	return k;
}

/* lb_frag_record remembers the backend of a first fragment for the later
 * fragments of its datagram. */
static __always_inline void lb_frag_record(struct iphdr *ip, __u32 id)
{
	struct lb_frag_key k = lb_frag_key_of(ip);

	bpf_map_update_elem(&lb_frags, &k, &id, BPF_ANY);
}

/* A later fragment follows its first fragment's backend (lb_frags) while
 * that one is alive. Without a record (the first came later, went through
 * another node, or its backend left) it is placed statelessly by (src, dst,
 * id), which every fragment of a datagram carries, using the slot's
 * schedule or Maglev table as a weighted hash ring. */
static __always_inline int lb_pick_frag(struct lb_cpu *pc, __u32 slot, struct lb_slot *cfg, struct iphdr *ip, __u32 *id)
{
	struct lb_frag_key k = lb_frag_key_of(ip);
	__u32 hash = lb_hash_frag(ip->saddr, ip->daddr, ip->id);
	struct lb_backend *b;
	__u32 *rec;

	lb_count(pc, LB_STAT_FRAGMENT);
	rec = bpf_map_lookup_elem(&lb_frags, &k);
	if (rec) {
		b = lb_backend_get(slot, *rec);
		if (b && (b->flags & LB_BACKEND_ALIVE)) {
			*id = *rec;
			return 0;
		}
	}
	if (cfg->algorithm == LB_ALGO_MAGLEV) {
		if (cfg->maglev_size == 0)
			return -1;
		return lb_maglev_at(slot, cfg, hash, id);
	}
	if (cfg->wrr_len == 0)
		return -1;
	return lb_wrr_at(slot, cfg, hash, id);
}

/* lb_outer_flow_hash is the outer flow's hash: addresses and UDP ports, or
 * (GRE, udp NULL) the addresses alone. */
static __always_inline __u32 lb_outer_flow_hash(struct iphdr *ip, struct udphdr *udp)
{
	if (!udp)
		return lb_hash_outer(ip->saddr, ip->daddr, 0, 0);
	return lb_hash_outer(ip->saddr, ip->daddr, udp->source, udp->dest);
}

/* lb_inner_flow_hash hashes the inner flow of every datagram the inline
 * fast path does not take: inner VLAN tags, IP options, IPv6, ICMP errors,
 * GENEVE and GRE. It is a global function so that the verifier checks it once
 * rather than once for every path into it: inlined, its branches multiplied
 * the states of the whole program (748,602 instructions processed of the
 * 1,000,000 allowed, and the benchmark wrapper over the limit), as the
 * ICMP errors and the third tag were added to it. The caller has checked the
 * outer headers (untagged Ethernet, IPv4, the listener's UDP or GRE); they are
 * read again only to give the verifier its bounds. Returns the lb_inner_kind
 * in the high 32 bits, the hash in the low ones. */
__attribute__((noinline)) __u64 lb_inner_flow_hash(struct xdp_md *ctx, __u32 encap)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp;
	__u32 hash = 0;
	int rc;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return LB_INNER_NONE;
	udp = (void *)ip + ip->ihl * 4;
	if (encap == LB_ENCAP_GRE)
		rc = lb_gre_inner_hash(udp, data_end, &hash);
	else if ((void *)(udp + 1) > data_end)
		return LB_INNER_NONE;
	else if (encap == LB_ENCAP_GENEVE)
		rc = lb_geneve_inner_hash(udp + 1, data_end, &hash);
	else
		rc = lb_inner_hash(udp + 1, data_end, &hash);
	return (__u64)rc << 32 | hash;
}

/* lb_vxlan_plain_hash is the inline fast path of the inner hash: a VXLAN
 * payload carrying the common inner frame (lb_inner_hash_plain). */
static __always_inline int lb_vxlan_plain_hash(struct udphdr *udp, void *data_end, __u32 *hash)
{
	__u8 *vxh = (void *)(udp + 1);

	if ((void *)(vxh + LB_VXLAN_HLEN) > data_end || !(vxh[0] & LB_VXLAN_FLAG_I))
		return 0;
	return lb_inner_hash_plain(vxh + LB_VXLAN_HLEN, data_end, hash);
}

/* lb_flow_hash is the hash that places a whole datagram by the slot's
 * affinity (none: 0, the algorithm spreads per packet). */
static __always_inline __u32 lb_flow_hash(struct lb_cpu *pc, struct xdp_md *ctx, struct lb_slot *cfg, __u8 encap,
					  struct iphdr *ip, struct udphdr *udp, void *data_end)
{
	__u32 hash = 0;
	__u64 r;
	int rc;

	if (cfg->affinity == LB_AFF_INNER_SYMMETRIC) {
		if (encap == LB_ENCAP_VXLAN && lb_vxlan_plain_hash(udp, data_end, &hash))
			return hash;
		r = lb_inner_flow_hash(ctx, encap);
		rc = r >> 32;
		hash = (__u32)r;
		if (rc != LB_INNER_FULL)
			lb_count(pc, LB_STAT_HASH_FALLBACK);
		if (rc == LB_INNER_NONE)
			hash = lb_outer_flow_hash(ip, udp);
	} else if (cfg->affinity == LB_AFF_OUTER) {
		hash = lb_outer_flow_hash(ip, udp);
	}
	return hash;
}

/* lb_pick chooses the backend of a whole datagram by algorithm and
 * affinity. */
static __always_inline int lb_pick(struct lb_cpu *pc, __u32 slot, struct lb_slot *cfg, __u32 hash, __u32 *id, __u64 now)
{
	if (cfg->algorithm == LB_ALGO_MAGLEV) {
		if (cfg->maglev_size == 0)
			return -1;
		if (cfg->affinity == LB_AFF_NONE)
			hash = bpf_get_prandom_u32();
		return lb_maglev_at(slot, cfg, hash, id);
	}
	if (cfg->wrr_len == 0 && cfg->affinity == LB_AFF_NONE)
		return -1;
	if (cfg->affinity == LB_AFF_NONE)
		return lb_wrr_next(pc, slot, cfg, id);
	return lb_wrr_flow(pc, slot, cfg, hash, id, now);
}

/* lb_rewrite points the datagram (or fragment: udp is NULL past the first)
 * at the backend: destination address (and port), TTL one lower, checksums
 * updated in place by the backend's precomputed differences (the destination
 * was the VIP; csum_ip includes the TTL's step). The mirror source stays the
 * outer source. */
static __always_inline void lb_rewrite(struct iphdr *ip, struct udphdr *udp, __be32 daddr, __be16 dport,
				       __u16 csum_ip, __u16 csum_udp)
{
	ip->daddr = daddr;
	ip->ttl -= 1;
	ip->check = lb_csum_add(ip->check, csum_ip);
	if (udp) {
		__u16 check = udp->check;

		if (check) {
			check = lb_csum_add(check, csum_udp);
			/* 0 means "no checksum" in UDP: send its other form */
			udp->check = check ? check : 0xffff;
		}
		if (dport)
			udp->dest = dport;
	}
}

/* lb_pass_rewritten hands a rewritten packet to the kernel, which forwards
 * it (and lowers the TTL itself): the TTL goes back up. */
static __always_inline int lb_pass_rewritten(struct lb_cpu *pc, struct iphdr *ip, __u32 reason)
{
	ip->ttl += 1;
	ip->check = lb_csum_add(ip->check, LB_CSUM_TTL_INC);
	return lb_verdict(pc, reason, XDP_PASS);
}

/* lb_send puts the next hop's addresses on the rewritten frame, counts it for
 * backend id and sends it out of the next hop's interface (back out of
 * ingress, the frame's interface, with XDP_TX). */
static __always_inline int lb_send(struct lb_cpu *pc, struct xdp_md *ctx, __u32 ingress, struct iphdr *ip, __u32 id,
				   const struct lb_nexthop *nh)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct lb_traffic *st;
	int rc;

	if ((void *)(eth + 1) > data_end)
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	/* A cached next hop skips the lookup's MTU check: do it here, or the
	 * driver would drop the frame without a word. */
	if (bpf_ntohs(ip->tot_len) > nh->mtu)
		return lb_pass_rewritten(pc, ip, LB_STAT_PASS_MTU);
	lb_copy_mac(eth->h_dest, nh->dmac);
	lb_copy_mac(eth->h_source, nh->smac);

	if (id >= LB_MAX_BACKENDS)
		return lb_verdict(pc, LB_STAT_DROP_NO_BACKEND, XDP_DROP);
	st = &pc->traffic[id];
	if (nh->ifindex == ingress) {
		st->packets += 1;
		st->bytes += data_end - data;
		return lb_verdict(pc, LB_STAT_TX, XDP_TX);
	}
	/* counted for the backend only once the redirect is taken: a frame
	 * dropped here reached no backend */
	rc = bpf_redirect_map(&lb_tx_ports, nh->ifindex, 0);
	if (rc != XDP_REDIRECT)
		return lb_verdict(pc, LB_STAT_DROP_NO_ROUTE, XDP_DROP);
	st->packets += 1;
	st->bytes += data_end - data;
	return lb_verdict(pc, LB_STAT_REDIRECT, XDP_REDIRECT);
}

/* lb_forward sends the datagram (or fragment: udp is NULL past the first),
 * received on interface ingress, to backend id, with the next hop cached per
 * backend and CPU and looked up again when stale. */
static __always_inline int lb_forward(struct lb_cpu *pc, struct xdp_md *ctx, __u32 ingress, struct iphdr *ip,
				      struct udphdr *udp, __u32 slot, __u32 id, __u64 now)
{
	struct lb_backend *b;
	struct lb_nexthop *nh;
	int rc;

	b = lb_backend_get(slot, id);
	if (!b || !(b->flags & LB_BACKEND_ALIVE))
		return lb_verdict(pc, LB_STAT_DROP_NO_BACKEND, XDP_DROP);
	lb_rewrite(ip, udp, b->addr, b->port, b->csum_ip, b->csum_udp);

	if (id >= LB_MAX_BACKENDS)
		return lb_verdict(pc, LB_STAT_DROP_NO_BACKEND, XDP_DROP);
	nh = &pc->nh[id];
	if (nh->expires < now || nh->daddr != b->addr) {
		/* declared here so a cache hit does not clear it */
		struct bpf_fib_lookup fib = {};

		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.l4_protocol = ip->protocol;
		fib.tot_len = bpf_ntohs(ip->tot_len);
		fib.ipv4_src = ip->saddr;
		fib.ipv4_dst = ip->daddr;
		fib.ifindex = ingress;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			/* The kernel forwards the rewritten packet and resolves the
			 * neighbour; the control plane resolves backends up front. */
			return lb_pass_rewritten(pc, ip, LB_STAT_PASS_NO_NEIGH);
		if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			/* The kernel fragments it, or tells the source (DF). */
			return lb_pass_rewritten(pc, ip, LB_STAT_PASS_MTU);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS)
			return lb_verdict(pc, LB_STAT_DROP_NO_ROUTE, XDP_DROP);
		nh->daddr = b->addr;
		nh->ifindex = fib.ifindex;
		nh->mtu = fib.mtu_result;
		__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
		nh->expires = now + LB_NH_TTL_NS;
	}

	return lb_send(pc, ctx, ingress, ip, id, nh);
}

/* lb_other_host: the frame is not addressed to the ingress interface's MAC
 * (known only once a control plane attached the program): unicast to
 * another host, or a link-layer broadcast or multicast, which a router does
 * not forward (RFC 1812, 5.3.4) and every LB node on the segment would. The
 * caller reads ctx->ingress_ifindex once: the verifier makes it three
 * dependent loads. */
static __always_inline int lb_other_host(struct xdp_md *ctx, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_ifmac *m = &lb_listener_macs[ifindex & (LB_IFACE_SLOTS - 1)];

	if (data + ETH_HLEN > data_end || m->ifindex != ifindex)
		return 0;
	return *(__u32 *)data != m->mac_lo || *(__u16 *)(data + 4) != m->mac_hi;
}

/* lb_listener_l4 is the IP protocol of the slot's listener. */
static __always_inline __u8 lb_listener_l4(__u8 encap)
{
	return encap == LB_ENCAP_GRE ? IPPROTO_GRE : IPPROTO_UDP;
}

/* Returned by lb_parse_listener for a whole datagram to the listener: the
 * caller goes on to place it. Every other value is the packet's verdict. */
#define LB_CONTINUE (-1)

/* lb_parse_listener is the general parser, for every frame lb_plain_listener
 * does not vouch for: VLAN tags, IP options, fragments, other traffic and
 * malformed frames, each counted by what it is. Non-first
 * fragments to the VIP are placed and forwarded here. */
static __always_inline int lb_parse_listener(struct lb_cpu *pc, struct xdp_md *ctx, __u32 slot, struct lb_slot *cfg,
					     __u8 encap, struct iphdr **ipp, struct udphdr **udpp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 id = 0, ihl, tot;

	if ((void *)(eth + 1) > data_end)
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	/* The rule for VLANs: a tagged frame goes to the kernel, whose VLAN
	 * device untags it; a listener on that device sees it untagged. */
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		return lb_verdict(pc, LB_STAT_PASS_VLAN, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return lb_verdict(pc, LB_STAT_PASS_NOT_LISTENER, XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	ihl = ip->ihl * 4;
	if (ip->version != 4 || ihl < sizeof(*ip) || (void *)ip + ihl > data_end)
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	if (cfg->vip == 0 || ip->daddr != cfg->vip || ip->protocol != lb_listener_l4(encap))
		return lb_verdict(pc, LB_STAT_PASS_NOT_LISTENER, XDP_PASS);
	/* a length past the frame's end or a bad checksum: forwarding it
	 * would hand the backend what its kernel drops */
	tot = bpf_ntohs(ip->tot_len);
	if (tot < ihl || (void *)ip + tot > data_end || !lb_ipv4_csum_ok((__u32 *)ip, ihl / 4, data_end))
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);

	if (ip->frag_off & bpf_htons(LB_IP_OFFSET)) {
		/* A non-first fragment to the VIP carries no port: it is taken
		 * as listener traffic so that it follows its first fragment. */
		__u32 ingress = ctx->ingress_ifindex;

		if (lb_other_host(ctx, ingress))
			return lb_verdict(pc, LB_STAT_PASS_OTHER_HOST, XDP_PASS);
		if (!lb_acl_allows(cfg, slot, ip->saddr))
			return lb_verdict(pc, LB_STAT_DROP_ACL, XDP_DROP);
		if (ip->ttl <= 1)
			return lb_verdict(pc, LB_STAT_DROP_TTL, XDP_DROP);
		if (lb_pick_frag(pc, slot, cfg, ip, &id))
			return lb_verdict(pc, LB_STAT_DROP_NO_BACKEND, XDP_DROP);
		return lb_forward(pc, ctx, ingress, ip, NULL, slot, id, lb_now());
	}

	if (encap == LB_ENCAP_GRE) {
		/* no ports: every GRE packet to the VIP is the listener's */
		*ipp = ip;
		*udpp = NULL;
		return LB_CONTINUE;
	}
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > data_end || bpf_ntohs(udp->len) < sizeof(*udp))
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	if (udp->dest != cfg->port)
		return lb_verdict(pc, LB_STAT_PASS_NOT_LISTENER, XDP_PASS);
	/* a whole datagram must fit its IP packet (a first fragment holds
	 * only part of it) */
	if (!(ip->frag_off & bpf_htons(LB_IP_MF)) && bpf_ntohs(udp->len) + ihl > tot)
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	*ipp = ip;
	*udpp = udp;
	return LB_CONTINUE;
}

/* lb_process is the whole data path; xmirror_lb is it, the benchmark
 * wrappers of lb_bench.c run it on a frame they restore afterwards. */
static __always_inline int lb_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_slot *cfg;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 zero = 0, slot, id = 0, hash, ingress;
	__u8 encap;
	struct lb_cpu *pc;
	__u64 now;
	int rc, plain;

	/* counters, next-hop cache and cursor of this CPU: one lookup */
	pc = bpf_map_lookup_elem(&lb_percpu, &zero);
	if (!pc)
		return XDP_PASS;
	slot = lb_active_slot & 1;
	cfg = &lb_slot_cfg[slot];
	/* read once: the verifier then knows udp is set whenever encap is
	 * not GRE (a GRE listener has no port: the general parser takes it) */
	encap = cfg->encap;
	plain = encap != LB_ENCAP_GRE && lb_plain_listener(data, data_end, cfg->vip, cfg->port, &ip, &udp);
	if (!plain) {
		rc = lb_parse_listener(pc, ctx, slot, cfg, encap, &ip, &udp);
		if (rc != LB_CONTINUE)
			return rc;
	}
	ingress = ctx->ingress_ifindex;
	if (lb_other_host(ctx, ingress))
		return lb_verdict(pc, LB_STAT_PASS_OTHER_HOST, XDP_PASS);
	if (!lb_acl_allows(cfg, slot, ip->saddr))
		return lb_verdict(pc, LB_STAT_DROP_ACL, XDP_DROP);
	/* one clock read per packet: connection table, next hop */
	now = lb_now();
	/* What lb_plain_listener vouched for need not be asked again. */
	if (!plain) {
		/* The forward lowers the TTL: at 1 it would expire on the way,
		 * and a loop of LBs listing each other would never end. */
		if (ip->ttl <= 1)
			return lb_verdict(pc, LB_STAT_DROP_TTL, XDP_DROP);
	}
	/* A first fragment (MF: never on the plain path) holds the headers: it
	 * is placed by its flow as a whole datagram is, and its backend is
	 * recorded for the later fragments (placed by (src, dst, id) like
	 * them, a flow's fragmented datagrams went elsewhere than its others).
	 * The tunnel header checks are about whole datagrams. The flag is read
	 * from the packet again, not kept: a register live across the hash
	 * and the pick would double the states the verifier walks. */
	if (encap == LB_ENCAP_GENEVE && !(ip->frag_off & bpf_htons(LB_IP_MF)) && !lb_geneve_ok(udp, data_end))
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	if (encap == LB_ENCAP_GRE && !(ip->frag_off & bpf_htons(LB_IP_MF)) &&
	    !lb_gre_ok((void *)ip + ip->ihl * 4, (void *)ip + bpf_ntohs(ip->tot_len), data_end))
		return lb_verdict(pc, LB_STAT_DROP_MALFORMED, XDP_DROP);
	hash = lb_flow_hash(pc, ctx, cfg, encap, ip, udp, data_end);
	if (lb_pick(pc, slot, cfg, hash, &id, now))
		return lb_verdict(pc, LB_STAT_DROP_NO_BACKEND, XDP_DROP);
	if (!plain && (ip->frag_off & bpf_htons(LB_IP_MF))) {
		lb_count(pc, LB_STAT_FRAGMENT);
		lb_frag_record(ip, id);
	}
	return lb_forward(pc, ctx, ingress, ip, udp, slot, id, now);
}

#endif /* XMIRROR_LB_DATAPATH_H */
