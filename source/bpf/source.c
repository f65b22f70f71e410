// SPDX-License-Identifier: MIT OR GPL-2.0-only
//go:build ignore

/* xmirror source data path.
 *
 * xm_source_ingress / xm_source_egress run (TCX) on every source interface:
 * they classify the packet against the compiled filter rules of the sessions
 * and hand the first session that accepts it to the datapath in
 * state.datapath. The original packet is never changed or dropped.
 *
 * ring (the default): ring_put writes the outer IPv4/UDP/VXLAN headers and
 *   the cut frame into the ring buffer xm_ring; user space sends them.
 * perf: perf_put copies the cut frame to the perf buffer xm_events; user
 *   space builds the outer headers and sends.
 * kernel: the packet is cloned to the VXLAN device in external mode, where
 *   xm_tunnel cuts the clone to the session length and sets the tunnel key
 *   (VNI, target, outer source, DF) and the flow hash from which the driver
 *   derives the outer UDP source port; xm_drop closes the device's receive
 *   side.
 *
 * Outbound packets of an interface whose segmentation or checksums the
 * kernel completes in software go through a replica veth first (xm_replica),
 * so the copy is what tcpdump would see. */

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parsing.h"
#include "vlan.h"
#include "hash.h"
#include "outer.h"
#include "direct.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Puts the types Go shares with the programs into the BTF for bpf2go: struct
 * sample and struct ring_rec only travel through the perf and ring buffers,
 * the enums only name constants. */
const struct sample *unused_sample __attribute__((unused));
const struct ring_rec *unused_ring_rec __attribute__((unused));
const enum xm_dir *unused_dir __attribute__((unused));
const enum xm_action *unused_action __attribute__((unused));
const enum xm_rule_flag *unused_rule_flag __attribute__((unused));
const enum xm_if_flag *unused_if_flag __attribute__((unused));
const enum xm_hash_mode *unused_hash_mode __attribute__((unused));
const enum xm_mark *unused_mark __attribute__((unused));
const enum xm_wire *unused_wire __attribute__((unused));

/* Unread bytes in the ring at which the program wakes the reader (datapath
 * ring; set by the loader). Below it records wait for the reader's timer, so
 * that under load one wakeup carries a batch of records instead of one. */
volatile const __u32 ring_wake = 256 << 10;

/* Set by the ring reader when it sleeps without a timer because nothing came
 * for a while: the next record then wakes it at once (datapath ring). */
volatile __u32 ring_idle = 0;

/* Set by tests: record every classification in xm_decision and do not clone. */
volatile const __u32 record_decision = 0;

struct walk {
	struct flow f;
	__u32 base;
	__u32 count;
	__u32 i;
	__u32 ifindex;
	__s32 session;
	__u32 rule;
	__u32 local;
	__u32 replica;
	__u32 direct;
};

static __always_inline int addr_match(const __u32 *a, const __u32 *net, const __u32 *mask)
{
	return ((a[0] & mask[0]) == net[0]) && ((a[1] & mask[1]) == net[1]) &&
	       ((a[2] & mask[2]) == net[2]) && ((a[3] & mask[3]) == net[3]);
}

static __always_inline int rule_match(const struct rule *r, const struct flow *f)
{
	if (r->ethertype != f->ethertype)
		return 0;
	if (!(r->flags & XM_RULE_ANY_PROTO) && r->proto != f->proto)
		return 0;
	/* Ports before addresses: they are cheaper and tell rules apart more often. */
	if (r->flags & XM_RULE_PORTS) {
		if (!f->has_ports)
			return 0;
		if (f->sport < r->sport_lo || f->sport > r->sport_hi)
			return 0;
		if (f->dport < r->dport_lo || f->dport > r->dport_hi)
			return 0;
	}
	return addr_match(f->src, r->src, r->src_mask) && addr_match(f->dst, r->dst, r->dst_mask);
}

/* walk_rule evaluates the rule at w->i; 1 ends the walk (accepted, or no
 * more rules). It always moves w->i forward, so the walk ends within count
 * steps. */
