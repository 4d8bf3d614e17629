/* SPDX-License-Identifier: MIT */
/*
 * Output: segments are built in place in TX buffers lent by the nic (IPv4 header: 20 bytes, DF, TTL 64;
 * then TCP header, options and data copied once from the send ring), queued in batches of TCP_TX_BATCH
 * and flushed once per poll or API call (the SOVIA lesson: no intermediate copy, no per-segment doorbell).
 *
 * The output decision (vd__tcp_output) applies, in order: loss-recovery retransmissions from the SACK
 * scoreboard (RFC 6675 / RFC 6582), new data within min(cwnd, peer window) (RFC 5681 / RFC 9293 3.8.6)
 * held back by Nagle (RFC 896, RFC 1122 4.2.3.4) and sender SWS avoidance, the FIN, then a pure ACK if
 * one is owed (delayed-ACK rules live in tcp_in.c / tcp_timer.c).
 */
#include "tcp_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/core/frame.h"

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- TX buffers ----------------------------------------------------------------------------------- */

static void tx_push(struct vd__tcp *t)
{
	struct tcp_txq *q = &t->tx;
	if (!q->nready)
		return;
	int n = vd_nic_tx_burst(t->nic, q->ready, q->nready);
	if (n < 0)
		n = 0;
	if ((unsigned)n < q->nready) {
		/* ring full: ring the doorbell so the backend drains, then try once more */
		vd_nic_flush(t->nic);
		int m = vd_nic_tx_burst(t->nic, q->ready + n, q->nready - (unsigned)n);
		if (m > 0)
			n += m;
		if ((unsigned)n < q->nready) /* dropped: TCP's retransmission recovers, as from a lossy link */
			vd_nic_tx_abort(t->nic, q->ready + n, q->nready - (unsigned)n);
	}
	q->nready = 0;
}

void vd__tcp_tx_flush(struct vd__tcp *t)
{
	if (!t->tx.nready)
		return;
	tx_push(t);
	vd_nic_flush(t->nic);
}

static struct vd_frame *tx_get(struct vd__tcp *t)
{
	struct tcp_txq *q = &t->tx;
	if (q->nready == TCP_TX_BATCH)
		tx_push(t);
	if (!q->navail) {
		int n = vd_nic_tx_alloc(t->nic, q->avail, TCP_TX_BATCH);
		if (n <= 0) {
			vd__tcp_tx_flush(t);
			n = vd_nic_tx_alloc(t->nic, q->avail, TCP_TX_BATCH);
			if (n <= 0)
				return NULL;
		}
		q->navail = (unsigned)n;
	}
	return &q->avail[--q->navail];
}

/*
 * Builds one IPv4/TCP packet in a TX buffer and queues it. Data, if any, comes from ring at offset off.
 * Returns 0, or -ENOBUFS when the nic lends no buffer.
 */
