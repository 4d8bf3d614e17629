/* SPDX-License-Identifier: MIT */
/* The shared-memory slot ring (src/lib/nic/shm_ring.h): both ends in one process on one buffer, including
 * index wraparound, full and empty rings, and shared memory corrupted by the other side. */
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/nic/shm_ring.h"

#define SLOT_BYTES 128u

static void *ring_mem(uint32_t nslots, uint32_t start)
{
	void *mem = aligned_alloc(VD__SHM_CL, vd__shm_ring_bytes(nslots, SLOT_BYTES));
	if (!mem)
		return NULL;
	memset(mem, 0, vd__shm_ring_bytes(nslots, SLOT_BYTES));
	struct vd__shm_ctl *ctl = mem;
	ctl->prod = ctl->cons = start; /* as if the ring had been used before */
	return mem;
}

static int put(struct vd__shm_ring *p, uint32_t v, uint32_t len)
{
	int room = vd__shm_prod_free(p);
	if (room <= 0)
		return room;
	uint32_t idx = vd__shm_prod_reserve(p);
	uint8_t *d = vd__shm_prod_data(p, idx);
	memset(d, (int)(v & 0xff), len);
	if (len >= 4)
		memcpy(d, &v, 4);
	vd__shm_prod_fill(p, idx, len);
	vd__shm_prod_publish(p);
	return 1;
}

TEST(geometry)
{
	CHECK(vd__shm_geometry_ok(2, 64 + 64));
	CHECK(vd__shm_geometry_ok(4096, 16384));
	CHECK(!vd__shm_geometry_ok(3, 128));        /* not a power of two */
	CHECK(!vd__shm_geometry_ok(1, 128));
	CHECK(!vd__shm_geometry_ok(8192, 128));
	CHECK(!vd__shm_geometry_ok(16, 100));       /* not cache-line sized */
	CHECK(!vd__shm_geometry_ok(16, 0));
	CHECK(!vd__shm_geometry_ok(16, 16384 + 64));
}

TEST(send_receive_release)
{
	uint32_t n = 8;
	void *mem = ring_mem(n, 0);
	REQUIRE(mem);
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);
	CHECK_EQ(p.cap, SLOT_BYTES - 8);
	CHECK_EQ(vd__shm_cons_avail(&c), 0);
	CHECK_EQ(put(&p, 11, 4), 1);
	CHECK_EQ(put(&p, 22, 120), 1); /* exactly the capacity */
	CHECK_EQ(put(&p, 33, 0), 1);   /* empty frames are frames */
	CHECK_EQ(vd__shm_cons_avail(&c), 3);
	uint32_t idx, len, v;
	uint8_t *d;
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), 0);
	memcpy(&v, d, 4);
	CHECK_EQ(idx, 0);
	CHECK_EQ(len, 4);
	CHECK_EQ(v, 11);
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), 0);
	memcpy(&v, d, 4);
	CHECK_EQ(len, 120);
	CHECK_EQ(v, 22);
	CHECK_EQ(d[119], 22);
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), 0);
	CHECK_EQ(len, 0);
	CHECK_EQ(idx, 2);
	/* Nothing released yet: the producer still sees 3 slots in use. */
	CHECK_EQ(vd__shm_prod_free(&p), (int)n - 3);
	vd__shm_cons_release(&c, 2);
	p.tail = p.head - n; /* force a reload of cons, as a full ring would */
	CHECK_EQ(vd__shm_prod_free(&p), (int)n - 1);
	free(mem);
}

TEST(full_and_empty)
{
	uint32_t n = 4;
	void *mem = ring_mem(n, 0);
	REQUIRE(mem);
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);
	for (uint32_t i = 0; i < n; i++)
		CHECK_EQ(put(&p, i, 8), 1);
	CHECK_EQ(put(&p, 99, 8), 0); /* full */
	CHECK_EQ(vd__shm_cons_avail(&c), (int)n);
	uint32_t idx, len;
	uint8_t *d;
	for (uint32_t i = 0; i < n; i++)
		CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), 0);
	CHECK_EQ(vd__shm_cons_avail(&c), 0); /* empty for the reader ... */
	CHECK_EQ(put(&p, 99, 8), 0);         /* ... still full for the writer: nothing released */
	vd__shm_cons_release(&c, c.head);
	CHECK_EQ(vd__shm_prod_free(&p), (int)n);
	free(mem);
}

