/* SPDX-License-Identifier: MIT */
/*
 * Consumer of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) used as the endpoint's software-steering ring: the
 * XDP dispatcher copies each frame for this endpoint into one record (struct vd_bpf_rec + the frame).
 *
 * Kernel layout (kernel/bpf/ringbuf.c, <linux/bpf.h> BPF_RINGBUF_*), as mapped through the map fd:
 *
 *   offset 0          consumer page: unsigned long consumer_pos        (we write it: mapped read-write)
 *   offset PAGE       producer page: unsigned long producer_pos        (read-only)
 *   offset 2*PAGE     data, size bytes, then the same pages again      (read-only)
 *
 * Positions are free-running byte counters; a record starts at data + (pos & (size - 1)) with an 8-byte
 * header { u32 len; u32 pg_off; } and takes round_up(len + BPF_RINGBUF_HDR_SZ, 8) bytes. The kernel
 * advances producer_pos when it *reserves* a record and sets BPF_RINGBUF_BUSY_BIT in len; it clears the
 * bit (store-release) on submit, or replaces it with BPF_RINGBUF_DISCARD_BIT on discard. Records are
 * consumed strictly in order: a busy record stops the walk even if later ones are committed.
 *
 * Because the data area is mapped twice back to back, a record that runs past the end is still contiguous
 * in our view, so the sample is handed out zero-copy. The space is returned to the producer only when the
 * consumer position moves past it; this consumer keeps two positions:
 *
 *   consumer_pos (published) <= read_pos (walked) <= cached_prod (last producer_pos seen)
 *
 * Records between consumer_pos and read_pos are lent to the caller (or discarded ones behind a lent one);
 * the caller releases them oldest first with the end position each one reported.
 *
 * Wakeups: bpf_ringbuf_submit(.., 0) notifies waiters (an irq_work: a self-IPI, a VM exit on this kind of
 * machine) whenever the record it commits starts exactly at consumer_pos, i.e. whenever the consumer had
 * caught up. Measured here that costs ~3 us per frame of a busy-polled ping-pong (5.3 us -> 1.9 us half
 * round trip). So while the caller busy-polls, the consumer position lags one record behind: the last
 * record walked stays unreturned (a few KiB of ring) and the producer never sees us caught up. Before
 * blocking, vd__steer_ring_arm() returns everything, so the next record wakes the sleeper.
 */
#ifndef VD_NIC_STEER_RING_H
#define VD_NIC_STEER_RING_H

#include <linux/bpf.h>
#include <stdint.h>

struct vd__steer_ring {
	unsigned long *cons_pos;       /* consumer page (read-write) */
	const unsigned long *prod_pos; /* producer page (read-only) */
	const uint8_t *data;           /* data area, mapped twice */
	uint64_t size;                 /* data bytes, a power of two */
	uint64_t mask;
	uint64_t read_pos;             /* next record to look at */
	uint64_t cached_prod;          /* producer_pos at the last refresh */
	uint64_t tail_start;           /* start of the last record walked: where the lagging consumer stops */
	uint32_t held;                 /* records handed out and not released */
};

/* A record handed out: the sample (after the ringbuf header), its length and where the record ends. */
struct vd__steer_rec {
	const void *sample;
	uint32_t len;
	uint64_t end; /* position after the record: what to release */
};

/*
 * Sets up r over a mapping: cons_page is the consumer page, prod_and_data points at the producer page with
 * the doubly mapped data area starting page_size bytes after it.
 */
static inline void vd__steer_ring_init(struct vd__steer_ring *r, void *cons_page, const void *prod_and_data,
				       uint64_t page_size, uint64_t size)
{
	r->cons_pos = (unsigned long *)cons_page;
	r->prod_pos = (const unsigned long *)prod_and_data;
	r->data = (const uint8_t *)prod_and_data + page_size;
	r->size = size;
	r->mask = size - 1;
	/* Our own position: nobody else writes it, but it may be non-zero if the ring was used before. */
	r->read_pos = __atomic_load_n(r->cons_pos, __ATOMIC_RELAXED);
	r->cached_prod = r->read_pos;
	r->tail_start = r->read_pos;
	r->held = 0;
}

/*
 * Loads the producer position once for a burst. ACQUIRE pairs with the kernel's store-release of
 * producer_pos in bpf_ringbuf_reserve: the record headers it initialised (busy bit set) before that store
 * are visible after it. Returns bytes reserved by the producer and not walked yet.
 */
