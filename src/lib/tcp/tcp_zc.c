/* SPDX-License-Identifier: MIT */
/*
 * Send rings in memory lent by the nic (issue 4: large sends without an extra copy).
 *
 * A heap send ring costs two user-space copies per byte: the user's write into the ring, then the ring
 * into a TX buffer when a segment goes out. A ring in TX memory the nic lends (vd_nic_tx_lend) needs only
 * the first: a segment is its headers in an ordinary TX buffer followed by pieces of the ring itself
 * (vd_nic_tx_attach), and the TCP checksum is the device's (VD_NIC_TX_L4_CSUM), so nothing reads the
 * data again in user space. Retransmissions point at the same bytes, which stay in the ring until acked.
 *
 * Layout: ring byte b lives in chunk q = b / per at offset gap + b % per (per = stride - gap: AF_XDP wants
 * room for TX metadata before every descriptor inside its chunk), chunk q being chunk q % cpl of lent
 * region q / cpl. A segment spans at most about len / per + 1 chunks: one piece each.
 *
 * The rule that keeps the device's reads intact (AF_XDP: a buffer belongs to the kernel from submission
 * until its address comes back on the completion ring, completions in any order): ring bytes are written
 * only where no queued piece covers them. The bytes past the ring's end are old data, acked but possibly
 * still named by queued pieces (completions lag, retransmissions duplicate). The writer checks a chunk
 * when it ENTERS it - writes at its first ring byte, or starts an empty ring inside it: a busy chunk
 * (vd_nic_tx_busy > 0, completions taken first) then ends the write as a full ring does (short write or
 * EAGAIN). And the writer never enters the chunk the ring's first byte is in from behind (it stops at
 * that chunk's start: under one chunk of the ring unused), so an entered chunk holds no bytes of the
 * previous pass still to be sent. Once entered with no piece outstanding, every piece queued later
 * names only bytes written since, which the writer never rewrites before they are acked and the ring
 * comes round to the chunk again - when it is checked again. So appending to a chunk whose earlier
 * bytes are in flight needs no check: the common case of a stream stays free of waits.
 *
 * Readiness: a socket whose writer would stop at a busy chunk is not writable (POLLOUT off:
 * vd__ring_zc_writable), and its ring joins the layer's waiting list; a completion wakes nobody by
 * itself (it arrives on no fd), so while the list is not empty vd__tcp_poll asks to run again within
 * TCP_ZC_POLL_NS, looks at the busy chunks again (which takes the completions) and wakes the writers
 * whose chunk completed (vd__tcp_notify). A blocking writer waits for that as for an ACK.
 *
 * When: only for a write of at least TCP_ZC_MIN_WRITE bytes on an empty ring of a nic that lends
 * (tcp_sock.c), so connection loops and small request/response traffic never pay for lending; the ring
 * stays in lent memory until the connection's rings are freed, or until it is empty after SO_SNDBUF
 * changed (vd__ring_zc_resize), and the regions go back to the nic then (vd_nic_tx_unlend: the nic
 * reuses a region only once no queued piece names it).
 */
#include "tcp_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define ZC_MAX_REGIONS 256u
#define ZC_MIN_CAP (64u * 1024u)   /* less than this in lent memory is not worth it: keep the heap ring */

static inline uint32_t zc_chunks(const struct tcp_zc *z)
{
	return z->n * z->cpl;
}

/* Where ring byte b (0 <= b < cap) lives; *room: ring bytes from there to its chunk's end. */
static inline uint8_t *zc_at(const struct tcp_zc *z, uint32_t b, uint32_t *room)
{
	uint32_t q = b / z->per, in = b % z->per;
	const struct vd_nic_lent *l = &z->lent[q / z->cpl];
	*room = z->per - in;
	return l->data + (size_t)(q % z->cpl) * l->stride + l->gap + in;
}

static inline int zc_busy(const struct tcp_zc *z, uint32_t q)
{
	return vd_nic_tx_busy(z->nic, &z->lent[q / z->cpl], q % z->cpl) != 0;
}

/* The writer of z found the next chunk busy: vd__tcp_poll looks again every TCP_ZC_POLL_NS and wakes it
 * (vd__tcp_zc_poll), since a completion arrives on no fd anybody sleeps on. */
static void zc_wait(struct tcp_zc *z)
{
	if (z->waiting)
		return;
	z->waiting = 1;
	z->wprev = NULL;
	z->wnext = z->t->zc_wait;
	if (z->wnext)
		z->wnext->wprev = z;
	z->t->zc_wait = z;
}

static void zc_unwait(struct tcp_zc *z)
{
	if (!z->waiting)
		return;
	z->waiting = 0;
	if (z->wprev)
		z->wprev->wnext = z->wnext;
	else
		z->t->zc_wait = z->wnext;
	if (z->wnext)
		z->wnext->wprev = z->wprev;
	z->wnext = z->wprev = NULL;
}

static void zc_give_back(struct tcp_zc *z)
{
	for (uint32_t i = 0; i < z->n; i++)
		vd_nic_tx_unlend(z->nic, &z->lent[i]);
	z->n = 0;
}

