/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the received-frame parser (vd__frame_parse_udp): frames come from the wire, so any
 * byte string must be either rejected with -EBADMSG or accepted with a view that lies inside the input and
 * whose lengths agree with the headers. Accepted frames are rebuilt with vd__frame_build_udp and must
 * parse again to the same view. Any violation aborts.
 *
 * Random bytes almost never carry valid checksums, which would keep the fuzzer in the first few checks;
 * so each input is also parsed a second time with its IPv4 and UDP checksums repaired (where the headers
 * say they are inside the input), which lets it reach every later branch without a seed corpus.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static void check_one(const uint8_t *frame, size_t size)
{
	struct vd__udp_view v;
	int rc = vd__frame_parse_udp(frame, size, &v);
	if (rc != 0) {
		check(rc == -EBADMSG);
		return;
	}

	const uint8_t *end = frame + size;
	check(size >= VD_FRAME_HDR_LEN);
	check(v.dst_mac == frame && v.src_mac == frame + 6);
	check(v.payload >= frame + VD_FRAME_HDR_LEN && v.payload <= end);
	check(v.payload_len <= (size_t)(end - v.payload));

	size_t ihl = (size_t)(frame[14] & 0x0f) * 4;
	size_t tot_len = (size_t)frame[16] << 8 | frame[17];
	size_t udp_len = (size_t)frame[14 + ihl + 4] << 8 | frame[14 + ihl + 5];
	check(frame[14] >> 4 == 4 && ihl >= 20);
	check(v.payload == frame + 14 + ihl + 8);
	check(tot_len == ihl + udp_len && tot_len <= size - 14);
	check(v.payload_len == udp_len - 8);
	check(frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 17);
	check(memcmp(&v.src_ip_be, frame + 26, 4) == 0 && memcmp(&v.dst_ip_be, frame + 30, 4) == 0);

	/* Touch every payload byte: an out-of-bounds view fails here under ASan. */
	volatile uint8_t sink = 0;
	for (uint32_t i = 0; i < v.payload_len; i++)
		sink ^= v.payload[i];
	(void)sink;

	/* Rebuild the frame from the view and parse it back. */
	uint8_t *copy = malloc(VD_FRAME_HDR_LEN + v.payload_len);
	if (copy) {
		struct vd__udp_tmpl t;
		memcpy(t.src_mac, v.src_mac, 6);
		memcpy(t.dst_mac, v.dst_mac, 6);
		t.src_ip_be = v.src_ip_be;
		t.dst_ip_be = v.dst_ip_be;
		t.src_port_be = v.src_port_be;
		t.dst_port_be = v.dst_port_be;
		memcpy(copy + VD_FRAME_HDR_LEN, v.payload, v.payload_len);
		int has_csum = (frame[14 + ihl + 6] | frame[14 + ihl + 7]) != 0;
		size_t len = vd__frame_build_udp(copy, &t, v.payload_len, has_csum);
		check(len == VD_FRAME_HDR_LEN + v.payload_len);
		struct vd__udp_view w;
		check(vd__frame_parse_udp(copy, len, &w) == 0);
		check(w.payload_len == v.payload_len && memcmp(w.payload, v.payload, v.payload_len) == 0);
		check(w.src_ip_be == v.src_ip_be && w.dst_ip_be == v.dst_ip_be);
		check(w.src_port_be == v.src_port_be && w.dst_port_be == v.dst_port_be);
		free(copy);
	}
}

/* Recomputes the IPv4 header and UDP checksums in place, wherever the headers lie inside the buffer. */
static void repair_checksums(uint8_t *f, size_t size)
{
	if (size < VD_FRAME_HDR_LEN)
		return;
	uint8_t *ip = f + VD_ETH_HLEN;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ihl < VD_IPV4_HLEN || VD_ETH_HLEN + ihl + VD_UDP_HLEN > size)
		return;
	ip[10] = ip[11] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(ip, ihl, 0));
	memcpy(ip + 10, &c, 2);
	uint8_t *udp = ip + ihl;
	size_t udp_len = (size_t)udp[4] << 8 | udp[5];
	if (udp_len < VD_UDP_HLEN || (size_t)(udp - f) + udp_len > size || (udp[6] | udp[7]) == 0)
		return; /* keep a zero checksum: "none" is a case of its own */
	uint8_t pseudo[12];
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = 17;
	pseudo[10] = udp[4];
	pseudo[11] = udp[5];
	udp[6] = udp[7] = 0;
	c = vd__csum_fold(vd__csum_partial(udp, udp_len, vd__csum_partial(pseudo, sizeof(pseudo), 0)));
	if (c == 0)
		c = 0xffff;
	memcpy(udp + 6, &c, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private copy of exactly `size` bytes, so ASan flags a single byte read past the end. */
	uint8_t *frame = malloc(size ? size : 1);
	if (!frame)
		return 0;
	memcpy(frame, data, size);
	check_one(frame, size);
	repair_checksums(frame, size);
	check_one(frame, size);
	free(frame);
	return 0;
}
