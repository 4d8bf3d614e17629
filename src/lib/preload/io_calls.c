/* SPDX-License-Identifier: MIT */
/*
 * Data calls on mapped fds: send/sendto/sendmsg/sendmmsg, recv/recvfrom/recvmsg/recvmmsg, read/write,
 * readv/writev, sendfile, and glibc's _FORTIFY_SOURCE variants (__read_chk...), which programs built by
 * Debian call instead of the plain names.
 *
 * The viaduct sockets themselves are always non-blocking; blocking is done here (vd__wait_sock) so that
 * it honours signals (EINTR), SO_RCVTIMEO/SO_SNDTIMEO and the program's O_NONBLOCK. A blocking stream
 * send returns only once everything is queued, as the kernel's does (socket(7)); a short count only after
 * a signal or a send timeout with part of it queued.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "lib/preload/preload.h"

#define VD__IOV_LOCAL 16

static int orphan_err(struct vd__psock *ps, int fd)
{
	if (!atomic_load_explicit(&ps->orphan, memory_order_relaxed))
		return 0;
	vd__warn_orphan(fd);
	errno = ENOTSUP;
	return -1;
}

static ssize_t would_block(struct vd__psock *ps)
{
	/* EPOLLET re-arms once the program has seen EAGAIN (epoll.c). */
	atomic_fetch_add_explicit(&ps->eagain_gen, 1, memory_order_relaxed);
	errno = EAGAIN;
	return -1;
}

