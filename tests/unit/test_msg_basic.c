/* SPDX-License-Identifier: MIT */
/* Messaging semantics over a clean sim link (fixed seed): send/recv, matching, order, unexpected messages,
 * truncation, synchronous sends, cancel, probe, iovecs, the eager/rendezvous boundary, a large message. */
#include "harness.h"
#include "msg_sim_util.h"

#include <errno.h>

#define SEC 1000000000ull
#define ALL ~0ull

TEST(send_recv_small)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 1);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	char out[] = "hello, viaduct", in[64] = { 0 };
	struct vd_req *s, *r;
	struct vd_status ss, rs;
	int ctx_s, ctx_r;
	REQUIRE(vd_irecv(p.b, in, sizeof(in), 7, ALL, &ctx_r, &r) == 0);
	REQUIRE(vd_isend(p.a, out, sizeof(out), p.ab, 7, &ctx_s, &s) == 0);
	CHECK(vd_req_context(s) == &ctx_s);
	CHECK(pair_wait(&p, p.b, &r, &rs, SEC));
	CHECK(pair_wait(&p, p.a, &s, &ss, SEC));
	CHECK(r == NULL && s == NULL);
	CHECK_EQ(rs.error, 0);
	CHECK(rs.peer == p.ba);
	CHECK_EQ(rs.match, 7);
	CHECK_EQ(rs.msg_len, sizeof(out));
	CHECK_EQ(rs.xfer_len, sizeof(out));
	CHECK(rs.context == &ctx_r);
	CHECK(!rs.is_send);
	CHECK(strcmp(in, out) == 0);
	CHECK_EQ(ss.error, 0);
	CHECK(ss.is_send);
	CHECK(ss.peer == p.ab);
	CHECK(ss.context == &ctx_s);
	pair_close(&p);
}

TEST(match_and_mask)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 2);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	uint32_t v1 = 1, v2 = 2, v3 = 3, got_any = 0, got_exact = 0, got_late = 0;
	struct vd_req *ra, *re, *rl, *s1, *s2, *s3;
	struct vd_status st;
	/* Any match bits 0x1?? (mask 0xf00), and exactly 0x5. */
	REQUIRE(vd_irecv(p.b, &got_any, 4, 0x100, 0xf00, NULL, &ra) == 0);
	REQUIRE(vd_irecv(p.b, &got_exact, 4, 0x5, ALL, NULL, &re) == 0);
	REQUIRE(vd_isend(p.a, &v1, 4, p.ab, 0x5, NULL, &s1) == 0);
	REQUIRE(vd_isend(p.a, &v2, 4, p.ab, 0x1ab, NULL, &s2) == 0);
	REQUIRE(vd_isend(p.a, &v3, 4, p.ab, 0x207, NULL, &s3) == 0); /* matches neither: unexpected */
	CHECK(pair_wait(&p, p.b, &re, &st, SEC));
	CHECK_EQ(st.match, 0x5);
	CHECK_EQ(got_exact, 1);
	CHECK(pair_wait(&p, p.b, &ra, &st, SEC));
	CHECK_EQ(st.match, 0x1ab);
	CHECK_EQ(got_any, 2);
	/* mask 0 matches everything. */
	REQUIRE(vd_irecv(p.b, &got_late, 4, 0, 0, NULL, &rl) == 0);
	CHECK(pair_wait(&p, p.b, &rl, &st, SEC));
	CHECK_EQ(st.match, 0x207);
	CHECK_EQ(got_late, 3);
	CHECK(pair_wait(&p, p.a, &s1, NULL, SEC));
	CHECK(pair_wait(&p, p.a, &s2, NULL, SEC));
	CHECK(pair_wait(&p, p.a, &s3, NULL, SEC));
	pair_close(&p);
}

/* Messages of one sender that match the same receive are matched in send order, across eager and
 * rendezvous sizes, whether the receives were posted before or after arrival. */
