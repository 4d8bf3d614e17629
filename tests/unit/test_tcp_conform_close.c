/* SPDX-License-Identifier: MIT */
/*
 * TCP conformance, closing and idle connections: FIN and half-close both ways, TIME-WAIT (in the engine,
 * and handed to the port owner once the application closed), abortive close, keepalive. Packet by packet
 * over the sim backend (tcp_harness.h); each test names the RFC rule it checks.
 */
#include "harness.h"
#include "tcp_harness.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

static int setup_cfg(struct th *h, struct th_conn *c, uint64_t seed, uint16_t pport, const struct th_synopt *o,
		     const struct vd__tcp_cfg *cfg)
{
	if (th_open(h, cfg, seed))
		return -1;
	struct vd__tcb *l = th_listen(h, 80, 8);
	if (!l)
		return -2;
	return th_passive_open(h, c, l, 80, pport, o);
}

/* RFC 9293 3.6 and 3.10.7.4 "eighth": the peer's FIN is ACKed, recv returns the data and then 0 (end of
 * stream), the connection is in CLOSE-WAIT and can still send; the application's close then sends a FIN
 * after that data (LAST-ACK), and the peer's ACK ends the connection. */
TEST(peer_half_close)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup_cfg(&h, &c, 51, 40051, &o, NULL) == 0);
	th_conn_data(&h, &c, 0, 100, TH_FIN);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.ack, c.snd_nxt); /* data and FIN */
	th_conn_note(&c, &r);
	CHECK(th_state_is(c.tcb, "CLOSE-WAIT"));
	uint32_t ev = vd__tcb_events(c.tcb);
	CHECK(ev & POLLIN);
	CHECK(ev & POLLRDHUP);
	CHECK(ev & POLLOUT);
	CHECK(!(ev & (POLLERR | POLLHUP)));
	uint8_t b[300];
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), 100);
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), 0);
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), 0);

	th_fill(b, 0, 200);
	CHECK_EQ(th_app_send(c.tcb, b, 200), 200);
	for (int i = 0; i < 10 && c.rx_len < 200; i++) {
		if (!th_recv_within(&h, &r, TH_SEC))
			break;
		th_conn_note(&c, &r);
	}
	CHECK(th_conn_rx_ok(&c, 200));
	th_conn_ack(&h, &c);

	vd__tcb_close(c.tcb);
	REQUIRE(th_recv_within(&h, &r, TH_SEC));
	CHECK(r.flags & TH_FIN);
	CHECK(!(r.flags & TH_RST));
	CHECK_EQ(r.seq, c.eiss + 1 + 200);
	th_conn_note(&c, &r);
	CHECK(c.fin_rcvd);
	CHECK_EQ(th_stats(&h).conns, 2);
	th_conn_ack(&h, &c);
	th_drain(&h);
	CHECK_EQ(th_stats(&h).conns, 1); /* LAST-ACK -> CLOSED: only the listener is left */
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.6: shutdown(SHUT_WR) sends a FIN after the queued data; send then fails with EPIPE; data
 * from the peer is still received in FIN-WAIT-1/2; the peer's FIN leads to TIME-WAIT. */
