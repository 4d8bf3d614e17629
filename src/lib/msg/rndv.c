/* SPDX-License-Identifier: MIT */
/*
 * Rendezvous (Open-MX's pull protocol). A message above the eager threshold is announced by a RNDV record
 * in the sequenced stream; once a receive matches it, the receiver pulls the data: it asks for blocks of up
 * to 64 frames (PULL_REQ, a bitmap of the frames wanted) and the sender answers each wanted frame with a
 * PULL_REPLY carrying that piece of the message, written straight into the receive buffer. Neither pull
 * frame is sequenced or acked: the receiver keeps pull_blocks requests outstanding per message (and at most
 * VD__PULL_PEER_BYTES asked for per peer, all messages together), re-asks for the frames
 * still missing when a block makes no progress for an RTO (with backoff), and when the message is whole
 * sends DONE in the sequenced stream, which completes the send. Pull replies never enter the reorder
 * buffer and never consume the stream's window: the bulk path is one copy on each side.
 */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define VD__PWORK_MAX 4096 /* queued pull requests per endpoint; more are dropped (the puller re-asks) */

static uint64_t block_mask(uint32_t cnt)
{
	return cnt >= 64 ? ~0ull : (1ull << cnt) - 1;
}

static void send_pull_req(struct vd__pull *pl, struct vd__pull_blk *b)
{
	struct vd_peer *p = pl->peer;
	struct vd_ep *ep = p->ep;
	uint8_t buf[VD__W_HDR_LEN + VD__W_PULL_REQ_LEN];
	struct vd__whdr h = {
		.type = VD__W_PULL_REQ,
		.src_session = ep->session,
		.dst_session = p->remote_session,
	};
	struct vd__wpull_req q = {
		.send_id = pl->send_id,
		.pull_id = pl->pull_id,
		.first = b->first,
		.chunk = (uint16_t)pl->chunk,
		.want = b->want,
	};

	vd__peer_fill_ack(p, &h);
	vd__wire_put_hdr(buf, &h);
	vd__wire_put_pull_req(buf + VD__W_HDR_LEN, &q);
	vd__wire_seal(buf, sizeof(buf));
	if (vd__tx_copy(ep, &p->addr, buf, sizeof(buf)) < 0) {
		/* No room in the nic: the request goes on the next pass (vd__pull_timers), as a first try,
		 * not a re-request. The ack it would have carried is owed again. */
		b->unsent = 1;
		b->deadline = ep->now;
		p->ack_now = 1;
		return;
	}
	b->unsent = 0;
	ep->stats.pull_requests++;
	/* The sender answers the requests of one endpoint in arrival order, each in ascending frame order:
	 * what we remember here lets a reply tell us which earlier requests have been answered in full. */
	b->last = 63u - (uint32_t)__builtin_clzll(b->want);
	b->replied = 0;
	b->fast = 0;
	b->order = ++p->pull_req_order;
}

static void arm_fast(struct vd__pull_blk *b, uint64_t at)
{
	if (!b->fast || at < b->deadline) {
		b->deadline = at;
		b->fast = 1;
	}
}

/*
 * A reply to request number `order` has arrived: every request sent before it has been answered in full
 * (the sender works in order), so the frames they still miss were lost or are being reordered. Re-ask for
 * them after the reorder grace rather than a whole RTO (the pull's fast retransmit: under 5% loss nearly
 * every 64-frame block loses a frame, and waiting an RTO for each would stall the pull most of the time).
 */
static void pull_served(struct vd_peer *p, uint64_t order)
{
	struct vd_ep *ep = p->ep;
	struct vd__link *pos;

	if (order <= p->pull_served)
		return;
	p->pull_served = order;
	uint64_t at = ep->now + vd__reorder_grace(p);
	for (pos = p->pulls.next; pos != &p->pulls; pos = pos->next) {
		struct vd__pull *pl = vd__container_of(pos, struct vd__pull, link);
		for (uint32_t i = 0; i < ep->pull_blocks; i++) {
			struct vd__pull_blk *b = &pl->blk[i];
			if (b->want && b->order < order)
				arm_fast(b, at);
		}
	}
}

/*
 * Starts new blocks while there are free slots, frames not yet asked for and room in the peer's budget
 * (VD__PULL_PEER_BYTES). Returns false when the budget stopped it. A block always starts when the peer has
 * none open, so a budget below one block cannot stall a pull.
 */
