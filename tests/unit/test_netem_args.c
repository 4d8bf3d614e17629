/* SPDX-License-Identifier: MIT */
/* The --netem parser of `viaduct lab up` (src/cli/netem_args.c): tc-netem syntax, units, refusals. */
#include <errno.h>

#include "cli/netem_args.h"
#include "harness.h"

static int parse(const char *s, struct vd__netem *n)
{
	char err[256];
	return vd__netem_parse(s, n, err, sizeof(err));
}

TEST(empty_is_no_impairment)
{
	struct vd__netem n;
	REQUIRE(parse("", &n) == 0);
	CHECK_EQ(n.delay_ns, 0);
	CHECK_EQ(n.loss_ppm, 0);
	CHECK_EQ(n.limit, VD_NETEM_DEFAULT_LIMIT);
	CHECK_EQ(n.seed, VD_NETEM_DEFAULT_SEED);
	REQUIRE(parse(NULL, &n) == 0);
	REQUIRE(parse("  \t ", &n) == 0);
}

TEST(percentages)
{
	struct vd__netem n;
	REQUIRE(parse("loss 5%", &n) == 0);
	CHECK_EQ(n.loss_ppm, 50000);
	REQUIRE(parse("loss random 5", &n) == 0);
	CHECK_EQ(n.loss_ppm, 50000);
	REQUIRE(parse("duplicate 1% corrupt 0.1% loss 100%", &n) == 0);
	CHECK_EQ(n.duplicate_ppm, 10000);
	CHECK_EQ(n.corrupt_ppm, 1000);
	CHECK_EQ(n.loss_ppm, 1000000);
	REQUIRE(parse("corrupt 0.0001%", &n) == 0);
	CHECK_EQ(n.corrupt_ppm, 1);
	CHECK(parse("corrupt 0.00001%", &n) == -EINVAL); /* finer than 1 ppm: not silently 0 */
	CHECK(parse("loss 100.1%", &n) == -EINVAL);
	CHECK(parse("loss -1%", &n) == -EINVAL);
	CHECK(parse("loss 5%%", &n) == -EINVAL);
	CHECK(parse("loss 0x10", &n) == -EINVAL);
	CHECK(parse("loss inf", &n) == -EINVAL);
	CHECK(parse("loss 1e1", &n) == -EINVAL);
	CHECK(parse("loss", &n) == -EINVAL);
	CHECK(parse("loss .", &n) == -EINVAL);
	REQUIRE(parse("loss .5", &n) == 0);
	CHECK_EQ(n.loss_ppm, 5000);
}

TEST(times)
{
	struct vd__netem n;
	REQUIRE(parse("delay 1ms", &n) == 0);
	CHECK_EQ(n.delay_ns, 1000000);
	CHECK_EQ(n.jitter_ns, 0);
	REQUIRE(parse("delay 1ms 0.5ms", &n) == 0);
	CHECK_EQ(n.jitter_ns, 500000);
	REQUIRE(parse("delay 250us", &n) == 0);
	CHECK_EQ(n.delay_ns, 250000);
	REQUIRE(parse("latency 1.5s", &n) == 0);
	CHECK_EQ(n.delay_ns, 1500000000ull);
	REQUIRE(parse("delay 7", &n) == 0); /* bare number: milliseconds, as tc-netem(8) says */
	CHECK_EQ(n.delay_ns, 7000000);
	REQUIRE(parse("delay 3ns 2USEC", &n) == 0);
	CHECK_EQ(n.delay_ns, 3);
	CHECK_EQ(n.jitter_ns, 2000);
	REQUIRE(parse("delay 60s", &n) == 0);
	CHECK(parse("delay 61s", &n) == -EINVAL);
	CHECK(parse("delay 99999999999999999999s", &n) == -EINVAL);
	CHECK(parse("delay 5min", &n) == -EINVAL);
	CHECK(parse("delay", &n) == -EINVAL);
	CHECK(parse("delay ms", &n) == -EINVAL);
}