static void order_run(int post_first)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 3);
	sp.reorder_ppm = 200000; /* the network reorders a lot; matching must not */
	sp.reorder_ns = 40000;
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	enum { N = 40 };
	static uint8_t sbuf[N][50000], rbuf[N][50000];
	size_t len[N];
	struct vd_req *s[N], *r[N];
	for (int i = 0; i < N; i++) {
		len[i] = (i % 3 == 0) ? 40000 + i : (i % 3 == 1 ? 10 + i : 1400 + i);
		fill_pattern(sbuf[i], len[i], 100 + i);
	}
	if (post_first)
		for (int i = 0; i < N; i++)
			REQUIRE(vd_irecv(p.b, rbuf[i], sizeof(rbuf[i]), 42, ALL, NULL, &r[i]) == 0);
	for (int i = 0; i < N; i++)
		REQUIRE(vd_isend(p.a, sbuf[i], len[i], p.ab, 42, NULL, &s[i]) == 0);
	if (!post_first) {
		pair_run(&p, SEC / 100);
		for (int i = 0; i < N; i++)
			REQUIRE(vd_irecv(p.b, rbuf[i], sizeof(rbuf[i]), 42, ALL, NULL, &r[i]) == 0);
	}
	for (int i = 0; i < N; i++) {
		struct vd_status st;
		REQUIRE(pair_wait(&p, p.b, &r[i], &st, 5 * SEC));
		CHECK_EQ(st.msg_len, len[i]);
		CHECK(check_pattern(rbuf[i], len[i], 100 + i));
	}
	for (int i = 0; i < N; i++)
		CHECK(pair_wait(&p, p.a, &s[i], NULL, 5 * SEC));
	pair_close(&p);
}

TEST(order_posted_first)
{
	order_run(1);
}

TEST(order_unexpected_first)
{
	order_run(0);
}

TEST(unexpected_probe_then_late_recv)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 4);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	uint8_t a[300], big[100000], ra[300], rbig[100000];
	fill_pattern(a, sizeof(a), 1);
	fill_pattern(big, sizeof(big), 2);
	struct vd_req *s1, *s2, *r;
	struct vd_status st;
	CHECK_EQ(vd_iprobe(p.b, 9, ALL, &st), 0);
	REQUIRE(vd_isend(p.a, a, sizeof(a), p.ab, 9, NULL, &s1) == 0);
	REQUIRE(vd_isend(p.a, big, sizeof(big), p.ab, 10, NULL, &s2) == 0);
	/* The eager one completes at the sender without any receive posted (buffered at b). */
	CHECK(pair_wait(&p, p.a, &s1, &st, SEC));
	CHECK_EQ(vd_iprobe(p.b, 9, ALL, &st), 1);
	CHECK_EQ(st.msg_len, sizeof(a));
	CHECK(st.peer == p.ba);
	CHECK_EQ(vd_iprobe(p.b, 10, ALL, &st), 1);
	CHECK_EQ(st.msg_len, sizeof(big));
	CHECK_EQ(vd_iprobe(p.b, 11, ALL, &st), 0);
	/* The rendezvous one cannot complete before a receive pulls it. */
	pair_run(&p, SEC / 10);
	CHECK(s2 != NULL && vd_test(p.a, &s2, NULL) == 0);

	REQUIRE(vd_irecv(p.b, rbig, sizeof(rbig), 10, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK(check_pattern(rbig, sizeof(big), 2));
	CHECK(pair_wait(&p, p.a, &s2, &st, SEC));
	REQUIRE(vd_irecv(p.b, ra, sizeof(ra), 9, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK(check_pattern(ra, sizeof(a), 1));
	CHECK_EQ(vd_iprobe(p.b, 0, 0, &st), 0);
	/* Blocking probe: b waits (advancing the virtual clock) for a frame a has already sent. */
	REQUIRE(vd_isend(p.a, a, 5, p.ab, 77, NULL, &s1) == 0);
	CHECK_EQ(vd_probe(p.b, 77, ALL, &st, 100), 1);
	CHECK_EQ(st.msg_len, 5);
	pair_close(&p);
}

TEST(truncation)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 5);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	static uint8_t out[200000], in[100000];
	fill_pattern(out, sizeof(out), 5);
	size_t sizes[] = { 100, 5000, 200000 };
	size_t caps[] = { 40, 1000, 50000 };
	for (int i = 0; i < 3; i++) {
		struct vd_req *s, *r;
		struct vd_status st;
		memset(in, 0, sizeof(in));
		REQUIRE(vd_irecv(p.b, in, caps[i], 1, ALL, NULL, &r) == 0);
		REQUIRE(vd_isend(p.a, out, sizes[i], p.ab, 1, NULL, &s) == 0);
		CHECK(pair_wait(&p, p.b, &r, &st, SEC));
		CHECK_EQ(st.error, -EMSGSIZE);
		CHECK_EQ(st.msg_len, sizes[i]);
		CHECK_EQ(st.xfer_len, caps[i]);
		CHECK(memcmp(in, out, caps[i]) == 0);
		CHECK_EQ(in[caps[i]], 0);
		CHECK(pair_wait(&p, p.a, &s, &st, SEC));
		CHECK_EQ(st.error, 0);
	}
	pair_close(&p);
}

TEST(issend_completes_when_matched)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 6);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	uint32_t v = 0xabcd, in = 0;
	struct vd_req *ss, *s, *r;
	struct vd_status st;
	REQUIRE(vd_issend(p.a, &v, 4, p.ab, 3, NULL, &ss) == 0);
	REQUIRE(vd_isend(p.a, &v, 4, p.ab, 4, NULL, &s) == 0);
	CHECK(pair_wait(&p, p.a, &s, &st, SEC)); /* the plain send completes without a receive */
	pair_run(&p, SEC / 10);
	CHECK(vd_test(p.a, &ss, NULL) == 0);     /* the synchronous one does not */
	REQUIRE(vd_irecv(p.b, &in, 4, 3, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.a, &ss, &st, SEC));
	CHECK_EQ(st.error, 0);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK_EQ(in, 0xabcd);
	/* Posted first: it completes too. */
	REQUIRE(vd_irecv(p.b, &in, 4, 5, ALL, NULL, &r) == 0);
	REQUIRE(vd_issend(p.a, &v, 4, p.ab, 5, NULL, &ss) == 0);
	CHECK(pair_wait(&p, p.a, &ss, &st, SEC));
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	/* And the unmatched tag-4 message is still there. */
	CHECK_EQ(vd_iprobe(p.b, 4, ALL, &st), 1);
	pair_close(&p);
}

