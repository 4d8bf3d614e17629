/* SPDX-License-Identifier: MIT */
/*
 * Per-peer reliability: the peer table, frame reception (sessions, sequence numbers, reorder buffer,
 * duplicate suppression), acknowledgement (cumulative + selective, delayed, piggybacked), retransmission
 * with an RFC 6298 timer, and liveness (probes, the peer-gone verdict).
 *
 * Sequence space: each direction of a (local endpoint, remote session) pair numbers its DATA frames from
 * 1, compared with RFC 1982 serial arithmetic. The receiver keeps at most `window` frames beyond the last
 * one it has processed (rx[] ring): in-order frames are processed straight from the nic buffer (no copy),
 * only frames arriving ahead of a gap, or held by back-pressure, are copied.
 */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Clock granularity G of RFC 6298 section 2: our clock is in ns, but below ~10 us the variance estimate is
 * noise from scheduling, not the path. */
#define VD__CLOCK_G 10000ull

static uint32_t addr_hash(const struct vd_addr *a)
{
	uint64_t k = ((uint64_t)a->ip << 16) ^ a->port;
	k *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing: the high bits mix all input bits */
	return (uint32_t)(k >> 40);
}

struct vd_peer *vd__peer_find(struct vd_ep *ep, const struct vd_addr *a)
{
	for (struct vd_peer *p = ep->htab[addr_hash(a) & ep->hmask]; p; p = p->hnext)
		if (p->addr.ip == a->ip && p->addr.port == a->port)
			return p;
	return NULL;
}

static void hash_remove(struct vd_ep *ep, struct vd_peer *p)
{
	struct vd_peer **pp = &ep->htab[addr_hash(&p->addr) & ep->hmask];
	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == p) {
			*pp = p->hnext;
			p->hnext = NULL;
			return;
		}
}

struct vd_peer *vd__peer_new(struct vd_ep *ep, const struct vd_addr *a, uint32_t prev_session)
{
	if (ep->npeers >= ep->max_peers)
		return NULL;
	struct vd_peer *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->ep = ep;
	p->addr = *a;
	p->addr._pad = 0;
	p->prev_session = prev_session;
	p->snd_una = p->snd_nxt = p->snd_tx = 1;
	p->rto_next = UINT64_MAX;
	p->snd_edge = 1 + VD__INIT_WND;
	p->rcv_nxt = p->proc_seq = p->rx_top = 1;
	p->rto = ep->rto_init;
	p->last_heard = ep->now;
	vd__list_init(&p->txq);
	vd__list_init(&p->sent);
	vd__list_init(&p->rndv_sends);
	vd__list_init(&p->pulls);
	vd__list_init(&p->gone_link);

	/* The newest peer of an address replaces the older one in the table; the old handle stays valid
	 * (ep->peers) until the endpoint closes. */
	struct vd_peer *old = vd__peer_find(ep, a);
	if (old)
		hash_remove(ep, old);
	uint32_t h = addr_hash(a) & ep->hmask;
	p->hnext = ep->htab[h];
	ep->htab[h] = p;
	vd__list_add_tail(&ep->peers, &p->all);
	ep->npeers++;
	return p;
}

static void peer_free_bufs(struct vd_peer *p)
{
	for (int i = 0; i < VD__RING; i++) {
		free(p->tx[i].buf);
		p->tx[i].buf = NULL;
		free(p->rx[i].buf);
		p->rx[i].buf = NULL;
		p->rx[i].present = 0;
	}
	free(p->ctrl);
	p->ctrl = NULL;
	p->ctrl_head = p->ctrl_tail = p->ctrl_cap = 0;
}

void vd__peer_free(struct vd_peer *p)
{
	peer_free_bufs(p);
	free(p);
}

