/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the TCP option parser (vd__tcp_opt_parse), checked against a reference parser
 * written here from RFC 9293 3.1/3.2 and the option RFCs, following the parser's documented contract:
 *   - kind 0 (EOL) ends the list, kind 1 (NOP) is one byte, every other kind has a length byte >= 2
 *     and must fit in the area: otherwise the layout is impossible and the result is -1;
 *   - MSS (2, len 4), WS (3, len 3) and SACK-permitted (4, len 2) count only on a SYN (RFC 9293 3.7.1,
 *     RFC 7323 2.2, RFC 2018 2); timestamps (8, len 10) anywhere; SACK blocks (5, len 2 + 8n, n 1..4)
 *     on non-SYN segments; a known option with a wrong length is ignored.
 * Input byte 0 selects syn; the rest (at most 40 bytes, the largest option area) is the area, copied to
 * a buffer of exactly that size so ASan catches a read past it. Compared only where every kind appears
 * at most once (which duplicate wins is not specified).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/tcp/tcp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct ref {
	int rc;
	int dup;                 /* some kind appeared twice */
	int has_mss, has_ws, sack_ok, has_ts, nsack;
	uint16_t mss;
	uint8_t ws;
	uint32_t tsval, tsecr;
	uint32_t sack[4][2];
};

static void ref_parse(const uint8_t *p, size_t n, int syn, struct ref *r)
{
	int seen[256] = { 0 };
	memset(r, 0, sizeof(*r));
	size_t i = 0;
	while (i < n) {
		uint8_t k = p[i];
		if (k == 0)
			break;
		if (k == 1) {
			i++;
			continue;
		}
		if (i + 1 >= n || p[i + 1] < 2 || i + p[i + 1] > n) {
			r->rc = -1;
			return;
		}
		uint8_t l = p[i + 1];
		if (seen[k]++)
			r->dup = 1;
		if (k == 2 && l == 4 && syn) {
			r->has_mss = 1;
			r->mss = (uint16_t)(p[i + 2] << 8 | p[i + 3]);
		} else if (k == 3 && l == 3 && syn) {
			r->has_ws = 1;
			r->ws = p[i + 2];
		} else if (k == 4 && l == 2 && syn) {
			r->sack_ok = 1;
		} else if (k == 8 && l == 10) {
			r->has_ts = 1;
			r->tsval = get32(p + i + 2);
			r->tsecr = get32(p + i + 6);
		} else if (k == 5 && !syn && l >= 10 && l <= 34 && (l - 2) % 8 == 0) {
			r->nsack = (l - 2) / 8;
			for (int b = 0; b < r->nsack; b++) {
				r->sack[b][0] = get32(p + i + 2 + 8 * b);
				r->sack[b][1] = get32(p + i + 6 + 8 * b);
			}
		}
		i += l;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int syn = data[0] & 1;
	size_t n = size - 1 > 40 ? 40 : size - 1;
	uint8_t *area = malloc(n ? n : 1);
	if (!area)
		return 0;
	memcpy(area, data + 1, n);

	struct tcp_opts o;
	memset(&o, 0xa5, sizeof(o));
	int rc = vd__tcp_opt_parse(area, (uint32_t)n, syn, &o);
	struct ref r;
	ref_parse(area, n, syn, &r);

	check(rc == 0 || rc == -1);
	check(rc == r.rc);
	if (rc == 0) {
		check(o.nsack <= 4);
		if (!syn)
			check(!o.has_mss && !o.has_ws && !o.sack_ok);
		if (!r.dup) {
			check(!!o.has_mss == r.has_mss);
			if (r.has_mss)
				check(o.mss == r.mss);
			check(!!o.has_ws == r.has_ws);
			if (r.has_ws)
				check(o.ws == r.ws || (r.ws > 14 && o.ws == 14)); /* RFC 7323 2.3: > 14 means 14 */
			check(!!o.sack_ok == r.sack_ok);
			check(!!o.has_ts == r.has_ts);
			if (r.has_ts)
				check(o.tsval == r.tsval && o.tsecr == r.tsecr);
			if (!syn) {
				check(o.nsack == r.nsack);
				for (int b = 0; b < r.nsack; b++)
					check(o.sack[b].start == r.sack[b][0] && o.sack[b].end == r.sack[b][1]);
			}
		}
	}
	free(area);
	return 0;
}
