/* SPDX-License-Identifier: MIT */
/*
 * Packet-script harness for TCP conformance tests and the TCP fuzz target (header-only, so the unit tests
 * and tests/fuzz/ use it without build changes).
 *
 * Two IPv4-layer sim nics on one link with no impairment: the engine under test (vd__tcp over a nic at
 * 10.0.0.1) and a raw "peer" at 10.0.0.2 that the test drives segment by segment. The harness plays the
 * socket layer's part for the engine (received packets go into vd__tcp_input, vd__tcp_poll runs after
 * every batch and whenever the time it returned comes) and a packet-level TCP for the peer: it builds
 * segments with any flags, numbers, window and options (MSS, WS, SACK-permitted, SACK blocks, timestamps)
 * and a correct or deliberately wrong checksum, and it parses and checks everything the engine sends.
 *
 * It is written from the RFCs, not from the engine: the segment codec below is its own (RFC 9293 3.1
 * header, RFC 1071 checksum over the RFC 9293 3.1 pseudo-header, RFC 7323 / RFC 2018 option layouts).
 * Every packet the engine sends is checked: IPv4 header (RFC 791), TCP checksum, well-formed options, and
 * options that belong only on a SYN (MSS: RFC 9293 3.7.1; WS: RFC 7323 2.2; SACK-permitted: RFC 2018 2)
 * not appearing elsewhere. A violation counts in h->errors with a message on stderr; th_close() returns
 * the count, so every test ends with CHECK_EQ(th_close(&h), 0).
 *
 * Time: the sim link has zero delay by default, so what is sent is deliverable at once and a test sees
 * the engine's reaction to a segment before the clock moves. th_advance() moves the clock exactly to each
 * engine timer in between, so a timer's firing time is observable to the nanosecond. Fixed seeds and a
 * fixed engine secret make every run replay exactly.
 */
#ifndef VD_TEST_TCP_HARNESS_H
#define VD_TEST_TCP_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <viaduct/nic.h>

#include "lib/tcp/tcp.h"

#define TH_ENG_IP 0x0a000001u  /* 10.0.0.1, host order */
#define TH_PEER_IP 0x0a000002u /* 10.0.0.2 */
#define TH_MTU 1500u
#define TH_MAX_DATA 1500u      /* a segment's payload never exceeds the IP MTU */
#define TH_QCAP 1024u          /* engine segments queued for the test */
#define TH_RXCAP 65536u        /* in-order bytes a th_conn keeps from the engine */
#define TH_MS 1000000ull
#define TH_SEC 1000000000ull

/* TCP flags (RFC 9293 3.1). */
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define TH_URG 0x20

/* Sequence-space comparisons (RFC 9293 3.4: arithmetic modulo 2^32). */
static inline int th_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}
static inline int th_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

/* One TCP segment: built by the test or parsed from what the engine sent. Host byte order throughout. */
struct th_seg {
	uint64_t t_ns;           /* parsed: sim time when the peer received it */
	uint32_t src_ip, dst_ip;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;            /* the raw 16-bit field */
	uint16_t urp;
	uint8_t hlen;            /* parsed: TCP header length in bytes, options included */
	uint8_t has_mss, has_ws, sack_ok, has_ts, nsack;
	uint16_t mss;
	uint8_t ws;
	uint32_t tsval, tsecr;
	uint32_t sack[4][2];     /* [left, right) */
	/* Build only. */
	int bad_csum;            /* send with the checksum off by one */
	const uint8_t *raw_opts; /* non-NULL: these option bytes instead of the fields above */
	uint8_t raw_opts_len;    /* a multiple of 4, <= 40 */
	uint32_t len;
	uint8_t data[TH_MAX_DATA];
};

struct th {
	struct vd_sim_link *link;
	struct vd_nic *enic, *pnic;
	struct vd__tcp *tcp;
	uint64_t next_timer;     /* what vd__tcp_poll last returned */
	uint64_t notifies;       /* calls of the notify callback */
	int errors;              /* harness-detected protocol or setup errors */
	uint16_t ip_id;
	struct th_seg *q;        /* engine -> peer segments not yet taken by the test */
	uint32_t q_head, q_n;
	uint64_t segs_seen;      /* all segments the peer received from the engine */
	uint32_t bytes_limit;    /* > 0: a received segment with more payload is an error (set by tests) */
	int allow_unroutable;    /* packets to addresses or ports nobody owns are expected (fuzzing) */
};

