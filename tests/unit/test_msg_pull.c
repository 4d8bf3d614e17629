/* SPDX-License-Identifier: MIT */
/*
 * Rendezvous pulls with many messages in flight (docs/msg-protocol.md, rendezvous):
 *   - what all pulls from one peer ask for at once is bounded in bytes (1 MiB), whatever the number of
 *     messages: 16 x 1 MiB messages received at once never overrun a receive queue of 1000 frames (1.4 MB
 *     at MTU 1500), where 16 x pull_blocks x 64 KiB would be 4 MiB;
 *   - a sender that falls behind (its process stalled past the puller's RTO) answers the puller's
 *     re-requests and the requests they repeat once: no frame is sent twice;
 *   - a pull reply's checksum is verified while its data is copied into the receive buffer: a corrupted
 *     reply is dropped and counted, its bytes in a region still wanted are overwritten by the good reply,
 *     and one whose header names a frame already received writes nothing there.
 */
#include "harness.h"
#include "msg_sim_util.h"

#include "lib/nic/nic_internal.h"

#define US 1000ull
#define MS 1000000ull
#define ALL ~0ull
#define BIG (1u << 20)
#define NBIG 16

static struct vd_ep_stats stats(struct vd_ep *ep)
{
	struct vd_ep_stats s;
	vd_ep_stats(ep, &s);
	return s;
}

struct bulk {
	uint8_t *out[NBIG], *in[NBIG];
	struct vd_req *s[NBIG], *r[NBIG];
	unsigned n;
};

/* Posts n receives on b, then n sends of BIG on a (each a rendezvous). */
static int bulk_start(struct pair *p, struct bulk *x, unsigned n)
{
	memset(x, 0, sizeof(*x));
	x->n = n;
	for (unsigned i = 0; i < n; i++) {
		x->out[i] = malloc(BIG);
		x->in[i] = calloc(1, BIG);
		if (!x->out[i] || !x->in[i])
			return -1;
		fill_pattern(x->out[i], BIG, 1000 + i);
		if (vd_irecv(p->b, x->in[i], BIG, 7000 + i, ALL, NULL, &x->r[i]) ||
		    vd_isend(p->a, x->out[i], BIG, p->ab, 7000 + i, NULL, &x->s[i]))
			return -1;
	}
	return 0;
}

/* Drives both sides until every receive and send completed (at most max_ns); 1 if all did, intact. */
static int bulk_finish(struct pair *p, struct bulk *x, uint64_t max_ns)
{
	struct vd_status st;
	int ok = 1;

	for (unsigned i = 0; i < x->n; i++) {
		ok &= pair_wait(p, p->b, &x->r[i], &st, max_ns) && st.error == 0 && st.msg_len == BIG &&
		      check_pattern(x->in[i], BIG, 1000 + i);
		ok &= pair_wait(p, p->a, &x->s[i], &st, max_ns) && st.error == 0;
	}
	return ok;
}

static void bulk_free(struct bulk *x)
{
	for (unsigned i = 0; i < NBIG; i++) {
		free(x->out[i]);
		free(x->in[i]);
	}
}

TEST(many_pulls_stay_within_peer_budget)
{
	struct vd_sim_params sp;
	struct vd_sim_counters c;
	struct pair p;
	struct bulk x;

	pair_default_params(&sp, 11);
	sp.queue_frames = 1000;
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	REQUIRE(bulk_start(&p, &x, NBIG) == 0);
	CHECK(bulk_finish(&p, &x, 2000 * MS));
	vd_sim_counters(p.link, &c);
	CHECK_EQ(c.overflowed, 0);
	CHECK_EQ(stats(p.b).pull_retransmits, 0);
	CHECK_EQ(stats(p.b).dup_frames, 0);
	bulk_free(&x);
	pair_close(&p);
}

TEST(stalled_sender_sends_no_frame_twice)
{
	struct vd_sim_params sp;
	struct vd_status st;
	struct pair p;
	struct bulk x;

	pair_default_params(&sp, 12);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	REQUIRE(bulk_start(&p, &x, 1) == 0);
	/* Until the receiver has matched the announcement and sent its first pull requests. */
	for (int i = 0; i < 100000 && stats(p.b).pull_requests == 0; i++)
		pair_step(&p);
	REQUIRE(stats(p.b).pull_requests > 0);
	/* The sender stalls for 50 ms, well past the RTO (rto_init 10 ms, backoff doubling): the puller asks
	 * again for every block, several times, while the first requests still wait at the sender. */
	uint64_t end = vd_sim_now_ns(p.link) + 50 * MS;
	while (vd_sim_now_ns(p.link) < end)
		if (!vd_ep_progress(p.b))
			vd_sim_advance(p.link, 10 * US);
	CHECK(stats(p.b).pull_retransmits > 0);
	CHECK(pair_wait(&p, p.b, &x.r[0], &st, 2000 * MS) && st.error == 0 && check_pattern(x.in[0], BIG, 1000));
	CHECK(pair_wait(&p, p.a, &x.s[0], &st, 2000 * MS) && st.error == 0);
	/* Every reply frame the receiver got was one it still wanted. */
	CHECK_EQ(stats(p.b).dup_frames, 0);
	bulk_free(&x);
	pair_close(&p);
}

