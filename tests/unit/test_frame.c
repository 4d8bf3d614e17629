/* SPDX-License-Identifier: MIT */
/* Ethernet/IPv4/UDP framing: checksum vectors, build -> parse round trips, every malformed class rejected. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>

#include "lib/core/frame.h"
#include "lib/core/rand.h"

/* The checksum as it appears on the wire, as a big-endian number. */
static uint16_t wire_csum(const void *data, size_t len)
{
	uint16_t c = vd__csum_fold(vd__csum_partial(data, len, 0));
	uint8_t b[2];
	memcpy(b, &c, 2);
	return (uint16_t)(b[0] << 8 | b[1]);
}

/* The textbook algorithm, one big-endian 16-bit word at a time with an immediate end-around carry. */
static uint16_t ref_csum(const uint8_t *p, size_t len)
{
	uint32_t s = 0;
	for (size_t i = 0; i < len; i += 2) {
		uint32_t w = (uint32_t)p[i] << 8;
		if (i + 1 < len)
			w |= p[i + 1];
		s += w;
		s = (s & 0xffff) + (s >> 16);
	}
	return (uint16_t)~s;
}

TEST(csum_rfc1071_example)
{
	/* RFC 1071 section 3: the sum of these words is ddf2, so the checksum is ~ddf2 = 220d. */
	static const uint8_t b[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	CHECK_EQ(wire_csum(b, sizeof(b)), 0x220d);
	CHECK_EQ(ref_csum(b, sizeof(b)), 0x220d);
}

TEST(csum_ipv4_header_vector)
{
	/* A captured IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum field holds b861. */
	uint8_t h[20] = { 0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
			  0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7 };
	CHECK_EQ(vd__csum_fold(vd__csum_partial(h, 20, 0)), 0); /* verifies */
	h[10] = h[11] = 0;
	CHECK_EQ(wire_csum(h, 20), 0xb861);
}

TEST(csum_matches_reference_all_lengths_and_alignments)
{
	static uint8_t buf[2100];
	struct vd__rand r;
	vd__rand_seed(&r, 42);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)vd__rand_next(&r);
	int bad = 0;
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 2048; len++)
			if (wire_csum(buf + off, len) != ref_csum(buf + off, len))
				bad++;
	CHECK_EQ(bad, 0);
	/* All-ones data: the case where deferred carries pile up the most. */
	memset(buf, 0xff, sizeof(buf));
	CHECK_EQ(wire_csum(buf, 2048), ref_csum(buf, 2048));
	CHECK_EQ(wire_csum(buf, 2047), ref_csum(buf, 2047));
	/* Chaining: a running sum over even-length pieces equals one sum over the whole. */
	uint32_t s = vd__csum_partial(buf, 100, 0);
	s = vd__csum_partial(buf + 100, 1400, s);
	CHECK_EQ(vd__csum_fold(s), vd__csum_fold(vd__csum_partial(buf, 1500, 0)));
}

static struct vd__udp_tmpl make_tmpl(void)
{
	struct vd__udp_tmpl t = {
		.src_mac = { 0x02, 0, 0, 0, 0, 1 },
		.dst_mac = { 0x02, 0, 0, 0, 0, 2 },
	};
	t.src_ip_be = inet_addr("10.99.0.1");
	t.dst_ip_be = inet_addr("10.99.0.2");
	t.src_port_be = htons(4000);
	t.dst_port_be = htons(5000);
	return t;
}

static size_t build(uint8_t *frame, size_t payload_len, int udp_csum)
{
	struct vd__udp_tmpl t = make_tmpl();
	for (size_t i = 0; i < payload_len; i++)
		frame[VD_FRAME_HDR_LEN + i] = (uint8_t)(i * 7 + 3);
	return vd__frame_build_udp(frame, &t, payload_len, udp_csum);
}

