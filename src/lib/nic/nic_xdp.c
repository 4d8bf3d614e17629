/* SPDX-License-Identifier: MIT */
/*
 * The xdp backend of the frame I/O layer: the application side of AF_XDP, on descriptors viaductd creates
 * and hands over (src/ctl/proto.h, VD_CTL_EP_OPEN). No bpf() call and no capability is needed here: the
 * process only mmaps and polls what it was given.
 *
 * Memory:
 *   UMEM (memfd)  frames [0, rx_frames) circulate between the fill ring, the RX ring and the caller;
 *                 frames [rx_frames, umem_frames) between a free stack, the caller, the TX ring and the
 *                 completion ring.
 *   steering ring BPF ringbuf the XDP dispatcher copies frames into (every endpoint has one; in direct mode
 *                 it catches frames that arrived on another queue).
 *   stats page    counters mirrored for `viaduct stat`.
 *
 * A frame handed to the caller carries a cookie saying where it lives, so rx_release can return it:
 *   bit 63 clear: UMEM frame address (back to the fill ring, batched);
 *   bit 63 set:   end position of a steering-ring record (consumer position advanced in order);
 *   bit 61 set:   index of a bounce buffer holding a multi-buffer frame (below).
 * Bit 62 is the mux nic's (nic_mux.c) and never set here.
 *
 * Jumbo frames (multi-buffer AF_XDP, when the reply's max_frags > 1): UMEM chunks stay 4096 bytes (the
 * kernel refuses larger ones), so a larger frame spans several.
 *   RX: it arrives as consecutive RX descriptors, XDP_PKT_CONTD on all but the last, each chunk's data
 *       256 bytes in (copy-mode headroom), so the pieces are not contiguous in the UMEM: they are copied
 *       into a bounce buffer (a pool allocated with the nic, in its heap), the chunks go back to the fill
 *       ring at once, and the bounce buffer comes back in rx_release. One-descriptor frames keep the
 *       zero-copy path. A steered jumbo frame is one ring record, contiguous already: zero-copy too.
 *   TX: the TX frames form buffers of tx_frags consecutive chunks, so a lent buffer is contiguous for the
 *       caller; tx_burst gives the frame as one descriptor per chunk (XDP_PKT_CONTD on all but the last;
 *       TX metadata only on the first, the only one the kernel reads it from; the pieces after the first
 *       chunk move up to leave the metadata room the kernel wants before each: xdp_tx_descs, unless
 *       the caller wrote them there already: VD_NIC_TX_PLACED, vd_nic_tx_pieces, tx_layout.h).
 *       Completions come per descriptor: a buffer is free again once all of its descriptors completed.
 *
 * Layers (vd_nic_opts.layer): UDP, a frame's data is a UDP payload and the nic builds Ethernet, IPv4 and
 * UDP headers; IPv4, the data is the whole IPv4 packet: RX checks its header (vd__frame_parse_ipv4) and
 * hands over the packet from its IPv4 header, TX only prepends the Ethernet header (next-hop MAC from the
 * neighbour cache / VD_CTL_NEIGH, which resolves the gateway for off-link destinations). The ports the
 * endpoint receives beyond its own are added and removed through viaductd (EP_PORT_ADD / EP_PORT_DEL).
 * TX checksum in the IPv4 layer: the caller's, unless it sets peer.port = VD_NIC_TX_L4_CSUM, in which
 * case the device completes it through TX metadata where it can and this file in software where not.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_xdp.h>

#include "ctl/client.h"
#include "lib/core/frame.h"
#include "lib/core/shmheap.h"
#include <linux/types.h> /* __u32 for the BPF header */
#include "bpf/dispatch.h"
#include "neigh_cache.h"
#include "nic_internal.h"
#include "rx_chain.h"
#include "steer_ring.h"
#include "tx_layout.h"
#include "xsk_ring.h"

#define XDP_COOKIE_RING (1ull << 63)
#define XDP_COOKIE_BOUNCE (1ull << 61)
#define XDP_CTL_TIMEOUT_MS 5000
#define XDP_NEIGH_TIMEOUT_MS 1500                   /* > the daemon's own 1 s resolution limit */
#define XDP_NEIGH_TTL_NS (30ull * 1000000000ull)   /* resolved by the daemon or learned from a frame */
#define XDP_NEIGH_NEG_TTL_NS (200ull * 1000000ull) /* failed resolution: ask again after this */
#define XDP_FLUSH_KICKS 64                          /* doorbells per flush at most (32 frames each) */
#define XDP_COMP_LOW 64                             /* tx_alloc reclaims when fewer frames are free */

/*
 * AF_XDP TX metadata (Documentation/networking/xsk-tx-metadata.rst; newer than Debian 12's uapi headers):
 * a descriptor with option XDP_TX_METADATA has a struct xsk_tx_metadata just before its packet, and with
 * XDP_TXMD_FLAGS_CHECKSUM the device sums from csum_start and stores the result at csum_offset past it,
 * the packet holding the pseudo-header sum there meanwhile (Linux's CHECKSUM_PARTIAL contract).
 */
#define XDP_OPT_TX_METADATA (1u << 1)
#define XDP_TXMD_CHECKSUM (1ull << 1)
struct xdp_tx_meta {
	uint64_t flags;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint32_t _pad;
};
#define XDP_TX_PKT_OFF 64 /* TX packets start here in their frame: room for the metadata, cache aligned */

/* Multi-buffer AF_XDP (Linux 6.6, Documentation/networking/af_xdp.rst "Multi-Buffer Support"): newer than
 * Debian 12's uapi header. A descriptor with XDP_PKT_CONTD is followed by more of the same packet. */
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1u << 0)
#endif
#define XDP_RX_HEADROOM 256u /* XDP_PACKET_HEADROOM: where copy mode starts the data in every RX chunk */
#define XDP_BOUNCE_N 128u    /* bounce buffers: more than a receive burst (64) holds, twice over */

struct xdp_map {
	void *addr;
	size_t len;
};

/* Port holds gathered for viaductd, and for how long at most; spare ephemeral ports kept at most: two
 * batches, so that the next is asked for a whole batch ahead (the ports section below). */
#define XDP_HOLD_GATHER VD_CTL_PORTS_BATCH_MAX
#define XDP_HOLD_WAIT_NS 4000000ull
#define XDP_SPARE_MAX (2u * VD_CTL_PORTS_BATCH_MAX)

/*
 * TX buffers lent out (vd_nic_tx_lend: a TCP send ring in UMEM, sent from as pieces attached to frames).
 * In the nic's heap (fork children drive the nic too); one allocation: this, state[tx_bufs], then
 * refs[tx_bufs * tx_frags] (pieces queued per chunk and not completed: a chunk is busy while > 0).
 */
enum { XDP_LENT_FREE = 0, XDP_LENT_OUT, XDP_LENT_BACK };
struct xdp_lend {
	uint32_t n_out;   /* buffers lent, or given back with pieces still queued */
	uint32_t cap;     /* lent at most: half the TX buffers, so ordinary TX never starves */
	uint8_t *state;   /* per TX buffer */
	uint16_t *refs;   /* per TX chunk */
};
/* The pieces attached to a frame (vd_nic_tx_attach), kept in its TX buffer's second chunk, which the
 * frame's own descriptors never name (headers only, in the first). */
struct xdp_att {
	uint32_t n, hdr_len;
	struct {
		uint64_t addr;
		uint32_t len, _pad;
	} p[VD_NIC_TX_ATTACH_MAX];
};

struct xdp_nic {
	struct vd_nic nic; /* first: the generic layer's view */

	/* RX side */
	struct vd__xsk_ring rx, fill;
	struct vd__steer_ring steer;
	bool direct, has_steer;
	bool xsk_armed;       /* the XSK is in the epoll set (only between arming and the next frames) */
	uint64_t *fill_stash; /* UMEM RX frames waiting for room in the fill ring */
	uint32_t fill_stash_n;
	uint32_t fill_depth;  /* RX frames the fill ring may hold now (xdp_fill_adapt) */
	uint32_t fill_seen;   /* the kernel's fill consumer index at the last refill */
	uint32_t fill_calm;   /* calm refills since the last clock read (xdp_fill_adapt) */
	uint64_t fill_busy_ns; /* start of the current calm period, 0: not started */
	uint32_t max_frags;   /* RX descriptors one frame may span (1: single-buffer) */
	struct vd__rx_chains chains; /* multi-buffer frames: XDP_BOUNCE_N bounce buffers, bad-chain skip (rx_chain.h) */

	/* TX side */
	struct vd__xsk_ring tx, comp;
	uint64_t *tx_free; /* stack of free TX buffer addresses (buffers of tx_frags chunks) */
	uint32_t tx_free_n;
	uint32_t tx_bufs;     /* TX buffers in all: (umem_frames - rx_frames) / tx_frags */
	uint32_t tx_frags;    /* chunks per TX buffer (1: single-chunk frames, the plain path) */
	uint8_t *tx_pending;  /* tx_frags > 1: per buffer, descriptors queued and not completed yet */
	struct xdp_lend *lend; /* TX buffers lent for send rings (vd_nic_tx_lend); NULL until the first */
	struct vd__udp_tmpl tmpl;   /* our MAC, IP and port; dst filled per frame */
	uint32_t hot_ip;            /* one-entry neighbour cache in front of the table: the last peer */
	uint8_t hot_mac[6];
	struct xdp_hdr_cache {      /* headers of the last frame sent: a stream repeats them exactly */
		uint32_t ip_be, len;
		uint16_t port_be;
		uint8_t mac[6];
		uint8_t hdr[VD_FRAME_HDR_LEN];
	} last;

	uint8_t *umem;
	uint64_t umem_size;
	uint32_t frame_size, rx_frames, umem_frames, tx_cap;
	uint32_t tx_off;            /* packet offset in a TX frame */
	uint32_t tx_gap;            /* TX metadata room the kernel wants before every TX descriptor (xdp_tx_descs) */
	uint32_t tx_hdr;            /* bytes the nic writes before the caller's data: 42 (UDP) or 14 (IPv4) */
	bool l3;                    /* VD_NIC_LAYER_IPV4 */
	uint32_t ep_id;
	/* Ephemeral ports reserved in batches and not used yet (xdp_port_add), [0] TCP, [1] UDP */
	uint16_t spare[2][XDP_SPARE_MAX];
	uint32_t n_spare[2];
	uint32_t batch[2];          /* ports the next batch asks for: grows from XDP_BATCH_MIN as they run out */
	bool no_batch;              /* the daemon predates EP_PORTS_ADD/DEL: one port per request */
	uint32_t quiet_sent;        /* quiet EP_PORTS_DEL sent, to drain their error replies now and then */
	uint32_t refill_seq;        /* an EP_PORTS_ADD sent ahead, its reply not read yet (0: none) */
	int refill_proto;
	uint32_t batches[2];        /* EP_PORTS_ADD replies taken */
	/* Holds gathered for one quiet EP_PORTS_DEL (xdp_port_del), [0] TCP, [1] UDP: hold_ms and since when */
	uint16_t held[2][XDP_HOLD_GATHER];
	uint32_t n_held[2], held_ms[2];
	uint64_t held_since[2];
	bool tx_csum_offload;       /* the device completes UDP checksums (TX metadata) */
	uint32_t ifindex;

	struct vd_ctl_ep_shared *shared;
	uint64_t tx_again, tx_nobufs, tx_noneigh; /* flush/neighbour trouble, for debugging */

	int ctl_fd, umem_fd, xsk_fd, ring_fd, stats_fd;
	int tap_fd;                 /* the TX tap (EP_OPEN fd [4]), -1: none or given up (xdp_tap_send) */
	uint32_t tap_max;           /* largest frame (from the Ethernet header) it takes */
	struct xdp_map m_umem, m_rx, m_tx, m_fill, m_comp, m_cons, m_prod, m_stats;

	struct vd__neigh_cache neigh;
	struct vd__shmheap *heap;   /* where this struct and its arrays live (vd__nic_open_shared); NULL: malloc */
};

