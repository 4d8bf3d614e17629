/* SPDX-License-Identifier: MIT */
/*
 * TCP conformance, connection set-up: option negotiation, simultaneous open, SYN and SYN-ACK
 * retransmission, segments to closed ports and listeners, checksums, SYN floods. Each test names the RFC
 * rule it checks; the engine is driven packet by packet over the sim backend (tcp_harness.h).
 */
#include "harness.h"
#include "tcp_harness.h"

#include <netinet/tcp.h>

/* Engine payload bytes plus options of a segment: what RFC 9293 3.7.1's effective MSS bounds. */
static uint32_t seg_mss_use(const struct th_seg *s)
{
	return s->len + s->hlen - 20u;
}

/* RFC 9293 3.7.1, RFC 7323 2.2/2.3/3.2/4.3, RFC 2018 2: options of a passive open with everything. */
TEST(handshake_options_passive)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	o.mss = 1000;
	o.ws = 7;
	REQUIRE(th_open(&h, NULL, 1) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	uint32_t syn_tsval = 100000u + 40001u; /* th_conn_init's clock: the SYN's TSval */
	REQUIRE(th_passive_open(&h, &c, l, 80, 40001, &o) == 0);

	const struct th_seg *sa = &c.syn;
	CHECK(sa->has_mss);
	CHECK(sa->mss > 536 && sa->mss <= TH_MTU - 40); /* RFC 9293 3.7.1: at most MTU - 40 */
	CHECK(sa->has_ws);
	CHECK(sa->ws <= 14);                             /* RFC 7323 2.3 */
	CHECK(sa->sack_ok);                              /* RFC 2018 2: answered because offered */
	CHECK(sa->has_ts);
	CHECK_EQ(sa->tsecr, syn_tsval);                  /* RFC 7323 4.3: TSecr echoes the SYN's TSval */
	CHECK(c.ws_ok && c.ts && c.sack);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));

	/* RFC 7323 4.3: an ACK of in-sequence data echoes that segment's TSval. */
	uint32_t tsv = c.ts_val;
	REQUIRE(th_conn_data(&h, &c, 0, 100, 0) == 0);
	REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
	CHECK(r.flags & TH_ACK);
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK(r.has_ts);
	CHECK_EQ(r.tsecr, tsv);
	th_conn_note(&c, &r);
	/* RFC 7323 2.2: windows after the SYN are scaled by the engine's shift; a 256 KiB buffer gives a window
	 * that is neither nothing nor beyond the buffer. */
	CHECK(c.eng_wnd >= 8192 && c.eng_wnd <= 2 * 256 * 1024);

	/* RFC 9293 3.7.1: the engine's segments, options included, fit the peer's MSS of 1000; RFC 7323 3.2:
	 * every non-RST segment carries a timestamp once negotiated. */
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	static uint8_t buf[3000];
	th_fill(buf, 0, sizeof(buf));
	CHECK_EQ(th_app_send(c.tcb, buf, sizeof(buf)), (long long)sizeof(buf));
	int segs = 0;
	for (int i = 0; i < 20 && c.rx_len < sizeof(buf); i++) {
		if (!th_recv_within(&h, &r, 2 * TH_SEC))
			break;
		if (r.len) {
			segs++;
			CHECK(seg_mss_use(&r) <= 1000);
			CHECK(r.has_ts);
		}
		th_conn_note(&c, &r);
		th_conn_ack(&h, &c);
	}
	CHECK(segs >= 4);
	CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 7323 2.3/3.2, RFC 2018 2: nothing offered, nothing answered; RFC 9293 3.7.1: no MSS option means 536. */