static bool pull_fill(struct vd__pull *pl)
{
	struct vd_peer *p = pl->peer;
	struct vd_ep *ep = p->ep;

	for (uint32_t i = 0; i < ep->pull_blocks && pl->next_frame < pl->nframes; i++) {
		struct vd__pull_blk *b = &pl->blk[i];
		if (b->want)
			continue;
		uint32_t cnt = pl->nframes - pl->next_frame;
		if (cnt > pl->blk_frames)
			cnt = pl->blk_frames;
		uint32_t bytes = cnt * pl->chunk;
		if (p->pull_inflight && p->pull_inflight + bytes > VD__PULL_PEER_BYTES)
			return false;
		b->bytes = bytes;
		p->pull_inflight += bytes;
		b->first = pl->next_frame;
		b->want = block_mask(cnt);
		b->tries = 0;
		b->deadline = ep->now + pl->peer->rto;
		pl->next_frame += cnt;
		send_pull_req(pl, b);
	}
	return true;
}

/* Budget was freed: the peer's pulls take it in the order they started (the oldest message first). */
static void peer_fill(struct vd_peer *p)
{
	struct vd__link *pos;

	for (pos = p->pulls.next; pos != &p->pulls; pos = pos->next) {
		struct vd__pull *pl = vd__container_of(pos, struct vd__pull, link);
		if (pl->next_frame < pl->nframes && !pull_fill(pl))
			return;
	}
}

static void pull_finish(struct vd__pull *pl, int err)
{
	struct vd_req *r = pl->req;

	/* An aborted pull gives back what its open blocks were charged (a finished one has none open). */
	for (uint32_t i = 0; i < pl->peer->ep->pull_blocks; i++)
		if (pl->blk[i].want)
			pl->peer->pull_inflight -= pl->blk[i].bytes;
	vd__list_del(&pl->link);
	pl->peer->ep->npulls--;
	r->pull = NULL;
	vd__recv_finish(r, pl->peer, r->st.msg_len, err);
	free(pl);
}

int vd__pull_start(struct vd_req *r, struct vd_peer *p, uint32_t send_id, uint64_t msg_len, uint16_t sender_maxp)
{
	struct vd_ep *ep = p->ep;
	uint64_t total = msg_len < r->len ? msg_len : r->len;
	uint32_t maxp = ep->maxp < sender_maxp ? ep->maxp : sender_maxp;
	uint32_t chunk = maxp - VD__W_HDR_LEN - VD__W_PULL_REPLY_HDR;

	r->st.msg_len = msg_len;
	r->state = VD__REQ_ACTIVE;
	/* Called from vd_irecv too, which does not read the clock: the pull's timers start now. */
	ep->now = vd_nic_now_ns(ep->nic);
	if (total == 0) {
		/* Nothing to pull (empty receive buffer): the sender is released at once. */
		vd__ctrl_push(p, VD__R_DONE, send_id);
		vd__recv_finish(r, p, msg_len, 0);
		return 0;
	}
	uint64_t nframes = (total + chunk - 1) / chunk;
	if (nframes > UINT32_MAX)
		return -EMSGSIZE;
	struct vd__pull *pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	pl->req = r;
	pl->peer = p;
	pl->send_id = send_id;
	pl->pull_id = ++ep->next_pull_id ? ep->next_pull_id : ++ep->next_pull_id;
	pl->total = total;
	pl->chunk = chunk;
	pl->nframes = (uint32_t)nframes;
	/* A block asks for at most VD__PULL_BLOCK_BYTES: what is in flight is bounded in bytes, not frames,
	 * so large frames (a 64 KiB loopback MTU) do not overrun the receiver's socket buffer. */
	pl->blk_frames = VD__PULL_BLOCK_BYTES / chunk;
	if (pl->blk_frames < 1)
		pl->blk_frames = 1;
	if (pl->blk_frames > VD__PULL_BLOCK)
		pl->blk_frames = VD__PULL_BLOCK;
	pl->last_progress = ep->now;
	r->pull = pl;
	vd__list_add_tail(&p->pulls, &pl->link);
	ep->npulls++;
	pull_fill(pl);
	return 0;
}

/* Where bytes [off, off + len) of r's buffer are, if they lie in one iovec; else NULL. */
static uint8_t *iov_span(const struct vd_req *r, uint64_t off, uint64_t len)
{
	for (int i = 0; i < r->iovcnt; i++) {
		if (off < r->iov[i].iov_len)
			return r->iov[i].iov_len - off >= len ? (uint8_t *)r->iov[i].iov_base + off : NULL;
		off -= r->iov[i].iov_len;
	}
	return NULL;
}

