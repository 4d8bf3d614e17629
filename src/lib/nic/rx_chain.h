/* SPDX-License-Identifier: MIT */
/*
 * Checking RX descriptors and gathering multi-buffer frames from an AF_XDP RX ring (af_xdp.rst "Multi-Buffer
 * Support"): a frame larger than a UMEM chunk arrives as consecutive descriptors, XDP_PKT_CONTD on all but
 * the last, each chunk's data after the kernel's headroom, so the pieces are not contiguous. They are copied
 * into a bounce buffer and the chunks go back towards the fill ring at once (nic_xdp.c's top comment).
 * Kept apart from nic_xdp.c, header-only, so a unit test drives it over an in-memory ring and UMEM
 * (tests/unit/test_rx_chain.c): nothing here touches a socket.
 *
 * What is malformed (counted once in rx_malformed, the whole chain discarded to its end, which may come in
 * a later burst): a descriptor whose data leaves its chunk or lies outside the RX chunks, a chain of more
 * than max_frags descriptors, or of more bytes than a bounce buffer holds. No bounce buffer free (the caller
 * holds them all): the frame is dropped (rx_dropped and nobounce), like a full ring. Either way every RX
 * chunk of the chain goes back to the fill stash; a descriptor outside the RX chunks cannot come from the
 * kernel and is never recycled (those chunks are not ours to give: TX buffers or beyond the UMEM).
 * The kernel publishes a packet's descriptors together (net/xdp/xsk.c reserves room for all of them, then
 * one producer store), so a chain whose end is not published yet is left in the ring for the next burst.
 */
#ifndef VD_NIC_RX_CHAIN_H
#define VD_NIC_RX_CHAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <viaduct/nic.h>
#include "xsk_ring.h"

/* Multi-buffer AF_XDP (Linux 6.6): newer than Debian 12's uapi header. A descriptor with XDP_PKT_CONTD is
 * followed by more of the same packet. */
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1u << 0)
#endif

/* The nic's RX geometry and fill stash, lent for one call. */
struct vd__rx_view {
	const uint8_t *umem;
	uint32_t frame_size; /* chunk size, a power of two */
	uint32_t rx_frames;  /* chunks [0, rx_frames) circulate fill ring -> RX ring -> caller -> stash */
	uint32_t max_frags;  /* descriptors one frame may span */
	uint64_t *stash;     /* chunks on their way back to the fill ring, room for rx_frames */
	uint32_t *stash_n;
};

/* Chain state kept by the nic between bursts: the bounce buffers and the discarding of a bad chain. */
struct vd__rx_chains {
	bool skip;           /* discarding the rest of a malformed or dropped chain */
	uint8_t *bounce;     /* bounce_n buffers of bounce_size bytes */
	uint32_t bounce_size;
	uint32_t bounce_n;
	uint32_t *bounce_free; /* stack of free bounce buffer indices */
	uint32_t bounce_free_n;
	uint64_t nobounce;   /* frames dropped because every bounce buffer was lent out */
};

/* Bytes a bounce buffer needs: max_frags chunks' data after the headroom, cache-line rounded. */
static inline uint32_t vd__rx_bounce_size(uint32_t max_frags, uint32_t frame_size, uint32_t headroom)
{
	return (max_frags * (frame_size - headroom) + 63) & ~63u;
}

/* Starts c with n buffers at bounce (n * size bytes) and an index stack free (n entries), all free. */
static inline void vd__rx_chains_init(struct vd__rx_chains *c, uint8_t *bounce, uint32_t size, uint32_t *free_ix,
				      uint32_t n)
{
	c->skip = false;
	c->bounce = bounce;
	c->bounce_size = size;
	c->bounce_n = n;
	c->bounce_free = free_ix;
	c->bounce_free_n = 0;
	c->nobounce = 0;
	for (uint32_t i = n; i > 0; i--) /* index 0 on top */
		free_ix[c->bounce_free_n++] = i - 1;
}

static inline uint8_t *vd__rx_bounce_buf(const struct vd__rx_chains *c, uint32_t b)
{
	return c->bounce + (size_t)b * c->bounce_size;
}

/* A bounce buffer comes back (rx_release, or its frame was refused). Out-of-range or surplus indices are
 * ignored rather than corrupting the stack. */
static inline void vd__rx_bounce_put(struct vd__rx_chains *c, uint32_t b)
{
	if (b < c->bounce_n && c->bounce_free_n < c->bounce_n)
		c->bounce_free[c->bounce_free_n++] = b;
}

/*
 * Whether a descriptor's data lies inside one RX chunk. Aligned-mode UMEM (no unaligned chunk flag): the
 * kernel never gives a descriptor that crosses its chunk; one that does would read the next chunk, which the
 * kernel may be writing. Written without addr + len, which a hostile addr could wrap.
 */
