// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * vd_dispatch: the XDP dispatcher viaductd attaches to every interface it manages.
 *
 * For each frame it decides, in this order:
 *   1. Not Ethernet II + IPv4 (ARP, IPv6, VLAN-tagged, LLDP, ...): XDP_PASS, the kernel handles it.
 *   2. IPv4 header the kernel would reject (bad version, IHL < 5, truncated): XDP_PASS and count
 *      `malformed`; the kernel's own checks (ip_rcv_core) then drop it, so no endpoint ever sees it.
 *   3. IPv4 fragments (MF set or offset != 0): XDP_PASS. Only the first fragment carries the L4 header, so
 *      steering fragments would split a datagram between the kernel and an endpoint; the kernel
 *      reassembles them instead (a viaduct endpoint never sends fragments: DF is always set).
 *   4. Not UDP or TCP (ICMP, IGMP, ...): XDP_PASS.
 *   5. UDP/TCP header truncated (or UDP length below 8): XDP_PASS + `malformed`.
 *   6. {dst ip, dst port, proto} not in vd_ports: XDP_PASS (kernel sockets keep working) + `passed`.
 *   6b. A held port (VD_BPF_EP_HOLD: its endpoint let it go, viaductd keeps it through TIME-WAIT):
 *      XDP_DROP and count `held`. Not to the kernel, whose reservation socket would answer with a RST.
 *   7. Owned by a direct endpoint and arrived on its queue: redirect to its XSK (vd_xsks[queue]).
 *      If that XSK slot is empty (endpoint being set up or torn down) the frame falls through to 8:
 *      it belongs to the endpoint, so it must not leak to the kernel.
 *   8. Otherwise copy the whole frame (from the Ethernet header, fragments included) into the endpoint's steering ring
 *      (vd_rings[ep_id]) and XDP_DROP. Ring full or frame larger than the largest size class: XDP_DROP
 *      and count it. The frame is the endpoint's; handing it to the kernel would make the kernel answer
 *      with ICMP port unreachable or a TCP RST (its own socket for the port is only a reservation).
 *
 * Nothing here writes to the packet: passed frames reach the kernel unchanged.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "bpf/dispatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Which endpoint owns a destination. Filled by viaductd. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VD_BPF_PORT_SLOTS);
	__type(key, __u32);
	__type(value, struct vd_bpf_ep);
} vd_ports SEC(".maps");

/* Direct endpoints' XSKs, indexed by the queue they are bound to. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, VD_BPF_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} vd_xsks SEC(".maps");

/*
 * Steering rings, indexed by ep_id. The inner definition is only the template libbpf creates the outer
 * map with: ringbuf inner maps are compared on type and flags, not on size, so viaductd inserts ring
 * buffers of whatever size each endpoint asked for.
 */
struct vd_ring_tmpl {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, VD_BPF_MAX_EPS);
	__type(key, __u32);
	__array(values, struct vd_ring_tmpl);
} vd_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VD_BPF_MAX_EPS);
	__type(key, __u32);
	__type(value, struct vd_bpf_ep_stats);
} vd_ep_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vd_bpf_glob_stats);
} vd_glob_stats SEC(".maps");

/* Per-CPU counters: plain increments, no atomics needed (XDP runs with preemption disabled). */
#define GLOB_INC(g, field)      \
	do {                    \
		if (g)          \
			(g)->field++; \
	} while (0)

static __always_inline struct vd_bpf_glob_stats *glob_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vd_glob_stats, &zero);
}

/*
 * Reserves a record of a constant size class (bpf_ringbuf_reserve needs a size the verifier knows), copies
 * the frame into it and submits it. Returns 0, -1 when the ring is full.
 */
#define STEER_CLASS(ring, ctx, flen, class)                                                            \
	({                                                                                             \
		int ret__ = -1;                                                                        \
		struct vd_bpf_rec *rec__ = bpf_ringbuf_reserve(ring, sizeof(*rec__) + (class), 0);    \
		if (rec__) {                                                                           \
			rec__->len = (flen);                                                           \
			rec__->rx_queue = (ctx)->rx_queue_index;                                       \
			/* flen <= class was checked by the caller; the verifier needs it again here. */ \
			if ((flen) > 0 && (flen) <= (class) &&                                         \
			    bpf_xdp_load_bytes(ctx, 0, rec__ + 1, (flen)) == 0) {                      \
				/* Default flags: adaptive wakeup (notify only if the consumer caught up). */ \
				bpf_ringbuf_submit(rec__, 0);                                          \
				ret__ = 0;                                                             \
			} else {                                                                       \
				bpf_ringbuf_discard(rec__, 0);                                         \
				ret__ = -2;                                                            \
			}                                                                              \
		}                                                                                      \
		ret__;                                                                                 \
	})

/* Copies the frame into the endpoint's steering ring. Always XDP_DROP: the frame is the endpoint's. */
static __always_inline int steer(struct xdp_md *ctx, const struct vd_bpf_ep *ep, struct vd_bpf_glob_stats *g,
				 struct vd_bpf_ep_stats *es)
{
	/*
	 * Whole frame length including any non-linear part (multi-buffer), not just data_end - data. Kept
	 * 64-bit: a 32-bit copy makes clang bound-check a zero-extended register and pass the unchecked one.
	 */
	__u64 flen = bpf_xdp_get_buff_len(ctx);
	__u32 ep_id = ep->ep_id;
	void *ring = bpf_map_lookup_elem(&vd_rings, &ep_id);
	int rc;

