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
#include <unistd.h>

#include <viaduct/socket.h>

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

/* ---- SO_SNDBUF, readiness, freeing with pieces in flight -------------------------------------------- */

static int set_sndbuf(struct vd__tcb *c, int v)
{
	return vd__tcb_setopt(c, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

static int get_sndbuf(struct vd__tcb *c)
{
	int v = -1;
	socklen_t l = sizeof(v);
	return vd__tcb_getopt(c, SOL_SOCKET, SO_SNDBUF, &v, &l) < 0 ? -1 : v;
}

static uint64_t lent_now(struct net *n, int h)
{
	struct vd_nic_stats s;
	vd_nic_flush(n->h[h].nic); /* the nic counts given-back regions free at its next reap, as a stack's pass does */
	vd_nic_stats(n->h[h].nic, &s);
	return s.tx_lent;
}

/* Bytes the sender has sent and not had acknowledged (TCP_INFO), in segments. */
static uint32_t unacked(struct vd__tcb *c)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	return vd__tcb_getopt(c, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ? UINT32_MAX : ti.tcpi_unacked;
}

/* Receives on c->srv until it has got `want` bytes of stream `seed` from offset *off (checked), stepping the
 * net; then until the sender has all acknowledged (its ring is empty). Returns 0 when all came right. */
static int drain(struct net *n, struct conn *c, uint64_t *off, uint64_t want, uint32_t seed)
{
	static uint8_t b[1 << 16];
	uint64_t got = 0;
	for (int i = 0; i < 400000 && got < want; i++) {
		struct iovec iov = { b, sizeof(b) };
		ssize_t r = vd__tcb_recv(c->srv, &iov, 1, 0);
		for (ssize_t k = 0; k < r; k++)
			if (b[k] != pat(seed, *off + (uint64_t)k))
				return -1;
		if (r > 0) {
			got += (uint64_t)r;
			*off += (uint64_t)r;
		}
		net_step(n);
	}
	for (int i = 0; i < 100000 && unacked(c->cli); i++)
		net_step(n);
	return got == want && !unacked(c->cli) ? 0 : -2;
}

/* One send of up to len bytes of stream seed from offset off. */
static ssize_t send_pat(struct vd__tcb *c, uint64_t off, uint32_t len, uint32_t seed)
{
	uint8_t *b = malloc(len);
	if (!b)
		return -ENOMEM;
	for (uint32_t k = 0; k < len; k++)
		b[k] = pat(seed, off + k);
	struct iovec iov = { b, len };
	ssize_t r = vd__tcb_send(c, &iov, 1, 0);
	free(b);
	return r;
}

/*
 * SO_SNDBUF set after the ring moved into lent memory applies from the next time the ring is empty (as
 * Linux applies a new size to what is queued from then on): getsockopt reports it at once, a write after
 * the drain takes up to the new size (not the lent ring's old one), and the lent memory follows the size
 * both ways. Fails on a ring that keeps what it was lent (the old code: writes bounded by the old size).
 */
TEST(sndbuf_after_lend)
{
	struct vd_sim_params p = { .seed = 51, .delay_ns = 100000, .mtu = 9000, .tx_complete_ns = 1 * MS };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	const uint32_t seed = 7;
	uint64_t sent = 0, rcvd = 0;
	REQUIRE(set_sndbuf(c.cli, 32768) == 0);
	CHECK_EQ(get_sndbuf(c.cli), 65536);                     /* Linux doubles it */
	ssize_t r = send_pat(c.cli, sent, 200000, seed);
	CHECK(r > 0 && r <= 65536);
	sent += r > 0 ? (uint64_t)r : 0;
	uint64_t lent_small = lent_now(&n, 1);
	CHECK(lent_small >= 1);                                 /* the ring is in lent memory */
	/* grow while data is queued: reported at once, used once the ring is empty */
	REQUIRE(set_sndbuf(c.cli, 100000) == 0);
	CHECK_EQ(get_sndbuf(c.cli), 200000);
	CHECK_EQ(drain(&n, &c, &rcvd, sent - rcvd, seed), 0);
	r = send_pat(c.cli, sent, 1000000, seed);
	printf("     lent %llu regions at 64 KiB; after growing to 200000 a write took %zd\n",
	       (unsigned long long)lent_small, r);
	CHECK(r > 100000 && r <= 200000);                       /* the new size, not the old lent ring's */
	sent += r > 0 ? (uint64_t)r : 0;
	uint64_t lent_big = lent_now(&n, 1);
	CHECK(lent_big > lent_small);                           /* lent again, at the new size */
	CHECK_EQ(drain(&n, &c, &rcvd, sent - rcvd, seed), 0);
	/* shrink: an empty ring goes back at once; the next write takes at most the new size */
	REQUIRE(set_sndbuf(c.cli, 8192) == 0);
	CHECK_EQ(get_sndbuf(c.cli), 16384);
	for (int i = 0; i < 5000 && lent_now(&n, 1); i++)       /* the old ring's last pieces complete */
		net_step(&n);
	CHECK_EQ(lent_now(&n, 1), 0);                           /* the big ring went back */
	r = send_pat(c.cli, sent, 100000, seed);
	CHECK(r > 0 && r <= 16384);
	sent += r > 0 ? (uint64_t)r : 0;
	CHECK(lent_now(&n, 1) < lent_big);
	CHECK_EQ(drain(&n, &c, &rcvd, sent - rcvd, seed), 0);
	/* and writes keep flowing at the small size */
	for (int k = 0; k < 20; k++) {
		r = send_pat(c.cli, sent, 100000, seed);
		CHECK(r > 0 && r <= 16384);
		sent += r > 0 ? (uint64_t)r : 0;
		CHECK_EQ(drain(&n, &c, &rcvd, sent - rcvd, seed), 0);
	}
	struct vd_sim_counters sc;
	vd_sim_counters(n.link, &sc);
	CHECK_EQ(sc.tx_rewritten, 0);
	net_close(&n);
}

static unsigned notified;
static void count_notify(void *ctx, struct vd__tcb *c)
{
	if (c == ctx)
		notified++;
}

/*
 * A writer stopped by a chunk still being sent (completions far later than the round trip, so the whole
 * ring is acked while every chunk is still queued): POLLOUT is off while a write would take nothing,
 * the engine asks to be polled again soon (a completion wakes no fd), its poll notifies the socket once
 * the chunk completed, and then POLLOUT is on and the write takes data. Fails on a POLLOUT that only
 * looks at free ring space (the old code: a non-blocking writer spun on EAGAIN).
 */
TEST(poll_waits_for_busy_chunk)
{
	struct vd_sim_params p = { .seed = 61, .delay_ns = 100000, .mtu = 9000, .tx_complete_ns = 30 * MS };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	vd__tcp_set_notify(n.h[1].tcp, count_notify, c.cli);
	const uint32_t seed = 9;
	uint64_t sent = 0, rcvd = 0;
	int stalled = 0;
	uint64_t start = vd_sim_now_ns(n.link);
	/* write, with the receiver reading, until a write takes nothing although everything written was
	 * received and acknowledged: the ring is empty, every chunk still queued (a first pass takes a few ms) */
	for (int i = 0; i < 100000 && !stalled; i++) {
		ssize_t r = send_pat(c.cli, sent, 65536, seed);
		if (r > 0)
			sent += (uint64_t)r;
		REQUIRE(r > 0 || r == -EAGAIN);
		static uint8_t b[1 << 16];
		struct iovec iov = { b, sizeof(b) };
		ssize_t g = vd__tcb_recv(c.srv, &iov, 1, 0);
		for (ssize_t k = 0; k < g; k++)
			REQUIRE(b[k] == pat(seed, rcvd + (uint64_t)k));
		rcvd += g > 0 ? (uint64_t)g : 0;
		if (r == -EAGAIN && rcvd == sent && !unacked(c.cli))
			stalled = 1;
		else
			net_step(&n);
	}
	REQUIRE(stalled);
	uint64_t t0 = vd_sim_now_ns(n.link);
	CHECK(t0 - start < 30 * MS);            /* within the first pass's completion time */
	CHECK(!(vd__tcb_events(c.cli) & POLLOUT));
	CHECK_EQ(send_pat(c.cli, sent, 65536, seed), -EAGAIN);
	/* the engine wants to run again soon, or a sleeping waiter would sleep through the completion */
	uint64_t next = vd__tcp_poll(n.h[1].tcp);
	CHECK(next <= vd_sim_now_ns(n.link) + 1 * MS);
	CHECK(vd__tcp_poll_soon(n.h[1].tcp));
	/* no traffic at all now: run the clock as a sleeping stack would, from poll to poll */
	notified = 0;
	int polls = 0;
	while (!notified && polls < 10000) {
		uint64_t now = vd_sim_now_ns(n.link);
		next = vd__tcp_poll(n.h[1].tcp);
		if (notified || next == UINT64_MAX)
			break;
		vd_sim_advance(n.link, next > now ? next - now : 1000);
		polls++;
	}
	CHECK(notified > 0);                    /* woken by the engine's poll once the chunk completed */
	CHECK(vd_sim_now_ns(n.link) - t0 < 40 * MS);
	CHECK(vd__tcb_events(c.cli) & POLLOUT);
	CHECK(!vd__tcp_poll_soon(n.h[1].tcp));  /* nobody waits any more: no more early polls */
	printf("     stalled %.1f ms after the first write, writable again %.1f ms later after %d polls\n",
	       (double)(t0 - start) / MS, (double)(vd_sim_now_ns(n.link) - t0) / MS, polls);
	ssize_t r = send_pat(c.cli, sent, 65536, seed);
	CHECK(r > 0);
	sent += r > 0 ? (uint64_t)r : 0;
	CHECK_EQ(drain(&n, &c, &rcvd, sent - rcvd, seed), 0);
	struct vd_sim_counters sc;
	vd_sim_counters(n.link, &sc);
	CHECK_EQ(sc.tx_rewritten, 0);
	vd__tcp_set_notify(n.h[1].tcp, NULL, NULL);
	net_close(&n);
}

/*
 * The socket layer over the same: a blocking send much larger than the ring, on one stack connected to
 * itself, with completions 20 ms late and nobody reading until it returns (the receive buffer takes it
 * all): the send must wait for completions as for ACKs and return the whole count. Fails (alarm) on a
 * stack whose wait knows no time to wake for a completion: the sim's virtual clock then never moves.
 * Then poll(2) semantics through vd_poll: POLLOUT off while stalled, on once completions came.
 */
TEST(blocking_send_waits_for_completions)
{
	alarm(60);
	struct vd_sim_link *link;
	struct vd_sim_params prm = { .seed = 71, .delay_ns = 50000, .mtu = 9000, .tx_complete_ns = 20 * MS };
	REQUIRE(vd_sim_link_new(&link, &prm) == 0);
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = link, .local_ip = "10.0.0.1", .secret = 3 };
	struct vd_stack *st;
	REQUIRE(vd_stack_open(&st, &o) == 0);
	int l = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	REQUIRE(l >= 0);
	int big = 4 << 20;
	REQUIRE(vd_setsockopt(st, l, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)) == 0); /* accepted sockets inherit */
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(80) };
	a.sin_addr.s_addr = ip_of(IP_A);
	REQUIRE(vd_bind(st, l, (struct sockaddr *)&a, sizeof(a)) == 0 && vd_listen(st, l, 4) == 0);
	int cs = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	REQUIRE(cs >= 0);
	REQUIRE(vd_connect(st, cs, (struct sockaddr *)&a, sizeof(a)) == 0);
	int as = vd_accept4(st, l, NULL, NULL, 0);
	REQUIRE(as >= 0);
	const size_t total = 3u << 20;
	uint8_t *src = malloc(total), *dst = malloc(total);
	REQUIRE(src && dst);
	for (size_t k = 0; k < total; k++)
		src[k] = pat(12, k);
	uint64_t t0 = vd_sim_now_ns(link);
	CHECK_EQ(vd_send(st, cs, src, total, 0), (ssize_t)total);
	printf("     blocking send of %zu bytes took %.1f ms virtual\n", total,
	       (double)(vd_sim_now_ns(link) - t0) / MS);
	size_t got = 0;
	while (got < total) {
		ssize_t r = vd_recv(st, as, dst + got, total - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	CHECK_EQ(got, total);
	CHECK(memcmp(src, dst, total) == 0);
	/* non-blocking now: write until a write takes nothing, then poll */
	REQUIRE(vd_set_nonblock(st, cs, 1) == 0);
	int stalled = 0;
	for (int i = 0; i < 10000 && !stalled; i++) {
		ssize_t r = vd_send(st, cs, src, 65536, 0);
		stalled = r == -EAGAIN;
		while (vd_recv(st, as, dst, total, MSG_DONTWAIT) > 0)
			;
	}
	REQUIRE(stalled);
	struct pollfd pf = { .fd = cs, .events = POLLOUT };
	/* not ready at once (a busy chunk or, if the last ACK is still on its way, a full ring) ... */
	CHECK_EQ(vd_poll(st, &pf, 1, 0), 0);
	/* ... and ready within the completion time, waiting inside vd_poll */
	CHECK_EQ(vd_poll(st, &pf, 1, 1000), 1);
	CHECK(pf.revents & POLLOUT);
	CHECK(vd_send(st, cs, src, 65536, 0) > 0);
	struct vd_sim_counters sc;
	vd_sim_counters(link, &sc);
	CHECK(sc.tx_attached > 0);
	CHECK_EQ(sc.tx_rewritten, 0);
	free(src);
	free(dst);
	vd_close(st, as);
	vd_close(st, cs);
	vd_close(st, l);
	vd_stack_close(st);
	vd_sim_link_free(link);
	alarm(0);
}

static void abort_close(struct vd__tcb *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	(void)vd__tcb_setopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	vd__tcb_close(c); /* RFC 9293 3.10.4 ABORT: RST, the tcb goes now */
}

/* After the connections of a scenario went: the lent memory comes back once its pieces completed, nothing
 * was rewritten while queued, and a new connection sends 1 MiB through lent memory correctly. */
static void after_free(struct net *n, const char *what)
{
	for (int i = 0; i < 20000 && lent_now(n, 1); i++)
		net_step(n);
	struct vd_nic_stats ns;
	vd_nic_flush(n->h[1].nic);
	vd_nic_stats(n->h[1].nic, &ns);
	if (ns.tx_lent)
		printf("     %s: %llu regions still lent\n", what, (unsigned long long)ns.tx_lent);
	CHECK_EQ(ns.tx_lent, 0);
	struct vd_sim_counters a, b;
	vd_sim_counters(n->link, &a);
	CHECK_EQ(a.tx_rewritten, 0);
	struct conn c2;
	struct vd__tcb *lst = NULL;
	/* the old listener may be gone: a fresh one on port 82 */
	REQUIRE(vd__tcb_new(n->h[0].tcp, &lst) == 0 && vd__tcb_bind(lst, 0, htons(82)) == 0 &&
		vd__tcb_listen(lst, 8) == 0);
	memset(&c2, 0, sizeof(c2));
	c2.lst = lst;
	REQUIRE(vd__tcb_new(n->h[1].tcp, &c2.cli) == 0);
	REQUIRE(vd__tcb_connect(c2.cli, ip_of(IP_A), htons(82)) == -EINPROGRESS);
	for (int i = 0; i < 200000 && !c2.srv; i++) {
		net_step(n);
		if (vd__tcb_events(lst) & POLLIN)
			REQUIRE(vd__tcb_accept(lst, &c2.srv) == 0);
	}
	REQUIRE(c2.srv != NULL);
	for (int i = 0; i < 200000 && !(vd__tcb_events(c2.cli) & POLLOUT); i++)
		net_step(n);
	CHECK_EQ(one_way(n, &c2, 1u << 20, 65536, 13, NULL), 1u << 20);
	vd_sim_counters(n->link, &b);
	CHECK(b.tx_attached > a.tx_attached);
	CHECK_EQ(b.tx_rewritten, 0);
}

/*
 * Connections freed while their lent segments are still queued at the nic (pieces not completed) or in
 * the layer's TX queue, within one pass: the lent memory must come back only once the pieces completed
 * (the sim checks every piece's bytes at completion: tx_rewritten), the nic's lent count must go back to
 * zero, and nothing may touch freed memory (run under ASan: VD_SANITIZE=ON). Scenarios: an abort (RST)
 * right after a large write; a user close with data queued, then the peer's window update and RST in
 * one burst (the ACK queues segments, the RST frees the tcb in the same input pass); the whole layer
 * and nic closed with pieces queued.
 */
TEST(free_with_pieces_in_flight)
{
	struct vd_sim_params p = { .seed = 81, .delay_ns = 100000, .mtu = 9000, .tx_complete_ns = 5 * MS };
	/* 1: abort right after the write that lent the ring and sent its first segments */
	{
		struct net n;
		REQUIRE(net_open(&n, &p, NULL) == 0);
		struct conn c;
		REQUIRE(connect_pair(&n, &c, 8) == 0);
		CHECK(send_pat(c.cli, 0, 200000, 1) > 0);
		CHECK(lent_now(&n, 1) > 0);
		abort_close(c.cli);
		after_free(&n, "abort after write");
		net_close(&n);
	}
	/* 2: closed by the user with data queued; the peer reads (window update) and resets at once */
	{
		struct net n;
		REQUIRE(net_open(&n, &p, NULL) == 0);
		struct conn c;
		REQUIRE(connect_pair(&n, &c, 8) == 0);
		uint64_t sent = 0;
		for (int k = 0; k < 4; k++) {
			ssize_t r = send_pat(c.cli, sent, 200000, 2);
			sent += r > 0 ? (uint64_t)r : 0;
			for (int i = 0; i < 3; i++)
				net_step(&n);
		}
		vd__tcb_close(c.cli); /* FIN after the queued data: the tcb lives on, closed by its user */
		static uint8_t b[1 << 20];
		struct iovec iov = { b, sizeof(b) };
		(void)vd__tcb_recv(c.srv, &iov, 1, 0); /* window update ... */
		abort_close(c.srv);                     /* ... and RST, sent in the same burst */
		struct vd_sim_counters sc;
		vd_sim_counters(n.link, &sc);
		CHECK(sc.tx_attached > 0);
		after_free(&n, "user close then RST");
		net_close(&n);
	}
	/* 3: a plain close that completes (FIN acked) while the last pieces are still queued at the nic */
	{
		struct net n;
		REQUIRE(net_open(&n, &p, NULL) == 0);
		struct conn c;
		REQUIRE(connect_pair(&n, &c, 8) == 0);
		uint64_t rcvd = 0;
		CHECK_EQ(send_pat(c.cli, 0, 65536, 3), 65536);
		vd__tcb_close(c.cli);
		CHECK_EQ(drain(&n, &c, &rcvd, 65536, 3), 0);
		vd__tcb_close(c.srv);
		after_free(&n, "graceful close");
		net_close(&n);
	}
	/* 4: the layer and the nic go with a lent ring whose pieces are queued (ASan: no use after free) */
	{
		struct net n;
		REQUIRE(net_open(&n, &p, NULL) == 0);
		struct conn c;
		REQUIRE(connect_pair(&n, &c, 8) == 0);
		CHECK(send_pat(c.cli, 0, 200000, 4) > 0);
		net_step(&n);
		CHECK(lent_now(&n, 1) > 0);
		net_close(&n);
	}
}

TEST_MAIN(T(late_completions), T(impaired), T(small_writes_stay_in_heap), T(lending_runs_out_and_comes_back),
	  T(sndbuf_after_lend), T(poll_waits_for_busy_chunk), T(blocking_send_waits_for_completions),
	  T(free_with_pieces_in_flight))