TEST(wraparound)
{
	/* Indices start just below 2^32 and cross it; the slot index wraps at the ring size many times. */
	uint32_t n = 4;
	void *mem = ring_mem(n, 0xfffffff0u);
	REQUIRE(mem);
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);
	uint32_t sent = 0, got = 0, bad = 0;
	srand(7);
	for (int iter = 0; iter < 5000; iter++) {
		int k = rand() % 4;
		for (int j = 0; j < k; j++)
			if (put(&p, sent, 4 + (sent % 100)) == 1)
				sent++;
		int avail = vd__shm_cons_avail(&c);
		if (avail < 0) {
			bad++;
			break;
		}
		int take = avail ? rand() % (avail + 1) : 0;
		for (int j = 0; j < take; j++) {
			uint32_t idx, len, v;
			uint8_t *d;
			if (vd__shm_cons_take(&c, &idx, &d, &len) < 0)
				bad++;
			memcpy(&v, d, 4);
			if (v != got || len != 4 + (got % 100) || (len > 4 && d[len - 1] != (uint8_t)(got & 0xff)))
				bad++;
			got++;
		}
		if (rand() % 2)
			vd__shm_cons_release(&c, c.head);
	}
	CHECK_EQ(bad, 0);
	CHECK(sent > 2500);
	CHECK(got + n >= sent);
	CHECK(p.head < 0xfffffff0u); /* the counters did wrap */
	free(mem);
}

TEST(need_wakeup)
{
	uint32_t n = 4;
	void *mem = ring_mem(n, 0);
	REQUIRE(mem);
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);
	CHECK_EQ(vd__shm_prod_need_wakeup(&p), 0);
	CHECK_EQ(vd__shm_cons_arm(&c), 0); /* empty: may sleep */
	CHECK_EQ(put(&p, 1, 4), 1);
	CHECK_EQ(vd__shm_prod_need_wakeup(&p), 1);
	vd__shm_cons_disarm(&c);
	CHECK_EQ(vd__shm_prod_need_wakeup(&p), 0);
	CHECK(vd__shm_cons_arm(&c) > 0); /* a frame is there: must not sleep */
	vd__shm_cons_disarm(&c);
	free(mem);
}

TEST(corrupt_indices_and_lengths)
{
	uint32_t n = 8;
	void *mem = ring_mem(n, 100);
	REQUIRE(mem);
	struct vd__shm_ctl *ctl = mem;
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);

	/* A producer index more than one ring ahead of what the consumer released. */
	ctl->prod = 100 + n + 1;
	CHECK_EQ(vd__shm_cons_avail(&c), -EBADMSG);
	/* Moving backwards behind what the consumer already took. */
	ctl->prod = 103;
	CHECK_EQ(vd__shm_cons_avail(&c), 3);
	uint32_t idx, len;
	uint8_t *d;
	for (int i = 0; i < 3; i++)
		CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), 0);
	ctl->prod = 101;
	CHECK_EQ(vd__shm_cons_avail(&c), -EBADMSG);
	ctl->prod = 0xdeadbeef;
	CHECK_EQ(vd__shm_cons_avail(&c), -EBADMSG);
	/* Exactly one ring beyond the released position is legal. */
	ctl->prod = 100 + n;
	CHECK_EQ(vd__shm_cons_avail(&c), (int)n - 3);

	/* A slot length beyond the capacity: the frame is refused, but its slot is taken all the same. */
	uint32_t huge = 0xfffffff0u;
	memcpy(vd__shm_slot(&c, c.head), &huge, 4);
	uint32_t before = c.head;
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), -EBADMSG);
	CHECK_EQ(idx, before);
	CHECK_EQ(c.head, before + 1);
	uint32_t cap1 = SLOT_BYTES - 8 + 1;
	memcpy(vd__shm_slot(&c, c.head), &cap1, 4);
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &d, &len), -EBADMSG);

	/* The consumer index seen by a producer: backwards, or beyond what was published. */
	struct vd__shm_ring p2;
	void *mem2 = ring_mem(n, 50);
	REQUIRE(mem2);
	struct vd__shm_ctl *ctl2 = mem2;
	REQUIRE(vd__shm_ring_attach(&p2, mem2, n, SLOT_BYTES, 1) == 0);
	for (uint32_t i = 0; i < n; i++)
		CHECK_EQ(put(&p2, i, 8), 1);
	ctl2->cons = 50 + n + 1;
	CHECK_EQ(vd__shm_prod_free(&p2), -EBADMSG);
	ctl2->cons = 49;
	CHECK_EQ(vd__shm_prod_free(&p2), -EBADMSG);
	ctl2->cons = 52;
	CHECK_EQ(vd__shm_prod_free(&p2), 2);

	/* Attaching to a ring whose indices are already inconsistent. */
	ctl2->prod = 10;
	ctl2->cons = 10 + n + 5;
	CHECK_EQ(vd__shm_ring_attach(&p2, mem2, n, SLOT_BYTES, 0), -EBADMSG);
	(void)p;
	free(mem);
	free(mem2);
}

