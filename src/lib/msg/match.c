/* SPDX-License-Identifier: MIT */
/*
 * Matching: incoming messages against posted receives, receives against unexpected messages.
 *
 * Order (the MPI non-overtaking rule): a peer's records are processed strictly in sequence order (peer.c
 * delivers frames in order), and a message is matched when its first record is processed; the posted queue
 * is searched in post order and the unexpected queue in arrival order. So two messages of one sender that
 * both match a receive are matched in the order they were sent, whatever the network did.
 *
 * Unexpected messages are buffered up to unexpected_max bytes. A message that does not fit stops its
 * peer's stream right there (VD__RX_BLOCKED): the frame is kept, unprocessed, and the receive window we
 * advertise shrinks until the sender stops. Nothing is dropped; processing resumes when a receive is posted
 * or buffer space frees up.
 */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int bits_match(uint64_t bits, uint64_t want, uint64_t mask)
{
	return (bits & mask) == (want & mask);
}

static struct vd_req *take_posted(struct vd_ep *ep, uint64_t match)
{
	struct vd__link *pos, *tmp;
	vd__list_each_safe(pos, tmp, &ep->posted)
	{
		struct vd_req *r = vd__container_of(pos, struct vd_req, link);
		if (bits_match(match, r->match, r->mask)) {
			vd__list_del(&r->link);
			r->state = VD__REQ_ACTIVE;
			return r;
		}
	}
	return NULL;
}

/* Copies message bytes [off, off + len) into the receive, dropping what lies beyond its buffer. */
static void copy_clip(struct vd_req *r, uint64_t off, const uint8_t *data, uint64_t len)
{
	if (off >= r->len)
		return;
	if (len > r->len - off)
		len = r->len - off;
	vd__iov_copy_to(r->iov, r->iovcnt, off, data, len);
}

void vd__recv_finish(struct vd_req *r, struct vd_peer *p, uint64_t msg_len, int err)
{
	r->st.peer = p;
	r->st.msg_len = msg_len;
	r->st.xfer_len = msg_len < r->len ? msg_len : r->len;
	if (!err && msg_len > r->len)
		err = -EMSGSIZE;
	r->ep->stats.msgs_received++;
	vd__req_complete(r, err);
}

void vd__unexp_free(struct vd_ep *ep, struct vd__unexp *u)
{
	vd__list_del(&u->link);
	ep->unexp_bytes -= u->cost;
	if (u->peer && u->peer->cur_unexp == u)
		u->peer->cur_unexp = NULL;
	free(u->data);
	free(u);
	ep->unblock = 1;
}

/* An unexpected eager message is whole and a receive has it: hand it over. */
static void unexp_deliver(struct vd_ep *ep, struct vd__unexp *u)
{
	struct vd_req *r = u->req;
	copy_clip(r, 0, u->data, u->msg_len);
	r->unexp = NULL;
	vd__recv_finish(r, u->peer, u->msg_len, 0);
	vd__unexp_free(ep, u);
}

static int rx_eager_first(struct vd_peer *p, const struct vd__wrec *rec)
{
	struct vd_ep *ep = p->ep;
	struct vd_req *r = take_posted(ep, rec->match);

	if (r) {
		r->st.match = rec->match;
		r->st.peer = p;
		copy_clip(r, 0, rec->data, rec->data_len);
		r->got = rec->data_len;
		if (rec->flags & VD__RF_SYNC)
			vd__ctrl_push(p, VD__R_MATCHED, rec->send_id);
		if (r->got == rec->msg_len) {
			vd__recv_finish(r, p, rec->msg_len, 0);
		} else {
			p->cur_req = r;
			p->cur_off = rec->data_len;
			p->cur_match = rec->match;
			p->cur_len = rec->msg_len;
		}
		return VD__RX_DONE;
	}

	uint64_t cost = rec->msg_len + sizeof(struct vd__unexp);
	if (ep->unexp_bytes + cost > ep->unexp_max)
		return VD__RX_BLOCKED;
	struct vd__unexp *u = calloc(1, sizeof(*u));
	uint8_t *data = malloc(rec->msg_len ? rec->msg_len : 1);
	if (!u || !data) {
		free(u);
		free(data);
		return VD__RX_BLOCKED; /* out of memory: hold the frame like back-pressure, retry later */
	}
	u->peer = p;
	u->match = rec->match;
	u->msg_len = rec->msg_len;
	u->sync = (rec->flags & VD__RF_SYNC) != 0;
	u->send_id = rec->send_id;
	u->data = data;
	memcpy(data, rec->data, rec->data_len);
	u->got = rec->data_len;
	u->cost = cost;
	ep->unexp_bytes += cost;
	vd__list_add_tail(&ep->unexp, &u->link);
	if (u->got < u->msg_len) {
		p->cur_unexp = u;
		p->cur_off = rec->data_len;
		p->cur_match = rec->match;
		p->cur_len = rec->msg_len;
	}
	return VD__RX_DONE;
}