TEST(handshake_no_options_passive)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_none();
	REQUIRE(th_open(&h, NULL, 2) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	REQUIRE(th_passive_open(&h, &c, l, 80, 40002, &o) == 0);
	CHECK(!c.syn.has_ws);
	CHECK(!c.syn.sack_ok);
	CHECK(!c.syn.has_ts);

	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	static uint8_t buf[2000];
	th_fill(buf, 0, sizeof(buf));
	CHECK_EQ(th_app_send(c.tcb, buf, sizeof(buf)), (long long)sizeof(buf));
	int segs = 0;
	for (int i = 0; i < 20 && c.rx_len < sizeof(buf); i++) {
		if (!th_recv_within(&h, &r, 2 * TH_SEC))
			break;
		if (r.len) {
			segs++;
			CHECK(r.len <= 536);
		}
		CHECK(!r.has_ts);
		th_conn_note(&c, &r);
		th_conn_ack(&h, &c);
	}
	CHECK(segs >= 4);
	CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.5 / 3.10.7.3: active open offers MSS, WS, SACK-permitted and TS (TSecr 0), ACKs the SYN-ACK. */
TEST(handshake_options_active)
{
	struct th h;
	static struct th_conn c;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 3) == 0);
	REQUIRE(th_active_open(&h, &c, 5001, &o) == 0);
	CHECK(c.syn.flags == TH_SYN);
	CHECK(c.syn.has_mss && c.syn.mss <= TH_MTU - 40);
	CHECK(c.syn.has_ws && c.syn.ws <= 14);
	CHECK(c.syn.sack_ok);
	CHECK(c.syn.has_ts);
	CHECK_EQ(c.syn.tsecr, 0); /* RFC 7323 3.2: TSecr is zero when the ACK bit is off */
	struct vd__tcp_stats st = th_stats(&h);
	CHECK_EQ(st.active_opens, 1);
	struct vd_addr pa;
	CHECK_EQ(vd__tcb_peer(c.tcb, &pa), 0);
	CHECK_EQ(pa.ip, htonl(TH_PEER_IP));
	CHECK_EQ(pa.port, htons(5001));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 7323 2.2: the peer's window field is shifted by the peer's WS; the engine never sends beyond it. */
