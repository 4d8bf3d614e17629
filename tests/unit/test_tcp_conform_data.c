/* SPDX-License-Identifier: MIT */
/*
 * TCP conformance, data transfer: flow control (full receive window, zero window and persist probes),
 * out-of-order data and SACK, fast retransmit and recovery, the retransmission timer, delayed ACK, Nagle.
 * Packet by packet over the sim backend (tcp_harness.h); each test names the RFC rule it checks.
 */
#include "harness.h"
#include "tcp_harness.h"

#include <netinet/tcp.h>

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

static int setup(struct th *h, struct th_conn *c, uint64_t seed, uint16_t pport, const struct th_synopt *o)
{
	return setup_cfg(h, c, seed, pport, o, NULL);
}

/* The right edge the engine last advertised (RFC 9293 3.8.6: it should never move left). */
static uint32_t right_edge(const struct th_conn *c, const struct th_seg *r)
{
	return r->ack + ((uint32_t)r->win << (c->ws_ok ? c->ws_eng : 0));
}

/*
 * RFC 9293 3.8.6 / 3.10.7.4: the peer fills the engine's receive window while the application reads
 * nothing. The window closes to 0 with every byte up to the right edge accepted; a segment beyond a zero
 * window is not accepted but ACKed (window 0); once the application reads, a window update follows
 * (RFC 1122 4.2.3.3) and data flows again. The right edge never moves left.
 */
TEST(full_receive_window)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	struct vd__tcp_cfg cfg = th_cfg();
	cfg.rcvbuf = 16384;
	REQUIRE(setup_cfg(&h, &c, 41, 40041, &o, &cfg) == 0);
	uint32_t start = c.snd_nxt;
	uint32_t right = c.syn.ack + c.syn.win; /* the SYN-ACK's window is unscaled (RFC 7323 2.2) */
	uint32_t off = 0;
	int zero = 0;
	for (int i = 0; i < 1000 && !zero; i++) {
		if (th_lt(c.snd_nxt, right)) {
			uint32_t n = right - c.snd_nxt < 1000 ? right - c.snd_nxt : 1000;
			th_conn_data(&h, &c, off, n, 0);
			off += n;
		} else {
			th_advance(&h, 500 * TH_MS); /* let a delayed ACK come */
		}
		while (th_recv(&h, &r)) {
			th_conn_note(&c, &r);
			uint32_t e = right_edge(&c, &r);
			CHECK(th_le(right, e)); /* RFC 9293 3.8.6: no shrinking */
			if (th_lt(right, e))
				right = e;
			if (r.win == 0 && r.ack == c.snd_nxt)
				zero = 1;
		}
	}
	REQUIRE(zero);
	uint32_t got = c.snd_nxt - start;
	CHECK_EQ(vd__tcb_readable(c.tcb), got);
	CHECK_EQ(got, right - start); /* everything up to the edge was taken */
	CHECK(got >= 4096 && got <= 4 * cfg.rcvbuf);

	/* Beyond a zero window: not accepted, ACKed with window 0 (RFC 9293 3.10.7.4, RCV.WND = 0). */
	th_conn_data(&h, &c, off, 100, 0);
	c.snd_nxt -= 100;
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK_EQ(r.win, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), got);
	/* A one-byte probe (RFC 1122 4.2.2.17), a second later: answered the same way. */
	th_advance(&h, TH_SEC);
	th_drain(&h);
	th_conn_data(&h, &c, off, 1, 0);
	c.snd_nxt -= 1;
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK_EQ(r.win, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), got);

	/* The application reads everything: a window update within a second. */
	static uint8_t buf[65536];
	CHECK_EQ(th_app_recv(c.tcb, buf, sizeof(buf)), (long long)got);
	int ok = 1;
	for (uint32_t i = 0; i < got; i++)
		ok &= buf[i] == th_pat(i);
	CHECK(ok);
	REQUIRE(th_recv_within(&h, &r, TH_SEC));
	CHECK_EQ(r.ack, c.snd_nxt);
	CHECK(r.win > 0);
	th_conn_note(&c, &r);
	th_conn_data(&h, &c, off, 100, 0);
	CHECK_EQ(vd__tcb_readable(c.tcb), 100);
	CHECK_EQ(th_close(&h), 0);
}