/* The peer's side of one connection: what a minimal RFC 9293 peer keeps. */
struct th_conn {
	struct vd__tcb *tcb;     /* the engine's socket */
	uint16_t eport, pport;   /* engine's and peer's port */
	uint32_t eiss, piss;     /* initial sequence numbers */
	uint32_t snd_nxt;        /* peer: next sequence number it sends */
	uint32_t rcv_nxt;        /* peer: next sequence number expected from the engine */
	uint16_t win;            /* window field the peer advertises */
	uint8_t ws_eng;          /* the engine's shift (from its SYN), 0 if none */
	int ws_ok;               /* both sent WS (RFC 7323 2.2: scaling used only then) */
	int ts;                  /* timestamps negotiated (RFC 7323 3.2) */
	int sack;                /* SACK-permitted both ways (RFC 2018 2) */
	uint32_t ts_val;         /* the peer's timestamp clock */
	uint32_t ts_recent;      /* last TSval from the engine */
	uint16_t eng_mss;        /* MSS option the engine sent (0: none) */
	uint32_t eng_wnd;        /* the engine's last advertised window, scaled */
	int fin_rcvd;            /* the engine's FIN was received in order */
	struct th_seg syn;       /* the engine's SYN or SYN-ACK of the handshake */
	uint32_t rx_len;         /* in-order bytes received from the engine */
	uint8_t rx[TH_RXCAP];
	uint8_t have[TH_RXCAP];  /* which of rx's bytes arrived (out-of-order data is kept) */
};

/* What the peer puts in its SYN or SYN-ACK. */
struct th_synopt {
	uint16_t mss;            /* 0: no MSS option */
	int ws;                  /* < 0: no WS option */
	int sack_ok;
	int ts;
	uint16_t win;
};

static inline struct th_synopt th_synopt_all(void)
{
	struct th_synopt o = { .mss = 1460, .ws = 7, .sack_ok = 1, .ts = 1, .win = 65535 };
	return o;
}

static inline struct th_synopt th_synopt_none(void)
{
	struct th_synopt o = { .mss = 0, .ws = -1, .sack_ok = 0, .ts = 0, .win = 65535 };
	return o;
}

__attribute__((format(printf, 2, 3))) static inline void th_err(struct th *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tcp_harness: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	h->errors++;
}

/* ---- RFC 1071 checksum -------------------------------------------------------------------------- */