static struct xdp_nic *xdp_of(struct vd_nic *nic)
{
	return (struct xdp_nic *)nic;
}

/* ---- counters --------------------------------------------------------------------------------------- */

/* Copies the library's counters to the page viaductd reads. Relaxed stores: each word is read on its own
 * by `viaduct stat`, no ordering between them is promised, and the daemon tolerates a torn snapshot. */
static void xdp_mirror_stats(struct xdp_nic *x)
{
	struct vd_ctl_ep_shared *s = x->shared;
	const struct vd_nic_stats *st = &x->nic.stats;
	if (!s)
		return;
	__atomic_store_n(&s->tx_frames, st->tx_frames, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_bytes, st->tx_bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&s->rx_frames, st->rx_frames, __ATOMIC_RELAXED);
	__atomic_store_n(&s->rx_bytes, st->rx_bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&s->rx_malformed, st->rx_malformed, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_busy, st->tx_busy, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_lent, st->tx_lent, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_lend_refused, st->tx_lend_refused, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_att_frames, st->tx_att_frames, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_att_pieces, st->tx_att_pieces, __ATOMIC_RELAXED);
	__atomic_store_n(&s->tx_tap, st->tx_tap, __ATOMIC_RELAXED);
}

/* ---- fill ring -------------------------------------------------------------------------------------- */

/*
 * How many RX frames the fill ring holds: as few as the traffic needs, not all of them. The kernel takes
 * fill entries in ring order, so with every RX frame on the ring each received frame lands in the frame
 * used rx_frames receptions ago (8 MB of UMEM, one page per frame): the kernel's copy and our parse then
 * touch a cold page and cold lines every time (TLB walks under the VM's nested paging). Measured on a
 * busy-polled 64 B TCP ping-pong (lab MTU 3506, interleaved runs, medians): half RTT p50 3.0-3.4 us with
 * the whole ring, 2.55-3.15 us with 16-64 frames on it, near the steering ring's 2.5-2.8 us (whose records
 * are packed in consecutive lines). Frames released go on top of the stash and back to the ring first,
 * so a light load cycles through a few hot frames.
 * The depth follows the load: when the kernel used more than half of what the ring held since the last
 * refill, the depth grows to 4x that (a stream gets the whole ring within a few bursts); when it ran the
 * ring dry, frames may have been dropped already and the depth goes to all RX frames at once. It halves
 * only after XDP_FILL_CALM_NS without a refill that found a quarter of it used: a stream's rare big
 * bursts (the receiver preempted for a while) must still find room, and a drop costs a retransmission.
 */
#define XDP_FILL_MIN 16u
#define XDP_FILL_CALM_NS 2000000000ull
#define XDP_FILL_CLOCK_EVERY 1024u /* refills between clock reads while calm */

static void xdp_fill_adapt(struct xdp_nic *x, uint32_t outstanding)
{
	uint32_t used = x->fill.cached_cons - x->fill_seen; /* consumed by the kernel since the last refill */
	x->fill_seen = x->fill.cached_cons;
	if (used && outstanding == 0) {
		x->fill_depth = x->rx_frames;
	} else if (used * 2 > x->fill_depth) {
		while (x->fill_depth < used * 4 && x->fill_depth < x->rx_frames)
			x->fill_depth *= 2;
		if (x->fill_depth > x->rx_frames)
			x->fill_depth = x->rx_frames;
	} else if (used * 4 > x->fill_depth || x->fill_depth <= XDP_FILL_MIN) {
		/* busy enough to keep the depth, or nothing to shrink */
	} else {
		if (++x->fill_calm < XDP_FILL_CLOCK_EVERY)
			return;
		x->fill_calm = 0;
		uint64_t now = vd__mono_ns();
		if (x->fill_busy_ns == 0 || now - x->fill_busy_ns < XDP_FILL_CALM_NS) {
			if (x->fill_busy_ns == 0)
				x->fill_busy_ns = now;
			return;
		}
		x->fill_depth /= 2;
		x->fill_busy_ns = now;
		return;
	}
	x->fill_calm = 0; /* not calm: the calm period starts over */
	x->fill_busy_ns = 0;
}

/* Moves stashed RX frames to the fill ring, up to depth, most recently released first: one reservation
 * and one publish for the lot. */
static void xdp_refill_to(struct xdp_nic *x, uint32_t depth)
{
	uint32_t outstanding = vd__xsk_prod_outstanding(&x->fill); /* fresh load of the kernel's consumer */
	xdp_fill_adapt(x, outstanding);
	if (depth < x->fill_depth)
		depth = x->fill_depth;
	if (outstanding >= depth)
		return;
	uint32_t want = depth - outstanding;
	if (want > x->fill_stash_n)
		want = x->fill_stash_n;
	uint32_t idx, n = vd__xsk_prod_reserve(&x->fill, want, &idx);
	if (n == 0)
		return;
	for (uint32_t i = 0; i < n; i++) /* the kernel takes slots in order: the hottest frame first */
		*vd__xsk_ring_addr(&x->fill, idx + i) = x->fill_stash[x->fill_stash_n - 1 - i];
	x->fill_stash_n -= n;
	vd__xsk_prod_submit(&x->fill);
}

static void xdp_refill(struct xdp_nic *x)
{
	xdp_refill_to(x, 0);
}

/* ---- RX --------------------------------------------------------------------------------------------- */

/* Remembers where a peer's frames come from: its MAC is the one to send to (the router's if off-link). */
static void xdp_learn(struct xdp_nic *x, uint32_t src_ip_be, const uint8_t *src_mac)
{
	if (src_ip_be == x->hot_ip && memcmp(src_mac, x->hot_mac, 6) == 0)
		return;
	x->hot_ip = src_ip_be;
	memcpy(x->hot_mac, src_mac, 6);
	vd__neigh_put(&x->neigh, src_ip_be, src_mac, vd__mono_ns() + XDP_NEIGH_TTL_NS);
}

/* Is port_be (protocol index ix) one whose hold is gathered and not sent to viaductd yet (xdp_port_del)? */
static bool xdp_held(const struct xdp_nic *x, unsigned ix, uint16_t port_be)
{
	for (uint32_t i = 0; i < x->n_held[ix]; i++)
		if (x->held[ix][i] == port_be)
			return true;
	return false;
}

/*
 * IPv4 layer: the packet from its IPv4 header. The dispatcher steers only (address, protocol, port)
 * entries of this endpoint here, but the frame's bytes are still checked (they came from the wire, and
 * a port just given back may have frames in flight): IPv4 header rules of vd__ipv4_parse, and our
 * address. Link padding past the total length is not handed over.
 */
static bool xdp_accept_l3(struct xdp_nic *x, const uint8_t *l2, uint32_t len, struct vd_frame *f)
{
	struct vd__ipv4_view v;
	if (vd__frame_parse_ipv4(l2, len, &v) != 0 || v.dst_ip_be != x->nic.local.ip)
		return false;
	if ((x->n_held[0] | x->n_held[1]) && xdp_held(x, v.proto == VD_IPPROTO_TCP ? 0 : 1, v.dst_port_be))
		return false; /* given back with a hold not sent yet: dropped, as viaductd will (xdp_port_del) */
	xdp_learn(x, v.src_ip_be, l2 + 6);
	f->data = (void *)(l2 + VD_ETH_HLEN);
	f->len = v.tot_len;
	f->peer.ip = v.src_ip_be;
	f->peer.port = 0;
	f->peer._pad = 0;
	x->nic.stats.rx_bytes += v.tot_len;
	return true;
}

/* Parses one received L2 frame into f; returns false if it is malformed or not for this endpoint. */
static bool xdp_accept(struct xdp_nic *x, const void *l2, uint32_t len, struct vd_frame *f)
{
	if (x->l3)
		return xdp_accept_l3(x, l2, len, f);
	struct vd__udp_view v;
	if (vd__frame_parse_udp(l2, len, &v) != 0)
		return false;
	if (v.dst_ip_be != x->nic.local.ip || v.dst_port_be != x->nic.local.port)
		return false;
	xdp_learn(x, v.src_ip_be, v.src_mac);
	f->data = (void *)v.payload;
	f->len = v.payload_len;
	f->peer.ip = v.src_ip_be;
	f->peer.port = v.src_port_be;
	f->peer._pad = 0;
	x->nic.stats.rx_bytes += v.payload_len;
	return true;
}

/*
 * The XSK is in the epoll set only while the caller may sleep. Registered, every received frame runs the
 * epoll callback from the socket's data_ready in softirq context: measured here +0.6 to +1.2 us on the
 * half round trip of a busy-polled ping-pong. So wait() adds it before sleeping and the first burst that
 * finds frames removes it again (one epoll_ctl each way per sleep, small next to a sleep and wakeup).
 * epoll_ctl(ADD) polls the socket once, so a frame that arrived before it is not missed.
 */
static int xdp_arm_xsk(struct xdp_nic *x)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = x->xsk_fd };
	if (!x->direct || x->xsk_armed)
		return 0;
	if (epoll_ctl(x->nic.fd, EPOLL_CTL_ADD, x->xsk_fd, &ev) < 0)
		return -errno;
	x->xsk_armed = true;
	return 0;
}

static void xdp_disarm_xsk(struct xdp_nic *x)
{
	if (epoll_ctl(x->nic.fd, EPOLL_CTL_DEL, x->xsk_fd, NULL) == 0)
		x->xsk_armed = false;
}

/* The RX geometry and fill stash, as rx_chain.h takes them. */
static struct vd__rx_view xdp_rx_view(struct xdp_nic *x)
{
	return (struct vd__rx_view){ .umem = x->umem, .frame_size = x->frame_size, .rx_frames = x->rx_frames,
				     .max_frags = x->max_frags, .stash = x->fill_stash, .stash_n = &x->fill_stash_n };
}

/* An RX chunk goes back towards the fill ring (not beyond the RX frames: those are not ours to give).
 * Returns whether it did. */
static bool xdp_recycle(struct xdp_nic *x, uint64_t addr)
{
	struct vd__rx_view v = xdp_rx_view(x);
	return vd__rx_recycle(&v, addr);
}

/*
 * A frame whose first RX descriptor is idx and carries XDP_PKT_CONTD, or the rest of a chain being
 * discarded (rx_chain.h: checks, bounce buffer, recycling, counters). Returns the descriptors consumed
 * (the ring's consumer position is moved past them), 0 if the chain is not complete yet; sets *ok if f
 * holds a frame for the caller.
 */
static uint32_t xdp_rx_chain(struct xdp_nic *x, uint32_t idx, struct vd_frame *f, bool *ok)
{
	struct vd__rx_view v = xdp_rx_view(x);
	uint32_t b, len, used = vd__rx_chain_take(&x->chains, &x->rx, &v, idx, &x->nic.stats, &b, &len);
	*ok = false;
	if (b == VD__RX_NO_FRAME)
		return used;
	if (xdp_accept(x, vd__rx_bounce_buf(&x->chains, b), len, f)) {
		f->cookie = XDP_COOKIE_BOUNCE | b;
		*ok = true;
	} else {
		x->nic.stats.rx_malformed++;
		vd__rx_bounce_put(&x->chains, b);
	}
	return used;
}

