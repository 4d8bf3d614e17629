/* SPDX-License-Identifier: MIT */
/* The sim backend: delivery, virtual clock, determinism, impairment rates, corruption, overflow. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>

#include <viaduct/nic.h>

#define A_ADDR "10.0.0.1:1000"
#define B_ADDR "10.0.0.2:2000"

struct pair {
	struct vd_sim_link *link;
	struct vd_nic *a, *b;
	struct vd_addr aa, ba;
};

static int pair_open(struct pair *p, const struct vd_sim_params *params)
{
	memset(p, 0, sizeof(*p));
	if (vd_sim_link_new(&p->link, params))
		return -1;
	struct vd_nic_opts o = { .backend = VD_BACKEND_SIM, .sim = p->link, .local = A_ADDR };
	if (vd_nic_open(&p->a, &o))
		return -1;
	o.local = B_ADDR;
	if (vd_nic_open(&p->b, &o))
		return -1;
	vd_nic_local_addr(p->a, &p->aa);
	vd_nic_local_addr(p->b, &p->ba);
	return 0;
}

static void pair_close(struct pair *p)
{
	vd_nic_close(p->a);
	vd_nic_close(p->b);
	vd_sim_link_free(p->link);
}

/* Sends a 4-byte sequence number, padded with a pattern up to len. */
static int send_seq(struct vd_nic *n, const struct vd_addr *to, uint32_t seq, size_t len)
{
	uint8_t buf[2048];
	memset(buf, (int)(seq & 0xff), sizeof(buf));
	memcpy(buf, &seq, sizeof(seq));
	return vd_nic_send(n, to, buf, len < 4 ? 4 : len);
}

TEST(open_errors)
{
	struct vd_sim_link *l;
	struct vd_nic *n, *m;
	REQUIRE(vd_sim_link_new(&l, NULL) == 0);
	struct vd_nic_opts o = { .backend = VD_BACKEND_SIM, .sim = l };
	CHECK_EQ(vd_nic_open(&n, &o), -EINVAL); /* no local address */
	CHECK(n == NULL);
	o.local = "0.0.0.0:5";
	CHECK_EQ(vd_nic_open(&n, &o), -EINVAL);
	o.local = "10.0.0.1:99999";
	CHECK_EQ(vd_nic_open(&n, &o), -EINVAL);
	o.local = "10.0.0.1:5";
	o.sim = NULL;
	CHECK_EQ(vd_nic_open(&n, &o), -EINVAL);
	o.sim = l;
	REQUIRE(vd_nic_open(&n, &o) == 0);
	CHECK_EQ(vd_nic_open(&m, &o), -EADDRINUSE);
	CHECK(strcmp(vd_nic_backend_name(n), "sim") == 0);
	CHECK_EQ(vd_nic_max_payload(n), 1500 - 28);
	CHECK(vd_nic_fd(n) >= 0);
	CHECK_EQ(vd_nic_now_ns(n), 1000000000ull);
	/* Port 0: an ephemeral port, distinct for each nic. */
	struct vd_nic *e1, *e2;
	struct vd_addr a1, a2;
	o.local = "10.0.0.1:0";
	REQUIRE(vd_nic_open(&e1, &o) == 0);
	REQUIRE(vd_nic_open(&e2, &o) == 0);
	vd_nic_local_addr(e1, &a1);
	vd_nic_local_addr(e2, &a2);
	CHECK(ntohs(a1.port) >= 49152);
	CHECK(ntohs(a2.port) >= 49152);
	CHECK(a1.port != a2.port);
	vd_nic_close(e1);
	vd_nic_close(e2);
	vd_nic_close(n);
	/* Closing frees the address. */
	o.local = "10.0.0.1:5";
	REQUIRE(vd_nic_open(&n, &o) == 0);
	vd_nic_close(n);
	vd_sim_link_free(l);

	struct vd_sim_params bad = { .loss_ppm = 1000001 };
	CHECK_EQ(vd_sim_link_new(&l, &bad), -EINVAL);
	struct vd_sim_params badmtu = { .mtu = 40 };
	CHECK_EQ(vd_sim_link_new(&l, &badmtu), -EINVAL);
}