static inline uint32_t th_sum(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static inline uint16_t th_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The TCP checksum over the pseudo-header (RFC 9293 3.1) and the segment; 0 when a received one is valid. */
static inline uint16_t th_tcp_csum(uint32_t src, uint32_t dst, const uint8_t *tcp, size_t len)
{
	uint32_t s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + IPPROTO_TCP + (uint32_t)len;
	return th_fold(th_sum(tcp, len, s));
}

static inline void th_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void th_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline uint16_t th_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t th_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- building ----------------------------------------------------------------------------------- */

/* Writes the options of s into o (at most 40 bytes, padded to 4 with NOPs); returns their length. */
static inline size_t th_build_opts(const struct th_seg *s, uint8_t *o)
{
	size_t n = 0;
	if (s->raw_opts) {
		memcpy(o, s->raw_opts, s->raw_opts_len);
		return s->raw_opts_len;
	}
	if (s->has_mss) {
		o[n++] = 2, o[n++] = 4;
		th_put16(o + n, s->mss), n += 2;
	}
	if (s->sack_ok) {
		o[n++] = 1, o[n++] = 1, o[n++] = 4, o[n++] = 2;
	}
	if (s->has_ts) {
		o[n++] = 1, o[n++] = 1, o[n++] = 8, o[n++] = 10;
		th_put32(o + n, s->tsval), n += 4;
		th_put32(o + n, s->tsecr), n += 4;
	}
	if (s->has_ws) {
		o[n++] = 1, o[n++] = 3, o[n++] = 3, o[n++] = s->ws;
	}
	unsigned nsack = s->nsack;
	if (nsack > (40 - n - 2) / 8)
		nsack = (unsigned)((40 - n - 2) / 8);
	if (nsack) {
		o[n++] = 1, o[n++] = 1, o[n++] = 5, o[n++] = (uint8_t)(2 + 8 * nsack);
		for (unsigned i = 0; i < nsack; i++) {
			th_put32(o + n, s->sack[i][0]), n += 4;
			th_put32(o + n, s->sack[i][1]), n += 4;
		}
	}
	while (n & 3)
		o[n++] = 1;
	return n;
}

/* Builds the IPv4 packet for s into pkt (at least 60 + len bytes); returns its length. */
static inline size_t th_build(struct th *h, const struct th_seg *s, uint8_t *pkt)
{
	uint8_t *tcp = pkt + 20;
	size_t olen = th_build_opts(s, tcp + 20);
	size_t tlen = 20 + olen + s->len;
	th_put16(tcp, s->sport);
	th_put16(tcp + 2, s->dport);
	th_put32(tcp + 4, s->seq);
	th_put32(tcp + 8, s->ack);
	tcp[12] = (uint8_t)(((20 + olen) / 4) << 4);
	tcp[13] = s->flags;
	th_put16(tcp + 14, s->win);
	th_put16(tcp + 16, 0);
	th_put16(tcp + 18, s->urp);
	memcpy(tcp + 20 + olen, s->data, s->len);
	uint16_t c = th_tcp_csum(s->src_ip, s->dst_ip, tcp, tlen);
	if (s->bad_csum)
		c ^= 0x0101; /* off by a changed sum, never just the other zero (0x0000 vs 0xffff) */
	th_put16(tcp + 16, c);

	/* RFC 791 header: no options, DF, TTL 64. */
	pkt[0] = 0x45;
	pkt[1] = 0;
	th_put16(pkt + 2, (uint16_t)(20 + tlen));
	th_put16(pkt + 4, h->ip_id++);
	th_put16(pkt + 6, 0x4000);
	pkt[8] = 64;
	pkt[9] = IPPROTO_TCP;
	th_put16(pkt + 10, 0);
	th_put32(pkt + 12, s->src_ip);
	th_put32(pkt + 16, s->dst_ip);
	th_put16(pkt + 10, th_fold(th_sum(pkt, 20, 0)));
	return 20 + tlen;
}

/* ---- parsing ------------------------------------------------------------------------------------ */

/* Parses TCP options (RFC 9293 3.1, 3.2); returns 0, or -1 when malformed. */
static inline int th_parse_opts(const uint8_t *o, size_t n, struct th_seg *s)
{
	size_t i = 0;
	while (i < n) {
		uint8_t kind = o[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2 || i + o[i + 1] > n)
			return -1;
		uint8_t l = o[i + 1];
		switch (kind) {
		case 2:
			if (l != 4)
				return -1;
			s->has_mss = 1;
			s->mss = th_get16(o + i + 2);
			break;
		case 3:
			if (l != 3)
				return -1;
			s->has_ws = 1;
			s->ws = o[i + 2];
			break;
		case 4:
			if (l != 2)
				return -1;
			s->sack_ok = 1;
			break;
		case 5:
			if (l < 10 || (l - 2) % 8 != 0 || l > 34)
				return -1;
			s->nsack = (uint8_t)((l - 2) / 8);
			for (unsigned k = 0; k < s->nsack; k++) {
				s->sack[k][0] = th_get32(o + i + 2 + 8 * k);
				s->sack[k][1] = th_get32(o + i + 6 + 8 * k);
			}
			break;
		case 8:
			if (l != 10)
				return -1;
			s->has_ts = 1;
			s->tsval = th_get32(o + i + 2);
			s->tsecr = th_get32(o + i + 6);
			break;
		default:
			return -1; /* the engine has no reason to send any other option */
		}
		i += l;
	}
	return 0;
}

/* Parses and checks a packet the engine sent; returns 0, or -1 (counted in h->errors) if it is wrong. */
static inline int th_parse(struct th *h, const uint8_t *p, size_t n, struct th_seg *s)
{
	memset(s, 0, offsetof(struct th_seg, data));
	if (n < 40 || p[0] >> 4 != 4 || (p[0] & 15) < 5) {
		th_err(h, "engine sent a packet that is not IPv4/TCP (len %zu)", n);
		return -1;
	}
	size_t ihl = (size_t)(p[0] & 15) * 4;
	if (th_get16(p + 2) != n || ihl + 20 > n || th_fold(th_sum(p, ihl, 0)) != 0 || p[9] != IPPROTO_TCP ||
	    p[8] == 0 || (th_get16(p + 6) & 0x3fff) != 0) {
		th_err(h, "engine sent a bad IPv4 header (len %zu tot %u proto %u ttl %u)", n, th_get16(p + 2), p[9],
		       p[8]);
		return -1;
	}
	s->src_ip = th_get32(p + 12);
	s->dst_ip = th_get32(p + 16);
	if (s->src_ip != TH_ENG_IP || s->dst_ip != TH_PEER_IP) {
		th_err(h, "engine sent from %08x to %08x", s->src_ip, s->dst_ip);
		return -1;
	}
	const uint8_t *t = p + ihl;
	size_t tlen = n - ihl;
	if (th_tcp_csum(s->src_ip, s->dst_ip, t, tlen) != 0) {
		th_err(h, "engine sent a segment with a wrong TCP checksum");
		return -1;
	}
	s->sport = th_get16(t);
	s->dport = th_get16(t + 2);
	s->seq = th_get32(t + 4);
	s->ack = th_get32(t + 8);
	s->hlen = (uint8_t)((t[12] >> 4) * 4);
	s->flags = t[13];
	s->win = th_get16(t + 14);
	s->urp = th_get16(t + 18);
	if (s->hlen < 20 || s->hlen > tlen) {
		th_err(h, "engine sent a TCP header length of %u", s->hlen);
		return -1;
	}
	if (th_parse_opts(t + 20, s->hlen - 20u, s) != 0) {
		th_err(h, "engine sent malformed or unknown options");
		return -1;
	}
	if (!(s->flags & TH_SYN) && (s->has_mss || s->has_ws || s->sack_ok))
		th_err(h, "engine sent MSS/WS/SACK-permitted on a non-SYN segment (RFC 9293 3.7.1, RFC 7323 2.2, "
			  "RFC 2018 2)");
	if (!(s->flags & TH_ACK) && !(s->flags & TH_RST) && !(s->flags & TH_SYN))
		th_err(h, "engine sent a segment without ACK (RFC 9293 3.10.7: ACK is always sent once synchronized)");
	s->len = (uint32_t)(tlen - s->hlen);
	if (s->len > TH_MAX_DATA || (h->bytes_limit && s->len > h->bytes_limit)) {
		th_err(h, "engine sent %u bytes of payload", s->len);
		return -1;
	}
	memcpy(s->data, t + s->hlen, s->len);
	s->t_ns = vd_sim_now_ns(h->link);
	return 0;
}

/* With TH_TRACE set in the environment, every segment both ways is printed (for debugging a failure). */
static inline void th_trace(const struct th *h, const char *dir, const struct th_seg *s)
{
	static int on = -1;
	if (on < 0)
		on = getenv("TH_TRACE") != NULL;
	if (!on)
		return;
	fprintf(stderr, "%10.6f %s %u>%u %s%s%s%s%s seq %u ack %u win %u len %u%s", (double)vd_sim_now_ns(h->link) / 1e9,
		dir, s->sport, s->dport, (s->flags & TH_SYN) ? "S" : "", (s->flags & TH_FIN) ? "F" : "",
		(s->flags & TH_RST) ? "R" : "", (s->flags & TH_PSH) ? "P" : "", (s->flags & TH_ACK) ? "." : "",
		s->seq, s->ack, s->win, s->len, s->bad_csum ? " BADCSUM" : "");
	if (s->has_ts)
		fprintf(stderr, " ts %u/%u", s->tsval, s->tsecr);
	for (unsigned i = 0; i < s->nsack; i++)
		fprintf(stderr, " sack %u-%u", s->sack[i][0], s->sack[i][1]);
	fprintf(stderr, "\n");
}

/* ---- engine side -------------------------------------------------------------------------------- */

static inline void th_notify_cb(void *ctx, struct vd__tcb *c)
{
	(void)c;
	((struct th *)ctx)->notifies++;
}

static inline int th_nic(struct vd_sim_link *l, const char *ip, struct vd_nic **out)
{
	struct vd_nic_opts o;
	memset(&o, 0, sizeof(o));
	o.backend = VD_BACKEND_SIM;
	o.sim = l;
	o.local = ip;
	o.layer = VD_NIC_LAYER_IPV4;
	o.same_host_shm = -1;
	return vd_nic_open(out, &o);
}

/* The default engine configuration of the tests: every field explicit, fixed secret. */
static inline struct vd__tcp_cfg th_cfg(void)
{
	struct vd__tcp_cfg c;
	memset(&c, 0, sizeof(c));
	c.sndbuf = 256 * 1024;
	c.rcvbuf = 256 * 1024;
	c.time_wait_ms = 60000;
	c.delack_ms = 40;
	c.rto_min_ms = 200;
	c.max_conns = 4096;
	c.secret = 0x7463707465737431ull; /* "tcptest1" */
	return c;
}

/* Opens link, nics and engine; cfg NULL: th_cfg(). Returns 0 or a negative errno. */
static inline int th_open(struct th *h, const struct vd__tcp_cfg *cfg, uint64_t seed)
{
	struct vd_sim_params sp;
	struct vd__tcp_cfg c = cfg ? *cfg : th_cfg();
	int rc;

	memset(h, 0, sizeof(*h));
	memset(&sp, 0, sizeof(sp));
	sp.seed = seed;
	sp.mtu = TH_MTU;
	h->next_timer = UINT64_MAX;
	h->q = calloc(TH_QCAP, sizeof(*h->q));
	if (!h->q)
		return -ENOMEM;
	if ((rc = vd_sim_link_new(&h->link, &sp)) || (rc = th_nic(h->link, "10.0.0.1", &h->enic)) ||
	    (rc = th_nic(h->link, "10.0.0.2", &h->pnic)) || (rc = vd__tcp_new(&h->tcp, h->enic, &c)))
		return rc;
	vd__tcp_set_notify(h->tcp, th_notify_cb, h);
	return 0;
}

/* Moves every deliverable packet: engine input and poll, peer receive and parse. Returns packets moved. */
static inline int th_pump(struct th *h)
{
	struct vd_frame f[32];
	int total = 0;

	for (int round = 0; round < 10000; round++) {
		int moved = 0, n;
		while ((n = vd_nic_rx_burst(h->enic, f, 32)) > 0) {
			for (int i = 0; i < n && h->tcp; i++)
				vd__tcp_input(h->tcp, f[i].data, f[i].len);
			vd_nic_rx_release(h->enic, f, (unsigned)n);
			moved += n;
		}
		h->next_timer = h->tcp ? vd__tcp_poll(h->tcp) : UINT64_MAX; /* NULL: the test freed the engine */
		while ((n = vd_nic_rx_burst(h->pnic, f, 32)) > 0) {
			for (int i = 0; i < n; i++) {
				if (h->q_n == TH_QCAP) {
					th_err(h, "more than %u engine segments unread by the test", TH_QCAP);
					break;
				}
				struct th_seg *s = &h->q[(h->q_head + h->q_n) % TH_QCAP];
				if (th_parse(h, f[i].data, f[i].len, s) == 0) {
					th_trace(h, "eng>", s);
					h->q_n++;
					h->segs_seen++;
				}
			}
			vd_nic_rx_release(h->pnic, f, (unsigned)n);
			moved += n;
		}
		total += moved;
		if (!moved)
			return total;
	}
	th_err(h, "packets still moving after 10000 rounds (a storm?)");
	return total;
}

static inline uint64_t th_now(const struct th *h)
{
	return vd_sim_now_ns(h->link);
}

/*
 * Moves the clock forward by ns, stopping at every engine timer on the way (vd__tcp_poll then runs at its
 * exact due time). Segments the engine sends meanwhile queue up for th_recv(). If stop_on_seg, returns as
 * soon as the peer has a segment to read. Returns the number of segments queued.
 */
static inline uint32_t th_advance_ex(struct th *h, uint64_t ns, int stop_on_seg)
{
	uint64_t target = th_now(h) + ns;
	int spins = 0;

	th_pump(h);
	while (!(stop_on_seg && h->q_n)) {
		uint64_t now = th_now(h);
		if (now >= target)
			break;
		uint64_t to = h->next_timer < target ? h->next_timer : target;
		if (to <= now) {
			/* The engine asks to be polled again at once: allow a few, then insist on progress. */
			if (++spins > 64) {
				th_err(h, "vd__tcp_poll keeps returning a time <= now (%llu <= %llu)",
				       (unsigned long long)h->next_timer, (unsigned long long)now);
				to = now + 1000;
			} else {
				th_pump(h);
				continue;
			}
		}
		spins = 0;
		vd_sim_advance(h->link, to - now);
		th_pump(h);
	}
	return h->q_n;
}

static inline uint32_t th_advance(struct th *h, uint64_t ns)
{
	return th_advance_ex(h, ns, 0);
}

/* Takes the oldest segment the engine sent (after delivering what is due); 1 if there was one. */
static inline int th_recv(struct th *h, struct th_seg *s)
{
	th_pump(h);
	if (!h->q_n)
		return 0;
	memcpy(s, &h->q[h->q_head], sizeof(*s));
	h->q_head = (h->q_head + 1) % TH_QCAP;
	h->q_n--;
	return 1;
}

/* Waits up to ns of virtual time for the next segment; 1 if one came. */
static inline int th_recv_within(struct th *h, struct th_seg *s, uint64_t ns)
{
	if (th_recv(h, s))
		return 1;
	th_advance_ex(h, ns, 1);
	return th_recv(h, s);
}

/* Drops every queued segment; returns how many. */
static inline uint32_t th_drain(struct th *h)
{
	th_pump(h);
	uint32_t n = h->q_n;
	h->q_head = (h->q_head + h->q_n) % TH_QCAP;
	h->q_n = 0;
	return n;
}

/* Sends a segment from the peer and lets the engine process it. Returns 0 or a negative errno. */
static inline int th_send(struct th *h, const struct th_seg *s)
{
	uint8_t pkt[60 + 40 + TH_MAX_DATA];
	th_trace(h, "peer>", s);
	size_t n = th_build(h, s, pkt);
	struct vd_addr to = { .ip = htonl(s->dst_ip) };
	int rc = vd_nic_send(h->pnic, &to, pkt, n);
	if (rc < 0) {
		th_err(h, "peer send failed: %d", rc);
		return rc;
	}
	th_pump(h);
	return 0;
}

/* Lets the peer nic receive for a TCP port (its side of connections, or a raw port). */
static inline int th_peer_port(struct th *h, uint16_t port)
{
	uint16_t p = htons(port);
	int rc = vd_nic_port_add(h->pnic, IPPROTO_TCP, &p);
	return rc == -EEXIST ? 0 : rc;
}

static inline struct vd__tcp_stats th_stats(const struct th *h)
{
	struct vd__tcp_stats s;
	vd__tcp_stats(h->tcp, &s);
	return s;
}

/* Frees everything; returns the harness error count (0 when everything the engine sent was well formed). */
static inline int th_close(struct th *h)
{
	if (h->link && !h->allow_unroutable) {
		/* A packet nobody on the link owns means a test sent to a port the engine does not own (the
		 * segment never reached it) or the engine answered a peer port the test did not open. */
		struct vd_sim_counters sc;
		vd_sim_counters(h->link, &sc);
		if (sc.unroutable)
			th_err(h, "%llu packets were unroutable on the sim link", (unsigned long long)sc.unroutable);
	}
	if (h->tcp)
		vd__tcp_free(h->tcp);
	if (h->enic)
		vd_nic_close(h->enic);
	if (h->pnic)
		vd_nic_close(h->pnic);
	if (h->link)
		vd_sim_link_free(h->link);
	free(h->q);
	int e = h->errors;
	memset(h, 0, sizeof(*h));
	return e;
}

/* ---- the application's side of the engine -------------------------------------------------------- */

static inline ssize_t th_app_send(struct vd__tcb *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };
	return vd__tcb_send(c, &iov, 1, 0);
}

