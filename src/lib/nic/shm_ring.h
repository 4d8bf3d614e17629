/* SPDX-License-Identifier: MIT */
/*
 * Single-producer / single-consumer rings of fixed-size slots in memory shared by two processes on one
 * host (the same-host shared-memory channels of nic_shm.c).
 *
 * Shared layout of one ring (all offsets fixed by this header, never read from shared memory):
 *
 *   +0    u32 prod          written by the producer only   (own cache line)
 *   +64   u32 cons          written by the consumer only   (own cache line)
 *   +128  u32 need_wakeup   written by the consumer only   (own cache line: the producer reads it after every
 *                                                          publish, so it must not share a line with cons,
 *                                                          which the consumer writes on every release)
 *   +256  slots[nslots], each slot_bytes: { u32 len; u32 reserved; u8 data[slot_bytes - 8] }
 *
 * Indices are free-running u32 counters; slot i is at (i & mask). The producer fills slots [cons, cons +
 * nslots) and publishes prod; the consumer reads [cons, prod) and publishes cons as it releases slots, in
 * order. Each side keeps its own indices privately and only *writes* them to shared memory; the other
 * side's index is loaded, checked, and cached.
 *
 * The producer may reserve slots and fill them out of order (it lends them as TX buffers before it knows
 * whether the frame will go there): prod then advances over the longest prefix of filled slots. A
 * reserved slot whose frame went elsewhere is filled with the length VD__SHM_PAD, which the consumer
 * skips.
 *
 * Memory ordering (the same rules as the AF_XDP rings, xsk_ring.h):
 *   - producer: writes the slot, then stores prod with RELEASE; the consumer loads prod with ACQUIRE before
 *     reading slots, so it sees the slot contents.
 *   - consumer: reads slots, then stores cons with RELEASE; the producer loads cons with ACQUIRE before
 *     overwriting slots, so our reads are done before it reuses them.
 *   - need_wakeup (the idea of XDP_USE_NEED_WAKEUP): a consumer about to sleep stores need_wakeup = 1, then
 *     a full fence, then re-reads prod; a producer stores prod, then a full fence, then reads need_wakeup
 *     and rings the eventfd only if it is set. Both sides do store->load, which every CPU (x86 included)
 *     may reorder without a full fence; with the fences at least one side sees the other's store, so a
 *     frame is never left in the ring while the consumer sleeps (Dekker's argument).
 *
 * Trust: the other process may be buggy or hostile and may write anything into the shared memory at any
 * time. So nothing here ever dereferences an address computed from shared data without a bound:
 *   - the other side's index is accepted only if it lies within one ring of our own (else -EBADMSG: the
 *     channel is corrupt, the caller tears it down);
 *   - a slot length is read once and must be at most the slot capacity (else the frame is dropped and
 *     counted; the caller still releases the slot in order);
 *   - the geometry (nslots, slot_bytes) comes from the creator's header once, is validated against the
 *     mapping's size by the acceptor, and is kept in private memory afterwards.
 * Payload bytes can still change under a reader's feet; a reader that needs a stable copy copies.
 *
 * One thread uses a ring end at a time (the nic threading rule); no locks.
 */
#ifndef VD_NIC_SHM_RING_H
#define VD_NIC_SHM_RING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define VD__SHM_CL 64u
#define VD__SHM_CTL_BYTES 256u        /* the three index lines, padded: slots start cache-aligned */
#define VD__SHM_SLOT_HDR 8u
#define VD__SHM_MIN_SLOTS 2u
#define VD__SHM_MAX_SLOTS 4096u
#define VD__SHM_MAX_SLOT_BYTES 16384u /* payload up to 16376: more than any MTU a nic reports (9000) */
#define VD__SHM_PAD 0xffffffffu       /* slot length of a slot to skip */

struct vd__shm_ctl {
	uint32_t prod;
	uint8_t pad0[VD__SHM_CL - 4];
	uint32_t cons;
	uint8_t pad1[VD__SHM_CL - 4];
	uint32_t need_wakeup;
	uint8_t pad2[VD__SHM_CL - 4];
	uint8_t pad3[VD__SHM_CTL_BYTES - 3 * VD__SHM_CL];
};

_Static_assert(sizeof(struct vd__shm_ctl) == VD__SHM_CTL_BYTES, "ring control block layout");