TEST(peer_window_scale_applied)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, s;
	struct th_synopt o = th_synopt_all();
	o.ws = 5;
	o.ts = 0;
	REQUIRE(th_open(&h, NULL, 4) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	REQUIRE(th_passive_open(&h, &c, l, 80, 40004, &o) == 0);
	REQUIRE(c.ws_ok);
	c.win = 10; /* 10 << 5 = 320 bytes */
	REQUIRE(th_conn_ack(&h, &c) == 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	static uint8_t buf[3000];
	th_fill(buf, 0, sizeof(buf));
	CHECK_EQ(th_app_send(c.tcb, buf, sizeof(buf)), (long long)sizeof(buf));
	uint32_t hi = c.rcv_nxt;
	th_advance(&h, 3 * TH_SEC);
	while (th_recv(&h, &r)) {
		if (r.len && th_lt(hi, r.seq + r.len))
			hi = r.seq + r.len;
		th_conn_note(&c, &r);
	}
	/* More than a 10-byte (unscaled) window allows, no more than the scaled one. */
	CHECK(hi - (c.eiss + 1) > 10);
	CHECK(hi - (c.eiss + 1) <= 320);
	/* Open the window: the rest follows. */
	c.win = 2048;
	th_conn_ack(&h, &c);
	for (int i = 0; i < 40 && c.rx_len < sizeof(buf); i++) {
		if (!th_recv_within(&h, &r, TH_SEC))
			break;
		th_conn_note(&c, &r);
		th_seg_init(&c, &s, TH_ACK);
		th_conn_send(&h, &c, &s);
	}
	CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.5 figure 7: simultaneous open. */
TEST(simultaneous_open)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, s;
	struct th_synopt o = th_synopt_none();
	struct vd__tcb *t = NULL;
	REQUIRE(th_open(&h, NULL, 5) == 0);
	REQUIRE(th_peer_port(&h, 5002) == 0);
	REQUIRE(vd__tcb_new(h.tcp, &t) == 0);
	REQUIRE(vd__tcb_connect(t, htonl(TH_PEER_IP), htons(5002)) == -EINPROGRESS);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == TH_SYN);
	uint32_t x = r.seq;
	th_conn_init(&c, r.sport, 5002, &o);
	c.tcb = t;
	c.eiss = x;
	c.rcv_nxt = x + 1;
	c.ws_eng = r.has_ws ? r.ws : 0;

	/* Line 3: the peer's SYN crosses ours; the engine (SYN-SENT) answers <SEQ=x><ACK=y+1><CTL=SYN,ACK>. */
	uint32_t y = c.piss;
	th_seg_init(&c, &s, TH_SYN);
	c.snd_nxt++;
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_SYN | TH_ACK);
	CHECK_EQ(r.seq, x);
	CHECK_EQ(r.ack, y + 1);
	CHECK(th_state_is(t, "SYN-RECEIVED"));
	CHECK(!(vd__tcb_events(t) & POLLOUT));

	/* Line 6: the peer's SYN-ACK. The engine may reach ESTABLISHED on it or answer with an ACK (a strict
	 * reading of 3.10.7.4's sequence test); the peer's ACK of the engine's SYN then completes it. Never RST. */
	th_seg_init(&c, &s, TH_SYN | TH_ACK);
	s.seq = y;
	th_conn_send(&h, &c, &s);
	while (th_recv(&h, &r)) {
		CHECK(!(r.flags & (TH_RST | TH_SYN)));
		CHECK_EQ(r.seq, x + 1);
		CHECK_EQ(r.ack, y + 1);
	}
	th_conn_ack(&h, &c);
	while (th_recv(&h, &r))
		CHECK(!(r.flags & TH_RST));
	CHECK(th_state_is(t, "ESTABLISHED"));
	CHECK(vd__tcb_events(t) & POLLOUT);
	CHECK_EQ(vd__tcb_error(t), 0);

	/* Data both ways. */
	uint8_t b[100];
	th_fill(b, 0, sizeof(b));
	CHECK_EQ(th_app_send(t, b, sizeof(b)), 100);
	REQUIRE(th_recv_within(&h, &r, TH_SEC));
	th_conn_note(&c, &r);
	CHECK(th_conn_rx_ok(&c, 100));
	th_conn_data(&h, &c, 0, 50, 0);
	uint8_t in[64];
	CHECK_EQ(th_app_recv(t, in, sizeof(in)), 50);
	CHECK_EQ(th_close(&h), 0);
}

/*
 * A retransmitted SYN (the SYN-ACK was lost) is answered again with the same SYN-ACK (same ISS), and the
 * handshake then completes into exactly one connection. A bare ACK would not do: a peer in SYN-SENT drops
 * an ACK without SYN (RFC 9293 3.10.7.3 "fifth"), so only the SYN-ACK timer could save the handshake.
 */
TEST(syn_retransmit_answered_again)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, s;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 6) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8), *a = NULL;
	REQUIRE(l);
	REQUIRE(th_peer_port(&h, 40006) == 0);
	th_conn_init(&c, 80, 40006, &o);
	th_seg_init(&c, &s, TH_SYN);
	th_synopt_apply(&s, &o, c.ts_val, 0);
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == (TH_SYN | TH_ACK));
	uint32_t x = r.seq;

	th_advance(&h, 300 * TH_MS); /* less than the initial RTO of 1 s (RFC 6298 2.1) */
	th_drain(&h);
	s.tsval = c.ts_val + 7;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_SYN | TH_ACK);
	CHECK_EQ(r.seq, x);
	CHECK_EQ(r.ack, c.piss + 1);
	CHECK_EQ(th_drain(&h), 0);

	c.snd_nxt = c.piss + 1;
	c.rcv_nxt = x + 1;
	th_conn_synopts(&c, &r, &o);
	th_conn_ack(&h, &c);
	CHECK_EQ(vd__tcb_accept(l, &a), 0);
	CHECK(a != NULL);
	struct vd__tcb *b = NULL;
	CHECK_EQ(vd__tcb_accept(l, &b), -EAGAIN);
	CHECK_EQ(th_stats(&h).conns, 2);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 6298 2.1 (initial RTO 1 s) and 5.5 (back off x2): the SYN-ACK is retransmitted; the embryonic
 * connection is eventually dropped (bounded memory). */
