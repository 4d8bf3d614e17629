/* SPDX-License-Identifier: MIT */
/*
 * The keyed hash behind ISNs (RFC 6528) and SYN cookies (RFC 4987 3.6), and the cookies themselves.
 *
 * Hash: SipHash-2-4 (Aumasson and Bernstein, 2012), a PRF with a 128-bit key, written from the paper's
 * description.
 *
 * Cookie layout (the ISN of a stateless SYN-ACK), as Linux lays it out:
 *   bits 31..27  t mod 32, t = time in 64-second units
 *   bits 26..24  index of the MSS in a table of 8 common values
 *   bits 23..0   SipHash(addresses, ports, t, the client's ISN) low 24 bits
 * It is valid for the current and the previous t (64 to 128 seconds). Options other than the MSS do not
 * fit in 32 bits: when the SYN carried timestamps, the low 6 bits of our SYN-ACK's TSval carry window
 * scale (4 bits, 15 = none), SACK-permitted (1 bit) and a marker bit; the peer echoes them in TSecr.
 */
#include "tcp_internal.h"

#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                  \
	do {                                                                                      \
		v0 += v1;                                                                         \
		v1 = ROTL(v1, 13);                                                                \
		v1 ^= v0;                                                                         \
		v0 = ROTL(v0, 32);                                                                \
		v2 += v3;                                                                         \
		v3 = ROTL(v3, 16);                                                                \
		v3 ^= v2;                                                                         \
		v0 += v3;                                                                         \
		v3 = ROTL(v3, 21);                                                                \
		v3 ^= v0;                                                                         \
		v2 += v1;                                                                         \
		v1 = ROTL(v1, 17);                                                                \
		v1 ^= v2;                                                                         \
		v2 = ROTL(v2, 32);                                                                \
	} while (0)

void vd__siphash_key(struct vd__tcp *t, uint64_t secret)
{
	/* derive the second key word from the first with a SplitMix64 step */
	uint64_t z = secret + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	t->k0 = secret;
	t->k1 = z ^ (z >> 31);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint64_t vd__siphash(const struct vd__tcp *t, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v0 = t->k0 ^ 0x736f6d6570736575ull;
	uint64_t v1 = t->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = t->k0 ^ 0x6c7967656e657261ull;
	uint64_t v3 = t->k1 ^ 0x7465646279746573ull;
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = le64(p + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[full + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* MSS values a cookie can carry (common path MTUs minus 40; the first is RFC 9293's default). */
static const uint16_t cookie_mss[8] = { 536, 1220, 1360, 1440, 1460, 4312, 8960, 65495 };

#define COOKIE_PERIOD_MS 64000ull

static uint32_t cookie_hash(struct vd__tcp *t, const struct tcp_seg *s, uint32_t count, uint32_t cisn)
{
	uint8_t b[24];
	memcpy(b, &s->dip, 4);
	memcpy(b + 4, &s->sip, 4);
	memcpy(b + 8, &s->dport, 2);
	memcpy(b + 10, &s->sport, 2);
	memcpy(b + 12, &count, 4);
	memcpy(b + 16, &cisn, 4);
	memcpy(b + 20, "cook", 4); /* domain separation from the ISN hash */
	return (uint32_t)vd__siphash(t, b, sizeof(b)) & 0xffffffu;
}

/* The cookie ISN for a SYN s; mss: the largest we may use (min of the peer's and ours). */
uint32_t vd__cookie_make(struct vd__tcp *t, const struct tcp_seg *s, uint16_t mss, uint32_t *mss_out)
{
	uint32_t idx = 0;
	for (uint32_t i = 0; i < 8; i++)
		if (cookie_mss[i] <= mss)
			idx = i;
	*mss_out = cookie_mss[idx];
	uint32_t count = (uint32_t)(t->now / NS_PER_MS / COOKIE_PERIOD_MS);
	return (count & 31u) << 27 | idx << 24 | cookie_hash(t, s, count, s->seq);
}

/* Checks the cookie in the ACK s (ACK = cookie + 1, SEQ = client ISN + 1). Returns the MSS or 0. */
uint32_t vd__cookie_check(struct vd__tcp *t, const struct tcp_seg *s)
{
	uint32_t cookie = s->ack - 1, cisn = s->seq - 1;
	uint32_t now = (uint32_t)(t->now / NS_PER_MS / COOKIE_PERIOD_MS);
	for (uint32_t back = 0; back < 2; back++) {
		uint32_t count = now - back;
		if ((count & 31u) != cookie >> 27)
			continue;
		if (cookie_hash(t, s, count, cisn) == (cookie & 0xffffffu))
			return cookie_mss[(cookie >> 24) & 7u];
	}
	return 0;
}

#define TS_OPT_BITS 6
#define TS_OPT_MASK 0x3fu
#define TS_OPT_MARK 0x20u
#define TS_OPT_SACK 0x10u
#define TS_OPT_NOWS 0x0fu

/* Our SYN-ACK's TSval with the SYN's options in its low bits; never above ts_now (the peer's PAWS
 * would otherwise drop our next segments as older than this one). */
uint32_t vd__cookie_tsval(uint32_t ts_now, const struct tcp_opts *o)
{
	uint32_t bits = TS_OPT_MARK | (o->sack_ok ? TS_OPT_SACK : 0) | (o->has_ws ? o->ws : TS_OPT_NOWS);
	uint32_t v = (ts_now & ~TS_OPT_MASK) | bits;
	if (SEQ_GT(v, ts_now))
		v = ((ts_now & ~TS_OPT_MASK) - (1u << TS_OPT_BITS)) | bits;
	return v;
}

/* Decodes the options from the echoed TSecr; returns 0 when it holds none (no marker). */
int vd__cookie_ts_decode(uint32_t tsecr, int *ws, int *sack)
{
	if (!(tsecr & TS_OPT_MARK))
		return 0;
	*sack = (tsecr & TS_OPT_SACK) != 0;
	*ws = (tsecr & TS_OPT_NOWS) == TS_OPT_NOWS ? -1 : (int)(tsecr & TS_OPT_NOWS);
	return 1;
}