/*
 * RFC 9293 3.8.6.1 / RFC 1122 4.2.2.17: against a zero window the engine sends persist probes (one octet
 * at SND.UNA, or a keep-alive style probe at SND.UNA - 1), backing off exponentially, never giving up while
 * they are ACKed; a window update resumes the transfer.
 */
TEST(zero_window_persist)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 42, 40042, &o) == 0);
	c.win = 0;
	th_conn_ack(&h, &c);
	static uint8_t buf[1000];
	th_fill(buf, 0, sizeof(buf));
	CHECK_EQ(th_app_send(c.tcb, buf, sizeof(buf)), 1000);
	uint32_t una = c.rcv_nxt;
	uint64_t t_send = th_now(&h);
	uint64_t t[8];
	int n = 0;
	for (int i = 0; i < 50 && n < 8; i++) {
		if (!th_recv_within(&h, &r, 130 * TH_SEC))
			break;
		/* Nothing beyond one octet past the zero window. */
		CHECK(th_le(r.seq + r.len, una + 1));
		int probe = (r.seq == una && r.len <= 1) || (r.seq == una - 1 && r.len == 0);
		CHECK(probe);
		if (probe)
			t[n++] = r.t_ns;
		if (r.has_ts)
			c.ts_recent = r.tsval;
		th_conn_ack(&h, &c); /* window still 0; the probe octet is not taken */
		if (th_now(&h) - t_send > 300 * TH_SEC)
			break;
	}
	REQUIRE(n >= 4);
	CHECK(t[0] - t_send <= 5 * TH_SEC);
	for (int i = 2; i < n; i++) {
		uint64_t d = t[i] - t[i - 1], p = t[i - 1] - t[i - 2];
		CHECK(d >= p + p / 2 || d >= 60 * TH_SEC); /* exponential, unless capped (RFC 6298 5.5) */
	}
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	CHECK(!(vd__tcb_events(c.tcb) & POLLERR));

	/* The window opens: the data follows. */
	c.win = 65535;
	th_conn_ack(&h, &c);
	for (int i = 0; i < 40 && c.rx_len < sizeof(buf); i++) {
		if (!th_recv_within(&h, &r, TH_SEC))
			break;
		th_conn_note(&c, &r);
		th_conn_ack(&h, &c);
	}
	CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	CHECK_EQ(th_close(&h), 0);
}

/*
 * RFC 5681 4.2: out-of-order data gets an immediate duplicate ACK, and so does data that fills a gap.
 * RFC 2018 4: the ACK's first SACK block covers the segment that triggered it, then the most recent
 * other blocks; blocks describe exactly what is held.
 */
TEST(out_of_order_sack)
{
	struct th h;
	static struct th_conn c;
	struct th_seg s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 43, 40043, &o) == 0);
	REQUIRE(c.sack);
	uint32_t st = c.snd_nxt;

	/* Send stream bytes [a, b) at their sequence numbers, without moving snd_nxt. */
#define SEND_RANGE(a, b)                                        \
	do {                                                    \
		th_seg_init(&c, &s, TH_ACK | TH_PSH);           \
		s.seq = st + (a);                               \
		s.len = (b) - (a);                              \
		th_fill(s.data, (a), (b) - (a));                \
		th_conn_send(&h, &c, &s);                       \
	} while (0)

	SEND_RANGE(500, 1000);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, st);
	CHECK_EQ(r.nsack, 1);
	CHECK_EQ(r.sack[0][0], st + 500);
	CHECK_EQ(r.sack[0][1], st + 1000);
	CHECK_EQ(th_drain(&h), 0);

	SEND_RANGE(1500, 2000);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, st);
	CHECK_EQ(r.nsack, 2);
	CHECK_EQ(r.sack[0][0], st + 1500);
	CHECK_EQ(r.sack[0][1], st + 2000);
	CHECK_EQ(r.sack[1][0], st + 500);
	CHECK_EQ(r.sack[1][1], st + 1000);

	SEND_RANGE(0, 500);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, st + 1000);
	CHECK_EQ(r.nsack, 1);
	CHECK_EQ(r.sack[0][0], st + 1500);
	CHECK_EQ(r.sack[0][1], st + 2000);
	CHECK_EQ(vd__tcb_readable(c.tcb), 1000);

	SEND_RANGE(1000, 1500);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.ack, st + 2000);
	CHECK_EQ(r.nsack, 0);
