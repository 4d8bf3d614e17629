/* SPDX-License-Identifier: MIT */
/* Impairment decisions and the delay heap of the lab relay (see relay_sched.h). */
#include "cli/relay_sched.h"

#include <errno.h>
#include <stdlib.h>

void vd__impair_init(struct vd__impair *im, const struct vd__netem *p, uint64_t seed)
{
	im->p = *p;
	vd__rand_seed(&im->rnd, seed);
}

/* Draws one probability; a 0 % parameter draws nothing, so enabling one impairment does not shift the
 * random sequence of a run that does not use the others. */
static int chance(struct vd__impair *im, uint32_t ppm)
{
	return ppm && vd__rand_ppm(&im->rnd, ppm);
}

/* Corruption and delay of one copy (netem_enqueue after the loss/duplicate step). */
static void fate(struct vd__impair *im, uint32_t len, struct vd__impair_copy *c)
{
	*c = (struct vd__impair_copy){ 0 };
	if (len > VD_ETH_HLEN && chance(im, im->p.corrupt_ppm)) {
		c->corrupt = 1;
		c->corrupt_off = VD_ETH_HLEN + (uint32_t)vd__rand_below(&im->rnd, len - VD_ETH_HLEN);
		c->corrupt_bit = (uint8_t)vd__rand_below(&im->rnd, 8);
	}
	/*
	 * netem with reorder sets gap 1 (tc does), and then a frame is delayed unless it wins the reorder
	 * draw, in which case it goes to the head of the queue with no delay at all.
	 */
	if (im->p.reorder_ppm && chance(im, im->p.reorder_ppm)) {
		c->ahead = 1;
		return;
	}
	uint64_t d = im->p.delay_ns;
	if (im->p.jitter_ns) {
		/* Uniform in [delay - jitter, delay + jitter], as netem's tabledist() without a table; a
		 * negative result means "now". */
		uint64_t j = vd__rand_below(&im->rnd, 2 * im->p.jitter_ns + 1);
		d = d + j >= im->p.jitter_ns ? d + j - im->p.jitter_ns : 0;
	}
	c->delay_ns = d;
}

unsigned vd__impair_decide(struct vd__impair *im, uint32_t len, struct vd__impair_copy out[2])
{
	unsigned count = 1, n = 0;

	if (chance(im, im->p.duplicate_ppm))
		count++;
	if (chance(im, im->p.loss_ppm))
		count--;
	if (count == 0)
		return 0;
	/* The clone: re-enqueued by netem with duplication off, so it draws its own loss. */
	if (count == 2 && !chance(im, im->p.loss_ppm))
		fate(im, len, &out[n++]);
	fate(im, len, &out[n++]);
	return n;
}

/* ---- delay heap ----------------------------------------------------------------------------------- */

static int before(const struct vd__dheap_ent *a, const struct vd__dheap_ent *b)
{
	return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

int vd__dheap_init(struct vd__dheap *h, uint32_t cap)
{
	h->e = calloc(cap ? cap : 1, sizeof(*h->e));
	h->n = 0;
	h->cap = cap;
	h->next_seq = 0;
	return h->e ? 0 : -ENOMEM;
}

void vd__dheap_free(struct vd__dheap *h)
{
	free(h->e);
	h->e = NULL;
	h->n = h->cap = 0;
}

int vd__dheap_push(struct vd__dheap *h, uint64_t due_ns, uint32_t slot)
{
	if (h->n == h->cap)
		return -ENOBUFS;
	struct vd__dheap_ent x = { .due_ns = due_ns, .seq = h->next_seq++, .slot = slot };
	uint32_t i = h->n++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!before(&x, &h->e[parent]))
			break;
		h->e[i] = h->e[parent];
		i = parent;
	}
	h->e[i] = x;
	return 0;
}

void vd__dheap_pop(struct vd__dheap *h)
{
	struct vd__dheap_ent x = h->e[--h->n];
	uint32_t i = 0;
	if (h->n == 0)
		return;
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(&h->e[c + 1], &h->e[c]))
			c++;
		if (!before(&h->e[c], &x))
			break;
		h->e[i] = h->e[c];
		i = c;
	}
	h->e[i] = x;
}
