/* SPDX-License-Identifier: MIT */
/*
 * msg_peer: one side of a lab test of the messaging engine (include/viaduct/msg.h).
 *
 *   msg_peer run  [common] --peer IP:PORT --role a|b [--bytes N] [--seed S] [--max-size M] [--fixed-size F]
 *       Bidirectional workload: this side sends a deterministic sequence of messages (sizes 1 B .. M, drawn
 *       from a seeded distribution that is heavy on small messages but puts most bytes in large ones)
 *       totalling at least N bytes, and at the same time receives the peer's sequence, which it can compute
 *       too (role a draws from seed 2S, role b from 2S + 1). Every message carries its sequence number in
 *       the match bits and, when at least 16 bytes long, in a header with a CRC-32C of the rest of its
 *       content; a shorter one is compared byte for byte with the seeded pattern. The receiver checks that
 *       every message arrives exactly once, intact, at its expected length and in send order. A stream of
 *       0 bytes has no message. Exit 0 only if everything sent completed and everything expected
 *       arrived verified; prints one summary line. --bytes-b N: role b's stream is N bytes (default: the
 *       same as role a's, --bytes).
 *   msg_peer gone [common] --peer IP:PORT --role a|b [--bytes N] ...
 *       The same workload, but the peer is expected to vanish (the test kills it with SIGKILL): exit 0 only
 *       if vd_ep_peer_gone() reports the peer and every pending send and every matched receive completes
 *       with -ETIMEDOUT or -ECONNRESET (receives not matched yet are cancelled then; one that a new
 *       incarnation of the peer's address fills first is not counted); prints "GONE <realtime ns>
 *       <error>" when the notice arrives.
 *   common: --backend xdp|udp|auto --local IP:PORT --mode auto|direct|steered --timeout-s T
 *           --peer-timeout-ms P --window W --eager E --pull-blocks B --rto-min-us R --unexpected-max U
 *           --inflight K (sends outstanding, default 8) --recv-inflight K2 (receives posted, default K:
 *           fewer makes messages arrive unexpected and exercises back-pressure)
 *
 * Prints "READY ADDR" once the endpoint is open. Summary line:
 *   "OK|FAIL sent B bytes/M msgs recv B bytes/M msgs in S s: G Gbit/s (both directions) retransmits R
 *    pull_retransmits P malformed X dup D backpressure K backend NAME"
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/msg.h>

#define TAG 0x5644ull               /* top 16 match bits of every workload message */
#define SEQ_MASK ((1ull << 48) - 1)
#define HDR 16                      /* u64 seq, u32 crc32c of bytes [16, len), u32 len (low bits) */
#define PAT_EXTRA 65536             /* pattern window: message seq starts at a seeded offset in it */

struct args {
	const char *cmd, *peer;
	struct vd_ep_opts o;
	int role; /* 0: a, 1: b */
	uint64_t bytes, bytes_b, seed, max_size, fixed;
	int timeout_s, bytes_b_set;
	unsigned inflight, rinflight; /* sends and receives outstanding */
};

/* --- deterministic generators ---------------------------------------------------------------------- */

/* splitmix64: a small, well-mixed generator; the same seed gives the same sizes on both sides. */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Log-uniform in [lo, hi]. */
static uint64_t log_uniform(uint64_t *s, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	int blo = 63 - __builtin_clzll(lo), bhi = 63 - __builtin_clzll(hi);
	int b = blo + (int)(mix(s) % (uint64_t)(bhi - blo + 1));
	uint64_t base = 1ull << b;
	uint64_t v = base + mix(s) % base;
	return v < lo ? lo : v > hi ? hi : v;
}

/* One message size: 60% 1..256 B, 25% 257 B..32 KiB (eager), 10% 32 KiB..1 MiB, 5% 1 MiB..max. With
 * max 4 MiB the mean is about 160 KiB and more than 90% of the bytes are in messages above 32 KiB. */
static uint64_t draw_size(uint64_t *s, uint64_t max, uint64_t fixed)
{
	if (fixed)
		return fixed;
	uint64_t r = mix(s) % 100, v;
	if (r < 60)
		v = log_uniform(s, 1, 256);
	else if (r < 85)
		v = log_uniform(s, 257, 32768);
	else if (r < 95)
		v = log_uniform(s, 32769, 1u << 20);
	else
		v = log_uniform(s, (1u << 20) + 1, max);
	return v > max ? max : v;
}

struct stream {
	uint64_t rng;      /* size generator */
	uint64_t seed;     /* pattern offsets */
	uint64_t msgs;     /* messages in the whole stream */
};