static inline ssize_t th_app_recv(struct vd__tcb *c, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return vd__tcb_recv(c, &iov, 1, 0);
}

static inline int th_setopt_int(struct vd__tcb *c, int level, int name, int v)
{
	return vd__tcb_setopt(c, level, name, &v, sizeof(v));
}

static inline int th_state_is(const struct vd__tcb *c, const char *name)
{
	const char *s = vd__tcb_state_name(c);
	return s && strcmp(s, name) == 0;
}

/* A listener on 10.0.0.1:port; NULL on failure (counted). */
static inline struct vd__tcb *th_listen(struct th *h, uint16_t port, int backlog)
{
	struct vd__tcb *l = NULL;
	int rc;
	if ((rc = vd__tcb_new(h->tcp, &l)) || (rc = vd__tcb_bind(l, htonl(TH_ENG_IP), htons(port))) ||
	    (rc = vd__tcb_listen(l, backlog))) {
		th_err(h, "listen on %u failed: %d", port, rc);
		return NULL;
	}
	return l;
}

/* Deterministic test payload: byte i of a stream. */
static inline uint8_t th_pat(uint32_t i)
{
	return (uint8_t)(i * 131u + (i >> 8) * 7u + 1u);
}

static inline void th_fill(uint8_t *b, uint32_t off, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		b[i] = th_pat(off + i);
}

