/* SPDX-License-Identifier: MIT */
/*
 * The steering-ring consumer (src/lib/nic/steer_ring.h) against a fake BPF ring buffer built like the
 * kernel's: a consumer page, a producer page, and a data area mapped twice back to back (a memfd mapped
 * at two adjacent addresses), with a fake producer that reserves, commits and discards records the way
 * kernel/bpf/ringbuf.c does.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "lib/nic/steer_ring.h"

#define DATA_SIZE 4096ul /* one page: small, so wraparound happens quickly */

struct fake_rb {
	unsigned long *cons;  /* consumer page */
	uint8_t *prod_page;   /* producer page, data follows at +page (twice) */
	uint8_t *data;
	long page;
	void *region;
	size_t region_len;
};

static int fake_rb_open(struct fake_rb *f)
{
	f->page = sysconf(_SC_PAGESIZE);
	f->cons = mmap(NULL, (size_t)f->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	f->region_len = (size_t)f->page + 2 * DATA_SIZE;
	f->region = mmap(NULL, f->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = memfd_create("vdC-fake-rb", 0);
	if (f->cons == MAP_FAILED || f->region == MAP_FAILED || fd < 0 || ftruncate(fd, DATA_SIZE) < 0)
		return -1;
	f->prod_page = f->region;
	f->data = f->prod_page + f->page;
	/* The data pages twice, back to back, over the reserved region (MAP_FIXED replaces it). */
	if (mmap(f->data, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
	    mmap(f->data + DATA_SIZE, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
		    MAP_FAILED)
		return -1;
	close(fd);
	memset(f->cons, 0, (size_t)f->page);
	memset(f->prod_page, 0, (size_t)f->page);
	return 0;
}

static void fake_rb_close(struct fake_rb *f)
{
	munmap(f->region, f->region_len);
	munmap(f->cons, (size_t)f->page);
}

static unsigned long *fake_prod(struct fake_rb *f)
{
	return (unsigned long *)f->prod_page;
}

/* Kernel bpf_ringbuf_reserve: returns the record position or -1 if there is no room. */
static long fake_reserve(struct fake_rb *f, uint32_t len)
{
	unsigned long prod = *fake_prod(f), total = (len + BPF_RINGBUF_HDR_SZ + 7) & ~7ul;
	if (prod - *f->cons + total > DATA_SIZE)
		return -1;
	uint32_t *hdr = (uint32_t *)(f->data + (prod & (DATA_SIZE - 1)));
	hdr[0] = len | BPF_RINGBUF_BUSY_BIT;
	hdr[1] = 0;
	__atomic_store_n(fake_prod(f), prod + total, __ATOMIC_RELEASE);
	return (long)prod;
}

static uint8_t *fake_sample(struct fake_rb *f, long pos)
{
	return f->data + ((unsigned long)pos & (DATA_SIZE - 1)) + BPF_RINGBUF_HDR_SZ;
}

/* Kernel bpf_ringbuf_commit: clears busy, optionally marks discarded. */
static void fake_commit(struct fake_rb *f, long pos, int discard)
{
	uint32_t *hdr = (uint32_t *)(f->data + ((unsigned long)pos & (DATA_SIZE - 1)));
	uint32_t len = hdr[0] & ~BPF_RINGBUF_BUSY_BIT;
	__atomic_store_n(hdr, len | (discard ? BPF_RINGBUF_DISCARD_BIT : 0), __ATOMIC_RELEASE);
}

/* Writes a committed record of len bytes filled with `fill`. */
static long fake_put(struct fake_rb *f, uint32_t len, uint8_t fill)
{
	long pos = fake_reserve(f, len);
	if (pos >= 0) {
		memset(fake_sample(f, pos), fill, len);
		fake_commit(f, pos, 0);
	}
	return pos;
}

static void ring_open(struct fake_rb *f, struct vd__steer_ring *r)
{
	vd__steer_ring_init(r, f->cons, f->prod_page, (uint64_t)f->page, DATA_SIZE);
}

TEST(empty_ring_yields_nothing)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	struct vd__steer_rec rec;
	CHECK_EQ(vd__steer_ring_refresh(&r), 0);
	CHECK_EQ(vd__steer_ring_next(&r, &rec), 0);
	CHECK(!vd__steer_ring_pending(&r));
	fake_rb_close(&f);
}

TEST(records_in_order_and_release_publishes)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	fake_put(&f, 60, 0xa1); /* 8 + 60 -> 72 bytes */
	fake_put(&f, 13, 0xa2); /* 8 + 13 -> 24 bytes (8-aligned) */
	CHECK(vd__steer_ring_pending(&r));
	CHECK_EQ(vd__steer_ring_refresh(&r), 96);
	struct vd__steer_rec a, b, c;
	REQUIRE(vd__steer_ring_next(&r, &a));
	REQUIRE(vd__steer_ring_next(&r, &b));
	CHECK_EQ(vd__steer_ring_next(&r, &c), 0);
	CHECK_EQ(a.len, 60);
	CHECK_EQ(a.end, 72);
	CHECK_EQ(((const uint8_t *)a.sample)[59], 0xa1);
	CHECK_EQ(b.len, 13);
	CHECK_EQ(b.end, 96);
	CHECK_EQ(((const uint8_t *)b.sample)[0], 0xa2);
	CHECK_EQ(*f.cons, 0); /* lent records keep their space */
	vd__steer_ring_release(&r, a.end, 1);
	CHECK_EQ(*f.cons, 72);
	vd__steer_ring_release(&r, b.end, 1);
	CHECK_EQ(*f.cons, 72); /* nothing lent: all but the last record (the wakeup lag) */
	CHECK_EQ(vd__steer_ring_arm(&r), 0);
	CHECK_EQ(*f.cons, 96); /* armed: caught up */
	fake_rb_close(&f);
}

TEST(busy_record_stops_the_walk)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	long p0 = fake_reserve(&f, 32); /* reserved, not committed yet */
	fake_put(&f, 32, 0xb2);           /* committed behind it */
	struct vd__steer_rec rec;
	vd__steer_ring_refresh(&r);
	CHECK_EQ(vd__steer_ring_next(&r, &rec), 0); /* in order: must wait for the first */
	memset(fake_sample(&f, p0), 0xb1, 32);
	fake_commit(&f, p0, 0);
	REQUIRE(vd__steer_ring_next(&r, &rec));
	CHECK_EQ(((const uint8_t *)rec.sample)[0], 0xb1);
	REQUIRE(vd__steer_ring_next(&r, &rec));
	CHECK_EQ(((const uint8_t *)rec.sample)[0], 0xb2);
	fake_rb_close(&f);
}

TEST(discarded_records_are_skipped_and_returned)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	long d0 = fake_reserve(&f, 100);
	fake_commit(&f, d0, 1);          /* discarded: 112 bytes */
	fake_put(&f, 8, 0xc1);            /* 16 bytes, ends at 128 */
	long d1 = fake_reserve(&f, 40);
	fake_commit(&f, d1, 1);          /* trailing discard: 48 bytes, ends at 176 */
	vd__steer_ring_refresh(&r);
	struct vd__steer_rec rec;
	REQUIRE(vd__steer_ring_next(&r, &rec));
	CHECK_EQ(((const uint8_t *)rec.sample)[0], 0xc1);
	CHECK_EQ(rec.end, 128);
	CHECK_EQ(vd__steer_ring_next(&r, &rec), 0);
	vd__steer_ring_settle(&r);
	CHECK_EQ(*f.cons, 0); /* a record is lent: nothing can be returned yet */
	vd__steer_ring_release(&r, 128, 1);
	CHECK_EQ(*f.cons, 128); /* nothing lent: up to the last walked record, the trailing discard */

	/* Only discarded records: settle returns all but the last one, arming returns that too. */
	long d2 = fake_reserve(&f, 16);
	fake_commit(&f, d2, 1);
	long d3 = fake_reserve(&f, 16);
	fake_commit(&f, d3, 1);
	vd__steer_ring_refresh(&r);
	CHECK_EQ(vd__steer_ring_next(&r, &rec), 0);
	vd__steer_ring_settle(&r);
	CHECK_EQ(*f.cons, 176 + 24);
	CHECK_EQ(vd__steer_ring_arm(&r), 0);
	CHECK_EQ(*f.cons, 176 + 48);
	fake_rb_close(&f);
}

