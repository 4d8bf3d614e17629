/* SPDX-License-Identifier: MIT */
/*
 * Segment arrival (RFC 9293 3.10.7): header and checksum checks, demultiplexing, and the processing for
 * each state - LISTEN (3.10.7.2, with SYN cookies per RFC 4987), SYN-SENT (3.10.7.3) and the synchronized
 * states (3.10.7.4, hardened per RFC 5961 and with PAWS per RFC 7323 5).
 */
#include "tcp_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/core/frame.h"

#define PAWS_IDLE_NS (24ull * 24 * 3600 * NS_PER_S)   /* RFC 7323 5.5: 24 days */
#define SYNQ_MIN 16u
#define SYNQ_MAX 4096u
#define RTT_SANE_NS (60ull * NS_PER_S)
#define QUICKACKS 16   /* Linux's TCP_MAX_QUICKACKS */

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void vd__tcp_input(struct vd__tcp *t, const void *ipv, uint32_t len)
{
	const uint8_t *ip = ipv;
	vd__tcp_clock(t);
	if (len < IP_HLEN + TCP_HLEN) {
		t->st.malformed++;
		return;
	}
	uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
	if (ihl < IP_HLEN || ihl + TCP_HLEN > len) {
		t->st.malformed++;
		return;
	}
	const uint8_t *h = ip + ihl;
	uint32_t tlen = len - ihl;
	uint32_t doff = (uint32_t)(h[12] >> 4) * 4;
	if (doff < TCP_HLEN || doff > tlen) {
		t->st.malformed++;
		return;
	}
	/* RFC 9293 3.1 / 3.10.7: the checksum covers the pseudo-header and the whole segment */
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = IPPROTO_TCP;
	ph[10] = (uint8_t)(tlen >> 8);
	ph[11] = (uint8_t)tlen;
	uint32_t pseudo = vd__csum_partial(ph, sizeof(ph), 0);
	uint16_t field;
	memcpy(&field, h + 16, 2);
	/*
	 * A Linux sender with TX checksum offload leaves only the folded pseudo-header sum in the field
	 * (CHECKSUM_PARTIAL) and expects the device to finish; across a veth nothing does (same rule as the
	 * UDP parser in lib/core/frame.c). Otherwise the full sum must verify.
	 */
	uint16_t partial = (uint16_t)~vd__csum_fold(pseudo);
	if (field != partial && vd__csum_fold(vd__csum_partial(h, tlen, pseudo)) != 0) {
		t->st.bad_csum++;
		return;
	}

	struct tcp_seg s;
	memcpy(&s.sip, ip + 12, 4);
	memcpy(&s.dip, ip + 16, 4);
	memcpy(&s.sport, h, 2);
	memcpy(&s.dport, h + 2, 2);
	s.seq = rd32(h + 4);
	s.ack = rd32(h + 8);
	s.flags = h[13] & 0x3f;
	s.wnd = rd16(h + 14);
	s.data = h + doff;
	s.dlen = tlen - doff;
	if (vd__tcp_opt_parse(h + TCP_HLEN, doff - TCP_HLEN, (s.flags & TH_SYN) != 0, &s.opt) < 0) {
		t->st.malformed++;
		return;
	}
	if (s.sport == 0 || s.dport == 0) {
		t->st.malformed++;   /* port 0 is reserved; nothing legitimate uses it */
		return;
	}
	t->st.segs_in++;
	t->st.bytes_in += s.dlen;
	vd__tcp_input_seg(t, &s);
}

/* ---- LISTEN ------------------------------------------------------------------------------------- */

static void negotiate_from_syn(struct vd__tcb *c, const struct tcp_seg *s)
{
	/* RFC 7323 2.2: window scaling only if both SYNs carry it; then each side's shift applies */
	c->ws_ok = s->opt.has_ws;
	if (c->ws_ok)
		c->snd_wscale = s->opt.ws;
	else
		c->snd_wscale = c->rcv_wscale = 0;
	/* RFC 7323 3.2: timestamps only if the SYN carried them */
	c->ts_ok = s->opt.has_ts;
	if (c->ts_ok) {
		c->ts_recent = s->opt.tsval;
		c->ts_recent_ns = c->t->now;
	}
	c->sack_ok = s->opt.sack_ok;   /* RFC 2018 2 */
	c->peer_mss = s->opt.has_mss ? s->opt.mss : 536;   /* RFC 9293 3.7.1 */
	vd__tcp_set_mss(c);
}