TEST(synack_retransmit_backoff)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, s;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 7) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	REQUIRE(th_peer_port(&h, 40007) == 0);
	th_conn_init(&c, 80, 40007, &o);
	th_seg_init(&c, &s, TH_SYN);
	th_synopt_apply(&s, &o, c.ts_val, 0);
	th_conn_send(&h, &c, &s);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == (TH_SYN | TH_ACK));
	uint32_t x = r.seq;
	uint64_t t[5];
	t[0] = r.t_ns;
	int n = 1;
	for (; n < 5; n++) {
		if (!th_recv_within(&h, &r, 120 * TH_SEC))
			break;
		CHECK_EQ(r.flags, TH_SYN | TH_ACK);
		CHECK_EQ(r.seq, x);
		CHECK_EQ(r.ack, c.piss + 1);
		t[n] = r.t_ns;
	}
	REQUIRE(n == 5);
	uint64_t d1 = t[1] - t[0];
	CHECK(d1 >= 1 * TH_SEC && d1 <= 3 * TH_SEC);
	for (int i = 2; i < 5; i++) {
		uint64_t d = t[i] - t[i - 1], p = t[i - 1] - t[i - 2];
		/* Exactly double, give or take 2% for timer granularity, unless capped at >= 60 s (5.5). */
		CHECK((d >= p * 2 - p / 50 && d <= p * 2 + p / 50) || d >= 60 * TH_SEC);
	}
	th_advance(&h, 600 * TH_SEC);
	th_drain(&h);
	CHECK_EQ(th_stats(&h).conns, 1); /* only the listener */
	struct vd__tcb *a = NULL;
	CHECK_EQ(vd__tcb_accept(l, &a), -EAGAIN);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 6298 5.5 back-off of the SYN; RFC 1122 4.2.3.5: R2 for a SYN covers at least 3 minutes, then the
 * open fails with ETIMEDOUT. */
TEST(syn_retransmit_backoff_then_timeout)
{
	struct th h;
	struct th_seg r;
	struct vd__tcb *t = NULL;
	REQUIRE(th_open(&h, NULL, 8) == 0);
	REQUIRE(th_peer_port(&h, 5003) == 0);
	REQUIRE(vd__tcb_new(h.tcp, &t) == 0);
	uint64_t t0 = th_now(&h);
	REQUIRE(vd__tcb_connect(t, htonl(TH_PEER_IP), htons(5003)) == -EINPROGRESS);
	REQUIRE(th_recv(&h, &r));
	REQUIRE(r.flags == TH_SYN);
	uint32_t x = r.seq;
	uint64_t last = r.t_ns, prev_d = 0;
	int n = 0;
	while (n < 5 && th_recv_within(&h, &r, 200 * TH_SEC)) {
		CHECK_EQ(r.flags, TH_SYN);
		CHECK_EQ(r.seq, x);
		uint64_t d = r.t_ns - last;
		if (n == 0)
			CHECK(d >= 1 * TH_SEC && d <= 3 * TH_SEC);
		else
			CHECK((d >= prev_d * 2 - prev_d / 50 && d <= prev_d * 2 + prev_d / 50) || d >= 60 * TH_SEC);
		prev_d = d;
		last = r.t_ns;
		n++;
	}
	CHECK(n >= 4);
	/* Still trying at 3 minutes. */
	uint64_t at = th_now(&h) - t0;
	if (at < 180 * TH_SEC)
		th_advance(&h, 180 * TH_SEC - at - TH_MS);
	th_drain(&h);
	CHECK(!(vd__tcb_events(t) & POLLERR));
	CHECK(th_state_is(t, "SYN-SENT"));
	/* Gives up eventually (bounded here at 10 minutes). */
	for (int i = 0; i < 600 && !(vd__tcb_events(t) & POLLERR); i++)
		th_advance(&h, TH_SEC);
	CHECK(vd__tcb_events(t) & POLLERR);
	CHECK_EQ(vd__tcb_error(t), -ETIMEDOUT);
	CHECK_EQ(vd__tcb_error(t), 0); /* SO_ERROR is cleared by reading it */
	CHECK(th_state_is(t, "CLOSED"));
	vd__tcb_close(t);
	CHECK_EQ(th_close(&h), 0);
}

