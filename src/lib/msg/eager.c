/* SPDX-License-Identifier: MIT */
/*
 * The sending side of the sequenced stream: queued sends are cut into DATA frames of at most the nic's
 * payload size, several records per frame, and kept for retransmission until acknowledged.
 *
 * Combining (SOVIA section 4.3, TCP's Nagle algorithm, RFC 896): while data is in flight, a frame that
 * would leave less than a full frame's worth of small messages is held back, so messages queued meanwhile
 * share one frame; it goes when an ack empties the pipe, when enough is queued to fill a frame, or after
 * combine_us at the latest. VD_EP_NODELAY turns this off. Only messages not yet started are held: the tail
 * of a message being framed always goes at once.
 *
 * Control records (DONE, MATCHED) go first in a frame: they do not take part in matching, so moving them
 * ahead of data does not change any ordering the application can see.
 */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A fragment smaller than this is not worth a record header: the message starts in the next frame. */
#define VD__MIN_FRAG 64

static uint64_t wire_cost(const struct vd_req *r)
{
	return r->rndv ? VD__R_RNDV_LEN : VD__R_EAGER_LEN + (r->len - r->tx_off);
}

int vd__ctrl_push(struct vd_peer *p, uint8_t type, uint32_t send_id)
{
	uint32_t n = p->ctrl_tail - p->ctrl_head;

	if (n == p->ctrl_cap) {
		uint32_t cap = p->ctrl_cap ? p->ctrl_cap * 2 : 16;
		uint64_t *c = malloc(sizeof(*c) * cap);
		if (!c)
			return -ENOMEM;
		for (uint32_t i = 0; i < n; i++)
			c[i] = p->ctrl[(p->ctrl_head + i) & (p->ctrl_cap - 1)];
		free(p->ctrl);
		p->ctrl = c;
		p->ctrl_cap = cap;
		p->ctrl_head = 0;
		p->ctrl_tail = n;
	}
	p->ctrl[p->ctrl_tail++ & (p->ctrl_cap - 1)] = ((uint64_t)type << 32) | send_id;
	return 0;
}

void vd__send_enqueue(struct vd_peer *p, struct vd_req *r)
{
	if (vd__list_empty(&p->txq))
		p->txq_since = p->ep->now;
	r->state = VD__REQ_QUEUED;
	vd__list_add_tail(&p->txq, &r->link);
	p->txq_bytes += wire_cost(r);
}

int vd__send_cancel(struct vd_req *r)
{
	struct vd_peer *p = r->st.peer;

	if (r->state != VD__REQ_QUEUED || r->started)
		return -EBUSY;
	p->txq_bytes -= wire_cost(r);
	vd__list_del(&r->link);
	vd__req_complete(r, -ECANCELED);
	return 0;
}

static void try_complete(struct vd_req *r)
{
	if (r->acked && (!r->sync || r->matched)) {
		vd__list_del(&r->link);
		vd__req_complete(r, 0);
	}
}

void vd__sent_acked(struct vd_peer *p)
{
	struct vd__link *pos, *tmp;
	vd__list_each_safe(pos, tmp, &p->sent)
	{
		struct vd_req *r = vd__container_of(pos, struct vd_req, link);
		if (!vd__seq_lt(r->last_seq, p->snd_una))
			break; /* the list is in seq order */
		r->acked = 1;
		try_complete(r);
	}
}

void vd__on_matched(struct vd_peer *p, uint32_t send_id)
{
	struct vd__link *pos, *tmp;
	vd__list_each_safe(pos, tmp, &p->sent)
	{
		struct vd_req *r = vd__container_of(pos, struct vd_req, link);
		if (r->sync && r->send_id == send_id) {
			r->matched = 1;
			try_complete(r);
			return;
		}
	}
	/* MATCHED for a send still in txq is impossible (it has not been sent); anything else is a sender
	 * bug on the other side, ignored. */
}

static int may_send(const struct vd_peer *p)
{
	return (uint32_t)(p->snd_nxt - p->snd_una) < p->ep->window && vd__seq_lt(p->snd_nxt, p->snd_edge);
}

/* Nagle: hold a partly filled frame of not-yet-started messages while data is in flight. */
static int hold_back(const struct vd_peer *p, int force)
{
	const struct vd_ep *ep = p->ep;

	if (force || (ep->flags & VD_EP_NODELAY) || p->snd_una == p->snd_nxt || p->ctrl_head != p->ctrl_tail)
		return 0;
	if (vd__list_empty(&p->txq))
		return 0;
	const struct vd_req *head = vd__list_first(&p->txq, struct vd_req, link);
	if (head->started)
		return 0;
	if (p->txq_bytes + VD__W_HDR_LEN >= ep->maxp)
		return 0;
	return ep->now - p->txq_since < ep->combine_ns;
}