#undef SEND_RANGE
	c.snd_nxt = st + 2000;
	static uint8_t buf[4000];
	CHECK_EQ(th_app_recv(c.tcb, buf, sizeof(buf)), 2000);
	int ok = 1;
	for (uint32_t i = 0; i < 2000; i++)
		ok &= buf[i] == th_pat(i);
	CHECK(ok);
	CHECK_EQ(th_close(&h), 0);
}

/*
 * Receives what the engine sends right now (no clock movement) without acknowledging it; returns the
 * number of data segments and the highest sequence number sent.
 */
static int take_burst(struct th *h, struct th_conn *c, uint32_t *hi, struct th_seg *first)
{
	struct th_seg r;
	int n = 0;
	while (th_recv(h, &r)) {
		if (r.has_ts)
			c->ts_recent = r.tsval;
		if (!r.len)
			continue;
		if (!n && first)
			*first = r;
		n++;
		if (th_lt(*hi, r.seq + r.len))
			*hi = r.seq + r.len;
	}
	return n;
}

/* Finishes a transfer of total bytes: notes and ACKs everything, moving the clock when idle. */
static void finish(struct th *h, struct th_conn *c, uint32_t total)
{
	struct th_seg r;
	for (int i = 0; i < 2000 && c->rx_len < total; i++) {
		if (!th_recv_within(h, &r, 5 * TH_SEC))
			break;
		th_conn_note(c, &r);
		th_conn_ack(h, c);
	}
}

/*
 * RFC 5681 3.2: the third duplicate ACK (not the first or second) triggers an immediate retransmission of
 * the first unacknowledged segment; RFC 6582 3.2: a partial ACK then gets the next hole retransmitted; the
 * transfer completes without any retransmission timeout.
 */
TEST(fast_retransmit_newreno)
{
	struct th h;
	static struct th_conn c;
	struct th_seg first;
	struct th_synopt o = th_synopt_all();
	o.sack_ok = 0;
	REQUIRE(setup(&h, &c, 44, 40044, &o) == 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	const uint32_t total = 60000;
	static uint8_t buf[60000];
	th_fill(buf, 0, total);
	CHECK_EQ(th_app_send(c.tcb, buf, total), (long long)total);

	/* Grow the window until one burst has at least 5 segments. */
	uint32_t hi = c.rcv_nxt;
	int k = 0;
	for (int i = 0; i < 10; i++) {
		k = take_burst(&h, &c, &hi, &first);
		if (k >= 5)
			break;
		th_conn_set_rcvd(&c, buf, hi - (c.eiss + 1)); /* accept everything, cumulatively */
		th_conn_ack(&h, &c);
	}
	REQUIRE(k >= 5);
	REQUIRE(first.seq == c.rcv_nxt);
	/* The peer got everything but the first segment of this burst: duplicate ACKs. */
	struct th_seg r;
	for (int d = 1; d <= 3; d++) {
		th_conn_ack(&h, &c);
		int retx = 0;
		while (th_recv(&h, &r)) {
			if (r.has_ts)
				c.ts_recent = r.tsval;
			if (r.len && r.seq == first.seq)
				retx = 1;
			else if (r.len && th_lt(hi, r.seq + r.len))
				hi = r.seq + r.len; /* limited transmit (RFC 3042) may send new data */
		}
		if (d < 3)
			CHECK(!retx);
		else
			CHECK(retx);
	}
	struct vd__tcp_stats st = th_stats(&h);
	CHECK_EQ(st.fast_retrans, 1);
	CHECK_EQ(st.rto_expired, 0);
	/* The peer takes only the retransmitted segment (a partial ACK): the next one comes again at once. */
	th_conn_set_rcvd(&c, buf, first.seq + first.len - (c.eiss + 1));
	th_conn_ack(&h, &c);
	int next = 0;
	while (th_recv(&h, &r)) {
		if (r.len && r.seq == first.seq + first.len)
			next = 1;
		th_conn_note(&c, &r);
	}
	CHECK(next);
	th_conn_ack(&h, &c);
	finish(&h, &c, total);
	CHECK(th_conn_rx_ok(&c, total));
	CHECK_EQ(th_stats(&h).rto_expired, 0);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 2018 / RFC 6675: with SACK, duplicate ACKs that SACK the rest of the burst get the hole retransmitted
 * and nothing the receiver holds. */
TEST(sack_recovery)
{
	struct th h;
	static struct th_conn c;
	struct th_seg first, s, r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 45, 40045, &o) == 0);
	REQUIRE(c.sack);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	const uint32_t total = 60000;
	static uint8_t buf[60000];
	th_fill(buf, 0, total);
	CHECK_EQ(th_app_send(c.tcb, buf, total), (long long)total);
	uint32_t hi = c.rcv_nxt;
	int k = 0;
	for (int i = 0; i < 10; i++) {
		k = take_burst(&h, &c, &hi, &first);
		if (k >= 5)
			break;
		th_conn_set_rcvd(&c, buf, hi - (c.eiss + 1));
		th_conn_ack(&h, &c);
	}
	REQUIRE(k >= 5);
	uint32_t hole_end = first.seq + first.len, sacked_hi = hi;
	int retx_hole = 0, retx_sacked = 0;
	for (int d = 1; d <= 3; d++) {
		th_seg_init(&c, &s, TH_ACK);
		s.nsack = 1;
		s.sack[0][0] = hole_end;
		s.sack[0][1] = sacked_hi;
		th_conn_send(&h, &c, &s);
		while (th_recv(&h, &r)) {
			if (r.has_ts)
				c.ts_recent = r.tsval;
			if (!r.len)
				continue;
			if (r.seq == first.seq)
				retx_hole = 1;
			else if (th_lt(r.seq, sacked_hi) && th_lt(hole_end, r.seq + r.len))
				retx_sacked = 1;
		}
	}
	CHECK(retx_hole);
	CHECK(!retx_sacked);
	CHECK(th_stats(&h).rto_expired == 0);
	th_conn_set_rcvd(&c, buf, sacked_hi - (c.eiss + 1));
	th_conn_ack(&h, &c);
	finish(&h, &c, total);
	CHECK(th_conn_rx_ok(&c, total));
	CHECK_EQ(th_close(&h), 0);
}