TEST(cancel)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 7);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	uint32_t v[3] = { 1, 2, 3 }, in = 0;
	struct vd_req *r, *s0, *s1, *s2;
	struct vd_status st;
	/* A posted receive cancels and completes with -ECANCELED. */
	REQUIRE(vd_irecv(p.b, &in, 4, 1, ALL, NULL, &r) == 0);
	CHECK_EQ(vd_cancel(p.b, r), 0);
	CHECK(vd_test(p.b, &r, &st) == 1);
	CHECK_EQ(st.error, -ECANCELED);
	/* A send held back for combining (one is in flight) has not left: it cancels. The first cannot. */
	REQUIRE(vd_isend(p.a, &v[0], 4, p.ab, 1, NULL, &s0) == 0);
	REQUIRE(vd_isend(p.a, &v[1], 4, p.ab, 1, NULL, &s1) == 0);
	CHECK_EQ(vd_cancel(p.a, s0), -EBUSY);
	CHECK_EQ(vd_cancel(p.a, s1), 0);
	REQUIRE(vd_isend(p.a, &v[2], 4, p.ab, 1, NULL, &s2) == 0);
	CHECK(pair_wait(&p, p.a, &s1, &st, SEC));
	CHECK_EQ(st.error, -ECANCELED);
	REQUIRE(vd_irecv(p.b, &in, 4, 1, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK_EQ(in, 1);
	REQUIRE(vd_irecv(p.b, &in, 4, 1, ALL, NULL, &r) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK_EQ(in, 3);
	/* A matched receive is too late to cancel. */
	CHECK(pair_wait(&p, p.a, &s0, &st, SEC));
	CHECK(pair_wait(&p, p.a, &s2, &st, SEC));
	static uint8_t big[300000];
	REQUIRE(vd_irecv(p.b, big, sizeof(big), 8, ALL, NULL, &r) == 0);
	REQUIRE(vd_isend(p.a, big, sizeof(big), p.ab, 8, NULL, &s0) == 0);
	for (int i = 0; i < 50 && r; i++) {
		struct vd_ep_stats es;
		vd_ep_stats(p.b, &es);
		if (es.pull_requests)
			break;
		pair_step(&p);
	}
	CHECK_EQ(vd_cancel(p.b, r), -EBUSY);
	CHECK(pair_wait(&p, p.b, &r, &st, SEC));
	CHECK_EQ(st.error, 0);
	CHECK(pair_wait(&p, p.a, &s0, &st, SEC));
	pair_close(&p);
}

TEST(eager_rendezvous_boundary)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, 8);
	vd_ep_opts_init(&o);
	o.eager_max = 20000;
	REQUIRE(pair_open(&p, &sp, &o) == 0);

	static uint8_t out[20001], in[20001];
	size_t sizes[] = { 0, 1, 19999, 20000, 20001 };
	for (int i = 0; i < 5; i++) {
		struct vd_ep_stats before, after;
		struct vd_req *s, *r;
		struct vd_status st;
		fill_pattern(out, sizes[i], 80 + i);
		memset(in, 0, sizeof(in));
		vd_ep_stats(p.b, &before);
		REQUIRE(vd_irecv(p.b, in, sizeof(in), 2, ALL, NULL, &r) == 0);
		REQUIRE(vd_isend(p.a, out, sizes[i], p.ab, 2, NULL, &s) == 0);
		CHECK(pair_wait(&p, p.b, &r, &st, SEC));
		CHECK_EQ(st.error, 0);
		CHECK_EQ(st.msg_len, sizes[i]);
		CHECK(memcmp(in, out, sizes[i]) == 0);
		CHECK(pair_wait(&p, p.a, &s, &st, SEC));
		vd_ep_stats(p.b, &after);
		/* Only the message above the threshold is pulled. */
		CHECK_EQ(after.pull_requests > before.pull_requests, sizes[i] > 20000);
	}
	pair_close(&p);
}

