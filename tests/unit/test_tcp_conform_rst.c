/* SPDX-License-Identifier: MIT */
/*
 * TCP conformance, robustness of a synchronized connection: RST in every state (RFC 9293 3.10.7, RFC 5961
 * 3.2), SYN in a synchronized state (RFC 5961 4), unacceptable segments (RFC 9293 3.10.7.4), ACKs of data
 * never sent, PAWS (RFC 7323 5). Packet by packet over the sim backend (tcp_harness.h).
 */
#include "harness.h"
#include "tcp_harness.h"

#include <netinet/tcp.h>

/* An engine with a listener on 80 and one accepted connection from peer port pport. */
static int setup(struct th *h, struct th_conn *c, uint64_t seed, uint16_t pport, const struct th_synopt *o)
{
	if (th_open(h, NULL, seed))
		return -1;
	struct vd__tcb *l = th_listen(h, 80, 8);
	if (!l)
		return -2;
	return th_passive_open(h, c, l, 80, pport, o);
}

/* The engine's state changes to CLOSED on an acceptable RST, with nothing sent back. */
static void check_reset(struct th *h, struct th_conn *c, const char *from)
{
	struct th_seg s;
	CHECK(th_state_is(c->tcb, from));
	uint64_t rst0 = th_stats(h).rst_in;
	th_seg_init(c, &s, TH_RST);
	th_conn_send(h, c, &s);
	CHECK_EQ(th_drain(h), 0); /* RFC 9293 3.10.7: never answer a RST */
	CHECK(th_state_is(c->tcb, "CLOSED"));
	CHECK(vd__tcb_events(c->tcb) & POLLERR);
	CHECK(vd__tcb_events(c->tcb) & POLLHUP);
	CHECK_EQ(th_stats(h).rst_in, rst0 + 1);
}

/* The engine's challenge ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 5961 3.2, 4.2). */
static void check_challenge_ack(struct th *h, struct th_conn *c, uint32_t snd_nxt)
{
	struct th_seg r;
	REQUIRE(th_recv(h, &r));
	CHECK_EQ(r.flags & (TH_ACK | TH_RST | TH_SYN | TH_FIN), TH_ACK);
	CHECK_EQ(r.seq, snd_nxt);
	CHECK_EQ(r.ack, c->snd_nxt);
	CHECK_EQ(r.len, 0);
	CHECK_EQ(th_drain(h), 0);
}

/* RFC 9293 3.10.7.3 SYN-SENT: an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>; a RST without an acceptable
 * ACK is dropped; a RST with an acceptable ACK refuses the connection (ECONNREFUSED). */
TEST(rst_in_syn_sent)
{
	struct th h;
	struct th_seg s, r;
	struct vd__tcb *t = NULL;
	REQUIRE(th_open(&h, NULL, 21) == 0);
	REQUIRE(th_peer_port(&h, 5010) == 0);
	REQUIRE(vd__tcb_new(h.tcp, &t) == 0);
	REQUIRE(vd__tcb_connect(t, htonl(TH_PEER_IP), htons(5010)) == -EINPROGRESS);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == TH_SYN);
	uint32_t x = r.seq;
	memset(&s, 0, sizeof(s));
	s.src_ip = TH_PEER_IP, s.dst_ip = TH_ENG_IP, s.sport = 5010, s.dport = r.sport, s.win = 1000;

	s.flags = TH_ACK, s.seq = 777, s.ack = x + 100;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, x + 100);
	CHECK(th_state_is(t, "SYN-SENT"));

	s.flags = TH_RST | TH_ACK, s.ack = x + 100;
	th_send(&h, &s);
	s.flags = TH_RST, s.ack = 0;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK(th_state_is(t, "SYN-SENT"));
	CHECK(!(vd__tcb_events(t) & POLLERR));

	s.flags = TH_RST | TH_ACK, s.seq = 0, s.ack = x + 1;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK(th_state_is(t, "CLOSED"));
	CHECK(vd__tcb_events(t) & POLLERR);
	CHECK_EQ(vd__tcb_error(t), -ECONNREFUSED);
	vd__tcb_close(t);
	CHECK_EQ(th_stats(&h).conns, 0);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 SYN-RECEIVED from a passive open: a RST returns it to LISTEN (no connection appears,
 * and the peer's late ACK then gets a RST as any ACK to a listener does, 3.10.7.2). */
TEST(rst_in_syn_received)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 22) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8), *a = NULL;
	REQUIRE(l);
	REQUIRE(th_peer_port(&h, 40022) == 0);
	th_conn_init(&c, 80, 40022, &o);
	th_seg_init(&c, &s, TH_SYN);
	th_synopt_apply(&s, &o, c.ts_val, 0);
	c.snd_nxt++;
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == (TH_SYN | TH_ACK));
	c.rcv_nxt = r.seq + 1;
	th_conn_synopts(&c, &r, &o);
	CHECK_EQ(th_stats(&h).conns, 2);

	th_seg_init(&c, &s, TH_RST);
	th_conn_send(&h, &c, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK_EQ(th_stats(&h).conns, 1);
	th_conn_ack(&h, &c);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, c.rcv_nxt);
	CHECK_EQ(vd__tcb_accept(l, &a), -EAGAIN);
	CHECK(th_state_is(l, "LISTEN"));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 / RFC 5961 3.2, ESTABLISHED: a RST at exactly RCV.NXT resets the connection. */