static void stream_init(struct stream *st, uint64_t seed, uint64_t bytes, const struct args *a)
{
	st->rng = seed;
	st->seed = seed * 0x2545f4914f6cdd1dull + 1;
	/* Count the messages once (the receiver must know when it is done). */
	uint64_t r = seed, sum = 0, n = 0;
	while (sum < bytes) {
		sum += draw_size(&r, a->max_size, a->fixed);
		n++;
	}
	st->msgs = n;
}

/* Size of the next message of the stream. */
static uint64_t stream_next(struct stream *st, const struct args *a)
{
	return draw_size(&st->rng, a->max_size, a->fixed);
}

static size_t pat_off(const struct stream *st, uint64_t seq)
{
	uint64_t x = st->seed ^ (seq * 0x9e3779b97f4a7c15ull);
	return (size_t)(mix(&x) % PAT_EXTRA);
}

/* CRC-32C (Castagnoli) with the SSE4.2 instruction: fast enough to check gigabytes on one core. */
__attribute__((target("sse4.2"))) static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint64_t c = 0xffffffffu;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		n -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (n--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return ~c32;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* --- the workload ---------------------------------------------------------------------------------- */

struct slot {
	int is_send, busy;
	struct vd_req *req;
	uint64_t seq, len;
	uint8_t hdr[HDR];
	uint8_t *buf; /* receive buffer */
};

struct run {
	const struct args *a;
	struct vd_ep *ep;
	struct vd_peer *peer;
	uint8_t *pat; /* max_size + PAT_EXTRA bytes of seeded pattern (both streams share it) */
	struct stream tx, rx;
	uint64_t tx_next, tx_done, tx_bytes;     /* next seq to send, sends completed */
	uint64_t rx_posted, rx_done, rx_bytes;   /* receives posted, messages verified */
	uint64_t errors, err_sends, err_recvs, foreign;
	int first_err;
	struct slot *sends, *recvs;
	uint64_t *rx_sizes;                      /* expected sizes, by seq (computed once) */
};

static int post_send(struct run *r, struct slot *s)
{
	const struct args *a = r->a;
	uint64_t seq = r->tx_next;
	uint64_t len = stream_next(&r->tx, a);
	const uint8_t *body = r->pat + pat_off(&r->tx, seq);
	struct iovec iov[2];
	int cnt;

	if (len >= HDR) {
		uint32_t crc = crc32c(body, len - HDR);
		uint32_t l32 = (uint32_t)len;
		memcpy(s->hdr, &seq, 8);
		memcpy(s->hdr + 8, &crc, 4);
		memcpy(s->hdr + 12, &l32, 4);
		iov[0] = (struct iovec){ s->hdr, HDR };
		iov[1] = (struct iovec){ (void *)body, len - HDR };
		cnt = 2;
	} else {
		iov[0] = (struct iovec){ (void *)body, len };
		cnt = 1;
	}
	s->is_send = 1;
	s->seq = seq;
	s->len = len;
	int rc = vd_isendv(r->ep, iov, cnt, r->peer, (TAG << 48) | seq, s, &s->req);
	if (rc < 0)
		return rc;
	s->busy = 1;
	r->tx_next++;
	return 0;
}

static int post_recv(struct run *r, struct slot *s)
{
	s->is_send = 0;
	s->seq = r->rx_posted;
	int rc = vd_irecv(r->ep, s->buf, r->a->max_size, TAG << 48, ~SEQ_MASK, s, &s->req);
	if (rc < 0)
		return rc;
	s->busy = 1;
	r->rx_posted++;
	return 0;
}

static void fail(struct run *r, const char *what, uint64_t seq, uint64_t x, uint64_t y)
{
	r->errors++;
	if (r->errors <= 10)
		fprintf(stderr, "msg_peer: %s: seq %" PRIu64 " (%" PRIu64 " vs %" PRIu64 ")\n", what, seq, x, y);
}

/*
 * Checks one received message. Receives are posted in stream order and all match every message of the
 * peer, so by the non-overtaking rule the k-th receive posted must get the peer's k-th message (they
 * complete in any order: a rendezvous message finishes after eager ones matched later). Each receive
 * taking exactly its own seq proves every message arrived exactly once and in order.
 */
static void verify(struct run *r, struct slot *s, const struct vd_status *st)
{
	uint64_t want = s->seq;
	uint64_t seq = st->match & SEQ_MASK;

	if ((st->match >> 48) != TAG || seq != want) {
		fail(r, "out of order or duplicate", want, seq, st->match >> 48);
		return;
	}
	uint64_t len = r->rx_sizes[seq];
	if (st->msg_len != len || st->xfer_len != len) {
		fail(r, "wrong length", seq, st->msg_len, len);
		return;
	}
	const uint8_t *body = r->pat + pat_off(&r->rx, seq);
	if (len >= HDR) {
		uint64_t hseq;
		uint32_t crc, l32;
		memcpy(&hseq, s->buf, 8);
		memcpy(&crc, s->buf + 8, 4);
		memcpy(&l32, s->buf + 12, 4);
		if (hseq != seq || l32 != (uint32_t)len) {
			fail(r, "bad header", seq, hseq, l32);
			return;
		}
		uint32_t got = crc32c(s->buf + HDR, len - HDR);
		if (got != crc) {
			fail(r, "checksum mismatch", seq, got, crc);
			return;
		}
	} else if (memcmp(s->buf, body, len)) {
		fail(r, "content mismatch", seq, 0, len);
		return;
	}
	r->rx_bytes += len;
	r->rx_done++;
}

static int gone_error(int e)
{
	return e == -ETIMEDOUT || e == -ECONNRESET;
}

static volatile sig_atomic_t stop;
static void on_sig(int sig)
{
	(void)sig;
	stop = 1;
}

static int workload(struct run *r, int expect_gone)
{
	const struct args *a = r->a;
	struct vd_ep *ep = r->ep;
	unsigned k = a->inflight;
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)a->timeout_s * 1000000000ull;
	int gone_seen = 0, gone_err = 0;

	for (unsigned i = 0; i < k; i++) {
		if (r->tx_next < r->tx.msgs && post_send(r, &r->sends[i]) < 0)
			return -1;
		if (i < a->rinflight && r->rx_posted < r->rx.msgs && post_recv(r, &r->recvs[i]) < 0)
			return -1;
	}
	while (!stop) {
		int busy_sends = 0, busy_recvs = 0;
		for (unsigned i = 0; i < k; i++) {
			busy_sends += r->sends[i].busy;
			busy_recvs += r->recvs[i].busy;
		}
		if (!busy_sends && !busy_recvs)
			break;
		if (now_ns() > deadline) {
			fprintf(stderr, "msg_peer: timeout: %d sends and %d receives pending (sent %" PRIu64
				"/%" PRIu64 ", received %" PRIu64 "/%" PRIu64 ")\n",
				busy_sends, busy_recvs, r->tx_done, r->tx.msgs, r->rx_done, r->rx.msgs);
			return -1;
		}
		struct vd_peer *gp;
		int ge;
		if (vd_ep_peer_gone(ep, &gp, &ge) == 1 && !gone_seen) {
			gone_seen = 1;
			gone_err = ge;
			printf("GONE %" PRIu64 " %d\n", real_ns(), ge);
			fflush(stdout);
			/* Receives not matched yet wait for any sender: they are not the peer's. Cancel them. */
			for (unsigned i = 0; i < k; i++)
				if (r->recvs[i].busy && r->recvs[i].req)
					vd_cancel(ep, r->recvs[i].req);
		}
		struct vd_req *done;
		struct vd_status st;
		int rc = vd_wait_any(ep, &done, &st, 20);
		if (rc < 0) {
			fprintf(stderr, "msg_peer: vd_wait_any: %s\n", strerror(-rc));
			return -1;
		}
		if (rc == 0)
			continue;
		struct slot *s = st.context;
		s->busy = 0;
		s->req = NULL;
		if (s->is_send) {
			if (st.error) {
				r->err_sends++;
				if (!expect_gone || !gone_error(st.error))
					fail(r, strerror(-st.error), s->seq, 0, 0);
				continue;
			}
			r->tx_done++;
			r->tx_bytes += s->len;
			if (!gone_seen && r->tx_next < r->tx.msgs && post_send(r, s) < 0)
				return -1;
		} else {
			if (st.error) {
				r->err_recvs++;
				if (!expect_gone || (!gone_error(st.error) && st.error != -ECANCELED))
					fail(r, strerror(-st.error), s->seq, 0, 0);
				continue;
			}
			if (expect_gone && st.peer != r->peer) {
				/* A new incarnation of the peer (same address, new session) is another sender:
				 * a receive still posted may take its first message. Not part of the check. */
				r->foreign++;
				continue;
			}
			verify(r, s, &st);
			if (!gone_seen && r->rx_posted < r->rx.msgs && post_recv(r, s) < 0)
				return -1;
		}
	}
	if (expect_gone) {
		if (!gone_seen) {
			fprintf(stderr, "msg_peer: no peer-gone notice\n");
			return -1;
		}
		if (!gone_error(gone_err))
			return -1;
	}
	return 0;
}