TEST(build_parse_round_trip)
{
	static uint8_t frame[VD_FRAME_HDR_LEN + 1500];
	static const size_t sizes[] = { 0, 1, 2, 17, 64, 1000, 1472 };
	struct vd__udp_tmpl t = make_tmpl();

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int csum = 0; csum <= 1; csum++) {
			size_t len = build(frame, sizes[k], csum);
			CHECK_EQ(len, VD_FRAME_HDR_LEN + sizes[k]);
			struct vd__udp_view v;
			REQUIRE(vd__frame_parse_udp(frame, len, &v) == 0);
			CHECK(v.payload == frame + VD_FRAME_HDR_LEN);
			CHECK_EQ(v.payload_len, sizes[k]);
			CHECK_EQ(v.src_ip_be, t.src_ip_be);
			CHECK_EQ(v.dst_ip_be, t.dst_ip_be);
			CHECK_EQ(v.src_port_be, t.src_port_be);
			CHECK_EQ(v.dst_port_be, t.dst_port_be);
			CHECK(memcmp(v.src_mac, t.src_mac, 6) == 0);
			CHECK(memcmp(v.dst_mac, t.dst_mac, 6) == 0);
			/* Header fields we promise: DF, ID 0, TTL 64, UDP checksum present iff asked. */
			CHECK_EQ(frame[14], 0x45);
			CHECK_EQ(frame[18] | frame[19], 0);
			CHECK_EQ(frame[20], 0x40);
			CHECK_EQ(frame[21], 0x00);
			CHECK_EQ(frame[22], 64);
			CHECK_EQ(frame[23], 17);
			CHECK_EQ(!!(frame[40] | frame[41]), csum);
		}
	}
}

TEST(build_rejects_oversize_payload)
{
	static uint8_t frame[VD_FRAME_HDR_LEN + 65536];
	struct vd__udp_tmpl t = make_tmpl();
	CHECK_EQ(vd__frame_build_udp(frame, &t, 65507, 1), VD_FRAME_HDR_LEN + 65507);
	CHECK_EQ(vd__frame_build_udp(frame, &t, 65508, 1), 0);
}

TEST(zero_checksum_sent_as_ones)
{
	/* Choose a payload word that makes the computed UDP checksum zero; RFC 768 says send ffff. */
	uint8_t frame[VD_FRAME_HDR_LEN + 2] = { 0 };
	struct vd__udp_tmpl t = make_tmpl();
	vd__frame_build_udp(frame, &t, 2, 1);
	uint16_t c;
	memcpy(&c, frame + 40, 2);
	memcpy(frame + VD_FRAME_HDR_LEN, &c, 2); /* adds ~S to the sum S: the new sum is all ones */
	size_t len = vd__frame_build_udp(frame, &t, 2, 1);
	CHECK_EQ(frame[40], 0xff);
	CHECK_EQ(frame[41], 0xff);
	struct vd__udp_view v;
	CHECK_EQ(vd__frame_parse_udp(frame, len, &v), 0);
}

TEST(ethernet_padding_accepted)
{
	uint8_t frame[60] = { 0 };
	size_t len = build(frame, 4, 1);
	struct vd__udp_view v;
	CHECK_EQ(vd__frame_parse_udp(frame, sizeof(frame), &v), 0);
	CHECK_EQ(v.payload_len, 4);
	CHECK(len < sizeof(frame));
}

TEST(unaligned_frame_parses)
{
	static uint8_t buf[1 + VD_FRAME_HDR_LEN + 33];
	size_t len = build(buf + 1, 33, 1);
	struct vd__udp_view v;
	CHECK_EQ(vd__frame_parse_udp(buf + 1, len, &v), 0);
	CHECK_EQ(v.payload_len, 33);
}

TEST(truncated_at_every_length_rejected)
{
	static uint8_t frame[VD_FRAME_HDR_LEN + 100];
	size_t len = build(frame, 100, 1);
	struct vd__udp_view v;
	int accepted = 0;
	for (size_t n = 0; n < len; n++)
		if (vd__frame_parse_udp(frame, n, &v) == 0)
			accepted++;
	CHECK_EQ(accepted, 0);
	CHECK_EQ(vd__frame_parse_udp(frame, len, &v), 0);
}

