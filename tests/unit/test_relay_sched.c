/* SPDX-License-Identifier: MIT */
/* The lab relay's impairment decisions and delay heap (src/cli/relay_sched.c). */
#include <errno.h>

#include "cli/relay_sched.h"
#include "harness.h"

#define FRAMES 200000

static struct vd__impair mk(const char *args, uint64_t seed)
{
	struct vd__netem n;
	struct vd__impair im;
	if (vd__netem_parse(args, &n, NULL, 0) != 0)
		fprintf(stderr, "bad test args '%s'\n", args);
	vd__impair_init(&im, &n, seed);
	return im;
}

/* |got - want| <= tol, all in frames */
static int near(long got, long want, long tol)
{
	if (got >= want - tol && got <= want + tol)
		return 1;
	fprintf(stderr, "got %ld, want %ld +- %ld\n", got, want, tol);
	return 0;
}

TEST(nothing_configured_passes_everything_at_once)
{
	struct vd__impair im = mk("", 1);
	struct vd__impair_copy c[2];
	for (int i = 0; i < 1000; i++) {
		REQUIRE(vd__impair_decide(&im, 100, c) == 1);
		CHECK(!c[0].corrupt && !c[0].ahead && c[0].delay_ns == 0);
	}
}

TEST(loss_rate)
{
	struct vd__impair im = mk("loss 20%", 7);
	struct vd__impair_copy c[2];
	long lost = 0;
	for (int i = 0; i < FRAMES; i++)
		lost += vd__impair_decide(&im, 100, c) == 0;
	/* binomial sd = sqrt(200000 * .2 * .8) = 179: 5 sd */
	CHECK(near(lost, FRAMES / 5, 900));
}

TEST(duplicate_rate_and_netem_interplay)
{
	struct vd__impair im = mk("duplicate 50%", 3);
	struct vd__impair_copy c[2];
	long two = 0;
	for (int i = 0; i < FRAMES; i++)
		two += vd__impair_decide(&im, 100, c) == 2;
	CHECK(near(two, FRAMES / 2, 1200));
	/* duplicate 100% + loss 100%: netem's count = 1 + 1 - 1 = 1: no clone, the frame itself goes */
	im = mk("duplicate 100% loss 100%", 3);
	CHECK_EQ(vd__impair_decide(&im, 100, c), 1);
	/* loss 100% alone: nothing */
	im = mk("loss 100%", 3);
	CHECK_EQ(vd__impair_decide(&im, 100, c), 0);
	/* duplicate 100% and no loss: always two */
	im = mk("duplicate 100%", 3);
	CHECK_EQ(vd__impair_decide(&im, 100, c), 2);
}

TEST(corruption_stays_past_the_ethernet_header)
{
	struct vd__impair im = mk("corrupt 100%", 11);
	struct vd__impair_copy c[2];
	unsigned seen_first = 0, seen_last = 0, bits = 0;
	for (int i = 0; i < 20000; i++) {
		REQUIRE(vd__impair_decide(&im, 60, c) == 1);
		REQUIRE(c[0].corrupt);
		CHECK(c[0].corrupt_off >= VD_ETH_HLEN && c[0].corrupt_off < 60);
		CHECK(c[0].corrupt_bit < 8);
		seen_first |= c[0].corrupt_off == VD_ETH_HLEN;
		seen_last |= c[0].corrupt_off == 59;
		bits |= 1u << c[0].corrupt_bit;
	}
	CHECK(seen_first && seen_last);
	CHECK_EQ(bits, 0xff);
	/* a frame with nothing past the header is never corrupted */
	REQUIRE(vd__impair_decide(&im, VD_ETH_HLEN, c) == 1);
	CHECK(!c[0].corrupt);
}

TEST(delay_and_uniform_jitter)
{
	struct vd__impair im = mk("delay 10ms 2ms", 5);
	struct vd__impair_copy c[2];
	uint64_t lo = UINT64_MAX, hi = 0;
	double sum = 0;
	for (int i = 0; i < FRAMES; i++) {
		REQUIRE(vd__impair_decide(&im, 100, c) == 1);
		if (c[0].delay_ns < lo)
			lo = c[0].delay_ns;
		if (c[0].delay_ns > hi)
			hi = c[0].delay_ns;
		sum += (double)c[0].delay_ns;
	}
	CHECK(lo >= 8000000 && lo < 8010000);
	CHECK(hi <= 12000000 && hi > 11990000);
	CHECK(near((long)(sum / FRAMES), 10000000, 20000));
	/* jitter larger than the delay: clamped at 0, never wrapped around */
	im = mk("delay 1ms 5ms", 5);
	int zeros = 0;
	for (int i = 0; i < 10000; i++) {
		REQUIRE(vd__impair_decide(&im, 100, c) == 1);
		CHECK(c[0].delay_ns <= 6000000);
		zeros += c[0].delay_ns == 0;
	}
	CHECK(zeros > 3000); /* P(delay <= 0) = 4/10 */
}