TEST(engine_half_close)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup_cfg(&h, &c, 52, 40052, &o, NULL) == 0);
	uint8_t b[300];
	th_fill(b, 0, sizeof(b));
	CHECK_EQ(th_app_send(c.tcb, b, 300), 300);
	CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
	CHECK_EQ(th_app_send(c.tcb, b, 10), -EPIPE);
	for (int i = 0; i < 10 && !c.fin_rcvd; i++) {
		if (!th_recv_within(&h, &r, TH_SEC))
			break;
		if (r.flags & TH_FIN)
			CHECK_EQ(r.seq + r.len, c.eiss + 1 + 300); /* the FIN follows the data */
		th_conn_note(&c, &r);
	}
	REQUIRE(c.fin_rcvd);
	CHECK(th_conn_rx_ok(&c, 300));
	CHECK(th_state_is(c.tcb, "FIN-WAIT-1"));
	th_conn_ack(&h, &c);
	CHECK(th_state_is(c.tcb, "FIN-WAIT-2"));
	th_conn_data(&h, &c, 0, 100, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.ack, c.snd_nxt);
	th_conn_data(&h, &c, 100, 0, TH_FIN);
	CHECK(th_state_is(c.tcb, "TIME-WAIT"));
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.ack, c.snd_nxt);
	uint8_t in[200];
	CHECK_EQ(th_app_recv(c.tcb, in, sizeof(in)), 100);
	CHECK_EQ(th_app_recv(c.tcb, in, sizeof(in)), 0);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 / 3.6.1: TIME-WAIT lasts 2 MSL (time_wait_ms here), then the connection is CLOSED; an
 * application-closed connection on a port the application chose stays in the engine for that time. */
TEST(time_wait_duration)
{
	for (int closed = 0; closed < 2; closed++) {
		struct th h;
		static struct th_conn c;
		struct th_seg r;
		struct th_synopt o = th_synopt_all();
		struct vd__tcp_cfg cfg = th_cfg();
		cfg.time_wait_ms = 5000;
		REQUIRE(setup_cfg(&h, &c, 53 + (uint64_t)closed, 40053, &o, &cfg) == 0);
		if (closed)
			vd__tcb_close(c.tcb);
		else
			CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
		REQUIRE(th_recv(&h, &r));
		th_conn_note(&c, &r);
		REQUIRE(c.fin_rcvd);
		uint64_t t_tw = th_now(&h); /* TIME-WAIT starts when the FIN arrives */
		th_conn_data(&h, &c, 0, 0, TH_FIN); /* ACK and FIN together */
		REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
		CHECK_EQ(r.ack, c.snd_nxt);
		if (!closed)
			CHECK(th_state_is(c.tcb, "TIME-WAIT"));
		CHECK_EQ(th_stats(&h).conns, 2);
		th_advance(&h, 5000 * TH_MS - (th_now(&h) - t_tw) - 10 * TH_MS);
		th_drain(&h);
		if (!closed)
			CHECK(th_state_is(c.tcb, "TIME-WAIT"));
		CHECK_EQ(th_stats(&h).conns, 2);
		th_advance(&h, 60 * TH_MS);
		th_drain(&h);
		if (!closed) {
			CHECK(th_state_is(c.tcb, "CLOSED"));
			vd__tcb_close(c.tcb);
		}
		CHECK_EQ(th_stats(&h).conns, 1);
		CHECK_EQ(th_close(&h), 0);
	}
}

/*
 * tcp.h contract: an application-closed connection on an ephemeral port that reaches TIME-WAIT is handed
 * to the port owner: the tcb is freed and the port stays held (nobody else can take it) for the TIME-WAIT
 * period (RFC 9293 3.6.1: no new incarnation for 2 MSL).
 */
TEST(time_wait_handoff_ephemeral)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	struct vd__tcp_cfg cfg = th_cfg();
	cfg.time_wait_ms = 5000;
	REQUIRE(th_open(&h, &cfg, 55) == 0);
	REQUIRE(th_active_open(&h, &c, 5055, &o) == 0);
	vd__tcb_close(c.tcb);
	REQUIRE(th_recv(&h, &r));
	th_conn_note(&c, &r);
	REQUIRE(c.fin_rcvd);
	th_conn_data(&h, &c, 0, 0, TH_FIN);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.ack, c.snd_nxt); /* the FIN is ACKed before the hand-off */
	th_drain(&h);
	CHECK_EQ(th_stats(&h).conns, 0);
	struct vd_nic *other = NULL;
	REQUIRE(th_nic(h.link, "10.0.0.1", &other) == 0);
	uint16_t p = htons(c.eport);
	CHECK_EQ(vd_nic_port_add(other, IPPROTO_TCP, &p), -EADDRINUSE);
	th_advance(&h, 5000 * TH_MS + 100 * TH_MS);
	p = htons(c.eport);
	CHECK_EQ(vd_nic_port_add(other, IPPROTO_TCP, &p), 0);
	vd_nic_close(other);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.4 (and RFC 2525 2.17): closing with unread received data resets the connection; so does
 * SO_LINGER with a zero timeout. The RST carries SND.NXT. */
