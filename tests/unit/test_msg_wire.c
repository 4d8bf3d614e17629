/* SPDX-License-Identifier: MIT */
/* The messaging frame codec: round trips, and every check of the decoder on a hostile input. */
#include "harness.h"

#include <errno.h>

#include "lib/msg/wire.h"

static size_t data_frame(uint8_t *b)
{
	struct vd__whdr h = { .type = VD__W_DATA, .flags = VD__WF_ACK, .src_session = 7, .dst_session = 9,
			      .seq = 100, .ack = 55, .wnd = 64, .sack = 0x8000000000000005ull };
	size_t pos = vd__wire_put_hdr(b, &h);
	pos += vd__wire_put_eager(b + pos, VD__RF_SYNC, 3, 0x1122334455667788ull, 10, 0, 10);
	memcpy(b + pos, "0123456789", 10);
	pos += 10;
	pos += vd__wire_put_rndv(b + pos, 4, 0xffull, 1ull << 40, 1472);
	pos += vd__wire_put_id(b + pos, VD__R_DONE, 5);
	pos += vd__wire_put_id(b + pos, VD__R_MATCHED, 6);
	vd__wire_seal(b, pos);
	return pos;
}

TEST(round_trip)
{
	uint8_t b[256];
	size_t len = data_frame(b);
	struct vd__whdr h;
	const uint8_t *body;
	size_t blen, pos = 0;
	REQUIRE(vd__wire_decode_hdr(b, len, &h, &body, &blen) == 0);
	CHECK_EQ(h.type, VD__W_DATA);
	CHECK_EQ(h.src_session, 7);
	CHECK_EQ(h.dst_session, 9);
	CHECK_EQ(h.seq, 100);
	CHECK_EQ(h.ack, 55);
	CHECK_EQ(h.wnd, 64);
	CHECK(h.sack == 0x8000000000000005ull);
	struct vd__wrec r;
	REQUIRE(vd__wire_next_rec(body, blen, &pos, &r) == 1);
	CHECK_EQ(r.type, VD__R_EAGER);
	CHECK_EQ(r.flags, VD__RF_SYNC);
	CHECK(r.match == 0x1122334455667788ull);
	CHECK_EQ(r.msg_len, 10);
	CHECK(memcmp(r.data, "0123456789", 10) == 0);
	REQUIRE(vd__wire_next_rec(body, blen, &pos, &r) == 1);
	CHECK_EQ(r.type, VD__R_RNDV);
	CHECK(r.msg_len == 1ull << 40);
	CHECK_EQ(r.max_payload, 1472);
	REQUIRE(vd__wire_next_rec(body, blen, &pos, &r) == 1);
	CHECK_EQ(r.type, VD__R_DONE);
	CHECK_EQ(r.send_id, 5);
	REQUIRE(vd__wire_next_rec(body, blen, &pos, &r) == 1);
	CHECK_EQ(r.type, VD__R_MATCHED);
	CHECK_EQ(vd__wire_next_rec(body, blen, &pos, &r), 0);
}

TEST(every_byte_flip_is_caught)
{
	uint8_t b[256], c[256];
	size_t len = data_frame(b);
	struct vd__whdr h;
	const uint8_t *body;
	size_t blen;
	int missed = 0;
	for (size_t i = 0; i < len; i++)
		for (int x = 1; x < 256; x++) {
			memcpy(c, b, len);
			c[i] ^= (uint8_t)x;
			missed += vd__wire_decode_hdr(c, len, &h, &body, &blen) == 0;
		}
	CHECK_EQ(missed, 0);
	/* Truncated or extended frames fail too. */
	for (size_t n = 0; n < len; n++)
		CHECK(vd__wire_decode_hdr(b, n, &h, &body, &blen) < 0);
}

/* Rewrites one header byte and re-seals, so only the field check can reject it. */
static int hdr_with(uint8_t off, uint8_t val)
{
	uint8_t b[256];
	size_t len = data_frame(b);
	struct vd__whdr h;
	const uint8_t *body;
	size_t blen;
	b[off] = val;
	vd__wire_seal(b, len);
	return vd__wire_decode_hdr(b, len, &h, &body, &blen);
}