/* Our private view of one ring end. */
struct vd__shm_ring {
	struct vd__shm_ctl *ctl;
	uint8_t *slots;
	uint32_t nslots, mask;
	uint32_t slot_bytes;  /* stride */
	uint32_t cap;         /* payload bytes per slot: slot_bytes - VD__SHM_SLOT_HDR */
	uint32_t head;        /* producer: next slot to reserve; consumer: next slot to read */
	uint32_t tail;        /* producer: last seen cons;        consumer: released up to here (published) */
	uint32_t seen_prod;   /* consumer: last prod seen and accepted */
	uint32_t pub;         /* producer: prod as published; slots [pub, head) are reserved */
	uint64_t *pending;    /* producer: bit (i & mask) set while reserved slot i is not filled; NULL if
	                       * slots are always filled in order (then never pending) */
};

/* Bytes one ring occupies in shared memory. Callers keep nslots and slot_bytes within the VD__SHM_ bounds,
 * so this cannot overflow a size_t. */
static inline size_t vd__shm_ring_bytes(uint32_t nslots, uint32_t slot_bytes)
{
	return VD__SHM_CTL_BYTES + (size_t)nslots * slot_bytes;
}

/* Whether a geometry is one this code accepts: power-of-two slot count, cache-line multiple stride. */
static inline int vd__shm_geometry_ok(uint32_t nslots, uint32_t slot_bytes)
{
	return nslots >= VD__SHM_MIN_SLOTS && nslots <= VD__SHM_MAX_SLOTS && (nslots & (nslots - 1)) == 0 &&
	       slot_bytes > VD__SHM_SLOT_HDR && slot_bytes <= VD__SHM_MAX_SLOT_BYTES &&
	       slot_bytes % VD__SHM_CL == 0;
}

/*
 * Attaches r to a ring at mem (vd__shm_ring_bytes() bytes, already validated). The creator zeroes the
 * memory first; an acceptor starts from whatever indices it finds there, as long as they are consistent:
 * for the end we consume, prod must lie within one ring of cons. Returns 0 or -EBADMSG.
 */
static inline int vd__shm_ring_attach(struct vd__shm_ring *r, void *mem, uint32_t nslots, uint32_t slot_bytes,
				      int producer)
{
	r->ctl = (struct vd__shm_ctl *)mem;
	r->slots = (uint8_t *)mem + VD__SHM_CTL_BYTES;
	r->nslots = nslots;
	r->mask = nslots - 1;
	r->slot_bytes = slot_bytes;
	r->cap = slot_bytes - VD__SHM_SLOT_HDR;
	/* ACQUIRE on both: pairs with whatever RELEASE stores the other side made before handing us the
	 * memory (for a fresh ring, the zeroes were written before the fd crossed the socket anyway). */
	uint32_t prod = __atomic_load_n(&r->ctl->prod, __ATOMIC_ACQUIRE);
	uint32_t cons = __atomic_load_n(&r->ctl->cons, __ATOMIC_ACQUIRE);
	if (prod - cons > nslots)
		return -EBADMSG;
	r->head = producer ? prod : cons;
	r->tail = cons;
	r->seen_prod = prod;
	r->pub = prod;
	r->pending = NULL;
	return 0;
}

static inline uint8_t *vd__shm_slot(const struct vd__shm_ring *r, uint32_t idx)
{
	return r->slots + (size_t)(idx & r->mask) * r->slot_bytes;
}

/* ---- producer ------------------------------------------------------------------------------------- */

/* Free slots: 0 when full, -EBADMSG when the consumer's index is impossible. */
static inline int vd__shm_prod_free(struct vd__shm_ring *r)
{
	uint32_t used = r->head - r->tail;
	if (used < r->nslots)
		return (int)(r->nslots - used);
	/* ACQUIRE: the consumer finished reading the slots it released before storing cons, so after this
	 * load we may overwrite them. */
	uint32_t cons = __atomic_load_n(&r->ctl->cons, __ATOMIC_ACQUIRE);
	/* cons may only move forward, up to what we published: anything else is corruption. */
	if (cons - r->tail > r->pub - r->tail)
		return -EBADMSG;
	r->tail = cons;
	return (int)(r->nslots - (r->head - r->tail));
}

/* Reserves the next slot (call only when vd__shm_prod_free() > 0); returns its index. */
static inline uint32_t vd__shm_prod_reserve(struct vd__shm_ring *r)
{
	uint32_t idx = r->head++;
	if (r->pending)
		r->pending[(idx & r->mask) / 64] |= 1ull << (idx % 64);
	return idx;
}

/* Payload area of reserved slot idx (cap bytes). */
static inline uint8_t *vd__shm_prod_data(const struct vd__shm_ring *r, uint32_t idx)
{
	return vd__shm_slot(r, idx) + VD__SHM_SLOT_HDR;
}

/* Finishes reserved slot idx: len payload bytes (at most cap) were written, or VD__SHM_PAD to have the
 * consumer skip it. Not visible before vd__shm_prod_publish(). */