static unsigned xdp_rx_xsk(struct xdp_nic *x, struct vd_frame *f, unsigned max)
{
	uint32_t idx, got = vd__xsk_cons_peek(&x->rx, max, &idx);
	unsigned n = 0;
	bool recycled = false;
	for (uint32_t i = 0; i < got; i++) {
		const struct xdp_desc *d = vd__xsk_ring_desc(&x->rx, idx + i);
		uint64_t addr = d->addr, len = d->len;
		uint64_t base = addr & ~(uint64_t)(x->frame_size - 1);
		if (__builtin_expect((d->options & XDP_PKT_CONTD) || x->chains.skip, 0)) {
			/* Multi-buffer frame (or the rest of a malformed one): the slow path. */
			bool ok;
			uint32_t used = xdp_rx_chain(x, idx + i, &f[n], &ok);
			if (used == 0) {
				x->rx.cached_cons = idx + i; /* incomplete: left in the ring for the next burst */
				break;
			}
			n += ok;
			i += used - 1;
			recycled = true;
			continue;
		}
		if (vd__rx_desc_ok(addr, (uint32_t)len, x->frame_size, x->rx_frames) &&
		    xdp_accept(x, x->umem + addr, (uint32_t)len, &f[n])) {
			f[n++].cookie = base;
			continue;
		}
		/* Not for the caller: the frame goes straight back to the fill ring. A descriptor outside
		 * the RX frames or crossing its chunk cannot come from the kernel; one outside is not
		 * recycled (it is not ours to give). */
		x->nic.stats.rx_malformed++;
		if (xdp_recycle(x, addr))
			recycled = true;
	}
	if (got) {
		vd__xsk_cons_release(&x->rx); /* the descriptors are copied out; the frames stay ours */
		if (x->xsk_armed)
			xdp_disarm_xsk(x);
	}
	if (recycled)
		xdp_refill(x);
	return n;
}

static unsigned xdp_rx_steer(struct xdp_nic *x, struct vd_frame *f, unsigned max)
{
	struct vd__steer_rec rec;
	unsigned n = 0;
	vd__steer_ring_refresh(&x->steer); /* the one acquire load of the producer for this burst */
	while (n < max && vd__steer_ring_next(&x->steer, &rec)) {
		const struct vd_bpf_rec *h = rec.sample;
		if (rec.len >= sizeof(*h) && h->len <= rec.len - sizeof(*h) &&
		    xdp_accept(x, h + 1, h->len, &f[n])) {
			f[n++].cookie = XDP_COOKIE_RING | rec.end;
			continue;
		}
		x->nic.stats.rx_malformed++;
		vd__steer_ring_drop(&x->steer);
	}
	vd__steer_ring_settle(&x->steer);
	return n;
}

static int xdp_rx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned max)
{
	struct xdp_nic *x = xdp_of(nic);
	uint64_t malformed = nic->stats.rx_malformed;
	unsigned n = 0;
	if (x->direct)
		n = xdp_rx_xsk(x, f, max);
	if (n < max && x->has_steer)
		n += xdp_rx_steer(x, f + n, max - n);
	if (n || nic->stats.rx_malformed != malformed) {
		nic->stats.rx_frames += n;
		xdp_mirror_stats(x);
	}
	return (int)n;
}

static void xdp_rx_release(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct xdp_nic *x = xdp_of(nic);
	uint64_t ring_end = 0;
	uint32_t ring_n = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t c = f[i].cookie;
		if (c & XDP_COOKIE_RING) {
			ring_end = c & ~XDP_COOKIE_RING; /* released oldest first: the last one wins */
			ring_n++;
		} else if (c & XDP_COOKIE_BOUNCE) {
			/* its chunks went back to the fill ring already */
			vd__rx_bounce_put(&x->chains, (uint32_t)(c & ~XDP_COOKIE_BOUNCE));
		} else if (x->fill_stash_n < x->rx_frames) {
			x->fill_stash[x->fill_stash_n++] = c;
		}
	}
	if (ring_n)
		vd__steer_ring_release(&x->steer, ring_end, ring_n);
	if (x->fill_stash_n)
		xdp_refill(x);
}

/* ---- TX --------------------------------------------------------------------------------------------- */

/* Index of the multi-chunk TX buffer that addr (any of its chunks) belongs to. */
static uint32_t xdp_tx_buf_ix(const struct xdp_nic *x, uint64_t addr)
{
	return (uint32_t)((addr - (uint64_t)x->rx_frames * x->frame_size) / x->frame_size) / x->tx_frags;
}

/*
 * Multi-chunk TX buffers: the completion of one descriptor at *addr (a chunk of the TX frames). Returns the
 * buffer's address in *addr once all its descriptors completed (the kernel completes a packet's
 * descriptors together, but counting does not depend on it); false while some are outstanding or for a
 * stray address.
 */
static bool xdp_tx_buf_done(struct xdp_nic *x, uint64_t *addr)
{
	uint64_t lo = (uint64_t)x->rx_frames * x->frame_size;
	uint32_t b = xdp_tx_buf_ix(x, *addr);
	if (b >= x->tx_bufs || x->tx_pending[b] == 0 || --x->tx_pending[b])
		return false;
	*addr = lo + (uint64_t)b * x->tx_frags * x->frame_size;
	return true;
}

/* A given-back lent buffer b goes back to the free list once no piece in it is queued. */
static void xdp_lend_settle(struct xdp_nic *x, uint32_t b)
{
	struct xdp_lend *l = x->lend;
	if (l->state[b] != XDP_LENT_BACK)
		return;
	for (uint32_t c = 0; c < x->tx_frags; c++)
		if (l->refs[b * x->tx_frags + c])
			return;
	l->state[b] = XDP_LENT_FREE;
	l->n_out--;
	x->nic.stats.tx_lent = l->n_out;
	if (x->tx_free_n < x->tx_bufs)
		x->tx_free[x->tx_free_n++] = (uint64_t)x->rx_frames * x->frame_size + (uint64_t)b * x->tx_frags * x->frame_size;
}

/* Takes completed TX frames back from the completion ring (in any order: AF_XDP does not promise
 * submission order across packets). */
static void xdp_reclaim(struct xdp_nic *x)
{
	uint32_t idx, got = vd__xsk_cons_peek(&x->comp, x->comp.size, &idx);
	if (!got)
		return;
	uint64_t lo = (uint64_t)x->rx_frames * x->frame_size;
	for (uint32_t i = 0; i < got; i++) {
		uint64_t addr = *vd__xsk_ring_addr(&x->comp, idx + i) & ~(uint64_t)(x->frame_size - 1);
		/* Only our own TX frames: the kernel returns what we queued; anything else is ignored so a
		 * bug cannot hand an RX frame to the TX side twice. */
		if (addr < lo || addr >= x->umem_size)
			continue;
		if (x->lend) {
			/* a piece of a lent buffer: one less queued in its chunk */
			uint32_t b = xdp_tx_buf_ix(x, addr), ch = (uint32_t)((addr - lo) / x->frame_size);
			if (b < x->tx_bufs && x->lend->state[b] != XDP_LENT_FREE) {
				if (x->lend->refs[ch])
					x->lend->refs[ch]--;
				xdp_lend_settle(x, b);
				continue;
			}
		}
		if (x->tx_frags > 1 && !xdp_tx_buf_done(x, &addr))
			continue;
		if (x->tx_free_n < x->tx_bufs)
			x->tx_free[x->tx_free_n++] = addr;
	}
	vd__xsk_cons_release(&x->comp);
}

static int xdp_tx_alloc(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct xdp_nic *x = xdp_of(nic);
	if (x->tx_free_n < n || x->tx_free_n < XDP_COMP_LOW)
		xdp_reclaim(x);
	unsigned k = n < x->tx_free_n ? n : x->tx_free_n;
	for (unsigned i = 0; i < k; i++) {
		uint64_t addr = x->tx_free[--x->tx_free_n];
		f[i].data = x->umem + addr + x->tx_off + x->tx_hdr;
		f[i].len = x->tx_cap;
		f[i].cookie = addr;
	}
	if (k < n) {
		nic->stats.tx_busy++;
		xdp_mirror_stats(x);
	}
	return (int)k;
}

static void xdp_tx_abort(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct xdp_nic *x = xdp_of(nic);
	for (unsigned i = 0; i < n && x->tx_free_n < x->tx_bufs; i++)
		x->tx_free[x->tx_free_n++] = f[i].cookie;
}

/*
 * Frames of several chunks are sent placed (tx_layout.h, the layout of xdp_tx_descs) only in the IPv4
 * layer (where peer.port carries flags) with TX metadata room and the checksum offloaded: the software
 * checksum (xdp_l4_csum) reads the frame contiguous.
 */
static bool xdp_tx_placeable(const struct xdp_nic *x)
{
	return x->l3 && x->tx_frags > 1 && x->tx_gap && x->tx_csum_offload;
}

/* vd_nic_tx_pieces: the chunk layout xdp_tx_descs gives a frame, where placeable; else the contiguous view. */
static int xdp_tx_pieces(struct vd_nic *nic, const struct vd_frame *f, uint32_t off, uint32_t len,
			 struct iovec *iov, unsigned max)
{
	struct xdp_nic *x = xdp_of(nic);
	if (off > x->tx_cap || len > x->tx_cap - off)
		return -EMSGSIZE;
	if (!xdp_tx_placeable(x)) {
		if (!len)
			return 0;
		if (!max)
			return -ENOSPC;
		iov[0].iov_base = x->umem + f->cookie + x->tx_off + x->tx_hdr + off;
		iov[0].iov_len = len;
		return 1;
	}
	struct vd__tx_layout l = {
		.base = x->umem + f->cookie + x->tx_off,
		.chunk0 = x->umem + f->cookie,
		.first = x->frame_size - x->tx_off,
		.stride = x->frame_size,
		.gap = x->tx_gap,
		.cap = x->tx_hdr + x->tx_cap,
	};
	return vd__tx_layout_pieces(&l, x->tx_hdr + off, len, iov, max);
}

/* ---- lent TX buffers (vd_nic_tx_lend, nic.h): send rings in UMEM ---------------------------------- */

static bool xdp_is_tx_frame(const struct xdp_nic *x, uint64_t addr);

/* Lends one free TX buffer (tx_frags chunks), where frames can be sent from lent memory at all: the same
 * condition as placed writing (multi-buffer frames, TX metadata room, checksum in the device). */
static int xdp_tx_lend(struct vd_nic *nic, struct vd_nic_lent *out)
{
	struct xdp_nic *x = xdp_of(nic);
	if (!xdp_tx_placeable(x) || x->tx_bufs < 4)
		return -EOPNOTSUPP;
	if (!x->lend) {
		size_t sz = sizeof(struct xdp_lend) + x->tx_bufs + 8 + (size_t)x->tx_bufs * x->tx_frags * 2;
		struct xdp_lend *l = vd__shm_calloc(x->heap, 1, sz);
		if (!l)
			return -ENOMEM;
		l->state = (uint8_t *)(l + 1);
		l->refs = (uint16_t *)(((uintptr_t)(l->state + x->tx_bufs) + 7) & ~(uintptr_t)7);
		l->cap = x->tx_bufs / 2;
		x->lend = l;
	}
	struct xdp_lend *l = x->lend;
	if (l->n_out >= l->cap || x->tx_free_n <= XDP_COMP_LOW)
		xdp_reclaim(x); /* given-back buffers whose pieces completed, frames completed */
	if (l->n_out >= l->cap || !x->tx_free_n) {
		x->nic.stats.tx_lend_refused++;
		xdp_mirror_stats(x);
		return -ENOBUFS;
	}
	uint64_t addr = x->tx_free[--x->tx_free_n];
	uint32_t b = xdp_tx_buf_ix(x, addr);
	l->state[b] = XDP_LENT_OUT;
	l->n_out++;
	x->nic.stats.tx_lent = l->n_out;
	xdp_mirror_stats(x);
	out->data = x->umem + addr;
	out->id = addr;
	out->chunks = x->tx_frags;
	out->stride = x->frame_size;
	out->gap = x->tx_gap;
	return 0;
}

/* The lent buffer l names, or UINT32_MAX. */
static uint32_t xdp_lent_ix(const struct xdp_nic *x, const struct vd_nic_lent *l)
{
	if (!x->lend || !xdp_is_tx_frame(x, l->id))
		return UINT32_MAX;
	uint32_t b = xdp_tx_buf_ix(x, l->id);
	return x->lend->state[b] == XDP_LENT_OUT ? b : UINT32_MAX;
}