TEST(header_field_checks)
{
	CHECK_EQ(hdr_with(0, 0x57), -EBADMSG);  /* magic */
	CHECK_EQ(hdr_with(2, 2), -EBADMSG);     /* version */
	CHECK_EQ(hdr_with(3, 0), -EBADMSG);     /* type */
	CHECK_EQ(hdr_with(3, 6), -EBADMSG);
	CHECK_EQ(hdr_with(4, 4), -EBADMSG);     /* unknown flag */
	CHECK_EQ(hdr_with(5, 1), -EBADMSG);     /* reserved */
	CHECK_EQ(hdr_with(27, 1), -EBADMSG);    /* reserved */
	CHECK_EQ(hdr_with(3, VD__W_ACK), -EBADMSG); /* an ACK has no body and no seq */
	CHECK_EQ(hdr_with(4, 0), -EBADMSG);     /* ack fields set without the ack flag */
	uint8_t b[64];
	struct vd__whdr h = { .type = VD__W_ACK, .src_session = 0 };
	size_t len = vd__wire_put_hdr(b, &h);
	vd__wire_seal(b, len);
	const uint8_t *body;
	size_t blen;
	CHECK_EQ(vd__wire_decode_hdr(b, len, &h, &body, &blen), -EBADMSG); /* session 0 */
	h.src_session = 1;
	len = vd__wire_put_hdr(b, &h);
	vd__wire_seal(b, len);
	CHECK_EQ(vd__wire_decode_hdr(b, len, &h, &body, &blen), 0);
}

static int one_rec(const uint8_t *rec, size_t len)
{
	size_t pos = 0;
	struct vd__wrec r;
	return vd__wire_next_rec(rec, len, &pos, &r);
}

TEST(record_checks)
{
	uint8_t r[64];
	memset(r, 0, sizeof(r));
	vd__wire_put_eager(r, 0, 1, 1, 10, 8, 4); /* 8 + 4 > 10 */
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN + 4), -EBADMSG);
	vd__wire_put_eager(r, 0, 1, 1, 10, 0, 0); /* empty fragment of a non-empty message */
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN), -EBADMSG);
	vd__wire_put_eager(r, 0, 1, 1, VD__W_EAGER_LIMIT + 1, 0, 4);
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN + 4), -EBADMSG);
	vd__wire_put_eager(r, 2, 1, 1, 4, 0, 4); /* unknown flag */
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN + 4), -EBADMSG);
	vd__wire_put_eager(r, 0, 1, 1, 4, 0, 4);
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN + 3), -EBADMSG); /* data runs past the frame */
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN + 4), 1);
	vd__wire_put_eager(r, 0, 1, 1, 0, 0, 0);
	CHECK_EQ(one_rec(r, VD__R_EAGER_LEN), 1); /* the empty message */
	vd__wire_put_rndv(r, 1, 1, VD__W_RNDV_LIMIT + 1, 1472);
	CHECK_EQ(one_rec(r, VD__R_RNDV_LEN), -EBADMSG);
	vd__wire_put_rndv(r, 1, 1, 100000, VD__W_MIN_PAYLOAD - 1);
	CHECK_EQ(one_rec(r, VD__R_RNDV_LEN), -EBADMSG);
	vd__wire_put_rndv(r, 1, 1, 100000, 1472);
	CHECK_EQ(one_rec(r, VD__R_RNDV_LEN - 1), -EBADMSG);
	CHECK_EQ(one_rec(r, VD__R_RNDV_LEN), 1);
	vd__wire_put_id(r, 9, 1);
	CHECK_EQ(one_rec(r, VD__R_ID_LEN), -EBADMSG);
	vd__wire_put_id(r, VD__R_DONE, 1);
	r[2] = 1; /* DONE carries no data */
	CHECK_EQ(one_rec(r, VD__R_ID_LEN + 1), -EBADMSG);
	CHECK_EQ(one_rec(r, 3), -EBADMSG);

	struct vd__wpull_req q = { 1, 2, 3, 1400, 0 }, out;
	uint8_t pb[VD__W_PULL_REQ_LEN];
	vd__wire_put_pull_req(pb, &q);
	CHECK_EQ(vd__wire_decode_pull_req(pb, sizeof(pb), &out), -EBADMSG); /* want 0 */
	q.want = 5;
	q.chunk = 0;
	vd__wire_put_pull_req(pb, &q);
	CHECK_EQ(vd__wire_decode_pull_req(pb, sizeof(pb), &out), -EBADMSG); /* chunk 0 */
	q.chunk = 1400;
	vd__wire_put_pull_req(pb, &q);
	CHECK_EQ(vd__wire_decode_pull_req(pb, sizeof(pb), &out), 0);
	CHECK(out.want == 5 && out.chunk == 1400 && out.first == 3);
	CHECK_EQ(vd__wire_decode_pull_req(pb, sizeof(pb) - 1, &out), -EBADMSG);
}

