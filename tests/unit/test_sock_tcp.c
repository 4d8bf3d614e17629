/* SPDX-License-Identifier: MIT */
/*
 * TCP sockets (include/viaduct/socket.h over the engine of src/lib/tcp) on the sim backend.
 *
 * Two stacks on one link are driven by pump() with non-blocking calls (a blocking call on one stack cannot
 * make the other one progress in the same thread). Blocking calls are tested on one stack that connects to
 * itself: the link routes a packet by destination address and port, the stack's own included, so both ends
 * of the connection live in one stack and a blocking call's wait moves both. Threads share that one stack
 * (the link is not shared between threads).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/time.h>
#include <unistd.h>

#include <viaduct/socket.h>

#define SA(x) ((struct sockaddr *)&(x))

struct pair {
	struct vd_sim_link *link;
	struct vd_stack *a, *b;
};

static int pair_open(struct pair *p, const struct vd_sim_params *prm)
{
	struct vd_sim_params def = { .seed = 1, .delay_ns = 50000 };
	if (vd_sim_link_new(&p->link, prm ? prm : &def) < 0)
		return -1;
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = p->link, .local_ip = "10.0.0.1", .secret = 7 };
	if (vd_stack_open(&p->a, &o) < 0)
		return -1;
	o.local_ip = "10.0.0.2";
	o.secret = 8;
	if (vd_stack_open(&p->b, &o) < 0)
		return -1;
	return 0;
}

static void pair_close(struct pair *p)
{
	vd_stack_close(p->a);
	vd_stack_close(p->b);
	vd_sim_link_free(p->link);
}

/* Runs both stacks for `us` microseconds of virtual time, in 10 us steps. */
static void pump(struct pair *p, unsigned us)
{
	for (unsigned i = 0; i < us / 10 + 1; i++) {
		vd_stack_progress(p->a);
		vd_stack_progress(p->b);
		vd_sim_advance(p->link, 10000);
	}
}

static struct sockaddr_in sin_of(const char *ip, int port)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &s.sin_addr);
	return s;
}