TEST(reserve_out_of_order_and_pad)
{
	/* Slots lent before their destination is known: filled out of order, one padded; prod moves only
	 * over the filled prefix; the consumer sees the frames in slot order and skips the pad. */
	uint32_t n = 8;
	void *mem = ring_mem(n, 0xfffffffeu);
	REQUIRE(mem);
	uint64_t pending[1] = { 0 };
	struct vd__shm_ring p, c;
	REQUIRE(vd__shm_ring_attach(&p, mem, n, SLOT_BYTES, 1) == 0);
	REQUIRE(vd__shm_ring_attach(&c, mem, n, SLOT_BYTES, 0) == 0);
	p.pending = pending;
	uint32_t a = vd__shm_prod_reserve(&p), b = vd__shm_prod_reserve(&p), d = vd__shm_prod_reserve(&p);
	memset(vd__shm_prod_data(&p, d), 3, 10);
	vd__shm_prod_fill(&p, d, 10);
	CHECK_EQ(vd__shm_prod_publish(&p), 0); /* a and b still pending */
	CHECK_EQ(vd__shm_cons_avail(&c), 0);
	memset(vd__shm_prod_data(&p, a), 1, 5);
	vd__shm_prod_fill(&p, a, 5);
	CHECK_EQ(vd__shm_prod_publish(&p), 1);
	CHECK_EQ(vd__shm_cons_avail(&c), 1); /* a only */
	vd__shm_prod_fill(&p, b, VD__SHM_PAD);
	CHECK_EQ(vd__shm_prod_publish(&p), 1);
	CHECK_EQ(pending[0], 0);
	uint32_t idx, len;
	uint8_t *data;
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &data, &len), 0);
	CHECK(len == 5 && data[4] == 1 && idx == a);
	CHECK_EQ(vd__shm_cons_avail(&c), 2);
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &data, &len), 1); /* the pad */
	CHECK_EQ(vd__shm_cons_take(&c, &idx, &data, &len), 0);
	CHECK(len == 10 && data[9] == 3 && idx == d);
	/* A consumer index beyond what was published (though within what is reserved) is corruption. */
	uint32_t e = vd__shm_prod_reserve(&p);
	(void)e;
	for (int i = 0; i < 4; i++)
		CHECK_EQ(put(&p, 9, 8), 1);
	CHECK_EQ(put(&p, 9, 8), 0); /* full: 4 published + 1 reserved + 3 unreleased */
	((struct vd__shm_ctl *)mem)->cons = p.pub + 1;
	CHECK_EQ(vd__shm_prod_free(&p), -EBADMSG);
	free(mem);
}

TEST_MAIN(T(geometry), T(send_receive_release), T(full_and_empty), T(wraparound), T(need_wakeup),
	  T(corrupt_indices_and_lengths), T(reserve_out_of_order_and_pad))
