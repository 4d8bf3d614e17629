/* SPDX-License-Identifier: MIT */
/*
 * The retransmission timer (docs/msg-protocol.md section 4, RFC 6298 section 5):
 *   - a receiver that stalls (does not run its progress for longer than the RTO, as a process descheduled
 *     on a loaded machine does) while a window of frames waits for it costs one retransmission per
 *     expiry, not one per frame in flight: only the oldest frame is resent (5.4);
 *   - an ack of new data restarts the timer (5.3): frames a receiver is working through are not resent;
 *   - a whole window lost is still recovered in about one RTO: after the expiry, a partial ack makes
 *     the other frames sent before it go again (RFC 6582's partial acks), not one per backed-off RTO.
 */
#include "harness.h"
#include "msg_nic_wrap.h"
#include "msg_sim_util.h"

#define US 1000ull
#define MS 1000000ull
#define ALL ~0ull
#define MSG (32u << 10) /* an eager message of 24 frames at MTU 1500 */
#define NMSG 2

static struct vd_ep_stats stats(struct vd_ep *ep)
{
	struct vd_ep_stats s;
	vd_ep_stats(ep, &s);
	return s;
}

/* A message each way first, so that the RTO comes from a measured round trip (rto_min, 2 ms). */
static void warm_up(struct pair *p)
{
	uint32_t v = 1, w = 0;
	struct vd_req *s, *r;
	struct vd_status st;

	REQUIRE(vd_irecv(p->b, &w, sizeof(w), 100, ALL, NULL, &r) == 0);
	REQUIRE(vd_isend(p->a, &v, sizeof(v), p->ab, 100, NULL, &s) == 0);
	CHECK(pair_wait(p, p->b, &r, &st, MS));
	CHECK(pair_wait(p, p->a, &s, &st, MS));
}

/* Drives only a (b is stalled) for ns of virtual time. */
static void run_a_only(struct pair *p, uint64_t ns)
{
	uint64_t end = vd_sim_now_ns(p->link) + ns;

	while (vd_sim_now_ns(p->link) < end)
		if (!vd_ep_progress(p->a))
			vd_sim_advance(p->link, 10 * US);
}

struct stream {
	uint8_t *out, *in[NMSG];
	struct vd_req *s[NMSG], *r[NMSG];
};

static int stream_start(struct pair *p, struct stream *x)
{
	memset(x, 0, sizeof(*x));
	x->out = malloc(MSG);
	if (!x->out)
		return -1;
	fill_pattern(x->out, MSG, 5);
	for (unsigned i = 0; i < NMSG; i++) {
		x->in[i] = calloc(1, MSG);
		if (!x->in[i] || vd_irecv(p->b, x->in[i], MSG, i, ALL, NULL, &x->r[i]) ||
		    vd_isend(p->a, x->out, MSG, p->ab, i, NULL, &x->s[i]))
			return -1;
	}
	return 0;
}

static void stream_finish(struct pair *p, struct stream *x, uint64_t max_ns)
{
	struct vd_status st;

	for (unsigned i = 0; i < NMSG; i++) {
		CHECK(pair_wait(p, p->b, &x->r[i], &st, max_ns));
		CHECK(check_pattern(x->in[i], MSG, 5));
		CHECK(pair_wait(p, p->a, &x->s[i], &st, max_ns));
		free(x->in[i]);
	}
	free(x->out);
}

TEST(stalled_receiver_costs_one_retransmission)
{
	struct pair p;
	struct vd_sim_params sp;
	struct stream x;

	pair_default_params(&sp, 31);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	warm_up(&p);
	REQUIRE(stream_start(&p, &x) == 0);
	/* 48 frames reach b and wait there; the RTO (2 ms) expires once within 5 ms (the next, backed off
	 * to 4 ms, would be at 6 ms). */
	run_a_only(&p, 5 * MS);
	stream_finish(&p, &x, 2 * MS);
	CHECK_EQ(stats(p.a).retransmits, 1);
	CHECK_EQ(stats(p.b).dup_frames, 1);
	pair_close(&p);
}

TEST(lost_window_recovered_after_one_rto)
{
	struct pair p;
	struct vd_sim_params sp;
	struct stream x;

	pair_default_params(&sp, 32);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	warm_up(&p);
	struct nic_wrap *w = nic_wrap_install(p.a, 0);
	w->drop = 1;
	uint64_t t0 = vd_sim_now_ns(p.link);
	REQUIRE(stream_start(&p, &x) == 0);
	w->drop = 0;
	CHECK(w->dropped >= 40); /* the whole stream: 48 frames, within the window b advertised */
	stream_finish(&p, &x, 20 * MS);
	/* One RTO (2 ms), then the rest in a few round trips: well under a second RTO. */
	uint64_t took = vd_sim_now_ns(p.link) - t0;
	CHECK(took < 4 * MS);
	nic_wrap_remove(p.a, 0);
	pair_close(&p);
}

TEST_MAIN(T(stalled_receiver_costs_one_retransmission), T(lost_window_recovered_after_one_rto))