/* Re-computes the IPv4 header checksum after a test edited the header, so only the edit is wrong. */
static void fix_ip_csum(uint8_t *frame)
{
	uint8_t *ip = frame + VD_ETH_HLEN;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	ip[10] = ip[11] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(ip, ihl, 0));
	memcpy(ip + 10, &c, 2);
}

static int parse_after(void (*edit)(uint8_t *frame), int refix)
{
	static uint8_t frame[VD_FRAME_HDR_LEN + 64];
	size_t len = build(frame, 64, 1);
	edit(frame);
	if (refix)
		fix_ip_csum(frame);
	struct vd__udp_view v;
	return vd__frame_parse_udp(frame, len, &v);
}

static void e_vlan(uint8_t *f) { f[12] = 0x81; f[13] = 0x00; }
static void e_arp(uint8_t *f) { f[12] = 0x08; f[13] = 0x06; }
static void e_version6(uint8_t *f) { f[14] = 0x65; }
static void e_ihl4(uint8_t *f) { f[14] = 0x44; }
static void e_ihl15(uint8_t *f) { f[14] = 0x4f; }
static void e_totlen_big(uint8_t *f) { f[16] = 0x00; f[17] = 20 + 8 + 65; }
static void e_totlen_small(uint8_t *f) { f[16] = 0x00; f[17] = 20 + 7; }
static void e_mf(uint8_t *f) { f[20] |= 0x20; }
static void e_offset(uint8_t *f) { f[21] = 0x01; }
static void e_proto_tcp(uint8_t *f) { f[23] = 6; }
static void e_ip_csum(uint8_t *f) { f[24] ^= 0x01; }
static void e_ip_src(uint8_t *f) { f[26] ^= 0x80; }
static void e_udp_len_big(uint8_t *f) { f[38] = 0; f[39] = 8 + 65; }
static void e_udp_len_small(uint8_t *f) { f[38] = 0; f[39] = 8 + 63; }
static void e_udp_len_tiny(uint8_t *f) { f[38] = 0; f[39] = 7; }
static void e_udp_csum(uint8_t *f) { f[41] ^= 0x01; }
static void e_payload(uint8_t *f) { f[VD_FRAME_HDR_LEN + 10] ^= 0x40; }
static void e_udp_port(uint8_t *f) { f[35] ^= 0x01; }
static void e_none(uint8_t *f) { (void)f; }

TEST(malformed_classes_rejected)
{
	CHECK_EQ(parse_after(e_none, 0), 0);
	CHECK_EQ(parse_after(e_vlan, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_arp, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_version6, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_ihl4, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_ihl15, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_totlen_big, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_totlen_small, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_mf, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_offset, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_proto_tcp, 1), -EBADMSG);
	CHECK_EQ(parse_after(e_ip_csum, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_udp_len_big, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_udp_len_small, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_udp_len_tiny, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_udp_csum, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_payload, 0), -EBADMSG);
	CHECK_EQ(parse_after(e_udp_port, 0), -EBADMSG);
	/* An address change with a repaired IP checksum still breaks the UDP pseudo-header sum. */
	CHECK_EQ(parse_after(e_ip_src, 1), -EBADMSG);
	/* Control: the IP checksum repair alone keeps a frame valid. */
	CHECK_EQ(parse_after(e_none, 1), 0);
}

TEST(udp_checksum_zero_means_none)
{
	static uint8_t frame[VD_FRAME_HDR_LEN + 64];
	size_t len = build(frame, 64, 0);
	frame[VD_FRAME_HDR_LEN + 3] ^= 0xff; /* without a checksum, payload damage is invisible here */
	struct vd__udp_view v;
	CHECK_EQ(vd__frame_parse_udp(frame, len, &v), 0);
}

