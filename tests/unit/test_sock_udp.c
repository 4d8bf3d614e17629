/* SPDX-License-Identifier: MIT */
/*
 * UDP sockets (include/viaduct/socket.h, src/lib/sock/udp.c) over the sim backend: two stacks on one
 * simulated link, datagrams both ways, connected and unconnected sockets, the errors a BSD socket gives,
 * truncation and peeking, scatter/gather, the SO_RCVBUF bound, checksums (corruption, zero checksum,
 * hand-made bad packets), poll, and two threads on one stack (a blocked receiver and a sender).
 *
 * A blocking call on sim advances the virtual clock to the next frame due to its own nic, so a receive
 * whose datagram is already in flight works in one thread; the threaded test uses one stack that talks to
 * itself (the link routes by destination address and port, its own included), as the link is not shared
 * between threads.
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

#include "lib/core/frame.h"

struct pair {
	struct vd_sim_link *link;
	struct vd_stack *a, *b;
};

static int pair_open(struct pair *p, const struct vd_sim_params *prm)
{
	struct vd_sim_params def = { .seed = 1, .delay_ns = 20000 };
	if (vd_sim_link_new(&p->link, prm ? prm : &def) < 0)
		return -1;
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = p->link, .local_ip = "10.0.0.1", .secret = 7 };
	if (vd_stack_open(&p->a, &o) < 0)
		return -1;
	o.local_ip = "10.0.0.2";
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

/* Runs both stacks for `us` microseconds of virtual time. */
static void pump(struct pair *p, unsigned us)
{
	for (unsigned i = 0; i < us / 10; i++) {
		vd_stack_progress(p->a);
		vd_stack_progress(p->b);
		vd_sim_advance(p->link, 10000);
	}
	vd_stack_progress(p->a);
	vd_stack_progress(p->b);
}

static struct sockaddr_in sin_of(const char *ip, int port)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &s.sin_addr);
	return s;
}

#define SA(x) ((struct sockaddr *)&(x))

