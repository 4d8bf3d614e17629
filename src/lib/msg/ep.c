/* SPDX-License-Identifier: MIT */
/* The public messaging API (viaduct/msg.h): argument checks, locking, and calls into the engine. */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define VD__HASH_BUCKETS 256

VD_API void vd_ep_opts_init(struct vd_ep_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->nic.backend = VD_BACKEND_AUTO;
	o->nic.queue = -1;
}

static uint64_t def(uint64_t v, uint64_t d)
{
	return v ? v : d;
}

/* The session number tells incarnations of an endpoint apart (a restarted process on the same address).
 * Real backends take it from the kernel's random source; the sim backend derives it from the address and
 * the virtual clock, so a simulation replays exactly. */
static uint32_t new_session(struct vd_ep *ep)
{
	uint32_t s = 0;

	if (!strcmp(vd_nic_backend_name(ep->nic), "sim")) {
		struct vd_addr a;
		vd_nic_local_addr(ep->nic, &a);
		uint64_t k = ((uint64_t)a.ip << 16 | a.port) ^ (vd_nic_now_ns(ep->nic) * 0x9e3779b97f4a7c15ull);
		k ^= k >> 31;
		k *= 0xbf58476d1ce4e5b9ull;
		s = (uint32_t)(k >> 32);
	} else if (getrandom(&s, sizeof(s), 0) != sizeof(s)) {
		s = (uint32_t)vd_nic_now_ns(ep->nic) ^ (uint32_t)(uintptr_t)ep;
	}
	return s ? s : 1;
}

VD_API int vd_ep_open(struct vd_ep **out, const struct vd_ep_opts *opts)
{
	struct vd_ep_opts o;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	else
		vd_ep_opts_init(&o);
	if (o.eager_max > VD_EAGER_LIMIT || (o.window && (o.window < VD__INIT_WND || o.window > VD__RING)) ||
	    (o.flags & ~(uint32_t)(VD_EP_NODELAY | VD_EP_PROGRESS_THREAD)) ||
	    o.pull_blocks > VD__PULL_BLOCKS_MAX)
		return -EINVAL;

	struct vd_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	vd__list_init(&ep->peers);
	vd__list_init(&ep->posted);
	vd__list_init(&ep->unexp);
	vd__list_init(&ep->done);
	vd__list_init(&ep->reqs);
	vd__list_init(&ep->pwork);
	vd__list_init(&ep->gone_q);
	ep->htab = calloc(VD__HASH_BUCKETS, sizeof(*ep->htab));
	if (!ep->htab) {
		free(ep);
		return -ENOMEM;
	}
	ep->hmask = VD__HASH_BUCKETS - 1;

	if (o.nic.same_host_shm == 0)
		o.nic.same_host_shm = 1; /* same-host peers through shared memory unless asked not to */
	rc = vd_nic_open(&ep->nic, &o.nic);
	if (rc < 0) {
		free(ep->htab);
		free(ep);
		return rc;
	}
	ep->maxp = vd_nic_max_payload(ep->nic);
	if (ep->maxp > 65535)
		ep->maxp = 65535; /* record and slot lengths are 16-bit */
	if (ep->maxp < VD__W_MIN_PAYLOAD) {
		rc = -EINVAL;
		goto fail;
	}
	ep->flags = o.flags;
	ep->eager_max = (uint32_t)def(o.eager_max, 32768);
	ep->window = (uint32_t)def(o.window, VD__RING);
	ep->ack_every = (uint32_t)def(o.ack_every, ep->window / 4);
	if (ep->ack_every > ep->window)
		ep->ack_every = ep->window;
	ep->delack_ns = def(o.delayed_ack_us, 50) * 1000;
	ep->combine_ns = def(o.combine_us, 20) * 1000;
	ep->rto_min = def(o.rto_min_us, 2000) * 1000;
	ep->rto_max = def(o.rto_max_us, 1000000) * 1000;
	if (ep->rto_max < ep->rto_min)
		ep->rto_max = ep->rto_min;
	/* RFC 6298 2.1 says 1 s before any measurement; that is for the Internet. On the links this runs on
	 * 10 ms is still hundreds of round trips. */
	ep->rto_init = ep->rto_min > 10000000 ? ep->rto_min : 10000000;
	if (ep->rto_init > ep->rto_max)
		ep->rto_init = ep->rto_max;
	ep->peer_timeout = def(o.peer_timeout_ms, 10000) * 1000000;
	ep->keepalive = ep->peer_timeout / 4;
	ep->unexp_max = def(o.unexpected_max, 16u << 20);
	ep->pull_blocks = (uint32_t)def(o.pull_blocks, 4);
	ep->max_peers = (uint32_t)def(o.max_peers, 4096);
	ep->now = vd_nic_now_ns(ep->nic);
	ep->session = new_session(ep);
	vd__gate_init(ep, !strcmp(vd_nic_backend_name(ep->nic), "sim"));

	if (o.flags & VD_EP_PROGRESS_THREAD) {
		if (!strcmp(vd_nic_backend_name(ep->nic), "sim")) {
			rc = -EINVAL; /* virtual time: progress must stay in the test's hands */
			goto fail;
		}
		rc = vd__bg_start(ep);
		if (rc < 0)
			goto fail;
	}
	*out = ep;
	return 0;
fail:
	vd_nic_close(ep->nic);
	free(ep->htab);
	free(ep);
	return rc;
}