/* EPIPE on a stream: the kernel raises SIGPIPE in the sending thread unless MSG_NOSIGNAL (send(2)). */
static void maybe_sigpipe(struct vd__psock *ps, ssize_t r, int flags)
{
	if (r == -EPIPE && ps->type == SOCK_STREAM && !(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
}

/* Advances iov[*cnt] past n bytes (a partial stream send). */
static void iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt > 0 && n) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;

	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/*
 * Every send variant ends here. iov is the caller's (not modified: a copy is advanced). msg: the caller's
 * msghdr when it came through sendmsg (its control data is passed on), else NULL.
 */
static ssize_t send_iov(int fd, struct vd__psock *ps, const struct iovec *uiov, int cnt, const struct msghdr *umsg,
			const struct sockaddr *to, socklen_t tolen, int flags)
{
	struct vd_stack *st = vd__stack_if_open();
	struct iovec local[VD__IOV_LOCAL], *iov = local, *cur;
	bool block = !(flags & MSG_DONTWAIT) && !atomic_load(&ps->nonblock);
	size_t want, done = 0;
	ssize_t r;

	if (orphan_err(ps, fd))
		return -1;
	if (cnt < 0 || cnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (cnt > VD__IOV_LOCAL && !(iov = malloc(cnt * sizeof(*iov)))) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(iov, uiov, cnt * sizeof(*iov));
	cur = iov;
	want = iov_total(iov, cnt);
	flags &= ~MSG_DONTWAIT; /* the viaduct socket never blocks */
	for (;;) {
		vd__enter();
		if (cnt == 1 && !umsg) {
			r = to ? vd_sendto(st, ps->h, cur->iov_base, cur->iov_len, flags, to, tolen)
			       : vd_send(st, ps->h, cur->iov_base, cur->iov_len, flags);
		} else {
			struct msghdr m = { .msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = cur,
					    .msg_iovlen = (size_t)cnt };
			if (umsg) {
				m.msg_control = umsg->msg_control;
				m.msg_controllen = umsg->msg_controllen;
			}
			r = vd_sendmsg(st, ps->h, &m, flags);
		}
		vd__leave();
		if (r >= 0) {
			done += (size_t)r;
			/* Datagrams go whole; streams loop until all is queued when blocking. */
			if (ps->type != SOCK_STREAM || !block || done >= want)
				break;
			iov_advance(&cur, &cnt, (size_t)r);
			r = -EAGAIN; /* the buffer is full: wait for room */
		}
		if (r != -EAGAIN) {
			maybe_sigpipe(ps, r, flags);
			break;
		}
		/* No progress pass of our own before EAGAIN: vd_send* already ran one under its lock and tried
		 * again (sock_api.c tcp_sendv/udp_sendv), so a program spinning on a non-blocking send (no
		 * poll) still sees the ACKs that make room. A second pass here only lengthened the spin. */
		if (!block)
			break;
		r = vd__wait_sock(ps, POLLOUT, ps->sndtimeo_us ? ps->sndtimeo_us : -1);
		if (r < 0)
			break;
	}
	if (iov != local)
		free(iov);
	if (done > 0)
		return (ssize_t)done;
	if (r == -EAGAIN && !block)
		return would_block(ps);
	return vd__ret(r);
}

/* Every receive variant ends here. msg: the caller's msghdr for recvmsg (filled in), else NULL. */
static ssize_t recv_common(int fd, struct vd__psock *ps, void *buf, size_t len, struct msghdr *msg,
			   struct sockaddr *from, socklen_t *fromlen, int flags)
{
	struct vd_stack *st = vd__stack_if_open();
	bool block = !(flags & MSG_DONTWAIT) && !atomic_load(&ps->nonblock);
	bool waitall = (flags & MSG_WAITALL) && ps->type == SOCK_STREAM && !msg && !(flags & MSG_PEEK);
	size_t done = 0;
	ssize_t r;

	if (orphan_err(ps, fd))
		return -1;
	flags &= ~(MSG_DONTWAIT | MSG_WAITALL);
	for (;;) {
		vd__enter();
		if (msg)
			r = vd_recvmsg(st, ps->h, msg, flags);
		else
			r = vd_recvfrom(st, ps->h, (char *)buf + done, len - done, flags, from, fromlen);
		vd__leave();
		if (r > 0 && waitall && block) {
			done += (size_t)r;
			if (done >= len)
				return (ssize_t)done;
			r = -EAGAIN;
		} else if (r >= 0) {
			return (ssize_t)done + r;
		}
		if (r != -EAGAIN)
			break;
		/* vd_recv* run a progress pass under their lock before they read (sock_api.c do_recvmsg):
		 * what has arrived is taken in before EAGAIN, so no pass of our own (it cost a spinning
		 * non-blocking receiver two more lock rounds and passes per call: a longer spin round, a
		 * later look at the ring). */
		if (!block)
			return done ? (ssize_t)done : would_block(ps);
		r = vd__wait_sock(ps, POLLIN, ps->rcvtimeo_us ? ps->rcvtimeo_us : -1);
		if (r < 0)
			break;
	}
	if (done)
		return (ssize_t)done;
	return vd__ret(r);
}

VD__EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
			  socklen_t tolen)
{
	struct vd__psock *ps;
	struct iovec iov = { (void *)buf, len };

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps || (to && !vd__decide_dest(fd, ps, to, tolen)))
		return vd__real.sendto(fd, buf, len, flags, to, tolen);
	return send_iov(fd, ps, &iov, 1, NULL, to, tolen, flags);
}

VD__EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct vd__psock *ps;
	struct iovec iov = { (void *)buf, len };

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.send(fd, buf, len, flags);
	return send_iov(fd, ps, &iov, 1, NULL, NULL, 0, flags);
}

VD__EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct vd__psock *ps;
	struct iovec iov = { (void *)buf, len };

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.write(fd, buf, len);
	return send_iov(fd, ps, &iov, 1, NULL, NULL, 0, 0);
}

VD__EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.writev(fd, iov, cnt);
	return send_iov(fd, ps, iov, cnt, NULL, NULL, 0, 0);
}

VD__EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps || (msg->msg_name && !vd__decide_dest(fd, ps, msg->msg_name, msg->msg_namelen)))
		return vd__real.sendmsg(fd, msg, flags);
	return send_iov(fd, ps, msg->msg_iov, (int)msg->msg_iovlen, msg, msg->msg_name, msg->msg_namelen, flags);
}