/* --- corrupted pull replies ---------------------------------------------------------------------- */

#define W_PULL_REPLY 4      /* wire type (src/lib/msg/wire.h) */
#define W_FRAME_OFF (36 + 4) /* u32 frame index of a PULL_REPLY: header, then pull_id */
#define W_DATA_OFF (36 + 8)

static struct vd_nic_ops tamper_ops;
static const struct vd_nic_ops *tamper_orig;
static unsigned tamper_sent;

static uint32_t ld32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Sends a copy of reply f, changed by how: 0 flips one data byte, 1 names the previous frame (already
 * received: replies go in order on this link) and inverts every data byte. The checksum is left stale. */
static void tamper_inject(struct vd_nic *nic, const struct vd_frame *f, int how)
{
	struct vd_frame e;

	if (tamper_orig->tx_alloc(nic, &e, 1) != 1)
		return;
	memcpy(e.data, f->data, f->len);
	e.len = f->len;
	e.peer = f->peer;
	uint8_t *b = e.data;
	if (how == 0) {
		b[W_DATA_OFF + 100] ^= 0x5a;
	} else {
		uint32_t fr = ld32be(b + W_FRAME_OFF) - 1;
		b[W_FRAME_OFF] = (uint8_t)(fr >> 24);
		b[W_FRAME_OFF + 1] = (uint8_t)(fr >> 16);
		b[W_FRAME_OFF + 2] = (uint8_t)(fr >> 8);
		b[W_FRAME_OFF + 3] = (uint8_t)fr;
		for (uint32_t i = W_DATA_OFF; i < e.len; i++)
			b[i] = (uint8_t)~b[i];
	}
	if (tamper_orig->tx_burst(nic, &e, 1) == 1)
		tamper_sent++;
	else
		tamper_orig->tx_abort(nic, &e, 1);
}

/* Every 5th reply is preceded by a corrupted copy of itself, every 5th (other) one followed by a copy
 * claiming the frame before it. */
static int tamper_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *b = f[i].data;
		if (f[i].len > W_DATA_OFF + 100 && b[3] == W_PULL_REPLY && ld32be(b + W_FRAME_OFF) % 5 == 0)
			tamper_inject(nic, &f[i], 0);
	}
	int q = tamper_orig->tx_burst(nic, f, n);
	for (int i = 0; i < q; i++) {
		const uint8_t *b = f[i].data;
		uint32_t fr = f[i].len > W_DATA_OFF ? ld32be(b + W_FRAME_OFF) : 0;
		if (f[i].len > W_DATA_OFF + 100 && b[3] == W_PULL_REPLY && fr % 5 == 1)
			tamper_inject(nic, &f[i], 1);
	}
	return q;
}

TEST(corrupted_pull_replies_never_reach_the_buffer)
{
	struct vd_sim_params sp;
	struct pair p;
	struct bulk x;

	pair_default_params(&sp, 13);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	struct vd_nic *nic = vd_ep_nic(p.a);
	tamper_orig = nic->ops;
	tamper_ops = *nic->ops;
	tamper_ops.tx_burst = tamper_tx_burst;
	tamper_sent = 0;
	nic->ops = &tamper_ops;
	REQUIRE(bulk_start(&p, &x, 2) == 0);
	CHECK(bulk_finish(&p, &x, 2000 * MS));
	nic->ops = tamper_orig;
	/* ~1/5 of the 2 x 735 replies of each kind. */
	CHECK(tamper_sent > 500);
	CHECK_EQ(stats(p.b).malformed, tamper_sent);
	CHECK_EQ(stats(p.b).dup_frames, 0);
	CHECK_EQ(stats(p.b).pull_retransmits, 0);
	bulk_free(&x);
	pair_close(&p);
}

TEST_MAIN(T(many_pulls_stay_within_peer_budget), T(stalled_sender_sends_no_frame_twice),
	  T(corrupted_pull_replies_never_reach_the_buffer))