TEST(veth_partial_checksum_accepted)
{
	/* Linux leaves in the field with CHECKSUM_PARTIAL: the folded pseudo-header sum, uncomplemented. */
	static uint8_t frame[VD_FRAME_HDR_LEN + 64];
	size_t len = build(frame, 64, 0);
	uint32_t src, dst;
	memcpy(&src, frame + 26, 4);
	memcpy(&dst, frame + 30, 4);
	uint8_t pseudo[12];
	memcpy(pseudo, &src, 4);
	memcpy(pseudo + 4, &dst, 4);
	pseudo[8] = 0;
	pseudo[9] = 17;
	pseudo[10] = frame[38];
	pseudo[11] = frame[39];
	uint16_t partial = (uint16_t)~vd__csum_fold(vd__csum_partial(pseudo, sizeof(pseudo), 0));
	memcpy(frame + 40, &partial, 2);
	struct vd__udp_view v;
	CHECK_EQ(vd__frame_parse_udp(frame, len, &v), 0);
	/* One off is not the partial sum and not a valid full checksum. */
	frame[41] ^= 0x01;
	CHECK_EQ(vd__frame_parse_udp(frame, len, &v), -EBADMSG);
}

TEST(ip_options_accepted)
{
	/* Insert 4 bytes of IPv4 options (NOPs, RFC 791 type 1) and fix the lengths and the IP checksum;
	 * the UDP checksum does not cover IP options, so it stays valid. */
	static uint8_t a[VD_FRAME_HDR_LEN + 40], b[VD_FRAME_HDR_LEN + 44];
	size_t len = build(a, 40, 1);
	memcpy(b, a, 34);
	memset(b + 34, 0x01, 4);
	memcpy(b + 38, a + 34, len - 34);
	b[14] = 0x46;
	b[17] = (uint8_t)(b[17] + 4);
	fix_ip_csum(b);
	struct vd__udp_view v;
	REQUIRE(vd__frame_parse_udp(b, len + 4, &v) == 0);
	CHECK(v.payload == b + VD_FRAME_HDR_LEN + 4);
	CHECK_EQ(v.payload_len, 40);
	CHECK(memcmp(v.payload, a + VD_FRAME_HDR_LEN, 40) == 0);
	/* IHL larger than what the frame holds. */
	b[14] = 0x4f;
	fix_ip_csum(b);
	CHECK_EQ(vd__frame_parse_udp(b, 14 + 60, &v), -EBADMSG);
}

/*
 * A frame built for TX checksum offload carries the pseudo-header sum; the parser accepts it as it is, and
 * completing it the way a device does (sum from the UDP header on, fold, complement, store) gives exactly
 * the frame a full software checksum gives.
 */
TEST(partial_checksum_completes_to_full)
{
	static uint8_t full[VD_FRAME_HDR_LEN + 1472], part[VD_FRAME_HDR_LEN + 1472];
	static const size_t sizes[] = { 1, 64, 999, 1472 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = build(full, sizes[k], VD_UDP_CSUM_FULL);
		REQUIRE(build(part, sizes[k], VD_UDP_CSUM_PARTIAL) == len);
		struct vd__udp_view v;
		CHECK_EQ(vd__frame_parse_udp(part, len, &v), 0);
		uint8_t *udp = part + VD_FRAME_UDP_OFF;
		uint16_t c = vd__csum_fold(vd__csum_partial(udp, len - VD_FRAME_UDP_OFF, 0));
		if (c == 0)
			c = 0xffff;
		memcpy(udp + VD_FRAME_UDP_CSUM_OFF, &c, 2);
		CHECK(memcmp(full, part, len) == 0);
	}
}

TEST_MAIN(T(csum_rfc1071_example), T(partial_checksum_completes_to_full), T(csum_ipv4_header_vector),
	  T(csum_matches_reference_all_lengths_and_alignments), T(build_parse_round_trip),
	  T(build_rejects_oversize_payload), T(zero_checksum_sent_as_ones),
	  T(ethernet_padding_accepted), T(unaligned_frame_parses), T(truncated_at_every_length_rejected),
	  T(malformed_classes_rejected), T(udp_checksum_zero_means_none), T(veth_partial_checksum_accepted),
	  T(ip_options_accepted))