/* The fused copy-and-sum of pull replies seals exactly as vd__wire_seal does, for every length around the
 * 32-byte blocks and odd tails, from unaligned sources, with bytes that make every carry happen. */
/* Pseudo-random bytes with every ff_every-th one 0xff (long runs of large words stress the carries). */
static void fill_pattern(uint8_t *p, size_t n, uint32_t x, unsigned ff_every)
{
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = i % ff_every == 0 ? 0xff : (uint8_t)(x >> 16);
	}
}

/* A pull reply carrying len bytes of src, sealed by copy+sum into b and by copy then vd__wire_seal into a:
 * 1 if both frames are the same byte for byte (a and b hold the header and len bytes). */
static int copy_sum_agrees(uint8_t *a, uint8_t *b, const uint8_t *src, size_t len)
{
	struct vd__whdr h = { .type = VD__W_PULL_REPLY, .src_session = 1, .dst_session = 2 };
	size_t pos = vd__wire_put_hdr(a, &h);
	pos += vd__wire_put_pull_reply(a + pos, 77, 3);
	memcpy(b, a, pos);
	memcpy(a + pos, src, len);
	vd__wire_seal(a, pos + len);
	vd__wire_seal_body(b, pos, vd__wire_copy_sum(b + pos, src, len));
	return pos == VD__W_HDR_LEN + VD__W_PULL_REPLY_HDR && memcmp(a, b, pos + len) == 0;
}

TEST(copy_sum_seals_like_seal)
{
	static uint8_t src[4200], a[4300], b[4300];
	int bad = 0;

	fill_pattern(src, sizeof(src), 12345, 7);
	for (size_t len = 1; len <= 4096 && !bad; len += len < 100 ? 1 : 61)
		for (size_t so = 0; so < 3; so++)
			bad |= !copy_sum_agrees(a, b, src + so, len);
	CHECK(!bad);
	/* All ones: the largest sums, where a lost carry would show. */
	memset(src, 0xff, sizeof(src));
	CHECK(copy_sum_agrees(a, b, src, 4096));
}

/* The same at jumbo and 64 KiB frame sizes, where the vector loop (AVX2 where the CPU has it) does most of
 * the work: every length around its 64-byte steps, sources at every offset within a step, and all ones at
 * the largest frame (the accumulators' worst case). */
TEST(copy_sum_large_frames)
{
	static uint8_t src[65600], a[65600], b[65600];
	const size_t lens[] = { 63, 64, 65, 127, 128, 129, 1400, 3430, 3431, 8900, 8942, 9000, 65535 - 48 };
	int bad = 0;

	fill_pattern(src, sizeof(src), 777, 5);
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (size_t so = 0; so < 64; so += 7)
			bad |= !copy_sum_agrees(a, b, src + so, lens[k]);
	CHECK(!bad);
	memset(src, 0xff, sizeof(src));
	CHECK(copy_sum_agrees(a, b, src, 65535 - (VD__W_HDR_LEN + VD__W_PULL_REPLY_HDR)));
}

TEST_MAIN(T(round_trip), T(every_byte_flip_is_caught), T(header_field_checks), T(record_checks),
	  T(copy_sum_seals_like_seal), T(copy_sum_large_frames))