TEST(rst_in_established_exact)
{
	struct th h;
	static struct th_conn c;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 23, 40023, &o) == 0);
	check_reset(&h, &c, "ESTABLISHED");
	uint8_t b[16];
	CHECK_EQ(th_app_recv(c.tcb, b, sizeof(b)), -ECONNRESET);
	CHECK_EQ(th_app_send(c.tcb, b, sizeof(b)), -EPIPE);
	vd__tcb_close(c.tcb);
	th_drain(&h);
	CHECK_EQ(th_stats(&h).conns, 1);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 5961 3.2: a RST in the window but not at RCV.NXT gets a challenge ACK and changes nothing; one
 * outside the window is dropped silently. */
TEST(rst_in_established_challenge)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 24, 40024, &o) == 0);
	uint32_t esnd = c.eiss + 1;
	th_seg_init(&c, &s, TH_RST);
	s.seq = c.snd_nxt + 100;
	th_conn_send(&h, &c, &s);
	check_challenge_ack(&h, &c, esnd);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));

	th_seg_init(&c, &s, TH_RST | TH_ACK);
	s.seq = c.snd_nxt + 0x40000000u;
	th_conn_send(&h, &c, &s);
	th_seg_init(&c, &s, TH_RST);
	s.seq = c.snd_nxt - 1;
	th_conn_send(&h, &c, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	CHECK(!(vd__tcb_events(c.tcb) & POLLERR));
	CHECK_EQ(vd__tcb_error(c.tcb), 0);

	/* The connection still carries data. */
	th_conn_data(&h, &c, 0, 10, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), 10);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 FIN-WAIT-1 and FIN-WAIT-2: an acceptable RST closes the connection. */
TEST(rst_in_fin_wait)
{
	for (int fw2 = 0; fw2 < 2; fw2++) {
		struct th h;
		static struct th_conn c;
		struct th_seg r;
		struct th_synopt o = th_synopt_all();
		REQUIRE(setup(&h, &c, 25 + (uint64_t)fw2, 40025, &o) == 0);
		CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
		REQUIRE(th_recv(&h, &r));
		CHECK_EQ(r.flags & TH_FIN, TH_FIN);
		CHECK_EQ(r.seq, c.eiss + 1);
		th_conn_note(&c, &r);
		CHECK(c.fin_rcvd);
		if (fw2) {
			th_conn_ack(&h, &c);
			check_reset(&h, &c, "FIN-WAIT-2");
		} else {
			check_reset(&h, &c, "FIN-WAIT-1");
		}
		CHECK_EQ(th_close(&h), 0);
	}
}