VD_API void vd_ep_close(struct vd_ep *ep)
{
	struct vd__link *pos, *tmp;

	if (!ep)
		return;
	vd__bg_stop(ep);
	/* Acks still owed go out now: the peer's last message otherwise stays unacknowledged and its sender
	 * retransmits until it declares us gone. */
	for (pos = ep->peers.next; pos != &ep->peers; pos = pos->next) {
		struct vd_peer *p = vd__container_of(pos, struct vd_peer, all);
		if (!p->gone && (p->ack_now || p->ack_deadline))
			vd__peer_send_ack(p, 0);
	}
	vd_nic_flush(ep->nic);
	vd__list_each_safe(pos, tmp, &ep->peers)
	{
		struct vd_peer *p = vd__container_of(pos, struct vd_peer, all);
		struct vd__link *q, *qt;
		vd__list_each_safe(q, qt, &p->pulls)
		{
			free(vd__container_of(q, struct vd__pull, link));
		}
	}
	vd__list_each_safe(pos, tmp, &ep->unexp)
	{
		struct vd__unexp *u = vd__container_of(pos, struct vd__unexp, link);
		free(u->data);
		free(u);
	}
	vd__list_each_safe(pos, tmp, &ep->pwork)
	{
		free(vd__container_of(pos, struct vd__pwork, link));
	}
	vd__list_each_safe(pos, tmp, &ep->reqs)
	{
		vd__req_free(vd__container_of(pos, struct vd_req, all));
	}
	vd__list_each_safe(pos, tmp, &ep->peers)
	{
		vd__peer_free(vd__container_of(pos, struct vd_peer, all));
	}
	vd_nic_close(ep->nic);
	free(ep->htab);
	free(ep);
}

VD_API int vd_ep_addr(const struct vd_ep *ep, struct vd_addr *out)
{
	if (!ep || !out)
		return -EINVAL;
	return vd_nic_local_addr(ep->nic, out);
}

VD_API struct vd_nic *vd_ep_nic(const struct vd_ep *ep)
{
	return ep->nic;
}

VD_API int vd_ep_fd(const struct vd_ep *ep)
{
	return vd_nic_fd(ep->nic);
}

VD_API int vd_ep_progress(struct vd_ep *ep)
{
	vd__ep_lock(ep);
	int n = vd__progress(ep);
	vd__ep_unlock(ep);
	return n;
}