/*
 * Moves the empty ring r into memory lent by nic, about want bytes (less if the nic lends less). 0, or
 * -EOPNOTSUPP (the nic never lends), -ENOBUFS / -ENOMEM (not now), -EBUSY (the ring holds data).
 */
int vd__ring_zc_take(struct tcp_ring *r, struct vd__tcb *c, uint32_t want)
{
	struct vd__tcp *t = c->t;
	struct vd_nic *nic = t->nic;
	if (r->len || r->zc)
		return -EBUSY;
	struct vd_nic_lent first;
	int err = vd_nic_tx_lend(nic, &first);
	if (err < 0)
		return err;
	uint32_t per = first.stride - first.gap, reg = first.chunks * per;
	if (first.gap >= first.stride || !first.chunks || reg > UINT32_MAX / ZC_MAX_REGIONS) {
		vd_nic_tx_unlend(nic, &first);
		return -EOPNOTSUPP;
	}
	uint32_t nmax = (want + reg - 1) / reg;
	if (nmax < 1)
		nmax = 1;
	if (nmax > ZC_MAX_REGIONS)
		nmax = ZC_MAX_REGIONS;
	struct tcp_zc *z = vd__shm_alloc(r->heap, sizeof(*z) + nmax * sizeof(z->lent[0]));
	if (!z) {
		vd_nic_tx_unlend(nic, &first);
		return -ENOMEM;
	}
	z->t = t;
	z->c = c;
	z->nic = nic;
	z->want = want;
	z->waiting = 0;
	z->wnext = z->wprev = NULL;
	z->per = per;
	z->cpl = first.chunks;
	z->lent[0] = first;
	z->n = 1;
	while (z->n < nmax) {
		struct vd_nic_lent l;
		if (vd_nic_tx_lend(nic, &l) < 0)
			break;
		if (l.chunks != first.chunks || l.stride != first.stride || l.gap != first.gap) {
			vd_nic_tx_unlend(nic, &l); /* one geometry per ring */
			break;
		}
		z->lent[z->n++] = l;
	}
	if (z->n * reg < ZC_MIN_CAP && z->n * reg < want) {
		zc_give_back(z);
		vd__shm_free(r->heap, z);
		return -ENOBUFS;
	}
	vd__shm_free(r->heap, r->buf);
	r->buf = first.data; /* non-NULL: the ring exists (callers test buf) */
	r->zc = z;
	r->cap = z->n * reg;
	r->head = 0;
	return 0;
}

void vd__ring_zc_free(struct tcp_ring *r)
{
	/*
	 * Segments of this pass may still wait in the layer's TX queue, naming the ring: they go to the nic
	 * first, so that it counts their pieces and keeps the memory until they complete (given back
	 * before, the memory could be lent again while they still name it).
	 */
	if (r->zc->t->tx.nready)
		vd__tcp_tx_flush(r->zc->t);
	zc_unwait(r->zc);
	zc_give_back(r->zc);
	vd__shm_free(r->heap, r->zc);
	r->zc = NULL;
	r->buf = NULL;
	r->cap = r->head = r->len = 0;
}

/*
 * Bytes (at most max) that may be appended now: up to the first chunk that would be entered while
 * still busy (see the top of the file). An empty ring first moves its head to the start of the first
 * chunk, from its own on, that is not busy: segments then start chunk-aligned (fewest pieces) and a
 * lagging completion does not stop the writer. This computes without moving anything: *head is where
 * the head goes, *stalled says a busy chunk (not a full ring) left nothing.
 */
static uint32_t zc_room(const struct tcp_ring *r, uint32_t max, uint32_t *head, bool *stalled)
{
	const struct tcp_zc *z = r->zc;
	uint32_t free = r->cap - r->len, room = 0;
	*head = r->head;
	*stalled = false;
	/* never into the head's chunk from behind (see the top of the file) */
	if (r->len)
		free = free > r->head % z->per ? free - r->head % z->per : 0;
	if (max > free)
		max = free;
	if (!max)
		return 0;
	if (!r->len) {
		uint32_t nq = zc_chunks(z), q0 = r->head / z->per, i;
		for (i = 0; i < nq; i++)
			if (!zc_busy(z, (q0 + i) % nq))
				break;
		if (i == nq) {
			*stalled = true;
			return 0;
		}
		*head = ((q0 + i) % nq) * z->per;
		room = z->per < max ? z->per : max; /* the chunk just checked */
	}
	while (room < max) {
		uint32_t b = *head + r->len + room;
		if (b >= r->cap)
			b -= r->cap;
		uint32_t in = b % z->per;
		if (!in && zc_busy(z, b / z->per)) {
			*stalled = room == 0;
			break;
		}
		uint32_t take = z->per - in;
		room += take < max - room ? take : max - room;
	}
	return room;
}

uint32_t vd__ring_zc_room(struct tcp_ring *r, uint32_t max)
{
	uint32_t head;
	bool stalled;
	uint32_t room = zc_room(r, max, &head, &stalled);
	r->head = head; /* moves only on an empty ring */
	if (stalled)
		zc_wait(r->zc);
	else if (room)
		zc_unwait(r->zc);
	return room;
}

