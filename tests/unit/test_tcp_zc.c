/* SPDX-License-Identifier: MIT */
/*
 * TCP send rings in lent nic TX memory (tcp_zc.c: large sends without the copy into TX buffers), over sim
 * nics whose lent memory completes late (vd_sim_params.tx_complete_ns, longer than the round trip): the
 * sender must not write a chunk a queued piece still names (the sim compares the bytes at completion:
 * counters.tx_rewritten), retransmissions after loss must carry the right bytes (every byte checked),
 * small writes never move a ring, a second connection falls back to the heap ring when the nic lends no
 * more, and closed connections give their memory back once it completed.
 */
#include "tcp_pair.h"

#include <stdio.h>
#include <string.h>

/* Sends total bytes from host 1 (client) to host 0 (server) in writes of wsize; checks every byte. Returns
 * the bytes received; *eagain counts sends refused while data remained. */
static uint64_t one_way(struct net *n, struct conn *c, uint64_t total, uint32_t wsize, uint32_t seed,
			uint64_t *eagain)
{
	uint8_t *src = malloc(total), *dst = malloc(total);
	if (!src || !dst) {
		free(src);
		free(dst);
		return 0;
	}
	for (uint64_t k = 0; k < total; k++)
		src[k] = pat(seed, k);
	uint64_t sent = 0, rcvd = 0;
	for (uint64_t steps = 0; steps < 4000000 && rcvd < total; steps++) {
		if (sent < total) {
			uint64_t want = total - sent < wsize ? total - sent : wsize;
			struct iovec iov = { src + sent, want };
			ssize_t r = vd__tcb_send(c->cli, &iov, 1, 0);
			if (r > 0)
				sent += (uint64_t)r;
			else if (r == -EAGAIN && eagain)
				(*eagain)++;
			else if (r != -EAGAIN)
				break;
		}
		struct iovec iov = { dst + rcvd, total - rcvd };
		ssize_t r = vd__tcb_recv(c->srv, &iov, 1, 0);
		if (r > 0)
			rcvd += (uint64_t)r;
		net_step(n);
	}
	if (rcvd == total && memcmp(src, dst, total) != 0)
		rcvd = 0;
	free(src);
	free(dst);
	return rcvd;
}

/* The nic's own counts of lent TX memory (vd_nic_stats) agree with the link's: every attached piece the
 * link saw came from the sender (host 1; the receiver sends bare ACKs), in at least one frame each up to
 * VD_NIC_TX_ATTACH_MAX pieces. */
static void check_nic_att(const struct net *n, const struct vd_sim_counters *sc)
{
	struct vd_nic_stats s0, s1;
	vd_nic_stats(n->h[0].nic, &s0);
	vd_nic_stats(n->h[1].nic, &s1);
	CHECK_EQ(s1.tx_att_pieces, sc->tx_attached);
	CHECK_EQ(s0.tx_att_pieces, 0);
	CHECK_EQ(s0.tx_att_frames, 0);
	CHECK(s1.tx_att_frames <= s1.tx_att_pieces);
	CHECK(s1.tx_att_frames * VD_NIC_TX_ATTACH_MAX >= s1.tx_att_pieces);
	CHECK(s1.tx_att_frames <= s1.tx_frames);
}

/* Completions much later than the round trip: the ring comes round to chunks still named by queued
 * pieces; the sender must wait for them. Fails (tx_rewritten > 0) if the busy counts are ignored. */
TEST(late_completions)
{
	struct vd_sim_params p = { .seed = 11, .delay_ns = 200000, .mtu = 9000, .tx_complete_ns = 5 * MS };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	uint64_t eagain = 0, total = 8u << 20;
	CHECK_EQ(one_way(&n, &c, total, 65536, 1, &eagain), total);
	struct vd_sim_counters sc;
	vd_sim_counters(n.link, &sc);
	CHECK(sc.tx_attached > total / 4032);   /* the data went as lent pieces */
	CHECK_EQ(sc.tx_rewritten, 0);
	check_nic_att(&n, &sc);
	struct vd_nic_stats ns;
	vd_nic_stats(n.h[1].nic, &ns);
	CHECK(ns.tx_lent >= 1);                 /* the open connection's ring is still lent */
	CHECK(ns.tx_att_frames > total / 65536);
	CHECK(eagain > 0);                      /* and the sender did wait for completions */
	printf("     attached %llu pieces, sender refused %llu times\n", (unsigned long long)sc.tx_attached,
	       (unsigned long long)eagain);
	net_close(&n);
}

/* Loss, duplication, reordering, corruption and late completions: retransmissions point at the ring. */
TEST(impaired)
{
	static const uint64_t seeds[] = { 21, 22 };
	static const uint32_t mtus[] = { 1500, 9000 };
	for (size_t i = 0; i < 2; i++) {
		struct vd_sim_params p = {
			.seed = seeds[i], .delay_ns = 100000, .jitter_ns = 20000, .loss_ppm = 20000, .dup_ppm = 10000,
			.reorder_ppm = 10000, .reorder_ns = 300000, .corrupt_ppm = 10000, .mtu = mtus[i],
			.tx_complete_ns = 1 * MS,
		};
		struct net n;
		REQUIRE(net_open(&n, &p, NULL) == 0);
		struct conn c;
		REQUIRE(connect_pair(&n, &c, 8) == 0);
		uint64_t total = 3u << 20;
		CHECK_EQ(one_way(&n, &c, total, 50000, 2, NULL), total);
		struct vd_sim_counters sc;
		vd_sim_counters(n.link, &sc);
		struct vd__tcp_stats st;
		vd__tcp_stats(n.h[1].tcp, &st);
		CHECK(st.retrans_segs > 0);
		CHECK(sc.lost > 0 && sc.tx_attached > 0);
		CHECK_EQ(sc.tx_rewritten, 0);
		check_nic_att(&n, &sc);
		net_close(&n);
	}
}

