/* SPDX-License-Identifier: MIT */
/*
 * A nic whose TX has no room (vd_nic_tx_alloc lends nothing, as an xdp TX ring full of frames waiting for
 * completion does): every frame the engine could not hand over must go out on a later progress pass, with
 * nothing lost and nothing counted as a retransmission: data frames, pure acks and pull requests.
 *
 * The sim backend's TX never runs out, so the test wraps the endpoints' nics (msg_nic_wrap.h: tx_alloc
 * refuses while `refuse` is set). Before
 * the fix each refused frame waited for a retransmission timeout (10 ms before the first RTT sample) and
 * was counted as a retransmission; here everything completes within a few hundred microseconds of the nic
 * having room again.
 */
#include "harness.h"
#include "msg_sim_util.h"

#include "msg_nic_wrap.h"

#define US 1000ull
#define ALL ~0ull

static int open_pair(struct pair *p, uint64_t seed, uint32_t flags)
{
	struct vd_sim_params sp;
	struct vd_ep_opts o;

	pair_default_params(&sp, seed);
	vd_ep_opts_init(&o);
	o.flags = flags;
	if (pair_open(p, &sp, &o))
		return -1;
	nic_wrap_install(p->a, 0);
	nic_wrap_install(p->b, 1);
	return 0;
}

static void close_pair(struct pair *p)
{
	nic_wrap_remove(p->a, 0);
	nic_wrap_remove(p->b, 1);
	pair_close(p);
}

static struct vd_ep_stats stats(struct vd_ep *ep)
{
	struct vd_ep_stats s;
	vd_ep_stats(ep, &s);
	return s;
}

/* Data frames refused by the sender's nic go on the next pass once it has room. */
TEST(data_frames_wait_for_room)
{
	struct pair p;
	REQUIRE(open_pair(&p, 11, VD_EP_NODELAY) == 0);

	enum { N = 8 };
	uint32_t out[N], in[N];
	struct vd_req *s[N], *r[N];
	struct vd_status st;
	for (unsigned i = 0; i < N; i++) {
		out[i] = 0x1000 + i;
		in[i] = 0;
		REQUIRE(vd_irecv(p.b, &in[i], sizeof(in[i]), i, ALL, NULL, &r[i]) == 0);
	}
	nic_wraps[0].refuse = 1;
	for (unsigned i = 0; i < N; i++)
		REQUIRE(vd_isend(p.a, &out[i], sizeof(out[i]), p.ab, i, NULL, &s[i]) == 0);
	pair_run(&p, 20 * US); /* passes while full: nothing may go, nothing may be lost */
	CHECK(nic_wraps[0].refused >= N);
	nic_wraps[0].refuse = 0;
	for (unsigned i = 0; i < N; i++) {
		CHECK(pair_wait(&p, p.b, &r[i], &st, 300 * US));
		CHECK_EQ(in[i], 0x1000 + i);
		CHECK(pair_wait(&p, p.a, &s[i], &st, 300 * US));
		CHECK_EQ(st.error, 0);
	}
	CHECK_EQ(stats(p.a).retransmits, 0);
	CHECK_EQ(stats(p.b).dup_frames, 0);
	close_pair(&p);
}

/* A pure ack the receiver's nic refused is sent as soon as there is room, not lost until the sender's RTO. */
TEST(ack_waits_for_room)
{
	struct pair p;
	REQUIRE(open_pair(&p, 12, 0) == 0);

	uint64_t v = 42, got = 0;
	struct vd_req *s, *r;
	struct vd_status st;
	REQUIRE(vd_irecv(p.b, &got, sizeof(got), 1, ALL, NULL, &r) == 0);
	nic_wraps[1].refuse = 1;
	REQUIRE(vd_isend(p.a, &v, sizeof(v), p.ab, 1, NULL, &s) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, 100 * US));
	CHECK_EQ(got, 42);
	pair_run(&p, 200 * US); /* past the 50 us delayed-ack time: b's ack is refused */
	CHECK(nic_wraps[1].refused > 0);
	CHECK(s != NULL);
	nic_wraps[1].refuse = 0;
	CHECK(pair_wait(&p, p.a, &s, &st, 100 * US));
	CHECK_EQ(stats(p.a).retransmits, 0);
	CHECK_EQ(stats(p.b).acks_sent, 1);
	close_pair(&p);
}

/* A pull request the puller's nic refused goes once there is room, without counting as re-requested. */
TEST(pull_request_waits_for_room)
{
	struct pair p;
	REQUIRE(open_pair(&p, 13, 0) == 0);

	size_t len = 200000;
	uint8_t *out = malloc(len), *in = calloc(1, len);
	REQUIRE(out && in);
	fill_pattern(out, len, 7);
	struct vd_req *s, *r;
	struct vd_status st;
	REQUIRE(vd_isend(p.a, out, len, p.ab, 9, NULL, &s) == 0);
	pair_run(&p, 50 * US); /* the announcement is at b, unexpected */
	nic_wraps[1].refuse = 1;
	REQUIRE(vd_irecv(p.b, in, len, 9, ALL, NULL, &r) == 0);
	pair_run(&p, 50 * US);
	CHECK(nic_wraps[1].refused > 0);
	nic_wraps[1].refuse = 0;
	CHECK(pair_wait(&p, p.b, &r, &st, 2000 * US));
	CHECK_EQ(st.error, 0);
	CHECK(check_pattern(in, len, 7));
	CHECK(pair_wait(&p, p.a, &s, &st, 500 * US));
	CHECK_EQ(stats(p.b).pull_retransmits, 0);
	CHECK_EQ(stats(p.a).retransmits, 0);
	free(out);
	free(in);
	close_pair(&p);
}

TEST_MAIN(T(data_frames_wait_for_room), T(ack_waits_for_room), T(pull_request_waits_for_room))