static void xdp_tx_unlend(struct vd_nic *nic, const struct vd_nic_lent *lent)
{
	struct xdp_nic *x = xdp_of(nic);
	uint32_t b = xdp_lent_ix(x, lent);
	if (b == UINT32_MAX)
		return;
	x->lend->state[b] = XDP_LENT_BACK;
	xdp_lend_settle(x, b);
	xdp_mirror_stats(x);
}

static int xdp_tx_busy(struct vd_nic *nic, const struct vd_nic_lent *lent, uint32_t chunk)
{
	struct xdp_nic *x = xdp_of(nic);
	uint32_t b = xdp_lent_ix(x, lent);
	if (b == UINT32_MAX || chunk >= x->tx_frags)
		return 0;
	uint16_t *r = &x->lend->refs[b * x->tx_frags + chunk];
	if (*r)
		xdp_reclaim(x);
	return *r;
}

/*
 * Records the pieces for frame f (sent by xdp_tx_burst_l3 with VD_NIC_TX_ATTACHED). Each piece must lie
 * in one chunk of a lent buffer, from tx_gap on (the kernel's rule for every descriptor with TX metadata
 * registered); the headers in f's first chunk.
 */
static int xdp_tx_attach(struct vd_nic *nic, struct vd_frame *f, uint32_t hdr_len, const struct iovec *iov,
			 unsigned n)
{
	struct xdp_nic *x = xdp_of(nic);
	if (!x->lend || !x->l3 || !xdp_is_tx_frame(x, f->cookie) || x->tx_frags < 2 ||
	    x->tx_off + VD_ETH_HLEN + hdr_len > x->frame_size)
		return -EINVAL;
	struct xdp_att *a = (struct xdp_att *)(x->umem + f->cookie + x->frame_size);
	uint64_t lo = (uint64_t)x->rx_frames * x->frame_size;
	for (unsigned k = 0; k < n; k++) {
		const uint8_t *p = iov[k].iov_base;
		if (p < x->umem + lo || p >= x->umem + x->umem_size)
			return -EINVAL;
		uint64_t at = (uint64_t)(p - x->umem), in = at & (x->frame_size - 1);
		uint32_t b = xdp_tx_buf_ix(x, at);
		if (b >= x->tx_bufs || x->lend->state[b] != XDP_LENT_OUT || in < x->tx_gap || !iov[k].iov_len ||
		    iov[k].iov_len > x->frame_size - in)
			return -EINVAL;
		a->p[k].addr = at;
		a->p[k].len = (uint32_t)iov[k].iov_len;
	}
	a->n = n;
	a->hdr_len = hdr_len;
	return 0;
}

/* The ports section (below): spare ephemeral ports and the batch asked for ahead. */
static void xdp_spares_free(struct xdp_nic *x);
static void xdp_holds_age(struct xdp_nic *x);
static void xdp_holds_send_all(struct xdp_nic *x);
static void xdp_refill_collect(struct xdp_nic *x, int timeout_ms);

/* Asks viaductd for the next-hop MAC of ip (blocking: the first frame to a new peer waits for it). */
static int xdp_neigh_request(struct xdp_nic *x, uint32_t ip_be, uint8_t mac[6])
{
	struct vd_ctl_neigh_req req = { .ifindex = x->ifindex, .ip_be = ip_be };
	char buf[sizeof(struct vd_ctl_hdr) + VD_CTL_REASON_MAX + 64];
	struct vd_ctl_reply rep;
	xdp_refill_collect(x, XDP_CTL_TIMEOUT_MS); /* its reply would be skipped by vd__ctl_call */
	int err = vd__ctl_call(x->ctl_fd, VD_CTL_NEIGH, &req, sizeof(req), buf, sizeof(buf), &rep,
			       XDP_NEIGH_TIMEOUT_MS);
	for (unsigned i = 0; i < rep.nfds; i++) /* none expected; vd__ctl_call leaves them to us */
		close(rep.fds[i]);
	if (err < 0)
		return err;
	if (rep.payload_len < sizeof(struct vd_ctl_neigh_rep))
		return -EBADMSG;
	memcpy(mac, ((const struct vd_ctl_neigh_rep *)rep.payload)->mac, 6);
	return 0;
}

/* The destination MAC for ip; false if it cannot be resolved now. now is read lazily, once per burst. */
static bool xdp_resolve(struct xdp_nic *x, uint32_t ip_be, uint64_t *now, uint8_t mac[6])
{
	if (ip_be == x->hot_ip) {
		memcpy(mac, x->hot_mac, 6);
		return true;
	}
	if (!*now)
		*now = vd__mono_ns();
	switch (vd__neigh_lookup(&x->neigh, ip_be, *now, mac)) {
	case VD__NEIGH_HIT:
		break;
	case VD__NEIGH_NEGATIVE:
		return false;
	default:
		if (xdp_neigh_request(x, ip_be, mac) < 0) {
			vd__neigh_put(&x->neigh, ip_be, NULL, *now + XDP_NEIGH_NEG_TTL_NS);
			return false;
		}
		vd__neigh_put(&x->neigh, ip_be, mac, *now + XDP_NEIGH_TTL_NS);
		break;
	}
	x->hot_ip = ip_be;
	memcpy(x->hot_mac, mac, 6);
	return true;
}

/* addr is the start of one of our TX buffers (a chunk boundary; with multi-chunk buffers, a buffer's). */
static bool xdp_is_tx_frame(const struct xdp_nic *x, uint64_t addr)
{
	uint64_t lo = (uint64_t)x->rx_frames * x->frame_size;
	return addr >= lo && addr < x->umem_size && (addr & (x->frame_size - 1)) == 0 &&
	       (x->tx_frags == 1 || ((addr - lo) / x->frame_size) % x->tx_frags == 0);
}

/*
 * Writes the headers of a frame whose payload is in place: a copy of the last frame's headers when the
 * destination and length are the same (the IPv4 and pseudo-header sums depend on nothing else), else built
 * and remembered. Saves the header build, about 20 ns a frame, on streams and ping-pongs.
 */
static uint32_t xdp_write_headers(struct xdp_nic *x, uint8_t *pkt, const struct vd__udp_tmpl *t, uint32_t len)
{
	struct xdp_hdr_cache *c = &x->last;
	if (c->len == len && c->ip_be == t->dst_ip_be && c->port_be == t->dst_port_be &&
	    memcmp(c->mac, t->dst_mac, 6) == 0) {
		memcpy(pkt, c->hdr, VD_FRAME_HDR_LEN);
		if (!x->tx_csum_offload) /* a full checksum covers the payload: compute it afresh */
			vd__frame_build_udp(pkt, t, len, VD_UDP_CSUM_FULL);
		return VD_FRAME_HDR_LEN + len;
	}
	uint32_t flen = (uint32_t)vd__frame_build_udp(pkt, t, len, x->tx_csum_offload ? VD_UDP_CSUM_PARTIAL
										       : VD_UDP_CSUM_FULL);
	c->len = len;
	c->ip_be = t->dst_ip_be;
	c->port_be = t->dst_port_be;
	memcpy(c->mac, t->dst_mac, 6);
	memcpy(c->hdr, pkt, VD_FRAME_HDR_LEN);
	return flen;
}

/*
 * IPv4 layer, peer.port == VD_NIC_TX_L4_CSUM: the TCP or UDP checksum field holds the folded pseudo-header
 * sum (CHECKSUM_PARTIAL); the device finishes it if it can (returns true: metadata to attach), else it is
 * finished here, by the same rule (RFC 1071 sum from the L4 header on, complemented). A packet whose
 * header does not say where its L4 checksum is goes out as it is: the receiver will drop it.
 */
static bool xdp_l4_csum(struct xdp_nic *x, uint8_t *ip, uint32_t len, struct xdp_tx_meta *m)
{
	uint32_t l4_off, csum_off, l4_len;
	if (!x->tx_csum_offload) {
		(void)vd__ipv4_l4_csum_finish(ip, len);
		return false;
	}
	if (vd__ipv4_l4_csum_loc(ip, len, &l4_off, &csum_off, &l4_len))
		return false;
	m->flags = XDP_TXMD_CHECKSUM;
	m->csum_start = (uint16_t)(VD_ETH_HLEN + l4_off);
	m->csum_offset = (uint16_t)csum_off;
	return true;
}

/*
 * TX descriptors a frame of flen bytes (from its link header) takes: the first chunk holds frame_size -
 * tx_off bytes, every further one frame_size - tx_gap (see xdp_tx_descs).
 */
static uint32_t xdp_tx_ndesc(const struct xdp_nic *x, uint32_t flen)
{
	uint32_t first = x->frame_size - x->tx_off, per = x->frame_size - x->tx_gap;
	if (flen <= first)
		return 1;
	return 1 + (flen - first + per - 1) / per;
}

/* The pieces attached to frame f (vd_nic_tx_attach) if it is sent so, else NULL. */
static struct xdp_att *xdp_attached(const struct xdp_nic *x, const struct vd_frame *f)
{
	if (!x->lend || !(f->peer.port & VD_NIC_TX_ATTACHED) || !x->l3)
		return NULL;
	return (struct xdp_att *)(x->umem + f->cookie + x->frame_size);
}

/* TX descriptors frame f takes: its headers and attached pieces, or its bytes in the chunk layout. */
static uint32_t xdp_frame_ndesc(const struct xdp_nic *x, const struct vd_frame *f)
{
	const struct xdp_att *a = xdp_attached(x, f);
	return a ? 1 + a->n : xdp_tx_ndesc(x, x->tx_hdr + f->len);
}

/*
 * Reserves TX ring slots for the longest prefix of f whose descriptors fit; returns its frame count, *idx
 * the first slot and *slots the slots reserved. Single-chunk buffers: one slot a frame, as ever.
 */
static uint32_t xdp_tx_reserve(struct xdp_nic *x, const struct vd_frame *f, unsigned n, uint32_t *idx,
			       uint32_t *slots)
{
	if (x->tx_frags == 1)
		return *slots = vd__xsk_prod_reserve(&x->tx, n, idx);
	uint32_t want = 0, need = 0, k = 0;
	for (unsigned i = 0; i < n; i++)
		want += xdp_frame_ndesc(x, &f[i]);
	uint32_t room = vd__xsk_prod_free(&x->tx, want);
	for (; k < n; k++) {
		uint32_t d = xdp_frame_ndesc(x, &f[k]);
		if (need + d > room)
			break;
		need += d;
	}
	*slots = vd__xsk_prod_reserve(&x->tx, need, idx);
	return k;
}

/*
 * Writes the descriptors of the frame of flen bytes at buffer addr (packet at tx_off) from TX slot slot on,
 * XDP_PKT_CONTD on all but the last; opts (TX metadata) on the first only, the descriptor the kernel reads
 * the metadata of. Returns the slots written.
 * A descriptor may not cross its chunk, and with TX metadata registered (tx_gap bytes) the kernel wants
 * that room before every descriptor inside the same chunk (xp_aligned_validate_desc), even where no
 * metadata is asked for. So the first descriptor takes the first chunk from tx_off on, and every further
 * one chunk k from tx_gap on. The caller wrote one contiguous frame; the pieces after the first chunk move
 * up by k * tx_gap bytes each, last first (a memmove of what is beyond the first chunk, only for frames
 * that span chunks; tx_cap keeps the room for it at the buffer's end).
 */