int vd__tx_copy(struct vd_ep *ep, const struct vd_addr *to, const void *buf, size_t len)
{
	struct vd_frame f;

	if (vd_nic_tx_alloc(ep->nic, &f, 1) != 1) {
		/* The ring may be full of frames waiting for a doorbell: ring it and try once more. */
		vd_nic_flush(ep->nic);
		ep->tx_pending = 0;
		if (vd_nic_tx_alloc(ep->nic, &f, 1) != 1)
			return -EAGAIN;
	}
	memcpy(f.data, buf, len);
	f.len = (uint32_t)len;
	f.peer = *to;
	if (vd_nic_tx_burst(ep->nic, &f, 1) != 1) {
		vd_nic_tx_abort(ep->nic, &f, 1);
		return -EAGAIN;
	}
	ep->tx_pending = 1;
	ep->stats.frames_sent++;
	return 0;
}

/* --- acknowledgements we send --------------------------------------------------------------------- */

void vd__peer_fill_ack(struct vd_peer *p, struct vd__whdr *h)
{
	struct vd_ep *ep = p->ep;
	/* We accept seq < proc_seq + window: the slots of frames not yet processed are still taken. */
	uint32_t edge = p->proc_seq + ep->window;
	uint64_t sack = 0;

	/* Only frames below rx_top can be held ahead of rcv_nxt: in order (the usual case) there is nothing to
	 * look at, and the scan of the window's slots is skipped (it was on every frame we send). */
	if (vd__seq_lt(p->rcv_nxt + 1, p->rx_top)) {
		for (uint32_t i = 0; i < 64; i++) {
			uint32_t s = p->rcv_nxt + 1 + i;
			if (!vd__seq_lt(s, edge) || !vd__seq_lt(s, p->rx_top))
				break;
			if (p->rx[s & (VD__RING - 1)].present)
				sack |= 1ull << i;
		}
	} else {
		p->rx_top = p->rcv_nxt; /* keeps it near rcv_nxt (serial comparisons stay valid) */
	}
	h->flags |= VD__WF_ACK;
	h->ack = p->rcv_nxt;
	h->wnd = (uint16_t)(edge - p->rcv_nxt);
	h->sack = sack;
	/* Whatever carries this ack acknowledges everything counted so far (SOVIA: d goes back to 0). */
	p->ack_pending = 0;
	p->ack_deadline = 0;
	p->ack_now = 0;
}

int vd__peer_send_ack(struct vd_peer *p, uint8_t extra_flags)
{
	struct vd_ep *ep = p->ep;
	uint8_t buf[VD__W_HDR_LEN];
	struct vd__whdr h = {
		.type = VD__W_ACK,
		.src_session = ep->session,
		.dst_session = p->remote_session,
	};

	vd__peer_fill_ack(p, &h);
	h.flags |= extra_flags;
	vd__wire_put_hdr(buf, &h);
	vd__wire_seal(buf, sizeof(buf));
	int rc = vd__tx_copy(ep, &p->addr, buf, sizeof(buf));
	if (rc < 0) {
		/* No room in the nic: the ack is still owed (fill_ack cleared the state that said so), send it
		 * on the next pass rather than leave the sender to its retransmission timeout. */
		p->ack_now = 1;
		return rc;
	}
	ep->stats.acks_sent++;
	return 0;
}

static void send_reset(struct vd_ep *ep, const struct vd_addr *to, uint32_t their_session, uint32_t stale)
{
	uint8_t buf[VD__W_HDR_LEN];
	struct vd__whdr h = {
		.type = VD__W_RESET,
		.src_session = ep->session,
		.dst_session = their_session,
		.seq = stale,
	};
	vd__wire_put_hdr(buf, &h);
	vd__wire_seal(buf, sizeof(buf));
	vd__tx_copy(ep, to, buf, sizeof(buf));
}

/* --- acknowledgements we receive ------------------------------------------------------------------ */

/* RFC 6298 section 2: SRTT and RTTVAR from a measurement R, RTO = SRTT + max(G, 4 RTTVAR), clamped.
 * A fresh RTO also ends any exponential backoff (section 5.7's reset happens by recomputation). */
