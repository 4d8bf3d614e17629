/* SPDX-License-Identifier: MIT */
/*
 * The XSK ring accessors (src/lib/nic/xsk_ring.h) against a fake in-memory ring laid out like the kernel's
 * (producer, consumer, flags, slots at the offsets struct xdp_ring_offset gives). The test plays the
 * kernel's side by moving the shared indices directly.
 */
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "lib/nic/xsk_ring.h"
#include "fake_xsk_ring.h"

#define FAKE_SLOTS 8 /* the ring size these tests use (<= FAKE_RING_MAX_SLOTS) */

/* A fresh ring whose free-running indices both start at `start` (to test u32 wraparound). */
static void fake_init(struct fake_ring *f, struct vd__xsk_ring *r, uint32_t start)
{
	memset(f, 0, sizeof(*f));
	f->producer = f->consumer = start;
	vd__xsk_ring_init(r, f, &fake_off, FAKE_SLOTS);
}

TEST(prod_empty_ring_is_all_free)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	CHECK_EQ(vd__xsk_prod_free(&r, 1), FAKE_SLOTS);
	uint32_t idx;
	CHECK_EQ(vd__xsk_prod_reserve(&r, 3, &idx), 3);
	CHECK_EQ(idx, 0);
	CHECK_EQ(f.producer, 0); /* nothing published before submit */
	vd__xsk_prod_submit(&r);
	CHECK_EQ(f.producer, 3);
	CHECK_EQ(vd__xsk_prod_outstanding(&r), 3);
}

TEST(prod_full_ring_reserves_nothing_until_consumed)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	uint32_t idx;
	CHECK_EQ(vd__xsk_prod_reserve(&r, 100, &idx), FAKE_SLOTS); /* partial: capped at the ring size */
	vd__xsk_prod_submit(&r);
	CHECK_EQ(vd__xsk_prod_reserve(&r, 1, &idx), 0);
	CHECK_EQ(vd__xsk_prod_free(&r, 1), 0);
	f.consumer += 5; /* the kernel consumed five */
	CHECK_EQ(vd__xsk_prod_reserve(&r, 8, &idx), 5);
	CHECK_EQ(idx, FAKE_SLOTS);
	CHECK_EQ(vd__xsk_ring_desc(&r, idx), &f.desc[0]); /* slot index wraps with the mask */
}

TEST(prod_cached_consumer_not_reloaded_when_enough_known)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	uint32_t idx;
	vd__xsk_prod_reserve(&r, 2, &idx);
	/* The cache says 6 free: asking for <= 6 must not touch the shared consumer index. Make the shared
	 * value impossible to detect a reload. */
	f.consumer = 0xdead;
	CHECK_EQ(vd__xsk_prod_free(&r, 6), 6);
	CHECK_EQ(r.cached_cons, 0);
}

TEST(prod_cancel_returns_slots)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	uint32_t idx;
	CHECK_EQ(vd__xsk_prod_reserve(&r, 4, &idx), 4);
	vd__xsk_prod_cancel(&r, 3);
	vd__xsk_prod_submit(&r);
	CHECK_EQ(f.producer, 1);
	CHECK_EQ(vd__xsk_prod_free(&r, 1), FAKE_SLOTS - 1);
}

TEST(prod_wraps_u32_indices)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, UINT32_MAX - 2);
	uint32_t idx;
	CHECK_EQ(vd__xsk_prod_reserve(&r, 6, &idx), 6);
	CHECK_EQ(idx, UINT32_MAX - 2);
	for (uint32_t i = 0; i < 6; i++)
		vd__xsk_ring_desc(&r, idx + i)->addr = 100 + i;
	vd__xsk_prod_submit(&r);
	CHECK_EQ(f.producer, 3); /* wrapped past zero */
	CHECK_EQ(vd__xsk_prod_free(&r, 1), FAKE_SLOTS - 6);
	/* Written slots land at (index & mask): 0xfffffffd & 7 = 5, then 6, 7, 0, 1, 2. */
	CHECK_EQ(f.desc[5].addr, 100);
	CHECK_EQ(f.desc[2].addr, 105);
	f.consumer = 3;
	CHECK_EQ(vd__xsk_prod_free(&r, 8), FAKE_SLOTS);
}

