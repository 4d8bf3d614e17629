/* SPDX-License-Identifier: MIT */
/*
 * sock_peer: the viaduct side of the sockets interop lab test (tests/lab/test_sock_interop.sh). It uses
 * only the public sockets API (include/viaduct/socket.h) on a stack opened through viaductd
 * ($VIADUCT_SOCKET), so the peer can be anything: the test puts the Linux kernel's stack (python3) there.
 *
 *   sock_peer tcp-send HOST:PORT BYTES [--seed N]   connect, send BYTES pseudo-random bytes (SplitMix64
 *                                                   from the seed), shut down the write side, wait for the
 *                                                   peer's close; prints the SHA-256 of what was sent
 *   sock_peer tcp-recv PORT                         accept one connection, read to end of stream; prints
 *                                                   the SHA-256 of what was received
 *   sock_peer tcp-duplex HOST:PORT BYTES            connect to an echo server; one thread sends BYTES while
 *                                                   another thread receives the echo on the same socket
 *                                                   and stack (a blocked recv and a send at once); prints
 *                                                   both SHA-256s, which must be equal
 *   sock_peer tcp-pong PORT                         accept one connection, echo 64-byte messages until EOF
 *   sock_peer tcp-ping HOST:PORT COUNT              COUNT 64-byte round trips (TCP_NODELAY, blocking
 *                                                   calls); prints p50/p99 latency in microseconds
 *   sock_peer udp-echo PORT [--idle-s S]            echo every datagram to its sender until idle S s
 *   sock_peer udp-ping HOST:PORT COUNT SIZE         send COUNT numbered datagrams of SIZE bytes, a window
 *                                                   at a time, resend what is not echoed within 30 ms,
 *                                                   verify every echo; prints the SHA-256 of the payloads
 *   sock_peer gen BYTES [--seed N]                  writes the tcp-send stream to stdout, its SHA-256 to
 *                                                   stderr (checks the built-in SHA-256 against sha256sum)
 * Common: --timeout-s S (default 60), --spin-us N (vd_stack_opts.spin_us): the whole run is bounded (SIGALRM ends it with a failure).
 * Output, last line: "RESULT <mode> bytes N sha256 HEX secs T MBps R [extra]". Exit 0 on success.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/nic.h>
#include <viaduct/socket.h>

/* ---- SHA-256 (FIPS 180-4), small and plain ------------------------------------------------------ */

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	uint32_t n;
};

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static void sha_block(struct sha256 *s, const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
		 h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	s->h[0] += a;
	s->h[1] += b;
	s->h[2] += c;
	s->h[3] += d;
	s->h[4] += e;
	s->h[5] += f;
	s->h[6] += g;
	s->h[7] += h;
}

static void sha_init(struct sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
	s->n = 0;
}

static void sha_update(struct sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	s->len += len;
	while (len) {
		if (s->n == 0 && len >= 64) {
			sha_block(s, p);
			p += 64;
			len -= 64;
			continue;
		}
		size_t k = 64 - s->n < len ? 64 - s->n : len;
		memcpy(s->buf + s->n, p, k);
		s->n += (uint32_t)k;
		p += k;
		len -= k;
		if (s->n == 64) {
			sha_block(s, s->buf);
			s->n = 0;
		}
	}
}