/*
 * Would a write make progress now (for POLLOUT: tcp_sock.c)? The busy counts it reads take the nic's
 * completions first, so a poll loop reaps them; when a busy chunk is all that stops the writer, the ring
 * joins the waiting list, whose poll wakes the socket once the chunk completes. An empty ring lent for
 * another size than sndbuf is writable: the write moves it into a heap ring first (vd__ring_zc_resize).
 */
int vd__ring_zc_writable(const struct tcp_ring *r, uint32_t sndbuf)
{
	uint32_t head;
	bool stalled = false;
	if ((!r->len && r->zc->want != sndbuf) || zc_room(r, 1, &head, &stalled)) {
		zc_unwait(r->zc);
		return 1;
	}
	if (stalled)
		zc_wait(r->zc); /* the ring's zc state, not the ring, changes: r stays const for its callers */
	return 0;
}

/*
 * The layer's poll (tcp.c vd__tcp_poll): wakes (vd__tcp_notify) the writers whose busy chunk completed,
 * and says when to look again for the others: now + TCP_ZC_POLL_NS, UINT64_MAX when nobody waits.
 * Completions come in any order and on no fd, so this is what ends a blocked writer's wait; the cost is
 * one look at the nic's completion ring per waiting socket per TCP_ZC_POLL_NS, only while one waits.
 */
uint64_t vd__tcp_zc_poll(struct vd__tcp *t, uint64_t now)
{
	for (struct tcp_zc *z = t->zc_wait, *nx; z; z = nx) {
		nx = z->wnext;
		if (vd__ring_zc_writable(&z->c->snd, z->c->sndbuf)) {
			zc_unwait(z);
			vd__tcp_notify(z->c);
		}
	}
	return t->zc_wait ? now + TCP_ZC_POLL_NS : UINT64_MAX;
}

/*
 * SO_SNDBUF changed after the ring moved into lent memory (its size was lent for the old value): Linux
 * applies a new size to what is queued from then on, so once the ring is empty it goes back to the nic
 * and a heap ring of the new size takes its place; the next large write lends again at that size. A
 * ring holding data keeps its place until it is empty (called again then: tcp_sock.c). 1 when moved, 0
 * when nothing was to do or not yet, -ENOMEM (the lent ring stays; tried again at the next call).
 */
int vd__ring_zc_resize(struct tcp_ring *r, uint32_t want)
{
	if (!r->zc || r->len || r->zc->want == want)
		return 0;
	uint8_t *nb = vd__shm_alloc(r->heap, want ? want : 1);
	if (!nb)
		return -ENOMEM;
	vd__ring_zc_free(r);
	r->buf = nb;
	r->cap = want;
	r->head = r->len = 0;
	return 1;
}

/* Copies n bytes between buf and ring bytes [off, off + n), chunk by chunk: into the ring when to_ring. */
static void zc_copy(const struct tcp_ring *r, uint32_t off, uint8_t *buf, uint32_t n, bool to_ring)
{
	uint32_t b = r->head + off;
	if (b >= r->cap)
		b -= r->cap;
	while (n) {
		uint32_t room;
		uint8_t *at = zc_at(r->zc, b, &room);
		uint32_t take = room < n ? room : n;
		if (to_ring)
			memcpy(at, buf, take);
		else
			memcpy(buf, at, take);
		buf += take;
		n -= take;
		b += take;
		if (b == r->cap)
			b = 0;
	}
}

void vd__ring_zc_write(struct tcp_ring *r, uint32_t off, const void *src, uint32_t n)
{
	zc_copy(r, off, (uint8_t *)(uintptr_t)src, n, true); /* only read from: to_ring */
}

void vd__ring_zc_read(const struct tcp_ring *r, uint32_t off, void *dst, uint32_t n)
{
	zc_copy(r, off, dst, n, false);
}

/* The pieces of lent memory holding ring bytes [off, off + n); their count, -ENOSPC past max. */
int vd__ring_zc_pieces(const struct tcp_ring *r, uint32_t off, uint32_t n, struct iovec *iov, unsigned max)
{
	unsigned k = 0;
	uint32_t b = r->head + off;
	if (b >= r->cap)
		b -= r->cap;
	while (n) {
		if (k == max)
			return -ENOSPC;
		uint32_t room;
		uint8_t *at = zc_at(r->zc, b, &room);
		uint32_t take = room < n ? room : n;
		iov[k].iov_base = at;
		iov[k].iov_len = take;
		k++;
		n -= take;
		b += take;
		if (b == r->cap)
			b = 0;
	}
	return (int)k;
}

/* The longest prefix (at most n bytes) of ring bytes from off that max pieces hold. */
uint32_t vd__ring_zc_fit(const struct tcp_ring *r, uint32_t off, uint32_t n, unsigned max)
{
	uint32_t b = r->head + off, got = 0;
	if (b >= r->cap)
		b -= r->cap;
	for (unsigned k = 0; k < max && got < n; k++) {
		uint32_t take = r->zc->per - b % r->zc->per;
		got += take;
		b += take;
		if (b >= r->cap)
			b -= r->cap;
	}
	return got < n ? got : n;
}