static void rtt_sample(struct vd_peer *p, uint64_t r)
{
	struct vd_ep *ep = p->ep;

	if (!p->rtt_valid) {
		p->srtt = r;
		p->rttvar = r / 2;
		p->rtt_valid = 1;
	} else {
		uint64_t d = p->srtt > r ? p->srtt - r : r - p->srtt;
		p->rttvar = (3 * p->rttvar + d) / 4; /* beta = 1/4 */
		p->srtt = (7 * p->srtt + r) / 8;     /* alpha = 1/8 */
	}
	uint64_t k = 4 * p->rttvar;
	if (k < VD__CLOCK_G)
		k = VD__CLOCK_G;
	uint64_t rto = p->srtt + k;
	if (rto < ep->rto_min)
		rto = ep->rto_min;
	if (rto > ep->rto_max)
		rto = ep->rto_max;
	p->rto = rto;
}

/* Sends frame s again: 0, or -EAGAIN if the nic has no room (nothing changed: the caller owes it). */
static int retransmit(struct vd_peer *p, uint32_t s)
{
	struct vd_ep *ep = p->ep;
	struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];

	/* The stored frame still carries the ack fields of its first transmission. They are stale but
	 * true (acks only move forward, a selectively acked frame stays received), so the frame is resent
	 * unchanged rather than re-encoded and re-checksummed. */
	if (vd__tx_copy(ep, &p->addr, t->buf, t->len) < 0)
		return -EAGAIN;
	if (t->tx_count < 255)
		t->tx_count++;
	t->owed = 0;
	t->sent_ns = ep->now;
	t->deadline = ep->now + p->rto;
	if (t->deadline < p->rto_next)
		p->rto_next = t->deadline;
	ep->stats.retransmits++;
	return 0;
}

static void on_ack(struct vd_peer *p, const struct vd__whdr *h)
{
	struct vd_ep *ep = p->ep;
	uint32_t ack = h->ack;
	uint64_t sample = 0;
	int have_sample = 0;

	/* An ack for a frame never sent (framed frames the nic had no room for included) is bogus; one
	 * below snd_una is an old, reordered ack: both are ignored entirely (their window too, it could
	 * only be older). */
	if (vd__seq_lt(p->snd_tx, ack) || vd__seq_lt(ack, p->snd_una))
		return;
	for (uint32_t s = p->snd_una; s != ack; s++) {
		struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];
		/* Karn's rule: a retransmitted frame's ack is ambiguous, no sample from it. */
		if (t->tx_count == 1 && !t->sacked) {
			sample = ep->now - t->sent_ns;
			have_sample = 1;
		}
		t->len = 0;
		t->sacked = 0;
		t->owed = 0;
		t->tx_count = 0;
	}
	int advanced = p->snd_una != ack;
	p->snd_una = ack;
	uint32_t top = ack; /* one above the highest selectively acked frame */
	for (uint32_t i = 0; i < 64 && h->sack; i++) {
		if (!(h->sack & (1ull << i)))
			continue;
		uint32_t s = ack + 1 + i;
		if (!vd__seq_lt(s, p->snd_tx))
			break;
		struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];
		if (!t->sacked) {
			t->sacked = 1;
			if (t->tx_count == 1 && !have_sample) {
				sample = ep->now - t->sent_ns;
				have_sample = 1;
			}
		}
		top = s + 1;
	}
	if (have_sample) {
		rtt_sample(p, sample);
		/* A smaller RTO may bring the timer forward: keep rto_next a lower bound (rto_scan). */
		uint64_t lb = p->last_advance + vd__reorder_grace(p);
		if (lb < p->rto_next)
			p->rto_next = lb;
	}
	if (ack == p->snd_tx) {
		p->rto_next = UINT64_MAX; /* nothing in flight: no retransmission timer */
		p->rtx_owed = 0;
		p->in_recovery = p->rec_partial = 0;
	} else if (advanced) {
		/* New data acknowledged: the timer restarts (RFC 6298 5.3), and within a recovery this is a
		 * partial ack (rto_scan). Nothing expires before the new bound. */
		p->last_advance = ep->now;
		if (p->in_recovery && !vd__seq_lt(ack, p->recover))
			p->in_recovery = 0;
		p->rec_partial = p->in_recovery;
		uint64_t wait = p->rec_partial ? vd__reorder_grace(p) : p->rto;
		if (!p->rtx_owed)
			p->rto_next = ep->now + wait;
	}

	/*
	 * Fast retransmit of holes (in the spirit of RFC 6675's DupThresh = 3): a frame with at least three
	 * selectively acked frames above it is taken as lost, if it was last sent more than a smoothed
	 * round trip ago (otherwise it may just be overtaken by reordering, or already resent).
	 */
	if (p->rtt_valid && vd__seq_lt(ack, top)) {
		unsigned above = 0;
		uint64_t guard = p->srtt + 2 * p->rttvar;
		for (uint32_t s = top - 1; s != ack - 1; s--) {
			struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];
			if (t->sacked) {
				above++;
			} else if (above >= 3 && !t->owed && ep->now - t->sent_ns > guard && retransmit(p, s) < 0) {
				t->owed = 1; /* no room in the nic: the timer pass sends it */
				p->rtx_owed = 1;
			}
		}
	}

	uint32_t edge = ack + h->wnd;
	if (vd__seq_lt(p->snd_edge, edge))
		p->snd_edge = edge;
	if (advanced)
		vd__sent_acked(p);
}

