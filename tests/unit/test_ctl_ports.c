/* SPDX-License-Identifier: MIT */
/*
 * Batched port requests (EP_PORTS_ADD / EP_PORTS_DEL): the codec's rules for them, and the client's
 * requests sent without waiting (vd__ctl_send): their error replies, which arrive ahead of later replies,
 * are skipped by seq in vd__ctl_call and read without blocking by vd__ctl_drain, and counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/client.h"
#include "ctl/proto.h"
#include "harness.h"

struct msg {
	struct vd_ctl_hdr h;
	union {
		struct vd_ctl_ep_ports_req req;
		struct vd_ctl_ep_ports_rep rep;
		struct vd_ctl_neigh_req neigh;
		char raw[512];
	} u;
};

static size_t mk(struct msg *m, uint16_t type, size_t plen)
{
	memset(m, 0, sizeof(*m));
	vd__ctl_hdr_init(&m->h, type, 9, 0, plen, 0);
	return sizeof(m->h) + plen;
}

TEST(ports_add_request_rules)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_EP_PORTS_ADD, sizeof(m.u.req));
	m.u.req.proto = VD_CTL_PROTO_TCP;
	m.u.req.count = 32;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	m.u.req.count = VD_CTL_PORTS_BATCH_MAX;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	m.u.req.count = 0;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.count = VD_CTL_PORTS_BATCH_MAX + 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.count = 4;
	m.u.req.port_be[0] = htons(40000);   /* ADD picks ports: none may be named */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.port_be[0] = 0;
	m.u.req.hold_ms = 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.hold_ms = 0;
	m.u.req.flags = VD_CTL_PORTS_QUIET;   /* an ADD always replies */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.flags = 0;
	m.u.req.proto = 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.proto = VD_CTL_PROTO_UDP;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	CHECK_EQ(vd__ctl_check(&m, n - 2, 0), -EPROTO);   /* header len no longer matches */
	m.h.len -= 2;
	CHECK_EQ(vd__ctl_check(&m, n - 2, 0), -EBADMSG); /* a shorter payload than the type's */
}

TEST(ports_del_request_rules)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_EP_PORTS_DEL, sizeof(m.u.req));
	m.u.req.proto = VD_CTL_PROTO_TCP;
	m.u.req.count = 2;
	m.u.req.port_be[0] = htons(40000);
	m.u.req.port_be[1] = htons(40001);
	m.u.req.hold_ms = 60000;
	m.u.req.flags = VD_CTL_PORTS_QUIET;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	m.u.req.flags = 2;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.flags = 0;
	m.u.req.hold_ms = VD_CTL_HOLD_MAX_MS + 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.hold_ms = VD_CTL_HOLD_MAX_MS;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	m.u.req.port_be[1] = 0;                /* fewer ports than count */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	m.u.req.port_be[1] = htons(40001);
	m.u.req.port_be[2] = htons(40002);     /* more ports than count */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
}

TEST(ports_add_reply_rules)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_EP_PORTS_ADD | VD_CTL_REPLY, sizeof(m.u.rep));
	m.u.rep.count = 3;
	for (unsigned i = 0; i < 3; i++)
		m.u.rep.port_be[i] = htons((uint16_t)(50000 + i));
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
	m.u.rep.count = 4;                     /* lists fewer than it says */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	m.u.rep.count = 2;                     /* lists more than it says */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	memset(&m.u.rep, 0, sizeof(m.u.rep));  /* a success with no port */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	/* No reply of DEL carries a payload on success. */
	n = mk(&m, VD_CTL_EP_PORTS_DEL | VD_CTL_REPLY, 0);
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
}

/* Reads one whole request from fd into m; 0 at EOF, -1 on error. */
static int read_msg(int fd, struct msg *m)
{
	ssize_t n = recv(fd, &m->h, sizeof(m->h), MSG_WAITALL);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(m->h) || m->h.len < sizeof(m->h) || m->h.len > sizeof(*m))
		return -1;
	size_t rest = m->h.len - sizeof(m->h);
	if (rest && recv(fd, &m->u, rest, MSG_WAITALL) != (ssize_t)rest)
		return -1;
	return vd__ctl_check(m, m->h.len, 0) == 0 ? 1 : -1;
}

/*
 * A daemon of two rules: a quiet EP_PORTS_DEL of port 1 fails (error reply), any other quiet one succeeds
 * (no reply); NEIGH replies with a MAC whose last byte is the request's seq's low byte.
 */