TEST(iovec)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 9);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	static uint8_t src[70000], d1[12345], d2[70000 - 12345];
	fill_pattern(src, sizeof(src), 9);
	for (int round = 0; round < 2; round++) {
		size_t total = round ? sizeof(src) : 3000; /* eager and rendezvous */
		struct iovec sv[3] = { { src, 7 }, { src + 7, 1000 }, { src + 1007, total - 1007 } };
		struct iovec rv[2] = { { d1, sizeof(d1) }, { d2, sizeof(d2) } };
		struct vd_req *s, *r;
		struct vd_status st;
		REQUIRE(vd_irecvv(p.b, rv, 2, 1, ALL, NULL, &r) == 0);
		REQUIRE(vd_isendv(p.a, sv, 3, p.ab, 1, NULL, &s) == 0);
		CHECK(pair_wait(&p, p.b, &r, &st, SEC));
		CHECK_EQ(st.msg_len, total);
		size_t n1 = total < sizeof(d1) ? total : sizeof(d1);
		CHECK(memcmp(d1, src, n1) == 0);
		if (total > sizeof(d1))
			CHECK(memcmp(d2, src + sizeof(d1), total - sizeof(d1)) == 0);
		CHECK(pair_wait(&p, p.a, &s, &st, SEC));
	}
	pair_close(&p);
}

TEST(test_any_and_context)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 10);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	uint32_t in[4], v = 5;
	int tags[4] = { 0, 1, 2, 3 };
	struct vd_req *r, *s;
	for (int i = 0; i < 4; i++)
		REQUIRE(vd_irecv(p.b, &in[i], 4, (uint64_t)i, ALL, &tags[i], &r) == 0);
	for (int i = 3; i >= 0; i--) {
		REQUIRE(vd_isend(p.a, &v, 4, p.ab, (uint64_t)i, NULL, &s) == 0);
		CHECK(pair_wait(&p, p.a, &s, NULL, SEC));
	}
	int seen = 0, order_ok = 1, expect = 3;
	for (int i = 0; i < 10000 && seen < 4; i++) {
		struct vd_status st;
		if (vd_test_any(p.b, &r, &st) == 1) {
			int *ctx = st.context;
			order_ok &= *ctx == expect-- && (uint64_t)*ctx == st.match;
			seen++;
		} else {
			pair_step(&p);
		}
	}
	CHECK_EQ(seen, 4);
	CHECK(order_ok); /* completion order follows arrival */
	CHECK_EQ(vd_test_any(p.b, &r, NULL), 0);
	pair_close(&p);
}