static inline bool vd__rx_desc_ok(uint64_t addr, uint32_t len, uint32_t frame_size, uint32_t rx_frames)
{
	uint64_t off = addr & (uint64_t)(frame_size - 1);
	return addr - off < (uint64_t)rx_frames * frame_size && off + len <= frame_size;
}

/* An RX chunk goes back towards the fill ring (not beyond the RX chunks). Returns whether it did. */
static inline bool vd__rx_recycle(const struct vd__rx_view *v, uint64_t addr)
{
	uint64_t base = addr & ~(uint64_t)(v->frame_size - 1);
	if (base >= (uint64_t)v->rx_frames * v->frame_size || *v->stash_n >= v->rx_frames)
		return false;
	v->stash[(*v->stash_n)++] = base;
	return true;
}

/*
 * Discards descriptors from idx on while c->skip, up to end (exclusive): each chunk is recycled; skip
 * clears at the chain's last descriptor (no XDP_PKT_CONTD). Returns descriptors consumed.
 */
static inline uint32_t vd__rx_chain_skip(struct vd__rx_chains *c, const struct vd__xsk_ring *rx,
					 const struct vd__rx_view *v, uint32_t idx, uint32_t end)
{
	uint32_t j = idx;
	while (c->skip && j != end) {
		const struct xdp_desc *d = vd__xsk_ring_desc(rx, j++);
		vd__rx_recycle(v, d->addr);
		c->skip = (d->options & XDP_PKT_CONTD) != 0;
	}
	return j - idx;
}

#define VD__RX_NO_FRAME UINT32_MAX

/*
 * The RX descriptor at idx carries XDP_PKT_CONTD, or c->skip is set: finds the chain's last descriptor
 * (loading the producer index afresh once if it is not published yet), checks every piece, and copies the
 * frame into a bounce buffer, recycling the chunks. Returns descriptors consumed (rx->cached_cons is moved
 * past them, the caller publishes it), 0 if the chain is not complete yet (nothing taken). *b: the bounce
 * buffer holding the frame, *len its length; *b == VD__RX_NO_FRAME when the chain gave no frame
 * (malformed: st->rx_malformed; no bounce buffer: st->rx_dropped and c->nobounce; or discarded).
 */
static inline uint32_t vd__rx_chain_take(struct vd__rx_chains *c, struct vd__xsk_ring *rx, const struct vd__rx_view *v,
					 uint32_t idx, struct vd_nic_stats *st, uint32_t *b, uint32_t *len)
{
	uint32_t j = idx, total = 0;
	bool bad = false, ended = false;
	*b = VD__RX_NO_FRAME;
	*len = 0;
	if (c->skip)
		goto consume;
	/* Find the end, checking each piece: [idx, j) walked. At the last known descriptor, the producer
	 * index is loaded afresh (asking for one more than known forces the acquire load). */
	while (!ended) {
		if (j == rx->cached_prod) {
			(void)vd__xsk_cons_avail(rx, j - rx->cached_cons + 1);
			if (j == rx->cached_prod)
				break;
		}
		const struct xdp_desc *d = vd__xsk_ring_desc(rx, j++);
		ended = !(d->options & XDP_PKT_CONTD);
		if (!vd__rx_desc_ok(d->addr, d->len, v->frame_size, v->rx_frames) || j - idx > v->max_frags ||
		    d->len > c->bounce_size - total) {
			bad = true;
			break;
		}
		total += d->len;
	}
	if (bad) {
		st->rx_malformed++;
		c->skip = true;
		j = idx; /* the whole chain, from its first descriptor, is discarded */
		goto consume;
	}
	if (!ended)
		return 0; /* published together by the kernel: the rest is coming */
	if (c->bounce_free_n == 0) {
		c->nobounce++; /* the caller holds every bounce buffer: the frame is lost, like a full ring */
		st->rx_dropped++;
		c->skip = true;
		j = idx;
		goto consume;
	}
	uint32_t bi = c->bounce_free[--c->bounce_free_n];
	uint8_t *buf = vd__rx_bounce_buf(c, bi);
	uint32_t off = 0;
	for (uint32_t k = idx; k != j; k++) {
		const struct xdp_desc *d = vd__xsk_ring_desc(rx, k);
		memcpy(buf + off, v->umem + d->addr, d->len);
		off += d->len;
		vd__rx_recycle(v, d->addr);
	}
	*b = bi;
	*len = total;
	goto taken;
consume:
	j += vd__rx_chain_skip(c, rx, v, j, rx->cached_prod);
taken:
	/* The chain may run past what the burst peeked: the consumer position covers all of it. */
	if ((int32_t)(j - rx->cached_cons) > 0)
		rx->cached_cons = j;
	return j - idx;
}

#endif /* VD_NIC_RX_CHAIN_H */