/* A connection tcb for listener l and segment s (a SYN or a cookie's ACK); NULL when out of memory or
 * past max_conns. */
static struct vd__tcb *child_new(struct vd__tcb *l, const struct tcp_seg *s)
{
	struct vd__tcp *t = l->t;
	struct vd__tcb *c = vd__tcp_alloc_tcb(t);
	if (!c)
		return NULL;
	c->sndbuf = l->sndbuf;
	c->rcvbuf = l->rcvbuf;
	c->nodelay = l->nodelay;
	c->keepalive = l->keepalive;
	c->keepidle_s = l->keepidle_s;
	c->keepintvl_s = l->keepintvl_s;
	c->keepcnt = l->keepcnt;
	c->user_mss = l->user_mss;
	c->linger_on = l->linger_on;
	c->linger_s = l->linger_s;
	if (vd__tcb_init_conn(c) < 0) {
		vd__tcp_free_tcb(c);
		return NULL;
	}
	c->lip = s->dip;
	c->lport = s->dport;
	c->rip = s->sip;
	c->rport = s->sport;
	c->ts_off = vd__tcp_ts_off(t, c->lip, c->lport, c->rip, c->rport);
	vd__tcp_port_ref(t, c->lport);
	c->owns_port = 1;
	c->ephemeral = l->ephemeral;
	c->parent = l;
	return c;
}

static void acq_add(struct vd__tcb *l, struct vd__tcb *c)
{
	c->qnext = NULL;
	c->qprev = l->acq_tail;
	if (l->acq_tail)
		l->acq_tail->qnext = c;
	else
		l->acq_head = c;
	l->acq_tail = c;
	l->acq_len++;
	c->in_acq = 1;
}

static void synq_add(struct vd__tcb *l, struct vd__tcb *c)
{
	c->qprev = NULL;
	c->qnext = l->synq;
	if (l->synq)
		l->synq->qprev = c;
	l->synq = c;
	l->syn_len++;
}

/* SYN-RECEIVED -> ESTABLISHED of a passive child: from the SYN queue to the accept queue. */
static void synq_to_acq(struct vd__tcb *c)
{
	struct vd__tcb *l = c->parent;
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		l->synq = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	l->syn_len--;
	acq_add(l, c);
}

static void conn_input(struct vd__tcb *c, struct tcp_seg *s);

/* RFC 4987 3.6: the ACK that completes a cookie handshake creates the connection. */
static void cookie_accept(struct vd__tcb *l, struct tcp_seg *s, uint32_t mss)
{
	struct vd__tcp *t = l->t;
	if (l->acq_len >= l->backlog) {
		t->st.backlog_drops++;
		return;
	}
	struct vd__tcb *c = child_new(l, s);
	if (!c) {
		t->st.backlog_drops++;
		return;
	}
	c->irs = s->seq - 1;
	c->rcv_nxt = s->seq;
	c->iss = s->ack - 1;
	c->snd_una = c->snd_nxt = c->snd_max = s->ack;
	int ws = -1, sack = 0;
	if (s->opt.has_ts && vd__cookie_ts_decode(s->opt.tsecr, &ws, &sack)) {
		c->ts_ok = 1;
		c->ts_recent = s->opt.tsval;
		c->ts_recent_ns = t->now;
		c->sack_ok = (uint8_t)sack;
		c->ws_ok = ws >= 0;
		c->snd_wscale = ws >= 0 ? (uint8_t)ws : 0;
		if (ws < 0)
			c->rcv_wscale = 0;
	} else {
		c->ts_ok = c->sack_ok = c->ws_ok = 0;
		c->snd_wscale = c->rcv_wscale = 0;
	}
	c->peer_mss = mss;
	vd__tcp_set_mss(c);
	/* what the cookie SYN-ACK advertised (tcp_out.c): the unscaled window */
	uint32_t w = t->cfg.rcvbuf > 65535 ? 65535 : t->cfg.rcvbuf;
	c->rcv_adv = c->rcv_nxt + w;
	c->last_ack_sent = c->rcv_nxt;
	c->snd_wnd = s->wnd << c->snd_wscale;
	c->max_sndwnd = c->snd_wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	c->state = TCPS_ESTABLISHED;
	c->ever_conn = 1;
	c->quickack = QUICKACKS;
	vd__cc_init(c);
	vd__tcp_hash_add(c);
	acq_add(l, c);
	t->st.syn_cookies_ok++;
	t->st.passive_opens++;
	vd__tcp_arm_keepalive(c);
	/* the rest of the segment (data, FIN) as in ESTABLISHED; the ACK itself acknowledges nothing new */
	conn_input(c, s);
	vd__tcp_notify(l);
}