TEST(cons_empty_then_partial_batches)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	uint32_t idx;
	CHECK_EQ(vd__xsk_cons_peek(&r, 4, &idx), 0);
	for (uint32_t i = 0; i < 5; i++)
		f.desc[i].addr = 1000 + i;
	f.producer = 5; /* the kernel produced five */
	CHECK_EQ(vd__xsk_cons_peek(&r, 3, &idx), 3);
	CHECK_EQ(idx, 0);
	CHECK_EQ(vd__xsk_ring_desc(&r, idx + 2)->addr, 1002);
	CHECK_EQ(f.consumer, 0); /* nothing handed back before release */
	vd__xsk_cons_release(&r);
	CHECK_EQ(f.consumer, 3);
	CHECK_EQ(vd__xsk_cons_peek(&r, 8, &idx), 2); /* the rest of the batch */
	CHECK_EQ(idx, 3);
	vd__xsk_cons_release(&r);
	CHECK_EQ(f.consumer, 5);
	CHECK_EQ(vd__xsk_cons_peek(&r, 8, &idx), 0);
}

TEST(cons_one_producer_load_per_burst)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	f.producer = 6;
	uint32_t idx;
	CHECK_EQ(vd__xsk_cons_peek(&r, 2, &idx), 2); /* loads 6 */
	f.producer = 8;
	/* 4 known ready >= 3 wanted: served from the cache, the new producer value is not seen yet. */
	CHECK_EQ(vd__xsk_cons_avail(&r, 3), 4);
	CHECK_EQ(vd__xsk_cons_peek(&r, 8, &idx), 6); /* wants more than known: reloads */
}

TEST(cons_wraps_u32_indices_and_full_ring)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, UINT32_MAX - 4);
	f.producer = UINT32_MAX - 4 + FAKE_SLOTS; /* full: 8 entries across the wrap */
	for (uint32_t i = 0; i < FAKE_SLOTS; i++)
		f.desc[(UINT32_MAX - 4 + i) & 7].addr = i;
	uint32_t idx;
	CHECK_EQ(vd__xsk_cons_peek(&r, 16, &idx), FAKE_SLOTS);
	for (uint32_t i = 0; i < FAKE_SLOTS; i++)
		CHECK_EQ(vd__xsk_ring_desc(&r, idx + i)->addr, i);
	vd__xsk_cons_release(&r);
	CHECK_EQ(f.consumer, f.producer);
	CHECK_EQ(f.consumer, 3);
}

TEST(addr_ring_slots_are_u64)
{
	/* fill/comp rings hold u64 addresses, not descriptors. */
	uint64_t storage[16 + FAKE_SLOTS] = { 0 };
	struct xdp_ring_offset off = { .producer = 0, .consumer = 64, .flags = 96, .desc = 128 };
	struct vd__xsk_ring r;
	vd__xsk_ring_init(&r, storage, &off, FAKE_SLOTS);
	uint32_t idx;
	CHECK_EQ(vd__xsk_prod_reserve(&r, FAKE_SLOTS, &idx), FAKE_SLOTS);
	for (uint32_t i = 0; i < FAKE_SLOTS; i++)
		*vd__xsk_ring_addr(&r, idx + i) = 4096ull * i;
	vd__xsk_prod_submit(&r);
	CHECK_EQ(storage[0] & 0xffffffffu, FAKE_SLOTS); /* producer index at offset 0 */
	CHECK_EQ(storage[16 + 3], 3 * 4096);
}

TEST(need_wakeup_flag)
{
	struct fake_ring f;
	struct vd__xsk_ring r;
	fake_init(&f, &r, 0);
	CHECK(!vd__xsk_needs_wakeup(&r));
	f.flags = XDP_RING_NEED_WAKEUP;
	CHECK(vd__xsk_needs_wakeup(&r));
	f.flags = 2; /* other bits do not count */
	CHECK(!vd__xsk_needs_wakeup(&r));
}

TEST_MAIN(T(prod_empty_ring_is_all_free), T(prod_full_ring_reserves_nothing_until_consumed),
	  T(prod_cached_consumer_not_reloaded_when_enough_known), T(prod_cancel_returns_slots),
	  T(prod_wraps_u32_indices), T(cons_empty_then_partial_batches), T(cons_one_producer_load_per_burst),
	  T(cons_wraps_u32_indices_and_full_ring), T(addr_ring_slots_are_u64), T(need_wakeup_flag))