static int udp_bound(struct vd_stack *st, const char *ip, int port)
{
	int s = vd_socket(st, AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		return s;
	struct sockaddr_in a = sin_of(ip, port);
	int rc = vd_bind(st, s, SA(a), sizeof(a));
	return rc < 0 ? rc : s;
}

TEST(unconnected_both_ways)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	REQUIRE(sa >= 0);
	int sb = vd_socket(p.b, AF_INET, SOCK_DGRAM, IPPROTO_UDP);
	REQUIRE(sb >= 0);
	CHECK_EQ(vd_sock_type(p.b, sb), SOCK_DGRAM);

	struct sockaddr_in to = sin_of("10.0.0.1", 5000);
	CHECK_EQ(vd_sendto(p.b, sb, "hello", 5, 0, SA(to), sizeof(to)), 5);
	/* First send bound an ephemeral port. */
	struct sockaddr_in me;
	socklen_t ml = sizeof(me);
	CHECK_EQ(vd_getsockname(p.b, sb, SA(me), &ml), 0);
	CHECK(me.sin_port != 0);
	CHECK_EQ(ml, sizeof(me));

	char buf[64];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	/* Blocking receive: the datagram is in flight, the wait advances the virtual clock to it. */
	CHECK_EQ(vd_recvfrom(p.a, sa, buf, sizeof(buf), 0, SA(from), &fl), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK_EQ(fl, sizeof(from));
	CHECK_EQ(from.sin_addr.s_addr, inet_addr("10.0.0.2"));
	CHECK_EQ(from.sin_port, me.sin_port);

	CHECK_EQ(vd_sendto(p.a, sa, "world!", 6, 0, SA(from), fl), 6);
	fl = sizeof(from);
	CHECK_EQ(vd_recvfrom(p.b, sb, buf, sizeof(buf), 0, SA(from), &fl), 6);
	CHECK(memcmp(buf, "world!", 6) == 0);
	CHECK_EQ(from.sin_addr.s_addr, inet_addr("10.0.0.1"));
	CHECK_EQ(ntohs(from.sin_port), 5000);

	/* Bound to INADDR_ANY by the first send: getsockname shows 0.0.0.0 (as Linux). */
	CHECK_EQ(me.sin_addr.s_addr, 0);
	me.sin_addr.s_addr = inet_addr("10.0.0.2");
	/* Many datagrams in order (the link neither loses nor reorders here), sizes up to the MTU. */
	static char big[1472], rb[2000];
	for (int i = 0; i < 200; i++) {
		size_t n = (size_t)(i * 37) % sizeof(big) + 1;
		memset(big, i, n);
		CHECK_EQ(vd_sendto(p.a, sa, big, n, 0, SA(me), sizeof(me)), (long long)n);
		if (i % 16 == 15)
			pump(&p, 50);
	}
	for (int i = 0; i < 200; i++) {
		size_t n = (size_t)(i * 37) % sizeof(big) + 1;
		ssize_t r = vd_recv(p.b, sb, rb, sizeof(rb), 0);
		CHECK_EQ(r, (long long)n);
		CHECK(r > 0 && rb[0] == (char)i && rb[r - 1] == (char)i);
	}
	struct vd_stack_stats ss;
	vd_stack_stats(p.b, &ss);
	CHECK_EQ(ss.udp_sockets, 1);
	CHECK_EQ(ss.udp_rx_datagrams, 201);
	CHECK_EQ(ss.udp_tx_datagrams, 1);
	CHECK_EQ(vd_close(p.a, sa), 0);
	CHECK_EQ(vd_close(p.b, sb), 0);
	vd_stack_stats(p.b, &ss);
	CHECK_EQ(ss.udp_sockets, 0);
	pair_close(&p);
}

TEST(connected_filters_by_peer)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int sa = udp_bound(p.a, "0.0.0.0", 5000);
	int sc = udp_bound(p.a, "10.0.0.1", 5001);
	int sb = udp_bound(p.b, "10.0.0.2", 6000);
	REQUIRE(sa >= 0 && sc >= 0 && sb >= 0);
	struct sockaddr_in peer = sin_of("10.0.0.1", 5000);
	CHECK_EQ(vd_connect(p.b, sb, SA(peer), sizeof(peer)), 0);
	struct sockaddr_in got;
	socklen_t gl = sizeof(got);
	CHECK_EQ(vd_getpeername(p.b, sb, SA(got), &gl), 0);
	CHECK_EQ(got.sin_port, peer.sin_port);
	CHECK_EQ(got.sin_addr.s_addr, peer.sin_addr.s_addr);

	CHECK_EQ(vd_send(p.b, sb, "abc", 3, 0), 3);
	char buf[16];
	CHECK_EQ(vd_recv(p.a, sa, buf, sizeof(buf), 0), 3);

	/* From the wrong port: filtered out (and counted); from the peer: delivered. */
	struct vd_stack_stats s0, s1;
	vd_stack_stats(p.b, &s0);
	struct sockaddr_in bto = sin_of("10.0.0.2", 6000);
	CHECK_EQ(vd_sendto(p.a, sc, "bad", 3, 0, SA(bto), sizeof(bto)), 3);
	CHECK_EQ(vd_sendto(p.a, sa, "good", 4, 0, SA(bto), sizeof(bto)), 4);
	CHECK_EQ(vd_recv(p.b, sb, buf, sizeof(buf), 0), 4);
	CHECK(memcmp(buf, "good", 4) == 0);
	pump(&p, 100);
	CHECK_EQ(vd_recv(p.b, sb, buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);
	vd_stack_stats(p.b, &s1);
	CHECK_EQ(s1.rx_not_ours, s0.rx_not_ours + 1);

	/* sendto with an address on a connected UDP socket goes there (Linux). */
	struct sockaddr_in cto = sin_of("10.0.0.1", 5001);
	CHECK_EQ(vd_sendto(p.b, sb, "x", 1, 0, SA(cto), sizeof(cto)), 1);
	CHECK_EQ(vd_recv(p.a, sc, buf, sizeof(buf), 0), 1);

	/* connect(AF_UNSPEC) dissolves the association. */
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	CHECK_EQ(vd_connect(p.b, sb, &unspec, sizeof(unspec)), 0);
	gl = sizeof(got);
	CHECK_EQ(vd_getpeername(p.b, sb, SA(got), &gl), -ENOTCONN);
	CHECK_EQ(vd_send(p.b, sb, "abc", 3, 0), -EDESTADDRREQ);
	CHECK_EQ(vd_sendto(p.a, sc, "now", 3, 0, SA(bto), sizeof(bto)), 3);
	CHECK_EQ(vd_recv(p.b, sb, buf, sizeof(buf), 0), 3);

	/* connect of an unbound socket picks the local port; getsockname then shows our address. */
	int sd = vd_socket(p.b, AF_INET, SOCK_DGRAM, 0);
	CHECK_EQ(vd_connect(p.b, sd, SA(peer), sizeof(peer)), 0);
	gl = sizeof(got);
	CHECK_EQ(vd_getsockname(p.b, sd, SA(got), &gl), 0);
	CHECK(got.sin_port != 0);
	CHECK_EQ(got.sin_addr.s_addr, inet_addr("10.0.0.2"));
	/* shutdown(SHUT_WR) on a connected socket: sends fail with EPIPE. */
	CHECK_EQ(vd_shutdown(p.b, sd, SHUT_WR), 0);
	CHECK_EQ(vd_send(p.b, sd, "a", 1, 0), -EPIPE);
	CHECK_EQ(vd_shutdown(p.b, sd, SHUT_RD), 0);
	CHECK_EQ(vd_recv(p.b, sd, buf, sizeof(buf), 0), 0);
	CHECK(vd_sock_events(p.b, sd) & POLLHUP);
	pair_close(&p);
}

TEST(errors)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	CHECK_EQ(vd_socket(p.a, AF_INET6, SOCK_DGRAM, 0), -EAFNOSUPPORT);
	CHECK_EQ(vd_socket(p.a, AF_INET, SOCK_DGRAM, IPPROTO_TCP), -EPROTONOSUPPORT);
	CHECK_EQ(vd_socket(p.a, AF_INET, SOCK_RAW, 0), -ESOCKTNOSUPPORT);
	int s = vd_socket(p.a, AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE(s >= 0);
	CHECK_EQ(vd_get_nonblock(p.a, s), 1);
	char buf[2000] = { 0 };
	CHECK_EQ(vd_send(p.a, s, buf, 1, 0), -EDESTADDRREQ);
	CHECK_EQ(vd_recv(p.a, s, buf, 1, 0), -EAGAIN);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	CHECK_EQ(vd_sendto(p.a, s, buf, 1, 0, (struct sockaddr *)&s6, sizeof(s6)), -EAFNOSUPPORT);
	CHECK_EQ(vd_bind(p.a, s, (struct sockaddr *)&s6, sizeof(s6)), -EAFNOSUPPORT);
	struct sockaddr_in to = sin_of("10.0.0.2", 7);
	CHECK_EQ(vd_sendto(p.a, s, buf, 1, 0, SA(to), 4), -EINVAL);
	struct sockaddr_in to0 = sin_of("10.0.0.2", 0);
	CHECK_EQ(vd_sendto(p.a, s, buf, 1, 0, SA(to0), sizeof(to0)), -EINVAL);
	/* No IP fragmentation: 1500 - 20 - 8 = 1472 bytes fit, one more does not. */
	CHECK_EQ(vd_sendto(p.a, s, buf, 1473, 0, SA(to), sizeof(to)), -EMSGSIZE);
	CHECK_EQ(vd_sendto(p.a, s, buf, 1472, 0, SA(to), sizeof(to)), 1472);
	struct sockaddr_in bc = sin_of("255.255.255.255", 7);
	CHECK_EQ(vd_sendto(p.a, s, buf, 1, 0, SA(bc), sizeof(bc)), -EACCES);
	struct sockaddr_in me = sin_of("10.0.0.1", 0);
	CHECK_EQ(vd_bind(p.a, s, SA(me), sizeof(me)), -EINVAL); /* already bound by the send */

	int t = vd_socket(p.a, AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in other = sin_of("10.0.0.9", 5000);
	CHECK_EQ(vd_bind(p.a, t, SA(other), sizeof(other)), -EADDRNOTAVAIL);
	struct sockaddr_in p5 = sin_of("10.0.0.1", 5000);
	CHECK_EQ(vd_bind(p.a, t, SA(p5), sizeof(p5)), 0);
	int u = vd_socket(p.a, AF_INET, SOCK_DGRAM, 0);
	CHECK_EQ(vd_bind(p.a, u, SA(p5), sizeof(p5)), -EADDRINUSE);
	CHECK_EQ(vd_listen(p.a, u, 5), -EOPNOTSUPP);
	CHECK_EQ(vd_accept4(p.a, u, NULL, NULL, 0), -EOPNOTSUPP);
	CHECK_EQ(vd_shutdown(p.a, u, SHUT_RDWR), -ENOTCONN);
	CHECK_EQ(vd_shutdown(p.a, u, 7), -EINVAL);
	struct sockaddr_in pn;
	socklen_t pl = sizeof(pn);
	CHECK_EQ(vd_getpeername(p.a, u, SA(pn), &pl), -ENOTCONN);

	/* Options: routing by level; unknown ones are ENOPROTOOPT. */
	int one = 1, v = 0;
	socklen_t vl = sizeof(v);
	CHECK_EQ(vd_setsockopt(p.a, u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), -ENOPROTOOPT);
	CHECK_EQ(vd_setsockopt(p.a, u, IPPROTO_UDP, 1 /* UDP_CORK */, &one, sizeof(one)), -ENOPROTOOPT);
	CHECK_EQ(vd_setsockopt(p.a, u, SOL_SOCKET, SO_PEEK_OFF, &one, sizeof(one)), -ENOPROTOOPT);
	CHECK_EQ(vd_setsockopt(p.a, u, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	CHECK_EQ(vd_getsockopt(p.a, u, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
	CHECK_EQ(v, 1);
	CHECK_EQ(vd_setsockopt(p.a, u, SOL_SOCKET, SO_RCVBUF, &one, 2), -EINVAL);
	int rb = 10000;
	CHECK_EQ(vd_setsockopt(p.a, u, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb)), 0);
	vl = sizeof(v);
	CHECK_EQ(vd_getsockopt(p.a, u, SOL_SOCKET, SO_RCVBUF, &v, &vl), 0);
	CHECK_EQ(v, 20000); /* doubled, as Linux reports it */
	vl = sizeof(v);
	CHECK_EQ(vd_getsockopt(p.a, u, SOL_SOCKET, SO_TYPE, &v, &vl), 0);
	CHECK_EQ(v, SOCK_DGRAM);
	vl = sizeof(v);
	CHECK_EQ(vd_getsockopt(p.a, u, SOL_SOCKET, SO_ERROR, &v, &vl), 0);
	CHECK_EQ(v, 0);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 2000000 };
	CHECK_EQ(vd_setsockopt(p.a, u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), -EDOM);

	/* Bad handles. */
	CHECK_EQ(vd_close(p.a, 12345), -EBADF);
	CHECK_EQ(vd_send(p.a, -1, buf, 1, 0), -EBADF);
	CHECK_EQ(vd_sock_type(p.a, 999), -EBADF);
	CHECK_EQ(vd_sock_events(p.a, 999), -EBADF);
	CHECK_EQ(vd_close(p.a, u), 0);
	CHECK_EQ(vd_close(p.a, u), -EBADF);
	pair_close(&p);
}

TEST(rcvtimeo_on_virtual_clock)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int s = udp_bound(p.a, "10.0.0.1", 5000);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 250000 };
	CHECK_EQ(vd_setsockopt(p.a, s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	struct timeval got;
	socklen_t gl = sizeof(got);
	CHECK_EQ(vd_getsockopt(p.a, s, SOL_SOCKET, SO_RCVTIMEO, &got, &gl), 0);
	CHECK_EQ(got.tv_usec, 250000);
	uint64_t t0 = vd_sim_now_ns(p.link);
	char b[8];
	CHECK_EQ(vd_recv(p.a, s, b, sizeof(b), 0), -EAGAIN);
	uint64_t dt = vd_sim_now_ns(p.link) - t0;
	CHECK(dt >= 250000000u && dt < 300000000u);
	pair_close(&p);
}

TEST(truncation_peek_iovec)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	int sb = udp_bound(p.b, "10.0.0.2", 6000);
	struct sockaddr_in to = sin_of("10.0.0.1", 5000);
	char data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (char)i;
	CHECK_EQ(vd_sendto(p.b, sb, data, 100, 0, SA(to), sizeof(to)), 100);
	CHECK_EQ(vd_sendto(p.b, sb, data, 100, 0, SA(to), sizeof(to)), 100);
	CHECK_EQ(vd_sendto(p.b, sb, data, 0, 0, SA(to), sizeof(to)), 0);
	/* Scatter/gather: three pieces out. */
	struct iovec out[3] = { { data, 10 }, { data + 10, 0 }, { data + 10, 30 } };
	struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = out, .msg_iovlen = 3 };
	CHECK_EQ(vd_sendmsg(p.b, sb, &m, 0), 40);
	pump(&p, 200);
	CHECK_EQ(vd_readable(p.a, sa), 100);

	char b[200];
	CHECK_EQ(vd_recv(p.a, sa, b, 10, MSG_PEEK), 10);
	CHECK_EQ(vd_recv(p.a, sa, b, 10, MSG_PEEK | MSG_TRUNC), 100);
	struct iovec in = { b, 10 };
	struct sockaddr_in from;
	struct msghdr r = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &in, .msg_iovlen = 1 };
	CHECK_EQ(vd_recvmsg(p.a, sa, &r, 0), 10);
	CHECK(r.msg_flags & MSG_TRUNC);
	CHECK_EQ(ntohs(from.sin_port), 6000);
	CHECK_EQ(b[9], 9);
	/* The rest of a truncated datagram is gone; MSG_TRUNC returns the real length. */
	CHECK_EQ(vd_recv(p.a, sa, b, 10, MSG_TRUNC), 100);
	/* An empty datagram is a datagram. */
	CHECK_EQ(vd_readable(p.a, sa), 0);
	CHECK(vd_sock_events(p.a, sa) & POLLIN);
	CHECK_EQ(vd_recv(p.a, sa, b, sizeof(b), 0), 0);
	/* Gather in: two pieces. */
	struct iovec in2[2] = { { b, 25 }, { b + 100, 100 } };
	struct msghdr r2 = { .msg_iov = in2, .msg_iovlen = 2 };
	CHECK_EQ(vd_recvmsg(p.a, sa, &r2, 0), 40);
	CHECK_EQ(r2.msg_flags, 0);
	CHECK(memcmp(b, data, 25) == 0 && memcmp(b + 100, data + 25, 15) == 0);
	CHECK_EQ(vd_recv(p.a, sa, b, sizeof(b), MSG_DONTWAIT), -EAGAIN);
	pair_close(&p);
}

TEST(rcvbuf_bounds_queue)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	int sb = udp_bound(p.b, "10.0.0.2", 6000);
	int rb = 4096; /* 8192 charged, datagrams of 1000 + overhead: a handful fit */
	CHECK_EQ(vd_setsockopt(p.a, sa, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb)), 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 5000);
	char d[1000] = { 1 };
	for (int i = 0; i < 100; i++) {
		CHECK_EQ(vd_sendto(p.b, sb, d, sizeof(d), 0, SA(to), sizeof(to)), 1000);
		pump(&p, 30);
	}
	int got = 0;
	char b[1000];
	while (vd_recv(p.a, sa, b, sizeof(b), MSG_DONTWAIT) == 1000)
		got++;
	struct vd_stack_stats s;
	vd_stack_stats(p.a, &s);
	CHECK(got >= 1 && got <= 8);
	CHECK_EQ(s.udp_rx_datagrams, got);
	CHECK_EQ(s.udp_rx_dropped, 100 - got);
	pair_close(&p);
}