TEST(full_ring_and_wraparound_zero_copy)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	/* 1000-byte samples take 1008 bytes: four fit in 4096, the fifth does not (full). */
	for (int i = 0; i < 4; i++)
		CHECK(fake_put(&f, 1000, (uint8_t)(0x10 + i)) >= 0);
	CHECK_EQ(fake_put(&f, 1000, 0x14), -1);
	vd__steer_ring_refresh(&r);
	struct vd__steer_rec rec[4];
	for (int i = 0; i < 4; i++)
		REQUIRE(vd__steer_ring_next(&r, &rec[i]));
	vd__steer_ring_release(&r, rec[1].end, 2); /* partial release: the two oldest */
	CHECK_EQ(*f.cons, 2016);
	/* Still full for a 3000-byte record (2016 free), room for a 1000-byte one that wraps the end. */
	CHECK_EQ(fake_reserve(&f, 3000), -1);
	long w = fake_reserve(&f, 1000); /* at 4032: header fits before 4096, the sample runs past it */
	REQUIRE(w == 4032);
	uint8_t *s = fake_sample(&f, w);
	for (int i = 0; i < 1000; i++)
		s[i] = (uint8_t)i; /* written through the double mapping, like the kernel's own writes */
	fake_commit(&f, w, 0);
	vd__steer_ring_refresh(&r);
	struct vd__steer_rec wr;
	REQUIRE(vd__steer_ring_next(&r, &wr));
	CHECK_EQ(wr.len, 1000);
	CHECK_EQ(wr.end, 5040);
	const uint8_t *ws = wr.sample;
	int bad = 0;
	for (int i = 0; i < 1000; i++)
		bad += ws[i] != (uint8_t)i;
	CHECK_EQ(bad, 0);
	CHECK_EQ(ws[999], f.data[(4032 + 8 + 999) & (DATA_SIZE - 1)]); /* same bytes as the wrapped view */
	vd__steer_ring_release(&r, wr.end, 3);
	CHECK_EQ(*f.cons, 4032); /* the lag: the wrapped record stays until armed */
	CHECK_EQ(r.held, 0);
	vd__steer_ring_arm(&r);
	CHECK_EQ(*f.cons, 5040);
	fake_rb_close(&f);
}