VD_API int vd_ep_timeout_ms(struct vd_ep *ep)
{
	vd__ep_lock(ep);
	ep->now = vd_nic_now_ns(ep->nic);
	uint64_t d = vd__next_deadline(ep);
	uint64_t now = ep->now;
	vd__ep_unlock(ep);
	if (d == UINT64_MAX)
		return -1;
	if (d <= now)
		return 0;
	uint64_t ms = (d - now + 999999) / 1000000;
	return ms > 3600000 ? 3600000 : (int)ms;
}

VD_API void vd_ep_stats(const struct vd_ep *ep, struct vd_ep_stats *out)
{
	*out = ep->stats;
}

/* --- peers ---------------------------------------------------------------------------------------- */

VD_API int vd_peer_from_addr(struct vd_ep *ep, const struct vd_addr *a, struct vd_peer **out)
{
	if (!ep || !a || !out)
		return -EINVAL;
	vd__ep_lock(ep);
	ep->now = vd_nic_now_ns(ep->nic);
	vd__gate_off(ep);
	struct vd_peer *p = vd__peer_find(ep, a);
	/* A gone peer stays gone; a new handle starts a new association (the old incarnation's late frames
	 * are recognised by its session and dropped). */
	if (!p || p->gone)
		p = vd__peer_new(ep, a, p ? p->remote_session : 0);
	vd__ep_unlock(ep);
	if (!p)
		return -ENOMEM;
	*out = p;
	return 0;
}

VD_API int vd_peer_resolve(struct vd_ep *ep, const char *text, struct vd_peer **out)
{
	struct vd_addr a;
	if (!text)
		return -EINVAL;
	int rc = vd_addr_parse(text, &a);
	if (rc < 0)
		return rc;
	if (a.ip == 0 || a.port == 0)
		return -EINVAL;
	return vd_peer_from_addr(ep, &a, out);
}

VD_API int vd_peer_addr(const struct vd_peer *p, struct vd_addr *out)
{
	if (!p || !out)
		return -EINVAL;
	*out = p->addr;
	return 0;
}

VD_API int vd_peer_state(const struct vd_peer *p)
{
	return p->gone;
}

VD_API int vd_ep_peer_gone(struct vd_ep *ep, struct vd_peer **peer, int *error)
{
	vd__ep_lock(ep);
	if (vd__list_empty(&ep->gone_q)) {
		vd__ep_unlock(ep);
		return 0;
	}
	struct vd_peer *p = vd__list_first(&ep->gone_q, struct vd_peer, gone_link);
	vd__list_del(&p->gone_link);
	vd__ep_unlock(ep);
	if (peer)
		*peer = p;
	if (error)
		*error = p->gone;
	return 1;
}

/* --- sending and receiving ------------------------------------------------------------------------ */

static int send_common(struct vd_ep *ep, const struct iovec *iov, int iovcnt, struct vd_peer *p, uint64_t match,
		       void *ctx, int sync, struct vd_req **out)
{
	if (!ep || !p || !out || p->ep != ep || iovcnt < 0 || iovcnt > VD_IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	vd__ep_lock(ep);
	if (p->gone) {
		int err = p->gone;
		vd__ep_unlock(ep);
		return err;
	}
	struct vd_req *r = vd__req_new(ep, 1, iov, iovcnt, ctx);
	if (!r) {
		vd__ep_unlock(ep);
		return -ENOMEM;
	}
	if (r->len > VD__W_RNDV_LIMIT) {
		vd__req_free(r);
		vd__ep_unlock(ep);
		return -EMSGSIZE;
	}
	r->match = match;
	r->sync = (uint8_t)sync;
	r->rndv = r->len > ep->eager_max;
	r->send_id = ++ep->next_send_id ? ep->next_send_id : ++ep->next_send_id;
	r->st.peer = p;
	r->st.match = match;
	r->st.msg_len = r->len;
	ep->now = vd_nic_now_ns(ep->nic);
	vd__gate_off(ep);
	vd__send_enqueue(p, r);
	vd__peer_emit(p, 0);
	if (ep->tx_pending) {
		vd_nic_flush(ep->nic);
		ep->tx_pending = 0;
	}
	*out = r;
	vd__ep_unlock(ep);
	return 0;
}

VD_API int vd_isendv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, struct vd_peer *peer, uint64_t match,
		     void *context, struct vd_req **req)
{
	return send_common(ep, iov, iovcnt, peer, match, context, 0, req);
}