/*
 * RFC 6298 5: unacknowledged data is retransmitted when the RTO expires (not before RTO.min, 2.4), the
 * timer backs off x2 on each expiry (5.5); RFC 5681 3.1: after a timeout only one segment goes out (the
 * loss window). A single RFC 8985 tail loss probe before the first timeout is allowed. The transfer
 * completes once ACKs return.
 */
TEST(rto_retransmit_backoff)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r, first;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 46, 40046, &o) == 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	static uint8_t buf[4000];
	th_fill(buf, 0, sizeof(buf));
	uint64_t t0 = th_now(&h);
	CHECK_EQ(th_app_send(c.tcb, buf, sizeof(buf)), 4000);
	uint32_t hi = c.rcv_nxt;
	int k = take_burst(&h, &c, &hi, &first);
	REQUIRE(k >= 2);
	REQUIRE(first.seq == c.rcv_nxt);
	uint64_t t[5], t_arm = t0;
	int n = 0, tlp = 0;
	for (int i = 0; i < 50 && n < 5; i++) {
		if (!th_recv_within(&h, &r, 200 * TH_SEC))
			break;
		if (r.has_ts)
			c.ts_recent = r.tsval;
		if (!r.len)
			continue;
		if (r.seq != first.seq && n == 0 && !tlp && r.seq + r.len == hi) {
			/* RFC 8985 7: one tail loss probe (the last segment again) before the RTO is allowed; the
			 * RTO is armed anew when it is sent (7.3). */
			tlp = 1;
			t_arm = r.t_ns;
			continue;
		}
		CHECK_EQ(r.seq, first.seq); /* only the first segment, one per expiry */
		if (n && r.t_ns == t[n - 1])
			CHECK(0);
		t[n++] = r.t_ns;
	}
	REQUIRE(n == 5);
	CHECK(t[0] - t_arm >= 200 * TH_MS && t[0] - t_arm <= 3 * TH_SEC);
	for (int i = 1; i < 5; i++) {
		uint64_t d = t[i] - t[i - 1], p = i == 1 ? t[0] - t_arm : t[i - 1] - t[i - 2];
		CHECK((d >= p * 2 - p / 50 && d <= p * 2 + p / 50) || d >= 60 * TH_SEC);
	}
	struct vd__tcp_stats st = th_stats(&h);
	CHECK_EQ(st.rto_expired, 5);
	CHECK(st.retrans_segs >= 5);
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	/* The peer finally takes the retransmission and ACKs it: the rest follows. */
	th_conn_note(&c, &r);
	th_conn_ack(&h, &c);
	finish(&h, &c, sizeof(buf));
	CHECK(th_conn_rx_ok(&c, sizeof(buf)));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 1122 4.2.3.5: with no ACK at all the connection is eventually aborted (ETIMEDOUT), but not before R2
 * (at least 100 s). */