/* --- data we receive ------------------------------------------------------------------------------ */

static int rx_store(struct vd_peer *p, struct vd__rxslot *r, const uint8_t *body, size_t len)
{
	if (!r->buf) {
		r->buf = malloc(p->ep->maxp);
		if (!r->buf)
			return -ENOMEM;
	}
	memcpy(r->buf, body, len);
	r->len = (uint16_t)len;
	r->present = 1;
	return 0;
}

static void advance_rcv_nxt(struct vd_peer *p)
{
	while ((uint32_t)(p->rcv_nxt - p->proc_seq) < p->ep->window &&
	       p->rx[p->rcv_nxt & (VD__RING - 1)].present)
		p->rcv_nxt++;
}

void vd__peer_deliver(struct vd_peer *p)
{
	int was_blocked = p->blocked;

	while (p->proc_seq != p->rcv_nxt) {
		struct vd__rxslot *r = &p->rx[p->proc_seq & (VD__RING - 1)];
		uint32_t pos = p->held_off;
		if (vd__rx_records(p, r->buf, r->len, &pos) == VD__RX_BLOCKED) {
			p->held_off = pos;
			if (!p->blocked) {
				p->blocked = 1;
				p->ep->stats.backpressure++;
			}
			return;
		}
		r->present = 0;
		p->held_off = 0;
		p->proc_seq++;
		p->blocked = 0;
	}
	/* The window reopened: tell a sender that may be stalled on it now, not at its next probe. */
	if (was_blocked)
		p->ack_now = 1;
}