TEST(delivery_after_delay_in_order)
{
	struct vd_sim_params prm = { .seed = 1, .delay_ns = 5000, .mtu = 9000 };
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	uint64_t t0 = vd_sim_now_ns(p.link);
	CHECK_EQ(vd_nic_max_payload(p.a), 9000 - 28);
	for (uint32_t i = 0; i < 10; i++)
		REQUIRE(send_seq(p.a, &p.ba, i, 100 + i) == 0);

	struct vd_frame f[16];
	CHECK_EQ(vd_nic_rx_burst(p.b, f, 16), 0); /* not due yet */
	vd_sim_advance(p.link, 4999);
	CHECK_EQ(vd_nic_rx_burst(p.b, f, 16), 0);
	CHECK_EQ(vd_nic_wait(p.b, -1), 1);
	CHECK_EQ(vd_sim_now_ns(p.link), t0 + 5000);
	CHECK_EQ(vd_nic_now_ns(p.a), t0 + 5000);
	int n = vd_nic_rx_burst(p.b, f, 16);
	REQUIRE(n == 10);
	for (uint32_t i = 0; i < 10; i++) {
		uint32_t seq;
		memcpy(&seq, f[i].data, 4);
		CHECK_EQ(seq, i);
		CHECK_EQ(f[i].len, 100 + i);
		CHECK_EQ(f[i].peer.ip, p.aa.ip);
		CHECK_EQ(f[i].peer.port, p.aa.port);
		CHECK_EQ(((uint8_t *)f[i].data)[99], i & 0xff);
	}
	vd_nic_rx_release(p.b, f, (unsigned)n);

	struct vd_nic_stats sa, sb;
	vd_nic_stats(p.a, &sa);
	vd_nic_stats(p.b, &sb);
	CHECK_EQ(sa.tx_frames, 10);
	CHECK_EQ(sa.tx_bytes, 10 * 100 + 45);
	CHECK_EQ(sb.rx_frames, 10);
	CHECK_EQ(sb.rx_bytes, 10 * 100 + 45);
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	CHECK_EQ(c.sent, 10);
	CHECK_EQ(c.delivered, 10);
	CHECK_EQ(c.lost + c.duplicated + c.corrupted + c.overflowed + c.unroutable, 0);
	pair_close(&p);
}

TEST(zero_copy_tx_and_sizes)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	struct vd_frame f[4];
	REQUIRE(vd_nic_tx_alloc(p.a, f, 3) == 3);
	CHECK_EQ(f[0].len, vd_nic_max_payload(p.a));
	CHECK(f[0].data != f[1].data);
	memset(f[0].data, 0x11, 1472);
	f[0].len = 1472;
	f[0].peer = p.ba;
	f[1].len = 0; /* an empty datagram is a datagram */
	f[1].peer = p.ba;
	f[2].len = 1473; /* too big */
	f[2].peer = p.ba;
	CHECK_EQ(vd_nic_tx_burst(p.a, f, 3), 2);
	CHECK_EQ(vd_nic_tx_burst(p.a, f + 2, 1), -EMSGSIZE);
	vd_nic_tx_abort(p.a, f + 2, 1);
	CHECK_EQ(vd_nic_flush(p.a), 0);
	uint8_t big[1473] = { 0 };
	CHECK_EQ(vd_nic_send(p.a, &p.ba, big, sizeof(big)), -EMSGSIZE);

	CHECK_EQ(vd_nic_wait(p.b, 0), 1); /* zero delay: due at once */
	REQUIRE(vd_nic_rx_burst(p.b, f, 4) == 2);
	CHECK_EQ(f[0].len, 1472);
	CHECK_EQ(((uint8_t *)f[0].data)[1471], 0x11);
	CHECK_EQ(f[1].len, 0);
	vd_nic_rx_release(p.b, f, 2);

	/* The TX pool runs dry, counts tx_busy, and refills on abort. */
	static struct vd_frame many[300];
	int got = vd_nic_tx_alloc(p.a, many, 300);
	CHECK(got > 0 && got < 300);
	CHECK_EQ(vd_nic_tx_alloc(p.a, f, 1), 0);
	struct vd_nic_stats st;
	vd_nic_stats(p.a, &st);
	CHECK_EQ(st.tx_busy, 2);
	CHECK_EQ(vd_nic_send(p.a, &p.ba, "x", 1), -EAGAIN);
	vd_nic_tx_abort(p.a, many, (unsigned)got);
	CHECK_EQ(vd_nic_tx_alloc(p.a, f, 1), 1);
	vd_nic_tx_abort(p.a, f, 1);
	pair_close(&p);
}