static uint32_t xdp_tx_descs(struct xdp_nic *x, uint32_t slot, uint64_t addr, uint32_t flen, uint32_t opts,
			     bool placed)
{
	struct xdp_desc *d = vd__xsk_ring_desc(&x->tx, slot);
	uint32_t first = x->frame_size - x->tx_off;
	d->addr = addr + x->tx_off;
	d->options = opts;
	if (flen <= first) {
		d->len = flen;
		if (x->tx_frags > 1) /* completions to wait for before the buffer is free (xdp_tx_buf_done) */
			x->tx_pending[xdp_tx_buf_ix(x, addr)] = 1;
		return 1;
	}
	uint32_t per = x->frame_size - x->tx_gap, rest = flen - first;
	uint32_t n = (rest + per - 1) / per; /* descriptors after the first */
	const uint8_t *src = x->umem + addr + x->frame_size; /* the caller's bytes after the first chunk */
	d->len = first;
	d->options = opts | XDP_PKT_CONTD;
	for (uint32_t k = n; k >= 1; k--) {
		uint32_t off = (k - 1) * per, len = rest - off < per ? rest - off : per;
		uint64_t at = addr + (uint64_t)k * x->frame_size + x->tx_gap;
		if (x->tx_gap && !placed) /* placed: the caller wrote it there (vd_nic_tx_pieces) */
			memmove(x->umem + at, src + off, len);
		d = vd__xsk_ring_desc(&x->tx, slot + k);
		d->addr = at;
		d->len = len;
		d->options = k == n ? 0 : XDP_PKT_CONTD;
	}
	x->tx_pending[xdp_tx_buf_ix(x, addr)] = (uint8_t)(n + 1);
	return n + 1;
}

/*
 * The descriptors of a frame with attached pieces (vd_nic_tx_attach): its link, IPv4 and TCP headers from
 * its own buffer (tx_off on, opts: the TX metadata is read from the first descriptor), then each piece
 * where it lies in a lent buffer, XDP_PKT_CONTD on all but the last. Each piece counts in its chunk until
 * its completion comes back (xdp_reclaim). Returns the slots written.
 */
static uint32_t xdp_tx_descs_att(struct xdp_nic *x, uint32_t slot, uint64_t addr, const struct xdp_att *a,
				 uint32_t opts)
{
	struct xdp_desc *d = vd__xsk_ring_desc(&x->tx, slot);
	uint64_t lo = (uint64_t)x->rx_frames * x->frame_size;
	d->addr = addr + x->tx_off;
	d->len = VD_ETH_HLEN + a->hdr_len;
	d->options = opts | (a->n ? XDP_PKT_CONTD : 0);
	x->tx_pending[xdp_tx_buf_ix(x, addr)] = 1;
	for (uint32_t k = 0; k < a->n; k++) {
		d = vd__xsk_ring_desc(&x->tx, slot + 1 + k);
		d->addr = a->p[k].addr;
		d->len = a->p[k].len;
		d->options = k + 1 < a->n ? XDP_PKT_CONTD : 0;
		x->lend->refs[(a->p[k].addr - lo) / x->frame_size]++;
	}
	return 1 + a->n;
}

/*
 * The TX tap (EP_OPEN fd [4], proto.h): one write() sends one frame, through the tap's XDP program, which
 * redirects it out of the interface as an xdp_frame. Measured on this machine's veth, peer's XDP included:
 * 1.0 us per frame written, against 1.65 us for one frame by the XSK (its sendto allocates and fills an
 * skb, which veth copies again for the peer's XDP) and 0.9 us for each further frame of the same sendto.
 * So the tap takes bursts of up to XDP_TAP_BURST frames - the request/response case - and the XSK larger
 * ones, where its doorbell is shared. Frames must not overtake each other: the tap is used only while the
 * XSK has nothing queued (everything submitted was seen taken: cached_cons is only ever behind the
 * kernel's, so a stale view errs towards the XSK), and within a burst only until one frame went the XSK's
 * way. The tap sees no TX metadata: the L4 checksum is completed here.
 */
#define XDP_TAP_BURST 3u

static bool xdp_tap_usable(const struct xdp_nic *x, unsigned n)
{
	return x->tap_fd >= 0 && n <= XDP_TAP_BURST && x->tx.cached_prod == x->tx.cached_cons;
}

/* A frame of flen bytes goes by the tap: the burst may use it (xdp_tap_usable), no frame of it went the
 * XSK's way yet (used: its XSK slots), and the frame fits. */
static bool xdp_tap_takes(const struct xdp_nic *x, bool usable, uint32_t used, uint32_t flen)
{
	return usable && used == 0 && x->tap_fd >= 0 && flen <= x->tap_max;
}

/*
 * Sends the frame of len bytes in the TX buffer at addr (at frame, its checksums complete) through the tap;
 * true if it went, and the buffer is free again at once (write() copied it). A transient failure leaves the
 * frame to the XSK. Any other means the tap is gone - viaductd deletes it when the interface can no longer
 * take redirected frames, or the endpoint is ending - so it is closed and not tried again.
 */
static bool xdp_tap_send(struct xdp_nic *x, uint64_t addr, const uint8_t *frame, uint32_t len)
{
	ssize_t w = write(x->tap_fd, frame, len);
	if (w == (ssize_t)len) {
		x->nic.stats.tx_tap++;
		x->tx_free[x->tx_free_n++] = addr;
		return true;
	}
	int e = w < 0 ? errno : EIO;
	if (e != EAGAIN && e != EINTR && e != ENOBUFS && e != ENOMEM) {
		close(x->tap_fd);
		x->tap_fd = -1;
	}
	return false;
}

/* IPv4 layer: the caller's packet is in place after room for the Ethernet header. */
static int xdp_tx_burst_l3(struct xdp_nic *x, struct vd_frame *f, unsigned n)
{
	bool tap = xdp_tap_usable(x, n);
	uint32_t idx, slots, res = xdp_tx_reserve(x, f, n, &idx, &slots);
	uint32_t queued = 0, used = 0;
	uint64_t now = 0, bytes = 0;
	uint8_t mac[6];
	for (uint32_t i = 0; i < res; i++) {
		uint64_t addr = f[i].cookie;
		if (!xdp_resolve(x, f[i].peer.ip, &now, mac)) {
			x->tx_noneigh++;
			x->tx_free[x->tx_free_n++] = addr;
			continue;
		}
		uint8_t *pkt = x->umem + addr + x->tx_off;
		struct xdp_tx_meta m = { 0 };
		uint32_t opts = 0;
		const struct xdp_att *att = xdp_attached(x, &f[i]);
		vd__frame_build_eth(pkt, mac, x->tmpl.src_mac);
		if (!att && xdp_tap_takes(x, tap, used, VD_ETH_HLEN + f[i].len)) {
			if (f[i].peer.port & VD_NIC_TX_L4_CSUM)
				(void)vd__ipv4_l4_csum_finish(pkt + VD_ETH_HLEN, f[i].len);
			if (xdp_tap_send(x, addr, pkt, VD_ETH_HLEN + f[i].len)) {
				queued++;
				bytes += f[i].len;
				continue;
			}
			/* complete now: the XSK sends it as it is, without asking the device for the checksum */
		} else if ((f[i].peer.port & VD_NIC_TX_L4_CSUM) && xdp_l4_csum(x, pkt + VD_ETH_HLEN, f[i].len, &m)) {
			memcpy(pkt - sizeof(m), &m, sizeof(m));
			opts = XDP_OPT_TX_METADATA;
		}
		if (att) {
			used += xdp_tx_descs_att(x, idx + used, addr, att, opts);
			x->nic.stats.tx_att_frames++;
			x->nic.stats.tx_att_pieces += att->n;
		} else {
			bool placed = (f[i].peer.port & VD_NIC_TX_PLACED) && xdp_tx_placeable(x);
			used += xdp_tx_descs(x, idx + used, addr, VD_ETH_HLEN + f[i].len, opts, placed);
		}
		queued++;
		bytes += f[i].len;
	}
	vd__xsk_prod_cancel(&x->tx, slots - used); /* slots of dropped frames */
	if (queued)
		vd__xsk_prod_submit(&x->tx);
	x->nic.stats.tx_frames += queued;
	x->nic.stats.tx_bytes += bytes;
	if (res < n)
		x->nic.stats.tx_busy++;
	xdp_mirror_stats(x);
	return (int)res;
}

/*
 * Queues frames on the TX ring. A frame to an address that cannot be resolved is dropped (counted in
 * tx_noneigh) and counts as consumed, as a kernel UDP send to an unreachable neighbour succeeds and the
 * datagram is lost: the caller must not retry it forever.
 */
static int xdp_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct xdp_nic *x = xdp_of(nic);
	for (unsigned i = 0; i < n; i++)
		if (!xdp_is_tx_frame(x, f[i].cookie) || f[i].len > x->tx_cap)
			return i ? (int)i : (f[i].len > x->tx_cap ? -EMSGSIZE : -EINVAL);
	if (x->l3)
		return xdp_tx_burst_l3(x, f, n);

	bool tap = xdp_tap_usable(x, n);
	uint32_t idx, slots, res = xdp_tx_reserve(x, f, n, &idx, &slots);
	uint32_t queued = 0, used = 0;
	uint64_t now = 0, bytes = 0;
	struct vd__udp_tmpl t = x->tmpl;
	for (uint32_t i = 0; i < res; i++) {
		uint64_t addr = f[i].cookie;
		if (!xdp_resolve(x, f[i].peer.ip, &now, t.dst_mac)) {
			x->tx_noneigh++;
			x->tx_free[x->tx_free_n++] = addr;
			continue;
		}
		t.dst_ip_be = f[i].peer.ip;
		t.dst_port_be = f[i].peer.port;
		uint8_t *pkt = x->umem + addr + x->tx_off;
		uint32_t flen = xdp_write_headers(x, pkt, &t, f[i].len), opts = 0;
		bool partial = x->tx_csum_offload;
		if (xdp_tap_takes(x, tap, used, flen)) {
			if (partial) /* the header holds the pseudo-header sum: finish it over the datagram */
				(void)vd__ipv4_l4_csum_finish(pkt + VD_ETH_HLEN, flen - VD_ETH_HLEN);
			if (xdp_tap_send(x, addr, pkt, flen)) {
				queued++;
				bytes += f[i].len;
				continue;
			}
			partial = false; /* complete now: the XSK sends it as it is */
		}
		if (partial) {
			struct xdp_tx_meta m = { .flags = XDP_TXMD_CHECKSUM,
						 .csum_start = VD_FRAME_UDP_OFF,
						 .csum_offset = VD_FRAME_UDP_CSUM_OFF };
			memcpy(pkt - sizeof(m), &m, sizeof(m));
			opts = XDP_OPT_TX_METADATA;
		}
		used += xdp_tx_descs(x, idx + used, addr, flen, opts, false);
		queued++;
		bytes += f[i].len;
	}
	vd__xsk_prod_cancel(&x->tx, slots - used); /* slots of dropped frames */
	if (queued)
		vd__xsk_prod_submit(&x->tx);
	nic->stats.tx_frames += queued;
	nic->stats.tx_bytes += bytes;
	if (res < n)
		nic->stats.tx_busy++;
	xdp_mirror_stats(x);
	return (int)res;
}

/*
 * Rings the TX doorbell: copy-mode AF_XDP transmits only inside sendmsg(), at most a budget of frames
 * (32 by default) per call, returning EAGAIN when more remain. So this kicks until the kernel has taken
 * everything or stops making progress, reclaiming completions in between (a full completion ring also
 * stops transmission).
 */