static __always_inline int walk_rule(struct walk *w)
{
	struct rule *r;
	__u32 key;

	if (w->i >= w->count)
		return 1;
	key = w->base + w->i;
	r = bpf_map_lookup_elem(&xm_rules, &key);
	if (!r)
		return 1;
	if (r->ifindex != w->ifindex) {
		w->i = r->next > w->i ? r->next : w->i + 1;
		return 0;
	}
	if (!rule_match(r, &w->f)) {
		w->i++;
		return 0;
	}
	if (r->action == XM_ACTION_ACCEPT) {
		w->session = r->session;
		w->rule = w->i;
		w->local = r->local;
		w->replica = r->replica;
		w->direct = r->direct;
		return 1;
	}
	/* Reject: this session does not mirror the packet; the next may. */
	w->i = r->next > w->i ? r->next : w->i + 1;
	return 0;
}

/* walk_some is the bpf_loop callback: XM_WALK_BATCH rules per call, which
 * halves the per-rule cost of the callback. */
static long walk_some(__u64 unused, void *data)
{
	struct walk *w = data;

#pragma unroll
	for (int k = 0; k < XM_WALK_BATCH; k++) {
		if (walk_rule(w))
			return 1;
	}
	return 0;
}

static __always_inline struct counters *counters_of(__u32 session, __u32 dir)
{
	__u32 key = session * 2 + dir;

	return bpf_map_lookup_elem(&xm_counters, &key);
}

/* over_rate takes a token from the session's bucket; 1 when none is left. */
static __always_inline int over_rate(__u32 id, const struct session *s)
{
	struct bucket *b;
	__u64 now, cap, tokens, gap;
	int over = 0;

	if (!s->rate_pps)
		return 0;
	b = bpf_map_lookup_elem(&xm_buckets, &id);
	if (!b)
		return 0;
	now = bpf_ktime_get_ns();
	cap = (__u64)(s->burst ? s->burst : s->rate_pps) * 1000000000ULL;
	bpf_spin_lock(&b->lock);
	/* The clock is read before the lock: another CPU may have refilled
	 * with a later time, and that gap is 0, not a wrapped 2^64 - d (which
	 * filled the bucket on every such race). A gap of a second or more
	 * fills the bucket anyway (the burst is one second's worth, compile.go);
	 * clamping it keeps gap * rate_pps within 64 bits after any idle time. */
	gap = now > b->last_ns ? now - b->last_ns : 0;
	if (gap > XM_BUCKET_MAX_GAP_NS)
		gap = XM_BUCKET_MAX_GAP_NS;
	tokens = b->tokens + gap * s->rate_pps;
	if (b->last_ns == 0 || tokens > cap)
		tokens = cap;
	if (now > b->last_ns)
		b->last_ns = now;
	if (tokens >= 1000000000ULL)
		tokens -= 1000000000ULL;
	else
		over = 1;
	b->tokens = tokens;
	bpf_spin_unlock(&b->lock);
	return over;
}

/* perf_put copies the sample header and the frame's data for a copy of cap
 * bytes of a frame of len (both counting a tag in metadata) to the perf ring
 * of this CPU (datapath perf). The helper copies only from the data, so a
 * tag in metadata travels in the header and user space puts it in place:
 * the data then holds the cap bytes less the tag, and at least the MAC
 * addresses. */
static __always_inline long perf_put(struct __sk_buff *skb, const struct session *s, __u32 local, __u32 id,
				     __u32 dir, __u32 ifindex, __u32 hash, __u32 cap, __u32 len)
{
	struct sample smp = {};
	__u32 data = cap;

	if (skb->vlan_present) {
		smp.vlan_proto = bpf_ntohs(skb->vlan_proto);
		smp.vlan_tci = skb->vlan_tci;
		data = cap > XM_ETH_ADDRS_LEN + XM_VLAN_HLEN ? cap - XM_VLAN_HLEN : XM_ETH_ADDRS_LEN;
	}
	smp.caplen = cap;
	smp.len = len;
	smp.hash = hash;
	smp.ifindex = ifindex;
	smp.session = id;
	smp.dir = dir;
	smp.vni = s->vni;
	smp.remote = s->remote;
	smp.local = local;
	smp.ttl = s->ttl;
	return bpf_perf_event_output(skb, &xm_events, BPF_F_CURRENT_CPU | ((__u64)data << 32), &smp, sizeof(smp));
}