/* ---- the peer's side of a connection ------------------------------------------------------------- */

/* A segment of connection c from the peer with its current numbers (and timestamps if negotiated). */
static inline void th_seg_init(const struct th_conn *c, struct th_seg *s, uint8_t flags)
{
	memset(s, 0, offsetof(struct th_seg, data));
	s->src_ip = TH_PEER_IP;
	s->dst_ip = TH_ENG_IP;
	s->sport = c->pport;
	s->dport = c->eport;
	s->seq = c->snd_nxt;
	s->ack = (flags & TH_ACK) ? c->rcv_nxt : 0;
	s->flags = flags;
	s->win = c->win;
	if (c->ts) {
		s->has_ts = 1;
		s->tsval = c->ts_val;
		s->tsecr = c->ts_recent;
	}
}

/* Sends a segment of c, ticking the peer's timestamp clock. */
static inline int th_conn_send(struct th *h, struct th_conn *c, struct th_seg *s)
{
	c->ts_val++;
	return th_send(h, s);
}

/* A pure ACK of everything received so far. */
static inline int th_conn_ack(struct th *h, struct th_conn *c)
{
	struct th_seg s;
	th_seg_init(c, &s, TH_ACK);
	return th_conn_send(h, c, &s);
}

/* Sends len bytes (pattern from stream offset off) at the peer's snd_nxt and advances it. */
static inline int th_conn_data(struct th *h, struct th_conn *c, uint32_t off, uint32_t len, uint8_t extra)
{
	struct th_seg s;
	th_seg_init(c, &s, TH_ACK | TH_PSH | extra);
	s.len = len;
	th_fill(s.data, off, len);
	c->snd_nxt += len + ((extra & TH_FIN) ? 1u : 0u);
	return th_conn_send(h, c, &s);
}

