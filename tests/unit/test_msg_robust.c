/* SPDX-License-Identifier: MIT */
/*
 * Messaging robustness over the sim backend with fixed seeds: a mixed-size workload both ways at once over
 * a link that loses, duplicates, reorders, delays and corrupts frames (every message checked: exactly
 * once, intact, in order); back-pressure when the receiver buffers nothing more; a peer that disappears
 * or restarts.
 */
#include "harness.h"
#include "msg_sim_util.h"

#include <errno.h>

#define SEC 1000000000ull
#define ALL ~0ull

/* ---- bidirectional mixed workload ---------------------------------------------------------------- */

#define OUTSTANDING 8
#define MAX_MSG (4u << 20)

struct side {
	struct vd_ep *ep;
	struct vd_peer *to;
	uint32_t nmsg;
	const size_t *sizes;   /* what this side sends */
	const size_t *expect;  /* what it receives, in order */
	uint32_t dir;          /* seed space of its messages */
	uint32_t next_send, next_recv, sends_done, recvs_done;
	struct vd_req *s[OUTSTANDING], *r[OUTSTANDING];
	uint32_t s_idx[OUTSTANDING], r_idx[OUTSTANDING];
	uint8_t *sbuf[OUTSTANDING], *rbuf[OUTSTANDING];
	int errors;
};

static void side_init(struct side *s, struct vd_ep *ep, struct vd_peer *to, uint32_t nmsg, const size_t *sizes,
		      const size_t *expect, uint32_t dir)
{
	memset(s, 0, sizeof(*s));
	s->ep = ep;
	s->to = to;
	s->nmsg = nmsg;
	s->sizes = sizes;
	s->expect = expect;
	s->dir = dir;
	for (int i = 0; i < OUTSTANDING; i++) {
		s->sbuf[i] = malloc(MAX_MSG);
		s->rbuf[i] = malloc(MAX_MSG);
	}
}

static void side_free(struct side *s)
{
	for (int i = 0; i < OUTSTANDING; i++) {
		free(s->sbuf[i]);
		free(s->rbuf[i]);
	}
}

static uint64_t msg_seed(uint32_t dir, uint32_t i)
{
	return ((uint64_t)dir << 32) | i;
}

/* Posts what it can, tests what is outstanding; returns 1 when everything is done. */
static int side_poll(struct side *s)
{
	for (int k = 0; k < OUTSTANDING; k++) {
		if (!s->s[k] && s->next_send < s->nmsg) {
			uint32_t i = s->next_send++;
			fill_pattern(s->sbuf[k], s->sizes[i], msg_seed(s->dir, i));
			/* Every 7th message synchronous: issend exercises MATCHED under loss too. */
			int rc = (i % 7 == 3 ? vd_issend : vd_isend)(s->ep, s->sbuf[k], s->sizes[i], s->to, 0x77, NULL,
								 &s->s[k]);
			if (rc)
				s->errors++;
			s->s_idx[k] = i;
		}
		if (!s->r[k] && s->next_recv < s->nmsg) {
			uint32_t i = s->next_recv++;
			if (vd_irecv(s->ep, s->rbuf[k], MAX_MSG, 0x77, ALL, NULL, &s->r[k]))
				s->errors++;
			s->r_idx[k] = i;
		}
		struct vd_status st;
		if (s->s[k] && vd_test(s->ep, &s->s[k], &st) == 1) {
			if (st.error)
				s->errors++;
			s->sends_done++;
		}
		if (s->r[k] && vd_test(s->ep, &s->r[k], &st) == 1) {
			/* Receives are posted in order and match in order: the i-th receive holds the i-th message
			 * the other side sent. */
			uint32_t i = s->r_idx[k];
			if (st.error || st.msg_len != s->expect[i] ||
			    !check_pattern(s->rbuf[k], s->expect[i], msg_seed(s->dir ^ 1, i))) {
				fprintf(stderr, "message %u of dir %u: error %d len %llu/%zu\n", i, s->dir ^ 1, st.error,
					(unsigned long long)st.msg_len, s->expect[i]);
				s->errors++;
			}
			s->recvs_done++;
		}
	}
	return s->sends_done == s->nmsg && s->recvs_done == s->nmsg;
}