TEST(large_message_64m)
{
	struct pair p;
	struct vd_sim_params sp;
	pair_default_params(&sp, 11);
	sp.mtu = 9000;
	REQUIRE(pair_open(&p, &sp, NULL) == 0);

	size_t len = 64u << 20;
	uint8_t *out = malloc(len), *in = malloc(len);
	REQUIRE(out && in);
	fill_pattern(out, len, 64);
	memset(in, 0, len);
	struct vd_req *s, *r;
	struct vd_status st;
	REQUIRE(vd_irecv(p.b, in, len, 1, ALL, NULL, &r) == 0);
	REQUIRE(vd_isend(p.a, out, len, p.ab, 1, NULL, &s) == 0);
	CHECK(pair_wait(&p, p.b, &r, &st, 60 * SEC));
	CHECK_EQ(st.error, 0);
	CHECK_EQ(st.xfer_len, len);
	CHECK(memcmp(in, out, len) == 0);
	CHECK(pair_wait(&p, p.a, &s, &st, SEC));
	CHECK_EQ(st.error, 0);
	free(out);
	free(in);
	pair_close(&p);
}

/* SOVIA's combining: small messages queued while data is in flight share frames; NODELAY sends each at once. */
static uint64_t frames_for_burst(uint32_t flags)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	pair_default_params(&sp, 13);
	vd_ep_opts_init(&o);
	o.flags = flags;
	if (pair_open(&p, &sp, &o))
		return 0;
	enum { N = 100 };
	uint32_t v[N], in[N];
	struct vd_req *s[N], *r[N];
	for (int i = 0; i < N; i++) {
		v[i] = (uint32_t)i;
		vd_irecv(p.b, &in[i], 4, 1, ALL, NULL, &r[i]);
	}
	for (int i = 0; i < N; i++)
		vd_isend(p.a, &v[i], 4, p.ab, 1, NULL, &s[i]);
	int ok = 1;
	for (int i = 0; i < N; i++) {
		ok &= pair_wait(&p, p.b, &r[i], NULL, SEC) && in[i] == (uint32_t)i;
		ok &= pair_wait(&p, p.a, &s[i], NULL, SEC);
	}
	struct vd_ep_stats es;
	vd_ep_stats(p.a, &es);
	pair_close(&p);
	return ok ? es.frames_sent - es.acks_sent : 0;
}

TEST(combining_and_nodelay)
{
	uint64_t combined = frames_for_burst(0), nodelay = frames_for_burst(VD_EP_NODELAY);
	printf("  100 x 4 B: %llu data frames combined, %llu with NODELAY\n", (unsigned long long)combined,
	       (unsigned long long)nodelay);
	CHECK(combined > 0 && combined <= 5);
	/* NODELAY sends each message as soon as the window allows: the first 16 (the initial credit) go one
	 * per frame; what queues behind a closed window is still packed together when it opens. */
	CHECK(nodelay >= 16 && nodelay > combined);
}

TEST(bad_arguments)
{
	struct pair p;
	struct vd_sim_params sp;
	struct vd_ep_opts o;
	struct vd_ep *ep;
	struct vd_req *r;
	struct vd_peer *peer;
	pair_default_params(&sp, 12);
	REQUIRE(pair_open(&p, &sp, NULL) == 0);
	CHECK_EQ(vd_isend(p.a, NULL, 5, p.ab, 1, NULL, &r), -EINVAL);
	CHECK_EQ(vd_isend(p.a, "x", 1, p.ba, 1, NULL, &r), -EINVAL); /* a peer of another endpoint */
	CHECK_EQ(vd_peer_resolve(p.a, "10.0.0.2", &peer), -EINVAL);
	CHECK_EQ(vd_peer_resolve(p.a, "10.0.0.2:0", &peer), -EINVAL);
	vd_ep_opts_init(&o);
	o.window = 8;
	CHECK_EQ(vd_ep_open(&ep, &o), -EINVAL);
	vd_ep_opts_init(&o);
	o.eager_max = VD_EAGER_LIMIT + 1;
	CHECK_EQ(vd_ep_open(&ep, &o), -EINVAL);
	vd_ep_opts_init(&o);
	o.nic.backend = VD_BACKEND_SIM;
	o.nic.sim = p.link;
	o.nic.local = "10.0.0.3:1";
	o.flags = VD_EP_PROGRESS_THREAD; /* not on virtual time */
	CHECK_EQ(vd_ep_open(&ep, &o), -EINVAL);
	pair_close(&p);
}

TEST_MAIN(T(send_recv_small), T(match_and_mask), T(order_posted_first), T(order_unexpected_first),
	  T(unexpected_probe_then_late_recv), T(truncation), T(issend_completes_when_matched), T(cancel),
	  T(eager_rendezvous_boundary), T(iovec), T(test_any_and_context), T(large_message_64m),
	  T(combining_and_nodelay), T(bad_arguments))