static int emit(struct vd__tcp *t, uint32_t lip, uint32_t rip, uint16_t lport, uint16_t rport, uint32_t seq,
		uint32_t ack, uint8_t flags, uint16_t wnd, const uint8_t *opt, uint32_t optlen,
		const struct tcp_ring *ring, uint32_t off, uint32_t dlen)
{
	struct vd_frame *f = tx_get(t);
	if (!f)
		return -ENOBUFS;
	uint32_t thl = TCP_HLEN + optlen;
	uint32_t tot = IP_HLEN + thl + dlen;
	if (tot > f->len || tot > t->ip_mtu) {
		/* cannot happen: segment sizes derive from the MTU; give the buffer back rather than overrun */
		t->tx.navail++;
		return -EMSGSIZE;
	}
	uint8_t *p = f->data;
	/* RFC 791 header: no options, DF (RFC 9293 3.7.2 suggests PMTUD-style DF), TTL 64 */
	p[0] = 0x45;
	p[1] = 0;
	wr16(p + 2, (uint16_t)tot);
	wr16(p + 4, t->ip_id++);
	p[6] = 0x40;
	p[7] = 0;
	p[8] = 64;
	p[9] = IPPROTO_TCP;
	p[10] = p[11] = 0;
	memcpy(p + 12, &lip, 4);
	memcpy(p + 16, &rip, 4);
	uint16_t ipc = vd__csum_fold(vd__csum_partial(p, IP_HLEN, 0));
	memcpy(p + 10, &ipc, 2);

	uint8_t *h = p + IP_HLEN;
	memcpy(h, &lport, 2);
	memcpy(h + 2, &rport, 2);
	wr32(h + 4, seq);
	wr32(h + 8, ack);
	h[12] = (uint8_t)((thl / 4) << 4);
	h[13] = flags;
	wr16(h + 14, wnd);
	h[16] = h[17] = 0;
	h[18] = h[19] = 0;   /* urgent pointer: we never send urgent data */
	if (optlen)
		memcpy(h + TCP_HLEN, opt, optlen);
	uint16_t placed = 0;
	if (dlen && ring->zc) {
		/*
		 * The send ring is in lent nic memory (tcp_zc.c): the data goes as pieces of the ring itself,
		 * after the headers in this buffer - no copy. More pieces than a frame takes (a segment clipped
		 * by the output loop never needs more; a retransmission may) falls back to the copy below.
		 */
		struct iovec pc[VD_NIC_TX_ATTACH_MAX];
		int np = vd__ring_zc_pieces(ring, off, dlen, pc, VD_NIC_TX_ATTACH_MAX);
		if (np > 0 && vd_nic_tx_attach(t->nic, f, IP_HLEN + thl, pc, (unsigned)np) == 0)
			placed = VD_NIC_TX_ATTACHED;
	}
	if (dlen && !placed) {
		/*
		 * The data goes from the send ring straight where the nic sends it from (nic.h vd_nic_tx_pieces:
		 * on xdp with jumbo frames, each chunk past the first from its metadata room on), so the nic
		 * moves nothing before sending. Cannot fail for a segment that fits the buffer (checked above)
		 * and at most VD_NIC_TX_PIECES_MAX pieces; the contiguous copy remains should it ever.
		 */
		struct iovec pc[VD_NIC_TX_PIECES_MAX];
		int np = vd_nic_tx_pieces(t->nic, f, IP_HLEN + thl, dlen, pc, VD_NIC_TX_PIECES_MAX);
		if (np > 1) {
			uint32_t at = off;
			for (int i = 0; i < np; i++) {
				vd__ring_read(ring, at, pc[i].iov_base, (uint32_t)pc[i].iov_len);
				at += (uint32_t)pc[i].iov_len;
			}
			placed = VD_NIC_TX_PLACED;
		} else {
			vd__ring_read(ring, off, h + thl, dlen);
		}
	}
	/* RFC 9293 3.1: checksum over the pseudo-header (addresses, zero, protocol, TCP length) and segment */
	uint8_t ph[12];
	memcpy(ph, &lip, 4);
	memcpy(ph + 4, &rip, 4);
	ph[8] = 0;
	ph[9] = IPPROTO_TCP;
	wr16(ph + 10, (uint16_t)(thl + dlen));
	uint32_t sum = vd__csum_partial(ph, sizeof(ph), 0);
	f->peer.port = 0;
	if (dlen) {
		/*
		 * Data: leave the folded pseudo-header sum and let the nic finish (nic.h VD_NIC_TX_L4_CSUM:
		 * the device through AF_XDP TX metadata, else software) - a pass over the payload saved on the
		 * data path, where it is the per-byte cost.
		 */
		uint16_t ps = (uint16_t)~vd__csum_fold(sum);
		memcpy(h + 16, &ps, 2);
		f->peer.port = VD_NIC_TX_L4_CSUM | placed;
	} else {
		uint16_t cs = vd__csum_fold(vd__csum_partial(h, thl, sum));
		memcpy(h + 16, &cs, 2);
	}

	f->len = tot;
	f->peer.ip = rip;
	t->tx.ready[t->tx.nready++] = *f;
	t->st.segs_out++;
	t->st.bytes_out += dlen;
	return 0;
}

/* ---- receive window ------------------------------------------------------------------------------- */