/* ring_put reserves a record of size bytes (a constant: the verifier wants
 * one per call site), writes the outer IPv4/UDP/VXLAN headers and copies the
 * first cap bytes of the frame behind them, a tag in metadata in place
 * (vlan.h). The reader is woken only when the unread data crosses ring_wake
 * or when it sleeps without a timer. */
static __always_inline long ring_put(struct __sk_buff *skb, const struct state *st, const struct session *s,
				     __u32 local, __u32 id, __u32 dir, __u32 hash, __u32 cap, const __u32 size)
{
	const __u32 room = size - sizeof(struct ring_rec) - XM_OUTER_LEN;
	struct ring_rec *r;
	struct outer_hdrs *o;
	__u64 n, avail, flags = BPF_RB_NO_WAKEUP;

	if (cap > room)
		cap = room;
	if (cap < XM_ETH_HLEN)
		return -1;
	r = bpf_ringbuf_reserve(&xm_ring, size, 0);
	if (!r)
		return -1;
	r->pktlen = XM_OUTER_LEN + cap;
	r->session = id;
	r->dir = dir;
	r->pad = 0;
	/* ID and checksum stay 0: the raw socket fills them in, the AF_PACKET
	 * paths set the checksum (source/outer.go). */
	o = (void *)(r + 1);
	outer_fill(o, s, local, outer_port(st->port_min, st->port_range, hash), cap);
	/* Bound the length again in the register the verifier checks. */
	n = cap;
	asm volatile("" : "+r"(n));
	if (n > room || n < XM_ETH_HLEN ||
	    (skb->vlan_present ? load_tagged(skb, (void *)(o + 1), n) : bpf_skb_load_bytes(skb, 0, (void *)(o + 1), n))) {
		bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);
		return -1;
	}
	avail = bpf_ringbuf_query(&xm_ring, BPF_RB_AVAIL_DATA);
	if (ring_idle || (avail >= ring_wake && avail < ring_wake + size + 8))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(r, flags);
	return 0;
}

/* emit hands the first snaplen bytes of the frame to user space (datapaths
 * perf and ring). Only those bytes are copied: the cost does not grow with
 * the size of a GSO packet, unlike cutting a clone. The frame is what
 * tcpdump shows: a tag in metadata counts (vlan.h). */
static __always_inline void emit(struct __sk_buff *skb, const struct state *st, const struct session *s,
				 struct counters *c, __u32 id, __u32 dir, __u32 ifindex, __u32 local, __u32 hash)
{
	__u32 len = skb->len + meta_tag_len(skb);
	__u32 cap = len;
	long ret;

	if (s->snaplen && cap > s->snaplen)
		cap = s->snaplen;
	if (st->datapath == XM_DATAPATH_RING) {
		__u32 total = sizeof(struct ring_rec) + XM_OUTER_LEN + cap;

		/* The IPv4 total length is 16 bits. */
		if (cap > 0xffff - XM_OUTER_LEN)
			cap = 0xffff - XM_OUTER_LEN;
		/* A few record sizes, so small cuts take little of the ring: 144
		 * holds a 96-byte cut (the seed's and the default), and with the
		 * ring's 8-byte header a record takes 152 bytes, under three
		 * cache lines; the programs and the reader pay per line. */
		if (total <= 144)
			ret = ring_put(skb, st, s, local, id, dir, hash, cap, 144);
		else if (total <= 192)
			ret = ring_put(skb, st, s, local, id, dir, hash, cap, 192);
		else if (total <= 1600)
			ret = ring_put(skb, st, s, local, id, dir, hash, cap, 1600);
		else if (total <= 9216)
			ret = ring_put(skb, st, s, local, id, dir, hash, cap, 9216);
		else
			ret = ring_put(skb, st, s, local, id, dir, hash, cap,
				       sizeof(struct ring_rec) + 0xffff);
	} else {
		cap &= 0xffff;
		ret = perf_put(skb, s, local, id, dir, ifindex, hash, cap, len);
	}
	if (ret) {
		c->errors++;
		return;
	}
	c->packets++;
	c->bytes += cap;
	if (cap < len)
		c->cut++;
}

static __always_inline __u32 clone_mark(__u32 session, __u32 dir, __u32 ifindex)
{
	return XM_MARK_MAGIC | (dir << XM_MARK_DIR_SHIFT) |
	       ((session & XM_MARK_SESS_MASK) << XM_MARK_SESS_SHIFT) | (ifindex & XM_MARK_IF_MASK);
}