/* Small writes (request/response) never move the ring into lent memory. */
TEST(small_writes_stay_in_heap)
{
	struct vd_sim_params p = { .seed = 31, .delay_ns = 50000, .mtu = 9000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	CHECK_EQ(one_way(&n, &c, 200000, 1000, 3, NULL), 200000);
	struct vd_sim_counters sc;
	vd_sim_counters(n.link, &sc);
	CHECK_EQ(sc.tx_attached, 0);
	check_nic_att(&n, &sc);
	struct vd_nic_stats ns;
	vd_nic_stats(n.h[1].nic, &ns);
	CHECK_EQ(ns.tx_att_frames, 0);
	CHECK_EQ(ns.tx_lent, 0);
	net_close(&n);
}

/* The nic lends at most half its memory: a second connection sending meanwhile keeps its heap ring and
 * works; once the first is closed and freed, its memory comes back and a third connection gets it. */
TEST(lending_runs_out_and_comes_back)
{
	struct vd_sim_params p = { .seed = 41, .delay_ns = 100000, .mtu = 9000, .tx_complete_ns = 2 * MS };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c1, c2;
	REQUIRE(connect_pair(&n, &c1, 8) == 0);
	CHECK_EQ(one_way(&n, &c1, 1u << 20, 65536, 4, NULL), 1u << 20);
	struct vd_sim_counters a, b;
	vd_sim_counters(n.link, &a);
	CHECK(a.tx_attached > 0);
	/* the listener of c1 still holds port 80: a second listener on another port */
	struct vd__tcb *lst2, *cli2, *srv2 = NULL;
	REQUIRE(vd__tcb_new(n.h[0].tcp, &lst2) == 0 && vd__tcb_bind(lst2, 0, htons(81)) == 0 &&
		vd__tcb_listen(lst2, 8) == 0);
	REQUIRE(vd__tcb_new(n.h[1].tcp, &cli2) == 0);
	REQUIRE(vd__tcb_connect(cli2, ip_of(IP_A), htons(81)) == -EINPROGRESS);
	for (int i = 0; i < 200000 && !srv2; i++) {
		net_step(&n);
		if (vd__tcb_events(lst2) & POLLIN)
			REQUIRE(vd__tcb_accept(lst2, &srv2) == 0);
	}
	REQUIRE(srv2 != NULL);
	for (int i = 0; i < 200000 && !(vd__tcb_events(cli2) & POLLOUT); i++)
		net_step(&n);
	c2 = (struct conn){ .lst = lst2, .srv = srv2, .cli = cli2 };
	CHECK_EQ(one_way(&n, &c2, 1u << 20, 65536, 5, NULL), 1u << 20);
	vd_sim_counters(n.link, &b);
	CHECK_EQ(b.tx_attached, a.tx_attached);   /* c2 was refused lent memory: heap ring, same bytes */
	struct vd_nic_stats nb;
	vd_nic_stats(n.h[1].nic, &nb);
	CHECK(nb.tx_lend_refused > 0);            /* ... and the nic counted the refusal */
	CHECK(nb.tx_lent > 0);                    /* c1's ring is still out */
	/* close c1 both ways and let it finish (TIME-WAIT on the client frees its rings) */
	vd__tcb_close(c1.cli);
	vd__tcb_close(c1.srv);
	for (int i = 0; i < 20000; i++)
		net_step(&n);
	/* c2's ring is in the heap for good; a new connection gets the memory c1 gave back */
	struct vd__tcb *cli3, *srv3 = NULL;
	REQUIRE(vd__tcb_new(n.h[1].tcp, &cli3) == 0);
	REQUIRE(vd__tcb_connect(cli3, ip_of(IP_A), htons(81)) == -EINPROGRESS);
	for (int i = 0; i < 200000 && !srv3; i++) {
		net_step(&n);
		if (vd__tcb_events(lst2) & POLLIN)
			REQUIRE(vd__tcb_accept(lst2, &srv3) == 0);
	}
	REQUIRE(srv3 != NULL);
	for (int i = 0; i < 200000 && !(vd__tcb_events(cli3) & POLLOUT); i++)
		net_step(&n);
	struct conn c3 = { .lst = lst2, .srv = srv3, .cli = cli3 };
	CHECK_EQ(one_way(&n, &c3, 1u << 20, 65536, 6, NULL), 1u << 20);
	struct vd_sim_counters d;
	vd_sim_counters(n.link, &d);
	CHECK(d.tx_attached > b.tx_attached);
	CHECK_EQ(d.tx_rewritten, 0);
	check_nic_att(&n, &d);
	net_close(&n);
}

TEST_MAIN(T(late_completions), T(impaired), T(small_writes_stay_in_heap), T(lending_runs_out_and_comes_back))
