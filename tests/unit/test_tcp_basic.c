/* SPDX-License-Identifier: MIT */
/*
 * The TCP engine end to end: two engines, each on its own IPv4-layer sim nic on one link, with fixed
 * seeds. Handshake, bulk transfer both ways through loss, duplication, reordering and corruption (every
 * byte checked), half-close, graceful close and TIME-WAIT, several connections on one listener, a
 * refused connection, a zero window, keepalive, SYN cookies.
 */
#include "tcp_pair.h"

TEST(handshake)
{
	struct vd_sim_params p = { .seed = 1, .delay_ns = 50000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	CHECK(strcmp(vd__tcb_state_name(c.cli), "ESTABLISHED") == 0);
	CHECK(strcmp(vd__tcb_state_name(c.srv), "ESTABLISHED") == 0);
	CHECK(strcmp(vd__tcb_state_name(c.lst), "LISTEN") == 0);
	struct vd_addr a;
	CHECK_EQ(vd__tcb_peer(c.srv, &a), 0);
	CHECK_EQ(a.ip, ip_of(IP_B));
	CHECK_EQ(vd__tcb_local(c.srv, &a), 0);
	CHECK_EQ(a.ip, ip_of(IP_A));
	CHECK_EQ(a.port, htons(80));
	CHECK_EQ(vd__tcb_peer(c.cli, &a), 0);
	CHECK_EQ(a.port, htons(80));
	CHECK_EQ(vd__tcb_peer(c.lst, &a), -ENOTCONN);
	CHECK_EQ(vd__tcb_connect(c.cli, ip_of(IP_A), htons(80)), -EISCONN);
	struct vd__tcb *x;
	CHECK_EQ(vd__tcb_accept(c.lst, &x), -EAGAIN);
	CHECK_EQ(vd__tcb_accept(c.cli, &x), -EINVAL);

	/* options negotiated with each other: timestamps, SACK, window scale; MSS from the 1500 MTU */
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	CHECK_EQ(vd__tcb_getopt(c.cli, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	CHECK_EQ(ti.tcpi_state, 1);
	CHECK(ti.tcpi_options & TCPI_OPT_TIMESTAMPS);
	CHECK(ti.tcpi_options & TCPI_OPT_SACK);
	CHECK(ti.tcpi_options & TCPI_OPT_WSCALE);
	CHECK_EQ(ti.tcpi_snd_mss, 1500 - 40 - 12);

	/* a small message each way */
	struct iovec iov = { (void *)"hello", 5 };
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), 5);
	char buf[16];
	struct iovec rv = { buf, sizeof(buf) };
	CHECK_EQ(vd__tcb_recv(c.srv, &rv, 1, 0), -EAGAIN);
	for (int i = 0; i < 1000 && !(vd__tcb_events(c.srv) & POLLIN); i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 5);
	CHECK_EQ(vd__tcb_recv(c.srv, &rv, 1, MSG_PEEK), 5);
	CHECK_EQ(vd__tcb_recv(c.srv, &rv, 1, 0), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);

	struct vd__tcp_stats st;
	vd__tcp_stats(n.h[0].tcp, &st);
	CHECK_EQ(st.passive_opens, 1);
	CHECK_EQ(st.conns, 2);
	CHECK_EQ(st.bad_csum, 0);
	vd__tcp_stats(n.h[1].tcp, &st);
	CHECK_EQ(st.active_opens, 1);
	net_close(&n);
}

/* Moves total bytes each way at once, reading and writing in odd sizes; verifies every byte. */
static void bulk(const struct vd_sim_params *p, uint64_t total, int check_recovery)
{
	struct net n;
	REQUIRE(net_open(&n, p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	struct vd__tcb *end[2] = { c.srv, c.cli };
	uint64_t sent[2] = { 0 }, rcvd[2] = { 0 };
	int bad = 0;
	uint8_t *src[2], *dst[2];
	for (int s = 0; s < 2; s++) {
		src[s] = malloc(total);
		dst[s] = malloc(total);
		REQUIRE(src[s] && dst[s]);
		for (uint64_t k = 0; k < total; k++)
			src[s][k] = pat((uint32_t)s, k);
	}
	uint64_t steps = 0;
	for (; steps < 2000000 && (rcvd[0] < total || rcvd[1] < total) && !bad; steps++) {
		for (int s = 0; s < 2; s++) {
			if (sent[s] < total) {
				uint64_t want = 1 + (sent[s] * 7 + 13) % 65000;
				if (want > total - sent[s])
					want = total - sent[s];
				struct iovec iov = { src[s] + sent[s], want };
				ssize_t r = vd__tcb_send(end[s], &iov, 1, 0);
				if (r > 0)
					sent[s] += (uint64_t)r;
				else if (r != -EAGAIN)
					bad = 1;
			}
			/* the receiver of stream s is the other end */
			if (rcvd[s] < total) {
				uint64_t want = 1 + (rcvd[s] * 5 + 3) % 60000;
				if (want > total - rcvd[s])
					want = total - rcvd[s];
				struct iovec iov = { dst[s] + rcvd[s], want };
				ssize_t r = vd__tcb_recv(end[!s], &iov, 1, 0);
				if (r > 0)
					rcvd[s] += (uint64_t)r;
				else if (r != -EAGAIN)
					bad = 2;
			}
		}
		net_step(&n);
	}
	for (int s = 0; s < 2; s++) {
		CHECK(memcmp(src[s], dst[s], total) == 0);
		free(src[s]);
		free(dst[s]);
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(rcvd[0], total);
	CHECK_EQ(rcvd[1], total);
	struct vd__tcp_stats sa, sb;
	vd__tcp_stats(n.h[0].tcp, &sa);
	vd__tcp_stats(n.h[1].tcp, &sb);
	struct vd_sim_counters sc;
	vd_sim_counters(n.link, &sc);
	if (check_recovery) {
		CHECK(sc.lost > 0 && sc.corrupted > 0 && sc.duplicated > 0 && sc.reordered > 0);
		CHECK(sa.retrans_segs > 0 && sb.retrans_segs > 0);
		CHECK(sa.fast_retrans + sb.fast_retrans > 0);
		CHECK(sa.bad_csum + sb.bad_csum > 0);
	} else {
		CHECK_EQ(sa.retrans_segs + sb.retrans_segs, 0);
	}
	printf("     bulk %llu B each way: %llu steps, virtual %.3f s, retrans %llu/%llu fast %llu/%llu rto "
	       "%llu/%llu, lost %llu corrupted %llu\n",
	       (unsigned long long)total, (unsigned long long)steps,
	       (double)(vd_sim_now_ns(n.link) - 1000000000ull) / 1e9, (unsigned long long)sa.retrans_segs,
	       (unsigned long long)sb.retrans_segs, (unsigned long long)sa.fast_retrans,
	       (unsigned long long)sb.fast_retrans, (unsigned long long)sa.rto_expired,
	       (unsigned long long)sb.rto_expired, (unsigned long long)sc.lost,
	       (unsigned long long)sc.corrupted);
	struct vd_nic_stats na, nb;
	vd_nic_stats(n.h[0].nic, &na);
	vd_nic_stats(n.h[1].nic, &nb);
	printf("     unroutable %llu overflowed %llu tx_busy %llu/%llu rx_malformed %llu/%llu\n",
	       (unsigned long long)sc.unroutable, (unsigned long long)sc.overflowed, (unsigned long long)na.tx_busy,
	       (unsigned long long)nb.tx_busy, (unsigned long long)na.rx_malformed, (unsigned long long)nb.rx_malformed);
	printf("     csum %llu/%llu malformed %llu/%llu oow %llu/%llu rst %llu/%llu\n",
	       (unsigned long long)sa.bad_csum, (unsigned long long)sb.bad_csum, (unsigned long long)sa.malformed,
	       (unsigned long long)sb.malformed, (unsigned long long)sa.out_of_window,
	       (unsigned long long)sb.out_of_window, (unsigned long long)sa.rst_in, (unsigned long long)sb.rst_in);
	net_close(&n);
}

TEST(bulk_clean)
{
	struct vd_sim_params p = { .seed = 2, .delay_ns = 100000 };
	bulk(&p, 4u << 20, 0);
}

TEST(bulk_impaired)
{
	static const uint64_t seeds[] = { 3, 4, 5 };
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct vd_sim_params p = {
			.seed = seeds[i], .delay_ns = 100000, .jitter_ns = 20000, .loss_ppm = 20000,
			.dup_ppm = 10000, .reorder_ppm = 10000, .reorder_ns = 300000, .corrupt_ppm = 10000,
		};
		bulk(&p, 2u << 20, 1);
	}
}

/* Sends all of data from a to the other side's b, stepping; returns bytes moved. */
static uint32_t xfer(struct net *n, struct vd__tcb *a, struct vd__tcb *b, const uint8_t *data, uint32_t len,
		     uint8_t *out)
{
	uint32_t s = 0, r = 0;
	for (int i = 0; i < 1000000 && r < len; i++) {
		if (s < len) {
			struct iovec iov = { (void *)(data + s), len - s };
			ssize_t k = vd__tcb_send(a, &iov, 1, 0);
			if (k > 0)
				s += (uint32_t)k;
		}
		struct iovec iov = { out + r, len - r };
		ssize_t k = vd__tcb_recv(b, &iov, 1, 0);
		if (k > 0)
			r += (uint32_t)k;
		net_step(n);
	}
	return r;
}

TEST(half_close_and_graceful_close)
{
	struct vd_sim_params p = { .seed = 6, .delay_ns = 50000, .loss_ppm = 10000 };
	struct vd__tcp_cfg cfg = { .time_wait_ms = 2000 };
	struct net n;
	REQUIRE(net_open(&n, &p, &cfg) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	static uint8_t d[100000], o[100000];
	for (uint32_t i = 0; i < sizeof(d); i++)
		d[i] = pat(9, i);
	/* client -> server, then the client shuts its sending side */
	CHECK_EQ(xfer(&n, c.cli, c.srv, d, 50000, o), 50000);
	CHECK(memcmp(d, o, 50000) == 0);
	CHECK_EQ(vd__tcb_shutdown(c.cli, SHUT_WR), 0);
	struct iovec one = { o, 1 };
	CHECK_EQ(vd__tcb_send(c.cli, &one, 1, 0), -EPIPE);
	ssize_t r = -EAGAIN;
	for (int i = 0; i < 100000 && r == -EAGAIN; i++) {
		net_step(&n);
		r = vd__tcb_recv(c.srv, &one, 1, 0);
	}
	CHECK_EQ(r, 0);   /* end of stream */
	CHECK(vd__tcb_events(c.srv) & POLLRDHUP);
	CHECK(strcmp(vd__tcb_state_name(c.srv), "CLOSE-WAIT") == 0);
	for (int i = 0; i < 100000 && strcmp(vd__tcb_state_name(c.cli), "FIN-WAIT-2") != 0; i++)
		net_step(&n);
	CHECK(strcmp(vd__tcb_state_name(c.cli), "FIN-WAIT-2") == 0);
	/* the other direction still works */
	CHECK_EQ(xfer(&n, c.srv, c.cli, d, 100000, o), 100000);
	CHECK(memcmp(d, o, 100000) == 0);
	/* the server closes: LAST-ACK, the client goes to TIME-WAIT, and as it closed its socket already? no:
	 * it still holds it, so the engine keeps TIME-WAIT */
	vd__tcb_close(c.srv);
	for (int i = 0; i < 100000 && strcmp(vd__tcb_state_name(c.cli), "TIME-WAIT") != 0; i++)
		net_step(&n);
	CHECK(strcmp(vd__tcb_state_name(c.cli), "TIME-WAIT") == 0);
	CHECK_EQ(vd__tcb_recv(c.cli, &one, 1, 0), 0);
	CHECK(vd__tcb_events(c.cli) & POLLHUP);
	/* the client now closes: its ephemeral port's TIME-WAIT goes to "viaductd" (a hold on sim) */
	struct vd_addr la;
	vd__tcb_local(c.cli, &la);
	vd__tcb_close(c.cli);
	uint16_t port = la.port;
	CHECK_EQ(vd_nic_port_add(n.h[1].nic, IPPROTO_TCP, &port), -EADDRINUSE);
	struct vd__tcp_stats st;
	for (int i = 0; i < 1000; i++)
		net_step(&n);
	vd__tcp_stats(n.h[0].tcp, &st);
	CHECK_EQ(st.conns, 1);   /* the listener; the server's connection is gone after LAST-ACK */
	vd__tcp_stats(n.h[1].tcp, &st);
	CHECK_EQ(st.conns, 0);
	vd_sim_advance(n.link, 2001 * MS);
	port = la.port;
	CHECK_EQ(vd_nic_port_add(n.h[1].nic, IPPROTO_TCP, &port), 0);
	net_close(&n);
}

/* The server closes first: its TIME-WAIT (fixed port) stays in the engine for time_wait_ms. */
TEST(server_time_wait)
{
	struct vd_sim_params p = { .seed = 7, .delay_ns = 50000 };
	struct vd__tcp_cfg cfg = { .time_wait_ms = 3000 };
	struct net n;
	REQUIRE(net_open(&n, &p, &cfg) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	vd__tcb_close(c.srv);
	char b[4];
	struct iovec iov = { b, 4 };
	ssize_t r = -EAGAIN;
	for (int i = 0; i < 10000 && r == -EAGAIN; i++) {
		net_step(&n);
		r = vd__tcb_recv(c.cli, &iov, 1, 0);
	}
	CHECK_EQ(r, 0);
	vd__tcb_close(c.cli);
	struct vd__tcp_stats st;
	for (int i = 0; i < 2000; i++)
		net_step(&n);
	vd__tcp_stats(n.h[0].tcp, &st);
	CHECK_EQ(st.conns, 2);   /* listener + TIME-WAIT */
	vd__tcp_stats(n.h[1].tcp, &st);
	CHECK_EQ(st.conns, 0);
	for (int i = 0; i < 100000; i++) {
		net_step(&n);
		vd__tcp_stats(n.h[0].tcp, &st);
		if (st.conns == 1)
			break;
	}
	CHECK_EQ(st.conns, 1);
	CHECK(vd_sim_now_ns(n.link) >= 1000000000ull + 3000 * MS);
	net_close(&n);
}

TEST(listener_many)
{
	enum { N = 6 };
	struct vd_sim_params p = { .seed = 8, .delay_ns = 30000, .loss_ppm = 5000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct vd__tcb *lst, *cli[N], *srv[N] = { 0 };
	REQUIRE(vd__tcb_new(n.h[0].tcp, &lst) == 0);
	REQUIRE(vd__tcb_bind(lst, ip_of(IP_A), htons(8080)) == 0);
	REQUIRE(vd__tcb_listen(lst, 16) == 0);
	for (int i = 0; i < N; i++) {
		REQUIRE(vd__tcb_new(n.h[1].tcp, &cli[i]) == 0);
		CHECK_EQ(vd__tcb_connect(cli[i], ip_of(IP_A), htons(8080)), -EINPROGRESS);
	}
	int got = 0;
	for (int i = 0; i < 200000 && got < N; i++) {
		net_step(&n);
		struct vd__tcb *x;
		while (got < N && vd__tcb_accept(lst, &x) == 0)
			srv[got++] = x;
	}
	REQUIRE(got == N);
	/* each client sends its index's message; the server echoes it on the connection it came in on */
	for (int i = 0; i < N; i++) {
		char m[32];
		int len = snprintf(m, sizeof(m), "client %d says hi", i);
		struct iovec iov = { m, (size_t)len };
		CHECK_EQ(vd__tcb_send(cli[i], &iov, 1, 0), len);
	}
	int echoed = 0, ok = 0;
	for (int s = 0; s < 100000 && ok < N; s++) {
		net_step(&n);
		for (int i = 0; i < N; i++) {
			char m[64];
			struct iovec iov = { m, sizeof(m) };
			ssize_t r = vd__tcb_recv(srv[i], &iov, 1, 0);
			if (r > 0) {
				iov.iov_len = (size_t)r;
				CHECK_EQ(vd__tcb_send(srv[i], &iov, 1, 0), r);
				echoed++;
			}
			r = vd__tcb_recv(cli[i], &iov, 1, 0);
			if (r > 0) {
				char want[32];
				int wl = snprintf(want, sizeof(want), "client %d says hi", i);
				CHECK(r == wl && memcmp(m, want, (size_t)wl) == 0);
				ok++;
			}
		}
	}
	CHECK_EQ(ok, N);
	CHECK_EQ(echoed, N);
	for (int i = 0; i < N; i++) {
		vd__tcb_close(cli[i]);
		vd__tcb_close(srv[i]);
	}
	vd__tcb_close(lst);
	for (int i = 0; i < 20000; i++)
		net_step(&n);
	struct vd__tcp_stats st;
	vd__tcp_stats(n.h[1].tcp, &st);
	CHECK_EQ(st.conns, 0);
	net_close(&n);
}

TEST(refused)
{
	struct vd_sim_params p = { .seed = 9, .delay_ns = 30000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	/* host 0 owns port 81 (bound, not listening): segments reach its engine, which resets them */
	struct vd__tcb *b, *c;
	REQUIRE(vd__tcb_new(n.h[0].tcp, &b) == 0);
	REQUIRE(vd__tcb_bind(b, 0, htons(81)) == 0);
	REQUIRE(vd__tcb_new(n.h[1].tcp, &c) == 0);
	CHECK_EQ(vd__tcb_connect(c, ip_of(IP_A), htons(81)), -EINPROGRESS);
	CHECK_EQ(vd__tcb_connect(c, ip_of(IP_A), htons(81)), -EALREADY);
	for (int i = 0; i < 1000 && !(vd__tcb_events(c) & POLLERR); i++)
		net_step(&n);
	CHECK(vd__tcb_events(c) & POLLERR);
	int e = 0;
	socklen_t len = sizeof(e);
	CHECK_EQ(vd__tcb_getopt(c, SOL_SOCKET, SO_ERROR, &e, &len), 0);
	CHECK_EQ(e, ECONNREFUSED);
	CHECK_EQ(vd__tcb_error(c), 0);
	struct vd__tcp_stats st;
	vd__tcp_stats(n.h[0].tcp, &st);
	CHECK_EQ(st.no_port, 1);
	CHECK_EQ(st.rst_out, 1);
	/* binding a port in use */
	struct vd__tcb *d;
	REQUIRE(vd__tcb_new(n.h[0].tcp, &d) == 0);
	CHECK_EQ(vd__tcb_bind(d, 0, htons(81)), -EADDRINUSE);
	CHECK_EQ(vd__tcb_bind(d, ip_of(IP_B), htons(82)), -EADDRNOTAVAIL);
	vd__tcb_close(d);
	vd__tcb_close(b);
	vd__tcb_close(c);
	net_close(&n);
}

/* The receiver does not read: the window closes, the sender probes (persist), reading reopens it. */
TEST(zero_window)
{
	struct vd_sim_params p = { .seed = 10, .delay_ns = 50000 };
	struct vd__tcp_cfg cfg = { .rcvbuf = 32768, .sndbuf = 65536 };
	struct net n;
	REQUIRE(net_open(&n, &p, &cfg) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	static uint8_t d[200000], o[200000];
	for (uint32_t i = 0; i < sizeof(d); i++)
		d[i] = pat(11, i);
	uint32_t s = 0;
	for (int i = 0; i < 20000; i++) {
		struct iovec iov = { d + s, sizeof(d) - s };
		ssize_t k = vd__tcb_send(c.cli, &iov, 1, 0);
		if (k > 0)
			s += (uint32_t)k;
		net_step(&n);
	}
	/* full: the buffer, give or take one window-scale unit of rounding (RFC 7323 2.4) */
	CHECK(vd__tcb_readable(c.srv) >= 32768 - 32 && vd__tcb_readable(c.srv) <= 32768 + 32);
	CHECK(s < sizeof(d));
	/* a long time with a zero window: still connected, the sender probing */
	for (int i = 0; i < 3000; i++)
		net_step(&n);
	CHECK(strcmp(vd__tcb_state_name(c.cli), "ESTABLISHED") == 0);
	uint32_t r = 0;
	for (int i = 0; i < 2000000 && r < sizeof(d); i++) {
		if (s < sizeof(d)) {
			struct iovec iov = { d + s, sizeof(d) - s };
			ssize_t k = vd__tcb_send(c.cli, &iov, 1, 0);
			if (k > 0)
				s += (uint32_t)k;
		}
		if (i % 50 == 0) { /* a slow reader: small reads now and then */
			struct iovec iov = { o + r, sizeof(d) - r < 3000 ? sizeof(d) - r : 3000 };
			ssize_t k = vd__tcb_recv(c.srv, &iov, 1, 0);
			if (k > 0)
				r += (uint32_t)k;
		}
		net_step(&n);
	}
	CHECK_EQ(r, sizeof(d));
	CHECK(memcmp(d, o, sizeof(d)) == 0);
	net_close(&n);
}

/* Keepalive: the peer goes silent (its host stops running); the connection times out. */
TEST(keepalive_timeout)
{
	struct vd_sim_params p = { .seed = 12, .delay_ns = 50000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	int one = 1, idle = 2, intvl = 1, cnt = 3;
	CHECK_EQ(vd__tcb_setopt(c.srv, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)), 0);
	CHECK_EQ(vd__tcb_setopt(c.srv, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)), 0);
	CHECK_EQ(vd__tcb_setopt(c.srv, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)), 0);
	CHECK_EQ(vd__tcb_setopt(c.srv, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)), 0);
	/* while the peer answers, probes keep the connection up */
	for (int i = 0; i < 200000 && vd_sim_now_ns(n.link) < 1000000000ull + 10000 * MS; i++)
		net_step(&n);
	CHECK(strcmp(vd__tcb_state_name(c.srv), "ESTABLISHED") == 0);
	CHECK_EQ(vd__tcb_error(c.srv), 0);
	/* the peer is silent now: 2 s idle + 3 probes 1 s apart */
	uint64_t t0 = vd_sim_now_ns(n.link);
	for (int i = 0; i < 200000 && !(vd__tcb_events(c.srv) & POLLERR); i++)
		net_step2(&n, 0);
	CHECK(vd__tcb_events(c.srv) & POLLERR);
	CHECK_EQ(vd__tcb_error(c.srv), -ETIMEDOUT);
	uint64_t took = vd_sim_now_ns(n.link) - t0;
	/* the last answered probe was up to keepidle before t0; the end comes keepidle + keepcnt * keepintvl
	 * after it */
	printf("     keepalive gave up after %.3f s of silence\n", (double)took / 1e9);
	CHECK(took >= 3000 * MS && took <= 5100 * MS);
	net_close(&n);
}

/* A SYN flood fills the SYN queue; later clients still get in through SYN cookies. */
TEST(syn_cookies)
{
	struct vd_sim_params p = { .seed = 13, .delay_ns = 30000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct vd__tcb *lst;
	REQUIRE(vd__tcb_new(n.h[0].tcp, &lst) == 0);
	REQUIRE(vd__tcb_bind(lst, 0, htons(80)) == 0);
	REQUIRE(vd__tcb_listen(lst, 8) == 0);   /* SYN queue: 16 (the floor) */
	/* the flood: 64 SYNs from host 1 whose handshakes never complete (host 1 is not pumped, so its
	 * engine never answers the SYN-ACKs) */
	enum { FLOOD = 64, REAL = 4 };
	struct vd__tcb *f[FLOOD], *cli[REAL];
	for (int i = 0; i < FLOOD; i++) {
		REQUIRE(vd__tcb_new(n.h[1].tcp, &f[i]) == 0);
		CHECK_EQ(vd__tcb_connect(f[i], ip_of(IP_A), htons(80)), -EINPROGRESS);
	}
	for (int i = 0; i < 100; i++)
		net_step2(&n, 0);
	/* drop what queued for host 1 (the SYN-ACKs) by closing the flooders without ever pumping */
	struct vd_frame fr[64];
	int k;
	while ((k = vd_nic_rx_burst(n.h[1].nic, fr, 64)) > 0)
		vd_nic_rx_release(n.h[1].nic, fr, (unsigned)k);
	for (int i = 0; i < FLOOD; i++)
		vd__tcb_close(f[i]);   /* SYN-SENT: freed silently */
	for (int i = 0; i < REAL; i++) {
		REQUIRE(vd__tcb_new(n.h[1].tcp, &cli[i]) == 0);
		CHECK_EQ(vd__tcb_connect(cli[i], ip_of(IP_A), htons(80)), -EINPROGRESS);
	}
	int got = 0;
	struct vd__tcb *srv[REAL];
	for (int i = 0; i < 20000 && got < REAL; i++) {
		net_step(&n);
		struct vd__tcb *x;
		while (got < REAL && vd__tcb_accept(lst, &x) == 0)
			srv[got++] = x;
	}
	CHECK_EQ(got, REAL);
	struct vd__tcp_stats st;
	vd__tcp_stats(n.h[0].tcp, &st);
	CHECK(st.syn_cookies_sent >= REAL);
	CHECK(st.syn_cookies_ok >= REAL);
	if (got == REAL) {
		/* data flows on a cookie connection, with its options restored from the timestamp */
		struct tcp_info ti;
		socklen_t len = sizeof(ti);
		CHECK_EQ(vd__tcb_getopt(srv[0], IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
		CHECK(ti.tcpi_options & TCPI_OPT_SACK);
		CHECK(ti.tcpi_options & TCPI_OPT_WSCALE);
		static uint8_t d[300000], o[300000];
		for (uint32_t i = 0; i < sizeof(d); i++)
			d[i] = pat(14, i);
		/* the server side of cli[0]: accept order is completion order */
		struct vd_addr cl, pr;
		vd__tcb_local(cli[0], &cl);
		struct vd__tcb *s0 = NULL;
		for (int i = 0; i < REAL; i++)
			if (vd__tcb_peer(srv[i], &pr) == 0 && pr.port == cl.port)
				s0 = srv[i];
		REQUIRE(s0 != NULL);
		CHECK_EQ(xfer(&n, cli[0], s0, d, sizeof(d), o), sizeof(d));
		CHECK(memcmp(d, o, sizeof(d)) == 0);
	}
	net_close(&n);
}

/* Unread data at close resets the connection (RFC 2525 2.17); so does SO_LINGER 0. */
TEST(abortive_close)
{
	struct vd_sim_params p = { .seed = 15, .delay_ns = 30000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	struct iovec iov = { (void *)"data", 4 };
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), 4);
	for (int i = 0; i < 1000 && !vd__tcb_readable(c.srv); i++)
		net_step(&n);
	vd__tcb_close(c.srv);
	for (int i = 0; i < 1000 && !(vd__tcb_events(c.cli) & POLLERR); i++)
		net_step(&n);
	char b[8];
	struct iovec rv = { b, sizeof(b) };
	CHECK_EQ(vd__tcb_recv(c.cli, &rv, 1, 0), -ECONNRESET);
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), -EPIPE);
	CHECK(vd__tcb_events(c.cli) & POLLHUP);
	vd__tcb_close(c.cli);
	vd__tcb_close(c.lst);

	struct conn d;
	REQUIRE(connect_pair(&n, &d, 8) == 0);
	struct linger lg = { 1, 0 };
	CHECK_EQ(vd__tcb_setopt(d.cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	vd__tcb_close(d.cli);
	for (int i = 0; i < 1000 && !(vd__tcb_events(d.srv) & POLLERR); i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_recv(d.srv, &rv, 1, 0), -ECONNRESET);
	net_close(&n);
}

/* TCP_CORK and MSG_MORE hold partial segments; full ones still go; uncorking sends the rest. */
TEST(cork_and_msg_more)
{
	struct vd_sim_params p = { .seed = 16, .delay_ns = 30000 };
	struct net n;
	REQUIRE(net_open(&n, &p, NULL) == 0);
	struct conn c;
	REQUIRE(connect_pair(&n, &c, 8) == 0);
	static uint8_t d[4000];
	for (uint32_t i = 0; i < sizeof(d); i++)
		d[i] = pat(17, i);
	int one = 1, zero = 0;
	CHECK_EQ(vd__tcb_setopt(c.cli, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)), 0);
	struct iovec iov = { d, 100 };
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), 100);
	for (int i = 0; i < 200; i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 0);
	iov.iov_base = d + 100;
	iov.iov_len = 2000;
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), 2000);
	for (int i = 0; i < 200; i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 1448);   /* one full segment (1500 - 40 - 12 of timestamps) */
	CHECK_EQ(vd__tcb_setopt(c.cli, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)), 0);
	for (int i = 0; i < 200; i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 2100);
	/* MSG_MORE: held while more is announced, sent with the call that ends it */
	iov.iov_base = d + 2100;
	iov.iov_len = 10;
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, MSG_MORE), 10);
	for (int i = 0; i < 200; i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 2100);
	iov.iov_base = d + 2110;
	iov.iov_len = 5;
	CHECK_EQ(vd__tcb_send(c.cli, &iov, 1, 0), 5);
	for (int i = 0; i < 200; i++)
		net_step(&n);
	CHECK_EQ(vd__tcb_readable(c.srv), 2115);
	static uint8_t o[4000];
	struct iovec rv = { o, sizeof(o) };
	CHECK_EQ(vd__tcb_recv(c.srv, &rv, 1, 0), 2115);
	CHECK(memcmp(o, d, 2115) == 0);
	net_close(&n);
}

TEST_MAIN(T(cork_and_msg_more), T(handshake), T(bulk_clean), T(bulk_impaired), T(half_close_and_graceful_close), T(server_time_wait),
	  T(listener_many), T(refused), T(zero_window), T(keepalive_timeout), T(syn_cookies),
	  T(abortive_close))