/*
 * Takes in an engine segment of c as a receiver would: records its timestamp (RFC 7323 4.3, as TS.Recent
 * for in-sequence segments) and window, keeps its data (out-of-order data too, within the first TH_RXCAP
 * bytes of the stream, as a receiver queues it), moves rcv_nxt over what is contiguous and steps over an
 * in-order FIN. Returns 1 if it advanced rcv_nxt.
 */
static inline int th_conn_note(struct th_conn *c, const struct th_seg *s)
{
	uint32_t before = c->rcv_nxt;
	if (s->sport != c->eport || s->dport != c->pport)
		return 0;
	if (s->has_ts && th_le(s->seq, c->rcv_nxt))
		c->ts_recent = s->tsval;
	if (s->flags & TH_ACK)
		c->eng_wnd = (uint32_t)s->win << (c->ws_ok ? c->ws_eng : 0);
	if (s->len && !c->fin_rcvd && th_lt(c->rcv_nxt, s->seq + s->len)) {
		uint32_t base = c->eiss + 1;
		for (uint32_t i = 0; i < s->len; i++) {
			uint32_t sq = s->seq + i;
			if (th_lt(sq, c->rcv_nxt))
				continue;
			uint32_t o = sq - base;
			if (o < TH_RXCAP) {
				c->rx[o] = s->data[i];
				c->have[o] = 1;
			} else if (sq == c->rcv_nxt) {
				c->rx_len++; /* past the buffer: counted in order only */
				c->rcv_nxt++;
			}
		}
		while (c->rx_len < TH_RXCAP && c->have[c->rx_len])
			c->rx_len++;
		if (c->rx_len <= TH_RXCAP)
			c->rcv_nxt = base + c->rx_len;
	}
	if ((s->flags & TH_FIN) && s->seq + s->len == c->rcv_nxt && !c->fin_rcvd) {
		c->rcv_nxt++;
		c->fin_rcvd = 1;
	}
	return c->rcv_nxt != before;
}