static int xdp_flush(struct vd_nic *nic)
{
	struct xdp_nic *x = xdp_of(nic);
	int ret = 0;
	if (x->n_held[0] | x->n_held[1])
		xdp_holds_age(x);
	/*
	 * Nothing queued since the kernel was last seen to have taken everything (cached_cons is the TX
	 * consumer index as last read; cached_prod, all submitted outside xdp_tx_burst*, our producer):
	 * no doorbell, and no look at the kernel's indices or the completion ring, whose lines the kernel's
	 * last transmit left in its cache. The stack flushes after every pass and call, most of them with
	 * nothing new to send. Completions are still taken: after each real kick below, and by xdp_tx_alloc
	 * when its free list runs low.
	 */
	if (x->tx.cached_prod == x->tx.cached_cons)
		return 0;
	for (int kick = 0; kick < XDP_FLUSH_KICKS; kick++) {
		xdp_reclaim(x);
		uint32_t before = vd__xsk_prod_outstanding(&x->tx);
		if (before == 0 || !vd__xsk_needs_wakeup(&x->tx))
			break;
		if (sendto(x->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
			continue;
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK) {
			x->tx_again++;
			if (vd__xsk_prod_outstanding(&x->tx) < before)
				continue; /* progress: the budget ran out, kick again */
			break;            /* no progress: retry on the next flush */
		}
		if (e == EBUSY || e == ENOBUFS || e == EINTR) {
			x->tx_nobufs++; /* transient: the frames stay queued for the next flush */
			break;
		}
		ret = -e; /* ENETDOWN, ENXIO, ...: the device is gone or down */
		break;
	}
	xdp_reclaim(x);
	return ret;
}

/* ---- waiting ---------------------------------------------------------------------------------------- */

static bool xdp_ready(struct xdp_nic *x)
{
	if (x->direct && vd__xsk_cons_avail(&x->rx, 1))
		return true;
	return x->has_steer && vd__steer_ring_pending(&x->steer);
}

/*
 * Busy-poll first, sleep last. Before sleeping, the wakeup sources are armed - the XSK joins the epoll
 * set, the steering ring's consumer position catches up (while polling it lags to avoid a wakeup per
 * frame, see steer_ring.h), the fill ring gets its need_wakeup kick - and readiness is checked once more,
 * so a frame that arrived while arming is not slept on. vd_nic_wait(nic, 0) does all of this without
 * sleeping: it is how a caller arms vd_nic_fd() before blocking on it in its own poll loop.
 */
static int xdp_wait(struct vd_nic *nic, int timeout_ms)
{
	struct xdp_nic *x = xdp_of(nic);
	if (xdp_ready(x))
		return 1;
	if (x->n_held[0] | x->n_held[1])
		xdp_holds_send_all(x); /* about to sleep: gathered holds do not wait for us to wake */
	if (vd__xsk_prod_outstanding(&x->tx)) {
		int err = xdp_flush(nic); /* frames left behind by a transient flush failure */
		if (err < 0)
			return err;
	}
	/* About to sleep: every stashed RX frame goes on the fill ring, as a burst arriving before we wake
	 * must not run the shallow busy-poll depth dry (a drop costs the sender a retransmission; cold
	 * frames cost nothing next to a wakeup). The depth logic takes over again once awake. */
	if (x->direct && x->fill_stash_n)
		xdp_refill_to(x, x->rx_frames);
	/* need_wakeup protocol: when the kernel sets the flag on the fill ring, the driver stopped polling
	 * it and a syscall makes it look again (af_xdp.rst, XDP_USE_NEED_WAKEUP). */
	if (x->direct && vd__xsk_needs_wakeup(&x->fill))
		(void)recvfrom(x->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	int err = xdp_arm_xsk(x);
	if (err < 0)
		return err;
	if (x->has_steer && vd__steer_ring_arm(&x->steer))
		return 1;
	if (xdp_ready(x))
		return 1;
	if (timeout_ms == 0)
		return 0;
	struct epoll_event ev[2];
	int n = epoll_wait(nic->fd, ev, 2, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n > 0 ? 1 : 0;
}

static uint64_t xdp_now_ns(const struct vd_nic *nic)
{
	(void)nic;
	return vd__mono_ns();
}

/* ---- open / close ----------------------------------------------------------------------------------- */

static void xdp_unmap(struct xdp_map *m)
{
	if (m->addr)
		munmap(m->addr, m->len);
	m->addr = NULL;
}

static void xdp_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Unmapping and closing everything; closing the control connection makes viaductd reclaim the endpoint. */
static void xdp_close(struct vd_nic *nic)
{
	struct xdp_nic *x = xdp_of(nic);
	struct xdp_map *maps[] = { &x->m_umem, &x->m_rx, &x->m_tx, &x->m_fill, &x->m_comp, &x->m_cons,
				   &x->m_prod, &x->m_stats };
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		xdp_unmap(maps[i]);
	xdp_spares_free(x);
	int *fds[] = { &x->nic.fd, &x->umem_fd, &x->xsk_fd, &x->ring_fd, &x->stats_fd, &x->tap_fd, &x->ctl_fd };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		xdp_close_fd(fds[i]);
	vd__shm_free(x->heap, x->fill_stash);
	vd__shm_free(x->heap, x->tx_free);
	vd__shm_free(x->heap, x->tx_pending);
	vd__shm_free(x->heap, x->lend);
	vd__shm_free(x->heap, x->chains.bounce);
	vd__shm_free(x->heap, x->chains.bounce_free);
	vd__shm_free(x->heap, x);
}

/*
 * Rings and the stats page are mapped with MAP_POPULATE: a few pages, touched on every poll. The UMEM and
 * the steering ring's data (megabytes each, already allocated by viaductd) are not (XDP_MAP_LAZY): filling
 * their page tables up front was about half of a `viaduct run` program's first connection (first
 * connect+close 2.7-3.9 -> 1.7-2.2 ms, 6 interleaved runs each); a page is now faulted in when first used.
 */
#define XDP_MAP_LAZY 0
static int xdp_mmap_as(struct xdp_map *m, size_t len, int prot, int fd, off_t off, int populate)
{
	void *p = mmap(NULL, len, prot, MAP_SHARED | populate, fd, off);
	if (p == MAP_FAILED)
		return -errno;
	m->addr = p;
	m->len = len;
	return 0;
}

static int xdp_mmap(struct xdp_map *m, size_t len, int prot, int fd, off_t off)
{
	return xdp_mmap_as(m, len, prot, fd, off, MAP_POPULATE);
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* The reply comes from a root daemon we trust, but a version skew must fail cleanly, not fault. */
static int xdp_check_reply(const struct vd_ctl_ep_open_rep *r)
{
	bool direct = r->rx_mode == VD_CTL_RX_DIRECT;
	if (r->rx_mode != VD_CTL_RX_DIRECT && r->rx_mode != VD_CTL_RX_STEERED)
		return -EPROTO;
	if (!is_pow2(r->frame_size) || r->frame_size < 2048 || r->umem_frames == 0 ||
	    r->rx_frames >= r->umem_frames || (uint64_t)r->umem_frames * r->frame_size > (1ull << 40))
		return -EPROTO;
	if (!is_pow2(r->tx_ring) || !is_pow2(r->fill_ring) || !is_pow2(r->comp_ring))
		return -EPROTO;
	if (direct && (!is_pow2(r->rx_ring) || r->rx_frames == 0))
		return -EPROTO;
	if (r->steer_ring_bytes && !is_pow2(r->steer_ring_bytes))
		return -EPROTO;
	if (r->mtu < 68 || r->stats_bytes < sizeof(struct vd_ctl_ep_shared))
		return -EPROTO;
	uint32_t tx_frags = r->tx_frags ? r->tx_frags : 1;
	if (r->max_frags > VD_CTL_MAX_FRAGS || tx_frags > (r->max_frags ? r->max_frags : 1u) ||
	    (r->umem_frames - r->rx_frames) % tx_frags)
		return -EPROTO;
	return 0;
}

/*
 * The largest frame (from its link header) this endpoint carries: the interface MTU's, unless the UMEM
 * geometry says less: on RX, max_frags chunks of frame_size minus the kernel's headroom each (a daemon
 * or kernel without multi-buffer gives 1); on TX, a buffer of tx_frags chunks less the metadata room
 * before each descriptor (xdp_tx_descs).
 * vd_nic_max_payload follows from it, so the engines size their segments to what can really pass.
 */
static uint32_t xdp_max_frame(const struct xdp_nic *x, const struct vd_ctl_ep_open_rep *r)
{
	uint32_t l2 = r->mtu + VD_ETH_HLEN;
	uint32_t rx = x->max_frags * (x->frame_size - XDP_RX_HEADROOM);
	uint32_t tx = x->frame_size - x->tx_off + (x->tx_frags - 1) * (x->frame_size - x->tx_gap);
	if (l2 > rx)
		l2 = rx;
	return l2 < tx ? l2 : tx;
}

/* Multi-buffer state: bounce buffers for RX chains, per-buffer pending descriptors for TX. */
static int xdp_setup_frags(struct xdp_nic *x)
{
	if (x->tx_frags > 1) {
		x->tx_pending = vd__shm_calloc(x->heap, x->tx_bufs, 1);
		if (!x->tx_pending)
			return -ENOMEM;
	}
	if (x->max_frags <= 1 || !x->direct)
		return 0; /* chains only come through the XSK's RX ring; the steering ring's are contiguous */
	uint32_t size = vd__rx_bounce_size(x->max_frags, x->frame_size, XDP_RX_HEADROOM);
	uint8_t *bounce = vd__shm_calloc(x->heap, XDP_BOUNCE_N, size);
	uint32_t *free_ix = vd__shm_calloc(x->heap, XDP_BOUNCE_N, sizeof(uint32_t));
	if (!bounce || !free_ix) {
		vd__shm_free(x->heap, bounce);
		vd__shm_free(x->heap, free_ix);
		return -ENOMEM;
	}
	vd__rx_chains_init(&x->chains, bounce, size, free_ix, XDP_BOUNCE_N);
	return 0;
}

static int xdp_map_rings(struct xdp_nic *x, const struct vd_ctl_ep_open_rep *r)
{
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	int err;
	if (getsockopt(x->xsk_fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0)
		return -errno;
	if (x->direct) {
		err = xdp_mmap(&x->m_rx, off.rx.desc + (size_t)r->rx_ring * sizeof(struct xdp_desc),
			       PROT_READ | PROT_WRITE, x->xsk_fd, XDP_PGOFF_RX_RING);
		if (err)
			return err;
		vd__xsk_ring_init(&x->rx, x->m_rx.addr, &off.rx, r->rx_ring);
	}
	err = xdp_mmap(&x->m_tx, off.tx.desc + (size_t)r->tx_ring * sizeof(struct xdp_desc),
		       PROT_READ | PROT_WRITE, x->xsk_fd, XDP_PGOFF_TX_RING);
	if (err)
		return err;
	vd__xsk_ring_init(&x->tx, x->m_tx.addr, &off.tx, r->tx_ring);
	err = xdp_mmap(&x->m_fill, off.fr.desc + (size_t)r->fill_ring * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		       x->xsk_fd, XDP_UMEM_PGOFF_FILL_RING);
	if (err)
		return err;
	vd__xsk_ring_init(&x->fill, x->m_fill.addr, &off.fr, r->fill_ring);
	err = xdp_mmap(&x->m_comp, off.cr.desc + (size_t)r->comp_ring * sizeof(uint64_t),
		       PROT_READ | PROT_WRITE, x->xsk_fd, XDP_UMEM_PGOFF_COMPLETION_RING);
	if (err)
		return err;
	vd__xsk_ring_init(&x->comp, x->m_comp.addr, &off.cr, r->comp_ring);
	return 0;
}

/* Maps the ringbuf: consumer page read-write at 0; producer page and the twice-mapped data read-only. */
static int xdp_map_steer(struct xdp_nic *x, uint32_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	int err = xdp_mmap(&x->m_cons, (size_t)page, PROT_READ | PROT_WRITE, x->ring_fd, 0);
	if (err)
		return err;
	err = xdp_mmap_as(&x->m_prod, (size_t)page + 2 * (size_t)size, PROT_READ, x->ring_fd, page, XDP_MAP_LAZY);
	if (err)
		return err;
	vd__steer_ring_init(&x->steer, x->m_cons.addr, x->m_prod.addr, (uint64_t)page, size);
	x->has_steer = true;
	return 0;
}

static int xdp_setup(struct xdp_nic *x, const struct vd_ctl_ep_open_rep *r)
{
	int err;
	x->direct = r->rx_mode == VD_CTL_RX_DIRECT;
	x->frame_size = r->frame_size;
	x->umem_frames = r->umem_frames;
	x->rx_frames = x->direct ? r->rx_frames : 0;
	x->umem_size = (uint64_t)r->umem_frames * r->frame_size;
	x->ifindex = r->ifindex;
	x->ep_id = r->ep_id;
	x->nic.local.ip = r->ip_be;
	x->nic.local.port = r->port_be;
	x->nic.layer = x->l3 ? VD_NIC_LAYER_IPV4 : VD_NIC_LAYER_UDP;
	x->max_frags = r->max_frags ? r->max_frags : 1;
	x->tx_frags = r->tx_frags ? r->tx_frags : 1;
	x->tx_bufs = (x->umem_frames - x->rx_frames) / x->tx_frags;
	x->nic.rx_mode = x->direct ? VD_RX_DIRECT : VD_RX_STEERED;
	/* Offloading the UDP checksum saves summing every byte sent (about 0.1 us per 1.5 KB frame here); a
	 * veth never completes it, and receivers accept that form (see vd__frame_parse_udp). */
	x->tx_csum_offload = (r->tx_offloads & VD_CTL_TXO_CSUM) && r->tx_meta_len >= sizeof(struct xdp_tx_meta) &&
			     r->tx_meta_len <= XDP_TX_PKT_OFF;
	x->tx_off = x->tx_csum_offload ? XDP_TX_PKT_OFF : 0;
	x->tx_gap = r->tx_meta_len; /* registered for the whole UMEM, whether a descriptor uses it or not */
	x->tx_hdr = x->l3 ? VD_ETH_HLEN : VD_FRAME_HDR_LEN;
	/* IPv4 layer: the IP MTU (as far as the UMEM carries it); UDP layer: that minus IPv4 and UDP headers. */
	x->nic.max_payload = xdp_max_frame(x, r) - x->tx_hdr;
	x->tx_cap = x->nic.max_payload;
	memcpy(x->tmpl.src_mac, r->mac, 6);
	x->tmpl.src_ip_be = r->ip_be;
	x->tmpl.src_port_be = r->port_be;
	x->tap_max = x->tap_fd >= 0 ? r->tap_tx_max : 0;

	err = xdp_mmap_as(&x->m_umem, x->umem_size, PROT_READ | PROT_WRITE, x->umem_fd, 0, XDP_MAP_LAZY);
	if (err)
		return err;
	x->umem = x->m_umem.addr;
	if ((err = xdp_map_rings(x, r)))
		return err;
	if (x->ring_fd >= 0 && r->steer_ring_bytes && (err = xdp_map_steer(x, r->steer_ring_bytes)))
		return err;
	if ((err = xdp_mmap(&x->m_stats, r->stats_bytes, PROT_READ | PROT_WRITE, x->stats_fd, 0)))
		return err;
	x->shared = x->m_stats.addr;

	/* TX buffers on the free stack, RX frames on the fill ring (the stash holds what does not fit). */
	x->tx_free = vd__shm_calloc(x->heap, x->tx_bufs, sizeof(uint64_t));
	x->fill_stash = vd__shm_calloc(x->heap, x->rx_frames ? x->rx_frames : 1, sizeof(uint64_t));
	if (!x->tx_free || !x->fill_stash)
		return -ENOMEM;
	if ((err = xdp_setup_frags(x)))
		return err;
	for (uint32_t i = x->tx_bufs; i > 0; i--)
		x->tx_free[x->tx_free_n++] = ((uint64_t)x->rx_frames + (uint64_t)(i - 1) * x->tx_frags) * x->frame_size;
	for (uint32_t i = x->rx_frames; i > 0; i--)
		x->fill_stash[x->fill_stash_n++] = (uint64_t)(i - 1) * x->frame_size;
	x->fill_depth = x->rx_frames < XDP_FILL_MIN ? x->rx_frames : XDP_FILL_MIN;
	xdp_refill(x);

	/* One fd to wait on: the steering ring (data available) now, the XSK (RX ring non-empty) only while
	 * armed by wait(), see xdp_arm_xsk. */
	x->nic.fd = epoll_create1(EPOLL_CLOEXEC);
	if (x->nic.fd < 0)
		return -errno;
	if (x->has_steer) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = x->ring_fd };
		if (epoll_ctl(x->nic.fd, EPOLL_CTL_ADD, x->ring_fd, &ev) < 0)
			return -errno;
	}
	return 0;
}

/* ---- ports (EP_PORT_ADD / EP_PORT_DEL, EP_PORTS_ADD / EP_PORTS_DEL) -------------------------------------- */

/*
 * A connect-heavy process (an HTTP client, `viaduct perf conn-client`) took an ephemeral port per
 * connection and gave it back with a hold when the connection ended in TIME-WAIT: two synchronous daemon
 * round trips (about 25 + 20 us) in a connection that costs the kernel about 25 us in all. So:
 * - ephemeral ports come in batches (EP_PORTS_ADD): the unused ones wait in x->spare, and most
 *   vd_nic_port_add(0) calls take one without asking the daemon. The next batch is asked for ahead, once
 *   fewer than a batch are left (from the third batch on), and its reply read when it has come (vd__ctl_wait without waiting), so
 *   the daemon's work (a kernel socket per port: about 10 us each) overlaps the connections instead of
 *   stalling one of them. A batch starts at XDP_BATCH_MIN ports and doubles up to XDP_BATCH_MAX, so a
 *   process that opens one connection reserves a few ports, not dozens. Spares go back when the nic
 *   closes; should the process die first, viaductd holds them for TIME-WAIT with its other ephemeral
 *   ports (it cannot tell they were never used), at most XDP_SPARE_MAX of them.
 * - a port given back with a hold (TIME-WAIT handed to viaductd) is sent as a quiet EP_PORTS_DEL: no
 *   reply unless it failed, and no wait for it. The daemon serves a connection's requests in order, so
 *   whatever this process asks later sees the hold in place; error replies are skipped and counted by
 *   vd__ctl_wait / vd__ctl_drain (vd__ctl_async_failed). A failed hold leaves the port the endpoint's,
 *   which viaductd holds when the endpoint goes.
 * - and holds are gathered: one message for up to XDP_HOLD_GATHER ports, sent when that many are waiting,
 *   when the oldest has waited XDP_HOLD_WAIT_NS (checked at each flush, i.e. each progress pass), before
 *   the process sleeps in xdp_wait, before any other request to viaductd and at close. A connect+close loop otherwise woke the daemon once per
 *   connection, and on a small host that wake-up takes the CPU from the client or its server (the
 *   connect+close p99). Each wake-up still costs the connection it preempts about 1-2 us per port in
 *   the messages (measured: 60-140 us for 64 + 64), so they are few: batches of up to 64 ports
 *   (XDP_SPARE_MAX keeps the next asked for a whole batch ahead: its reply is not waited for), and up
 *   to 64 holds, which leave with the next batch request (a full gather leaves only when a 65th hold
 *   comes): one wake-up per 64 connections of a connect+close loop instead of two per 32. Two
 *   messages of each per wake-up (128 connections) halved the wake-ups but doubled each stall to
 *   250-300 us, which a 3000-connection p99 still catches with a few scheduling hiccups: not kept. Until the message goes the port is still steered here, so the nic drops its
 *   frames itself (xdp_accept_l3), as viaductd's hold will: the hold holds from the call on, as nic.h
 *   says. A process that dies first leaves its ephemeral ports to viaductd, which holds them anyway.
 * Ports given back without a hold stay synchronous: the caller may expect the port free (for a kernel
 * socket) on return. Every synchronous call first collects an outstanding batch, whose reply it would
 * otherwise skip.
 */
#define XDP_BATCH_MIN 4u
#define XDP_BATCH_MAX VD_CTL_PORTS_BATCH_MAX
#define XDP_DRAIN_EVERY 32u   /* quiet requests between two non-blocking reads of their error replies */

static unsigned proto_ix(int proto)
{
	return proto == IPPROTO_TCP ? 0 : 1;
}

/* The reply to an EP_PORTS_ADD: its ports into the spares. -EBADMSG from a daemon that predates it. */
static void xdp_refill_take(struct xdp_nic *x, int err, const struct vd_ctl_reply *rep)
{
	unsigned ix = proto_ix(x->refill_proto);

	x->refill_seq = 0;
	for (unsigned i = 0; i < rep->nfds; i++) /* none expected */
		close(rep->fds[i]);
	if (err == -EBADMSG)
		x->no_batch = true;
	if (err)
		return;
	const struct vd_ctl_ep_ports_rep *r = rep->payload; /* vd__ctl_check: count in 1..the maximum */
	for (unsigned i = 0; i < r->count && x->n_spare[ix] < XDP_SPARE_MAX; i++)
		x->spare[ix][x->n_spare[ix]++] = r->port_be[i];
	if (x->batch[ix] < XDP_BATCH_MAX)
		x->batch[ix] *= 2;
	x->batches[ix]++;
}

/* Reads the outstanding EP_PORTS_ADD's reply if it has come (timeout_ms 0) or waits for it. */
static void xdp_refill_collect(struct xdp_nic *x, int timeout_ms)
{
	char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_ep_ports_rep) + VD_CTL_REASON_MAX];
	struct vd_ctl_reply rep;

	if (!x->refill_seq)
		return;
	int err = vd__ctl_wait(x->ctl_fd, x->refill_seq, VD_CTL_EP_PORTS_ADD, buf, sizeof(buf), &rep, timeout_ms);
	if (err == -EAGAIN && timeout_ms == 0)
		return;
	xdp_refill_take(x, err, &rep);
}

/* Asks for the next batch of proto's ports without waiting (one batch outstanding at a time). */
static int xdp_refill_send(struct xdp_nic *x, int proto)
{
	struct vd_ctl_ep_ports_req req = { .ep_id = x->ep_id, .proto = (uint8_t)proto };

	unsigned ix = proto_ix(proto);
	xdp_holds_send_all(x); /* the daemon wakes for this request anyway */
	if (x->batch[ix] < XDP_BATCH_MIN)
		x->batch[ix] = XDP_BATCH_MIN;
	req.count = (uint16_t)x->batch[ix];
	int err = vd__ctl_request(x->ctl_fd, VD_CTL_EP_PORTS_ADD, &req, sizeof(req), &x->refill_seq);
	if (err)
		x->refill_seq = 0;
	else
		x->refill_proto = proto;
	return err;
}

static int xdp_port_call(struct xdp_nic *x, uint16_t type, int proto, uint16_t port_be, uint32_t hold_ms,
			 uint16_t *got_be)
{
	struct vd_ctl_ep_port_req req = {
		.ep_id = x->ep_id, .port_be = port_be, .proto = (uint8_t)proto, .hold_ms = hold_ms,
	};
	char buf[sizeof(struct vd_ctl_hdr) + VD_CTL_REASON_MAX + 64];
	struct vd_ctl_reply rep;
	xdp_holds_send_all(x); /* served before this request, as if sent at their calls */
	xdp_refill_collect(x, XDP_CTL_TIMEOUT_MS);
	int err = vd__ctl_call(x->ctl_fd, type, &req, sizeof(req), buf, sizeof(buf), &rep, XDP_CTL_TIMEOUT_MS);
	for (unsigned i = 0; i < rep.nfds; i++) /* none expected */
		close(rep.fds[i]);
	if (err < 0 || !got_be)
		return err;
	if (rep.payload_len < sizeof(struct vd_ctl_port_rep))
		return -EBADMSG;
	*got_be = ((const struct vd_ctl_port_rep *)rep.payload)->port_be;
	return 0;
}

/* Sends a quiet EP_PORTS_DEL of n ports (1..VD_CTL_PORTS_BATCH_MAX) and goes on. */
static int xdp_ports_del_quiet(struct xdp_nic *x, int proto, const uint16_t *ports, unsigned n, uint32_t hold_ms)
{
	struct vd_ctl_ep_ports_req req = {
		.ep_id = x->ep_id, .proto = (uint8_t)proto, .flags = VD_CTL_PORTS_QUIET, .count = (uint16_t)n,
		.hold_ms = hold_ms,
	};
	memcpy(req.port_be, ports, n * sizeof(ports[0]));
	/* Error replies, if any, must not pile up in the socket: read those already here now and then
	 * (through the outstanding batch's reply when there is one, which a drain would skip). */
	if (++x->quiet_sent % XDP_DRAIN_EVERY == 0) {
		if (x->refill_seq)
			xdp_refill_collect(x, 0);
		else
			(void)vd__ctl_drain(x->ctl_fd);
	}
	return vd__ctl_send(x->ctl_fd, VD_CTL_EP_PORTS_DEL, &req, sizeof(req));
}

/* The gathered holds of protocol index ix leave in quiet EP_PORTS_DELs of up to VD_CTL_PORTS_BATCH_MAX ports
 * (one message with XDP_HOLD_GATHER as it is). A send that fails leaves the ports
 * the endpoint's, which viaductd holds when it goes (as for a refused hold). */
static void xdp_holds_send(struct xdp_nic *x, unsigned ix)
{
	for (unsigned i = 0; i < x->n_held[ix]; i += VD_CTL_PORTS_BATCH_MAX) {
		unsigned n = x->n_held[ix] - i;
		(void)xdp_ports_del_quiet(x, ix == 0 ? IPPROTO_TCP : IPPROTO_UDP, x->held[ix] + i,
					  n < VD_CTL_PORTS_BATCH_MAX ? n : VD_CTL_PORTS_BATCH_MAX, x->held_ms[ix]);
	}
	x->n_held[ix] = 0;
}

static void xdp_holds_send_all(struct xdp_nic *x)
{
	xdp_holds_send(x, 0);
	xdp_holds_send(x, 1);
}

/* From xdp_flush, while holds are gathered: those that waited XDP_HOLD_WAIT_NS leave. */
static void xdp_holds_age(struct xdp_nic *x)
{
	uint64_t now = vd__mono_ns();
	for (unsigned ix = 0; ix < 2; ix++)
		if (x->n_held[ix] && now - x->held_since[ix] >= XDP_HOLD_WAIT_NS)
			xdp_holds_send(x, ix);
}

/* At close: the unused spares go back at once (a hold would keep ports no connection ever used). */
static void xdp_spares_free(struct xdp_nic *x)
{
	if (x->ctl_fd >= 0) {
		xdp_holds_send_all(x);
		xdp_refill_collect(x, XDP_CTL_TIMEOUT_MS);
	}
	for (unsigned ix = 0; ix < 2 && x->ctl_fd >= 0; ix++) {
		/* up to two batches: one message per VD_CTL_PORTS_BATCH_MAX */
		for (unsigned i = 0; i < x->n_spare[ix]; i += VD_CTL_PORTS_BATCH_MAX) {
			unsigned n = x->n_spare[ix] - i;
			(void)xdp_ports_del_quiet(x, ix == 0 ? IPPROTO_TCP : IPPROTO_UDP, x->spare[ix] + i,
						  n < VD_CTL_PORTS_BATCH_MAX ? n : VD_CTL_PORTS_BATCH_MAX, 0);
		}
		x->n_spare[ix] = 0;
	}
}

/* An ephemeral port from the spares (refilled as described above); -EBADMSG: no batches, old daemon. */
static int xdp_port_spare(struct xdp_nic *x, int proto, uint16_t *port_be)
{
	unsigned ix = proto_ix(proto);

	xdp_refill_collect(x, 0);
	if (!x->n_spare[ix]) {
		if (x->refill_seq && x->refill_proto != proto)
			xdp_refill_collect(x, XDP_CTL_TIMEOUT_MS); /* the other protocol's: one at a time */
		if (!x->refill_seq && !x->no_batch) {
			int err = xdp_refill_send(x, proto);
			if (err)
				return err;
		}
		/* refill_seq may be 0 here: vd__ctl_request failed above, or no_batch came from a collect */
		char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_ep_ports_rep) + VD_CTL_REASON_MAX];
		struct vd_ctl_reply rep;
		if (x->refill_seq) {
			int err = vd__ctl_wait(x->ctl_fd, x->refill_seq, VD_CTL_EP_PORTS_ADD, buf, sizeof(buf), &rep,
					       XDP_CTL_TIMEOUT_MS);
			xdp_refill_take(x, err, &rep);
			if (err && err != -EBADMSG)
				return err;
		}
		if (!x->n_spare[ix])
			return -EBADMSG;
	}
	*port_be = x->spare[ix][--x->n_spare[ix]];
	/* Fewer spares than a batch: ask for the next one now, so that it comes long before they run out
	 * (the daemon takes about 10 us a port; a whole batch of connections' time is ample). Only once two
	 * batches went, so that a process that opens a connection or two reserves a few ports only. */
	if (!x->refill_seq && !x->no_batch && x->batches[ix] >= 2 && x->n_spare[ix] < x->batch[ix] &&
	    x->n_spare[ix] + x->batch[ix] <= XDP_SPARE_MAX)
		(void)xdp_refill_send(x, proto);
	return 0;
}