int vd__pull_on_reply(struct vd_peer *p, const struct vd__wpull_reply *rep, const uint8_t *unsummed)
{
	struct vd_ep *ep = p->ep;
	struct vd__link *pos, *tmp;
	struct vd__pull *pl = NULL;

	vd__list_each_safe(pos, tmp, &p->pulls)
	{
		struct vd__pull *x = vd__container_of(pos, struct vd__pull, link);
		if (x->pull_id == rep->pull_id) {
			pl = x;
			break;
		}
	}
	/* Until its sum is checked, nothing of an unsummed frame counts: a drop below checks it first. */
	size_t flen = VD__W_HDR_LEN + VD__W_PULL_REPLY_HDR + (size_t)rep->data_len;
	if (!pl) {
		if (unsummed && !vd__wire_sum_ok(unsummed, flen))
			return -EBADMSG;
		ep->stats.dup_frames++; /* a late duplicate of a finished pull */
		return 0;
	}
	if (rep->frame >= pl->nframes) {
		if (unsummed && !vd__wire_sum_ok(unsummed, flen))
			return -EBADMSG;
		ep->stats.malformed++;
		return 0;
	}
	/* The sender cuts the whole message into chunks; a truncating receive keeps only its part of the last
	 * frame it asks for. */
	uint64_t off = (uint64_t)rep->frame * pl->chunk;
	uint64_t msg_len = pl->req->st.msg_len;
	uint64_t want_len = msg_len - off < pl->chunk ? msg_len - off : pl->chunk;
	if (rep->data_len != want_len) {
		ep->stats.malformed++;
		return 0;
	}
	struct vd__pull_blk *b = NULL;
	for (uint32_t i = 0; i < ep->pull_blocks; i++) {
		struct vd__pull_blk *x = &pl->blk[i];
		if (x->want && rep->frame >= x->first && rep->frame - x->first < VD__PULL_BLOCK &&
		    (x->want & (1ull << (rep->frame - x->first)))) {
			b = x;
			break;
		}
	}
	if (!b) {
		if (unsummed && !vd__wire_sum_ok(unsummed, flen))
			return -EBADMSG;
		ep->stats.dup_frames++;
		return 0;
	}
	uint64_t n = pl->total - off < rep->data_len ? pl->total - off : rep->data_len;
	uint8_t *dst = unsummed && n == rep->data_len ? iov_span(pl->req, off, n) : NULL;
	if (dst) {
		/*
		 * Copied and summed in one pass (the frame comes cold from the core that received it; a
		 * separate sum pass read it twice: 14% of the receiving core in a 1 MiB bulk transfer at MTU
		 * 1500). A frame failing the sum has written only where this frame belongs by its own
		 * (untrusted) header: a region of a receive still pulling whose frame is still wanted (the
		 * block's bit, checked above, stays set), so a good reply overwrites it before the receive
		 * can complete; a frame already received is never written over.
		 */
		uint32_t sum = vd__wire_copy_sum(dst, rep->data, n);
		if (!vd__wire_sum_body_ok(unsummed, VD__W_HDR_LEN + VD__W_PULL_REPLY_HDR, sum))
			return -EBADMSG;
	} else {
		if (unsummed && !vd__wire_sum_ok(unsummed, flen))
			return -EBADMSG;
		vd__iov_copy_to(pl->req->iov, pl->req->iovcnt, off, rep->data, n);
	}
	uint32_t rel = rep->frame - b->first;
	b->want &= ~(1ull << rel);
	if (!b->want)
		p->pull_inflight -= b->bytes;
	b->tries = 0;
	b->replied = 1;
	p->last_pull_reply = ep->now;
	if (rel >= b->last) {
		/* The last frame of the latest request: the ones still missing were sent before it. */
		b->fast = 0;
		arm_fast(b, ep->now + vd__reorder_grace(p));
	} else {
		/* The sender is answering this request now: the rest of it follows in order. */
		b->fast = 0;
		b->deadline = ep->now + p->rto;
	}
	pl->frames_done++;
	pl->last_progress = ep->now;
	pull_served(p, b->order);
	if (pl->frames_done == pl->nframes) {
		vd__ctrl_push(p, VD__R_DONE, pl->send_id);
		pull_finish(pl, 0);
		peer_fill(p);
		return 0;
	}
	if (!b->want)
		peer_fill(p);
	return 0;
}