static int rx_eager(struct vd_peer *p, const struct vd__wrec *rec)
{
	struct vd_ep *ep = p->ep;
	int assembling = p->cur_req || p->cur_unexp;

	if (!assembling) {
		if (rec->offset != 0) {
			ep->stats.malformed++; /* a continuation with no message started: sender bug */
			return VD__RX_DONE;
		}
		return rx_eager_first(p, rec);
	}
	/* Fragments of one message are contiguous in the stream (eager.c frames a message completely before
	 * the next one), so a continuation must be exactly the next piece of the current message. */
	if (rec->offset != p->cur_off || rec->match != p->cur_match || rec->msg_len != p->cur_len) {
		ep->stats.malformed++;
		return VD__RX_DONE;
	}
	p->cur_off += rec->data_len;
	if (p->cur_req) {
		struct vd_req *r = p->cur_req;
		copy_clip(r, rec->offset, rec->data, rec->data_len);
		r->got += rec->data_len;
		if (r->got == rec->msg_len) {
			p->cur_req = NULL;
			vd__recv_finish(r, p, rec->msg_len, 0);
		}
	} else {
		struct vd__unexp *u = p->cur_unexp;
		memcpy(u->data + rec->offset, rec->data, rec->data_len);
		u->got += rec->data_len;
		if (u->got == u->msg_len) {
			p->cur_unexp = NULL;
			if (u->req)
				unexp_deliver(ep, u);
		}
	}
	return VD__RX_DONE;
}

static int rx_rndv(struct vd_peer *p, const struct vd__wrec *rec)
{
	struct vd_ep *ep = p->ep;

	if (p->cur_req || p->cur_unexp) {
		ep->stats.malformed++; /* interleaved with an unfinished eager message: sender bug */
		return VD__RX_DONE;
	}
	struct vd_req *r = take_posted(ep, rec->match);
	if (r) {
		r->st.match = rec->match;
		r->st.peer = p;
		int rc = vd__pull_start(r, p, rec->send_id, rec->msg_len, rec->max_payload);
		if (rc < 0)
			vd__recv_finish(r, p, rec->msg_len, rc);
		return VD__RX_DONE;
	}
	uint64_t cost = sizeof(struct vd__unexp);
	if (ep->unexp_bytes + cost > ep->unexp_max)
		return VD__RX_BLOCKED;
	struct vd__unexp *u = calloc(1, sizeof(*u));
	if (!u)
		return VD__RX_BLOCKED;
	u->peer = p;
	u->match = rec->match;
	u->msg_len = rec->msg_len;
	u->rndv = 1;
	u->send_id = rec->send_id;
	u->max_payload = rec->max_payload;
	u->cost = cost;
	ep->unexp_bytes += cost;
	vd__list_add_tail(&ep->unexp, &u->link);
	return VD__RX_DONE;
}

int vd__rx_records(struct vd_peer *p, const uint8_t *body, size_t len, uint32_t *pos)
{
	struct vd_ep *ep = p->ep;

	for (;;) {
		size_t at = *pos;
		struct vd__wrec rec;
		int rc = vd__wire_next_rec(body, len, &at, &rec);
		if (rc == 0)
			return VD__RX_DONE;
		if (rc < 0) {
			/* A bad record ends the frame: its length fields cannot be trusted to find the next. */
			ep->stats.malformed++;
			return VD__RX_DONE;
		}
		switch (rec.type) {
		case VD__R_EAGER:
			rc = rx_eager(p, &rec);
			break;
		case VD__R_RNDV:
			rc = rx_rndv(p, &rec);
			break;
		case VD__R_DONE:
			vd__pull_on_done(p, rec.send_id);
			rc = VD__RX_DONE;
			break;
		case VD__R_MATCHED:
			vd__on_matched(p, rec.send_id);
			rc = VD__RX_DONE;
			break;
		default:
			rc = VD__RX_DONE;
			break;
		}
		if (rc == VD__RX_BLOCKED)
			return VD__RX_BLOCKED; /* *pos still at this record: it is processed again later */
		*pos = (uint32_t)at;
	}
}

void vd__recv_post(struct vd_ep *ep, struct vd_req *r)
{
	struct vd__link *pos, *tmp;

	vd__list_each_safe(pos, tmp, &ep->unexp)
	{
		struct vd__unexp *u = vd__container_of(pos, struct vd__unexp, link);
		if (u->req || !bits_match(u->match, r->match, r->mask))
			continue;
		r->state = VD__REQ_ACTIVE;
		r->st.match = u->match;
		r->st.peer = u->peer;
		if (u->sync)
			vd__ctrl_push(u->peer, VD__R_MATCHED, u->send_id);
		if (u->rndv) {
			struct vd_peer *p = u->peer;
			uint32_t send_id = u->send_id;
			uint64_t msg_len = u->msg_len;
			uint16_t maxp = u->max_payload;
			vd__unexp_free(ep, u);
			int rc = vd__pull_start(r, p, send_id, msg_len, maxp);
			if (rc < 0)
				vd__recv_finish(r, p, msg_len, rc);
		} else {
			u->req = r;
			r->unexp = u;
			if (u->got == u->msg_len)
				unexp_deliver(ep, u);
		}
		return;
	}
	r->state = VD__REQ_QUEUED;
	vd__list_add_tail(&ep->posted, &r->link);
	ep->unblock = 1; /* a held frame of some peer may match this receive */
}

int vd__probe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *st)
{
	struct vd__link *pos, *tmp;

	vd__list_each_safe(pos, tmp, &ep->unexp)
	{
		struct vd__unexp *u = vd__container_of(pos, struct vd__unexp, link);
		if (u->req || !bits_match(u->match, match, mask))
			continue;
		if (st) {
			memset(st, 0, sizeof(*st));
			st->peer = u->peer;
			st->match = u->match;
			st->msg_len = u->msg_len;
		}
		return 1;
	}
	return 0;
}