TEST(abortive_close)
{
	for (int linger = 0; linger < 2; linger++) {
		struct th h;
		static struct th_conn c;
		struct th_seg r;
		struct th_synopt o = th_synopt_all();
		REQUIRE(setup_cfg(&h, &c, 56 + (uint64_t)linger, 40056, &o, NULL) == 0);
		if (linger) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			CHECK_EQ(vd__tcb_setopt(c.tcb, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
		} else {
			th_conn_data(&h, &c, 0, 100, 0);
			th_advance(&h, 600 * TH_MS);
			th_drain(&h);
			CHECK_EQ(vd__tcb_readable(c.tcb), 100);
		}
		uint64_t rst0 = th_stats(&h).rst_out;
		vd__tcb_close(c.tcb);
		REQUIRE(th_recv(&h, &r));
		CHECK(r.flags & TH_RST);
		CHECK(!(r.flags & TH_FIN));
		CHECK_EQ(r.seq, c.eiss + 1);
		CHECK_EQ(th_drain(&h), 0);
		CHECK_EQ(th_stats(&h).rst_out, rst0 + 1);
		CHECK_EQ(th_stats(&h).conns, 1);
		CHECK_EQ(th_close(&h), 0);
	}
}

/*
 * RFC 1122 4.2.3.6: keepalive is off by default (an idle connection sends nothing for hours); when on, a
 * probe <SEQ=SND.NXT-1> (0 or 1 garbage octet) goes after KEEPIDLE of silence; an answered probe keeps the
 * connection; KEEPCNT unanswered probes, KEEPINTVL apart, drop it with ETIMEDOUT.
 */
TEST(keepalive)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup_cfg(&h, &c, 58, 40058, &o, NULL) == 0);
	th_advance(&h, 3 * 3600 * TH_SEC);
	CHECK_EQ(th_drain(&h), 0);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));

	CHECK_EQ(th_setopt_int(c.tcb, SOL_SOCKET, SO_KEEPALIVE, 1), 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_KEEPIDLE, 10), 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_KEEPINTVL, 2), 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_KEEPCNT, 3), 0);
	int v = 0;
	socklen_t vl = sizeof(v);
	CHECK_EQ(vd__tcb_getopt(c.tcb, IPPROTO_TCP, TCP_KEEPCNT, &v, &vl), 0);
	CHECK_EQ(v, 3);
	/* Activity now, then silence. */
	th_conn_data(&h, &c, 0, 10, 0);
	th_advance(&h, 600 * TH_MS);
	th_drain(&h);
	uint64_t t_act = th_now(&h) - 600 * TH_MS;
	REQUIRE(th_recv_within(&h, &r, 30 * TH_SEC));
	CHECK_EQ(r.seq, c.rcv_nxt - 1);
	CHECK(r.len <= 1);
	CHECK(r.flags & TH_ACK);
	CHECK(r.t_ns - t_act >= 10 * TH_SEC - 100 * TH_MS && r.t_ns - t_act <= 11 * TH_SEC);
	/* Answered: the connection stays and the next probe comes after another KEEPIDLE. */
	th_conn_ack(&h, &c);
	uint64_t t_ans = th_now(&h);
	REQUIRE(th_recv_within(&h, &r, 30 * TH_SEC));
	CHECK_EQ(r.seq, c.rcv_nxt - 1);
	CHECK(r.t_ns - t_ans >= 10 * TH_SEC - 100 * TH_MS && r.t_ns - t_ans <= 11 * TH_SEC);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	/* Unanswered from now on: this probe and KEEPCNT - 1 more, KEEPINTVL apart, then the drop. */
	uint64_t t_first = r.t_ns, last = r.t_ns;
	int probes = 1;
	for (int i = 0; i < 100 && !(vd__tcb_events(c.tcb) & POLLERR); i++) {
		if (!th_recv_within(&h, &r, 250 * TH_MS))
			continue;
		if (r.flags & TH_RST)
			continue;
		CHECK_EQ(r.seq, c.rcv_nxt - 1);
		uint64_t d = r.t_ns - last;
		CHECK(d >= 2 * TH_SEC - 100 * TH_MS && d <= 3 * TH_SEC);
		last = r.t_ns;
		probes++;
	}
	CHECK_EQ(probes, 3);
	CHECK(vd__tcb_events(c.tcb) & POLLERR);
	CHECK(th_now(&h) - t_first <= 3 * 2 * TH_SEC + TH_SEC); /* KEEPCNT x KEEPINTVL after the first */
	CHECK_EQ(vd__tcb_error(c.tcb), -ETIMEDOUT);
	CHECK(th_state_is(c.tcb, "CLOSED"));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 "eighth": a FIN that arrives ahead of missing data is not processed until the data
 * before it is there: no end of stream while the hole is open, then all data and end of stream. */