void vd__pull_abort(struct vd__pull *pl, int err)
{
	pull_finish(pl, err);
}

void vd__pull_timers(struct vd_peer *p)
{
	struct vd_ep *ep = p->ep;
	struct vd__link *pos, *tmp;

	vd__list_each_safe(pos, tmp, &p->pulls)
	{
		struct vd__pull *pl = vd__container_of(pos, struct vd__pull, link);
		for (uint32_t i = 0; i < ep->pull_blocks; i++) {
			struct vd__pull_blk *b = &pl->blk[i];
			if (!b->want || ep->now < b->deadline)
				continue;
			if (b->unsent) {
				/* Never left (the nic was full): its first transmission, not a retry. */
				b->deadline = ep->now + p->rto;
				send_pull_req(pl, b);
				continue;
			}
			/* No reply yet, while replies to requests sent before this one still flow: the sender
			 * is busy with those (it answers in order), so the request is queued, not lost. */
			if (!b->fast && !b->replied && b->order > p->pull_served &&
			    ep->now - p->last_pull_reply < p->rto) {
				b->deadline = p->last_pull_reply + p->rto;
				continue;
			}
			/* No reply for this block within an RTO: ask again for what is missing, backing off
			 * exponentially (as RFC 6298 5.5 does for the stream) up to rto_max. After the reorder
			 * grace (a later frame or request was answered), ask again at once, without backoff. */
			if (!b->fast && b->tries < 16)
				b->tries++;
			uint64_t ivl = p->rto << (b->tries < 6 ? b->tries : 6);
			if (ivl > ep->rto_max)
				ivl = ep->rto_max;
			b->deadline = ep->now + ivl;
			send_pull_req(pl, b);
			ep->stats.pull_retransmits++;
		}
	}
}

uint64_t vd__pull_next_deadline(const struct vd_peer *p)
{
	uint64_t d = UINT64_MAX;
	const struct vd__link *pos;

	for (pos = p->pulls.next; pos != &p->pulls; pos = pos->next) {
		const struct vd__pull *pl = vd__container_of(pos, struct vd__pull, link);
		for (uint32_t i = 0; i < p->ep->pull_blocks; i++)
			if (pl->blk[i].want && pl->blk[i].deadline < d)
				d = pl->blk[i].deadline;
	}
	return d;
}

/* --- the sender's side ---------------------------------------------------------------------------- */

static struct vd_req *find_rndv_send(struct vd_peer *p, uint32_t send_id)
{
	struct vd__link *pos;
	for (pos = p->rndv_sends.next; pos != &p->rndv_sends; pos = pos->next) {
		struct vd_req *r = vd__container_of(pos, struct vd_req, link);
		if (r->send_id == send_id)
			return r;
	}
	return NULL;
}

void vd__pull_on_req(struct vd_peer *p, const struct vd__wpull_req *q)
{
	struct vd_ep *ep = p->ep;
	struct vd_req *r = find_rndv_send(p, q->send_id);

	if (!r)
		return; /* already DONE (a late request) */
	if ((uint32_t)q->chunk + VD__W_HDR_LEN + VD__W_PULL_REPLY_HDR > ep->maxp) {
		ep->stats.malformed++;
		return;
	}
	uint64_t nframes = (r->len + q->chunk - 1) / q->chunk;
	if (q->first >= nframes) {
		ep->stats.malformed++;
		return;
	}
	uint64_t want = q->want;
	if (nframes - q->first < 64)
		want &= block_mask((uint32_t)(nframes - q->first));
	if (!want) {
		ep->stats.malformed++;
		return;
	}
	if (ep->npwork >= VD__PWORK_MAX)
		return; /* the puller will ask again */
	struct vd__pwork *w = malloc(sizeof(*w));
	if (!w)
		return;
	/*
	 * A re-request for a block whose earlier request is still queued here (we fell behind: the puller's
	 * timer fired before we answered) must not make us send those frames twice: each duplicate is a
	 * whole frame copied on both sides and a slot in the puller's receive path, at the moment we are
	 * already late. The frames leave the earlier entry and go with the new one at the tail, in the
	 * order the puller expects (it takes a reply as the answer to its latest request for the block,
	 * and every request sent before that as answered in full: pull_served).
	 */
	struct vd__link *pos;
	for (pos = ep->pwork.next; pos != &ep->pwork; pos = pos->next) {
		struct vd__pwork *o = vd__container_of(pos, struct vd__pwork, link);
		if (o->req == r && o->pull_id == q->pull_id && o->first == q->first && o->chunk == q->chunk)
			o->want &= ~want;
	}
	w->req = r;
	w->peer = p;
	w->pull_id = q->pull_id;
	w->first = q->first;
	w->chunk = q->chunk;
	w->want = want;
	vd__list_add_tail(&ep->pwork, &w->link);
	ep->npwork++;
}

