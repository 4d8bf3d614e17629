/* SPDX-License-Identifier: MIT */
/*
 * Inline accessors for the four rings of an AF_XDP socket (Documentation/networking/af_xdp.rst).
 *
 * Each ring is a single-producer / single-consumer array of 2^k slots shared with the kernel through
 * mmap: a producer index, a consumer index, a flags word and the slots. Indices are free-running u32
 * counters; slot i is at (i & mask). Who produces what:
 *
 *            producer   consumer   slot
 *   fill     us         kernel     u64 UMEM address of a frame the kernel may receive into
 *   rx       kernel     us         struct xdp_desc {addr, len, options}: a received frame
 *   tx       us         kernel     struct xdp_desc: a frame to transmit
 *   comp     kernel     us         u64 UMEM address of a transmitted frame we may reuse
 *
 *      consumer (theirs or ours)        producer
 *            v                              v
 *   ... [ filled slots, not consumed yet ] [ free slots ... ] (wraps at size)
 *
 * Memory ordering (the same contract as the kernel side, net/xdp/xsk_queue.h):
 *   - Before reading slots the other side produced, load its producer index with ACQUIRE: the slot
 *     contents it wrote before publishing are then visible to us.
 *   - After writing slots, publish our producer index with RELEASE: our slot writes become visible
 *     no later than the index.
 *   - After reading slots, publish our consumer index with RELEASE: the other side must not reuse a
 *     slot before our reads of it are done.
 *   - Before writing into slots the other side consumed, load its consumer index with ACQUIRE: its reads
 *     of those slots happened before it published.
 * Each side keeps a cached copy of the other side's index and reloads it only when the cache says there
 * is not enough, so a burst costs one shared-cache-line load at most.
 *
 * These accessors hold no locks: one thread uses a ring at a time (the nic threading rule).
 */
#ifndef VD_NIC_XSK_RING_H
#define VD_NIC_XSK_RING_H

#include <linux/if_xdp.h>
#include <stdint.h>

struct vd__xsk_ring {
	uint32_t cached_prod; /* producer rings: ours, reserved; consumer rings: last seen kernel producer */
	uint32_t cached_cons; /* consumer rings: ours, peeked;   producer rings: last seen kernel consumer */
	uint32_t mask;        /* size - 1 */
	uint32_t size;        /* slots, a power of two */
	uint32_t *producer;   /* shared indices and flags, inside the mmapped ring */
	uint32_t *consumer;
	uint32_t *flags;
	void *slots;
};

/* Points r at a ring mapped at base with the kernel's offsets (struct xdp_ring_offset). */
static inline void vd__xsk_ring_init(struct vd__xsk_ring *r, void *base, const struct xdp_ring_offset *off,
				     uint32_t size)
{
	r->producer = (uint32_t *)((char *)base + off->producer);
	r->consumer = (uint32_t *)((char *)base + off->consumer);
	r->flags = (uint32_t *)((char *)base + off->flags);
	r->slots = (char *)base + off->desc;
	r->size = size;
	r->mask = size - 1;
	/* Start from the shared state (non-zero if someone used the ring before us). ACQUIRE pairs with the
	 * other side's RELEASE publishing of its index. */
	r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
}

/* Slot accessors: address rings (fill, comp) and descriptor rings (rx, tx). */
static inline uint64_t *vd__xsk_ring_addr(const struct vd__xsk_ring *r, uint32_t idx)
{
	return &((uint64_t *)r->slots)[idx & r->mask];
}

static inline struct xdp_desc *vd__xsk_ring_desc(const struct vd__xsk_ring *r, uint32_t idx)
{
	return &((struct xdp_desc *)r->slots)[idx & r->mask];
}

/* ---- producer side (fill, tx) ----------------------------------------------------------------------- */