/* icmp_quote is the start of an ICMP error: the header, then the IPv4
 * header and the first ports of the packet it is about. */
struct icmp_quote {
	__u8 type;
	__u8 code;
	__u16 csum;
	__u32 rest;
	struct iphdr ip;
	__u16 sport;
	__u16 dport;
};

/* is_mirror tells xmirror's mirrored traffic, from this source or another:
 * IPv4 UDP to the VXLAN port with the mirror DSCP, and the ICMP errors and
 * redirects about such packets (a host without a VXLAN listener answers each with one). No
 * source mirrors them, so two sources that mirror each other's traffic
 * cannot loop. */
static __always_inline int is_mirror(struct __sk_buff *skb, const struct flow *f)
{
	struct icmp_quote q;
	__u16 dport;

	if (f->ethertype != XM_ETH_P_IP)
		return 0;
	if (f->proto == IPPROTO_UDP)
		return f->has_ports && f->dport == XM_VXLAN_PORT && (f->tos >> 2) == XM_MIRROR_DSCP;
	if (f->proto != IPPROTO_ICMP || bpf_skb_load_bytes(skb, f->l4, &q, sizeof(q)) < 0)
		return 0;
	/* Destination unreachable, redirect, time exceeded, parameter
	 * problem: a router that forwards a mirrored packet out of the
	 * interface it came in by answers with a redirect. */
	if (q.type != 3 && q.type != 5 && q.type != 11 && q.type != 12)
		return 0;
	if (q.ip.version != 4 || q.ip.protocol != IPPROTO_UDP || (q.ip.tos >> 2) != XM_MIRROR_DSCP)
		return 0;
	dport = q.dport;
	if (q.ip.ihl != 5 && bpf_skb_load_bytes(skb, f->l4 + 8 + q.ip.ihl * 4 + 2, &dport, sizeof(dport)) < 0)
		return 0;
	return bpf_ntohs(dport) == XM_VXLAN_PORT;
}

static __always_inline int handle(struct __sk_buff *skb, __u32 dir)
{
	__u32 zero = 0;
	struct state *st;
	struct walk w = {};
	struct session *s;
	struct counters *c;
	__u32 skey, mark, out;
	long ret;

	st = bpf_map_lookup_elem(&xm_state, &zero);
	if (!st)
		return XM_TC_NEXT;
	/* Our own tunnel packets leave through this interface, and our clones
	 * may pass it on their way: never mirror either. */
	if (st->tunnel_mark && skb->mark == st->tunnel_mark)
		return XM_TC_NEXT;
	if ((skb->mark & XM_MARK_ANY_MASK) == XM_MARK_MAGIC)
		return XM_TC_NEXT;
	/* A broadcast, or a multicast to a group the host joined, that the host
	 * sends comes back in at the interface's ingress as the kernel's local
	 * copy: the bare IP packet, without Ethernet header. It never was on
	 * the wire, and tcpdump does not show it (af_packet skips it). */
	if (dir == XM_DIR_IN && skb->pkt_type == XM_PACKET_LOOPBACK)
		return XM_TC_NEXT;
	if (parse_flow(skb, &w.f) < 0)
		return XM_TC_NEXT;
	if (w.f.ethertype == XM_ETH_P_IP && w.f.proto == IPPROTO_UDP && w.f.has_ports &&
	    w.f.dport == XM_VXLAN_PORT && bpf_map_lookup_elem(&xm_targets, &w.f.dst[0]))
		return XM_TC_NEXT;
	if (is_mirror(skb, &w.f))
		return XM_TC_NEXT;

	__u32 buf = st->active & 1;
	w.base = (buf * 2 + dir) * XM_MAX_RULES;
	w.count = dir ? st->nrules[buf][1] : st->nrules[buf][0];
	if (w.count > XM_MAX_RULES)
		w.count = XM_MAX_RULES;
	w.ifindex = skb->ifindex;
	w.session = -1;
	/* The first rules inline: most filters are short, and a bpf_loop call
	 * costs more than walking them. */
	if (w.count && !walk_some(0, &w))
		bpf_loop(XM_MAX_RULES / XM_WALK_BATCH + 1, walk_some, &w, 0);

	if (record_decision) {
		struct decision *d = bpf_map_lookup_elem(&xm_decision, &zero);

		if (d) {
			d->packets++;
			d->session = w.session;
			d->rule = w.rule;
			d->dir = dir;
		}
		return XM_TC_NEXT;
	}
	if (w.session < 0)
		return XM_TC_NEXT;

	__u32 id = (__u32)w.session % XM_MAX_SESSIONS;
	skey = buf * XM_MAX_SESSIONS + id;
	s = bpf_map_lookup_elem(&xm_sessions, &skey);
	c = counters_of(id, dir);
	if (!s || !c)
		return XM_TC_NEXT;
	if (over_rate(id, s)) {
		c->ratelimited++;
		return XM_TC_NEXT;
	}
	out = st->vxlan_ifindex;
	if (dir == XM_DIR_OUT && w.replica)
		out = w.replica;
	if (st->datapath != XM_DATAPATH_KERNEL && out == st->vxlan_ifindex) {
		__u32 hash = flow_hash(&w.f, s->hash_mode == XM_HASH_SYMMETRIC);
		struct hop *h = w.direct && !rx_aggregates(skb, dir) ? direct_hop(skb, st, s) : NULL;

		if (h)
			direct_clone(skb, st, c, h, direct_mark(id, dir, skb->ifindex), hash);
		else
			emit(skb, st, s, c, id, dir, skb->ifindex, w.local, hash);
		return XM_TC_NEXT;
	}

	/* An outbound aggregate whose segments need no cut leaves directly as
	 * one, segmented by the kernel like the original (direct.h); any
	 * other goes to the replica, which segments it first. */
	if (dir == XM_DIR_OUT && w.replica && w.direct) {
		struct hop *h = direct_hop_segments(skb, st, s, &w.f);

		if (h) {
			direct_clone(skb, st, c, h, direct_mark(id, dir, skb->ifindex),
				     flow_hash(&w.f, s->hash_mode == XM_HASH_SYMMETRIC));
			return XM_TC_NEXT;
		}
	}
	/* The clone inherits the mark; the original gets its own back at once. */
	mark = skb->mark;
	skb->mark = clone_mark(id, dir, skb->ifindex);
	ret = bpf_clone_redirect(skb, out, 0);
	skb->mark = mark;
	if (ret)
		c->errors++;
	return XM_TC_NEXT;
}