TEST(rto_gives_up)
{
	struct th h;
	static struct th_conn c;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 47, 40047, &o) == 0);
	uint8_t b[100];
	th_fill(b, 0, sizeof(b));
	uint64_t t0 = th_now(&h);
	CHECK_EQ(th_app_send(c.tcb, b, sizeof(b)), 100);
	th_advance(&h, 100 * TH_SEC);
	th_drain(&h);
	CHECK(!(vd__tcb_events(c.tcb) & POLLERR));
	CHECK(th_state_is(c.tcb, "ESTABLISHED"));
	for (int i = 0; i < 120 && !(vd__tcb_events(c.tcb) & POLLERR); i++) {
		th_advance(&h, 30 * TH_SEC);
		th_drain(&h);
	}
	CHECK(vd__tcb_events(c.tcb) & POLLERR);
	CHECK(th_now(&h) - t0 >= 100 * TH_SEC);
	CHECK_EQ(vd__tcb_error(c.tcb), -ETIMEDOUT);
	CHECK(th_state_is(c.tcb, "CLOSED"));
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 1122 4.2.3.2 / RFC 5681 4.2: a lone segment's ACK is delayed (after a possible quick-ACK start), but
 * by no more than delack_ms (< 500 ms); every second full-sized segment is ACKed at once. */
TEST(delayed_ack)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 48, 40048, &o) == 0);
	REQUIRE(c.syn.has_mss && c.syn.mss > 100);
	/* Small segments 1 ms apart. A receiver may ACK the first few at once (a quick-ACK start, as Linux
	 * does); after at most 32 of them the ACK must be delayed, and never by more than delack_ms. */
	uint32_t off = 0;
	int delayed = 0;
	for (int i = 0; i < 32 && !delayed; i++) {
		uint64_t t0 = th_now(&h);
		th_conn_data(&h, &c, off, 100, 0);
		off += 100;
		if (th_recv(&h, &r)) {
			CHECK_EQ(r.ack, c.snd_nxt);
			th_drain(&h);
		} else {
			delayed = 1;
			REQUIRE(th_recv_within(&h, &r, 600 * TH_MS));
			CHECK_EQ(r.ack, c.snd_nxt);
			CHECK(r.t_ns - t0 <= 40 * TH_MS + TH_MS);
			CHECK(r.t_ns - t0 >= 1 * TH_MS);
		}
		th_advance(&h, TH_MS);
		th_drain(&h);
	}
	CHECK(delayed);

	/* Two full-sized segments (the engine's MSS less the timestamp option). */
	th_advance(&h, TH_SEC);
	th_drain(&h);
	uint32_t full = c.syn.mss - (c.ts ? 12u : 0u);
	th_conn_data(&h, &c, off, full, 0);
	th_conn_data(&h, &c, off + full, full, 0);
	int acked = 0;
	while (th_recv(&h, &r))
		if (r.ack == c.snd_nxt)
			acked = 1;
	CHECK(acked);
	CHECK_EQ(vd__tcb_readable(c.tcb), off + 2 * full);
	CHECK_EQ(th_close(&h), 0);
}

/* RFC 896 / RFC 1122 4.2.3.4: with data unacknowledged, a partial segment is held (small writes combine)
 * while full-sized segments still go; TCP_NODELAY sends at once. */
