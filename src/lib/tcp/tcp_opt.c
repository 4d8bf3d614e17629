/* SPDX-License-Identifier: MIT */
/*
 * TCP options (RFC 9293 3.2): parsing of received options (untrusted: every read is bounded by the option
 * area the header length declares; fuzzed) and building of the options we send.
 */
#include "tcp_internal.h"

#include <string.h>

#define OPT_EOL 0
#define OPT_NOP 1
#define OPT_MSS 2
#define OPT_WS 3       /* RFC 7323 2 */
#define OPT_SACKOK 4   /* RFC 2018 2 */
#define OPT_SACK 5     /* RFC 2018 3 */
#define OPT_TS 8       /* RFC 7323 3 */

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Parses the option area p[0..len). syn: the segment has SYN set (MSS, window scale and SACK-permitted
 * count only there: RFC 9293 3.7.1, RFC 7323 2.2, RFC 2018 2). Returns 0, or -1 for an impossible
 * layout (a length below 2 or running past the area), which RFC 9293 3.1 asks us to survive: the caller
 * drops the segment. A known option with a wrong length is ignored, as Linux does, so one odd option does
 * not cost the connection.
 */
int vd__tcp_opt_parse(const uint8_t *p, uint32_t len, int syn, struct tcp_opts *o)
{
	memset(o, 0, sizeof(*o));
	uint32_t i = 0;
	while (i < len) {
		uint8_t kind = p[i];
		if (kind == OPT_EOL)
			break;
		if (kind == OPT_NOP) {
			i++;
			continue;
		}
		if (len - i < 2)
			return -1;
		uint32_t olen = p[i + 1];
		if (olen < 2 || olen > len - i)
			return -1;
		const uint8_t *v = p + i + 2;
		switch (kind) {
		case OPT_MSS:
			if (olen == 4 && syn) {
				o->has_mss = 1;
				o->mss = rd16(v);
			}
			break;
		case OPT_WS:
			if (olen == 3 && syn) {
				o->has_ws = 1;
				/* RFC 7323 2.3: a shift above 14 is used as 14 */
				o->ws = v[0] > 14 ? 14 : v[0];
			}
			break;
		case OPT_SACKOK:
			if (olen == 2 && syn)
				o->sack_ok = 1;
			break;
		case OPT_SACK:
			/* RFC 2018 3: 2 + 8 * n bytes; the 40-byte option area bounds n to 4 */
			if (olen >= 10 && (olen - 2) % 8 == 0) {
				uint32_t n = (olen - 2) / 8;
				if (n > 4)
					n = 4;
				for (uint32_t k = 0; k < n; k++) {
					o->sack[k].start = rd32(v + 8 * k);
					o->sack[k].end = rd32(v + 8 * k + 4);
				}
				o->nsack = (uint8_t)n;
			}
			break;
		case OPT_TS:
			if (olen == 10) {
				o->has_ts = 1;
				o->tsval = rd32(v);
				o->tsecr = rd32(v + 4);
			}
			break;
		default:
			break; /* RFC 9293 3.1: unknown options are skipped by their length */
		}
		i += olen;
	}
	return 0;
}

static uint32_t put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr)
{
	p[0] = OPT_NOP;
	p[1] = OPT_NOP;
	p[2] = OPT_TS;
	p[3] = 10;
	wr32(p + 4, tsval);
	wr32(p + 8, tsecr);
	return 12;
}

/*
 * Options of a SYN (synack 0) or SYN-ACK: MSS always (RFC 9293 3.7.1: our receive MSS, the IP MTU minus
 * 40), and window scale, SACK-permitted and timestamps when c->ws_ok / sack_ok / ts_ok (for a SYN: what we
 * offer; for a SYN-ACK: only what the peer's SYN offered, RFC 7323 2.2 / 3.2, RFC 2018 2). Linux's layout,
 * 20 bytes at most. Returns the length (a multiple of 4).
 */
uint32_t vd__tcp_opt_syn(const struct vd__tcb *c, uint8_t *p, uint32_t tsval, int synack)
{
	uint32_t n = 0;
	uint32_t mss = c->t->ip_mtu - IP_HLEN - TCP_HLEN;
	if (c->user_mss && c->user_mss < mss)
		mss = c->user_mss;
	if (mss > 65535)
		mss = 65535;
	p[n++] = OPT_MSS;
	p[n++] = 4;
	wr16(p + n, (uint16_t)mss);
	n += 2;
	if (c->sack_ok && c->ts_ok) {
		p[n++] = OPT_SACKOK;
		p[n++] = 2;
		p[n++] = OPT_TS;
		p[n++] = 10;
		wr32(p + n, tsval);
		/* RFC 7323 3.2: TSecr is zero in a SYN; a SYN-ACK echoes the SYN's TSval */
		wr32(p + n + 4, synack ? c->ts_recent : 0);
		n += 8;
	} else if (c->ts_ok) {
		n += put_ts(p + n, tsval, synack ? c->ts_recent : 0);
	} else if (c->sack_ok) {
		p[n++] = OPT_NOP;
		p[n++] = OPT_NOP;
		p[n++] = OPT_SACKOK;
		p[n++] = 2;
	}
	if (c->ws_ok) {
		p[n++] = OPT_NOP;
		p[n++] = OPT_WS;
		p[n++] = 3;
		p[n++] = c->rcv_wscale;
	}
	return n;
}

/* Options of a synchronized-state segment: timestamps when negotiated (RFC 7323 3.2: then on every
 * segment but RST), SACK blocks while we hold out-of-order data (RFC 2018 4: as many as fit). */
uint32_t vd__tcp_opt_data(const struct vd__tcb *c, uint8_t *p, uint32_t tsval)
{
	uint32_t n = 0;
	if (c->ts_ok)
		n += put_ts(p, tsval, c->ts_recent);
	if (c->sack_ok && (c->ooo_n || c->dsack_on)) {
		struct tcp_range b[4];
		uint32_t max = c->ts_ok ? 3 : 4, nb = 0;
		if (c->dsack_on)
			b[nb++] = c->dsack;   /* RFC 2883 4: the D-SACK block first */
		nb += vd__sack_rcv_blocks(c, b + nb, max - nb);
		p[n++] = OPT_NOP;
		p[n++] = OPT_NOP;
		p[n++] = OPT_SACK;
		p[n++] = (uint8_t)(2 + 8 * nb);
		for (uint32_t k = 0; k < nb; k++) {
			wr32(p + n, b[k].start);
			wr32(p + n + 4, b[k].end);
			n += 8;
		}
	}
	return n;
}