/* The window we would offer now, in bytes, with receiver SWS avoidance (RFC 1122 4.2.3.3: the right edge
 * moves only by at least min(RCV.BUFF / 2, MSS)) and never shrinking (RFC 9293 3.8.6.2.2). */
uint32_t vd__tcp_rcv_wnd(struct vd__tcb *c)
{
	uint32_t free = c->rcvbuf > c->rcv.len ? c->rcvbuf - c->rcv.len : 0;
	uint32_t cur = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (free <= cur)
		return cur;
	uint32_t step = c->rcvbuf / 2 < c->mss ? c->rcvbuf / 2 : c->mss;
	if (free - cur < step)
		return cur;
	return free;
}

/* The 16-bit window field for a segment (RFC 7323 2.3: scaled, except in SYN segments) and the right
 * edge it advertises. */
static uint16_t wnd_field(struct vd__tcb *c, int syn, uint32_t *edge)
{
	uint32_t w = vd__tcp_rcv_wnd(c);
	uint32_t cur = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t shift = syn ? 0 : c->rcv_wscale;
	uint32_t f = w >> shift;
	/*
	 * Rounding down would shrink the window (RFC 9293 3.8.6: do not): round up, which the ring's slack
	 * beyond rcvbuf absorbs. The creep this allows (under one unit per ACK) is bounded by that slack: past
	 * it the edge moves back by less than one unit, which RFC 7323 2.4 tells receivers of scaled windows
	 * to expect.
	 */
	if ((f << shift) < cur && ((f + 1) << shift) <= c->rcv.cap - c->rcv.len)
		f++;
	if (f > 65535)
		f = 65535;
	*edge = c->rcv_nxt + (f << shift);
	return (uint16_t)f;
}

/* ---- segments of a connection ---------------------------------------------------------------------- */

static int send_seg(struct vd__tcb *c, uint32_t seq, uint32_t dlen, uint8_t flags)
{
	struct vd__tcp *t = c->t;
	uint8_t opt[TCP_MAX_OPTLEN];
	uint32_t optlen;
	uint32_t tsval = vd__tcp_ts_now(t) + c->ts_off;
	int syn = (flags & TH_SYN) != 0;
	if (syn)
		optlen = vd__tcp_opt_syn(c, opt, tsval, (flags & TH_ACK) != 0);
	else if (flags & TH_RST)
		optlen = 0;   /* RFC 7323 3.2: timestamps are not required on RST; Linux sends them, none needed */
	else
		optlen = vd__tcp_opt_data(c, opt, tsval);
	uint32_t edge;
	uint16_t wnd = wnd_field(c, syn, &edge);
	uint32_t ack = (flags & TH_ACK) ? c->rcv_nxt : 0;
	int r = emit(t, c->lip, c->rip, c->lport, c->rport, seq, ack, flags, wnd, opt, optlen, &c->snd,
		     dlen ? seq - c->snd_una : 0, dlen);
	if (r < 0)
		return r;
	if (flags & TH_ACK) {
		if (SEQ_GT(edge, c->rcv_adv) || c->state <= TCPS_SYN_RCVD)
			c->rcv_adv = edge;
		c->last_ack_sent = c->rcv_nxt;   /* RFC 7323 4.3 Last.ACK.sent */
		if (!syn)
			c->dsack_on = 0;   /* reported once (RFC 2883 4) */
		c->rcv_unacked = 0;
		c->ack_now = 0;
		c->t_delack = 0;
	}
	return 0;
}

int vd__tcp_send_ctl(struct vd__tcb *c, uint8_t flags)
{
	/*
	 * A segment without data carries SND.MAX rather than SND.NXT: after a timeout SND.NXT went back to
	 * SND.UNA (go-back-N) while the peer may hold everything up to SND.MAX, and a sequence number below
	 * its RCV.NXT would make it drop the segment as unacceptable (RFC 9293 3.10.7.4), ACK field included
	 * (BSD does the same).
	 */
	uint32_t seq = (flags & TH_SYN) ? c->iss : c->snd_max;
	if ((flags & TH_RST) && c->state == TCPS_SYN_RCVD)
		seq = c->iss + 1;
	return send_seg(c, seq, 0, flags);
}