/* RFC 9293 3.10.7.4 CLOSE-WAIT and LAST-ACK: an acceptable RST closes the connection. */
TEST(rst_in_close_wait_and_last_ack)
{
	for (int la = 0; la < 2; la++) {
		struct th h;
		static struct th_conn c;
		struct th_seg s, r;
		struct th_synopt o = th_synopt_all();
		REQUIRE(setup(&h, &c, 27 + (uint64_t)la, 40027, &o) == 0);
		th_seg_init(&c, &s, TH_FIN | TH_ACK);
		c.snd_nxt++;
		th_conn_send(&h, &c, &s);
		REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
		CHECK_EQ(r.ack, c.snd_nxt); /* the FIN is acknowledged */
		th_drain(&h);
		if (la) {
			CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
			REQUIRE(th_recv(&h, &r));
			CHECK(r.flags & TH_FIN);
			check_reset(&h, &c, "LAST-ACK");
		} else {
			check_reset(&h, &c, "CLOSE-WAIT");
		}
		CHECK_EQ(th_close(&h), 0);
	}
}

/*
 * TIME-WAIT after an active close (RFC 9293 3.10.7.4 "eighth", FIN-WAIT-2 -> TIME-WAIT): a retransmitted
 * FIN is acknowledged again (TIME-WAIT "acknowledge it, and restart the 2 MSL timeout"); a RST is never
 * answered (RFC 9293 closes, RFC 1337 keeps TIME-WAIT: either is allowed here).
 */
TEST(rst_in_time_wait)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 29, 40029, &o) == 0);
	CHECK_EQ(vd__tcb_shutdown(c.tcb, SHUT_WR), 0);
	REQUIRE(th_recv(&h, &r));
	th_conn_note(&c, &r);
	REQUIRE(c.fin_rcvd);
	th_seg_init(&c, &s, TH_FIN | TH_ACK);
	th_conn_send(&h, &c, &s);
	c.snd_nxt++;
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.flags & (TH_ACK | TH_FIN | TH_RST), TH_ACK);
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK(th_state_is(c.tcb, "TIME-WAIT"));
	/* The FIN again: ACKed again. */
	s.tsval = c.ts_val++;
	th_send(&h, &s);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK_EQ(r.flags & (TH_ACK | TH_FIN | TH_RST), TH_ACK);
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK(th_state_is(c.tcb, "TIME-WAIT"));
	th_drain(&h);
	th_seg_init(&c, &s, TH_RST);
	th_conn_send(&h, &c, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK(th_state_is(c.tcb, "TIME-WAIT") || th_state_is(c.tcb, "CLOSED"));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 5961 4.2 (RFC 9293 3.10.7.4 "fourth"): a SYN in a synchronized state, in the window or not, gets a
 * challenge ACK; the connection is not reset. */
TEST(syn_in_established_challenge)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 30, 40030, &o) == 0);
	uint32_t esnd = c.eiss + 1;
	th_seg_init(&c, &s, TH_SYN);
	s.seq = c.snd_nxt + 1000;
	th_conn_send(&h, &c, &s);
	check_challenge_ack(&h, &c, esnd);
	th_advance(&h, TH_SEC); /* challenge ACKs may be rate-limited (RFC 5961 7) */
	th_drain(&h);
	th_seg_init(&c, &s, TH_SYN);
	s.seq = c.snd_nxt - 1000000;
	th_synopt_apply(&s, &o, c.ts_val, 0);
	th_conn_send(&h, &c, &s);
	struct th_seg r;
	REQUIRE(th_recv(&h, &r));
	CHECK(!(r.flags & TH_RST));
	CHECK_EQ(r.ack, c.snd_nxt);
	th_drain(&h);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	CHECK(!(vd__tcb_events(c.tcb) & POLLERR));
	th_conn_data(&h, &c, 0, 10, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), 10);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 "first": a segment beyond the receive window is unacceptable: ACK and drop. An old
 * duplicate is acknowledged and not delivered twice; a segment overlapping RCV.NXT is trimmed and taken. */
