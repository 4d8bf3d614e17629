/* SPDX-License-Identifier: MIT */
/*
 * Byte rings for the send and receive buffers. Offsets are relative to the ring's first byte (head); a
 * caller may write beyond len (the receive side places out-of-order data there) as long as off + n <= cap.
 * A send ring may instead live in memory lent by the nic (r->zc, tcp_zc.c): the same calls, other layout.
 */
#include "tcp_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int vd__ring_init(struct tcp_ring *r, struct vd__shmheap *heap, uint32_t cap)
{
	r->heap = heap;
	r->zc = NULL;
	r->buf = vd__shm_alloc(heap, cap ? cap : 1);
	if (!r->buf)
		return -ENOMEM;
	r->cap = cap;
	r->head = 0;
	r->len = 0;
	return 0;
}

void vd__ring_free(struct tcp_ring *r)
{
	if (r->zc) {
		vd__ring_zc_free(r);
		return;
	}
	vd__shm_free(r->heap, r->buf);
	r->buf = NULL;
	r->cap = r->head = r->len = 0;
}

/* Grows or shrinks keeping the held bytes (and whatever lies beyond them up to the old capacity that still
 * fits, i.e. out-of-order data: the caller shrinks only when there is none). */
int vd__ring_resize(struct tcp_ring *r, uint32_t cap)
{
	if (cap < r->len)
		return -EINVAL;
	if (r->zc)
		return 0; /* a ring in lent nic memory keeps what it was lent (SO_SNDBUF still bounds its use) */
	uint8_t *nb = vd__shm_alloc(r->heap, cap ? cap : 1);
	if (!nb)
		return -ENOMEM;
	uint32_t keep = r->cap < cap ? r->cap : cap;
	vd__ring_read(r, 0, nb, keep);
	vd__shm_free(r->heap, r->buf);
	r->buf = nb;
	r->cap = cap;
	r->head = 0;
	return 0;
}

void vd__ring_write(struct tcp_ring *r, uint32_t off, const void *src, uint32_t n)
{
	if (r->zc) {
		vd__ring_zc_write(r, off, src, n);
		return;
	}
	uint32_t pos = r->head + off;
	if (pos >= r->cap)
		pos -= r->cap;
	uint32_t first = r->cap - pos;
	if (first > n)
		first = n;
	memcpy(r->buf + pos, src, first);
	if (n > first)
		memcpy(r->buf, (const uint8_t *)src + first, n - first);
}

void vd__ring_read(const struct tcp_ring *r, uint32_t off, void *dst, uint32_t n)
{
	if (!n)
		return;
	if (r->zc) {
		vd__ring_zc_read(r, off, dst, n);
		return;
	}
	uint32_t pos = r->head + off;
	if (pos >= r->cap)
		pos -= r->cap;
	uint32_t first = r->cap - pos;
	if (first > n)
		first = n;
	memcpy(dst, r->buf + pos, first);
	if (n > first)
		memcpy((uint8_t *)dst + first, r->buf, n - first);
}

void vd__ring_consume(struct tcp_ring *r, uint32_t n)
{
	r->head += n;
	if (r->head >= r->cap)
		r->head -= r->cap;
	r->len -= n;
}

/* Appends up to max bytes gathered from iov; returns bytes taken (in lent nic memory: what may be written
 * now, tcp_zc.c). */
uint32_t vd__ring_from_iov(struct tcp_ring *r, const struct iovec *iov, int iovcnt, uint32_t max)
{
	uint32_t done = 0;
	if (r->zc)
		max = vd__ring_zc_room(r, max);
	for (int i = 0; i < iovcnt && done < max; i++) {
		uint32_t n = iov[i].iov_len > max - done ? max - done : (uint32_t)iov[i].iov_len;
		if (!n)
			continue;
		vd__ring_write(r, r->len, iov[i].iov_base, n);
		r->len += n;
		done += n;
	}
	return done;
}

/* Copies up to max bytes from the ring's start into iov (does not consume); returns bytes copied. */
uint32_t vd__ring_to_iov(const struct tcp_ring *r, const struct iovec *iov, int iovcnt, uint32_t max)
{
	uint32_t done = 0;
	if (max > r->len)
		max = r->len;
	for (int i = 0; i < iovcnt && done < max; i++) {
		uint32_t n = iov[i].iov_len > max - done ? max - done : (uint32_t)iov[i].iov_len;
		if (!n)
			continue;
		vd__ring_read(r, done, iov[i].iov_base, n);
		done += n;
	}
	return done;
}
