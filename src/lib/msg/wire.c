/* SPDX-License-Identifier: MIT */
/*
 * Encoding and checking of messaging frames (layout in wire.h and docs/msg-protocol.md).
 *
 * The checksum: the UDP checksum does not protect us everywhere. On a veth link the kernel leaves
 * CHECKSUM_PARTIAL frames with only the pseudo-header sum in the UDP checksum field and the xdp backend has
 * to accept that (core/frame.h), so a frame corrupted on such a path would arrive "valid". Our own RFC 1071
 * sum over the whole payload catches every single-bit and single-byte error and costs one pass over data
 * that is being copied anyway.
 */
#include "lib/msg/wire.h"

#include <errno.h>
#include <string.h>

#include "lib/core/frame.h"

static inline uint16_t ld16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t ld32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t ld64(const uint8_t *p)
{
	return ((uint64_t)ld32(p) << 32) | ld32(p + 4);
}

static inline void st16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void st64(uint8_t *p, uint64_t v)
{
	st32(p, (uint32_t)(v >> 32));
	st32(p + 4, (uint32_t)v);
}

/* The one's-complement sum is byte-order independent (RFC 1071 section 2.B), so the folded value is stored
 * as the raw 16 bits it was computed in: a receiver summing the frame including the field gets 0xffff. */
void vd__wire_seal(uint8_t *frame, size_t len)
{
	frame[6] = frame[7] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(frame, len, 0));
	memcpy(frame + 6, &c, 2);
}

/*
 * Bulk frames (pull replies) are copied into the nic's buffer and summed in one pass: copy then sum took
 * 210-280 ns for a 3.4 KB frame here, one pass 100-150 ns, about 5% of the time per frame of the sender,
 * the bottleneck of a bulk transfer. Each 64-bit word counts as its two 32-bit halves, added into 64-bit
 * accumulators (the deferred carries of RFC 1071 section 2.C, as vd__csum_partial does); the tail goes to
 * vd__csum_partial.
 *
 * Where the CPU has AVX2 the bulk of the frame goes 64 bytes per step through 256-bit registers instead
 * (same sum: each 64-bit lane adds its two 32-bit halves). The sender of a bulk transfer over xdp on veth
 * is the bottleneck (its core also runs the kernel's copy-mode TX and the peer's XDP receive), and this
 * copy was 10% of that core at MTU 3506 (perf record, lab bw 1 MiB). A 3430-byte piece took 224 ns in
 * the scalar loop, 75 ns in the vector one (same source and buffers, in a loop); lab bw 1 MiB at MTU 3506
 * went from 0.76 to 0.86 x bare AF_XDP (interleaved, medians). Chosen per call from the cpu flags libgcc
 * reads at start-up.
 */
#if defined(__x86_64__)
#include <immintrin.h>

/* Copies n bytes (a multiple of 64) and returns the sum of their 32-bit words, unfolded: at most 2^10
 * steps of 64 bytes for a 64 KiB frame, each adding below 2^33 to a lane, so the 8 lane values add up to
 * below 2^46: nothing is lost. */
__attribute__((target("avx2"))) static uint64_t copy_sum64_avx2(uint8_t *d, const uint8_t *s, size_t n)
{
	const __m256i lo32 = _mm256_set1_epi64x(0xffffffffll);
	__m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();

	for (; n >= 64; n -= 64, s += 64, d += 64) {
		__m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)s);
		__m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
		_mm256_storeu_si256((__m256i *)(void *)d, v0);
		_mm256_storeu_si256((__m256i *)(void *)(d + 32), v1);
		a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_and_si256(v0, lo32), _mm256_srli_epi64(v0, 32)));
		a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_and_si256(v1, lo32), _mm256_srli_epi64(v1, 32)));
	}
	a0 = _mm256_add_epi64(a0, a1);
	uint64_t l[4];
	_mm256_storeu_si256((__m256i *)(void *)l, a0);
	return l[0] + l[1] + l[2] + l[3];
}

static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}
#else
static uint64_t copy_sum64_avx2(uint8_t *d, const uint8_t *s, size_t n)
{
	(void)d;
	(void)s;
	(void)n;
	return 0;
}

static int have_avx2(void)
{
	return 0;
}
#endif

uint32_t vd__wire_copy_sum(void *dst, const void *src, size_t len)
{
	const uint8_t *s = src;
	uint8_t *d = dst;
	uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;

	if (len >= 64 && have_avx2()) {
		size_t n = len & ~(size_t)63;
		a0 = copy_sum64_avx2(d, s, n);
		s += n;
		d += n;
		len -= n;
	}
	while (len >= 32) {
		uint64_t w[4];
		memcpy(w, s, sizeof(w));
		memcpy(d, w, sizeof(w));
		a0 += (uint32_t)w[0] + (w[0] >> 32);
		a1 += (uint32_t)w[1] + (w[1] >> 32);
		a2 += (uint32_t)w[2] + (w[2] >> 32);
		a3 += (uint32_t)w[3] + (w[3] >> 32);
		s += 32;
		d += 32;
		len -= 32;
	}
	/* A frame is at most 64 KiB: the vector part leaves a0 below 2^46, and 2^11 blocks add below 2^33
	 * each to an accumulator: their sum stays below 2^47, no carry is lost. */
	a0 += a1 + a2 + a3;
	a0 = (a0 & 0xffffffffu) + (a0 >> 32);
	a0 = (a0 & 0xffffffffu) + (a0 >> 32);
	memcpy(d, s, len);
	return vd__csum_partial(d, len, (uint32_t)a0);
}