TEST(segment_beyond_window)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 31, 40031, &o) == 0);
	/* 100 bytes in order; their ACK tells the current (scaled) window. */
	th_conn_data(&h, &c, 0, 100, 0);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	th_conn_note(&c, &r);
	th_drain(&h);
	REQUIRE(r.ack == c.snd_nxt);
	REQUIRE(c.eng_wnd > 0);
	uint32_t start = c.snd_nxt, wnd = c.eng_wnd;
	uint64_t oow0 = th_stats(&h).out_of_window;

	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.seq = start + wnd + 100;
	s.len = 100;
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r)); /* at once, not delayed */
	CHECK_EQ(r.ack, start);
	CHECK_EQ(r.len, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	CHECK(th_stats(&h).out_of_window > oow0);
	/* A segment that starts at the right edge itself is beyond too (a second later: challenge and
	 * duplicate ACKs may be rate-limited, RFC 5961 7). */
	th_advance(&h, TH_SEC);
	th_drain(&h);
	s.seq = start + wnd;
	s.tsval = c.ts_val++;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, start);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);

	/* The first 100 bytes again: ACKed, not delivered again. */
	th_advance(&h, TH_SEC);
	th_drain(&h);
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.seq = start - 100;
	s.len = 100;
	th_fill(s.data, 0, 100);
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, start);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	/* Overlap: bytes 50..249, of which 100..249 are new (RFC 9293 3.10.7.4: trim to the window). */
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.seq = start - 50;
	s.len = 200;
	th_fill(s.data, 50, 200);
	th_conn_send(&h, &c, &s);
	c.snd_nxt = start + 150;
	th_advance(&h, 600 * TH_MS);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, c.snd_nxt);
	uint8_t in[400];
	CHECK_EQ(th_app_recv(c.tcb, in, sizeof(in)), 250);
	int ok = 1;
	for (uint32_t i = 0; i < 250; i++)
		ok &= in[i] == th_pat(i);
	CHECK(ok);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.4 "fifth": an ACK of something not yet sent (SEG.ACK > SND.NXT) gets an ACK and the
 * segment is dropped (its data is not taken). */
TEST(ack_of_unsent_data)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 32, 40032, &o) == 0);
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.ack = c.rcv_nxt + 5000;
	s.len = 10;
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags & (TH_ACK | TH_RST), TH_ACK);
	CHECK_EQ(r.seq, c.eiss + 1);
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK_EQ(vd__tcb_readable(c.tcb), 0);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));

	/* RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND is unacceptable too: discarded (its data not
	 * taken) and answered with an ACK. A second later, as such ACKs may be rate-limited (RFC 5961 7). */
	th_advance(&h, TH_SEC);
	th_drain(&h);
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.ack = c.rcv_nxt - 0x40000000u;
	s.len = 10;
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags & (TH_ACK | TH_RST), TH_ACK);
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK_EQ(vd__tcb_readable(c.tcb), 0);
	/* The same data with a valid ACK is taken. */
	s.ack = c.rcv_nxt;
	c.snd_nxt += 10;
	th_conn_send(&h, &c, &s);
	CHECK_EQ(vd__tcb_readable(c.tcb), 10);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 7323 5.3 (PAWS) R1: a non-RST segment whose TSval is older than TS.Recent is dropped and ACKed; the
 * same bytes with a current TSval are taken. */
TEST(paws_old_timestamp)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 33, 40033, &o) == 0);
	REQUIRE(c.ts);
	uint32_t base = c.ts_val + 1000000u;
	c.ts_val = base;
	th_conn_data(&h, &c, 0, 100, 0); /* TS.Recent = base */
	th_advance(&h, 600 * TH_MS);
	th_drain(&h);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	uint64_t oow0 = th_stats(&h).out_of_window;

	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.tsval = base - 1000;
	s.len = 100;
	th_fill(s.data, 100, 100);
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK(r.has_ts);
	CHECK_EQ(r.tsecr, base); /* TS.Recent did not move back */
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	CHECK_EQ(th_stats(&h).out_of_window, oow0 + 1);

	/* Wrapped comparison (RFC 7323 5.2: modulo 2^32): base + 2^31 + 1 is "older" too. */
	s.tsval = base + 0x80000001u;
	th_send(&h, &s);
	th_drain(&h);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);

	s.tsval = base + 1;
	th_send(&h, &s);
	c.snd_nxt += 100;
	CHECK_EQ(vd__tcb_readable(c.tcb), 200);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	CHECK_EQ(th_close(&h), 0);
}

TEST_MAIN(T(rst_in_syn_sent), T(rst_in_syn_received), T(rst_in_established_exact), T(rst_in_established_challenge),
	  T(rst_in_fin_wait), T(rst_in_close_wait_and_last_ack), T(rst_in_time_wait), T(syn_in_established_challenge),
	  T(segment_beyond_window), T(ack_of_unsent_data), T(paws_old_timestamp))