static uint32_t synq_limit(const struct vd__tcb *l)
{
	uint32_t n = l->backlog;
	return n < SYNQ_MIN ? SYNQ_MIN : n > SYNQ_MAX ? SYNQ_MAX : n;
}

static void listen_input(struct vd__tcb *l, struct tcp_seg *s)
{
	struct vd__tcp *t = l->t;
	if (s->flags & TH_RST)
		return;   /* RFC 9293 3.10.7.2 first check */
	if (s->flags & TH_ACK) {
		if (!(s->flags & TH_SYN)) {
			uint32_t mss = vd__cookie_check(t, s);
			if (mss) {
				cookie_accept(l, s, mss);
				return;
			}
		}
		vd__tcp_send_rst_for(t, s);   /* RFC 9293 3.10.7.2 second check: <SEQ=SEG.ACK><CTL=RST> */
		return;
	}
	if (!(s->flags & TH_SYN))
		return;
	if (l->acq_len >= l->backlog) {
		/* accept queue full: drop the SYN, the peer retries (what Linux does) */
		t->st.backlog_drops++;
		return;
	}
	struct vd__tcb *c = NULL;
	if (l->syn_len < synq_limit(l))
		c = child_new(l, s);
	if (!c) {
		/* RFC 4987 3.6: SYN queue full (a flood, or out of tcbs): answer statelessly with a cookie */
		uint32_t ours = t->ip_mtu - IP_HLEN - TCP_HLEN;
		uint32_t peer = s->opt.has_mss ? s->opt.mss : 536;
		uint32_t mss = peer < ours ? peer : ours, enc;
		uint32_t isn = vd__cookie_make(t, s, (uint16_t)(mss > 65535 ? 65535 : mss), &enc);
		vd__tcp_send_cookie_synack(t, s, isn, enc, vd__tcp_wscale_for(l->rcvbuf));
		return;
	}
	synq_add(l, c);
	negotiate_from_syn(c, s);
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->rcv_adv = c->rcv_nxt;   /* nothing advertised yet: the SYN-ACK sets it */
	c->iss = vd__tcp_isn(t, c->lip, c->lport, c->rip, c->rport);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	/* RFC 7323 2.2: the window of a SYN is never scaled */
	c->snd_wnd = s->wnd;
	c->max_sndwnd = s->wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = c->iss;
	c->state = TCPS_SYN_RCVD;
	vd__tcp_hash_add(c);
	t->st.passive_opens++;
	/* data in a SYN is not acknowledged (no TFO): the peer sends it again after the handshake */
	vd__tcp_send_ctl(c, TH_SYN | TH_ACK);
	vd__tcp_arm_rto(c);
}

/* ---- SYN-SENT ----------------------------------------------------------------------------------- */

static void established(struct vd__tcb *c)
{
	c->state = TCPS_ESTABLISHED;
	c->ever_conn = 1;
	/* the first segments are ACKed at once (as Linux's quick-ACK mode does): it speeds the sender's slow
	 * start and keeps a write-write-read exchange at the start from waiting for the delayed ACK
	 * (RFC 1122 4.2.3.2 allows ACKing sooner) */
	c->quickack = QUICKACKS;
	vd__cc_init(c);
	c->t_rto = 0;
	if (c->syn_retries && !c->srtt)
		c->rto = 3 * NS_PER_S;   /* RFC 6298 5.7: a lost SYN or SYN-ACK: start data at 3 s */
	c->backoff = 0;
	c->syn_retries = 0;
	vd__tcp_arm_keepalive(c);
	if (c->shut_wr && !c->fin_queued) {
		/* shutdown(SHUT_WR) during the handshake: the FIN goes now */
		c->fin_queued = 1;
		c->fin_seq = c->snd_una + c->snd.len;
		c->state = TCPS_FIN_WAIT_1;
	}
}