/* After the workload: keep answering for a while so the peer gets our last acks and DONE records. */
static void linger(struct vd_ep *ep, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull, quiet = now_ns();
	while (now_ns() < end && now_ns() - quiet < 300000000ull) {
		if (vd_ep_progress(ep) > 0)
			quiet = now_ns();
		else
			usleep(200);
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: msg_peer run|gone --peer IP:PORT --role a|b [--backend xdp|udp|auto] [--local IP:PORT]\n"
			"       [--mode auto|direct|steered] [--bytes N] [--seed S] [--max-size M] [--fixed-size F]\n"
			"       [--inflight K] [--timeout-s T] [--peer-timeout-ms P] [--window W] [--eager E]\n"
			"       [--pull-blocks B] [--rto-min-us R] [--recv-inflight K2] [--unexpected-max U]\n");
	return 2;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	default: break;
	}
	return v;
}

static int parse(int argc, char **argv, struct args *a)
{
	static const struct option lo[] = {
		{ "backend", 1, 0, 'b' },  { "local", 1, 0, 'l' },      { "mode", 1, 0, 'm' },
		{ "peer", 1, 0, 'p' },     { "role", 1, 0, 'r' },       { "bytes", 1, 0, 'n' },
		{ "seed", 1, 0, 's' },     { "max-size", 1, 0, 'M' },   { "fixed-size", 1, 0, 'F' },
		{ "timeout-s", 1, 0, 't' }, { "peer-timeout-ms", 1, 0, 'P' }, { "window", 1, 0, 'w' },
		{ "eager", 1, 0, 'e' },    { "inflight", 1, 0, 'k' },   { "bytes-b", 1, 0, 'N' },
		{ "pull-blocks", 1, 0, 'B' }, { "rto-min-us", 1, 0, 'R' },
		{ "recv-inflight", 1, 0, 'K' }, { "unexpected-max", 1, 0, 'U' },
		{ 0, 0, 0, 0 },
	};
	if (argc < 2)
		return usage();
	a->cmd = argv[1];
	vd_ep_opts_init(&a->o);
	a->o.nic.queue = -1;
	a->bytes = 64ull << 20;
	a->seed = 1;
	a->max_size = 4u << 20;
	a->timeout_s = 120;
	a->inflight = 8;
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			a->o.nic.backend = !strcmp(optarg, "xdp")   ? VD_BACKEND_XDP
					   : !strcmp(optarg, "udp") ? VD_BACKEND_UDP
								    : VD_BACKEND_AUTO;
			break;
		case 'l': a->o.nic.local = optarg; break;
		case 'm':
			a->o.nic.rx_mode = !strcmp(optarg, "direct")    ? VD_RX_DIRECT
					   : !strcmp(optarg, "steered") ? VD_RX_STEERED
									: VD_RX_AUTO;
			break;
		case 'p': a->peer = optarg; break;
		case 'r': a->role = !strcmp(optarg, "b"); break;
		case 'n': a->bytes = parse_size(optarg); break;
		case 'N': a->bytes_b = parse_size(optarg); a->bytes_b_set = 1; break;
		case 's': a->seed = strtoull(optarg, NULL, 0); break;
		case 'M': a->max_size = parse_size(optarg); break;
		case 'F': a->fixed = parse_size(optarg); break;
		case 't': a->timeout_s = atoi(optarg); break;
		case 'P': a->o.peer_timeout_ms = (uint32_t)atoi(optarg); break;
		case 'w': a->o.window = (uint32_t)atoi(optarg); break;
		case 'e': a->o.eager_max = (uint32_t)parse_size(optarg); break;
		case 'B': a->o.pull_blocks = (uint32_t)atoi(optarg); break;
		case 'R': a->o.rto_min_us = (uint32_t)atoi(optarg); break;
		case 'k': a->inflight = (unsigned)atoi(optarg); break;
		case 'K': a->rinflight = (unsigned)atoi(optarg); break;
		case 'U': a->o.unexpected_max = parse_size(optarg); break;
		default: return usage();
		}
	}
	if (!a->rinflight)
		a->rinflight = a->inflight;
	if (!a->peer || a->max_size < 1 || a->inflight < 1 || a->inflight > 256 || a->rinflight > a->inflight)
		return usage();
	if (!a->bytes_b_set)
		a->bytes_b = a->bytes;
	if (a->fixed > a->max_size)
		a->max_size = a->fixed;
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	int rc = parse(argc, argv, &a);
	if (rc)
		return rc;
	int expect_gone = !strcmp(a.cmd, "gone");
	if (!expect_gone && strcmp(a.cmd, "run"))
		return usage();
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct run r = { .a = &a };
	uint64_t mine = a.role ? a.bytes_b : a.bytes, theirs = a.role ? a.bytes : a.bytes_b;
	stream_init(&r.tx, a.seed * 2 + (uint64_t)a.role, mine, &a);
	stream_init(&r.rx, a.seed * 2 + (uint64_t)!a.role, theirs, &a);
	r.rx_sizes = malloc((r.rx.msgs + 1) * sizeof(*r.rx_sizes));
	r.pat = malloc(a.max_size + PAT_EXTRA);
	r.sends = calloc(a.inflight, sizeof(*r.sends));
	r.recvs = calloc(a.inflight, sizeof(*r.recvs));
	if (!r.rx_sizes || !r.pat || !r.sends || !r.recvs) {
		fprintf(stderr, "msg_peer: out of memory\n");
		return 1;
	}
	{
		uint64_t g = r.rx.rng;
		for (uint64_t i = 0; i < r.rx.msgs; i++)
			r.rx_sizes[i] = draw_size(&g, a.max_size, a.fixed);
		uint64_t p = 0x1234 + a.seed;
		for (uint64_t i = 0; i + 8 <= a.max_size + PAT_EXTRA; i += 8) {
			uint64_t v = mix(&p);
			memcpy(r.pat + i, &v, 8);
		}
	}
	/* Receive buffers are sized for the largest message (lengths are checked against the expected). */
	for (unsigned i = 0; i < a.rinflight; i++) {
		r.recvs[i].buf = malloc(a.max_size);
		if (!r.recvs[i].buf) {
			fprintf(stderr, "msg_peer: out of memory\n");
			return 1;
		}
	}

	rc = vd_ep_open(&r.ep, &a.o);
	if (rc < 0) {
		fprintf(stderr, "msg_peer: vd_ep_open: %s\n", strerror(-rc));
		return 1;
	}
	struct vd_addr me;
	char text[VD_ADDR_STRLEN];
	vd_ep_addr(r.ep, &me);
	printf("READY %s %s\n", vd_addr_format(&me, text, sizeof(text)), vd_nic_backend_name(vd_ep_nic(r.ep)));
	rc = vd_peer_resolve(r.ep, a.peer, &r.peer);
	if (rc < 0) {
		fprintf(stderr, "msg_peer: vd_peer_resolve %s: %s\n", a.peer, strerror(-rc));
		return 1;
	}

	uint64_t t0 = now_ns();
	rc = workload(&r, expect_gone);
	double secs = (double)(now_ns() - t0) / 1e9;
	if (!expect_gone)
		linger(r.ep, 2000);

	struct vd_ep_stats es;
	struct vd_nic_stats ns;
	vd_ep_stats(r.ep, &es);
	vd_nic_stats(vd_ep_nic(r.ep), &ns);
	int ok;
	if (expect_gone)
		ok = rc == 0 && r.errors == 0 && (r.err_sends > 0 || r.tx.msgs == 0);
	else
		ok = rc == 0 && r.errors == 0 && r.tx_done == r.tx.msgs && r.rx_done == r.rx.msgs;
	double gbps = secs > 0 ? (double)(r.tx_bytes + r.rx_bytes) * 8 / secs / 1e9 : 0;
	printf("%s sent %" PRIu64 " bytes/%" PRIu64 " msgs recv %" PRIu64 " bytes/%" PRIu64 " msgs in %.2f s: "
	       "%.2f Gbit/s (both directions) retransmits %" PRIu64 " pull_retransmits %" PRIu64
	       " malformed %" PRIu64 " dup %" PRIu64 " backpressure %" PRIu64 " errors %" PRIu64
	       " failed_sends %" PRIu64 " failed_recvs %" PRIu64 " nic_malformed %" PRIu64 " nic_dropped %" PRIu64 " nic_tx_busy %" PRIu64
	       " backend %s\n",
	       ok ? "OK" : "FAIL", r.tx_bytes, r.tx_done, r.rx_bytes, r.rx_done, secs, gbps, es.retransmits,
	       es.pull_retransmits, es.malformed, es.dup_frames, es.backpressure, r.errors, r.err_sends,
	       r.err_recvs, ns.rx_malformed, ns.rx_dropped, ns.tx_busy, vd_nic_backend_name(vd_ep_nic(r.ep)));
	vd_ep_close(r.ep);
	for (unsigned i = 0; i < a.rinflight; i++)
		free(r.recvs[i].buf);
	free(r.sends);
	free(r.recvs);
	free(r.pat);
	free(r.rx_sizes);
	return ok ? 0 : 1;
}