VD__EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
	struct vd__psock *ps;
	unsigned i;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps || (n && vec[0].msg_hdr.msg_name &&
		    !vd__decide_dest(fd, ps, vec[0].msg_hdr.msg_name, vec[0].msg_hdr.msg_namelen)))
		return vd__real.sendmmsg(fd, vec, n, flags);
	/* sendmmsg(2): blocks only for the first message; returns how many went, or the first's error. */
	for (i = 0; i < n; i++) {
		ssize_t r = sendmsg(fd, &vec[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags);
		if (r < 0)
			return i ? (int)i : -1;
		vec[i].msg_len = (unsigned)r;
	}
	return (int)i;
}

VD__EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.recvfrom(fd, buf, len, flags, from, fromlen);
	return recv_common(fd, ps, buf, len, NULL, from, fromlen, flags);
}

VD__EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.recv(fd, buf, len, flags);
	return recv_common(fd, ps, buf, len, NULL, NULL, NULL, flags);
}

VD__EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.read(fd, buf, len);
	return recv_common(fd, ps, buf, len, NULL, NULL, NULL, 0);
}

VD__EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct vd__psock *ps;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.recvmsg(fd, msg, flags);
	return recv_common(fd, ps, NULL, 0, msg, NULL, NULL, flags);
}

VD__EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	struct vd__psock *ps;
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.readv(fd, iov, cnt);
	if (cnt < 0 || cnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	return recv_common(fd, ps, NULL, 0, &m, NULL, NULL, 0);
}

VD__EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, struct timespec *timeout)
{
	struct vd__psock *ps;
	unsigned i;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.recvmmsg(fd, vec, n, flags, timeout);
	/* recvmmsg(2): blocks for the first unless MSG_DONTWAIT; MSG_WAITFORONE: the rest never block. The
	 * timeout (documented as broken in recvmmsg(2) itself) is not applied. */
	for (i = 0; i < n; i++) {
		int f = flags & ~MSG_WAITFORONE;
		if (i && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		ssize_t r = recv_common(fd, ps, NULL, 0, &vec[i].msg_hdr, NULL, NULL, f);
		if (r < 0) {
			if (i)
				break;
			return -1;
		}
		vec[i].msg_len = (unsigned)r;
	}
	return (int)i;
}

/* sendfile(2) into a viaduct socket: read the file, send it (sendfile cannot reach our TX frames). */
VD__EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	struct vd__psock *ps;
	char buf[16384];
	size_t done = 0;

	VD__INIT();
	ps = vd__mapped(out);
	if (!ps)
		return vd__real.sendfile(out, in, off, count);
	while (done < count) {
		size_t chunk = count - done < sizeof(buf) ? count - done : sizeof(buf);
		ssize_t n = off ? pread(in, buf, chunk, *off) : vd__real.read(in, buf, chunk);
		if (n <= 0) {
			if (n < 0 && !done)
				return -1;
			break;
		}
		struct iovec iov = { buf, (size_t)n };
		ssize_t w = send_iov(out, ps, &iov, 1, NULL, NULL, 0, 0);
		if (w <= 0) {
			if (!done)
				return w;
			if (!off) /* the unsent part was read from the file's offset: put it back */
				lseek(in, -(off_t)n, SEEK_CUR);
			break;
		}
		if (off)
			*off += w;
		else if (w < n)
			lseek(in, w - n, SEEK_CUR);
		done += (size_t)w;
		if (w < n)
			break;
	}
	return (ssize_t)done;
}

/* sendfile64: what programs built with _FILE_OFFSET_BITS=64 call; off_t is off64_t on LP64. */
VD__EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t count);
VD__EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	_Static_assert(sizeof(off_t) == sizeof(off64_t), "LP64 only");
	return sendfile(out, in, (off_t *)off, count);
}

/* glibc's _FORTIFY_SOURCE entry points (debian/rules builds with -D_FORTIFY_SOURCE=2): same checks. */
extern void __chk_fail(void) __attribute__((noreturn));

VD__EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
VD__EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return read(fd, buf, len);
}

VD__EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
VD__EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__chk_fail();
	return recv(fd, buf, len, flags);
}

VD__EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from,
				  socklen_t *fromlen);
VD__EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from,
				  socklen_t *fromlen)
{
	if (len > buflen)
		__chk_fail();
	return recvfrom(fd, buf, len, flags, from, fromlen);
}