void vd__wire_seal_body(uint8_t *frame, size_t hdr_len, uint32_t body_sum)
{
	frame[6] = frame[7] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(frame, hdr_len, body_sum));
	memcpy(frame + 6, &c, 2);
}

static int csum_ok(const uint8_t *frame, size_t len)
{
	return vd__csum_fold(vd__csum_partial(frame, len, 0)) == 0;
}

static int decode_hdr(const void *frame, size_t len, struct vd__whdr *h, const uint8_t **body, size_t *body_len,
		      int lazy)
{
	const uint8_t *p = frame;

	if (len < VD__W_HDR_LEN || len > 65535)
		return -EBADMSG;
	if (ld16(p) != VD__W_MAGIC || p[2] != VD__W_VERSION)
		return -EBADMSG;
	h->type = p[3];
	h->flags = p[4];
	if ((h->flags & ~VD__WF_ALL) || p[5] != 0 || ld16(p + 26) != 0)
		return -EBADMSG;
	h->src_session = ld32(p + 8);
	h->dst_session = ld32(p + 12);
	h->seq = ld32(p + 16);
	h->ack = ld32(p + 20);
	h->wnd = ld16(p + 24);
	h->sack = ld64(p + 28);
	if (h->src_session == 0)
		return -EBADMSG;
	/* Without the ack flag the ack fields carry nothing: they must be zero, so no value slips through
	 * unchecked. */
	if (!(h->flags & VD__WF_ACK) && (h->ack || h->wnd || h->sack))
		return -EBADMSG;

	size_t blen = len - VD__W_HDR_LEN;
	switch (h->type) {
	case VD__W_DATA:
		if (blen < VD__R_HDR)
			return -EBADMSG;
		break;
	case VD__W_ACK:
		if (blen != 0 || h->seq != 0)
			return -EBADMSG;
		break;
	case VD__W_RESET:
		if (blen != 0 || (h->flags & VD__WF_ACK))
			return -EBADMSG;
		break;
	case VD__W_PULL_REQ:
		if (blen != VD__W_PULL_REQ_LEN || h->seq != 0)
			return -EBADMSG;
		break;
	case VD__W_PULL_REPLY:
		if (blen <= VD__W_PULL_REPLY_HDR || h->seq != 0)
			return -EBADMSG;
		break;
	default:
		return -EBADMSG;
	}
	*body = p + VD__W_HDR_LEN;
	*body_len = blen;
	/* A pull reply's sum is left to its receive path, which sums the data as it copies it. */
	if (lazy && h->type == VD__W_PULL_REPLY)
		return 1;
	/* Checksum last: the cheap field checks reject most garbage without touching the body. */
	if (!csum_ok(p, len))
		return -EBADMSG;
	return 0;
}

int vd__wire_decode_hdr(const void *frame, size_t len, struct vd__whdr *h, const uint8_t **body,
			size_t *body_len)
{
	return decode_hdr(frame, len, h, body, body_len, 0);
}

int vd__wire_decode_hdr_lazy(const void *frame, size_t len, struct vd__whdr *h, const uint8_t **body,
			     size_t *body_len)
{
	return decode_hdr(frame, len, h, body, body_len, 1);
}

int vd__wire_sum_ok(const void *frame, size_t len)
{
	return csum_ok(frame, len);
}

int vd__wire_sum_body_ok(const void *frame, size_t hdr_len, uint32_t body_sum)
{
	return vd__csum_fold(vd__csum_partial(frame, hdr_len, body_sum)) == 0;
}