static int listener(struct vd_stack *st, const char *ip, int port, int nonblock)
{
	int l = vd_socket(st, AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (l < 0)
		return l;
	int one = 1;
	vd_setsockopt(st, l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = sin_of(ip, port);
	int rc = vd_bind(st, l, SA(a), sizeof(a));
	if (rc == 0)
		rc = vd_listen(st, l, 16);
	return rc < 0 ? rc : l;
}

/* Non-blocking connect from b to a's listener, accepted on a. */
static int connect_pair(struct pair *p, int l, int port, int *cs, int *as)
{
	*cs = vd_socket(p->b, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (*cs < 0)
		return -1;
	struct sockaddr_in to = sin_of("10.0.0.1", port);
	if (vd_connect(p->b, *cs, SA(to), sizeof(to)) != -EINPROGRESS)
		return -2;
	for (int i = 0; i < 10000; i++) { /* up to 10 s virtual: a lost SYN waits for the 1 s RTO */
		pump(p, 1000);
		*as = vd_accept4(p->a, l, NULL, NULL, SOCK_NONBLOCK);
		if (*as >= 0)
			break;
	}
	if (*as < 0)
		return -3;
	pump(p, 200);
	return (vd_sock_events(p->b, *cs) & POLLOUT) ? 0 : -4;
}

static void pattern(uint8_t *b, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
}

TEST(nonblocking_connect_accept_echo)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int l = listener(p.a, "0.0.0.0", 80, 1);
	REQUIRE(l >= 0);
	CHECK_EQ(vd_accept4(p.a, l, NULL, NULL, 0), -EAGAIN);
	struct pollfd pf = { .fd = l, .events = POLLIN };
	CHECK_EQ(vd_poll(p.a, &pf, 1, 0), 0);
	int cs, as;
	REQUIRE(connect_pair(&p, l, 80, &cs, &as) == 0);
	CHECK_EQ(vd_sock_type(p.a, as), SOCK_STREAM);
	int err = -1;
	socklen_t el = sizeof(err);
	CHECK_EQ(vd_getsockopt(p.b, cs, SOL_SOCKET, SO_ERROR, &err, &el), 0);
	CHECK_EQ(err, 0);
	/* Names agree on both ends. */
	struct sockaddr_in cn, cp, an, ap;
	socklen_t ln = sizeof(cn);
	CHECK_EQ(vd_getsockname(p.b, cs, SA(cn), &ln), 0);
	ln = sizeof(cp);
	CHECK_EQ(vd_getpeername(p.b, cs, SA(cp), &ln), 0);
	ln = sizeof(an);
	CHECK_EQ(vd_getsockname(p.a, as, SA(an), &ln), 0);
	ln = sizeof(ap);
	CHECK_EQ(vd_getpeername(p.a, as, SA(ap), &ln), 0);
	CHECK_EQ(cn.sin_addr.s_addr, inet_addr("10.0.0.2"));
	CHECK_EQ(cp.sin_addr.s_addr, inet_addr("10.0.0.1"));
	CHECK_EQ(ntohs(cp.sin_port), 80);
	CHECK_EQ(ap.sin_port, cn.sin_port);
	CHECK_EQ(ap.sin_addr.s_addr, cn.sin_addr.s_addr);
	CHECK_EQ(an.sin_port, cp.sin_port);
	/* A second connect: already connected. */
	struct sockaddr_in to = sin_of("10.0.0.1", 80);
	CHECK_EQ(vd_connect(p.b, cs, SA(to), sizeof(to)), -EISCONN);

	/* Echo 300 KB: b sends, a echoes what it reads, b checks. */
	enum { N = 300000 };
	static uint8_t out[N], echo[N], tmp[65536];
	pattern(out, N, 1);
	size_t sent = 0, back = 0;
	for (int it = 0; it < 20000 && back < N; it++) {
		if (sent < N) {
			ssize_t w = vd_send(p.b, cs, out + sent, N - sent, 0);
			CHECK(w > 0 || w == -EAGAIN);
			if (w > 0)
				sent += (size_t)w;
		}
		ssize_t r = vd_recv(p.a, as, tmp, sizeof(tmp), 0);
		if (r > 0) {
			size_t off = 0;
			while (off < (size_t)r) { /* the echo must not be lost: retry with progress */
				ssize_t w = vd_send(p.a, as, tmp + off, (size_t)r - off, 0);
				if (w > 0)
					off += (size_t)w;
				else
					pump(&p, 50);
			}
		} else {
			CHECK(r == -EAGAIN);
		}
		r = vd_recv(p.b, cs, echo + back, N - back, 0);
		if (r > 0)
			back += (size_t)r;
		pump(&p, 20);
	}
	CHECK_EQ(back, N);
	CHECK(memcmp(out, echo, N) == 0);

	/* Half-close: b shuts its write side; a reads end of stream (and POLLIN|POLLRDHUP), can still send. */
	CHECK_EQ(vd_shutdown(p.b, cs, SHUT_WR), 0);
	pump(&p, 500);
	pf.fd = as;
	pf.events = POLLIN | POLLRDHUP | POLLOUT;
	CHECK_EQ(vd_poll(p.a, &pf, 1, 0), 1);
	CHECK(pf.revents & POLLIN);
	CHECK(pf.revents & POLLRDHUP);
	CHECK(pf.revents & POLLOUT);
	CHECK_EQ(vd_recv(p.a, as, tmp, sizeof(tmp), 0), 0);
	CHECK_EQ(vd_send(p.a, as, "late", 4, 0), 4);
	pump(&p, 500);
	CHECK_EQ(vd_recv(p.b, cs, tmp, sizeof(tmp), 0), 4);
	CHECK_EQ(vd_send(p.b, cs, "x", 1, 0), -EPIPE);
	CHECK_EQ(vd_close(p.a, as), 0);
	pump(&p, 500);
	CHECK_EQ(vd_recv(p.b, cs, tmp, sizeof(tmp), 0), 0);
	CHECK_EQ(vd_close(p.b, cs), 0);
	CHECK_EQ(vd_close(p.a, l), 0);
	struct vd_stack_stats s;
	vd_stack_stats(p.b, &s);
	CHECK_EQ(s.tcp_active_opens, 1);
	CHECK_EQ(s.tcp_sockets, 0);
	vd_stack_stats(p.a, &s);
	CHECK_EQ(s.tcp_passive_opens, 1);
	pair_close(&p);
}

TEST(refused_and_errors)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	/* A bound port without a listener answers a SYN with RST (RFC 9293 3.10.7.1): ECONNREFUSED. */
	int b = vd_socket(p.a, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in ba = sin_of("10.0.0.1", 7777);
	CHECK_EQ(vd_bind(p.a, b, SA(ba), sizeof(ba)), 0);
	int c = vd_socket(p.b, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK_EQ(vd_connect(p.b, c, SA(ba), sizeof(ba)), -EINPROGRESS);
	pump(&p, 2000);
	struct pollfd pf = { .fd = c, .events = POLLOUT };
	CHECK_EQ(vd_poll(p.b, &pf, 1, 0), 1);
	CHECK(pf.revents & POLLERR);
	int err = 0;
	socklen_t el = sizeof(err);
	CHECK_EQ(vd_getsockopt(p.b, c, SOL_SOCKET, SO_ERROR, &err, &el), 0);
	CHECK_EQ(err, ECONNREFUSED);

	int s = vd_socket(p.b, AF_INET, SOCK_STREAM, 0);
	char buf[8];
	CHECK(vd_send(p.b, s, "x", 1, 0) == -ENOTCONN || vd_send(p.b, s, "x", 1, 0) == -EPIPE);
	CHECK_EQ(vd_recv(p.b, s, buf, sizeof(buf), 0), -ENOTCONN);
	CHECK_EQ(vd_accept4(p.b, s, NULL, NULL, 0), -EINVAL);
	CHECK_EQ(vd_accept4(p.b, s, NULL, NULL, 12345678), -EINVAL);
	struct sockaddr_in pn;
	socklen_t pl = sizeof(pn);
	CHECK_EQ(vd_getpeername(p.b, s, SA(pn), &pl), -ENOTCONN);
	int one = 1, v = 0;
	socklen_t vl = sizeof(v);
	CHECK_EQ(vd_setsockopt(p.b, s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	CHECK_EQ(vd_getsockopt(p.b, s, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
	CHECK(v != 0);
	CHECK_EQ(vd_setsockopt(p.b, s, IPPROTO_UDP, 1, &one, sizeof(one)), -ENOPROTOOPT);
	CHECK_EQ(vd_setsockopt(p.b, s, IPPROTO_IP, IP_TOS, &one, sizeof(one)), -ENOPROTOOPT);
	vl = sizeof(v);
	CHECK_EQ(vd_getsockopt(p.b, s, SOL_SOCKET, SO_TYPE, &v, &vl), 0);
	CHECK_EQ(v, SOCK_STREAM);
	CHECK_EQ(vd_set_nonblock(p.b, s, 1), 0);
	CHECK_EQ(vd_get_nonblock(p.b, s), 1);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	CHECK_EQ(vd_connect(p.b, s, (struct sockaddr *)&s6, sizeof(s6)), -EAFNOSUPPORT);
	struct sockaddr_in other = sin_of("10.0.0.9", 80);
	CHECK_EQ(vd_bind(p.b, s, SA(other), sizeof(other)), -EADDRNOTAVAIL);
	/* The same port twice in one stack. */
	int d = vd_socket(p.a, AF_INET, SOCK_STREAM, 0);
	CHECK_EQ(vd_bind(p.a, d, SA(ba), sizeof(ba)), -EADDRINUSE);
	pair_close(&p);
}

/* Data both ways through loss, duplication, reordering and corruption: every byte verified. */
TEST(large_transfer_with_loss)
{
	struct pair p;
	struct vd_sim_params prm = { .seed = 42, .delay_ns = 100000, .loss_ppm = 10000, .dup_ppm = 10000,
				     .reorder_ppm = 20000, .reorder_ns = 200000, .corrupt_ppm = 2000 };
	REQUIRE(pair_open(&p, &prm) == 0);
	int l = listener(p.a, "10.0.0.1", 5001, 1);
	REQUIRE(l >= 0);
	int cs, as;
	REQUIRE(connect_pair(&p, l, 5001, &cs, &as) == 0);
	enum { N = 2 << 20 };
	uint8_t *ab = malloc(N), *ba = malloc(N), *ab_in = malloc(N), *ba_in = malloc(N);
	REQUIRE(ab && ba && ab_in && ba_in);
	pattern(ab, N, 2);
	pattern(ba, N, 3);
	size_t s1 = 0, s2 = 0, r1 = 0, r2 = 0;
	for (int it = 0; it < 1000000 && (r1 < N || r2 < N); it++) {
		ssize_t w;
		if (s1 < N && (w = vd_send(p.a, as, ab + s1, N - s1 < 65536 ? N - s1 : 65536, 0)) > 0)
			s1 += (size_t)w;
		if (s2 < N && (w = vd_send(p.b, cs, ba + s2, N - s2 < 65536 ? N - s2 : 65536, 0)) > 0)
			s2 += (size_t)w;
		if (r1 < N && (w = vd_recv(p.b, cs, ab_in + r1, N - r1, 0)) > 0)
			r1 += (size_t)w;
		if (r2 < N && (w = vd_recv(p.a, as, ba_in + r2, N - r2, 0)) > 0)
			r2 += (size_t)w;
		vd_stack_progress(p.a);
		vd_stack_progress(p.b);
		vd_sim_advance(p.link, 10000);
	}
	CHECK_EQ(r1, N);
	CHECK_EQ(r2, N);
	CHECK(memcmp(ab, ab_in, N) == 0);
	CHECK(memcmp(ba, ba_in, N) == 0);
	struct vd_stack_stats sa, sb;
	vd_stack_stats(p.a, &sa);
	vd_stack_stats(p.b, &sb);
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	CHECK(c.lost > 0 && c.corrupted > 0);
	CHECK(sa.tcp_retrans_segs > 0 && sb.tcp_retrans_segs > 0);
	CHECK(sa.tcp_bad_csum + sb.tcp_bad_csum > 0);
	printf("     2 MiB each way in %.2f s virtual; retrans %llu/%llu, bad csum %llu/%llu, lost %llu\n",
	       (double)(vd_sim_now_ns(p.link) - 1000000000ull) / 1e9, (unsigned long long)sa.tcp_retrans_segs,
	       (unsigned long long)sb.tcp_retrans_segs, (unsigned long long)sa.tcp_bad_csum,
	       (unsigned long long)sb.tcp_bad_csum, (unsigned long long)c.lost);
	free(ab);
	free(ba);
	free(ab_in);
	free(ba_in);
	pair_close(&p);
}

/* One direction through the same impairments (the receiver only ACKs). */
TEST(one_way_transfer_with_loss)
{
	struct pair p;
	struct vd_sim_params prm = { .seed = 43, .delay_ns = 100000, .loss_ppm = 10000, .dup_ppm = 10000,
				     .reorder_ppm = 20000, .reorder_ns = 200000, .corrupt_ppm = 2000 };
	REQUIRE(pair_open(&p, &prm) == 0);
	int l = listener(p.a, "10.0.0.1", 5002, 1);
	REQUIRE(l >= 0);
	int cs, as;
	REQUIRE(connect_pair(&p, l, 5002, &cs, &as) == 0);
	enum { N = 1 << 20 };
	uint8_t *out = malloc(N), *in = malloc(N);
	REQUIRE(out && in);
	pattern(out, N, 4);
	size_t s = 0, r = 0;
	for (int it = 0; it < 500000 && r < N; it++) {
		ssize_t w;
		if (s < N && (w = vd_send(p.b, cs, out + s, N - s, 0)) > 0)
			s += (size_t)w;
		if ((w = vd_recv(p.a, as, in + r, N - r, 0)) > 0)
			r += (size_t)w;
		vd_stack_progress(p.a);
		vd_stack_progress(p.b);
		vd_sim_advance(p.link, 10000);
	}
	CHECK_EQ(r, N);
	CHECK(memcmp(out, in, N) == 0);
	struct vd_stack_stats sb;
	vd_stack_stats(p.b, &sb);
	CHECK(sb.tcp_retrans_segs > 0);
	/* Orderly end: FIN after the data. */
	CHECK_EQ(vd_close(p.b, cs), 0);
	uint8_t x;
	ssize_t e = -EAGAIN;
	for (int it = 0; it < 100000 && e == -EAGAIN; it++) {
		e = vd_recv(p.a, as, &x, 1, 0);
		pump(&p, 10);
	}
	CHECK_EQ(e, 0);
	free(out);
	free(in);
	pair_close(&p);
}

/* ---- one stack talking to itself: blocking calls ------------------------------------------------ */

struct solo {
	struct vd_sim_link *link;
	struct vd_stack *st;
};

static int solo_open(struct solo *s)
{
	struct vd_sim_params prm = { .seed = 5, .delay_ns = 50000 };
	if (vd_sim_link_new(&s->link, &prm) < 0)
		return -1;
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = s->link, .local_ip = "10.0.0.1", .secret = 3 };
	return vd_stack_open(&s->st, &o);
}

static void solo_close(struct solo *s)
{
	vd_stack_close(s->st);
	vd_sim_link_free(s->link);
}

TEST(blocking_connect_accept_send_recv)
{
	alarm(60);
	struct solo so;
	REQUIRE(solo_open(&so) == 0);
	struct vd_stack *st = so.st;
	int l = listener(st, "10.0.0.1", 80, 0);
	REQUIRE(l >= 0);
	int c = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 80);
	CHECK_EQ(vd_connect(st, c, SA(to), sizeof(to)), 0); /* blocking: returns established */
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int a = vd_accept4(st, l, SA(from), &fl, 0);
	REQUIRE(a >= 0);
	CHECK_EQ(from.sin_addr.s_addr, inet_addr("10.0.0.1"));
	CHECK_EQ(vd_get_nonblock(st, a), 0);
	CHECK_EQ(vd_send(st, c, "hello", 5, 0), 5);
	char buf[64];
	CHECK_EQ(vd_recv(st, a, buf, sizeof(buf), 0), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	/* MSG_WAITALL gathers several segments; MSG_PEEK leaves data. */
	CHECK_EQ(vd_send(st, a, "abc", 3, 0), 3);
	CHECK_EQ(vd_send(st, a, "defg", 4, 0), 4);
	CHECK_EQ(vd_recv(st, c, buf, 2, MSG_PEEK), 2);
	CHECK_EQ(vd_recv(st, c, buf, 7, MSG_WAITALL), 7);
	CHECK(memcmp(buf, "abcdefg", 7) == 0);
	/* SO_RCVTIMEO: nothing comes, -EAGAIN after the timeout (virtual clock). */
	struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 };
	CHECK_EQ(vd_setsockopt(st, c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	uint64_t t0 = vd_sim_now_ns(so.link);
	CHECK_EQ(vd_recv(st, c, buf, sizeof(buf), 0), -EAGAIN);
	CHECK(vd_sim_now_ns(so.link) - t0 >= 300000000u);
	/* readv/writev style. */
	struct iovec iv[3] = { { (void *)"12", 2 }, { (void *)"", 0 }, { (void *)"345", 3 } };
	struct msghdr m = { .msg_iov = iv, .msg_iovlen = 3 };
	CHECK_EQ(vd_sendmsg(st, c, &m, 0), 5);
	char x[2], y[3];
	struct iovec ov[2] = { { x, 2 }, { y, 3 } };
	struct msghdr r = { .msg_iov = ov, .msg_iovlen = 2 };
	CHECK_EQ(vd_recvmsg(st, a, &r, MSG_WAITALL), 5);
	CHECK(memcmp(x, "12", 2) == 0 && memcmp(y, "345", 3) == 0);
	CHECK_EQ(vd_readable(st, a), 0);
	/* Orderly close both ways. */
	CHECK_EQ(vd_shutdown(st, c, SHUT_WR), 0);
	CHECK_EQ(vd_recv(st, a, buf, sizeof(buf), 0), 0);
	CHECK_EQ(vd_close(st, a), 0);
	CHECK_EQ(vd_recv(st, c, buf, sizeof(buf), 0), 0);
	CHECK_EQ(vd_close(st, c), 0);
	CHECK_EQ(vd_close(st, l), 0);
	solo_close(&so);
	alarm(0);
}

struct reader {
	struct vd_stack *st;
	int s;
	size_t want, got;
	uint32_t sum;
	int err;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	static uint8_t b[100000];
	for (;;) {
		ssize_t n = vd_recv(r->st, r->s, b, sizeof(b), 0); /* blocking */
		if (n < 0) {
			r->err = (int)n;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			r->sum = r->sum * 31 + b[i];
		r->got += (size_t)n;
	}
	return NULL;
}

/* A thread blocked in recv while another sends on the same stack: both make progress. */
TEST(threads_recv_blocked_while_other_sends)
{
	alarm(60);
	struct solo so;
	REQUIRE(solo_open(&so) == 0);
	struct vd_stack *st = so.st;
	int l = listener(st, "10.0.0.1", 81, 0);
	int c = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 81);
	REQUIRE(vd_connect(st, c, SA(to), sizeof(to)) == 0);
	int a = vd_accept4(st, l, NULL, NULL, 0);
	REQUIRE(a >= 0);
	struct reader rd = { .st = st, .s = a };
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, reader_main, &rd) == 0);
	enum { N = 3 << 20 };
	uint8_t *d = malloc(N);
	pattern(d, N, 9);
	uint32_t sum = 0;
	for (size_t i = 0; i < N; i++)
		sum = sum * 31 + d[i];
	size_t off = 0;
	while (off < N) {
		ssize_t w = vd_send(st, c, d + off, N - off < 50000 ? N - off : 50000, 0); /* blocking */
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	CHECK_EQ(off, N);
	CHECK_EQ(vd_shutdown(st, c, SHUT_WR), 0);
	pthread_join(th, NULL);
	CHECK_EQ(rd.err, 0);
	CHECK_EQ(rd.got, N);
	CHECK_EQ(rd.sum, sum);
	free(d);
	vd_close(st, a);
	vd_close(st, c);
	vd_close(st, l);
	solo_close(&so);
	alarm(0);
}

struct closer_arg {
	struct vd_stack *st;
	int s;
	ssize_t rc;
};

static void *blocked_reader(void *arg)
{
	struct closer_arg *c = arg;
	char b[16];
	c->rc = vd_recv(c->st, c->s, b, sizeof(b), 0);
	return NULL;
}

/* Closing a handle another thread is blocked on wakes it with EBADF. */
TEST(close_wakes_blocked_thread)
{
	alarm(60);
	struct solo so;
	REQUIRE(solo_open(&so) == 0);
	struct vd_stack *st = so.st;
	int l = listener(st, "10.0.0.1", 82, 0);
	/* A blocking send during a non-blocking connect's handshake waits for it, then sends. */
	int early = vd_socket(st, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in eto = sin_of("10.0.0.1", 82);
	CHECK_EQ(vd_connect(st, early, SA(eto), sizeof(eto)), -EINPROGRESS);
	CHECK_EQ(vd_set_nonblock(st, early, 0), 0);
	CHECK_EQ(vd_send(st, early, "early", 5, 0), 5);
	int ea = vd_accept4(st, l, NULL, NULL, 0);
	char eb[8];
	CHECK_EQ(vd_recv(st, ea, eb, sizeof(eb), 0), 5);
	vd_close(st, ea);
	vd_close(st, early);
	int c = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 82);
	REQUIRE(vd_connect(st, c, SA(to), sizeof(to)) == 0);
	int a = vd_accept4(st, l, NULL, NULL, 0);
	struct closer_arg ca = { .st = st, .s = a, .rc = 1 };
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, blocked_reader, &ca) == 0);
	usleep(50000);
	CHECK_EQ(vd_close(st, a), 0);
	pthread_join(th, NULL);
	CHECK_EQ(ca.rc, -EBADF);
	vd_close(st, c);
	vd_close(st, l);
	solo_close(&so);
	alarm(0);
}

TEST(poll_listener_and_data)
{
	alarm(60);
	struct solo so;
	REQUIRE(solo_open(&so) == 0);
	struct vd_stack *st = so.st;
	int l = listener(st, "10.0.0.1", 83, 1);
	int c = vd_socket(st, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 83);
	CHECK_EQ(vd_connect(st, c, SA(to), sizeof(to)), -EINPROGRESS);
	/* During the handshake: EAGAIN on a non-blocking socket, as Linux (not ENOTCONN). */
	char hb[4];
	CHECK_EQ(vd_send(st, c, "x", 1, 0), -EAGAIN);
	CHECK_EQ(vd_recv(st, c, hb, sizeof(hb), 0), -EAGAIN);
	struct pollfd pf[2] = { { .fd = l, .events = POLLIN }, { .fd = c, .events = POLLOUT } };
	/* The listener is readable once the handshake's last ACK arrived, after the client is writable. */
	CHECK_EQ(vd_poll(st, pf, 1, 1000), 1);
	CHECK_EQ(pf[0].revents, POLLIN);
	CHECK_EQ(vd_poll(st, pf, 2, 0), 2);
	CHECK_EQ(pf[1].revents, POLLOUT);
	int a = vd_accept4(st, l, NULL, NULL, 0);
	REQUIRE(a >= 0);
	CHECK_EQ(vd_get_nonblock(st, a), 0);
	pf[0].fd = a;
	pf[0].events = POLLIN;
	pf[1].events = POLLIN;
	CHECK_EQ(vd_poll(st, pf, 2, 50), 0); /* nothing to read: times out */
	CHECK_EQ(vd_send(st, c, "0123456789", 10, 0), 10);
	CHECK_EQ(vd_poll(st, pf, 2, 1000), 1);
	CHECK_EQ(pf[0].revents, POLLIN);
	CHECK_EQ(vd_readable(st, a), 10);
	vd_close(st, a);
	vd_close(st, c);
	vd_close(st, l);
	solo_close(&so);
	alarm(0);
}

TEST_MAIN(T(nonblocking_connect_accept_echo), T(refused_and_errors), T(large_transfer_with_loss), T(one_way_transfer_with_loss),
	  T(blocking_connect_accept_send_recv), T(threads_recv_blocked_while_other_sends), T(close_wakes_blocked_thread),
	  T(poll_listener_and_data))