static inline void vd__shm_prod_fill(struct vd__shm_ring *r, uint32_t idx, uint32_t len)
{
	uint32_t *hdr = (uint32_t *)(void *)vd__shm_slot(r, idx);
	__atomic_store_n(hdr, len, __ATOMIC_RELAXED); /* ordered by the RELEASE of the publish */
	if (r->pending)
		r->pending[(idx & r->mask) / 64] &= ~(1ull << (idx % 64));
}

/* Makes the filled prefix of the reserved slots visible to the consumer. Returns whether prod moved. */
static inline int vd__shm_prod_publish(struct vd__shm_ring *r)
{
	uint32_t p = r->pub;
	while (p != r->head && !(r->pending && (r->pending[(p & r->mask) / 64] >> (p % 64) & 1)))
		p++;
	if (p == r->pub)
		return 0;
	r->pub = p;
	/* RELEASE: the slot contents and lengths written before are visible to a consumer that loads the new
	 * prod with ACQUIRE (vd__shm_cons_avail). */
	__atomic_store_n(&r->ctl->prod, p, __ATOMIC_RELEASE);
	return 1;
}

/* After publishing: whether the consumer sleeps and needs its eventfd written. */
static inline int vd__shm_prod_need_wakeup(const struct vd__shm_ring *r)
{
	/* Full fence: orders our prod store before the need_wakeup load (store->load; see the top). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&r->ctl->need_wakeup, __ATOMIC_RELAXED) != 0;
}

/* ---- consumer ------------------------------------------------------------------------------------- */

/* Slots ready to read: >= 0, or -EBADMSG when the producer's index is impossible. */
static inline int vd__shm_cons_avail(struct vd__shm_ring *r)
{
	uint32_t avail = r->seen_prod - r->head;
	if (avail)
		return (int)avail;
	/* ACQUIRE: the producer wrote the slots before storing prod with RELEASE; after this load our reads
	 * of those slots see its writes. */
	uint32_t prod = __atomic_load_n(&r->ctl->prod, __ATOMIC_ACQUIRE);
	/* prod may only move forward, and at most one ring beyond what we released (the slots from tail on
	 * are ours until we publish cons): anything else is corruption. */
	if (prod - r->tail > r->nslots || prod - r->tail < r->head - r->tail)
		return -EBADMSG;
	r->seen_prod = prod;
	return (int)(prod - r->head);
}

/*
 * Takes the next ready slot (call only when vd__shm_cons_avail() > 0): *idx is its index, *data and *len
 * its payload. Returns 0; 1 for a pad slot (no frame); -EBADMSG when the length is above the slot capacity
 * (the frame is unusable). Pad and bad slots are taken all the same and released in order like any other.
 */
static inline int vd__shm_cons_take(struct vd__shm_ring *r, uint32_t *idx, uint8_t **data, uint32_t *len)
{
	uint8_t *s = vd__shm_slot(r, r->head);
	/* One load: the producer could change the length after we checked it, so it is read exactly once. */
	uint32_t l = __atomic_load_n((uint32_t *)(void *)s, __ATOMIC_RELAXED);
	*idx = r->head++;
	*data = s + VD__SHM_SLOT_HDR;
	*len = l;
	if (l == VD__SHM_PAD)
		return 1;
	return l <= r->cap ? 0 : -EBADMSG;
}

/* Hands back every slot before index `upto` (slots are released in the order they were taken). */
static inline void vd__shm_cons_release(struct vd__shm_ring *r, uint32_t upto)
{
	r->tail = upto;
	/* RELEASE: our reads of the released slots are done before the producer can see them free. */
	__atomic_store_n(&r->ctl->cons, upto, __ATOMIC_RELEASE);
}

/* Before sleeping: asks for a wakeup, then checks once more. Returns > 0 if frames are ready (the caller
 * must not sleep), 0 if it may sleep, -EBADMSG on a corrupt index. */
static inline int vd__shm_cons_arm(struct vd__shm_ring *r)
{
	__atomic_store_n(&r->ctl->need_wakeup, 1, __ATOMIC_RELAXED);
	/* Full fence: orders the flag store before the prod load (store->load; see the top). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vd__shm_cons_avail(r);
}

/* After waking (or when not going to sleep after all): no wakeups needed while we poll. */
static inline void vd__shm_cons_disarm(struct vd__shm_ring *r)
{
	/* RELAXED: a stale 1 seen by the producer only costs one spurious eventfd write. */
	__atomic_store_n(&r->ctl->need_wakeup, 0, __ATOMIC_RELAXED);
}

#endif /* VD_NIC_SHM_RING_H */