TEST(correlations_accepted_and_counted)
{
	struct vd__netem n;
	REQUIRE(parse("delay 10ms 2ms 25% loss 1% 30% duplicate 2 10 reorder 5% 50%", &n) == 0);
	CHECK_EQ(n.correlations, 4);
	CHECK_EQ(n.delay_ns, 10000000);
	CHECK_EQ(n.jitter_ns, 2000000);
	CHECK_EQ(n.loss_ppm, 10000);
	CHECK_EQ(n.duplicate_ppm, 20000);
	CHECK_EQ(n.reorder_ppm, 50000);
	/* a correlation without a jitter is not a time: refused as a keyword */
	CHECK(parse("delay 10ms 25%", &n) == -EINVAL);
}

TEST(other_keywords)
{
	struct vd__netem n;
	REQUIRE(parse("limit 50 seed 42 distribution uniform delay 1ms 1ms", &n) == 0);
	CHECK_EQ(n.limit, 50);
	CHECK_EQ(n.seed, 42);
	CHECK(parse("limit 0", &n) == -EINVAL);
	CHECK(parse("limit 100001", &n) == -EINVAL);
	CHECK(parse("seed -1", &n) == -EINVAL);
	CHECK(parse("seed 18446744073709551616", &n) == -EINVAL);
	REQUIRE(parse("seed 18446744073709551615", &n) == 0);
	CHECK(n.seed == UINT64_MAX);
}

TEST(refusals_say_why)
{
	struct vd__netem n;
	char err[256];
	const char *bad[] = {
		"reorder 25%",              /* needs delay, as in tc */
		"delay 10ms reorder 25% gap 5",
		"loss state 1 2",
		"loss gemodel 1%",
		"loss 1% ecn",
		"rate 1mbit",
		"slot 1ms",
		"distribution normal",
		"distribution",
		"frobnicate 3",
		"5%",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		int r = vd__netem_parse(bad[i], &n, err, sizeof(err));
		if (r != -EINVAL || !err[0])
			fprintf(stderr, "accepted or no reason: '%s'\n", bad[i]);
		CHECK(r == -EINVAL);
		CHECK(err[0] != '\0');
	}
	CHECK(vd__netem_parse("frobnicate", &n, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "frobnicate") != NULL);
	/* no err buffer: still refused, nothing written */
	CHECK(vd__netem_parse("frobnicate", &n, NULL, 0) == -EINVAL);
}

TEST(failure_leaves_out_untouched)
{
	struct vd__netem n = { .loss_ppm = 7 };
	CHECK(parse("loss 5% bogus", &n) == -EINVAL);
	CHECK_EQ(n.loss_ppm, 7);
}

static int same(const struct vd__netem *a, const struct vd__netem *b)
{
	return a->delay_ns == b->delay_ns && a->jitter_ns == b->jitter_ns && a->loss_ppm == b->loss_ppm &&
	       a->duplicate_ppm == b->duplicate_ppm && a->corrupt_ppm == b->corrupt_ppm &&
	       a->reorder_ppm == b->reorder_ppm && a->limit == b->limit && a->seed == b->seed;
}

TEST(format_round_trips)
{
	const char *cases[] = {
		"", "delay 5ms", "delay 1ms 0.5ms loss 20% duplicate 1% corrupt 0.1%", "delay 10ms reorder 25%",
		"loss 0.0001% limit 7 seed 0", "delay 0 3ms", "corrupt 100", "delay 8888", "delay 59999999999ns 7us",
		"delay 1.000000001s",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vd__netem a, b;
		char buf[256];
		REQUIRE(parse(cases[i], &a) == 0);
		int len = vd__netem_format(&a, buf, sizeof(buf));
		CHECK_EQ(len, strlen(buf));
		if (parse(buf, &b) != 0) {
			fprintf(stderr, "'%s' -> '%s' does not parse\n", cases[i], buf);
			CHECK(0);
			continue;
		}
		CHECK(same(&a, &b));
	}
	struct vd__netem n;
	char buf[64];
	REQUIRE(parse("loss 20%", &n) == 0);
	vd__netem_format(&n, buf, sizeof(buf));
	CHECK(strcmp(buf, "loss 20.0000%") == 0);
	/* truncation: NUL-terminated, full length returned */
	char small[6];
	int need = vd__netem_format(&n, small, sizeof(small));
	CHECK_EQ(need, strlen("loss 20.0000%"));
	CHECK(strcmp(small, "loss ") == 0);
}

TEST_MAIN(T(empty_is_no_impairment), T(percentages), T(times), T(correlations_accepted_and_counted),
	  T(other_keywords), T(refusals_say_why), T(failure_leaves_out_untouched), T(format_round_trips))