/* Zero-window and keepalive probe: SEG.SEQ = SND.UNA - 1, no data. Out of the peer's window, so RFC 9293
 * 3.10.7.4 makes it answer with an ACK that carries its current window (Linux probes this way). */
void vd__tcp_send_probe(struct vd__tcb *c)
{
	send_seg(c, c->snd_una - 1, 0, TH_ACK);
}

/* RFC 5961 3.2 / 4.2 / 5.2 challenge ACK, rate-limited per layer (RFC 5961 7: 1000 per second). */
void vd__tcp_send_challenge_ack(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	uint64_t sec = t->now / NS_PER_S;
	if (sec != t->chal_sec) {
		t->chal_sec = sec;
		t->chal_count = 0;
	}
	if (t->chal_count >= 1000)
		return;
	t->chal_count++;
	send_seg(c, c->snd_max, 0, TH_ACK);
}

/* RFC 9293 3.10.7.1: the reply to a segment for no connection. */
void vd__tcp_send_rst_for(struct vd__tcp *t, const struct tcp_seg *s)
{
	if (s->flags & TH_RST)
		return;
	uint32_t seq = 0, ack = 0;
	uint8_t flags;
	if (s->flags & TH_ACK) {
		seq = s->ack;                     /* <SEQ=SEG.ACK><CTL=RST> */
		flags = TH_RST;
	} else {
		ack = s->seq + s->dlen + ((s->flags & TH_SYN) ? 1 : 0) + ((s->flags & TH_FIN) ? 1 : 0);
		flags = TH_RST | TH_ACK;          /* <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> */
	}
	if (emit(t, s->dip, s->sip, s->dport, s->sport, seq, ack, flags, 0, NULL, 0, NULL, 0, 0) == 0)
		t->st.rst_out++;
}

/* The SYN-ACK of a SYN cookie (RFC 4987 3.6): no state kept; options as tcp_cookie.c encodes them. */
void vd__tcp_send_cookie_synack(struct vd__tcp *t, const struct tcp_seg *s, uint32_t isn, uint32_t mss,
				uint8_t rcv_wscale)
{
	uint8_t o[TCP_MAX_OPTLEN];
	uint32_t n = 0;
	o[n++] = 2;
	o[n++] = 4;
	wr16(o + n, (uint16_t)mss);
	n += 2;
	if (s->opt.has_ts) {
		uint32_t ts_now = vd__tcp_ts_now(t) + vd__tcp_ts_off(t, s->dip, s->dport, s->sip, s->sport);
		if (s->opt.sack_ok) {
			o[n++] = 4;
			o[n++] = 2;
		} else {
			o[n++] = 1;
			o[n++] = 1;
		}
		o[n++] = 8;
		o[n++] = 10;
		wr32(o + n, vd__cookie_tsval(ts_now, &s->opt));
		wr32(o + n + 4, s->opt.tsval);
		n += 8;
		if (s->opt.has_ws) {
			o[n++] = 1;
			o[n++] = 3;
			o[n++] = 3;
			o[n++] = rcv_wscale;
		}
	}
	uint32_t w = t->cfg.rcvbuf > 65535 ? 65535 : t->cfg.rcvbuf;
	if (emit(t, s->dip, s->sip, s->dport, s->sport, isn, s->seq + 1, TH_SYN | TH_ACK, (uint16_t)w, o, n, NULL, 0,
		 0) == 0)
		t->st.syn_cookies_sent++;
}

/* ---- the output decision ------------------------------------------------------------------------------ */

/* Data bytes that fit in the next segment: c->mss leaves room for the timestamp option only; SACK blocks
 * (while we hold out-of-order data) take option space from the data (RFC 6691, as Linux does). */
static uint32_t seg_mss(const struct vd__tcb *c)
{
	if (!c->sack_ok || (!c->ooo_n && !c->dsack_on))
		return c->mss;
	uint32_t want = c->ooo_n + c->dsack_on;
	uint32_t nb = want < (c->ts_ok ? 3u : 4u) ? want : (c->ts_ok ? 3u : 4u);
	uint32_t extra = 4 + 8 * nb;
	return c->mss > extra + 8 ? c->mss - extra : 8;
}