static void rx_data(struct vd_peer *p, uint32_t seq, const uint8_t *body, size_t len)
{
	struct vd_ep *ep = p->ep;
	struct vd__rxslot *r = &p->rx[seq & (VD__RING - 1)];

	/* Duplicate (our ack was lost or late) or beyond the window we advertised: drop, and ack at once so
	 * the sender learns where we are (RFC 5681 section 4.2: immediate ack for out-of-order data). */
	if (vd__seq_lt(seq, p->rcv_nxt) || (uint32_t)(seq - p->proc_seq) >= ep->window || r->present) {
		ep->stats.dup_frames++;
		p->ack_now = 1;
		return;
	}
	if (seq == p->rcv_nxt && p->proc_seq == p->rcv_nxt) {
		/* In order with nothing held: process in place, no copy. */
		p->rcv_nxt++;
		uint32_t pos = 0;
		if (vd__rx_records(p, body, len, &pos) == VD__RX_BLOCKED) {
			if (rx_store(p, r, body, len) < 0) {
				/* Cannot hold it: unreceive it (not acked yet), the sender will resend. */
				p->rcv_nxt--;
				return;
			}
			p->held_off = pos;
			p->blocked = 1;
			ep->stats.backpressure++;
		} else {
			p->proc_seq++;
		}
		if (p->rx[p->rcv_nxt & (VD__RING - 1)].present) {
			/* This frame filled a gap: ack at once (RFC 5681 section 4.2). */
			advance_rcv_nxt(p);
			p->ack_now = 1;
			vd__peer_deliver(p);
		}
	} else {
		if (rx_store(p, r, body, len) < 0)
			return; /* not acked: it will come again */
		if (vd__seq_lt(p->rx_top, seq + 1))
			p->rx_top = seq + 1;
		if (seq != p->rcv_nxt)
			ep->stats.out_of_order++;
		p->ack_now = 1;
		advance_rcv_nxt(p);
		if (!p->blocked)
			vd__peer_deliver(p);
	}
	/* SOVIA's delayed acks: after t frames ack on our own; before that, ride on outgoing data or wait
	 * for the delayed-ack timer. */
	if (++p->ack_pending >= ep->ack_every)
		p->ack_now = 1;
	else if (!p->ack_deadline)
		p->ack_deadline = ep->now + ep->delack_ns;
}

/* --- frame reception ------------------------------------------------------------------------------ */

void vd__rx_frame(struct vd_ep *ep, const uint8_t *data, size_t len, const struct vd_addr *from)
{
	struct vd__whdr h;
	const uint8_t *body;
	size_t blen;

	int unsummed = vd__wire_decode_hdr_lazy(data, len, &h, &body, &blen);
	if (unsummed < 0) {
		ep->stats.malformed++;
		return;
	}
	struct vd_peer *p = vd__peer_find(ep, from);
	if (unsummed) {
		/*
		 * A pull reply, its checksum not verified yet. The bulk path: a reply of the association we
		 * have with its sender, with no ack on it, touches nothing but its pull, which verifies the
		 * sum while copying the data into the receive buffer (vd__pull_on_reply). Anything else is
		 * verified here first and goes the general way.
		 */
		if (p && !p->gone && p->remote_session && h.src_session == p->remote_session &&
		    h.dst_session == ep->session && h.flags == 0) {
			struct vd__wpull_reply r;
			if (vd__wire_decode_pull_reply(body, blen, &r) < 0 || vd__pull_on_reply(p, &r, data) < 0) {
				ep->stats.malformed++;
				return;
			}
			ep->stats.frames_received++;
			p->last_heard = ep->now;
			return;
		}
		if (!vd__wire_sum_ok(data, len)) {
			ep->stats.malformed++;
			return;
		}
	}
	ep->stats.frames_received++;

	if (h.type == VD__W_RESET) {
		/* Valid only if addressed to us and about the association we have with that address: its
		 * sender is the incarnation we talk to, or it names the incarnation we were sending to. */
		if (p && !p->gone && h.dst_session == ep->session &&
		    (p->remote_session == 0 || p->remote_session == h.src_session || p->remote_session == h.seq))
			vd__peer_gone(p, -ECONNRESET);
		return;
	}
	/* Addressed to an earlier incarnation of this endpoint: that association is dead. */
	if (h.dst_session && h.dst_session != ep->session) {
		if (h.type != VD__W_ACK)
			send_reset(ep, from, h.src_session, h.dst_session);
		return;
	}
	if (p && p->remote_session && p->remote_session != h.src_session) {
		if (h.src_session == p->prev_session)
			return; /* a late frame of the incarnation this one replaced */
		/* A new incarnation of the remote endpoint: only its data opens a new association. */
		if (h.type != VD__W_DATA)
			return;
		uint32_t old = p->remote_session;
		if (!p->gone)
			vd__peer_gone(p, -ECONNRESET);
		p = vd__peer_new(ep, from, old);
	} else if (!p || (p->gone && !p->remote_session)) {
		if (h.type != VD__W_DATA)
			return;
		p = vd__peer_new(ep, from, 0);
	}
	if (!p) {
		ep->stats.malformed++; /* out of peer slots: dropped, and counted */
		return;
	}
	if (p->gone) {
		if (h.type != VD__W_ACK)
			send_reset(ep, from, h.src_session, h.dst_session);
		return;
	}
	if (!p->remote_session)
		p->remote_session = h.src_session;
	p->last_heard = ep->now;

	if (h.flags & VD__WF_ACK)
		on_ack(p, &h);
	if (h.flags & VD__WF_ACK_REQ)
		p->ack_now = 1;
	switch (h.type) {
	case VD__W_DATA:
		rx_data(p, h.seq, body, blen);
		break;
	case VD__W_PULL_REQ: {
		struct vd__wpull_req q;
		if (vd__wire_decode_pull_req(body, blen, &q) < 0)
			ep->stats.malformed++;
		else
			vd__pull_on_req(p, &q);
		break;
	}
	case VD__W_PULL_REPLY: {
		struct vd__wpull_reply r;
		if (vd__wire_decode_pull_reply(body, blen, &r) < 0)
			ep->stats.malformed++;
		else
			vd__pull_on_reply(p, &r, NULL);
		break;
	}
	default:
		break;
	}
}