/* A port the engine's nic owns with no socket listening or connected on it: a socket bound to it and
 * never listening (on the sim link, as behind viaductd, packets reach the nic only for ports it owns). */
static struct vd__tcb *bound_closed(struct th *h, uint16_t port)
{
	struct vd__tcb *b = NULL;
	if (vd__tcb_new(h->tcp, &b) || vd__tcb_bind(b, 0, htons(port)))
		return NULL;
	return b;
}

/* RFC 9293 3.10.7.1: CLOSED state. A segment without ACK gets <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>,
 * one with ACK gets <SEQ=SEG.ACK><CTL=RST>; an incoming RST is discarded. */
TEST(closed_port_rst)
{
	struct th h;
	struct th_seg s, r;
	REQUIRE(th_open(&h, NULL, 9) == 0);
	REQUIRE(th_peer_port(&h, 40009) == 0);
	REQUIRE(bound_closed(&h, 81));
	CHECK(th_state_is(bound_closed(&h, 82), "CLOSED"));
	memset(&s, 0, sizeof(s));
	s.src_ip = TH_PEER_IP, s.dst_ip = TH_ENG_IP, s.sport = 40009, s.dport = 81;

	s.flags = TH_SYN, s.seq = 1000, s.win = 1000;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST | TH_ACK);
	CHECK_EQ(r.seq, 0);
	CHECK_EQ(r.ack, 1001); /* the SYN occupies one sequence number */
	CHECK_EQ(r.sport, 81);
	CHECK_EQ(r.dport, 40009);
	CHECK_EQ(r.len, 0);

	s.flags = TH_ACK, s.seq = 5000, s.ack = 777777;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, 777777);

	s.flags = TH_PSH, s.seq = 9000, s.ack = 0, s.len = 10;
	memset(s.data, 'x', 10);
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST | TH_ACK);
	CHECK_EQ(r.seq, 0);
	CHECK_EQ(r.ack, 9010);

	s.flags = TH_FIN | TH_ACK, s.seq = 100, s.ack = 5, s.len = 3;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, 5);

	s.flags = TH_RST, s.len = 0;
	th_send(&h, &s);
	s.flags = TH_RST | TH_ACK;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	/* tcp.h: no_port counts segments without a socket that are answered with RST; whether the two RSTs
	 * (never answered) count too is left open by that wording. */
	uint64_t np = th_stats(&h).no_port;
	CHECK(np == 4 || np == 6);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.10.7.2: LISTEN ignores RST, answers an ACK with <SEQ=SEG.ACK><CTL=RST>, keeps listening. */