static uint32_t data_end(const struct vd__tcb *c)
{
	return c->snd_una + c->snd.len;
}

/* Sends [seq, seq + len) of data (possibly with the FIN right after it) and does the bookkeeping shared
 * by new data and retransmissions. */
static int send_data(struct vd__tcb *c, uint32_t seq, uint32_t len, int fin, int push)
{
	struct vd__tcp *t = c->t;
	uint8_t flags = TH_ACK | (fin ? TH_FIN : 0) | (push ? TH_PSH : 0);
	int r = send_seg(c, seq, len, flags);
	if (r < 0)
		return r;
	uint32_t end = seq + len + (fin ? 1 : 0);
	if (SEQ_LT(seq, c->snd_max)) {
		t->st.retrans_segs++;
		c->total_retrans++;
		if (c->in_recovery) {
			/* the fast-recovery episode's retransmissions, which a D-SACK may prove spurious (only
			 * these: after a timeout, go-back-N resends much the peer has, and says so) */
			if (!c->ep_rtx || SEQ_LT(seq, c->ep_start))
				c->ep_start = seq;
			if (!c->ep_rtx || SEQ_GT(seq + len, c->ep_end))
				c->ep_end = seq + len;
			c->ep_rtx += len;
		}
		if (seq == c->snd_una && c->in_recovery) {
			c->una_rtx_armed = 1;
			c->una_rtx_seq = seq;
			c->una_rtx_mark = c->snd_max;
		}
		/* Karn (RFC 6298 3): a retransmitted segment gives no RTT sample */
		if (c->rtt_active && SEQ_LEQ(seq, c->rtt_seq) && SEQ_LT(c->rtt_seq, end))
			c->rtt_active = 0;
	} else if (!c->rtt_active && !c->ts_ok && len) {
		c->rtt_active = 1;
		c->rtt_seq = seq;
		c->rtt_start = t->now;
	}
	if (SEQ_GT(end, c->snd_max))
		c->snd_max = end;
	c->last_snd_ns = t->now;
	/* RFC 6298 5.1: start the timer if it is not running */
	if (!c->t_rto)
		vd__tcp_arm_rto(c);
	c->t_persist = 0;
	c->persist_shift = 0;
	return 0;
}

/*
 * The tail loss probe (RFC 8985 7.3): one segment of new data if the peer's window allows (cwnd is not
 * checked), else the last segment sent again; its ACK (with SACK) turns a lost tail into an ordinary
 * fast recovery instead of a timeout. Returns 0 when a probe went out.
 */
int vd__tcp_send_tlp(struct vd__tcb *c)
{
	uint32_t end = data_end(c);
	uint32_t wedge = c->snd_una + c->snd_wnd;
	if (c->snd_nxt == c->snd_max && SEQ_GT(end, c->snd_nxt) && SEQ_GT(wedge, c->snd_nxt)) {
		uint32_t len = end - c->snd_nxt;
		uint32_t room = wedge - c->snd_nxt, smss = seg_mss(c);
		if (len > smss)
			len = smss;
		if (len > room)
			len = room;
		int fin = c->fin_queued && c->snd_nxt + len == c->fin_seq && room > len;
		if (send_data(c, c->snd_nxt, len, fin, 1) < 0)
			return -1;
		c->snd_nxt += len + (fin ? 1 : 0);
		return 0;
	}
	/* the last segment: data up to SND.MAX (and the FIN if it was sent) */
	uint32_t top = c->snd_max;
	int fin = c->fin_queued && SEQ_GT(top, c->fin_seq);
	uint32_t dend = fin ? c->fin_seq : top;
	uint32_t smss = seg_mss(c);
	uint32_t start = dend - c->snd_una > smss ? dend - smss : c->snd_una;
	if (start == dend && !fin)
		return -1;
	return send_data(c, start, dend - start, fin, 1) < 0 ? -1 : 0;
}

