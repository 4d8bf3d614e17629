/* SPDX-License-Identifier: MIT */
/*
 * The stack's clock is read once per lock hold (tcp.h vd__tcp_clock_hold) and its empty progress passes
 * check the timers through the coarse clock (stack.c timer_maybe_due), on the sim backend: a receiver
 * spinning on non-blocking recv must still see data that arrived (still on the nic, or already taken in by
 * another call), a closed handle, the peer's FIN, and timers that fire as time moves between calls.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>

#include <viaduct/socket.h>

#define SA(x) ((struct sockaddr *)&(x))
#define DELAY_NS 50000u

struct pair {
	struct vd_sim_link *link;
	struct vd_stack *a, *b;
	int l, cs, as; /* a's listener, b's connection, a's accepted end */
};

static struct sockaddr_in sin_of(const char *ip, int port)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &s.sin_addr);
	return s;
}

static void pump(struct pair *p, unsigned us)
{
	for (unsigned i = 0; i < us / 10 + 1; i++) {
		vd_stack_progress(p->a);
		vd_stack_progress(p->b);
		vd_sim_advance(p->link, 10000);
	}
}

/* Two stacks, b connected to a's listener on port 80; then quiet for a second (no timer left running). */
static int pair_up(struct pair *p, const struct vd_sim_params *prm)
{
	struct vd_sim_params def = { .seed = 3, .delay_ns = DELAY_NS };
	if (vd_sim_link_new(&p->link, prm ? prm : &def) < 0)
		return -1;
	struct vd_stack_opts o = { .backend = VD_BACKEND_SIM, .sim = p->link, .local_ip = "10.0.0.1", .secret = 5 };
	if (vd_stack_open(&p->a, &o) < 0)
		return -1;
	o.local_ip = "10.0.0.2";
	if (vd_stack_open(&p->b, &o) < 0)
		return -1;
	p->l = vd_socket(p->a, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in la = sin_of("0.0.0.0", 80), to = sin_of("10.0.0.1", 80);
	if (p->l < 0 || vd_bind(p->a, p->l, SA(la), sizeof(la)) < 0 || vd_listen(p->a, p->l, 4) < 0)
		return -2;
	p->cs = vd_socket(p->b, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (p->cs < 0 || vd_connect(p->b, p->cs, SA(to), sizeof(to)) != -EINPROGRESS)
		return -3;
	p->as = -1;
	for (int i = 0; i < 10000 && p->as < 0; i++) { /* 10 s virtual: a lost SYN waits for the RTO */
		pump(p, 1000);
		p->as = vd_accept4(p->a, p->l, NULL, NULL, SOCK_NONBLOCK);
	}
	if (p->as < 0)
		return -4;
	/* one small message at a time, each answered later than the peer's delayed ACK: no Nagle wait */
	int one = 1;
	vd_setsockopt(p->b, p->cs, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pump(p, 1000000);
	return 0;
}

static void pair_down(struct pair *p)
{
	vd_stack_close(p->a);
	vd_stack_close(p->b);
	vd_sim_link_free(p->link);
}

/* Spins like a busy-polling program: every call must say EAGAIN. */
static int spin_empty(struct vd_stack *st, int s, int n)
{
	char buf[64];
	for (int i = 0; i < n; i++)
		if (vd_recv(st, s, buf, sizeof(buf), 0) != -EAGAIN)
			return -1;
	return 0;
}

TEST(recv_sees_frame_waiting_on_nic)
{
	struct pair p;
	REQUIRE(pair_up(&p, NULL) == 0);
	for (int round = 0; round < 100; round++) {
		CHECK_EQ(spin_empty(p.a, p.as, 5), 0);
		char msg[8] = "ping", buf[64];
		msg[4] = (char)round;
		CHECK_EQ(vd_send(p.b, p.cs, msg, 5, 0), 5);
		vd_sim_advance(p.link, 2 * DELAY_NS); /* due on a's nic; no call of a's has seen it yet */
		CHECK_EQ(vd_recv(p.a, p.as, buf, sizeof(buf), 0), 5);
		CHECK(memcmp(buf, msg, 5) == 0);
		vd_sim_advance(p.link, 2 * DELAY_NS);
		vd_stack_progress(p.b); /* b takes in the ACK */
	}
	pair_down(&p);
}

TEST(recv_sees_data_taken_in_by_another_call)
{
	struct pair p;
	REQUIRE(pair_up(&p, NULL) == 0);
	for (int round = 0; round < 100; round++) {
		CHECK_EQ(spin_empty(p.a, p.as, 5), 0);
		char buf[64];
		CHECK_EQ(vd_send(p.b, p.cs, "pong", 4, 0), 4);
		vd_sim_advance(p.link, 2 * DELAY_NS);
		/* Another call's progress pass (another thread's, in a real program) takes the frame in: the
		 * nic has nothing left, only gen says something changed. */
		CHECK(vd_stack_progress(p.a) > 0);
		CHECK_EQ(vd_recv(p.a, p.as, buf, sizeof(buf), 0), 4);
		vd_sim_advance(p.link, 2 * DELAY_NS);
		vd_stack_progress(p.b);
	}
	pair_down(&p);
}

TEST(recv_sees_close_and_shutdown)
{
	struct pair p;
	char buf[8];
	REQUIRE(pair_up(&p, NULL) == 0);
	CHECK_EQ(spin_empty(p.a, p.as, 5), 0);
	CHECK_EQ(vd_shutdown(p.a, p.as, SHUT_RD), 0);
	CHECK_EQ(vd_recv(p.a, p.as, buf, sizeof(buf), 0), 0); /* end of stream after SHUT_RD */
	CHECK_EQ(spin_empty(p.b, p.cs, 5), 0);
	CHECK_EQ(vd_close(p.b, p.cs), 0);
	CHECK_EQ(vd_recv(p.b, p.cs, buf, sizeof(buf), 0), -EBADF);
	pair_down(&p);
}

/* The peer's FIN and its data, both taken while the receiver spins: data first, then end of stream. */
TEST(recv_sees_fin)
{
	struct pair p;
	char buf[8];
	REQUIRE(pair_up(&p, NULL) == 0);
	CHECK_EQ(spin_empty(p.a, p.as, 5), 0);
	CHECK_EQ(vd_send(p.b, p.cs, "x", 1, 0), 1);
	CHECK_EQ(vd_shutdown(p.b, p.cs, SHUT_WR), 0);
	vd_sim_advance(p.link, 2 * DELAY_NS);
	CHECK_EQ(vd_recv(p.a, p.as, buf, sizeof(buf), 0), 1);
	int r = -EAGAIN;
	for (int i = 0; i < 100 && r == -EAGAIN; i++) {
		r = (int)vd_recv(p.a, p.as, buf, sizeof(buf), 0);
		vd_sim_advance(p.link, DELAY_NS);
	}
	CHECK_EQ(r, 0);
	pair_down(&p);
}

/*
 * Time moves between calls (the clock is kept per lock hold only): on a link losing 30% of its frames,
 * what the sender queued arrives only through retransmissions (RTO, tail loss probes), i.e. timers that
 * fire while the receiver spins on a non-blocking recv and the sender is only called in between.
 */
TEST(clock_moves_between_calls_timers_fire)
{
	struct pair p;
	struct vd_sim_params prm = { .seed = 11, .delay_ns = DELAY_NS, .loss_ppm = 300000 };
	REQUIRE(pair_up(&p, &prm) == 0);
	char msg[100], buf[256];
	memset(msg, 'm', sizeof(msg));
	size_t sent = 0, got = 0;
	/* 60 s of virtual time in 1 ms steps, bounded; RTOs back off from 200 ms */
	for (int i = 0; i < 60000 && got < 20 * sizeof(msg); i++) {
		if (sent < 20 * sizeof(msg)) {
			ssize_t w = vd_send(p.b, p.cs, msg, sizeof(msg), 0);
			if (w > 0)
				sent += (size_t)w;
		}
		ssize_t r = vd_recv(p.a, p.as, buf, sizeof(buf), 0);
		if (r > 0)
			got += (size_t)r;
		else
			CHECK_EQ(r, -EAGAIN);
		vd_stack_progress(p.b);
		vd_sim_advance(p.link, 1000000);
	}
	CHECK_EQ(got, 20 * sizeof(msg));
	struct vd_sim_counters sc;
	vd_sim_counters(p.link, &sc);
	CHECK(sc.lost > 0); /* the test did lose frames */
	pair_down(&p);
}

TEST_MAIN(T(recv_sees_frame_waiting_on_nic), T(recv_sees_data_taken_in_by_another_call),
	  T(recv_sees_close_and_shutdown), T(recv_sees_fin), T(clock_moves_between_calls_timers_fire))
