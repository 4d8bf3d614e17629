/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the IPv4-layer parser (vd__ipv4_parse, vd__frame_parse_ipv4) and the TX checksum
 * completion (vd__ipv4_l4_csum_loc/finish). Received packets are untrusted bytes: any input must be
 * rejected with -EBADMSG or accepted with a view inside the input that agrees with the header; the
 * checksum completion must stay inside the packet and leave a checksum that verifies. Any violation
 * aborts.
 *
 * Random bytes rarely carry a valid IPv4 header checksum, so each input is parsed again with it repaired
 * (where IHL says the header lies inside the input), which reaches every later check without a corpus.
 * The first input byte picks whether the rest is a bare packet or an Ethernet frame.
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

static void check_view(const uint8_t *ip, size_t size, const struct vd__ipv4_view *v)
{
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	size_t tot = (size_t)ip[2] << 8 | ip[3];

	check(size >= 20 && ip[0] >> 4 == 4 && ihl >= 20);
	check(v->hdr_len == ihl && v->tot_len == tot && tot <= size && tot >= ihl);
	check(v->l4 == ip + ihl);
	check(v->proto == ip[9] && (v->proto == VD_IPPROTO_TCP || v->proto == VD_IPPROTO_UDP));
	check(tot - ihl >= (v->proto == VD_IPPROTO_TCP ? 20u : 8u));
	check(((ip[6] & 0x3f) | ip[7]) == 0); /* neither MF nor an offset */
	check(vd__csum_fold(vd__csum_partial(ip, ihl, 0)) == 0);
	check(memcmp(&v->src_ip_be, ip + 12, 4) == 0 && memcmp(&v->dst_ip_be, ip + 16, 4) == 0);
	check(memcmp(&v->src_port_be, ip + ihl, 2) == 0 && memcmp(&v->dst_port_be, ip + ihl + 2, 2) == 0);
	/* Touch every byte the view covers: out of bounds fails here under ASan. */
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < tot - ihl; i++)
		sink ^= v->l4[i];
	(void)sink;
}

/* The checksum completion on a private copy of exactly size bytes: in bounds, and verifying after. */
static void check_csum(const uint8_t *ip, size_t size)
{
	uint32_t l4_off, csum_off, l4_len;
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return;
	memcpy(copy, ip, size);
	int loc = vd__ipv4_l4_csum_loc(copy, size, &l4_off, &csum_off, &l4_len);
	int fin = vd__ipv4_l4_csum_finish(copy, size);
	check(loc == fin && (loc == 0 || loc == -EBADMSG));
	if (loc == 0) {
		check(l4_off >= 20 && l4_off + l4_len <= size && csum_off + 2 <= l4_len);
		/* The field held a "pseudo-header sum" (here: whatever bytes were there); the completed sum
		 * over the L4 bytes must now verify with that same value folded in (RFC 1071). */
		uint16_t was;
		memcpy(&was, ip + l4_off + csum_off, 2);
		uint16_t now;
		memcpy(&now, copy + l4_off + csum_off, 2);
		check(memcmp(copy, ip, l4_off + csum_off) == 0);
		check(memcmp(copy + l4_off + csum_off + 2, ip + l4_off + csum_off + 2,
			     size - (l4_off + csum_off + 2)) == 0);
		/* Sum of the L4 bytes with the old field, plus the new field, is all ones unless UDP's 0 rule
		 * replaced a zero result. */
		uint32_t s = vd__csum_partial(ip + l4_off, l4_len, 0) + now;
		uint16_t folded = vd__csum_fold(s);
		check(folded == 0 || (ip[9] == VD_IPPROTO_UDP && now == 0xffff));
	}
	free(copy);
}

static void check_one(uint8_t *buf, size_t size, int eth)
{
	struct vd__ipv4_view v;
	if (eth) {
		int rc = vd__frame_parse_ipv4(buf, size, &v);
		check(rc == 0 || rc == -EBADMSG);
		if (rc == 0) {
			check(size >= VD_ETH_HLEN && buf[12] == 0x08 && buf[13] == 0x00);
			check_view(buf + VD_ETH_HLEN, size - VD_ETH_HLEN, &v);
		}
		return;
	}
	int rc = vd__ipv4_parse(buf, size, &v);
	check(rc == 0 || rc == -EBADMSG);
	if (rc == 0)
		check_view(buf, size, &v);
	check_csum(buf, size);
}

static void repair(uint8_t *ip, size_t size)
{
	if (size < 20)
		return;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ihl < 20 || ihl > size)
		return;
	ip[10] = ip[11] = 0;
	uint16_t c = vd__csum_fold(vd__csum_partial(ip, ihl, 0));
	memcpy(ip + 10, &c, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int eth = data[0] & 1;
	data++;
	size--;
	/* A private copy of exactly `size` bytes, so ASan flags a single byte read past the end. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	check_one(buf, size, eth);
	if (eth) {
		if (size >= VD_ETH_HLEN)
			repair(buf + VD_ETH_HLEN, size - VD_ETH_HLEN);
	} else {
		repair(buf, size);
	}
	check_one(buf, size, eth);
	free(buf);
	return 0;
}