/* Log-uniform sizes in [1, 4 MiB]: every size class is well represented, small ones most. */
static void make_sizes(size_t *out, uint32_t n, uint64_t seed, uint64_t *total)
{
	uint64_t x = seed | 1;
	*total = 0;
	for (uint32_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* a power of two 2^0..2^22, then uniform within [2^e, 2^(e+1)) */
		unsigned e = (unsigned)((x >> 40) % 23);
		size_t sz = ((size_t)1 << e) + (size_t)((x & 0xffffffffu) % ((uint64_t)1 << e));
		if (sz > MAX_MSG)
			sz = MAX_MSG;
		if (i % 50 == 0)
			sz = MAX_MSG; /* the largest size, regularly */
		out[i] = sz;
		*total += sz;
	}
}

static void workload(uint64_t seed, uint32_t nmsg, int lossy)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, seed);
	if (lossy) {
		sp.loss_ppm = 50000;    /* 5 % */
		sp.dup_ppm = 10000;     /* 1 % */
		sp.reorder_ppm = 50000; /* 5 % held back 30 us */
		sp.reorder_ns = 30000;
		sp.corrupt_ppm = 10000; /* 1 % */
		sp.jitter_ns = 2000;
	}
	vd_ep_opts_init(&o);
	o.peer_timeout_ms = 30000; /* far above anything loss can cause: a verdict here would be a bug */
	REQUIRE(pair_open(&p, &sp, &o) == 0);

	size_t *sa = malloc(nmsg * sizeof(size_t)), *sb = malloc(nmsg * sizeof(size_t));
	uint64_t ta, tb;
	make_sizes(sa, nmsg, seed * 31 + 1, &ta);
	make_sizes(sb, nmsg, seed * 31 + 2, &tb);
	struct side A, B;
	side_init(&A, p.a, p.ab, nmsg, sa, sb, 0);
	side_init(&B, p.b, p.ba, nmsg, sb, sa, 1);

	uint64_t end = vd_sim_now_ns(p.link) + 600 * SEC;
	int done = 0;
	while (!done && vd_sim_now_ns(p.link) < end) {
		int da = side_poll(&A), db = side_poll(&B);
		done = da && db;
		if (!done)
			pair_step(&p);
	}
	CHECK(done);
	CHECK_EQ(A.errors, 0);
	CHECK_EQ(B.errors, 0);
	CHECK_EQ(A.recvs_done, nmsg);
	CHECK_EQ(B.recvs_done, nmsg);
	/* Exactly once: nothing left over on either side. */
	pair_run(&p, SEC / 10);
	CHECK_EQ(vd_iprobe(p.a, 0, 0, NULL), 0);
	CHECK_EQ(vd_iprobe(p.b, 0, 0, NULL), 0);

	struct vd_ep_stats ea, eb;
	struct vd_sim_counters sc;
	vd_ep_stats(p.a, &ea);
	vd_ep_stats(p.b, &eb);
	vd_sim_counters(p.link, &sc);
	printf("  seed %llu: %.1f MiB each way, %u msgs, virtual %.2f s; link lost %llu dup %llu reord %llu corrupt "
	       "%llu overflow %llu; retransmits %llu+%llu, pull retransmits %llu+%llu, dups %llu+%llu\n",
	       (unsigned long long)seed, ta / 1048576.0, nmsg, (vd_sim_now_ns(p.link) - 1000000000ull) / 1e9,
	       (unsigned long long)sc.lost, (unsigned long long)sc.duplicated, (unsigned long long)sc.reordered,
	       (unsigned long long)sc.corrupted, (unsigned long long)sc.overflowed, (unsigned long long)ea.retransmits,
	       (unsigned long long)eb.retransmits, (unsigned long long)ea.pull_retransmits,
	       (unsigned long long)eb.pull_retransmits, (unsigned long long)ea.dup_frames,
	       (unsigned long long)eb.dup_frames);
	if (lossy) {
		CHECK(sc.lost > 0 && sc.duplicated > 0 && sc.reordered > 0 && sc.corrupted > 0);
		CHECK(ea.retransmits + eb.retransmits + ea.pull_retransmits + eb.pull_retransmits > 0);
	}
	CHECK_EQ(ea.peers_gone + eb.peers_gone, 0);
	side_free(&A);
	side_free(&B);
	free(sa);
	free(sb);
	pair_close(&p);
}