SEC("tc")
int xm_source_ingress(struct __sk_buff *skb)
{
	return handle(skb, XM_DIR_IN);
}

/* On the way out the program also finishes the direct clones of the ring
 * datapath whose next hop is this interface (direct.h). */
SEC("tc")
int xm_source_egress(struct __sk_buff *skb)
{
	if ((skb->mark & XM_MARK_MAGIC_MASK) == XM_MARK_DIRECT)
		return direct_finish(skb);
	return handle(skb, XM_DIR_OUT);
}

/* xm_direct_egress finishes direct clones on a next hop that is not a source
 * interface (there xm_source_egress does); everything else passes. */
SEC("tc")
int xm_direct_egress(struct __sk_buff *skb)
{
	if ((skb->mark & XM_MARK_MAGIC_MASK) != XM_MARK_DIRECT)
		return XM_TC_NEXT;
	return direct_finish(skb);
}

/* xm_replica receives outbound clones from the replica veth, segmented and
 * checksummed by the kernel exactly as on the source interface, and passes
 * them on to the VXLAN device. */
SEC("tc")
int xm_replica(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct state *st;

	if ((skb->mark & XM_MARK_MAGIC_MASK) != XM_MARK_MAGIC)
		return XM_TC_SHOT;
	st = bpf_map_lookup_elem(&xm_state, &zero);
	if (!st)
		return XM_TC_SHOT;
	if (st->datapath != XM_DATAPATH_KERNEL) {
		__u32 mark = skb->mark, skey, id, dir, ifindex, hash;
		struct flow f = {};
		struct hop *h;
		struct session *s;
		struct counters *c;
		struct iface *ifc;

		id = ((mark >> XM_MARK_SESS_SHIFT) & XM_MARK_SESS_MASK) % XM_MAX_SESSIONS;
		dir = (mark >> XM_MARK_DIR_SHIFT) & 1;
		skey = (st->active & 1) * XM_MAX_SESSIONS + id;
		s = bpf_map_lookup_elem(&xm_sessions, &skey);
		c = counters_of(id, dir);
		if (!s || !c)
			return XM_TC_SHOT;
		ifindex = mark & XM_MARK_IF_MASK;
		ifc = bpf_map_lookup_elem(&xm_ifaces, &ifindex);
		if (!ifc) {
			c->errors++;
			return XM_TC_SHOT;
		}
		parse_flow(skb, &f);
		hash = flow_hash(&f, s->hash_mode == XM_HASH_SYMMETRIC);
		/* A segment is the replica's own copy: it is sent on, not cloned. */
		h = direct_hop(skb, st, s);
		if (h) {
			skb->mark = direct_mark(id, dir, ifindex);
			skb->tc_index = outer_port(st->port_min, st->port_range, hash);
			return bpf_redirect(h->ifindex, 0);
		}
		emit(skb, st, s, c, id, dir, ifindex, ifc->local, hash);
		return XM_TC_SHOT;
	}
	return bpf_redirect(st->vxlan_ifindex, 0);
}