TEST(wait_moves_the_virtual_clock)
{
	struct vd_sim_params prm = { .delay_ns = 10 * 1000000ull }; /* 10 ms */
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	uint64_t t0 = vd_sim_now_ns(p.link);
	CHECK_EQ(vd_nic_wait(p.b, -1), 0); /* nothing in flight: returns, does not hang */
	CHECK_EQ(vd_sim_now_ns(p.link), t0);
	CHECK_EQ(vd_nic_wait(p.b, 5), 0); /* a timeout is 5 ms of virtual time */
	CHECK_EQ(vd_sim_now_ns(p.link), t0 + 5000000);
	t0 += 5000000;
	REQUIRE(send_seq(p.a, &p.ba, 1, 4) == 0);
	CHECK_EQ(vd_nic_wait(p.b, 3), 0);
	CHECK_EQ(vd_sim_now_ns(p.link), t0 + 3000000);
	CHECK_EQ(vd_nic_wait(p.a, 100), 0); /* A has nothing coming: its wait runs the whole timeout... */
	CHECK_EQ(vd_sim_now_ns(p.link), t0 + 103000000);
	CHECK_EQ(vd_nic_wait(p.b, 0), 1);    /* ... during which B's frame fell due */
	struct vd_frame f;
	CHECK_EQ(vd_nic_rx_burst(p.b, &f, 1), 1);
	vd_nic_rx_release(p.b, &f, 1);

	REQUIRE(send_seq(p.a, &p.ba, 2, 4) == 0);
	uint64_t t1 = vd_sim_now_ns(p.link);
	CHECK_EQ(vd_nic_wait(p.b, 1000), 1); /* stops at the due time, not at the timeout */
	CHECK_EQ(vd_sim_now_ns(p.link), t1 + 10000000);
	pair_close(&p);
}

TEST(eventfd_readable_exactly_while_due)
{
	struct vd_sim_params prm = { .delay_ns = 1000 };
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	struct pollfd pf = { .fd = vd_nic_fd(p.b), .events = POLLIN };
	CHECK_EQ(poll(&pf, 1, 0), 0);
	REQUIRE(send_seq(p.a, &p.ba, 1, 4) == 0);
	REQUIRE(send_seq(p.a, &p.ba, 2, 4) == 0);
	CHECK_EQ(poll(&pf, 1, 0), 0);
	vd_sim_advance(p.link, 1000);
	CHECK_EQ(poll(&pf, 1, 0), 1);
	struct vd_frame f[2];
	CHECK_EQ(vd_nic_rx_burst(p.b, f, 1), 1);
	CHECK_EQ(poll(&pf, 1, 0), 1); /* one more is due */
	CHECK_EQ(vd_nic_rx_burst(p.b, f + 1, 1), 1);
	CHECK_EQ(poll(&pf, 1, 0), 0);
	vd_nic_rx_release(p.b, f, 2);
	pair_close(&p);
}

TEST(unroutable_counted_separately)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	struct vd_addr nowhere;
	REQUIRE(vd_addr_parse("10.0.0.9:1", &nowhere) == 0);
	CHECK_EQ(send_seq(p.a, &nowhere, 1, 4), 0);
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	CHECK_EQ(c.sent, 1);
	CHECK_EQ(c.unroutable, 1);
	CHECK_EQ(c.lost, 0);
	pair_close(&p);
}

TEST(overflow_tail_drops)
{
	struct vd_sim_params prm = { .delay_ns = 100, .queue_frames = 8 };
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	for (uint32_t i = 0; i < 20; i++)
		CHECK_EQ(send_seq(p.a, &p.ba, i, 4), 0);
	vd_sim_advance(p.link, 100);
	struct vd_frame f[32];
	int n = vd_nic_rx_burst(p.b, f, 32);
	REQUIRE(n == 8);
	for (int i = 0; i < n; i++) {
		uint32_t seq;
		memcpy(&seq, f[i].data, 4);
		CHECK_EQ(seq, (uint32_t)i); /* tail drop: the first eight survive */
	}
	vd_nic_rx_release(p.b, f, (unsigned)n);
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	CHECK_EQ(c.overflowed, 12);
	struct vd_nic_stats st;
	vd_nic_stats(p.b, &st);
	CHECK_EQ(st.rx_dropped, 12);
	/* Room again once the queue drained. */
	CHECK_EQ(send_seq(p.a, &p.ba, 99, 4), 0);
	CHECK_EQ(vd_nic_wait(p.b, -1), 1);
	CHECK_EQ(vd_nic_rx_burst(p.b, f, 32), 1);
	vd_nic_rx_release(p.b, f, 1);
	pair_close(&p);
}