VD_API int vd_issendv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, struct vd_peer *peer,
		      uint64_t match, void *context, struct vd_req **req)
{
	return send_common(ep, iov, iovcnt, peer, match, context, 1, req);
}

VD_API int vd_isend(struct vd_ep *ep, const void *buf, size_t len, struct vd_peer *peer, uint64_t match,
		    void *context, struct vd_req **req)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	if (len && !buf)
		return -EINVAL;
	return send_common(ep, &v, 1, peer, match, context, 0, req);
}

VD_API int vd_issend(struct vd_ep *ep, const void *buf, size_t len, struct vd_peer *peer, uint64_t match,
		     void *context, struct vd_req **req)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	if (len && !buf)
		return -EINVAL;
	return send_common(ep, &v, 1, peer, match, context, 1, req);
}

VD_API int vd_irecvv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, uint64_t match, uint64_t mask,
		     void *context, struct vd_req **req)
{
	if (!ep || !req || iovcnt < 0 || iovcnt > VD_IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	vd__ep_lock(ep);
	struct vd_req *r = vd__req_new(ep, 0, iov, iovcnt, context);
	if (!r) {
		vd__ep_unlock(ep);
		return -ENOMEM;
	}
	r->match = match;
	r->mask = mask;
	/* No clock read here (it is on the ping-pong path): matching needs no time, and a rendezvous pull
	 * this starts reads the clock itself (vd__pull_start). */
	vd__gate_off(ep);
	vd__recv_post(ep, r);
	*req = r;
	vd__ep_unlock(ep);
	return 0;
}

VD_API int vd_irecv(struct vd_ep *ep, void *buf, size_t len, uint64_t match, uint64_t mask, void *context,
		    struct vd_req **req)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	if (len && !buf)
		return -EINVAL;
	return vd_irecvv(ep, &v, 1, match, mask, context, req);
}

VD_API void *vd_req_context(const struct vd_req *req)
{
	return req->st.context;
}

/* --- completion ----------------------------------------------------------------------------------- */

static void take(struct vd_req *r, struct vd_status *st)
{
	vd__list_del(&r->link);
	if (st)
		*st = r->st;
	vd__req_free(r);
}

/* Blocks until ready(ep, arg) or timeout_ms (-1: forever). Spins while a timer is less than a millisecond
 * away or work is flowing (sleeping costs more than the wait), otherwise sleeps in the nic. The lock is
 * held by the caller and released around the sleep. */
static int wait_loop(struct vd_ep *ep, int timeout_ms, int (*ready)(struct vd_ep *, void *), void *arg)
{
	uint64_t start = vd_nic_now_ns(ep->nic);
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		int work = vd__progress(ep);
		if (ready(ep, arg))
			return 1;
		if (work) {
			if (ep->now >= end)
				return 0;
			continue;
		}
		/* An idle pass may have stopped at the gate without reading the clock. */
		uint64_t now = ep->now = vd_nic_now_ns(ep->nic);
		if (now >= end)
			return 0;
		uint64_t d = vd__next_deadline(ep);
		if (d > end)
			d = end;
		uint64_t ms = d > now ? (d - now) / 1000000 : 0;
		if (ms == 0 && strcmp(vd_nic_backend_name(ep->nic), "sim"))
			continue;
		if (ms == 0)
			ms = 1; /* sim: the clock only moves when we wait */
		vd__ep_unlock(ep);
		vd_nic_wait(ep->nic, ms > 1000 ? 1000 : (int)ms);
		vd__ep_lock(ep);
	}
}