/* --- timers and liveness -------------------------------------------------------------------------- */

int vd__peer_busy(const struct vd_peer *p)
{
	return p->snd_una != p->snd_nxt || !vd__list_empty(&p->txq) || !vd__list_empty(&p->sent) ||
	       !vd__list_empty(&p->rndv_sends) || !vd__list_empty(&p->pulls) || p->cur_req ||
	       (p->cur_unexp && p->cur_unexp->req) || p->ctrl_head != p->ctrl_tail;
}

static int window_closed(const struct vd_peer *p)
{
	return !vd__seq_lt(p->snd_nxt, p->snd_edge);
}

/*
 * How long a frame may lag behind frames sent after it before we take it as lost: the network may reorder,
 * by less than a round trip (the guard of the stream's fast retransmit, docs/msg-protocol.md section 4).
 * Bounded by the RTO so it is never slower than the timeout. Used by the stream's recovery and the pull.
 */
uint64_t vd__reorder_grace(const struct vd_peer *p)
{
	if (!p->rtt_valid)
		return p->rto;
	uint64_t g = p->srtt + 2 * p->rttvar;
	return g < p->rto ? g : p->rto;
}

static void owe(struct vd_peer *p, struct vd__txslot *t)
{
	t->owed = 1;
	p->rtx_owed = 1;
}

/*
 * Retransmission (RFC 6298 section 5, with RFC 6582's partial acks for the recovery), run when rto_next
 * has come or a resend is owed:
 *   - resends the nic had no room for (owed) go first: they are not new expiries;
 *   - the timer expires RTO after the later of the oldest unacknowledged frame's transmission and the
 *     last ack that acknowledged new data (5.3: every such ack restarts it). Then only that oldest frame
 *     is resent (5.4), the RTO backs off (5.5) and the timer restarts (5.6). Resending the whole window
 *     instead, as a timer per frame would, turns every stall of a busy receiver (descheduled for a few
 *     milliseconds: the 32 KiB streams of `viaduct perf bw` on a loaded machine) into up to 64 spurious
 *     retransmissions of frames that were only waiting in its ring;
 *   - after an expiry, the frames sent before it are in recovery until snd_una reaches `recover` (the
 *     snd_tx of the expiry). An ack that moves snd_una but not that far (a partial ack) shows the
 *     receiver has the resent frame and not the next one: frames arrive in order, so those still
 *     missing and not selectively acked were lost too. They are resent together once the stream has
 *     made no progress for the reorder grace (a receiver working through a backlog acks again sooner),
 *     rather than one per backed-off RTO.
 */