/* Loss recovery: retransmit holes while pipe < cwnd (RFC 6675 5 step C), the first one regardless. */
static int output_recovery(struct vd__tcb *c)
{
	for (unsigned guard = 0; guard < 1024; guard++) {
		struct tcp_range h;
		/* RFC 6675 4 NextSeg rule 3: with no new data to send, a hole not yet deemed lost goes too */
		int no_new = !SEQ_GT(c->snd_una + c->snd.len, c->snd_nxt);
		if (!vd__sack_next_hole(c, c->rtx_next, c->rtx_force || no_new, &h))
			return 0;
		if (!c->rtx_force && vd__sack_pipe(c) >= c->cwnd)
			return 0;
		uint32_t end = h.end;
		if (end - h.start > seg_mss(c))
			end = h.start + seg_mss(c);
		uint32_t next = end;
		int fin = 0;
		if (c->fin_queued && SEQ_GT(end, c->fin_seq)) {
			end = c->fin_seq;
			fin = 1;
		}
		int r = send_data(c, h.start, end - h.start, fin, 0);
		if (r < 0)
			return r;
		c->rtx_next = next;
		c->rtx_force = 0;
	}
	return 0;
}

/* Go-back-N after a timeout: moves SND.NXT past a SACKed range it sits in; returns 1 if it moved. */
static int skip_sacked(struct vd__tcb *c)
{
	for (uint32_t i = 0; i < c->sacked_n; i++)
		if (SEQ_GEQ(c->snd_nxt, c->sacked[i].start) && SEQ_LT(c->snd_nxt, c->sacked[i].end)) {
			c->snd_nxt = SEQ_MIN(c->sacked[i].end, c->snd_max);
			return 1;
		}
	return 0;
}

/* ... and ends a resent segment where the next SACKed range begins. */
static uint32_t clip_to_sacked(const struct vd__tcb *c, uint32_t len)
{
	for (uint32_t i = 0; i < c->sacked_n; i++)
		if (SEQ_GT(c->sacked[i].start, c->snd_nxt)) {
			uint32_t gap = c->sacked[i].start - c->snd_nxt;
			return gap < len ? gap : len;
		}
	return len;
}