/* Fills one frame body from the control queue and txq; returns its end offset. */
static size_t fill_frame(struct vd_peer *p, uint8_t *b)
{
	struct vd_ep *ep = p->ep;
	size_t cap = ep->maxp, pos = VD__W_HDR_LEN;

	while (p->ctrl_head != p->ctrl_tail && pos + VD__R_ID_LEN <= cap) {
		uint64_t c = p->ctrl[p->ctrl_head++ & (p->ctrl_cap - 1)];
		pos += vd__wire_put_id(b + pos, (uint8_t)(c >> 32), (uint32_t)c);
	}
	while (!vd__list_empty(&p->txq)) {
		struct vd_req *r = vd__list_first(&p->txq, struct vd_req, link);
		if (r->rndv) {
			if (pos + VD__R_RNDV_LEN > cap)
				break;
			uint16_t maxp = ep->maxp > 65535 ? 65535 : (uint16_t)ep->maxp;
			pos += vd__wire_put_rndv(b + pos, r->send_id, r->match, r->len, maxp);
			p->txq_bytes -= wire_cost(r);
			r->started = 1;
			r->state = VD__REQ_ACTIVE;
			vd__list_del(&r->link);
			vd__list_add_tail(&p->rndv_sends, &r->link);
			continue;
		}
		if (pos + VD__R_EAGER_LEN > cap)
			break;
		uint64_t rem = r->len - r->tx_off;
		size_t room = cap - pos - VD__R_EAGER_LEN;
		if (rem > room && room < VD__MIN_FRAG)
			break;
		size_t n = rem < room ? (size_t)rem : room;
		pos += vd__wire_put_eager(b + pos, r->sync ? VD__RF_SYNC : 0, r->send_id, r->match, (uint32_t)r->len,
					  (uint32_t)r->tx_off, (uint16_t)n);
		vd__iov_copy_from(b + pos, r->iov, r->iovcnt, r->tx_off, n);
		pos += n;
		uint64_t before = wire_cost(r);
		r->tx_off += n;
		r->started = 1;
		if (r->tx_off < r->len) {
			p->txq_bytes -= before - wire_cost(r);
			break; /* frame full */
		}
		p->txq_bytes -= before;
		r->last_seq = p->snd_nxt;
		r->state = VD__REQ_ACTIVE;
		vd__list_del(&r->link);
		vd__list_add_tail(&p->sent, &r->link);
		ep->stats.msgs_sent++;
	}
	if (!vd__list_empty(&p->txq))
		p->txq_since = ep->now;
	return pos;
}

/* First transmission of the framed frame snd_tx: 0, or -EAGAIN if the nic has no room (it stays framed). */
static int transmit_next(struct vd_peer *p)
{
	struct vd_ep *ep = p->ep;
	struct vd__txslot *t = &p->tx[p->snd_tx & (VD__RING - 1)];

	if (vd__tx_copy(ep, &p->addr, t->buf, t->len) < 0)
		return -EAGAIN;
	/* The timer starts when the frame really leaves, not when it was framed; with nothing in flight
	 * the peer's retransmission timer starts now (RFC 6298 5.1). */
	if (p->snd_una == p->snd_tx)
		p->last_advance = ep->now;
	t->sent_ns = ep->now;
	t->deadline = ep->now + p->rto;
	if (t->deadline < p->rto_next)
		p->rto_next = t->deadline;
	p->snd_tx++;
	return 0;
}

int vd__peer_emit(struct vd_peer *p, int force)
{
	struct vd_ep *ep = p->ep;
	int sent = 0;

	if (p->gone)
		return 0;
	/*
	 * Frames the nic had no room for on an earlier pass go first, in order. They are not retransmissions
	 * (they never left): no backoff, not counted, and their RTT sample stays valid. Until they are out
	 * nothing new is framed behind them (the nic is still full, or the order would change).
	 */
	while (p->snd_tx != p->snd_nxt) {
		if (transmit_next(p) < 0)
			return sent;
		sent++;
	}
	while ((p->ctrl_head != p->ctrl_tail || !vd__list_empty(&p->txq)) && may_send(p) && !hold_back(p, force)) {
		struct vd__txslot *t = &p->tx[p->snd_nxt & (VD__RING - 1)];
		if (!t->buf) {
			t->buf = malloc(ep->maxp);
			if (!t->buf)
				break;
		}
		size_t len = fill_frame(p, t->buf);
		if (len == VD__W_HDR_LEN)
			break;
		struct vd__whdr h = {
			.type = VD__W_DATA,
			.src_session = ep->session,
			.dst_session = p->remote_session,
			.seq = p->snd_nxt,
		};
		vd__peer_fill_ack(p, &h); /* piggyback (SOVIA): this frame carries our pending acks */
		vd__wire_put_hdr(t->buf, &h);
		vd__wire_seal(t->buf, len);
		t->len = (uint16_t)len;
		t->sacked = 0;
		t->owed = 0;
		t->tx_count = 1;
		p->snd_nxt++;
		/* A frame the nic cannot take now stays framed in its slot and goes first on the next pass
		 * (no data loss, and no retransmission timeout for a frame that never left). Its piggybacked
		 * ack is then a little late, which acks allow. */
		if (transmit_next(p) < 0)
			break;
		sent++;
	}
	return sent;
}