static void rto_scan(struct vd_peer *p)
{
	struct vd_ep *ep = p->ep;
	uint64_t now = ep->now;
	uint32_t s0 = p->snd_una;

	if (p->rtx_owed) {
		p->rtx_owed = 0;
		for (uint32_t s = p->snd_una; s != p->snd_tx; s++) {
			struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];
			if (t->owed && !t->sacked && retransmit(p, s) < 0) {
				p->rtx_owed = 1; /* still no room */
				break;
			}
		}
	}
	while (s0 != p->snd_tx && p->tx[s0 & (VD__RING - 1)].sacked)
		s0++;
	if (s0 == p->snd_tx) {
		p->rto_next = UINT64_MAX; /* everything in flight is selectively acked: nothing to time */
		return;
	}
	if (p->rec_partial && now >= p->last_advance + vd__reorder_grace(p)) {
		p->rec_partial = 0;
		for (uint32_t s = s0; vd__seq_lt(s, p->recover) && s != p->snd_tx; s++) {
			struct vd__txslot *t = &p->tx[s & (VD__RING - 1)];
			if (!t->sacked && !t->owed && t->sent_ns < p->rto_time && retransmit(p, s) < 0)
				owe(p, t);
		}
	}
	struct vd__txslot *t0 = &p->tx[s0 & (VD__RING - 1)];
	uint64_t at = p->last_advance + p->rto;
	if (t0->deadline > at)
		at = t0->deadline;
	if (!t0->owed && now >= at) {
		p->rto = p->rto * 2 > ep->rto_max ? ep->rto_max : p->rto * 2;
		p->last_advance = now;
		p->recover = p->snd_tx;
		p->in_recovery = 1;
		p->rec_partial = 0;
		p->rto_time = now;
		if (retransmit(p, s0) < 0)
			owe(p, t0);
		at = now + p->rto;
	}
	if (p->rec_partial && p->last_advance + vd__reorder_grace(p) < at)
		at = p->last_advance + vd__reorder_grace(p);
	p->rto_next = p->rtx_owed ? now : at;
}