static int req_done(struct vd_ep *ep, void *arg)
{
	(void)ep;
	return ((struct vd_req *)arg)->state == VD__REQ_DONE;
}

static int any_done(struct vd_ep *ep, void *arg)
{
	(void)arg;
	return !vd__list_empty(&ep->done);
}

VD_API int vd_test(struct vd_ep *ep, struct vd_req **req, struct vd_status *status)
{
	if (!ep || !req || !*req)
		return -EINVAL;
	vd__ep_lock(ep);
	struct vd_req *r = *req;
	if (r->state != VD__REQ_DONE)
		vd__progress(ep);
	int done = r->state == VD__REQ_DONE;
	if (done) {
		take(r, status);
		*req = NULL;
	}
	vd__ep_unlock(ep);
	return done;
}

VD_API int vd_wait(struct vd_ep *ep, struct vd_req **req, struct vd_status *status, int timeout_ms)
{
	if (!ep || !req || !*req)
		return -EINVAL;
	vd__ep_lock(ep);
	struct vd_req *r = *req;
	int done = r->state == VD__REQ_DONE || wait_loop(ep, timeout_ms, req_done, r);
	if (done) {
		take(r, status);
		*req = NULL;
	}
	vd__ep_unlock(ep);
	return done;
}

VD_API int vd_test_any(struct vd_ep *ep, struct vd_req **req, struct vd_status *status)
{
	if (!ep || !req)
		return -EINVAL;
	vd__ep_lock(ep);
	if (vd__list_empty(&ep->done))
		vd__progress(ep);
	int done = !vd__list_empty(&ep->done);
	if (done) {
		struct vd_req *r = vd__list_first(&ep->done, struct vd_req, link);
		*req = r;
		take(r, status);
	}
	vd__ep_unlock(ep);
	return done;
}

VD_API int vd_wait_any(struct vd_ep *ep, struct vd_req **req, struct vd_status *status, int timeout_ms)
{
	if (!ep || !req)
		return -EINVAL;
	vd__ep_lock(ep);
	int done = !vd__list_empty(&ep->done) || wait_loop(ep, timeout_ms, any_done, NULL);
	if (done) {
		struct vd_req *r = vd__list_first(&ep->done, struct vd_req, link);
		*req = r;
		take(r, status);
	}
	vd__ep_unlock(ep);
	return done;
}

struct probe_arg {
	uint64_t match, mask;
	struct vd_status *st;
};

static int probe_ready(struct vd_ep *ep, void *arg)
{
	struct probe_arg *a = arg;
	return vd__probe(ep, a->match, a->mask, a->st);
}

VD_API int vd_iprobe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *status)
{
	if (!ep)
		return -EINVAL;
	vd__ep_lock(ep);
	int found = vd__probe(ep, match, mask, status);
	if (!found) {
		vd__progress(ep);
		found = vd__probe(ep, match, mask, status);
	}
	vd__ep_unlock(ep);
	return found;
}

VD_API int vd_probe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *status, int timeout_ms)
{
	if (!ep)
		return -EINVAL;
	struct probe_arg a = { match, mask, status };
	vd__ep_lock(ep);
	int found = vd__probe(ep, match, mask, status) || wait_loop(ep, timeout_ms, probe_ready, &a);
	vd__ep_unlock(ep);
	return found;
}

VD_API int vd_cancel(struct vd_ep *ep, struct vd_req *r)
{
	int rc = -EBUSY;

	if (!ep || !r || r->ep != ep)
		return -EINVAL;
	vd__ep_lock(ep);
	vd__gate_off(ep);
	if (r->is_send) {
		rc = vd__send_cancel(r);
	} else if (r->state == VD__REQ_QUEUED) {
		vd__list_del(&r->link);
		vd__req_complete(r, -ECANCELED);
		rc = 0;
	}
	vd__ep_unlock(ep);
	return rc;
}