TEST(drop_keeps_order_accounting)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	fake_put(&f, 8, 1);  /* ends 16 */
	fake_put(&f, 8, 2);  /* ends 32: the caller drops it as malformed */
	fake_put(&f, 8, 3);  /* ends 48 */
	vd__steer_ring_refresh(&r);
	struct vd__steer_rec a, b, c;
	REQUIRE(vd__steer_ring_next(&r, &a));
	REQUIRE(vd__steer_ring_next(&r, &b));
	vd__steer_ring_drop(&r);
	REQUIRE(vd__steer_ring_next(&r, &c));
	vd__steer_ring_release(&r, a.end, 1);
	CHECK_EQ(*f.cons, 16);
	vd__steer_ring_release(&r, c.end, 1);
	CHECK_EQ(*f.cons, 32); /* the dropped record's space went back; the last one lags */
	fake_rb_close(&f);
}

TEST(refresh_once_per_burst)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	fake_put(&f, 8, 1);
	vd__steer_ring_refresh(&r);
	fake_put(&f, 8, 2); /* produced after the refresh: not visible in this burst */
	struct vd__steer_rec rec;
	REQUIRE(vd__steer_ring_next(&r, &rec));
	CHECK_EQ(vd__steer_ring_next(&r, &rec), 0);
	CHECK(vd__steer_ring_pending(&r));
	vd__steer_ring_refresh(&r);
	REQUIRE(vd__steer_ring_next(&r, &rec));
	CHECK_EQ(((const uint8_t *)rec.sample)[0], 2);
	fake_rb_close(&f);
}

TEST(arm_reports_a_record_that_slipped_in)
{
	struct fake_rb f;
	struct vd__steer_ring r;
	REQUIRE(fake_rb_open(&f) == 0);
	ring_open(&f, &r);
	fake_put(&f, 8, 1);
	vd__steer_ring_refresh(&r);
	struct vd__steer_rec rec;
	REQUIRE(vd__steer_ring_next(&r, &rec));
	/* Armed with a record lent: nothing can be returned, nothing new pending. */
	CHECK_EQ(vd__steer_ring_arm(&r), 0);
	CHECK_EQ(*f.cons, 0);
	vd__steer_ring_release(&r, rec.end, 1);
	fake_put(&f, 8, 2); /* arrives before the caller arms: the caller must not sleep */
	CHECK_EQ(vd__steer_ring_arm(&r), 1);
	CHECK_EQ(*f.cons, 16);
	fake_rb_close(&f);
}

TEST_MAIN(T(arm_reports_a_record_that_slipped_in), T(empty_ring_yields_nothing), T(records_in_order_and_release_publishes), T(busy_record_stops_the_walk),
	  T(discarded_records_are_skipped_and_returned), T(full_ring_and_wraparound_zero_copy),
	  T(drop_keeps_order_accounting), T(refresh_once_per_burst))