void vd__peer_timers(struct vd_peer *p)
{
	struct vd_ep *ep = p->ep;
	uint64_t now = ep->now;

	if (p->gone)
		return;
	/* The retransmission timer: one comparison on most passes (rto_next is a lower bound). */
	if (p->snd_una != p->snd_tx && (p->rtx_owed || now >= p->rto_next))
		rto_scan(p);
	if (p->ack_now || (p->ack_deadline && now >= p->ack_deadline))
		vd__peer_send_ack(p, 0);

	if (!vd__peer_busy(p)) {
		p->busy_since = 0;
		return;
	}
	if (!p->busy_since)
		p->busy_since = now;
	/* We wait on this peer: it must show life within peer_timeout. A live peer answers retransmissions
	 * with (duplicate) acks and probes with acks, even when its application is not receiving. */
	uint64_t ref = p->last_heard > p->busy_since ? p->last_heard : p->busy_since;
	if (now - ref > ep->peer_timeout) {
		vd__peer_gone(p, -ETIMEDOUT);
		return;
	}
	/* Nothing in flight to draw an answer: probe (an ack asking for an ack). With a closed window this
	 * is TCP's persist probe and runs at the RTO; otherwise it is a keepalive. */
	if (p->snd_una == p->snd_nxt) {
		uint64_t ivl = window_closed(p) ? p->rto : ep->keepalive;
		if (now - p->last_heard >= ivl && now - p->last_probe >= ivl) {
			p->last_probe = now;
			vd__peer_send_ack(p, VD__WF_ACK_REQ);
		}
	}
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

uint64_t vd__peer_next_deadline(const struct vd_peer *p)
{
	struct vd_ep *ep = p->ep;
	uint64_t d = UINT64_MAX;

	if (p->gone)
		return d;
	if (p->snd_tx != p->snd_nxt || p->rtx_owed)
		return ep->now; /* frames waiting for room in the nic: retry at once */
	if (p->snd_una != p->snd_tx)
		d = p->rto_next;
	if (p->ack_now)
		d = ep->now;
	else if (p->ack_deadline)
		d = min64(d, p->ack_deadline);
	if (!vd__list_empty(&p->txq) && !window_closed(p))
		d = min64(d, p->txq_since + ep->combine_ns);
	if (vd__peer_busy(p)) {
		uint64_t ref = p->last_heard > p->busy_since ? p->last_heard : p->busy_since;
		if (!p->busy_since)
			ref = p->last_heard > ep->now ? p->last_heard : ep->now;
		d = min64(d, ref + ep->peer_timeout + 1);
		if (p->snd_una == p->snd_nxt) {
			uint64_t ivl = window_closed(p) ? p->rto : ep->keepalive;
			uint64_t a = p->last_heard + ivl, b = p->last_probe + ivl;
			d = min64(d, a > b ? a : b);
		}
	}
	return min64(d, vd__pull_next_deadline(p));
}

/* --- the peer is gone ----------------------------------------------------------------------------- */

static void fail_list(struct vd_ep *ep, struct vd__link *h, int err)
{
	struct vd__link *pos, *tmp;
	vd__list_each_safe(pos, tmp, h)
	{
		struct vd_req *r = vd__container_of(pos, struct vd_req, link);
		vd__list_del(&r->link);
		vd__pwork_purge(ep, r);
		vd__req_complete(r, err);
	}
}

void vd__peer_gone(struct vd_peer *p, int err)
{
	struct vd_ep *ep = p->ep;
	struct vd__link *pos, *tmp;

	if (p->gone)
		return;
	p->gone = err;
	ep->stats.peers_gone++;
	/* Tell a remote that may still be alive (a partition, not a crash) that this association is over. */
	if (err == -ETIMEDOUT && p->remote_session)
		send_reset(ep, &p->addr, p->remote_session, p->remote_session);
	vd__list_add_tail(&ep->gone_q, &p->gone_link);

	fail_list(ep, &p->txq, err);
	fail_list(ep, &p->sent, err);
	fail_list(ep, &p->rndv_sends, err);
	p->txq_bytes = 0;
	vd__list_each_safe(pos, tmp, &p->pulls)
	{
		vd__pull_abort(vd__container_of(pos, struct vd__pull, link), err);
	}
	if (p->cur_req) {
		vd__req_complete(p->cur_req, err);
		p->cur_req = NULL;
	}
	/* Messages from this peer that will never be whole (still arriving, or rendezvous that can no
	 * longer be pulled) go; complete ones stay for a receive to take. */
	vd__list_each_safe(pos, tmp, &ep->unexp)
	{
		struct vd__unexp *u = vd__container_of(pos, struct vd__unexp, link);
		if (u->peer != p || (!u->rndv && u->got == u->msg_len))
			continue;
		if (u->req) {
			u->req->unexp = NULL;
			vd__req_complete(u->req, err);
		}
		vd__unexp_free(ep, u);
	}
	p->cur_unexp = NULL;
	p->snd_una = p->snd_tx = p->snd_nxt;
	p->rto_next = UINT64_MAX;
	p->rtx_owed = 0;
	p->in_recovery = p->rec_partial = 0;
	p->proc_seq = p->rcv_nxt;
	p->blocked = 0;
	peer_free_bufs(p);
}