/* tunnel cuts a clone that reached the VXLAN device and sets its tunnel key
 * (datapath kernel). */
static __always_inline int tunnel(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct bpf_tunnel_key key = {};
	struct flow f = {};
	struct state *st;
	struct session *s;
	struct counters *c;
	struct iface *ifc;
	__u32 skey, len, tag, id, dir, ifindex, mark = skb->mark;

	/* Only clones made by the source programs may leave through this device. */
	if ((mark & XM_MARK_MAGIC_MASK) != XM_MARK_MAGIC)
		return XM_TC_SHOT;
	id = ((mark >> XM_MARK_SESS_SHIFT) & XM_MARK_SESS_MASK) % XM_MAX_SESSIONS;
	dir = (mark >> XM_MARK_DIR_SHIFT) & 1;
	ifindex = mark & XM_MARK_IF_MASK;
	st = bpf_map_lookup_elem(&xm_state, &zero);
	if (!st)
		return XM_TC_SHOT;
	skey = (st->active & 1) * XM_MAX_SESSIONS + id;
	s = bpf_map_lookup_elem(&xm_sessions, &skey);
	c = counters_of(id, dir);
	if (!s || !c)
		return XM_TC_SHOT;
	ifc = bpf_map_lookup_elem(&xm_ifaces, &ifindex);
	if (!ifc) {
		c->errors++;
		return XM_TC_SHOT;
	}
	/* Hash before cutting: the ports may lie beyond the cut. */
	parse_flow(skb, &f);

	/* The device has no VLAN tx offload: the kernel puts a tag in metadata
	 * into the frame after this program (validate_xmit_vlan), before the
	 * vxlan driver encapsulates it. The cut leaves room for it. */
	tag = meta_tag_len(skb);
	len = skb->len + tag;
	if (s->snaplen && len > s->snaplen) {
		if (bpf_skb_change_tail(skb, s->snaplen - tag, 0)) {
			c->errors++;
			return XM_TC_SHOT;
		}
		c->cut++;
		len = s->snaplen;
	}

	key.tunnel_id = s->vni;
	key.remote_ipv4 = bpf_ntohl(s->remote);
	key.local_ipv4 = bpf_ntohl(ifc->local);
	key.tunnel_ttl = s->ttl ? s->ttl : 64;
	key.tunnel_tos = XM_MIRROR_TOS;
	/* DF: the cut already fits the path MTU; a zero UDP checksum as RFC 7348
	 * recommends and the clouds send. */
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_DONT_FRAGMENT | BPF_F_ZERO_CSUM_TX)) {
		c->errors++;
		return XM_TC_SHOT;
	}
	bpf_set_hash(skb, flow_hash(&f, s->hash_mode == XM_HASH_SYMMETRIC));
	skb->mark = st->tunnel_mark;
	c->packets++;
	c->bytes += len;
	return XM_TC_OK;
}

SEC("tc")
int xm_tunnel(struct __sk_buff *skb)
{
	return tunnel(skb);
}

/* xm_drop sits on the VXLAN device's ingress: the device exists to send, but
 * in external mode it also decapsulates whatever arrives on UDP 4789 and
 * would hand it to the stack as if received on xmirror0. */
SEC("tc")
int xm_drop(struct __sk_buff *skb)
{
	return XM_TC_SHOT;
}
