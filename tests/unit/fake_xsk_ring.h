/* SPDX-License-Identifier: MIT */
/*
 * An in-memory XSK ring laid out like the kernel's (producer, consumer, flags on separate cache lines, then
 * the descriptors, at the offsets struct xdp_ring_offset gives), for tests that play the kernel's side by
 * moving the shared indices directly. A test inits its ring with vd__xsk_ring_init(r, &ring, &fake_off, N)
 * for any power of two N up to FAKE_RING_MAX_SLOTS.
 */
#ifndef VD_TEST_FAKE_XSK_RING_H
#define VD_TEST_FAKE_XSK_RING_H

#include <stddef.h>
#include <stdint.h>

#include "lib/nic/xsk_ring.h"

#define FAKE_RING_MAX_SLOTS 32u

struct fake_ring {
	uint32_t producer;
	uint32_t pad0[15]; /* separate cache lines, as in the kernel */
	uint32_t consumer;
	uint32_t pad1[15];
	uint32_t flags;
	uint32_t pad2[15];
	struct xdp_desc desc[FAKE_RING_MAX_SLOTS];
};

static const struct xdp_ring_offset fake_off = {
	.producer = offsetof(struct fake_ring, producer),
	.consumer = offsetof(struct fake_ring, consumer),
	.flags = offsetof(struct fake_ring, flags),
	.desc = offsetof(struct fake_ring, desc),
};

#endif