/* Marks the first n stream bytes as received, with contents from buf (a test that dropped segments on
 * purpose and now lets the peer have them). */
static inline void th_conn_set_rcvd(struct th_conn *c, const uint8_t *buf, uint32_t n)
{
	for (uint32_t i = 0; i < n && i < TH_RXCAP; i++) {
		c->rx[i] = buf[i];
		c->have[i] = 1;
	}
	if (c->rx_len < n)
		c->rx_len = n;
	c->rcv_nxt = c->eiss + 1 + c->rx_len;
}

/* Whether the in-order bytes from the engine are the pattern from stream offset 0. */
static inline int th_conn_rx_ok(const struct th_conn *c, uint32_t expect_len)
{
	if (c->rx_len != expect_len)
		return 0;
	for (uint32_t i = 0; i < expect_len && i < TH_RXCAP; i++)
		if (c->rx[i] != th_pat(i))
			return 0;
	return 1;
}

/* Applies a SYN or SYN-ACK's options sent by the engine to c (RFC 7323 2.2/3.2, RFC 2018 2). */
static inline void th_conn_synopts(struct th_conn *c, const struct th_seg *syn, const struct th_synopt *o)
{
	c->ws_eng = syn->has_ws ? syn->ws : 0;
	c->ws_ok = syn->has_ws && o->ws >= 0;
	c->ts = syn->has_ts && o->ts;
	c->sack = syn->sack_ok && o->sack_ok;
	c->eng_mss = syn->has_mss ? syn->mss : 0;
	if (syn->has_ts)
		c->ts_recent = syn->tsval;
	c->eng_wnd = syn->win; /* RFC 7323 2.2: the window of a SYN is never scaled */
}

static inline void th_synopt_apply(struct th_seg *s, const struct th_synopt *o, uint32_t tsval, uint32_t tsecr)
{
	if (o->mss)
		s->has_mss = 1, s->mss = o->mss;
	if (o->ws >= 0)
		s->has_ws = 1, s->ws = (uint8_t)o->ws;
	s->sack_ok = (uint8_t)(o->sack_ok != 0);
	if (o->ts)
		s->has_ts = 1, s->tsval = tsval, s->tsecr = tsecr;
	s->win = o->win;
}

/* The peer's ISS for a port: fixed, and far from the engine's numbers. */
static inline uint32_t th_piss(uint16_t pport)
{
	return 0xf0000000u + (uint32_t)pport * 100000u;
}

/* Sets up c's peer half for a connection between engine port eport and peer port pport. */
static inline void th_conn_init(struct th_conn *c, uint16_t eport, uint16_t pport, const struct th_synopt *o)
{
	memset(c, 0, offsetof(struct th_conn, rx));
	memset(c->have, 0, sizeof(c->have));
	c->eport = eport;
	c->pport = pport;
	c->piss = th_piss(pport);
	c->snd_nxt = c->piss;
	c->win = o->win;
	c->ts_val = 100000u + pport;
}