static void syn_sent_input(struct vd__tcb *c, struct tcp_seg *s)
{
	struct vd__tcp *t = c->t;
	if (s->flags & TH_ACK) {
		/* RFC 9293 3.10.7.3 first check: an ACK for something we did not send */
		if (SEQ_LEQ(s->ack, c->iss) || SEQ_GT(s->ack, c->snd_max)) {
			vd__tcp_send_rst_for(t, s);
			return;
		}
	}
	if (s->flags & TH_RST) {
		/* second check (and RFC 5961 3.2's SYN-SENT rule): only with an acceptable ACK */
		if (s->flags & TH_ACK) {
			t->st.rst_in++;
			vd__tcp_drop(c, -ECONNREFUSED);
		}
		return;
	}
	if (!(s->flags & TH_SYN))
		return;
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->rcv_adv = c->rcv_nxt;
	/* what we offered in our SYN and the peer's SYN both carry (RFC 7323 2.2 / 3.2, RFC 2018 2) */
	c->ws_ok = c->ws_ok && s->opt.has_ws;
	if (c->ws_ok)
		c->snd_wscale = s->opt.ws;
	else
		c->snd_wscale = c->rcv_wscale = 0;
	c->ts_ok = c->ts_ok && s->opt.has_ts;
	if (c->ts_ok) {
		c->ts_recent = s->opt.tsval;
		c->ts_recent_ns = t->now;
	}
	c->sack_ok = c->sack_ok && s->opt.sack_ok;
	c->peer_mss = s->opt.has_mss ? s->opt.mss : 536;
	vd__tcp_set_mss(c);
	c->snd_wnd = s->wnd;   /* RFC 7323 2.2: unscaled in a SYN */
	c->max_sndwnd = s->wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	if (s->flags & TH_ACK) {
		c->snd_una = s->ack;
		/* what our SYN advertised: the unscaled window (tcp_out.c wnd_field) */
		c->rcv_adv = c->rcv_nxt + (c->rcvbuf > 65535 ? 65535 : c->rcvbuf);
		if (!c->syn_retries)   /* Karn (RFC 6298 3): only an unretransmitted SYN gives a sample */
			vd__cc_rtt_sample(c, t->now - c->rtt_start);
		established(c);
		c->ack_now = 1;
		vd__tcp_mark_dirty(c);
		vd__tcp_notify(c);
		return;
	}
	/* simultaneous open (RFC 9293 3.5 figure 8): SYN-RECEIVED, answer with SYN-ACK */
	c->state = TCPS_SYN_RCVD;
	vd__tcp_send_ctl(c, TH_SYN | TH_ACK);
	vd__tcp_arm_rto(c);
}

/* ---- synchronized states -------------------------------------------------------------------------- */

/* Returns 1 if c was freed (TIME-WAIT handed to viaductd). */
static int process_fin(struct vd__tcb *c)
{
	c->rcv_nxt++;
	c->rcv_fin = 1;
	c->ooo_fin = 0;
	c->ack_now = 1;
	switch (c->state) {
	case TCPS_SYN_RCVD:
	case TCPS_ESTABLISHED:
		c->state = TCPS_CLOSE_WAIT;
		break;
	case TCPS_FIN_WAIT_1:
		c->state = TCPS_CLOSING;   /* our FIN is not acknowledged yet, or we would be in FIN-WAIT-2 */
		break;
	case TCPS_FIN_WAIT_2:
		c->t_2msl = 0;
		vd__tcp_send_ctl(c, TH_ACK);   /* before the tcb may go to viaductd */
		return vd__tcp_enter_time_wait(c);
	default:
		break;
	}
	vd__tcp_mark_dirty(c);
	return 0;
}

/* The data of an acceptable segment, already trimmed to the window (RFC 9293 3.10.7.4 seventh). */
static void take_data(struct vd__tcb *c, uint32_t seq, const uint8_t *data, uint32_t dlen)
{
	if (seq == c->rcv_nxt) {
		/* An empty ring (nothing unread, nothing out of order placed past it) starts over at its first
		 * byte, as the send ring does once all is acknowledged: a request-response exchange then keeps
		 * writing the same hot lines instead of walking the whole ring (a cache miss per message, and a
		 * page fault per 4 KiB on the first lap through the shared heap's untouched pages). */
		if (!c->rcv.len && !c->ooo_n)
			c->rcv.head = 0;
		uint32_t room = c->rcv.cap - c->rcv.len;
		if (dlen > room)
			dlen = room;
		vd__ring_write(&c->rcv, c->rcv.len, data, dlen);
		c->rcv.len += dlen;
		c->rcv_nxt += dlen;
		if (c->ooo_n) {
			c->rcv.len += vd__sack_rcv_advance(c);
			c->ack_now = 1;   /* RFC 5681 4.2: ACK at once when a segment fills a hole */
		}
		if (dlen > c->rcv_mss)
			c->rcv_mss = dlen;
		c->rcv_unacked += dlen;
		/* RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full-sized segment, else within
		 * delack_ms */
		if (c->rcv_unacked >= 2 * c->rcv_mss || c->quickack) {
			c->ack_now = 1;
			if (c->quickack)
				c->quickack--;
		}
		else if (!c->t_delack) {
			c->t_delack = c->t->now + (uint64_t)c->t->cfg.delack_ms * NS_PER_MS;
			vd__tcp_timer_sched(c);
		}
		return;
	}
	/* out of order: keep it in the ring at its place, record the range, ACK at once with SACK blocks
	 * (RFC 5681 4.2, RFC 2018 4) */
	uint32_t off = c->rcv.len + (seq - c->rcv_nxt);
	if (off < c->rcv.cap) {
		if (dlen > c->rcv.cap - off)
			dlen = c->rcv.cap - off;
		uint8_t before = c->ooo_n;
		vd__sack_rcv_add(c, seq, seq + dlen);
		if (c->ooo_n || before)
			vd__ring_write(&c->rcv, off, data, dlen);
	}
	c->ack_now = 1;
}

