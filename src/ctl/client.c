/* SPDX-License-Identifier: MIT */
/*
 * Client side of the control protocol (see proto.h): one synchronous request/reply at a time, plus
 * requests sent without waiting (vd__ctl_send) whose replies, if any, are read and skipped later by seq.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"

int vd__ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!path)
		path = getenv(VD_CTL_ENV_PATH);
	if (!path || !*path)
		path = VD_CTL_DEFAULT_PATH;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	for (;;) {
		int n = poll(&p, 1, timeout_ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes; the first read also collects SCM_RIGHTS descriptors into rep. */
static int recv_all(int fd, char *buf, size_t len, struct vd_ctl_reply *rep, int want_fds, int timeout_ms)
{
	size_t got = 0;
	while (got < len) {
		int err = wait_readable(fd, timeout_ms);
		if (err)
			return err;
		union {
			char buf[CMSG_SPACE(sizeof(int) * VD_CTL_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { .iov_base = buf + got, .iov_len = len - got };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (want_fds) {
			msg.msg_control = ctl.buf;
			msg.msg_controllen = sizeof(ctl.buf);
		}
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		for (struct cmsghdr *c = want_fds ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int rfd;
				memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (rep->nfds < VD_CTL_MAX_FDS)
					rep->fds[rep->nfds++] = rfd;
				else
					close(rfd);
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			return -EPROTO;
		got += (size_t)n;
		want_fds = 0;
	}
	return 0;
}

static void close_fds(struct vd_ctl_reply *rep)
{
	for (unsigned i = 0; i < rep->nfds; i++)
		close(rep->fds[i]);
	rep->nfds = 0;
}

/* Per process, like the sequence numbers: error replies to requests sent with vd__ctl_send. */
static uint64_t async_failed;
static uint32_t next_seq = 1; /* per process; only used to pair replies with requests */

uint64_t vd__ctl_async_failed(void)
{
	return __atomic_load_n(&async_failed, __ATOMIC_RELAXED);
}

/* Builds and sends one request; *seq_out is its seq. */
static int send_req(int fd, uint16_t type, const void *req, size_t req_len, uint32_t *seq_out)
{
	char out[sizeof(struct vd_ctl_hdr) + 256];
	struct vd_ctl_hdr h;

	if (req_len > sizeof(out) - sizeof(h))
		return -EINVAL;
	uint32_t seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
	vd__ctl_hdr_init(&h, type, seq, 0, req_len, 0);
	memcpy(out, &h, sizeof(h));
	if (req_len)
		memcpy(out + sizeof(h), req, req_len);
	*seq_out = seq;
	return send_all(fd, out, sizeof(h) + req_len);
}

int vd__ctl_send(int fd, uint16_t type, const void *req, size_t req_len)
{
	uint32_t seq;
	return send_req(fd, type, req, req_len, &seq);
}

/*
 * Reads one whole message into buf (cap bytes) and checks it. Returns 0 or -errno; rep->hdr is filled
 * from the moment the header is in (so a caller can tell whose reply a failed one was).
 */
static int read_reply(int fd, void *buf, size_t cap, struct vd_ctl_reply *rep, int timeout_ms)
{
	const size_t hl = sizeof(struct vd_ctl_hdr);
	int err = recv_all(fd, buf, hl, rep, 1, timeout_ms);
	if (err)
		return err;
	memcpy(&rep->hdr, buf, hl);
	if (rep->hdr.magic != VD_CTL_MAGIC || rep->hdr.len < hl || rep->hdr.len > cap)
		return -EPROTO;
	err = recv_all(fd, (char *)buf + hl, rep->hdr.len - hl, rep, 0, timeout_ms);
	if (err)
		return err;
	err = vd__ctl_check(buf, rep->hdr.len, 1);
	if (!err && rep->hdr.nfds != rep->nfds)
		err = -EPROTO;
	return err;
}

/* A reply to an earlier vd__ctl_send request (vd__ctl_send asks only for replies that report errors, and
 * replies come in request order, so anything before ours is one): counted, its descriptors closed. */
static void skip_async(struct vd_ctl_reply *rep)
{
	if (rep->hdr.status < 0)
		__atomic_fetch_add(&async_failed, 1, __ATOMIC_RELAXED);
	close_fds(rep);
}

static void reply_init(struct vd_ctl_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	for (unsigned i = 0; i < VD_CTL_MAX_FDS; i++)
		rep->fds[i] = -1;
}

int vd__ctl_drain(int fd)
{
	char buf[sizeof(struct vd_ctl_hdr) + VD_CTL_REASON_MAX + 256];
	struct vd_ctl_hdr h;
	int n = 0;

	for (;;) {
		/* Only a whole header already here is read: nothing waits for a reply that is not there. The
		 * daemon writes a message at once, so its rest follows at once (bounded wait all the same). */
		ssize_t got = recv(fd, &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? n : -errno;
		if (got == 0)
			return -ECONNRESET;
		if ((size_t)got < sizeof(h))
			return n;
		struct vd_ctl_reply rep;
		reply_init(&rep);
		int err = read_reply(fd, buf, sizeof(buf), &rep, 1000);
		if (err) {
			close_fds(&rep);
			return err;
		}
		skip_async(&rep);
		n++;
	}
}

int vd__ctl_request(int fd, uint16_t type, const void *req, size_t req_len, uint32_t *seq)
{
	return send_req(fd, type, req, req_len, seq);
}

int vd__ctl_wait(int fd, uint32_t seq, uint16_t type, void *buf, size_t cap, struct vd_ctl_reply *rep,
		 int timeout_ms)
{
	int err;

	reply_init(rep);
	if (cap < sizeof(struct vd_ctl_hdr))
		return -EINVAL;
	for (;;) {
		if (timeout_ms == 0) {
			/* Only a reply whose header is here already (see vd__ctl_drain). */
			struct vd_ctl_hdr h;
			ssize_t got = recv(fd, &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
			if (got == 0)
				return -ECONNRESET;
			if ((size_t)got < sizeof(h))
				return -EAGAIN;
		}
		err = read_reply(fd, buf, cap, rep, timeout_ms ? timeout_ms : 1000);
		if (err)
			goto fail;
		if (rep->hdr.seq == seq)
			break;
		/* Bounded: each turn consumes one earlier request's reply, and those are finite. */
		skip_async(rep);
		reply_init(rep);
	}
	if ((rep->hdr.type & (uint16_t)~VD_CTL_REPLY) != type) {
		err = -EPROTO;
		goto fail;
	}
	rep->payload = (char *)buf + sizeof(struct vd_ctl_hdr);
	rep->payload_len = rep->hdr.len - sizeof(struct vd_ctl_hdr);
	return rep->hdr.status;
fail:
	close_fds(rep);
	return err;
}

int vd__ctl_call(int fd, uint16_t type, const void *req, size_t req_len, void *buf, size_t cap,
		 struct vd_ctl_reply *rep, int timeout_ms)
{
	uint32_t seq;

	reply_init(rep);
	if (cap < sizeof(struct vd_ctl_hdr))
		return -EINVAL;
	int err = send_req(fd, type, req, req_len, &seq);
	if (err)
		return err;
	/* 0 would mean "do not wait" to vd__ctl_wait; to vd__ctl_call it has always meant poll()'s 0. */
	return vd__ctl_wait(fd, seq, type, buf, cap, rep, timeout_ms ? timeout_ms : 1);
}