static void sha_hex(struct sha256 *s, char out[65])
{
	uint64_t bits = s->len * 8;
	uint8_t pad = 0x80, z = 0;
	sha_update(s, &pad, 1);
	while (s->n != 56)
		sha_update(s, &z, 1);
	uint8_t l[8];
	for (int i = 0; i < 8; i++)
		l[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha_update(s, l, 8);
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill(uint8_t *p, size_t n, uint64_t *rng)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v = splitmix(rng);
		memcpy(p + i, &v, 8);
	}
	if (i < n) {
		uint64_t v = splitmix(rng);
		memcpy(p + i, &v, n - i);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, long rc)
{
	fprintf(stderr, "sock_peer: %s: %s\n", what, rc < 0 ? strerror((int)-rc) : "failed");
	exit(1);
}

static int parse_hostport(const char *s, struct sockaddr_in *out)
{
	struct vd_addr a;
	if (vd_addr_parse(s, &a) < 0)
		return -1;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_addr.s_addr = a.ip;
	out->sin_port = a.port;
	return 0;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (*end == 'K' || *end == 'k')
		v *= 1024;
	else if (*end == 'M' || *end == 'm')
		v *= 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		v *= 1024.0 * 1024 * 1024;
	return (uint64_t)v;
}

static void result(const char *mode, uint64_t bytes, struct sha256 *h, double t0, const char *extra)
{
	char hex[65];
	sha_hex(h, hex);
	double dt = now_s() - t0;
	printf("RESULT %s bytes %llu sha256 %s secs %.2f MBps %.1f %s\n", mode, (unsigned long long)bytes, hex, dt,
	       dt > 0 ? (double)bytes / dt / 1e6 : 0.0, extra ? extra : "");
	fflush(stdout);
}

static void stats_line(struct vd_stack *st)
{
	struct vd_stack_stats s;
	vd_stack_stats(st, &s);
	fprintf(stderr,
		"stack: tcp retrans %llu bad_csum %llu malformed %llu rst_out %llu; udp rx %llu tx %llu dropped %llu "
		"malformed %llu; not_ours %llu\n",
		(unsigned long long)s.tcp_retrans_segs, (unsigned long long)s.tcp_bad_csum,
		(unsigned long long)s.tcp_malformed, (unsigned long long)s.tcp_rst_out,
		(unsigned long long)s.udp_rx_datagrams, (unsigned long long)s.udp_tx_datagrams,
		(unsigned long long)s.udp_rx_dropped, (unsigned long long)s.udp_malformed,
		(unsigned long long)s.rx_not_ours);
	/* TX from lent memory (test_tcp_zc.sh reads this line: attached frames > 0 on jumbo xdp, 0 at 1500) */
	struct vd_nic *nic = vd_stack_nic(st);
	if (nic) {
		struct vd_nic_stats ns;
		vd_nic_stats(nic, &ns);
		fprintf(stderr, "nic: tx_frames %llu att_frames %llu att_pieces %llu lent %llu lend_refused %llu\n",
			(unsigned long long)ns.tx_frames, (unsigned long long)ns.tx_att_frames,
			(unsigned long long)ns.tx_att_pieces, (unsigned long long)ns.tx_lent,
			(unsigned long long)ns.tx_lend_refused);
	}
}

/* ---- modes -------------------------------------------------------------------------------------- */

#define CHUNK (256u * 1024u)

/* A line on stderr every 5 s of a long transfer: where it is and what the connection looks like. */
static void progress_line(struct vd_stack *st, int s, const char *what, uint64_t n, double t0, double *last)
{
	double t = now_s();
	if (t - *last < 5.0)
		return;
	*last = t;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	(void)vd_getsockopt(st, s, IPPROTO_TCP, TCP_INFO, &ti, &tl);
	struct vd_stack_stats ss;
	vd_stack_stats(st, &ss);
	fprintf(stderr, "progress: %.1f s %s %llu bytes; cwnd %u ssthresh %u rto %u us unacked %u retrans %llu\n",
		t - t0, what, (unsigned long long)n, ti.tcpi_snd_cwnd, ti.tcpi_snd_ssthresh, ti.tcpi_rto,
		ti.tcpi_unacked, (unsigned long long)ss.tcp_retrans_segs);
}

static int tcp_send(struct vd_stack *st, const char *hp, uint64_t bytes, uint64_t seed)
{
	struct sockaddr_in to;
	if (parse_hostport(hp, &to) < 0)
		die("address", -EINVAL);
	int s = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		die("socket", s);
	int rc = vd_connect(st, s, (struct sockaddr *)&to, sizeof(to));
	if (rc < 0)
		die("connect", rc);
	static uint8_t buf[CHUNK];
	struct sha256 h;
	sha_init(&h);
	uint64_t rng = seed, sent = 0;
	double t0 = now_s(), last = t0;
	while (sent < bytes) {
		size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
		fill(buf, n, &rng);
		sha_update(&h, buf, n);
		progress_line(st, s, "sent", sent, t0, &last);
		size_t off = 0;
		while (off < n) {
			ssize_t w = vd_send(st, s, buf + off, n - off, 0);
			if (w <= 0)
				die("send", w);
			off += (size_t)w;
		}
		sent += n;
	}
	rc = vd_shutdown(st, s, SHUT_WR);
	if (rc < 0)
		die("shutdown", rc);
	/* The peer closes after reading everything: our end of stream then arrives. */
	char tail[64];
	ssize_t r = vd_recv(st, s, tail, sizeof(tail), 0);
	if (r != 0)
		die("waiting for the peer's close", r < 0 ? r : -EPROTO);
	result("tcp-send", sent, &h, t0, NULL);
	stats_line(st);
	vd_close(st, s);
	return 0;
}

/*
 * Closes a stream the way the kernel would finish it for an exiting program: our FIN goes out after the
 * data and the stack keeps running until the peer has acknowledged it (TCP_INFO state no longer
 * FIN-WAIT-1, CLOSING or LAST-ACK), at most 5 s. Without it, vd_stack_close() right after a close resets a
 * connection whose FIN the lossy link dropped, and the peer sees ECONNRESET instead of our close.
 */
static void close_lingering(struct vd_stack *st, int s)
{
	double end = now_s() + 5;

	(void)vd_shutdown(st, s, SHUT_WR);
	while (now_s() < end) {
		struct tcp_info ti;
		socklen_t len = sizeof(ti);

		if (vd_getsockopt(st, s, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
		    (ti.tcpi_state != TCP_FIN_WAIT1 && ti.tcpi_state != TCP_CLOSING && ti.tcpi_state != TCP_LAST_ACK))
			break;
		vd_stack_progress(st);
	}
	vd_close(st, s);
}

static int tcp_recv(struct vd_stack *st, int port)
{
	int l = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		die("socket", l);
	int one = 1;
	(void)vd_setsockopt(st, l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int rc = vd_bind(st, l, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0)
		die("bind", rc);
	rc = vd_listen(st, l, 16);
	if (rc < 0)
		die("listen", rc);
	printf("LISTENING %d\n", port);
	fflush(stdout);
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int s = vd_accept4(st, l, (struct sockaddr *)&from, &fl, 0);
	if (s < 0)
		die("accept", s);
	static uint8_t buf[CHUNK];
	struct sha256 h;
	sha_init(&h);
	uint64_t got = 0;
	double t0 = now_s(), last = t0;
	for (;;) {
		progress_line(st, s, "received", got, t0, &last);
		ssize_t r = vd_recv(st, s, buf, sizeof(buf), 0);
		if (r < 0)
			die("recv", r);
		if (r == 0)
			break;
		sha_update(&h, buf, (size_t)r);
		got += (uint64_t)r;
	}
	result("tcp-recv", got, &h, t0, NULL);
	stats_line(st);
	close_lingering(st, s);
	vd_close(st, l);
	return 0;
}

struct duplex_rx {
	struct vd_stack *st;
	int s;
	uint64_t want, got;
	struct sha256 h;
	long err;
};

static void *duplex_rx_main(void *arg)
{
	struct duplex_rx *r = arg;
	static uint8_t buf[CHUNK];
	while (r->got < r->want) {
		ssize_t n = vd_recv(r->st, r->s, buf, sizeof(buf), 0); /* blocking, while main sends */
		if (n <= 0) {
			r->err = n < 0 ? n : -EPIPE;
			break;
		}
		sha_update(&r->h, buf, (size_t)n);
		r->got += (uint64_t)n;
	}
	return NULL;
}

static int tcp_duplex(struct vd_stack *st, const char *hp, uint64_t bytes, uint64_t seed)
{
	struct sockaddr_in to;
	if (parse_hostport(hp, &to) < 0)
		die("address", -EINVAL);
	int s = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		die("socket", s);
	int rc = vd_connect(st, s, (struct sockaddr *)&to, sizeof(to));
	if (rc < 0)
		die("connect", rc);
	struct duplex_rx rx = { .st = st, .s = s, .want = bytes };
	sha_init(&rx.h);
	pthread_t th;
	if (pthread_create(&th, NULL, duplex_rx_main, &rx) != 0)
		die("pthread_create", -EAGAIN);
	static uint8_t buf[CHUNK];
	struct sha256 h;
	sha_init(&h);
	uint64_t rng = seed, sent = 0;
	double t0 = now_s();
	while (sent < bytes) {
		size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
		fill(buf, n, &rng);
		sha_update(&h, buf, n);
		for (size_t off = 0; off < n;) {
			ssize_t w = vd_send(st, s, buf + off, n - off, 0);
			if (w <= 0)
				die("send", w);
			off += (size_t)w;
		}
		sent += n;
	}
	pthread_join(th, NULL);
	if (rx.err)
		die("recv (thread)", rx.err);
	char hex[65];
	sha_hex(&rx.h, hex);
	printf("ECHO sha256 %s bytes %llu\n", hex, (unsigned long long)rx.got);
	result("tcp-duplex", sent, &h, t0, NULL);
	stats_line(st);
	vd_close(st, s);
	return 0;
}

static int accept_one(struct vd_stack *st, int port)
{
	int l = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		die("socket", l);
	int one = 1;
	(void)vd_setsockopt(st, l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int rc = vd_bind(st, l, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0 || (rc = vd_listen(st, l, 16)) < 0)
		die("bind/listen", rc);
	printf("LISTENING %d\n", port);
	fflush(stdout);
	int s = vd_accept4(st, l, NULL, NULL, 0);
	if (s < 0)
		die("accept", s);
	vd_close(st, l);
	return s;
}

#define PING_LEN 64

/* Reads exactly n bytes (blocking); 0 at end of stream. */
static ssize_t read_full(struct vd_stack *st, int s, uint8_t *b, size_t n)
{
	ssize_t r = vd_recv(st, s, b, n, MSG_WAITALL);
	return r;
}

static int tcp_pong(struct vd_stack *st, int port)
{
	int s = accept_one(st, port);
	int one = 1;
	(void)vd_setsockopt(st, s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	uint8_t b[PING_LEN];
	uint64_t n = 0;
	for (;;) {
		ssize_t r = read_full(st, s, b, sizeof(b));
		if (r <= 0)
			break;
		if (vd_send(st, s, b, (size_t)r, 0) != r)
			die("send", -EIO);
		n++;
	}
	printf("RESULT tcp-pong messages %llu\n", (unsigned long long)n);
	vd_close(st, s);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int tcp_ping(struct vd_stack *st, const char *hp, uint32_t count)
{
	struct sockaddr_in to;
	if (parse_hostport(hp, &to) < 0 || count == 0)
		die("arguments", -EINVAL);
	int s = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	int rc = vd_connect(st, s, (struct sockaddr *)&to, sizeof(to));
	if (rc < 0)
		die("connect", rc);
	int one = 1;
	(void)vd_setsockopt(st, s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	double *lat = calloc(count, sizeof(double));
	uint8_t b[PING_LEN] = { 0 };
	for (uint32_t i = 0; i < count; i++) {
		memcpy(b, &i, sizeof(i));
		double t0 = now_s();
		if (vd_send(st, s, b, sizeof(b), 0) != (ssize_t)sizeof(b))
			die("send", -EIO);
		ssize_t r = read_full(st, s, b, sizeof(b));
		if (r != (ssize_t)sizeof(b))
			die("recv", r < 0 ? r : -EPIPE);
		uint32_t j;
		memcpy(&j, b, sizeof(j));
		if (j != i)
			die("echo out of order", -EPROTO);
		lat[i] = (now_s() - t0) * 1e6;
	}
	qsort(lat, count, sizeof(double), cmp_double);
	printf("RESULT tcp-ping count %u p50_us %.1f p99_us %.1f min_us %.1f\n", count, lat[count / 2],
	       lat[(size_t)count * 99 / 100], lat[0]);
	free(lat);
	vd_close(st, s);
	return 0;
}

static int udp_echo(struct vd_stack *st, int port, int idle_s)
{
	int s = vd_socket(st, AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		die("socket", s);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int rc = vd_bind(st, s, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0)
		die("bind", rc);
	int big = 4 << 20;
	(void)vd_setsockopt(st, s, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	printf("LISTENING %d\n", port);
	fflush(stdout);
	struct timeval tv = { .tv_sec = idle_s };
	(void)vd_setsockopt(st, s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static uint8_t buf[65536];
	struct sha256 h;
	sha_init(&h);
	uint64_t n = 0, bytes = 0;
	double t0 = now_s();
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t r = vd_recvfrom(st, s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (r == -EAGAIN)
			break; /* idle: the peer is done */
		if (r < 0)
			die("recvfrom", r);
		ssize_t w = vd_sendto(st, s, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
		if (w != r)
			die("sendto", w);
		n++;
		bytes += (uint64_t)r;
	}
	char extra[64];
	snprintf(extra, sizeof(extra), "datagrams %llu", (unsigned long long)n);
	result("udp-echo", bytes, &h, t0, extra);
	stats_line(st);
	return n ? 0 : 1;
}

#define UDP_WINDOW 256u
#define UDP_RESEND_NS 30000000ull

static int udp_ping(struct vd_stack *st, const char *hp, uint32_t count, uint32_t size)
{
	struct sockaddr_in to;
	if (parse_hostport(hp, &to) < 0 || size < 8 || size > 1472)
		die("arguments", -EINVAL);
	int s = vd_socket(st, AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		die("socket", s);
	int rc = vd_connect(st, s, (struct sockaddr *)&to, sizeof(to));
	if (rc < 0)
		die("connect", rc);
	int big = 4 << 20;
	(void)vd_setsockopt(st, s, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	/* Datagram i: its number, then bytes from SplitMix64 seeded with i: checkable on its own. */
	uint8_t *done = calloc(count, 1);
	uint64_t *sent_at = calloc(count, sizeof(uint64_t));
	static uint8_t buf[2048], exp_buf[2048];
	uint32_t base = 0, next = 0, acked = 0, bad = 0, resent = 0;
	struct sha256 h;
	sha_init(&h);
	double t0 = now_s();
	while (acked < count) {
		uint64_t now = (uint64_t)(now_s() * 1e9);
		/* Send new ones within the window, resend overdue ones. */
		for (uint32_t i = base; i < count && i < base + UDP_WINDOW; i++) {
			if (done[i] || (i < next && now - sent_at[i] < UDP_RESEND_NS))
				continue;
			uint64_t rng = i;
			memcpy(buf, &i, 4);
			memset(buf + 4, 0, 4);
			fill(buf + 8, size - 8, &rng);
			ssize_t w = vd_send(st, s, buf, size, 0);
			if (w != (ssize_t)size)
				die("send", w);
			if (i < next)
				resent++;
			sent_at[i] = now;
			if (i >= next)
				next = i + 1;
		}
		struct pollfd pf = { .fd = s, .events = POLLIN };
		if (vd_poll(st, &pf, 1, 10) <= 0)
			continue;
		for (;;) {
			ssize_t r = vd_recv(st, s, buf, sizeof(buf), MSG_DONTWAIT);
			if (r < 0)
				break;
			uint32_t i;
			memcpy(&i, buf, 4);
			uint64_t rng = i;
			if ((uint32_t)r != size || i >= count) {
				bad++;
				continue;
			}
			memcpy(exp_buf, buf, 8);
			fill(exp_buf + 8, size - 8, &rng);
			if (memcmp(exp_buf, buf, size) != 0) {
				bad++;
				continue;
			}
			if (!done[i]) {
				done[i] = 1;
				acked++;
			}
		}
		while (base < count && done[base])
			base++;
	}
	/* The hash of all payloads in order (what a loss-free run would carry). */
	for (uint32_t i = 0; i < count; i++) {
		uint64_t rng = i;
		memcpy(buf, &i, 4);
		memset(buf + 4, 0, 4);
		fill(buf + 8, size - 8, &rng);
		sha_update(&h, buf, size);
	}
	char extra[96];
	snprintf(extra, sizeof(extra), "datagrams %u bad %u resent %u", count, bad, resent);
	result("udp-ping", (uint64_t)count * size, &h, t0, extra);
	stats_line(st);
	free(done);
	free(sent_at);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	int timeout_s = 60, idle_s = 3, spin_us = 0;
	uint64_t seed = 1;
	char *pos[8];
	int np = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--timeout-s") && i + 1 < argc)
			timeout_s = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--idle-s") && i + 1 < argc)
			idle_s = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--spin-us") && i + 1 < argc)
			spin_us = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (np < 8)
			pos[np++] = argv[i];
	}
	if (np < 2) {
		fprintf(stderr, "usage: sock_peer tcp-send HOST:PORT BYTES | tcp-recv PORT | tcp-duplex HOST:PORT BYTES | udp-echo PORT | "
				"udp-ping HOST:PORT COUNT SIZE [--timeout-s S] [--seed N] [--idle-s S]\n");
		return 2;
	}
	if (!strcmp(pos[0], "gen")) {
		static uint8_t buf[CHUNK];
		struct sha256 h;
		char hex[65];
		uint64_t n = parse_size(pos[1]), rng = seed;
		sha_init(&h);
		for (uint64_t done = 0; done < n;) {
			size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
			fill(buf, k, &rng);
			sha_update(&h, buf, k);
			if (fwrite(buf, 1, k, stdout) != k)
				return 1;
			done += k;
		}
		sha_hex(&h, hex);
		fprintf(stderr, "%s\n", hex);
		return 0;
	}
	alarm((unsigned)timeout_s); /* bounded: SIGALRM's default action ends the run with a failure */
	struct vd_stack *st;
	struct vd_stack_opts o = { .backend = VD_BACKEND_XDP, .spin_us = spin_us };
	int rc = vd_stack_open(&st, &o);
	if (rc < 0)
		die("vd_stack_open", rc);
	const char *m = pos[0];
	if (!strcmp(m, "tcp-send") && np == 3)
		rc = tcp_send(st, pos[1], parse_size(pos[2]), seed);
	else if (!strcmp(m, "tcp-duplex") && np == 3)
		rc = tcp_duplex(st, pos[1], parse_size(pos[2]), seed);
	else if (!strcmp(m, "tcp-pong"))
		rc = tcp_pong(st, atoi(pos[1]));
	else if (!strcmp(m, "tcp-ping") && np == 3)
		rc = tcp_ping(st, pos[1], (uint32_t)strtoul(pos[2], NULL, 0));
	else if (!strcmp(m, "tcp-recv"))
		rc = tcp_recv(st, atoi(pos[1]));
	else if (!strcmp(m, "udp-echo"))
		rc = udp_echo(st, atoi(pos[1]), idle_s);
	else if (!strcmp(m, "udp-ping") && np == 4)
		rc = udp_ping(st, pos[1], (uint32_t)strtoul(pos[2], NULL, 0), (uint32_t)strtoul(pos[3], NULL, 0));
	else {
		fprintf(stderr, "sock_peer: bad mode or arguments\n");
		rc = 2;
	}
	vd_stack_close(st);
	return rc;
}