TEST(fin_out_of_order)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup_cfg(&h, &c, 59, 40059, &o, NULL) == 0);
	uint32_t st = c.snd_nxt;
	th_seg_init(&c, &s, TH_ACK | TH_PSH | TH_FIN);
	s.seq = st + 100;
	s.len = 100;
	th_fill(s.data, 100, 100);
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r)); /* out of order: a duplicate ACK at once (RFC 5681 4.2) */
	CHECK_EQ(r.ack, st);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	uint8_t b[300];
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), -EAGAIN);
	CHECK(!(vd__tcb_events(c.tcb) & (POLLIN | POLLRDHUP)));
	/* The hole is filled: data, FIN, end of stream. */
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.seq = st;
	s.len = 100;
	th_fill(s.data, 0, 100);
	th_conn_send(&h, &c, &s);
	c.snd_nxt = st + 201;
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.ack, st + 201); /* the FIN was kept and is acknowledged now */
	CHECK(th_state_is(c.tcb, "CLOSE-WAIT"));
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), 200);
	int ok = 1;
	for (uint32_t i = 0; i < 200; i++)
		ok &= b[i] == th_pat(i);
	CHECK(ok);
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), 0);
	CHECK_EQ(th_close(&h), 0);
}

/* tcp.h: vd__tcp_free resets live connections: each peer gets a RST at the engine's SND.NXT. */
TEST(free_resets_connections)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup_cfg(&h, &c, 60, 40060, &o, NULL) == 0);
	uint8_t b[100];
	th_fill(b, 0, sizeof(b));
	CHECK_EQ(th_app_send(c.tcb, b, sizeof(b)), 100);
	th_drain(&h);
	vd__tcp_free(h.tcp);
	h.tcp = NULL;
	int rst = 0;
	while (th_recv(&h, &r))
		if ((r.flags & TH_RST) && r.dport == 40060) {
			rst++;
			CHECK_EQ(r.seq, c.eiss + 1 + 100);
		}
	CHECK_EQ(rst, 1);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.6 figure 13: simultaneous close. FINs cross: the engine (FIN-WAIT-1) ACKs the peer's FIN and
 * enters CLOSING; the ACK of its own FIN then leads to TIME-WAIT. Variant: a RST in CLOSING closes
 * (3.10.7.4 "second", CLOSING: enter CLOSED). */
