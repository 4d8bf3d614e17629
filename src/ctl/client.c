/* SPDX-License-Identifier: MIT */
/* Client side of the control protocol (see proto.h): one synchronous request/reply at a time. */
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

int vd__ctl_call(int fd, uint16_t type, const void *req, size_t req_len, void *buf, size_t cap,
		 struct vd_ctl_reply *rep, int timeout_ms)
{
	static uint32_t next_seq = 1; /* per process; only used to pair replies with requests */
	char out[sizeof(struct vd_ctl_hdr) + 256];
	struct vd_ctl_hdr h;

	memset(rep, 0, sizeof(*rep));
	for (unsigned i = 0; i < VD_CTL_MAX_FDS; i++)
		rep->fds[i] = -1;
	if (req_len > sizeof(out) - sizeof(h) || cap < sizeof(h))
		return -EINVAL;

	uint32_t seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
	vd__ctl_hdr_init(&h, type, seq, 0, req_len, 0);
	memcpy(out, &h, sizeof(h));
	if (req_len)
		memcpy(out + sizeof(h), req, req_len);
	int err = send_all(fd, out, sizeof(h) + req_len);
	if (err)
		return err;

	err = recv_all(fd, buf, sizeof(h), rep, 1, timeout_ms);
	if (err)
		goto fail;
	memcpy(&rep->hdr, buf, sizeof(h));
	if (rep->hdr.magic != VD_CTL_MAGIC || rep->hdr.len < sizeof(h) || rep->hdr.len > cap) {
		err = -EPROTO;
		goto fail;
	}
	err = recv_all(fd, (char *)buf + sizeof(h), rep->hdr.len - sizeof(h), rep, 0, timeout_ms);
	if (err)
		goto fail;
	err = vd__ctl_check(buf, rep->hdr.len, 1);
	if (!err && (rep->hdr.seq != seq || (rep->hdr.type & (uint16_t)~VD_CTL_REPLY) != type ||
		     rep->hdr.nfds != rep->nfds))
		err = -EPROTO;
	if (err)
		goto fail;
	rep->payload = (char *)buf + sizeof(h);
	rep->payload_len = rep->hdr.len - sizeof(h);
	return rep->hdr.status;
fail:
	close_fds(rep);
	return err;
}