TEST(checksums_under_corruption)
{
	struct pair p;
	struct vd_sim_params prm = { .seed = 3, .delay_ns = 20000, .corrupt_ppm = 300000 };
	REQUIRE(pair_open(&p, &prm) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	int sb = udp_bound(p.b, "10.0.0.2", 6000);
	struct sockaddr_in to = sin_of("10.0.0.1", 5000);
	char d[300];
	for (int i = 0; i < 400; i++) {
		for (int k = 0; k < 300; k++)
			d[k] = (char)(i * 7 + k);
		CHECK_EQ(vd_sendto(p.b, sb, d, sizeof(d), 0, SA(to), sizeof(to)), 300);
		pump(&p, 30);
	}
	pump(&p, 500);
	int good = 0, bad = 0;
	char b[400];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t r;
	while ((r = vd_recvfrom(p.a, sa, b, sizeof(b), MSG_DONTWAIT, SA(from), &fl)) >= 0) {
		int i; /* find the sender's i from the pattern */
		for (i = 0; i < 400; i++)
			if ((char)(i * 7) == b[0] && (char)(i * 7 + 299) == b[299])
				break;
		int ok = r == 300 && from.sin_port == htons(6000);
		for (int k = 0; ok && k < 300; k++)
			ok = b[k] == (char)(i * 7 + k);
		ok ? good++ : bad++;
		fl = sizeof(from);
	}
	struct vd_stack_stats s;
	vd_stack_stats(p.a, &s);
	struct vd_nic_stats ns;
	vd_nic_stats(vd_stack_nic(p.a), &ns);
	struct vd_sim_counters c;
	vd_sim_counters(p.link, &c);
	CHECK_EQ(bad, 0);
	CHECK(good > 200 && good < 400);
	CHECK(c.corrupted > 50);
	/* Every corrupted datagram was dropped somewhere: by the nic (IPv4 header) or by UDP (checksum), or
	 * it lost its address and went to nobody. */
	CHECK(s.udp_malformed > 0);
	CHECK_EQ((long long)good + (long long)s.udp_malformed + (long long)ns.rx_malformed + (long long)s.rx_not_ours +
			 (long long)c.unroutable,
		 400);
	pair_close(&p);
}

/* Hand-made IPv4/UDP packets through a bare IPv4-layer nic: zero checksum accepted, wrong one dropped,
 * bad UDP length dropped. */
TEST(raw_packets)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	struct vd_nic *raw;
	struct vd_nic_opts no = { .backend = VD_BACKEND_SIM, .sim = p.link, .local = "10.0.0.3:0",
				  .layer = VD_NIC_LAYER_IPV4 };
	REQUIRE(vd_nic_open(&raw, &no) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	uint16_t rport = htons(4444);
	REQUIRE(vd_nic_port_add(raw, IPPROTO_UDP, &rport) == 0);
	uint8_t pkt[40];
	struct vd_addr dst = { .ip = inet_addr("10.0.0.1") };
	for (int kind = 0; kind < 4; kind++) {
		memset(pkt, 0, sizeof(pkt));
		pkt[0] = 0x45;
		pkt[3] = 40;
		pkt[8] = 64;
		pkt[9] = IPPROTO_UDP;
		uint32_t src = inet_addr("10.0.0.3");
		memcpy(pkt + 12, &src, 4);
		memcpy(pkt + 16, &dst.ip, 4);
		uint16_t w = vd__csum_fold(vd__csum_partial(pkt, 20, 0));
		memcpy(pkt + 10, &w, 2);
		memcpy(pkt + 20, &rport, 2);
		uint16_t dp = htons(5000);
		memcpy(pkt + 22, &dp, 2);
		pkt[25] = kind == 3 ? 30 : 20; /* UDP length: 30 > what the packet holds */
		memcpy(pkt + 28, "0123456789AB", 12);
		if (kind == 1) { /* the right checksum */
			uint32_t ps = vd__csum_partial(pkt + 12, 8, 0) + htons(IPPROTO_UDP) + htons(20);
			w = vd__csum_fold(vd__csum_partial(pkt + 20, 20, ps));
			memcpy(pkt + 26, &w, 2);
		} else if (kind == 2) {
			pkt[26] = 0x12; /* wrong */
			pkt[27] = 0x34;
		}
		CHECK_EQ(vd_nic_send(raw, &dst, pkt, 40), 0);
	}
	pump(&p, 200);
	char b[64];
	CHECK_EQ(vd_recv(p.a, sa, b, sizeof(b), MSG_DONTWAIT), 12); /* zero checksum */
	CHECK_EQ(vd_recv(p.a, sa, b, sizeof(b), MSG_DONTWAIT), 12); /* right checksum */
	CHECK_EQ(vd_recv(p.a, sa, b, sizeof(b), MSG_DONTWAIT), -EAGAIN);
	struct vd_stack_stats s;
	vd_stack_stats(p.a, &s);
	CHECK_EQ(s.udp_malformed, 2);
	/* Our datagrams verify on the raw side: the sum over pseudo-header and datagram is zero. */
	struct sockaddr_in rto = sin_of("10.0.0.3", 4444);
	CHECK_EQ(vd_sendto(p.a, sa, "ping", 4, 0, SA(rto), sizeof(rto)), 4);
	pump(&p, 200);
	struct vd_frame f;
	REQUIRE(vd_nic_rx_burst(raw, &f, 1) == 1);
	const uint8_t *ip = f.data;
	CHECK_EQ(f.len, 32);
	CHECK_EQ(ip[9], IPPROTO_UDP);
	CHECK_EQ(vd__csum_fold(vd__csum_partial(ip, 20, 0)), 0);
	uint32_t ps = vd__csum_partial(ip + 12, 8, 0) + htons(IPPROTO_UDP) + htons(12);
	CHECK_EQ(vd__csum_fold(vd__csum_partial(ip + 20, 12, ps)), 0);
	CHECK(memcmp(ip + 28, "ping", 4) == 0);
	vd_nic_rx_release(raw, &f, 1);
	vd_nic_close(raw);
	pair_close(&p);
}

TEST(poll_sockets)
{
	struct pair p;
	REQUIRE(pair_open(&p, NULL) == 0);
	int sa = udp_bound(p.a, "10.0.0.1", 5000);
	int sa2 = udp_bound(p.a, "10.0.0.1", 5002);
	int sb = udp_bound(p.b, "10.0.0.2", 6000);
	struct pollfd f[4] = { { .fd = sa, .events = POLLIN }, { .fd = sa2, .events = POLLIN | POLLOUT },
			       { .fd = -1, .events = POLLIN }, { .fd = 77, .events = POLLIN } };
	CHECK_EQ(vd_poll(p.a, f, 4, 0), 2);
	CHECK_EQ(f[0].revents, 0);
	CHECK_EQ(f[1].revents, POLLOUT);
	CHECK_EQ(f[2].revents, 0);
	CHECK_EQ(f[3].revents, POLLNVAL);
	f[1].events = POLLIN;
	f[3].fd = -1;
	/* Nothing comes: the timeout passes on the virtual clock. */
	uint64_t t0 = vd_sim_now_ns(p.link);
	CHECK_EQ(vd_poll(p.a, f, 4, 30), 0);
	CHECK(vd_sim_now_ns(p.link) - t0 >= 30000000u);
	struct sockaddr_in to = sin_of("10.0.0.1", 5002);
	CHECK_EQ(vd_sendto(p.b, sb, "x", 1, 0, SA(to), sizeof(to)), 1);
	CHECK_EQ(vd_poll(p.a, f, 4, 1000), 1);
	CHECK_EQ(f[0].revents, 0);
	CHECK_EQ(f[1].revents, POLLIN);
	pair_close(&p);
}

/* ---- two threads on one stack ------------------------------------------------------------------- */

struct thr {
	struct vd_stack *st;
	int s, n, got, bad;
};

static void *receiver(void *arg)
{
	struct thr *t = arg;
	char b[64];
	for (int i = 0; i < t->n; i++) {
		ssize_t r = vd_recv(t->st, t->s, b, sizeof(b), 0); /* blocking, no timeout */
		if (r != 8 || memcmp(b, &i, sizeof(i)) != 0)
			t->bad++;
		else
			t->got++;
	}
	return NULL;
}

TEST(threads_blocked_recv_and_send)
{
	alarm(60); /* a hang here is a failure, not a stuck test run */
	struct vd_sim_link *link;
	struct vd_sim_params prm = { .seed = 9, .delay_ns = 50000 };
	REQUIRE(vd_sim_link_new(&link, &prm) == 0);
	struct vd_stack *st;
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = link, .local_ip = "10.0.0.1", .secret = 1 };
	REQUIRE(vd_stack_open(&st, &o) == 0);
	int rx = udp_bound(st, "10.0.0.1", 5000);
	int tx = udp_bound(st, "10.0.0.1", 5001);
	REQUIRE(rx >= 0 && tx >= 0);
	struct thr t = { .st = st, .s = rx, .n = 500 };
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, receiver, &t) == 0);
	struct sockaddr_in to = sin_of("10.0.0.1", 5000);
	for (int i = 0; i < 500; i++) {
		char m[8] = { 0 };
		memcpy(m, &i, sizeof(i));
		CHECK_EQ(vd_sendto(st, tx, m, 8, 0, SA(to), sizeof(to)), 8);
	}
	pthread_join(th, NULL);
	CHECK_EQ(t.got, 500);
	CHECK_EQ(t.bad, 0);
	vd_stack_close(st);
	vd_sim_link_free(link);
	alarm(0);
}

TEST_MAIN(T(unconnected_both_ways), T(connected_filters_by_peer), T(errors), T(rcvtimeo_on_virtual_clock),
	  T(truncation_peek_iovec), T(rcvbuf_bounds_queue), T(checksums_under_corruption), T(raw_packets), T(poll_sockets),
	  T(threads_blocked_recv_and_send))