void vd__pull_on_done(struct vd_peer *p, uint32_t send_id)
{
	struct vd_req *r = find_rndv_send(p, send_id);
	if (!r)
		return;
	vd__list_del(&r->link);
	vd__pwork_purge(p->ep, r);
	vd__req_complete(r, 0);
}

void vd__pwork_purge(struct vd_ep *ep, struct vd_req *r)
{
	struct vd__link *pos, *tmp;
	vd__list_each_safe(pos, tmp, &ep->pwork)
	{
		struct vd__pwork *w = vd__container_of(pos, struct vd__pwork, link);
		if (w->req == r) {
			vd__list_del(&w->link);
			ep->npwork--;
			free(w);
		}
	}
}

#define VD__PWORK_BURST 32

/* Sends queued pull replies while the nic has room; returns frames sent. */
int vd__pwork_drain(struct vd_ep *ep)
{
	int sent = 0;

	while (!vd__list_empty(&ep->pwork)) {
		struct vd__pwork *w = vd__list_first(&ep->pwork, struct vd__pwork, link);
		struct vd_req *r = w->req;
		while (w->want) {
			struct vd_frame f[VD__PWORK_BURST];
			uint32_t idx[VD__PWORK_BURST];
			unsigned k = (unsigned)__builtin_popcountll(w->want);
			if (k > VD__PWORK_BURST)
				k = VD__PWORK_BURST;
			int n = vd_nic_tx_alloc(ep->nic, f, k);
			if (n <= 0) {
				vd_nic_flush(ep->nic);
				n = vd_nic_tx_alloc(ep->nic, f, k);
				if (n <= 0)
					return sent; /* nic full: continue at the next progress call */
			}
			uint64_t want = w->want;
			for (int i = 0; i < n; i++) {
				uint32_t bit = (uint32_t)__builtin_ctzll(want);
				want &= want - 1;
				idx[i] = bit;
				uint32_t frame = w->first + bit;
				uint64_t off = (uint64_t)frame * w->chunk;
				uint64_t len = r->len - off < w->chunk ? r->len - off : w->chunk;
				uint8_t *b = f[i].data;
				struct vd__whdr h = {
					.type = VD__W_PULL_REPLY,
					.src_session = ep->session,
					.dst_session = w->peer->remote_session,
				};
				size_t pos = vd__wire_put_hdr(b, &h);
				pos += vd__wire_put_pull_reply(b + pos, w->pull_id, frame);
				const uint8_t *src = iov_span(r, off, len);
				if (src) {
					/* The usual case, the piece in one iovec: copied and summed in one pass. */
					vd__wire_seal_body(b, pos, vd__wire_copy_sum(b + pos, src, len));
					pos += len;
				} else {
					vd__iov_copy_from(b + pos, r->iov, r->iovcnt, off, len);
					pos += len;
					vd__wire_seal(b, pos);
				}
				f[i].len = (uint32_t)pos;
				f[i].peer = w->peer->addr;
			}
			int q = vd_nic_tx_burst(ep->nic, f, (unsigned)n);
			if (q < 0)
				q = 0;
			if (q < n)
				vd_nic_tx_abort(ep->nic, f + q, (unsigned)(n - q));
			for (int i = 0; i < q; i++)
				w->want &= ~(1ull << idx[i]);
			ep->stats.frames_sent += (uint64_t)q;
			sent += q;
			/*
			 * Ring the doorbell after every burst rather than once per pass: the kernel then copies
			 * each frame (copy-mode AF_XDP TX, at most 32 per call) while it is still in this core's
			 * cache, instead of after a whole pass of replies (up to every free TX frame, megabytes).
			 * Measured: about 6% more bandwidth at 1 MiB over xdp at MTU 3506, same runs.
			 */
			if (q) {
				vd_nic_flush(ep->nic);
				ep->tx_pending = 0;
			}
			if (q < n)
				return sent;
		}
		vd__list_del(&w->link);
		ep->npwork--;
		free(w);
	}
	return sent;
}