TEST(clean_link_mixed_both_ways)
{
	workload(21, 200, 0);
}

TEST(lossy_link_mixed_both_ways)
{
	workload(22, 600, 1);
}

TEST(lossy_link_second_seed)
{
	workload(23, 300, 1);
}

/* ---- back-pressure -------------------------------------------------------------------------------- */

TEST(backpressure_never_drops)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, 30);
	vd_ep_opts_init(&o);
	o.unexpected_max = 100000; /* about three 30 KB messages */
	o.peer_timeout_ms = 2000;
	REQUIRE(pair_open(&p, &sp, &o) == 0);

	enum { N = 60, LEN = 30000 };
	static uint8_t out[N][LEN], in[N][LEN];
	struct vd_req *s[N], *r[N];
	for (int i = 0; i < N; i++) {
		fill_pattern(out[i], LEN, 300 + i);
		REQUIRE(vd_isend(p.a, out[i], LEN, p.ab, 5, NULL, &s[i]) == 0);
	}
	/* No receive for 10 virtual seconds, five times the peer timeout: the stream stops, probes keep the
	 * association alive, nothing is lost. */
	pair_run(&p, 10 * SEC);
	int done = 0;
	for (int i = 0; i < N; i++)
		done += s[i] && vd_test(p.a, &s[i], NULL) == 1;
	CHECK(done >= 2 && done < N);
	struct vd_ep_stats eb;
	vd_ep_stats(p.b, &eb);
	CHECK(eb.backpressure > 0);
	CHECK_EQ(eb.peers_gone, 0);
	CHECK_EQ(vd_peer_state(p.ab), 0);
	for (int i = 0; i < N; i++)
		REQUIRE(vd_irecv(p.b, in[i], LEN, 5, ALL, NULL, &r[i]) == 0);
	for (int i = 0; i < N; i++) {
		struct vd_status st;
		CHECK(pair_wait(&p, p.b, &r[i], &st, 10 * SEC));
		CHECK_EQ(st.error, 0);
		CHECK(check_pattern(in[i], LEN, 300 + i));
	}
	for (int i = 0; i < N; i++)
		if (s[i])
			CHECK(pair_wait(&p, p.a, &s[i], NULL, 10 * SEC));
	pair_close(&p);
}

/* ---- peers that go away --------------------------------------------------------------------------- */