/*
 * A mixed workload over a lossy link; every delivery is logged as (time, receiver, seq, len). Both sides
 * send; the receiver releases frames in varying batch sizes. Returns the number of log entries.
 */
struct ev {
	uint64_t t;
	uint32_t who, seq, len;
};

static size_t run_scenario(uint64_t seed, struct ev *log, size_t cap, struct vd_sim_counters *out)
{
	struct vd_sim_params prm = {
		.seed = seed, .loss_ppm = 50000, .dup_ppm = 30000, .reorder_ppm = 100000,
		.corrupt_ppm = 20000,
		.delay_ns = 20000, .jitter_ns = 5000, .reorder_ns = 30000,
	};
	struct pair p;
	size_t n = 0;
	if (pair_open(&p, &prm))
		return 0;
	struct vd_frame f[8];
	for (uint32_t round = 0; round < 400; round++) {
		send_seq(p.a, &p.ba, round, 4 + round % 200);
		if (round % 3 == 0)
			send_seq(p.b, &p.aa, round, 4 + round % 50);
		vd_sim_advance(p.link, 1000 + round % 7 * 300);
		struct vd_nic *nics[2] = { p.a, p.b };
		for (uint32_t w = 0; w < 2; w++) {
			int got = vd_nic_rx_burst(nics[w], f, 1 + round % 8);
			for (int i = 0; i < got && n < cap; i++) {
				uint32_t seq;
				memcpy(&seq, f[i].data, 4);
				log[n++] = (struct ev){ vd_nic_now_ns(nics[w]), w, seq, f[i].len };
			}
			vd_nic_rx_release(nics[w], f, (unsigned)got);
		}
	}
	/* Drain what is still in flight. */
	for (int k = 0; k < 1000 && vd_nic_wait(p.b, 1) >= 0; k++) {
		int got = vd_nic_rx_burst(p.b, f, 8);
		for (int i = 0; i < got && n < cap; i++) {
			uint32_t seq;
			memcpy(&seq, f[i].data, 4);
			log[n++] = (struct ev){ vd_nic_now_ns(p.b), 1, seq, f[i].len };
		}
		vd_nic_rx_release(p.b, f, (unsigned)got);
		got = vd_nic_rx_burst(p.a, f, 8);
		vd_nic_rx_release(p.a, f, (unsigned)got);
		if (got == 0 && vd_nic_wait(p.b, 0) == 0 && vd_nic_wait(p.a, 0) == 0 && k > 10)
			break;
	}
	vd_sim_counters(p.link, out);
	pair_close(&p);
	return n;
}

TEST(same_seed_replays_exactly)
{
	static struct ev l1[2000], l2[2000], l3[2000];
	struct vd_sim_counters c1, c2, c3;
	size_t n1 = run_scenario(7, l1, 2000, &c1);
	size_t n2 = run_scenario(7, l2, 2000, &c2);
	size_t n3 = run_scenario(8, l3, 2000, &c3);
	REQUIRE(n1 > 300);
	CHECK_EQ(n1, n2);
	CHECK(memcmp(l1, l2, n1 * sizeof(l1[0])) == 0);
	CHECK(memcmp(&c1, &c2, sizeof(c1)) == 0);
	/* A different seed gives a different run (if it did not, the seed would not be used). */
	CHECK(n1 != n3 || memcmp(l1, l3, n1 * sizeof(l1[0])) != 0);
	/* Every impairment actually happened. */
	CHECK(c1.lost > 0 && c1.duplicated > 0 && c1.reordered > 0 && c1.corrupted > 0);
}