static inline uint64_t vd__steer_ring_refresh(struct vd__steer_ring *r)
{
	r->cached_prod = __atomic_load_n(r->prod_pos, __ATOMIC_ACQUIRE);
	return r->cached_prod - r->read_pos;
}

/* True if a refresh found more than was walked: cheap, for wait loops. */
static inline int vd__steer_ring_pending(const struct vd__steer_ring *r)
{
	return __atomic_load_n(r->prod_pos, __ATOMIC_ACQUIRE) != r->read_pos;
}

/*
 * Takes the next committed record up to the last refreshed producer position, skipping discarded ones.
 * Returns 1 and fills *rec, or 0 if there is none yet (empty, or the next record is still busy).
 */
static inline int vd__steer_ring_next(struct vd__steer_ring *r, struct vd__steer_rec *rec)
{
	while (r->read_pos != r->cached_prod) {
		const uint8_t *hdr = r->data + (r->read_pos & r->mask);
		/* ACQUIRE pairs with the kernel's release when it clears the busy bit on submit/discard
		 * (bpf_ringbuf_commit): the sample bytes written before are visible once we see len
		 * without the busy bit. */
		uint32_t len = __atomic_load_n((const uint32_t *)hdr, __ATOMIC_ACQUIRE);
		if (len & BPF_RINGBUF_BUSY_BIT)
			return 0;
		uint32_t sample_len = len & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		uint64_t total = ((uint64_t)sample_len + BPF_RINGBUF_HDR_SZ + 7) & ~(uint64_t)7;
		/* The kernel never produces a record past producer_pos; if it seems to, treat the ring as
		 * not ready rather than reading beyond what was reserved. */
		if (total > r->cached_prod - r->read_pos)
			return 0;
		r->tail_start = r->read_pos;
		r->read_pos += total;
		if (len & BPF_RINGBUF_DISCARD_BIT)
			continue;
		rec->sample = hdr + BPF_RINGBUF_HDR_SZ;
		rec->len = sample_len;
		rec->end = r->read_pos;
		r->held++;
		return 1;
	}
	return 0;
}

static inline void vd__steer_ring_publish(struct vd__steer_ring *r, uint64_t pos)
{
	/* RELEASE: our reads of every record before pos are done before the kernel sees the space free
	 * and reuses it (pairs with its acquire load of consumer_pos in bpf_ringbuf_reserve). */
	__atomic_store_n(r->cons_pos, (unsigned long)pos, __ATOMIC_RELEASE);
}

/*
 * Releases n handed-out records, the last of which ended at end (records are released oldest first).
 * With records still lent, the space up to end goes back; with none, everything walked except the last
 * record (the wakeup lag described at the top). end never passes tail_start while a record is lent.
 */
static inline void vd__steer_ring_release(struct vd__steer_ring *r, uint64_t end, uint32_t n)
{
	r->held -= n;
	vd__steer_ring_publish(r, r->held ? end : r->tail_start);
}

/* Forgets a record taken by vd__steer_ring_next that the caller will not see (malformed frame): its space
 * is returned with the records around it. */
static inline void vd__steer_ring_drop(struct vd__steer_ring *r)
{
	r->held--;
}

/* After a walk that handed out nothing new: returns skipped discarded records if nothing is lent. */
static inline void vd__steer_ring_settle(struct vd__steer_ring *r)
{
	if (r->held == 0 && __atomic_load_n(r->cons_pos, __ATOMIC_RELAXED) != r->tail_start)
		vd__steer_ring_publish(r, r->tail_start);
}

/*
 * Before sleeping: returns everything walked (if nothing is lent) so that the next submitted record
 * wakes the waiter, then tells whether a record slipped in meanwhile (the caller must not sleep then).
 * The full fence orders our consumer_pos store before the producer_pos load; the kernel orders its
 * producer_pos store before its consumer_pos check in commit (the xchg on the header is a full barrier).
 * Either we see its record or it sees us caught up and wakes us: no lost wakeup.
 */
static inline int vd__steer_ring_arm(struct vd__steer_ring *r)
{
	if (r->held == 0)
		vd__steer_ring_publish(r, r->read_pos);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vd__steer_ring_pending(r);
}

#endif /* VD_NIC_STEER_RING_H */