int vd__wire_next_rec(const uint8_t *body, size_t body_len, size_t *pos, struct vd__wrec *r)
{
	size_t at = *pos;

	if (at == body_len)
		return 0;
	if (at > body_len || body_len - at < VD__R_HDR)
		return -EBADMSG;
	const uint8_t *p = body + at;
	size_t left = body_len - at;
	memset(r, 0, sizeof(*r));
	r->type = p[0];
	r->flags = p[1];
	r->data_len = ld16(p + 2);

	size_t fixed;
	switch (r->type) {
	case VD__R_EAGER:
		fixed = VD__R_EAGER_LEN;
		if (r->flags & ~VD__RF_SYNC)
			return -EBADMSG;
		if (left < fixed)
			return -EBADMSG;
		r->send_id = ld32(p + 4);
		r->match = ld64(p + 8);
		r->msg_len = ld32(p + 16);
		r->offset = ld32(p + 20);
		if (r->msg_len > VD__W_EAGER_LIMIT || r->offset > r->msg_len ||
		    r->data_len > r->msg_len - r->offset)
			return -EBADMSG;
		/* A fragment carries data unless the whole message is empty. */
		if (r->data_len == 0 && r->msg_len != 0)
			return -EBADMSG;
		break;
	case VD__R_RNDV:
		fixed = VD__R_RNDV_LEN;
		if (r->flags || r->data_len || left < fixed)
			return -EBADMSG;
		r->send_id = ld32(p + 4);
		r->match = ld64(p + 8);
		r->msg_len = ld64(p + 16);
		r->max_payload = ld16(p + 24);
		if (ld16(p + 26) != 0 || r->msg_len > VD__W_RNDV_LIMIT || r->max_payload < VD__W_MIN_PAYLOAD)
			return -EBADMSG;
		break;
	case VD__R_DONE:
	case VD__R_MATCHED:
		fixed = VD__R_ID_LEN;
		if (r->flags || r->data_len || left < fixed)
			return -EBADMSG;
		r->send_id = ld32(p + 4);
		break;
	default:
		return -EBADMSG;
	}
	if (left - fixed < r->data_len)
		return -EBADMSG;
	r->data = p + fixed;
	*pos = at + fixed + r->data_len;
	return 1;
}

int vd__wire_decode_pull_req(const uint8_t *body, size_t body_len, struct vd__wpull_req *q)
{
	if (body_len != VD__W_PULL_REQ_LEN)
		return -EBADMSG;
	q->send_id = ld32(body);
	q->pull_id = ld32(body + 4);
	q->first = ld32(body + 8);
	q->chunk = ld16(body + 12);
	q->want = ld64(body + 16);
	if (ld16(body + 14) != 0 || q->chunk == 0 || q->want == 0)
		return -EBADMSG;
	return 0;
}

int vd__wire_decode_pull_reply(const uint8_t *body, size_t body_len, struct vd__wpull_reply *q)
{
	if (body_len <= VD__W_PULL_REPLY_HDR)
		return -EBADMSG;
	q->pull_id = ld32(body);
	q->frame = ld32(body + 4);
	q->data = body + VD__W_PULL_REPLY_HDR;
	q->data_len = (uint32_t)(body_len - VD__W_PULL_REPLY_HDR);
	return 0;
}

size_t vd__wire_put_hdr(uint8_t *b, const struct vd__whdr *h)
{
	st16(b, VD__W_MAGIC);
	b[2] = VD__W_VERSION;
	b[3] = h->type;
	b[4] = h->flags;
	b[5] = 0;
	b[6] = b[7] = 0;
	st32(b + 8, h->src_session);
	st32(b + 12, h->dst_session);
	st32(b + 16, h->seq);
	int ack = (h->flags & VD__WF_ACK) != 0;
	st32(b + 20, ack ? h->ack : 0);
	st16(b + 24, ack ? h->wnd : 0);
	st16(b + 26, 0);
	st64(b + 28, ack ? h->sack : 0);
	return VD__W_HDR_LEN;
}

size_t vd__wire_put_eager(uint8_t *b, uint8_t flags, uint32_t send_id, uint64_t match, uint32_t msg_len,
			  uint32_t offset, uint16_t data_len)
{
	b[0] = VD__R_EAGER;
	b[1] = flags;
	st16(b + 2, data_len);
	st32(b + 4, send_id);
	st64(b + 8, match);
	st32(b + 16, msg_len);
	st32(b + 20, offset);
	return VD__R_EAGER_LEN;
}

size_t vd__wire_put_rndv(uint8_t *b, uint32_t send_id, uint64_t match, uint64_t msg_len, uint16_t max_payload)
{
	b[0] = VD__R_RNDV;
	b[1] = 0;
	st16(b + 2, 0);
	st32(b + 4, send_id);
	st64(b + 8, match);
	st64(b + 16, msg_len);
	st16(b + 24, max_payload);
	st16(b + 26, 0);
	return VD__R_RNDV_LEN;
}

size_t vd__wire_put_id(uint8_t *b, uint8_t type, uint32_t send_id)
{
	b[0] = type;
	b[1] = 0;
	st16(b + 2, 0);
	st32(b + 4, send_id);
	return VD__R_ID_LEN;
}

size_t vd__wire_put_pull_req(uint8_t *b, const struct vd__wpull_req *q)
{
	st32(b, q->send_id);
	st32(b + 4, q->pull_id);
	st32(b + 8, q->first);
	st16(b + 12, q->chunk);
	st16(b + 14, 0);
	st64(b + 16, q->want);
	return VD__W_PULL_REQ_LEN;
}

size_t vd__wire_put_pull_reply(uint8_t *b, uint32_t pull_id, uint32_t frame)
{
	st32(b, pull_id);
	st32(b + 4, frame);
	return VD__W_PULL_REPLY_HDR;
}