static void sync_input(struct vd__tcb *c, struct tcp_seg *s)
{
	struct vd__tcp *t = c->t;
	uint32_t seq = s->seq;
	const uint32_t orig_seq = s->seq;
	const uint8_t orig_flags = s->flags;
	uint32_t dlen = s->dlen;
	const uint8_t *data = s->data;
	uint8_t flags = s->flags;

	if (c->state == TCPS_SYN_RCVD && (flags & TH_SYN) && !(flags & TH_RST) && seq == c->irs) {
		/* SYN-RECEIVED: the peer's SYN again (our SYN-ACK was lost): send the SYN-ACK again */
		if (!(flags & TH_ACK)) {
			vd__tcp_send_ctl(c, TH_SYN | TH_ACK);
			return;
		}
		/* simultaneous open (RFC 9293 3.5 figure 7 line 6): the peer's SYN-ACK acknowledges our SYN; its
		 * SYN is the one we already have, so only the ACK (and any data after the SYN) remains */
		flags &= (uint8_t)~TH_SYN;
		seq++;
	}

	/* RFC 7323 5.3 PAWS: a timestamp older than TS.Recent marks an old duplicate */
	if (c->ts_ok && s->opt.has_ts && !(flags & TH_RST) && SEQ_LT(s->opt.tsval, c->ts_recent)) {
		if (t->now - c->ts_recent_ns > PAWS_IDLE_NS) {
			c->ts_recent = s->opt.tsval;   /* RFC 7323 5.5: TS.Recent went stale, resynchronize */
		} else {
			t->st.out_of_window++;
			c->ack_now = 1;
			vd__tcp_mark_dirty(c);
			return;
		}
	}

	/* RFC 9293 3.10.7.4 first check: sequence number acceptability */
	uint32_t seg_len = dlen + ((flags & TH_SYN) ? 1 : 0) + ((flags & TH_FIN) ? 1 : 0);
	uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	int ok;
	if (seg_len == 0)
		ok = wnd == 0 ? seq == c->rcv_nxt : SEQ_GEQ(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + wnd);
	else if (wnd == 0)
		ok = seq == c->rcv_nxt;   /* 3.10.7.4: with a zero window still take its ACK and RST */
	else
		ok = (SEQ_GEQ(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + wnd)) ||
		     (SEQ_GEQ(seq + seg_len - 1, c->rcv_nxt) && SEQ_LT(seq + seg_len - 1, c->rcv_nxt + wnd));
	if (!ok) {
		if (flags & TH_RST)
			return;   /* RFC 5961 3.2: an out-of-window RST is dropped silently */
		t->st.out_of_window++;
		/* an old FIN again in TIME-WAIT: ACK it and restart the 2 MSL wait (RFC 9293 3.10.7.4) */
		if (c->state == TCPS_TIME_WAIT && (flags & TH_FIN))
			c->t_2msl = t->now + (uint64_t)t->cfg.time_wait_ms * NS_PER_MS;
		c->ack_now = 1;
		vd__tcp_mark_dirty(c);
		return;
	}

	/* RFC 7323 4.3: TS.Recent from a segment that covers Last.ACK.sent */
	if (c->ts_ok && s->opt.has_ts && SEQ_GEQ(s->opt.tsval, c->ts_recent) && SEQ_LEQ(orig_seq, c->last_ack_sent)) {
		c->ts_recent = s->opt.tsval;
		c->ts_recent_ns = t->now;
	}

	/* trim to the window: what lies before RCV.NXT is a duplicate, what lies beyond the right edge is
	 * dropped (RFC 9293 3.10.7.4 "trimmed") */
	if (SEQ_LT(seq, c->rcv_nxt)) {
		uint32_t d = c->rcv_nxt - seq;
		if (flags & TH_SYN) {
			flags &= (uint8_t)~TH_SYN;
			seq++;
			d--;
		}
		uint32_t skip = d < dlen ? d : dlen;
		data += skip;
		dlen -= skip;
		seq += skip;
		if (d > skip)
			flags &= (uint8_t)~TH_FIN;   /* the FIN too is old */
		c->ack_now = 1;   /* a duplicate: tell the peer where we are (it may have lost our ACK) */
		if (skip && c->sack_ok) {
			/* RFC 2883 4.1.1: report the duplicate in a D-SACK block */
			c->dsack.start = seq - skip;
			c->dsack.end = seq;
			c->dsack_on = 1;
		}
	}
	if (wnd == 0) {
		if (dlen || (flags & TH_FIN))
			c->ack_now = 1;
		dlen = 0;
		flags &= (uint8_t)~TH_FIN;
	} else if (SEQ_GT(seq + dlen, c->rcv_nxt + wnd)) {
		dlen = c->rcv_nxt + wnd - seq;
		flags &= (uint8_t)~TH_FIN;
		c->ack_now = 1;
	}

	/* second check: RST (RFC 5961 3.2: only an exact RCV.NXT match resets; others get a challenge ACK) */
	if (flags & TH_RST) {
		if (orig_seq != c->rcv_nxt) {
			vd__tcp_send_challenge_ack(c);
			return;
		}
		t->st.rst_in++;
		switch (c->state) {
		case TCPS_SYN_RCVD:
			/* passive: back to LISTEN, i.e. the child goes; active (simultaneous open): refused */
			vd__tcp_drop(c, c->parent ? 0 : -ECONNREFUSED);
			return;
		case TCPS_CLOSE_WAIT:
			/* the user already has the end of stream: a write would fail with EPIPE (as Linux's
			 * tcp_reset reports it) */
			vd__tcp_drop(c, -EPIPE);
			return;
		case TCPS_TIME_WAIT:
			vd__tcp_drop(c, 0);
			return;
		default:   /* ESTABLISHED, FIN-WAIT-1/2, CLOSING, LAST-ACK: RFC 9293 3.10.7.4 "connection reset" */
			vd__tcp_drop(c, -ECONNRESET);
			return;
		}
	}

	/* fourth check: SYN in a synchronized state (RFC 5961 4.2: challenge ACK instead of a reset) */
	if (flags & TH_SYN) {
		vd__tcp_send_challenge_ack(c);
		return;
	}

	/* fifth check: ACK */
	if (!(flags & TH_ACK))
		return;
	if (c->state == TCPS_SYN_RCVD) {
		if (!(SEQ_LT(c->snd_una, s->ack) && SEQ_LEQ(s->ack, c->snd_max))) {
			vd__tcp_send_rst_for(t, s);   /* <SEQ=SEG.ACK><CTL=RST> */
			return;
		}
		c->snd_una = c->iss + 1;   /* our SYN is acknowledged */
		if (c->ts_ok && s->opt.has_ts && s->opt.tsecr && !c->syn_retries) {
			uint64_t r = (uint64_t)(vd__tcp_ts_now(t) + c->ts_off - s->opt.tsecr) * NS_PER_MS;
			if (r < RTT_SANE_NS)
				vd__cc_rtt_sample(c, r);
		}
		c->snd_wnd = s->wnd << c->snd_wscale;
		c->max_sndwnd = c->snd_wnd;
		c->snd_wl1 = orig_seq;
		c->snd_wl2 = s->ack;
		established(c);
		if (c->parent)
			synq_to_acq(c);
		vd__tcp_notify(c);
	}
	/* RFC 5961 5.2: an ACK outside [SND.UNA - MAX.SND.WND, SND.NXT] is dropped with an ACK */
	if (SEQ_GT(s->ack, c->snd_max) || SEQ_LT(s->ack, c->snd_una - c->max_sndwnd)) {
		c->ack_now = 1;
		vd__tcp_mark_dirty(c);
		return;
	}
	int sack_new = 0;
	if (c->sack_ok && s->opt.nsack) {
		struct tcp_range ds;
		sack_new = vd__sack_snd_update(c, &s->opt, s->ack, &ds);
		if (ds.end != ds.start)
			vd__cc_on_dsack(c, &ds);
	}
	int ev = 0;
	if (SEQ_GT(s->ack, c->snd_una)) {
		uint32_t acked = s->ack - c->snd_una;
		uint32_t flight = c->snd_max - c->snd_una;
		/* RTT: RFC 7323 4.1 from the echoed timestamp, else the timed segment (RFC 6298 3, Karn) */
		if (c->ts_ok && s->opt.has_ts && s->opt.tsecr) {
			uint64_t r = (uint64_t)(uint32_t)(vd__tcp_ts_now(t) + c->ts_off - s->opt.tsecr) * NS_PER_MS;
			if (r < RTT_SANE_NS)
				vd__cc_rtt_sample(c, r);
		} else if (c->rtt_active && SEQ_GT(s->ack, c->rtt_seq)) {
			c->rtt_active = 0;
			vd__cc_rtt_sample(c, t->now - c->rtt_start);
		}
		uint32_t data_acked = acked < c->snd.len ? acked : c->snd.len;
		vd__ring_consume(&c->snd, data_acked);
		if (!c->snd.len)
			c->snd.head = 0;   /* keeps later writes in one piece */
		c->snd_una = s->ack;
		if (SEQ_LT(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		vd__sack_snd_trim(c);
		vd__cc_on_ack(c, acked, flight);
		/* RFC 6298 5.2 / 5.3 */
		if (c->snd_una == c->snd_max)
			c->t_rto = 0;
		else
			vd__tcp_arm_rto(c);
		/* RFC 8985 7: the probe is answered once SND.UNA passes what was sent with it; the PTO restarts
		 * on new acknowledgments */
		if (c->tlp_out && SEQ_GEQ(c->snd_una, c->tlp_high))
			c->tlp_out = 0;
		c->t_tlp = 0;
		vd__tcp_arm_tlp(c);
		ev = 1;
		vd__tcp_mark_dirty(c);
		if (c->fin_queued && SEQ_GT(c->snd_una, c->fin_seq)) {
			/* our FIN is acknowledged */
			switch (c->state) {
			case TCPS_FIN_WAIT_1:
				c->state = TCPS_FIN_WAIT_2;
				if (c->closed_by_user) {
					/* orphaned: do not wait forever for the peer's FIN (Linux tcp_fin_timeout) */
					c->t_2msl = t->now + (uint64_t)t->cfg.time_wait_ms * NS_PER_MS;
					vd__tcp_timer_sched(c);
				}
				break;
			case TCPS_CLOSING:
				vd__tcp_enter_time_wait(c);
				return;   /* c may be gone */
			case TCPS_LAST_ACK:
				c->closed_clean = 1;   /* RFC 9293 3.6: the peer closed first and keeps TIME-WAIT */
				vd__tcp_drop(c, 0);
				return;
			default:
				break;
			}
		}
	} else if (s->ack == c->snd_una && c->snd_max != c->snd_una &&
		   (sack_new || (dlen == 0 && !(orig_flags & (TH_FIN | TH_SYN)) &&
				 (s->wnd << c->snd_wscale) == c->snd_wnd))) {
		/* RFC 5681 2: a duplicate ACK; RFC 6675 2 / 5: or an ACK that SACKs new data */
		vd__cc_on_dupack(c);
		vd__tcp_mark_dirty(c);
	} else if (c->in_recovery && s->opt.nsack) {
		vd__tcp_mark_dirty(c);   /* new SACK information may open pipe */
	}
	/*
	 * Lost retransmission: the retransmitted segment at SND.UNA is still missing while data sent after it
	 * has been SACKed beyond DupThresh (the RFC 6675 IsLost test applied to what followed the
	 * retransmission, as Linux's lost-retransmit detection and RACK, RFC 8985, do): send it again now
	 * rather than waiting for the retransmission timer.
	 */
	if (c->in_recovery && c->una_rtx_armed && c->snd_una == c->una_rtx_seq && c->sacked_n &&
	    vd__sack_above(c, c->una_rtx_mark) > (vd__tcp_dupthresh(c) - 1) * c->mss) {
		c->una_rtx_armed = 0;
		/* from SND.UNA on: retransmissions of later holes may have been lost the same way */
		c->rtx_next = c->snd_una;
		c->rtx_force = 1;
		vd__tcp_mark_dirty(c);
	}
	/* window update (RFC 9293 3.10.7.4): from a newer segment, or the same one acknowledging more */
	if (SEQ_LT(c->snd_wl1, orig_seq) || (c->snd_wl1 == orig_seq && SEQ_LEQ(c->snd_wl2, s->ack))) {
		uint32_t w = s->wnd << c->snd_wscale;
		if (w != c->snd_wnd) {
			ev = 1;
			vd__tcp_mark_dirty(c);
		}
		c->snd_wnd = w;
		c->snd_wl1 = orig_seq;
		c->snd_wl2 = s->ack;
		if (w > c->max_sndwnd)
			c->max_sndwnd = w;
		if (w && c->t_persist) {
			c->t_persist = 0;
			c->persist_shift = 0;
		}
	}

	/* seventh: data, in the states where the peer may still send it */
	if (dlen && (c->state == TCPS_ESTABLISHED || c->state == TCPS_FIN_WAIT_1 || c->state == TCPS_FIN_WAIT_2)) {
		if (c->closed_by_user) {
			/* nobody will read it: RFC 9293 3.10.4 / RFC 2525 2.17, reset (as Linux does) */
			vd__tcp_send_ctl(c, TH_RST | TH_ACK);
			t->st.rst_out++;
			vd__tcp_drop(c, 0);
			return;
		}
		take_data(c, seq, data, dlen);
		ev = 1;
		vd__tcp_mark_dirty(c);
	}

	/* eighth: FIN, once everything before it has arrived */
	if ((flags & TH_FIN) && c->state != TCPS_TIME_WAIT && !c->rcv_fin) {
		if (seq + dlen == c->rcv_nxt) {
			if (process_fin(c))
				return;   /* handed to viaductd and freed */
			ev = 1;
		} else if (c->state == TCPS_ESTABLISHED || c->state == TCPS_FIN_WAIT_1 ||
			   c->state == TCPS_FIN_WAIT_2) {
			c->ooo_fin = 1;
			c->ooo_fin_seq = seq + dlen;
		}
	} else if ((orig_flags & TH_FIN) && c->state == TCPS_TIME_WAIT) {
		c->ack_now = 1;   /* the peer's FIN again: ACK, restart 2 MSL (RFC 9293 3.10.7.4) */
		c->t_2msl = t->now + (uint64_t)t->cfg.time_wait_ms * NS_PER_MS;
		vd__tcp_mark_dirty(c);
	}
	if (c->ooo_fin && c->ooo_fin_seq == c->rcv_nxt && !c->rcv_fin) {
		if (process_fin(c))
			return;
		ev = 1;
	}
	if (c->ack_now)
		vd__tcp_mark_dirty(c);
	if (ev)
		vd__tcp_notify(c);
}

static void conn_input(struct vd__tcb *c, struct tcp_seg *s)
{
	c->last_rcv_ns = c->t->now;
	c->keep_probes = 0;
	if (c->state == TCPS_SYN_SENT)
		syn_sent_input(c, s);
	else
		sync_input(c, s);
}

/* RFC 6191 / RFC 1122 4.2.2.13: a SYN for a connection in TIME-WAIT may open a new incarnation if it is
 * newer (timestamp, else sequence number). */
static int tw_reusable(const struct vd__tcb *c, const struct tcp_seg *s)
{
	if (c->ts_ok && s->opt.has_ts)
		return SEQ_GT(s->opt.tsval, c->ts_recent);
	return SEQ_GT(s->seq, c->rcv_nxt);
}

void vd__tcp_input_seg(struct vd__tcp *t, struct tcp_seg *s)
{
	if (s->dip != t->lip)
		return;   /* RFC 1122 4.2.3.10: nothing to or from a broadcast / foreign address is answered */
	struct vd__tcb *c = vd__tcp_lookup(t, s->dip, s->dport, s->sip, s->sport);
	if (c) {
		if (c->state == TCPS_TIME_WAIT && (s->flags & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN &&
		    tw_reusable(c, s)) {
			struct vd__tcb *l = vd__tcp_find_listener(t, s->dip, s->dport);
			if (l) {
				vd__tcp_drop(c, 0);
				listen_input(l, s);
				return;
			}
		}
		conn_input(c, s);
		return;
	}
	struct vd__tcb *l = vd__tcp_find_listener(t, s->dip, s->dport);
	if (l) {
		listen_input(l, s);
		return;
	}
	t->st.no_port++;
	vd__tcp_send_rst_for(t, s);   /* RFC 9293 3.10.7.1 */
}