TEST(reorder_sends_a_share_ahead)
{
	struct vd__impair im = mk("delay 10ms reorder 25%", 9);
	struct vd__impair_copy c[2];
	long ahead = 0;
	for (int i = 0; i < FRAMES; i++) {
		REQUIRE(vd__impair_decide(&im, 100, c) == 1);
		if (c[0].ahead)
			ahead++;
		else
			CHECK_EQ(c[0].delay_ns, 10000000);
	}
	CHECK(near(ahead, FRAMES / 4, 1000));
}

TEST(same_seed_same_decisions)
{
	struct vd__impair a = mk("delay 1ms 1ms loss 10% duplicate 10% corrupt 10% reorder 10%", 42);
	struct vd__impair b = mk("delay 1ms 1ms loss 10% duplicate 10% corrupt 10% reorder 10%", 42);
	struct vd__impair d = mk("delay 1ms 1ms loss 10% duplicate 10% corrupt 10% reorder 10%", 43);
	struct vd__impair_copy ca[2], cb[2], cd[2];
	int differ = 0;
	for (int i = 0; i < 10000; i++) {
		unsigned na = vd__impair_decide(&a, 500, ca), nb = vd__impair_decide(&b, 500, cb);
		unsigned nd = vd__impair_decide(&d, 500, cd);
		REQUIRE(na == nb);
		for (unsigned k = 0; k < na; k++)
			CHECK(ca[k].delay_ns == cb[k].delay_ns && ca[k].ahead == cb[k].ahead &&
			      ca[k].corrupt == cb[k].corrupt && ca[k].corrupt_off == cb[k].corrupt_off &&
			      ca[k].corrupt_bit == cb[k].corrupt_bit);
		differ |= nd != na || (na && cd[0].delay_ns != ca[0].delay_ns);
	}
	CHECK(differ);
}

TEST(heap_orders_by_due_then_arrival)
{
	struct vd__dheap h;
	REQUIRE(vd__dheap_init(&h, 1000) == 0);
	struct vd__rand r;
	vd__rand_seed(&r, 1);
	for (uint32_t i = 0; i < 1000; i++)
		REQUIRE(vd__dheap_push(&h, vd__rand_below(&r, 50), i) == 0);
	CHECK_EQ(vd__dheap_push(&h, 0, 1000), -ENOBUFS);
	uint64_t last_due = 0;
	uint32_t last_slot = 0;
	int first = 1;
	while (vd__dheap_peek(&h)) {
		const struct vd__dheap_ent *e = vd__dheap_peek(&h);
		/* slots were pushed in increasing order, so within one due time they come out increasing */
		CHECK(first || e->due_ns > last_due || (e->due_ns == last_due && e->slot > last_slot));
		last_due = e->due_ns;
		last_slot = e->slot;
		first = 0;
		vd__dheap_pop(&h);
	}
	CHECK_EQ(h.n, 0);
	/* interleaved pushes and pops keep the order */
	vd__dheap_free(&h);
	REQUIRE(vd__dheap_init(&h, 10000) == 0);
	uint64_t t = 0;
	for (int round = 0; round < 10000; round++) {
		REQUIRE(vd__dheap_push(&h, t + vd__rand_below(&r, 100), (uint32_t)round) == 0);
		if (round % 3 == 2) {
			const struct vd__dheap_ent *e = vd__dheap_peek(&h);
			CHECK(e->due_ns >= t);
			t = e->due_ns;
			vd__dheap_pop(&h);
		}
	}
	vd__dheap_free(&h);
}

TEST_MAIN(T(nothing_configured_passes_everything_at_once), T(loss_rate), T(duplicate_rate_and_netem_interplay),
	  T(corruption_stays_past_the_ethernet_header), T(delay_and_uniform_jitter), T(reorder_sends_a_share_ahead),
	  T(same_seed_same_decisions), T(heap_orders_by_due_then_arrival))