/* Free slots, refreshing the kernel's consumer index only if fewer than want are known free. */
static inline uint32_t vd__xsk_prod_free(struct vd__xsk_ring *r, uint32_t want)
{
	uint32_t free_slots = r->size - (r->cached_prod - r->cached_cons);
	if (free_slots >= want)
		return free_slots;
	/* ACQUIRE: the kernel finished reading the slots it consumed before publishing its consumer index,
	 * so we may overwrite them after this load. */
	r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	return r->size - (r->cached_prod - r->cached_cons);
}

/* Reserves up to n slots (fewer if the ring is fuller); *idx is the first. Returns how many. */
static inline uint32_t vd__xsk_prod_reserve(struct vd__xsk_ring *r, uint32_t n, uint32_t *idx)
{
	uint32_t free_slots = vd__xsk_prod_free(r, n);
	if (n > free_slots)
		n = free_slots;
	*idx = r->cached_prod;
	r->cached_prod += n;
	return n;
}

/* Gives back the last n reserved slots, not published yet. */
static inline void vd__xsk_prod_cancel(struct vd__xsk_ring *r, uint32_t n)
{
	r->cached_prod -= n;
}

/* Publishes every reserved slot to the kernel. */
static inline void vd__xsk_prod_submit(struct vd__xsk_ring *r)
{
	/* RELEASE: the slot contents written before this store are visible to the kernel once it sees the
	 * new producer index (pairs with its acquire load in xskq_cons_*). */
	__atomic_store_n(r->producer, r->cached_prod, __ATOMIC_RELEASE);
}

/* Slots we published that the kernel has not consumed yet (fresh load). */
static inline uint32_t vd__xsk_prod_outstanding(struct vd__xsk_ring *r)
{
	/* ACQUIRE for the same reason as in vd__xsk_prod_free: we may refill what it reports consumed. */
	r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	return __atomic_load_n(r->producer, __ATOMIC_RELAXED) - r->cached_cons; /* our own index */
}

/* ---- consumer side (rx, comp) ----------------------------------------------------------------------- */

/* Entries ready to read, refreshing the kernel's producer index only if fewer than want are known. */
static inline uint32_t vd__xsk_cons_avail(struct vd__xsk_ring *r, uint32_t want)
{
	uint32_t avail = r->cached_prod - r->cached_cons;
	if (avail >= want)
		return avail;
	/* ACQUIRE: the kernel wrote the slots before publishing its producer index; after this load our
	 * reads of those slots see its writes. */
	r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	return r->cached_prod - r->cached_cons;
}

/* Takes up to n ready entries; *idx is the first. Returns how many. They stay ours until released. */
static inline uint32_t vd__xsk_cons_peek(struct vd__xsk_ring *r, uint32_t n, uint32_t *idx)
{
	uint32_t avail = vd__xsk_cons_avail(r, n);
	if (n > avail)
		n = avail;
	*idx = r->cached_cons;
	r->cached_cons += n;
	return n;
}

/* Hands every peeked entry back to the kernel. */
static inline void vd__xsk_cons_release(struct vd__xsk_ring *r)
{
	/* RELEASE: our reads of the peeked slots complete before the kernel may see them free and reuse
	 * them (pairs with its acquire load of the consumer index when it produces). */
	__atomic_store_n(r->consumer, r->cached_cons, __ATOMIC_RELEASE);
}

/* ---- need_wakeup (XDP_USE_NEED_WAKEUP, af_xdp.rst "XDP_USE_NEED_WAKEUP bind flag") ------------------ */

/*
 * Whether the kernel asks for a syscall to make progress on this ring: sendto() for tx, recvfrom() or
 * poll() for fill. Call it after publishing. The full fence orders our producer store before the flag
 * load (store->load, which even x86 reorders): otherwise the kernel could check our producer index
 * before our store, find nothing, set the flag, and we could read the flag from before it set it - and
 * nobody would kick the ring. The kernel has the matching barrier between setting the flag and
 * re-checking the ring. Cost: one fenced instruction, small next to the syscall it guards.
 */
static inline int vd__xsk_needs_wakeup(const struct vd__xsk_ring *r)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return (__atomic_load_n(r->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP) != 0;
}

#endif /* VD_NIC_XSK_RING_H */
