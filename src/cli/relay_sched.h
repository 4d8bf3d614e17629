/* SPDX-License-Identifier: MIT */
/*
 * The testable core of the lab's impairment relay (relay.c), free of sockets and clocks:
 *  - vd__impair_decide(): what netem would do with one frame (lost, duplicated, corrupted, delayed or
 *    sent ahead), drawn from a seeded PRNG, so a run is reproducible for a given frame sequence;
 *  - struct vd__dheap: the frames waiting for their time, a binary min-heap ordered by due time, then by
 *    arrival, so equal delays keep FIFO order and jitter reorders as netem's time-sorted queue does.
 */
#ifndef VD_CLI_RELAY_SCHED_H
#define VD_CLI_RELAY_SCHED_H

#include <stdint.h>

#include "cli/netem_args.h"
#include "lib/core/rand.h"

#define VD_ETH_HLEN 14

struct vd__impair {
	struct vd__netem p;
	struct vd__rand rnd;
};

/* The fate of one copy of a frame. */
struct vd__impair_copy {
	uint64_t delay_ns;     /* send this long after arrival (0: at once) */
	int ahead;             /* reorder: sent at once, ahead of the delayed frames */
	int corrupt;           /* flip bit corrupt_bit of byte corrupt_off */
	uint32_t corrupt_off;  /* in [VD_ETH_HLEN, len) */
	uint8_t corrupt_bit;
};

void vd__impair_init(struct vd__impair *im, const struct vd__netem *p, uint64_t seed);

/*
 * Decides what happens to a frame of len bytes, in netem's order (net/sched/sch_netem.c, netem_enqueue):
 * duplicate?, then loss? (a duplicated frame that is also lost leaves one copy); the duplicate is
 * impaired on its own (its own loss, corruption and delay, never duplicated again), like netem's clone
 * re-enqueued with duplication off; then the frame's corruption and delay. Writes the copies to out (the
 * duplicate first, as netem enqueues it first) and returns how many: 0, 1 or 2.
 * Corruption flips one bit past the Ethernet header (netem picks any byte of the linear data; keeping the
 * header intact keeps the relay's switching and the counters meaningful); frames of VD_ETH_HLEN bytes or
 * less are never corrupted.
 */
unsigned vd__impair_decide(struct vd__impair *im, uint32_t len, struct vd__impair_copy out[2]);

struct vd__dheap_ent {
	uint64_t due_ns;
	uint64_t seq;   /* arrival order: ties on due_ns go first-in first-out */
	uint32_t slot;  /* the caller's buffer index */
};

struct vd__dheap {
	struct vd__dheap_ent *e;
	uint32_t n, cap;
	uint64_t next_seq;
};

/* Room for cap entries (allocated once: the heap never grows). 0 or -ENOMEM. */
int vd__dheap_init(struct vd__dheap *h, uint32_t cap);
void vd__dheap_free(struct vd__dheap *h);
/* Adds slot, due at due_ns. 0, or -ENOBUFS when full (the caller counts a tail drop). */
int vd__dheap_push(struct vd__dheap *h, uint64_t due_ns, uint32_t slot);
/* The earliest entry, NULL if empty. */
static inline const struct vd__dheap_ent *vd__dheap_peek(const struct vd__dheap *h)
{
	return h->n ? &h->e[0] : (const struct vd__dheap_ent *)0;
}
/* Removes the earliest entry (the heap must not be empty). */
void vd__dheap_pop(struct vd__dheap *h);

#endif