int vd__tcp_output(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	int r;
	switch (c->state) {
	case TCPS_ESTABLISHED:
	case TCPS_CLOSE_WAIT:
	case TCPS_FIN_WAIT_1:
	case TCPS_CLOSING:
	case TCPS_LAST_ACK:
	case TCPS_FIN_WAIT_2:
		break;
	case TCPS_TIME_WAIT:
		return c->ack_now ? vd__tcp_send_ctl(c, TH_ACK) : 0;
	case TCPS_SYN_RCVD:
		/* a retransmitted SYN asks for our SYN-ACK again (RFC 9293 3.10.7.4 first check) */
		if (c->ack_now) {
			c->ack_now = 0;
			return send_seg(c, c->iss, 0, TH_SYN | TH_ACK);
		}
		return 0;
	default:
		return 0;
	}

	if (c->in_recovery && (r = output_recovery(c)) < 0)
		return r;
	vd__cc_idle_restart(c);

	for (unsigned guard = 0; guard < 4096; guard++) {
		uint32_t end = data_end(c);
		uint32_t avail = SEQ_GT(end, c->snd_nxt) ? end - c->snd_nxt : 0;
		int fin_left = c->fin_queued && SEQ_LEQ(c->snd_nxt, c->fin_seq);
		if (!avail && !fin_left)
			break;
		/* congestion window (RFC 5681), with limited transmit on the first two duplicate ACKs (RFC 3042) */
		uint32_t inflight = c->in_recovery ? vd__sack_pipe(c) : c->snd_nxt - c->snd_una;
		uint32_t cwnd = c->cwnd;
		if (!c->in_recovery && c->dupacks && c->dupacks < 3)
			cwnd += c->dupacks * c->mss;
		uint32_t croom = cwnd > inflight ? cwnd - inflight : 0;
		/* the peer's window (RFC 9293 3.8.6) */
		uint32_t wedge = c->snd_una + c->snd_wnd;
		uint32_t wroom = SEQ_GT(wedge, c->snd_nxt) ? wedge - c->snd_nxt : 0;
		uint32_t room = croom < wroom ? croom : wroom;
		int retrans = SEQ_LT(c->snd_nxt, c->snd_max);
		if (retrans && c->sacked_n && !c->in_recovery && skip_sacked(c))
			continue;   /* after a timeout: what the peer SACKed need not go again (RFC 6675 5.1) */
		uint32_t smss = seg_mss(c);
		uint32_t len = avail < smss ? avail : smss;
		if (retrans && c->sacked_n && !c->in_recovery)
			len = clip_to_sacked(c, len);
		if (len > room)
			len = room;
		int clipped = 0;
		if (c->snd.zc && len) {
			/* a send ring in lent nic memory: a segment is pieces of it (tcp_zc.c), no more than a
			 * frame takes; the clipped segment counts as full below (it is not a Nagle case) */
			uint32_t fit = vd__ring_zc_fit(&c->snd, c->snd_nxt - c->snd_una, len, VD_NIC_TX_ATTACH_MAX);
			clipped = fit < len;
			len = fit;
		}
		int fin = fin_left && c->snd_nxt + len == c->fin_seq;
		if (fin && wroom <= len)
			fin = 0;   /* the FIN takes a sequence number too: it must fit the window */
		if (!len && !fin)
			break;
		if (len < smss && !retrans && !fin && !clipped) {
			/*
			 * A partial segment. RFC 1122 4.2.3.4 sender SWS avoidance and RFC 896 Nagle: send it if it
			 * is everything we have and nothing is unacknowledged (or TCP_NODELAY), unless corked
			 * (TCP_CORK / MSG_MORE hold partial segments); or if it is at least half the largest window
			 * the peer offered (the window, not our data, limits it).
			 */
			int all = len == avail;
			int nagle_ok = all && !c->cork && !c->more && (c->nodelay || c->snd_nxt == c->snd_una);
			int sws_ok = !all && c->max_sndwnd && len >= c->max_sndwnd / 2;
			if (!nagle_ok && !sws_ok && !c->sws_override)
				break;
		}
		if ((r = send_data(c, c->snd_nxt, len, fin, len == avail)) < 0)
			return r;
		c->snd_nxt += len + (fin ? 1 : 0);
	}
	c->sws_override = 0;
	if (!c->t_tlp && !c->tlp_out && c->snd_max != c->snd_una)
		vd__tcp_arm_tlp(c);

	/*
	 * Persist (RFC 9293 3.8.6.1): data waits, nothing is in flight to bring an ACK, and the window (zero,
	 * or too small for SWS avoidance) holds it: probe after the RTO, backing off.
	 */
	uint32_t end = data_end(c);
	int waiting = SEQ_GT(end, c->snd_nxt) || (c->fin_queued && SEQ_LEQ(c->snd_nxt, c->fin_seq));
	if (waiting && c->snd_max == c->snd_una && !c->t_persist && !c->t_rto && c->state != TCPS_FIN_WAIT_2)
		vd__tcp_arm_persist(c);

	if (c->ack_now && (r = vd__tcp_send_ctl(c, TH_ACK)) < 0)
		return r;
	vd__tcp_timer_sched(c);
	(void)t;
	return 0;
}

/* After the user read: a window update when the window opened enough (RFC 1122 4.2.3.3 / RFC 9293
 * 3.8.6.2.2), which is what restarts a sender stopped by a full window. */
void vd__tcp_after_read(struct vd__tcb *c)
{
	if (c->state < TCPS_ESTABLISHED || c->state == TCPS_TIME_WAIT || c->rcv_fin)
		return;
	uint32_t cur = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t w = vd__tcp_rcv_wnd(c);   /* already applies the RFC 1122 4.2.3.3 minimum step */
	/* a pure window update only when it matters to the sender: the window at least doubled or opened by
	 * half the buffer (Linux's rule); otherwise the next ACK carries it, one packet fewer per read */
	if (w > cur && (w >= 2 * cur || w - cur >= c->rcvbuf / 2)) {
		c->ack_now = 1;
		vd__tcp_mark_dirty(c);
	}
}