TEST(listen_rst_and_ack)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 10) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	REQUIRE(th_peer_port(&h, 40010) == 0);
	memset(&s, 0, sizeof(s));
	s.src_ip = TH_PEER_IP, s.dst_ip = TH_ENG_IP, s.sport = 40010, s.dport = 80, s.win = 1000;
	s.flags = TH_RST, s.seq = 5;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	s.flags = TH_ACK, s.seq = 5, s.ack = 123456;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, 123456);
	struct vd__tcb *a = NULL;
	CHECK_EQ(vd__tcb_accept(l, &a), -EAGAIN);
	CHECK(th_state_is(l, "LISTEN"));
	CHECK(!(vd__tcb_events(l) & (POLLIN | POLLERR)));
	/* Still listening. */
	CHECK_EQ(th_passive_open(&h, &c, l, 80, 40011, &o), 0);
	CHECK(!(vd__tcb_events(l) & POLLIN));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 9293 3.1 / RFC 1122 4.2.2.7: a segment with a wrong checksum is dropped (and counted), in any state. */
TEST(bad_checksum_dropped)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(th_open(&h, NULL, 11) == 0);
	struct vd__tcb *l = th_listen(&h, 80, 8);
	REQUIRE(l);
	REQUIRE(th_peer_port(&h, 40012) == 0);
	REQUIRE(bound_closed(&h, 81));

	/* A SYN with a bad checksum starts nothing. */
	th_conn_init(&c, 80, 40012, &o);
	th_seg_init(&c, &s, TH_SYN);
	th_synopt_apply(&s, &o, 1, 0);
	s.bad_csum = 1;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK_EQ(th_stats(&h).bad_csum, 1);
	CHECK_EQ(th_stats(&h).conns, 2); /* the listener and the bound socket */
	/* To a closed port: no RST either. */
	s.dport = 81;
	th_send(&h, &s);
	CHECK_EQ(th_drain(&h), 0);
	CHECK_EQ(th_stats(&h).no_port, 0);

	REQUIRE(th_passive_open(&h, &c, l, 80, 40013, &o) == 0);
	th_seg_init(&c, &s, TH_ACK | TH_PSH);
	s.len = 100;
	th_fill(s.data, 0, 100);
	s.bad_csum = 1;
	th_send(&h, &s);
	th_advance(&h, TH_SEC);
	CHECK_EQ(th_drain(&h), 0); /* not even a (delayed) ACK */
	CHECK_EQ(vd__tcb_readable(c.tcb), 0);
	CHECK_EQ(th_stats(&h).bad_csum, 3);
	/* The same segment with the right checksum is taken. */
	s.bad_csum = 0;
	c.snd_nxt += 100;
	th_conn_send(&h, &c, &s);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	REQUIRE(th_recv_within(&h, &r, TH_SEC));
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK_EQ(th_stats(&h).bad_csum, 3);
	CHECK_EQ(th_close(&h), 0);
}

/*
 * RFC 4987 (SYN flooding): 256 SYNs from distinct ports against a listener with backlog 4. Memory stays
 * bounded (a few tcbs, not one per SYN); each SYN is answered with a SYN cookie or dropped and counted; a
 * cookie's ACK completes a connection carrying the MSS the SYN asked for; a forged ACK gets a RST (RFC
 * 9293 3.10.7.2) and no connection.
 */