TEST(nagle_and_nodelay)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	REQUIRE(setup(&h, &c, 49, 40049, &o) == 0);
	uint8_t b[4000];
	th_fill(b, 0, sizeof(b));
	CHECK_EQ(th_app_send(c.tcb, b, 100), 100);
	REQUIRE(th_recv(&h, &r)); /* nothing outstanding: sent at once */
	CHECK_EQ(r.len, 100);
	th_conn_note(&c, &r);
	CHECK_EQ(th_app_send(c.tcb, b + 100, 100), 100);
	CHECK_EQ(th_app_send(c.tcb, b + 200, 100), 100);
	CHECK_EQ(th_app_send(c.tcb, b + 300, 100), 100);
	CHECK_EQ(th_drain(&h), 0);
	th_conn_ack(&h, &c);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.len, 300); /* combined */
	th_conn_note(&c, &r);
	/* 2 full segments and a tail, with the 300 bytes unacked: the full ones go, the tail waits. */
	uint32_t full = 1460 - (c.ts ? 12u : 0u);
	CHECK_EQ(th_app_send(c.tcb, b + 400, 2 * full + 50), (long long)(2 * full + 50));
	int fulls = 0, partial = 0;
	while (th_recv(&h, &r)) {
		if (r.len == full)
			fulls++;
		else if (r.len)
			partial++;
		th_conn_note(&c, &r);
	}
	CHECK_EQ(fulls, 2);
	CHECK_EQ(partial, 0);
	th_conn_ack(&h, &c);
	REQUIRE(th_recv(&h, &r));
	CHECK_EQ(r.len, 50);
	th_conn_note(&c, &r);
	CHECK(th_conn_rx_ok(&c, 400 + 2 * full + 50));

	/* TCP_NODELAY: the second small write goes out although the first is unacked. */
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	uint32_t base = c.rx_len;
	CHECK_EQ(th_app_send(c.tcb, b, 100), 100);
	CHECK_EQ(th_app_send(c.tcb, b + 100, 100), 100);
	int segs = 0;
	while (th_recv(&h, &r))
		if (r.len)
			segs++, th_conn_note(&c, &r);
	CHECK_EQ(segs, 2);
	CHECK_EQ(c.rx_len, base + 200);
	CHECK_EQ(th_close(&h), 0);
}

/*
 * RFC 6298 2.2/2.3: the RTO follows measured round trips (RTO = SRTT + max(G, 4 RTTVAR), so above SRTT),
 * not just RTO.min: with an 800 ms round trip (SYN-ACK and ACKs held back by the peer) nothing is
 * retransmitted early and a lost segment waits longer than the round trip before it is sent again.
 */
TEST(rto_follows_rtt)
{
	struct th h;
	static struct th_conn c;
	struct th_seg r;
	struct th_synopt o = th_synopt_all();
	const uint64_t rtt = 800 * TH_MS;
	REQUIRE(th_open(&h, NULL, 50) == 0);
	REQUIRE(th_active_open_delayed(&h, &c, 5050, &o, rtt) == 0);
	CHECK_EQ(th_setopt_int(c.tcb, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	uint8_t b[100];
	th_fill(b, 0, sizeof(b));
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(th_app_send(c.tcb, b, sizeof(b)), 100);
		REQUIRE(th_recv(&h, &r));
		th_conn_note(&c, &r);
		th_advance(&h, rtt);
		CHECK_EQ(th_drain(&h), 0); /* no spurious retransmission */
		th_conn_ack(&h, &c);
	}
	CHECK_EQ(th_stats(&h).retrans_segs, 0);
	CHECK_EQ(th_app_send(c.tcb, b, sizeof(b)), 100);
	REQUIRE(th_recv(&h, &r));
	uint64_t t0 = r.t_ns;
	REQUIRE(th_recv_within(&h, &r, 10 * TH_SEC));
	CHECK(r.len == 100);
	CHECK(r.t_ns - t0 > rtt + 100 * TH_MS);
	CHECK(r.t_ns - t0 <= 4 * TH_SEC);
	CHECK_EQ(th_close(&h), 0);
}

TEST_MAIN(T(full_receive_window), T(zero_window_persist), T(out_of_order_sack), T(fast_retransmit_newreno),
	  T(sack_recovery), T(rto_retransmit_backoff), T(rto_gives_up), T(rto_follows_rtt), T(delayed_ack), T(nagle_and_nodelay))