static void fake_daemon(int fd)
{
	struct msg in;
	int r;
	while ((r = read_msg(fd, &in)) > 0) {
		if (in.h.type == VD_CTL_EP_PORTS_DEL) {
			if (!(in.u.req.flags & VD_CTL_PORTS_QUIET) || in.u.req.port_be[0] != htons(1))
				continue;
			struct {
				struct vd_ctl_hdr h;
				char why[16];
			} err = { .why = "too many held" };
			vd__ctl_hdr_init(&err.h, VD_CTL_EP_PORTS_DEL | VD_CTL_REPLY, in.h.seq, -ENOSPC, sizeof(err.why), 0);
			if (send(fd, &err, sizeof(err), 0) != sizeof(err))
				_exit(2);
		} else if (in.h.type == VD_CTL_NEIGH) {
			struct {
				struct vd_ctl_hdr h;
				struct vd_ctl_neigh_rep r;
			} out = { .r = { .mac = { 2, 0, 0, 0, 0, (uint8_t)in.h.seq } } };
			vd__ctl_hdr_init(&out.h, VD_CTL_NEIGH | VD_CTL_REPLY, in.h.seq, 0, sizeof(out.r), 0);
			if (send(fd, &out, sizeof(out), 0) != sizeof(out))
				_exit(2);
		} else {
			_exit(3);
		}
	}
	_exit(r == 0 ? 0 : 1);
}

static int quiet_del(int fd, uint16_t port)
{
	struct vd_ctl_ep_ports_req q = {
		.ep_id = 1, .proto = VD_CTL_PROTO_TCP, .flags = VD_CTL_PORTS_QUIET, .count = 1, .hold_ms = 60000,
	};
	q.port_be[0] = htons(port);
	return vd__ctl_send(fd, VD_CTL_EP_PORTS_DEL, &q, sizeof(q));
}

/* A synchronous NEIGH; returns the status, and checks that the reply is this call's own. */
static int neigh(int fd)
{
	char buf[512];
	struct vd_ctl_reply rep;
	struct vd_ctl_neigh_req q = { .ifindex = 1, .ip_be = htonl(0x0a000001) };
	int r = vd__ctl_call(fd, VD_CTL_NEIGH, &q, sizeof(q), buf, sizeof(buf), &rep, 2000);
	if (r == 0) {
		CHECK_EQ(rep.payload_len, sizeof(struct vd_ctl_neigh_rep));
		CHECK_EQ(((struct vd_ctl_neigh_rep *)rep.payload)->mac[5], (uint8_t)rep.hdr.seq);
		CHECK_EQ(rep.hdr.type, VD_CTL_NEIGH | VD_CTL_REPLY);
	}
	return r;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

TEST(async_replies_skipped_and_counted)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		fake_daemon(sv[1]);
	}
	close(sv[1]);
	int fd = sv[0];
	uint64_t failed0 = vd__ctl_async_failed();

	/* Nothing outstanding: a drain reads nothing and does not wait. */
	uint64_t t0 = now_ms();
	CHECK_EQ(vd__ctl_drain(fd), 0);
	CHECK(now_ms() - t0 < 500);

	/* One failed quiet request between two that succeeded, then a call: the call gets its own reply. */
	CHECK_EQ(quiet_del(fd, 40000), 0);
	CHECK_EQ(quiet_del(fd, 1), 0);
	CHECK_EQ(quiet_del(fd, 40001), 0);
	CHECK_EQ(neigh(fd), 0);
	CHECK_EQ(vd__ctl_async_failed() - failed0, 1);

	/* Two failures, then drain until both are read (the fake daemon answers at its own pace). */
	CHECK_EQ(quiet_del(fd, 1), 0);
	CHECK_EQ(quiet_del(fd, 1), 0);
	int got = 0;
	for (uint64_t end = now_ms() + 2000; got < 2 && now_ms() < end;) {
		int r = vd__ctl_drain(fd);
		REQUIRE(r >= 0);
		got += r;
		if (got < 2)
			usleep(1000);
	}
	CHECK_EQ(got, 2);
	CHECK_EQ(vd__ctl_async_failed() - failed0, 3);
	CHECK_EQ(vd__ctl_drain(fd), 0);

	/* Many quiet requests, most of them silent, then calls: every call still pairs with its reply. */
	for (unsigned i = 0; i < 200; i++)
		CHECK_EQ(quiet_del(fd, i % 50 == 0 ? 1 : (uint16_t)(40000 + i)), 0);
	CHECK_EQ(neigh(fd), 0);
	CHECK_EQ(neigh(fd), 0);
	CHECK_EQ(vd__ctl_async_failed() - failed0, 7);

	close(fd);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_MAIN(T(ports_add_request_rules), T(ports_del_request_rules), T(ports_add_reply_rules),
	  T(async_replies_skipped_and_counted))