/*
 * Passive open: the peer (port pport) connects to the engine's listener on eport and the test's side
 * accepts. Checks the SYN-ACK (RFC 9293 3.10.7.2: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>). Returns 0, or a
 * negative step number (with a message) on failure.
 */
static inline int th_passive_open(struct th *h, struct th_conn *c, struct vd__tcb *listener, uint16_t eport,
				  uint16_t pport, const struct th_synopt *o)
{
	struct th_seg s, r;
	int rc;

	th_conn_init(c, eport, pport, o);
	if ((rc = th_peer_port(h, pport))) {
		th_err(h, "peer port %u: %d", pport, rc);
		return -1;
	}
	th_seg_init(c, &s, TH_SYN);
	th_synopt_apply(&s, o, c->ts_val, 0);
	c->snd_nxt++;
	th_conn_send(h, c, &s);
	if (!th_recv(h, &r)) {
		th_err(h, "no answer to a SYN on port %u", eport);
		return -2;
	}
	if (r.flags != (TH_SYN | TH_ACK) || r.ack != c->piss + 1 || r.sport != eport || r.dport != pport) {
		th_err(h, "SYN answered with flags %#x ack %u (want SYN|ACK, %u)", r.flags, r.ack, c->piss + 1);
		return -3;
	}
	c->eiss = r.seq;
	c->rcv_nxt = r.seq + 1;
	c->syn = r;
	th_conn_synopts(c, &r, o);
	th_conn_ack(h, c);
	rc = vd__tcb_accept(listener, &c->tcb);
	if (rc) {
		th_err(h, "accept after the handshake: %d", rc);
		return -4;
	}
	return 0;
}

/*
 * Active open: the engine connects from an ephemeral port to the peer's port pport; the peer answers the
 * SYN with a SYN-ACK carrying o. Checks the engine's SYN and its ACK of the SYN-ACK (RFC 9293 3.10.7.3).
 */
static inline int th_active_open_delayed(struct th *h, struct th_conn *c, uint16_t pport, const struct th_synopt *o,
					 uint64_t synack_delay_ns)
{
	struct th_seg s, r;
	struct vd__tcb *t = NULL;
	int rc;

	if ((rc = th_peer_port(h, pport)) || (rc = vd__tcb_new(h->tcp, &t))) {
		th_err(h, "active open set-up: %d", rc);
		return -1;
	}
	rc = vd__tcb_connect(t, htonl(TH_PEER_IP), htons(pport));
	if (rc != -EINPROGRESS) {
		th_err(h, "connect returned %d, want -EINPROGRESS", rc);
		return -2;
	}
	if (!th_recv(h, &r) || r.flags != TH_SYN || r.dport != pport) {
		th_err(h, "no SYN after connect");
		return -3;
	}
	if (synack_delay_ns) {
		/* The peer answers late (a long round trip); a retransmitted SYN meanwhile is a failure. */
		th_advance(h, synack_delay_ns);
		if (th_drain(h)) {
			th_err(h, "SYN retransmitted within %llu ns", (unsigned long long)synack_delay_ns);
			return -3;
		}
	}
	th_conn_init(c, r.sport, pport, o);
	c->tcb = t;
	c->syn = r;
	c->eiss = r.seq;
	c->rcv_nxt = r.seq + 1;
	th_conn_synopts(c, &r, o);
	th_seg_init(c, &s, TH_SYN | TH_ACK);
	th_synopt_apply(&s, o, c->ts_val, r.has_ts ? r.tsval : 0);
	if (!(r.has_ts && o->ts))
		s.has_ts = 0;
	if (!r.has_ws)
		s.has_ws = 0; /* RFC 7323 2.2: WS in a SYN-ACK only if the SYN had it */
	if (!r.sack_ok)
		s.sack_ok = 0;
	c->snd_nxt++;
	th_conn_send(h, c, &s);
	if (!th_recv(h, &r) || r.flags != TH_ACK || r.seq != c->eiss + 1 || r.ack != c->piss + 1) {
		th_err(h, "SYN-ACK not acknowledged as RFC 9293 3.10.7.3 says");
		return -4;
	}
	th_conn_note(c, &r);
	if (!th_state_is(t, "ESTABLISHED") || !(vd__tcb_events(t) & POLLOUT)) {
		th_err(h, "after the handshake: state %s events %#x", vd__tcb_state_name(t), vd__tcb_events(t));
		return -5;
	}
	return 0;
}

static inline int th_active_open(struct th *h, struct th_conn *c, uint16_t pport, const struct th_synopt *o)
{
	return th_active_open_delayed(h, c, pport, o, 0);
}

#endif
