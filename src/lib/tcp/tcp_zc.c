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
 * When: only for a write of at least TCP_ZC_MIN_WRITE bytes on an empty ring of a nic that lends
 * (tcp_sock.c), so connection loops and small request/response traffic never pay for lending; the ring
 * stays in lent memory until the connection's rings are freed, and the regions go back to the nic then
 * (vd_nic_tx_unlend: the nic reuses a region only once no queued piece names it).
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
int vd__ring_zc_take(struct tcp_ring *r, struct vd__tcp *t, uint32_t want)
{
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
	z->nic = nic;
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
 * lagging completion does not stop the writer.
 */
uint32_t vd__ring_zc_room(struct tcp_ring *r, uint32_t max)
{
	const struct tcp_zc *z = r->zc;
	uint32_t free = r->cap - r->len, room = 0;
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
		if (i == nq)
			return 0;
		r->head = ((q0 + i) % nq) * z->per;
		room = z->per < max ? z->per : max; /* the chunk just checked */
	}
	while (room < max) {
		uint32_t b = r->head + r->len + room;
		if (b >= r->cap)
			b -= r->cap;
		uint32_t in = b % z->per;
		if (!in && zc_busy(z, b / z->per))
			break;
		uint32_t take = z->per - in;
		room += take < max - room ? take : max - room;
	}
	return room;
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