TEST(simultaneous_close)
{
	for (int rst = 0; rst < 2; rst++) {
		struct th h;
		static struct th_conn c;
		struct th_seg s, r;
		struct th_synopt o = th_synopt_all();
		REQUIRE(setup_cfg(&h, &c, 61 + (uint64_t)rst, 40061, &o, NULL) == 0);
		CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
		REQUIRE(th_recv(&h, &r));
		REQUIRE(r.flags & TH_FIN);
		uint32_t efin = r.seq;
		/* The peer's FIN, sent before the engine's arrived: it does not acknowledge that FIN. */
		th_seg_init(&c, &s, TH_FIN | TH_ACK);
		s.ack = efin;
		th_conn_send(&h, &c, &s);
		c.snd_nxt++;
		REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
		CHECK(r.flags & TH_ACK);
		CHECK_EQ(r.ack, c.snd_nxt);
		CHECK(th_state_is(c.tcb, "CLOSING"));
		th_drain(&h);
		c.rcv_nxt = efin + 1;
		c.fin_rcvd = 1;
		if (rst) {
			th_seg_init(&c, &s, TH_RST);
			th_conn_send(&h, &c, &s);
			CHECK_EQ(th_drain(&h), 0);
			CHECK(th_state_is(c.tcb, "CLOSED"));
		} else {
			th_conn_ack(&h, &c);
			CHECK(th_state_is(c.tcb, "TIME-WAIT"));
		}
		CHECK_EQ(th_close(&h), 0);
	}
}

/*
 * Simultaneous close of a connection the application closed, on an ephemeral port: the peer's FIN (not
 * acknowledging ours) and its ACK of our FIN arrive in one burst, so the connection goes FIN-WAIT-1 ->
 * CLOSING -> TIME-WAIT, and TIME-WAIT goes to viaductd (the tcb is freed) before any output pass. The
 * ACK of the peer's FIN must still be sent: without it the peer retransmits its FIN into the hold,
 * which drops it, and stays in CLOSING (RFC 9293 3.6 figure 13).
 */
TEST(simultaneous_close_handoff)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, fin, ack;
	struct th_synopt o = th_synopt_all();
	struct vd__tcp_cfg cfg = th_cfg();
	cfg.time_wait_ms = 5000;
	REQUIRE(th_open(&h, &cfg, 63) == 0);
	REQUIRE(th_active_open(&h, &c, 5063, &o) == 0);
	vd__tcb_close(c.tcb);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags & TH_FIN);
	uint32_t efin = r.seq;
	th_seg_init(&c, &fin, TH_FIN | TH_ACK);
	fin.ack = efin; /* sent before the engine's FIN arrived */
	c.ts_val++;
	c.snd_nxt++;
	c.rcv_nxt = efin + 1;
	c.fin_rcvd = 1;
	th_seg_init(&c, &ack, TH_ACK);
	c.ts_val++;
	/* both in one burst: no engine poll between them */
	uint8_t pkt[2][60 + 40 + TH_MAX_DATA];
	size_t n0 = th_build(&h, &fin, pkt[0]), n1 = th_build(&h, &ack, pkt[1]);
	struct vd_addr to = { .ip = htonl(TH_ENG_IP) };
	REQUIRE(vd_nic_send(h.pnic, &to, pkt[0], n0) == 0);
	REQUIRE(vd_nic_send(h.pnic, &to, pkt[1], n1) == 0);
	th_pump(&h);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK(r.flags & TH_ACK);
	CHECK_EQ(r.ack, c.snd_nxt); /* the peer's FIN is acknowledged */
	th_drain(&h);
	CHECK_EQ(th_stats(&h).conns, 0); /* TIME-WAIT went to viaductd */
	CHECK_EQ(th_close(&h), 0);
}

TEST_MAIN(T(peer_half_close), T(engine_half_close), T(time_wait_duration), T(time_wait_handoff_ephemeral),
	  T(abortive_close), T(keepalive), T(fin_out_of_order),
	  T(free_resets_connections), T(simultaneous_close), T(simultaneous_close_handoff))