/* Only the IPv4 layer receives TCP, or UDP for more than its own port: the UDP layer parses its own. */
static int xdp_port_add(struct vd_nic *nic, int proto, uint16_t *port_be)
{
	struct xdp_nic *x = xdp_of(nic);
	if (!x->l3)
		return -EOPNOTSUPP;
	if (*port_be == 0 && !x->no_batch) {
		int err = xdp_port_spare(x, proto, port_be);
		if (err != -EBADMSG)
			return err;
	}
	uint16_t got = 0;
	int err = xdp_port_call(x, VD_CTL_EP_PORT_ADD, proto, *port_be, 0, &got);
	if (err == 0)
		*port_be = got;
	return err;
}

static int xdp_port_del(struct vd_nic *nic, int proto, uint16_t port_be, uint32_t hold_ms)
{
	struct xdp_nic *x = xdp_of(nic);
	if (!x->l3)
		return -EOPNOTSUPP;
	if (hold_ms > VD_CTL_HOLD_MAX_MS)
		hold_ms = VD_CTL_HOLD_MAX_MS; /* the daemon's bound (protocol: larger is malformed) */
	/* Quiet only to a daemon known to have EP_PORTS_DEL (it answered an EP_PORTS_ADD): an older one
	 * would refuse it, and the hold would be lost. */
	if (hold_ms && !x->no_batch && x->batches[0] + x->batches[1]) {
		unsigned ix = proto_ix(proto);
		if (x->n_held[ix] && x->held_ms[ix] != hold_ms)
			xdp_holds_send(x, ix); /* one hold_ms per message */
		/* Full: the gathered ones leave now, before this one (not after it: the next batch request,
		 * which takes the holds along, then finds a full message and the daemon wakes once). */
		if (x->n_held[ix] == XDP_HOLD_GATHER)
			xdp_holds_send(x, ix);
		if (!x->n_held[ix]) {
			x->held_ms[ix] = hold_ms;
			x->held_since[ix] = vd__mono_ns();
		}
		x->held[ix][x->n_held[ix]++] = port_be;
		return 0;
	}
	return xdp_port_call(x, VD_CTL_EP_PORT_DEL, proto, port_be, hold_ms, NULL);
}