	if (!ring) {
		/* The endpoint's ring is not (or no longer) installed: nobody can take the frame. */
		if (es)
			es->dropped++;
		GLOB_INC(g, ring_full);
		return XDP_DROP;
	}
	/* Smallest class that fits keeps the ring dense for small frames. */
	if (flen <= VD_BPF_CLASS_0)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_0);
	else if (flen <= VD_BPF_CLASS_1)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_1);
	else if (flen <= VD_BPF_CLASS_2)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_2);
	else if (flen <= VD_BPF_CLASS_3)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_3);
	else if (flen <= VD_BPF_CLASS_4)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_4);
	else if (flen <= VD_BPF_CLASS_5)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_5);
	else if (flen <= VD_BPF_CLASS_6)
		rc = STEER_CLASS(ring, ctx, flen, VD_BPF_CLASS_6);
	else {
		if (es)
			es->dropped++;
		GLOB_INC(g, too_big);
		return XDP_DROP;
	}
	if (rc == 0) {
		if (es) {
			es->steered++;
			es->bytes += flen;
		}
		GLOB_INC(g, steered);
	} else {
		if (es)
			es->dropped++;
		GLOB_INC(g, ring_full);
	}
	return XDP_DROP;
}

/*
 * "xdp.frags" (BPF_F_XDP_HAS_FRAGS): the program copes with multi-buffer frames, so a driver may hand it
 * frames larger than a page (veth refuses native XDP above an MTU of about 3500 otherwise) and the XSK
 * redirect keeps every fragment (the endpoint's XSK is bound with XDP_USE_SG). Headers are read from the
 * linear part only, which is at least a page minus headroom; lengths come from bpf_xdp_get_buff_len.
 */
SEC("xdp.frags")
int vd_dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct vd_bpf_glob_stats *g = glob_stats();
	__u16 port_be;
	struct vd_bpf_ep_stats *es;
	struct vd_bpf_ep *ep;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	void *l4;
	__u32 ihl, ep_id;

	/* Rule 1: Ethernet II carrying IPv4 only (no VLAN tags: viaduct endpoints are untagged). */
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto pass;

	/* Rule 2: an IPv4 header (RFC 791) must have version 4, IHL >= 5 words and fit in the frame. */
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		goto malformed;
	ihl = ip->ihl;
	if (ip->version != 4 || ihl < 5)
		goto malformed;
	l4 = (void *)ip + ihl * 4;
	if (l4 > data_end)
		goto malformed;

	/* Rule 3: fragments (MF flag or a non-zero fragment offset) go to the kernel for reassembly. */
	if (ip->frag_off & bpf_htons(0x3fff))
		goto pass;

	/* Rule 4/5: UDP (RFC 768) needs 8 bytes and a length >= 8; TCP (RFC 9293) needs its 20-byte header. */
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end || bpf_ntohs(udp->len) < sizeof(*udp))
			goto malformed;
		port_be = udp->dest;
	} else if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			goto malformed;
		port_be = tcp->dest;
	} else {
		goto pass;
	}
	/* Rule 6: destinations no endpoint owns belong to the kernel. */
	__u32 slot = vd_bpf_port_index(ip->protocol, bpf_ntohs(port_be));
	ep = bpf_map_lookup_elem(&vd_ports, &slot);
	if (!ep || !(ep->flags & VD_BPF_EP_VALID) || ep->ip_be != ip->daddr)
		goto pass;

	/* Rule 6b: held ports. */
	if (ep->flags & VD_BPF_EP_HOLD) {
		GLOB_INC(g, held);
		return XDP_DROP;
	}

	ep_id = ep->ep_id;
	es = bpf_map_lookup_elem(&vd_ep_stats, &ep_id);

	/*
	 * Rule 7: an XSK only receives frames of the queue it is bound to (a redirect to an XSK of another
	 * queue is dropped by the kernel), hence the queue check. The fallback action XDP_PASS is only a
	 * "no XSK in that slot" marker here: the frame then goes to the steering ring, never to the kernel.
	 */
	if ((ep->flags & VD_BPF_EP_DIRECT) && ctx->rx_queue_index == ep->queue) {
		if (bpf_redirect_map(&vd_xsks, ep->queue, XDP_PASS) == XDP_REDIRECT) {
			if (es) {
				es->redirected++;
				es->bytes += bpf_xdp_get_buff_len(ctx); /* fragments included */
			}
			GLOB_INC(g, redirected);
			return XDP_REDIRECT;
		}
	}

	/* Rule 8: software steering. */
	return steer(ctx, ep, g, es);

malformed:
	GLOB_INC(g, malformed);
	return XDP_PASS;
pass:
	GLOB_INC(g, passed);
	return XDP_PASS;
}

/*
 * TX taps: each endpoint may get a tap device of its own (viaductd, ringpool.c), keyed here by the tap's
 * ifindex, the value naming the interface the tap's frames go out of. Filled by viaductd.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, VD_BPF_MAX_EPS);
	__type(key, __u32);
	__type(value, __u32);
} vd_tap_devs SEC(".maps");

/*
 * Attached to every TX tap: a frame an endpoint writes to its tap leaves through the interface's
 * ndo_xdp_xmit, as an xdp_frame. That skips what a copy-mode XSK send costs (an skb allocated and filled
 * in __xsk_generic_xmit, then on a veth copied again into a page_pool page by veth_convert_skb_to_xdp_buff
 * before the peer's XDP program sees it): 0.95 against 1.65 us per frame sent, peer's XDP included,
 * measured on this machine. A tap no longer in the map (its endpoint gone) drops what it is given; no frame
 * ever goes up the tap's own stack.
 */
SEC("xdp")
int vd_tap_tx(struct xdp_md *ctx)
{
	return bpf_redirect_map(&vd_tap_devs, ctx->ingress_ifindex, XDP_DROP);
}