TEST(syn_flood_bounded)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	o.mss = 1000;
	o.ts = 0;
	const int nsyn = 256, backlog = 4;
	REQUIRE(th_open(&h, NULL, 12) == 0);
	struct vd__tcb *l = th_listen(&h, 80, backlog);
	REQUIRE(l);
	int answered = 0;
	struct th_seg last_sa;
	memset(&last_sa, 0, sizeof(last_sa));
	for (int i = 0; i < nsyn; i++) {
		uint16_t pp = (uint16_t)(20000 + i);
		REQUIRE(th_peer_port(&h, pp) == 0);
		th_conn_init(&c, 80, pp, &o);
		th_seg_init(&c, &s, TH_SYN);
		th_synopt_apply(&s, &o, 0, 0);
		th_send(&h, &s);
		while (th_recv(&h, &r)) {
			if (r.flags == (TH_SYN | TH_ACK) && r.dport == pp && r.ack == c.piss + 1) {
				answered++;
				last_sa = r;
			} else {
				CHECK(!(r.flags & TH_RST));
			}
		}
	}
	struct vd__tcp_stats st = th_stats(&h);
	CHECK(st.conns <= (uint64_t)(1 + 16 * backlog)); /* bounded by the backlog, not by the SYNs */
	CHECK_EQ((uint64_t)answered + st.backlog_drops >= (uint64_t)nsyn, 1);
	CHECK(st.syn_cookies_sent > 0 || st.backlog_drops > 0);

	/* A forged ACK (no SYN-ACK was ever sent with this number) gets a RST and makes nothing. */
	uint64_t ok_before = st.syn_cookies_ok;
	memset(&s, 0, sizeof(s));
	s.src_ip = TH_PEER_IP, s.dst_ip = TH_ENG_IP, s.sport = 20000 + 3, s.dport = 80, s.win = 1000;
	s.flags = TH_ACK, s.seq = th_piss(20003) + 1, s.ack = 0x12345678;
	th_send(&h, &s);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.flags, TH_RST);
	CHECK_EQ(r.seq, 0x12345678);
	CHECK_EQ(th_stats(&h).syn_cookies_ok, ok_before);

	if (st.syn_cookies_sent > 0) {
		/* The last SYN came long after the queue filled: its SYN-ACK carries a cookie. ACK it. */
		REQUIRE(answered > 0);
		REQUIRE(last_sa.dport >= 20000 + backlog);
		th_conn_init(&c, 80, last_sa.dport, &o);
		c.snd_nxt = c.piss + 1;
		c.eiss = last_sa.seq;
		c.rcv_nxt = last_sa.seq + 1;
		th_conn_synopts(&c, &last_sa, &o);
		/* Make room in the accept queue first, as an application would. */
		struct vd__tcb *a = NULL;
		while (vd__tcb_accept(l, &a) == 0)
			vd__tcb_close(a);
		th_conn_ack(&h, &c);
		CHECK_EQ(th_stats(&h).syn_cookies_ok, ok_before + 1);
		a = NULL;
		REQUIRE(vd__tcb_accept(l, &a) == 0);
		struct vd_addr pa;
		CHECK_EQ(vd__tcb_peer(a, &pa), 0);
		CHECK_EQ(pa.port, htons(last_sa.dport));
		CHECK(th_state_is(a, "ESTABLISHED"));
		/* RFC 4987 3.6: the cookie kept (at most) the MSS the SYN asked for. */
		CHECK_EQ(th_setopt_int(a, IPPROTO_TCP, TCP_NODELAY, 1), 0);
		static uint8_t buf[3000];
		th_fill(buf, 0, sizeof(buf));
		c.tcb = a;
		CHECK_EQ(th_app_send(a, buf, sizeof(buf)), (long long)sizeof(buf));
		for (int i = 0; i < 400 && c.rx_len < sizeof(buf); i++) {
			if (!th_recv_within(&h, &r, 2 * TH_SEC))
				break;
			if (r.dport != c.pport)
				continue;
			CHECK(seg_mss_use(&r) <= 1000);
			th_conn_note(&c, &r);
			th_conn_ack(&h, &c);
		}
		CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	}
	/* When the flood is over, embryonic state drains away. */
	th_advance(&h, 600 * TH_SEC);
	th_drain(&h);
	CHECK(th_stats(&h).conns <= 2);
	CHECK_EQ(th_close(&h), 0);
}

TEST_MAIN(T(handshake_options_passive), T(handshake_no_options_passive), T(handshake_options_active),
	  T(peer_window_scale_applied), T(simultaneous_open), T(syn_retransmit_answered_again),
	  T(synack_retransmit_backoff), T(syn_retransmit_backoff_then_timeout), T(closed_port_rst),
	  T(listen_rst_and_ack), T(bad_checksum_dropped), T(syn_flood_bounded))