TEST(impairment_rates_near_configured)
{
	/* 20000 frames: each rate's standard deviation is under 0.25 percentage points; tolerances ~4x. */
	struct vd_sim_params prm = {
		.seed = 12345, .loss_ppm = 100000, .dup_ppm = 50000, .reorder_ppm = 200000,
		.corrupt_ppm = 30000,
		.delay_ns = 1000, .reorder_ns = 500,
	};
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	const uint32_t N = 20000;
	struct vd_frame f[64];
	uint64_t received = 0, inversions = 0;
	uint32_t last_seq = 0;
	for (uint32_t i = 0; i < N; i++) {
		REQUIRE(send_seq(p.a, &p.ba, i + 1, 16) == 0);
		vd_sim_advance(p.link, 100); /* frames 100 ns apart; reordering holds one back by 500 ns */
		int got = vd_nic_rx_burst(p.b, f, 64);
		for (int k = 0; k < got; k++) {
			uint32_t seq;
			memcpy(&seq, f[k].data, 4);
			if (seq < last_seq)
				inversions++;
			last_seq = seq;
		}
		received += (uint64_t)got;
		vd_nic_rx_release(p.b, f, (unsigned)got);
	}
	for (int k = 0; k < 100 && vd_nic_wait(p.b, 1) == 1; k++) {
		int got = vd_nic_rx_burst(p.b, f, 64);
		received += (uint64_t)got;
		vd_nic_rx_release(p.b, f, (unsigned)got);
	}
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	struct vd_nic_stats sb;
	vd_nic_stats(p.b, &sb);
	double copies = (double)(c.sent - c.lost + c.duplicated);
	CHECK_EQ(c.sent, N);
	CHECK(c.lost > N * 0.09 && c.lost < N * 0.11);
	CHECK(c.duplicated > (N - c.lost) * 0.04 && c.duplicated < (N - c.lost) * 0.06);
	CHECK(c.reordered > copies * 0.18 && c.reordered < copies * 0.22);
	CHECK(c.corrupted > copies * 0.025 && c.corrupted < copies * 0.035);
	/* Every corrupted frame is caught by the receiver's checksum, and nothing else is dropped. */
	CHECK_EQ(sb.rx_malformed, c.corrupted);
	CHECK_EQ(received, c.delivered);
	CHECK_EQ(c.sent + c.duplicated, c.lost + c.corrupted + c.delivered);
	CHECK(inversions > 100);
	pair_close(&p);
}

TEST(jitter_stays_in_bounds)
{
	struct vd_sim_params prm = { .seed = 3, .delay_ns = 10000, .jitter_ns = 4000 };
	struct pair p;
	REQUIRE(pair_open(&p, &prm) == 0);
	uint64_t t0 = vd_sim_now_ns(p.link), first = UINT64_MAX, last = 0;
	for (uint32_t i = 0; i < 200; i++)
		REQUIRE(send_seq(p.a, &p.ba, i, 4) == 0);
	struct vd_frame f[16];
	int total = 0;
	for (int k = 0; k < 1000 && vd_nic_wait(p.b, -1) == 1; k++) {
		int got = vd_nic_rx_burst(p.b, f, 16);
		uint64_t t = vd_sim_now_ns(p.link);
		if (t < first)
			first = t;
		last = t;
		total += got;
		vd_nic_rx_release(p.b, f, (unsigned)got);
	}
	CHECK_EQ(total, 200);
	CHECK(first >= t0 + 10000);
	CHECK(last <= t0 + 14000);
	CHECK(last - first > 2000); /* spread over the jitter range, not all at one instant */
	pair_close(&p);
}

TEST(held_frames_survive_later_traffic)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	struct vd_frame held[4], more[4];
	for (uint32_t i = 0; i < 4; i++)
		REQUIRE(send_seq(p.a, &p.ba, i, 64) == 0);
	REQUIRE(vd_nic_rx_burst(p.b, held, 4) == 4);
	for (uint32_t i = 10; i < 14; i++)
		REQUIRE(send_seq(p.a, &p.ba, i, 64) == 0);
	REQUIRE(vd_nic_rx_burst(p.b, more, 4) == 4);
	for (uint32_t i = 0; i < 4; i++) {
		uint32_t s;
		memcpy(&s, held[i].data, 4);
		CHECK_EQ(s, i);
		CHECK_EQ(((uint8_t *)held[i].data)[63], i);
	}
	vd_nic_rx_release(p.b, held, 4);
	/* Closing with frames still lent frees them (ASan checks this test for leaks). */
	pair_close(&p);
}

TEST_MAIN(T(open_errors), T(delivery_after_delay_in_order), T(zero_copy_tx_and_sizes),
	  T(wait_moves_the_virtual_clock),
	  T(eventfd_readable_exactly_while_due), T(unroutable_counted_separately), T(overflow_tail_drops),
	  T(same_seed_replays_exactly), T(impairment_rates_near_configured), T(jitter_stays_in_bounds),
	  T(held_frames_survive_later_traffic))