static const struct vd_nic_ops xdp_ops = {
	.name = "xdp",
	.rx_burst = xdp_rx_burst,
	.rx_release = xdp_rx_release,
	.tx_alloc = xdp_tx_alloc,
	.tx_burst = xdp_tx_burst,
	.tx_abort = xdp_tx_abort,
	.flush = xdp_flush,
	.wait = xdp_wait,
	.now_ns = xdp_now_ns,
	.close = xdp_close,
	.port_add = xdp_port_add,
	.tx_pieces = xdp_tx_pieces,
	.tx_lend = xdp_tx_lend,
	.tx_unlend = xdp_tx_unlend,
	.tx_busy = xdp_tx_busy,
	.tx_attach = xdp_tx_attach,
	.port_del = xdp_port_del,
};

struct vd_ctl_ep_shared *vd__nic_shared(struct vd_nic *nic)
{
	return nic && nic->ops == &xdp_ops ? xdp_of(nic)->shared : NULL;
}

static int xdp_build_req(const struct vd_nic_opts *o, struct vd_ctl_ep_open_req *req)
{
	memset(req, 0, sizeof(*req));
	if (o->ifname) {
		if (strlen(o->ifname) >= sizeof(req->ifname))
			return -ENAMETOOLONG;
		strcpy(req->ifname, o->ifname);
	}
	if (o->local) {
		struct vd_addr a;
		char withport[64];
		const char *text = o->local;
		if (o->layer == VD_NIC_LAYER_IPV4 && !strchr(text, ':')) {
			/* The IPv4 layer may name only an address: "IP" stands for "IP:0". */
			if (snprintf(withport, sizeof(withport), "%s:0", text) >= (int)sizeof(withport))
				return -EINVAL;
			text = withport;
		}
		int err = vd_addr_parse(text, &a);
		if (err < 0)
			return err;
		req->ip_be = a.ip;
		req->port_be = a.port;
	}
	if (o->rx_mode != VD_RX_AUTO && o->rx_mode != VD_RX_DIRECT && o->rx_mode != VD_RX_STEERED)
		return -EINVAL;
	req->rx_mode = (uint8_t)o->rx_mode; /* same values as enum vd_ctl_rx_mode */
	req->queue = o->queue;
	req->ring_frames = o->ring_frames;
	req->steer_ring_bytes = o->steer_ring_bytes;
	return 0;
}

int vd__nic_xdp_open(struct vd_nic **out, const struct vd_nic_opts *opts)
{
	return vd__nic_xdp_open_heap(out, opts, NULL);
}

/* Everything the nic writes lives in heap (and the rings, UMEM and stats page are MAP_SHARED mappings of
 * the daemon's descriptors), so a fork child of the opener can drive the endpoint under the stack's lock. */
int vd__nic_xdp_open_heap(struct vd_nic **out, const struct vd_nic_opts *opts, struct vd__shmheap *heap)
{
	struct vd_ctl_ep_open_req req;
	int err = xdp_build_req(opts, &req);
	if (err < 0)
		return err;
	struct xdp_nic *x = vd__shm_calloc(heap, 1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->heap = heap;
	x->nic.ops = &xdp_ops;
	x->l3 = opts->layer == VD_NIC_LAYER_IPV4;
	x->nic.fd = x->umem_fd = x->xsk_fd = x->ring_fd = x->stats_fd = x->tap_fd = -1;
	vd__neigh_init(&x->neigh);

	x->ctl_fd = vd__ctl_connect(opts->ctl_path);
	if (x->ctl_fd < 0) {
		err = x->ctl_fd;
		x->ctl_fd = -1;
		goto fail;
	}
	char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_ep_open_rep) + VD_CTL_REASON_MAX + 64];
	struct vd_ctl_reply rep;
	err = vd__ctl_call(x->ctl_fd, VD_CTL_EP_OPEN, &req, sizeof(req), buf, sizeof(buf), &rep,
			   XDP_CTL_TIMEOUT_MS);
	/* Take ownership of whatever arrived before judging the reply, so every path closes it (on a
	 * transport failure vd__ctl_call has closed them and nfds is 0). */
	int *slots[] = { &x->umem_fd, &x->xsk_fd, &x->ring_fd, &x->stats_fd, &x->tap_fd };
	_Static_assert(sizeof(slots) / sizeof(slots[0]) == VD_CTL_MAX_FDS, "a slot for every descriptor");
	for (unsigned i = 0; i < rep.nfds && i < VD_CTL_MAX_FDS; i++)
		*slots[i] = rep.fds[i];
	if (err < 0)
		goto fail;
	const struct vd_ctl_ep_open_rep *r = rep.payload;
	if (rep.payload_len < sizeof(*r) || rep.nfds < 4 || x->umem_fd < 0 || x->xsk_fd < 0 || x->stats_fd < 0) {
		err = -EPROTO;
		goto fail;
	}
	if ((err = xdp_check_reply(r)) || (err = xdp_setup(x, r)))
		goto fail;
	xdp_mirror_stats(x);
	*out = &x->nic;
	return 0;
fail:
	xdp_close(&x->nic);
	return err;
}