TEST(peer_disappears)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, 40);
	vd_ep_opts_init(&o);
	o.peer_timeout_ms = 2000;
	REQUIRE(pair_open(&p, &sp, &o) == 0);

	static uint8_t big[8u << 20], small[100], in[100];
	struct vd_req *s_rndv, *s_sync, *r_pull, *s_eager;
	struct vd_status st;
	/* b matched a large message and is pulling it; a has a synchronous send b never matches and b has
	 * a large send to a being pulled. Then a vanishes. */
	REQUIRE(vd_irecv(p.b, big, sizeof(big), 1, ALL, NULL, &r_pull) == 0);
	REQUIRE(vd_isend(p.a, big, sizeof(big), p.ab, 1, NULL, &s_rndv) == 0);
	REQUIRE(vd_issend(p.a, small, sizeof(small), p.ab, 2, NULL, &s_sync) == 0);
	for (int i = 0; i < 1000; i++) {
		struct vd_ep_stats eb;
		vd_ep_stats(p.b, &eb);
		if (eb.pull_requests)
			break;
		pair_step(&p);
	}
	CHECK(r_pull && vd_test(p.b, &r_pull, NULL) == 0); /* still in progress */
	vd_ep_close(p.a);
	p.a = NULL;
	uint64_t t0 = vd_sim_now_ns(p.link);
	REQUIRE(vd_isend(p.b, small, sizeof(small), p.ba, 3, NULL, &s_eager) == 0);
	CHECK(pair_wait(&p, p.b, &r_pull, &st, 20 * SEC));
	CHECK_EQ(st.error, -ETIMEDOUT);
	CHECK(pair_wait(&p, p.b, &s_eager, &st, 20 * SEC));
	CHECK_EQ(st.error, -ETIMEDOUT);
	uint64_t took = vd_sim_now_ns(p.link) - t0;
	/* Bound: peer_timeout plus one maximal backed-off retransmission interval plus driver steps. */
	CHECK(took <= 2 * SEC + SEC + SEC / 10);
	struct vd_peer *gone;
	int err;
	CHECK_EQ(vd_ep_peer_gone(p.b, &gone, &err), 1);
	CHECK(gone == p.ba);
	CHECK_EQ(err, -ETIMEDOUT);
	CHECK_EQ(vd_ep_peer_gone(p.b, &gone, &err), 0);
	CHECK_EQ(vd_peer_state(p.ba), -ETIMEDOUT);
	CHECK_EQ(vd_isend(p.b, small, 1, p.ba, 3, NULL, &s_eager), -ETIMEDOUT);
	(void)in;
	pair_close(&p);
}

TEST(peer_restarts)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, 41);
	vd_ep_opts_init(&o);
	o.peer_timeout_ms = 5000;
	REQUIRE(pair_open(&p, &sp, &o) == 0);

	uint32_t v = 1, in = 0;
	struct vd_req *s_sync, *r;
	struct vd_status st;
	REQUIRE(vd_issend(p.a, &v, 4, p.ab, 2, NULL, &s_sync) == 0);
	pair_run(&p, SEC / 100);
	CHECK(s_sync && vd_test(p.a, &s_sync, NULL) == 0);
	/* b restarts on the same address (a new incarnation) and talks to a. */
	vd_ep_close(p.b);
	vd_sim_advance(p.link, 1000);
	struct vd_ep_opts ob = o;
	ob.nic.backend = VD_BACKEND_SIM;
	ob.nic.sim = p.link;
	ob.nic.local = "10.0.0.2:5000";
	REQUIRE(vd_ep_open(&p.b, &ob) == 0);
	REQUIRE(vd_peer_resolve(p.b, "10.0.0.1:5000", &p.ba) == 0);
	struct vd_req *s2;
	uint32_t hello = 99;
	REQUIRE(vd_isend(p.b, &hello, 4, p.ba, 9, NULL, &s2) == 0);
	REQUIRE(vd_irecv(p.a, &in, 4, 9, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.a, &s_sync, &st, SEC));
	CHECK_EQ(st.error, -ECONNRESET);
	CHECK(pair_wait(&p, p.a, &r, &st, SEC));
	CHECK_EQ(st.error, 0);
	CHECK_EQ(in, 99);
	CHECK(st.peer != p.ab);               /* a new peer handle for the new incarnation */
	CHECK_EQ(vd_peer_state(p.ab), -ECONNRESET);
	CHECK(pair_wait(&p, p.b, &s2, &st, SEC));
	CHECK_EQ(st.error, 0);
	pair_close(&p);
}

TEST_MAIN(T(clean_link_mixed_both_ways), T(lossy_link_mixed_both_ways), T(lossy_link_second_seed),
	  T(backpressure_never_drops), T(peer_disappears), T(peer_restarts))
