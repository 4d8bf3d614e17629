/* SPDX-License-Identifier: MIT */
/* Requests: allocation, completion, and copying between flat bytes and a request's iovec. */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct vd_req *vd__req_new(struct vd_ep *ep, int is_send, const struct iovec *iov, int iovcnt, void *ctx)
{
	/* malloc + memset rather than calloc: glibc's calloc bypasses the per-thread cache (tcache), so a
	 * request per message cost a trip through the arena, and its free another (a tenth of the engine's
	 * time in an in-process ping-pong). */
	struct vd_req *r = malloc(sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	vd__list_init(&r->link);
	vd__list_add_tail(&ep->reqs, &r->all);
	r->ep = ep;
	r->is_send = (uint8_t)is_send;
	r->st.is_send = is_send;
	r->st.context = ctx;
	if (iovcnt == 1) {
		r->iov_one = iov[0];
		r->iov = &r->iov_one;
	} else if (iovcnt > 1) {
		r->iov = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!r->iov) {
			vd__list_del(&r->all);
			free(r);
			return NULL;
		}
		memcpy(r->iov, iov, sizeof(*iov) * (size_t)iovcnt);
	} else {
		r->iov = &r->iov_one; /* zero-length message: an empty iovec */
	}
	r->iovcnt = iovcnt;
	for (int i = 0; i < iovcnt; i++)
		r->len += iov[i].iov_len;
	return r;
}

void vd__req_free(struct vd_req *r)
{
	vd__list_del(&r->all);
	if (r->iov != &r->iov_one)
		free(r->iov);
	free(r);
}

void vd__req_complete(struct vd_req *r, int error)
{
	if (error || !r->st.error)
		r->st.error = error;
	if (r->is_send && !error)
		r->st.xfer_len = r->len;
	r->state = VD__REQ_DONE;
	vd__list_add_tail(&r->ep->done, &r->link);
}

/* Both copies walk the iovec to the element holding off first; messages use few elements (<= VD_IOV_MAX),
 * so the walk costs less than keeping a cursor in every request. */
void vd__iov_copy_to(const struct iovec *iov, int cnt, uint64_t off, const void *src, uint64_t len)
{
	const uint8_t *s = src;
	int i = 0;

	while (i < cnt && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	for (; i < cnt && len; i++, off = 0) {
		uint64_t n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		memcpy((uint8_t *)iov[i].iov_base + off, s, n);
		s += n;
		len -= n;
	}
}

void vd__iov_copy_from(void *dst, const struct iovec *iov, int cnt, uint64_t off, uint64_t len)
{
	uint8_t *d = dst;
	int i = 0;

	while (i < cnt && off >= iov[i].iov_len) {
		off -= iov[i].iov_len;
		i++;
	}
	for (; i < cnt && len; i++, off = 0) {
		uint64_t n = iov[i].iov_len - off;
		if (n > len)
			n = len;
		memcpy(d, (const uint8_t *)iov[i].iov_base + off, n);
		d += n;
		len -= n;
	}
}
