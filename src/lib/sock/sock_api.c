/* SPDX-License-Identifier: MIT */
/*
 * The BSD calls of include/viaduct/socket.h on top of the TCP engine (src/lib/tcp/tcp.h) and udp.c.
 *
 * Each call takes the stack's lock, runs a progress pass where waiting for the network could matter, and
 * maps the engine's non-blocking answers onto blocking semantics: a blocking socket waits in
 * vd__stack_wait() (lock dropped meanwhile) until the condition holds, SO_RCVTIMEO / SO_SNDTIMEO passes
 * (-EAGAIN, or the partial count, as Linux), or the handle is closed by another thread (-EBADF).
 */
#include "sock_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define IOV_MAX_ 1024   /* Linux's UIO_MAXIOV */
#define TX_RETRY_NS 1000000ull

/* ---- helpers ------------------------------------------------------------------------------------ */

/* Locks the stack and finds the socket; on failure unlocks and returns NULL. */
static struct vd_sock *enter(struct vd_stack *st, int s)
{
	vd__stack_lock(st);
	struct vd_sock *sk = vd__sock_get(st, s);
	if (!sk)
		vd__stack_unlock(st);
	return sk;
}

/* After a wait: does handle s still name sk? (Another thread may have closed it meanwhile.) */
static int still(struct vd_stack *st, int s, struct vd_sock *sk, uint32_t gen)
{
	return vd__sock_get(st, s) == sk && vd__sock_gen(st, s) == gen;
}

/* AF_INET address in; 1 for AF_UNSPEC when allowed. */
static int get_sin(const struct sockaddr *a, socklen_t len, struct sockaddr_in *out, int allow_unspec)
{
	if (!a)
		return -EFAULT;
	if (len < sizeof(sa_family_t))
		return -EINVAL;
	if (allow_unspec && a->sa_family == AF_UNSPEC)
		return 1;
	if (a->sa_family != AF_INET)
		return -EAFNOSUPPORT;
	if (len < sizeof(struct sockaddr_in))
		return -EINVAL;
	memcpy(out, a, sizeof(*out));
	return 0;
}

/* Address out, truncated to *len as the kernel does; *len becomes the full size. */
static void put_sin(struct sockaddr *a, socklen_t *len, uint32_t ip, uint16_t port)
{
	if (!a || !len)
		return;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = port, .sin_addr.s_addr = ip };
	socklen_t n = *len < sizeof(sin) ? *len : (socklen_t)sizeof(sin);
	memcpy(a, &sin, n);
	*len = sizeof(sin);
}

static uint64_t deadline(struct vd_stack *st, uint64_t tmo_ns)
{
	return tmo_ns ? vd__stack_now(st) + tmo_ns : 0;
}

static int nonblocking(const struct vd_sock *sk, int flags)
{
	return sk->nonblock || (flags & MSG_DONTWAIT);
}

/* ---- socket, bind, listen, accept, connect ------------------------------------------------------ */

VD_API int vd_socket(struct vd_stack *st, int domain, int type, int protocol)
{
	if (domain != AF_INET)
		return -EAFNOSUPPORT;
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (base == SOCK_STREAM) {
		if (protocol != 0 && protocol != IPPROTO_TCP)
			return -EPROTONOSUPPORT;
	} else if (base == SOCK_DGRAM) {
		if (protocol != 0 && protocol != IPPROTO_UDP)
			return -EPROTONOSUPPORT;
	} else {
		return -ESOCKTNOSUPPORT;
	}
	struct vd_sock *sk = vd__sock_new(st);
	if (!sk)
		return -ENOMEM;
	sk->type = base;
	sk->nonblock = (type & SOCK_NONBLOCK) != 0;

	vd__stack_lock(st);
	int rc = 0;
	if (base == SOCK_STREAM) {
		rc = vd__tcb_new(st->tcp, &sk->tcb);
		if (rc == 0)
			vd__tcb_set_user(sk->tcb, sk);
	} else {
		vd__udp_sock_init(&sk->udp);
	}
	if (rc == 0) {
		rc = vd__sock_alloc(st, sk);
		if (rc < 0 && base == SOCK_STREAM)
			vd__tcb_close(sk->tcb);
	}
	vd__stack_unlock(st);
	if (rc < 0)
		vd__sock_delete(st, sk);
	return rc;
}

VD_API int vd_bind(struct vd_stack *st, int s, const struct sockaddr *addr, socklen_t len)
{
	struct sockaddr_in sin;
	int rc = get_sin(addr, len, &sin, 0);
	if (rc < 0)
		return rc;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	if (sk->type == SOCK_STREAM)
		rc = vd__tcb_bind(sk->tcb, sin.sin_addr.s_addr, sin.sin_port);
	else
		rc = vd__udp_bind(st->udp, &sk->udp, sin.sin_addr.s_addr, sin.sin_port);
	vd__stack_unlock(st);
	return rc;
}

VD_API int vd_listen(struct vd_stack *st, int s, int backlog)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc = sk->type == SOCK_STREAM ? vd__tcb_listen(sk->tcb, backlog) : -EOPNOTSUPP;
	vd__stack_unlock(st);
	return rc;
}

VD_API int vd_accept4(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	if (sk->type != SOCK_STREAM) {
		vd__stack_unlock(st);
		return -EOPNOTSUPP;
	}
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->rcvtimeo_ns);
	struct vd__tcb *c = NULL;
	int rc;
	(void)vd__stack_progress_locked(st);
	for (;;) {
		rc = vd__tcb_accept(sk->tcb, &c);
		if (rc != -EAGAIN || sk->nonblock)
			break;
		if (vd__stack_wait(st, dl) == -ETIMEDOUT) {
			if (still(st, s, sk, gen) && (rc = vd__tcb_accept(sk->tcb, &c)) != -EAGAIN)
				break;
			rc = -EAGAIN;
			goto out;
		}
		if (!still(st, s, sk, gen)) {
			rc = -EBADF;
			goto out;
		}
	}
	if (rc < 0)
		goto out;
	struct vd_sock *nsk = vd__sock_new(st);
	if (!nsk) {
		vd__tcb_close(c);
		rc = -ENOMEM;
		goto out;
	}
	nsk->type = SOCK_STREAM;
	nsk->nonblock = (flags & SOCK_NONBLOCK) != 0;
	nsk->tcb = c;
	vd__tcb_set_user(c, nsk);
	rc = vd__sock_alloc(st, nsk);
	if (rc < 0) {
		vd__tcb_set_user(c, NULL);
		vd__tcb_close(c);
		vd__sock_delete(st, nsk);
		goto out;
	}
	if (addr && len) {
		struct vd_addr pa = { 0 };
		(void)vd__tcb_peer(c, &pa);
		put_sin(addr, len, pa.ip, pa.port);
	}
out:
	vd__stack_kick_tcp(st);
	vd__stack_unlock(st);
	return rc;
}

static int tcp_connect(struct vd_stack *st, int s, struct vd_sock *sk, const struct sockaddr_in *sin)
{
	int rc = vd__tcb_connect(sk->tcb, sin->sin_addr.s_addr, sin->sin_port);
	vd__stack_kick_tcp(st);
	if (rc != -EINPROGRESS || sk->nonblock)
		return rc;
	/* Blocking connect: wait for the handshake's outcome; SO_SNDTIMEO bounds it (Linux then returns
	 * EINPROGRESS and the handshake goes on). */
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->sndtimeo_ns);
	for (;;) {
		uint32_t ev = vd__tcb_events(sk->tcb);
		if (ev & (POLLOUT | POLLERR | POLLHUP)) {
			int err = vd__tcb_error(sk->tcb);
			if (err)
				return err;
			return (ev & POLLOUT) ? 0 : -ECONNRESET;
		}
		int w = vd__stack_wait(st, dl);
		if (!still(st, s, sk, gen))
			return -EBADF;
		if (w == -ETIMEDOUT && !(vd__tcb_events(sk->tcb) & (POLLOUT | POLLERR | POLLHUP)))
			return -EINPROGRESS;
	}
}

VD_API int vd_connect(struct vd_stack *st, int s, const struct sockaddr *addr, socklen_t len)
{
	struct sockaddr_in sin;
	int rc = get_sin(addr, len, &sin, 1);
	if (rc < 0)
		return rc;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	if (sk->type == SOCK_STREAM)
		rc = rc == 1 ? -EAFNOSUPPORT : tcp_connect(st, s, sk, &sin);
	else
		rc = vd__udp_connect(st->udp, &sk->udp, rc == 1 ? 0 : sin.sin_addr.s_addr,
				     rc == 1 ? 0 : sin.sin_port, rc == 1);
	vd__stack_unlock(st);
	return rc;
}

/* ---- data --------------------------------------------------------------------------------------- */

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* Drops the first `done` bytes from a private copy of an iovec array. */
static void iov_advance(struct iovec **iov, int *n, size_t done)
{
	while (*n > 0 && done >= (*iov)->iov_len) {
		done -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0 && done) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + done;
		(*iov)->iov_len -= done;
	}
}

/*
 * A connection still in its handshake: Linux lets send() and recv() wait for it (sk_stream_wait_connect),
 * or fail with EAGAIN on a non-blocking socket, where the engine says ENOTCONN.
 */
static int tcb_connecting(const struct vd__tcb *c)
{
	const char *n = vd__tcb_state_name(c);
	return !strcmp(n, "SYN-SENT") || !strcmp(n, "SYN-RECEIVED");
}

static ssize_t tcp_sendv(struct vd_stack *st, int s, struct vd_sock *sk, const struct iovec *iov0, int n0,
			 int flags)
{
	struct iovec local[IOV_MAX_];
	memcpy(local, iov0, (size_t)n0 * sizeof(*local));
	struct iovec *iov = local;
	int n = n0;
	size_t want = iov_total(iov, n);
	size_t done = 0;
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->sndtimeo_ns);
	int eflags = flags & MSG_MORE;
	int progressed = 0;

	for (;;) {
		ssize_t r = vd__tcb_send(sk->tcb, iov, n, eflags);
		if (r == -ENOTCONN && tcb_connecting(sk->tcb))
			r = -EAGAIN;
		if (r == -EAGAIN && !progressed) {
			/* Full buffer: take in the ACKs waiting on the nic first, so that a program that only
			 * ever calls a non-blocking send (no poll) still frees its buffer and progresses. */
			progressed = 1;
			if (vd__stack_progress_locked(st) > 0)
				continue;
		}
		if (r > 0) {
			done += (size_t)r;
			iov_advance(&iov, &n, (size_t)r);
			vd__stack_kick_tcp(st);
		}
		if (done == want || (r == 0 && want == 0))
			return (ssize_t)done;
		if (r < 0 && r != -EAGAIN)
			return done ? (ssize_t)done : r;
		if (nonblocking(sk, flags))
			return done ? (ssize_t)done : -EAGAIN;
		/* Blocking send (POSIX send(): waits until all is queued): wait for buffer room. */
		int w = vd__stack_wait(st, dl);
		if (!still(st, s, sk, gen))
			return done ? (ssize_t)done : -EBADF;
		if (w == -ETIMEDOUT && !(vd__tcb_events(sk->tcb) & POLLOUT))
			return done ? (ssize_t)done : -EAGAIN;
	}
}

static ssize_t tcp_recvv(struct vd_stack *st, int s, struct vd_sock *sk, const struct iovec *iov0, int n0,
			 int flags)
{
	struct iovec local[IOV_MAX_];
	memcpy(local, iov0, (size_t)n0 * sizeof(*local));
	struct iovec *iov = local;
	int n = n0;
	size_t want = iov_total(iov, n);
	size_t done = 0;
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->rcvtimeo_ns);
	/* MSG_WAITALL: keep reading until the buffer is full (not with MSG_PEEK, as on Linux). */
	int waitall = (flags & MSG_WAITALL) && !(flags & MSG_PEEK);

	if (flags & MSG_OOB)
		return -EINVAL; /* no urgent data is ever kept (RFC 6093: its use is discouraged) */
	for (;;) {
		ssize_t r = vd__tcb_recv(sk->tcb, iov, n, flags & MSG_PEEK);
		if (r == -ENOTCONN && tcb_connecting(sk->tcb))
			r = -EAGAIN;
		if (r > 0) {
			done += (size_t)r;
			iov_advance(&iov, &n, (size_t)r);
			vd__stack_kick_tcp(st); /* a window update may be due */
			if (!waitall || done == want)
				return (ssize_t)done;
		} else if (r == 0) {
			return (ssize_t)done; /* end of stream */
		} else if (r != -EAGAIN) {
			return done ? (ssize_t)done : r;
		}
		if (want == 0)
			return 0;
		if (nonblocking(sk, flags))
			return done ? (ssize_t)done : -EAGAIN;
		int w = vd__stack_wait(st, dl);
		if (!still(st, s, sk, gen))
			return done ? (ssize_t)done : -EBADF;
		if (w == -ETIMEDOUT && !(vd__tcb_events(sk->tcb) & (POLLIN | POLLERR | POLLHUP)))
			return done ? (ssize_t)done : -EAGAIN;
	}
}

static ssize_t udp_sendv(struct vd_stack *st, int s, struct vd_sock *sk, const struct iovec *iov, int n,
			 int flags, const struct sockaddr_in *to)
{
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->sndtimeo_ns);
	int progressed = 0;
	for (;;) {
		ssize_t r = vd__udp_send(st->udp, &sk->udp, iov, n, to);
		if (r == -EAGAIN && !progressed) {
			progressed = 1; /* TX ring full: a progress pass flushes and reclaims completions */
			(void)vd__stack_progress_locked(st);
			(void)vd_nic_flush(st->nic);
			continue;
		}
		if (r != -EAGAIN || nonblocking(sk, flags))
			return r;
		/*
		 * The nic's TX ring is full: completions free it as the progress pass runs. Completions do not
		 * wake the nic's fd, so the wait is cut to TX_RETRY_NS and the send tried again.
		 */
		uint64_t now = vd__stack_now(st), lim = now + TX_RETRY_NS;
		if (dl && dl < lim)
			lim = dl;
		(void)vd__stack_wait(st, lim);
		if (dl && vd__stack_now(st) >= dl)
			return -EAGAIN;
		if (!still(st, s, sk, gen))
			return -EBADF;
	}
}

static ssize_t udp_recvv(struct vd_stack *st, int s, struct vd_sock *sk, const struct iovec *iov, int n,
			 int flags, struct sockaddr_in *from, int *mflags)
{
	uint32_t gen = vd__sock_gen(st, s);
	uint64_t dl = deadline(st, sk->rcvtimeo_ns);
	if (flags & MSG_OOB)
		return -EOPNOTSUPP;
	for (;;) {
		ssize_t r = vd__udp_recv(st->udp, &sk->udp, iov, n, flags, from, mflags);
		if (r != -EAGAIN)
			return r;
		if (sk->udp.shut_rd)
			return 0;
		if (nonblocking(sk, flags))
			return -EAGAIN;
		int w = vd__stack_wait(st, dl);
		if (!still(st, s, sk, gen))
			return -EBADF;
		if (w == -ETIMEDOUT && !sk->udp.q_head)
			return -EAGAIN;
	}
}

static ssize_t do_sendmsg(struct vd_stack *st, int s, const struct iovec *iov, int iovcnt, int flags,
			  const struct sockaddr *to, socklen_t tolen)
{
	if (iovcnt < 0 || iovcnt > IOV_MAX_)
		return -EINVAL;
	if (iovcnt && !iov)
		return -EFAULT;
	if (iov_total(iov, iovcnt) > SSIZE_MAX)
		return -EINVAL;
	struct sockaddr_in sin;
	const struct sockaddr_in *dst = NULL;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	ssize_t rc;
	if (sk->type == SOCK_STREAM) {
		/* Linux ignores the address of a sendto() on a connected TCP socket; so do we. */
		rc = (flags & MSG_OOB) ? -EOPNOTSUPP : tcp_sendv(st, s, sk, iov, iovcnt, flags);
	} else {
		rc = 0;
		if (to) {
			int a = get_sin(to, tolen, &sin, 0);
			if (a < 0)
				rc = a;
			dst = &sin;
		}
		if (rc == 0)
			rc = (flags & MSG_OOB) ? -EOPNOTSUPP : udp_sendv(st, s, sk, iov, iovcnt, flags, dst);
	}
	vd__stack_unlock(st);
	return rc;
}

static ssize_t do_recvmsg(struct vd_stack *st, int s, const struct iovec *iov, int iovcnt, int flags,
			  struct sockaddr *from, socklen_t *fromlen, int *mflags)
{
	if (iovcnt < 0 || iovcnt > IOV_MAX_)
		return -EINVAL;
	if (iovcnt && !iov)
		return -EFAULT;
	/* No ICMP errors are ever queued (recvmsg(2) MSG_ERRQUEUE on an empty error queue: EAGAIN). */
	if (flags & MSG_ERRQUEUE)
		return vd_sock_type(st, s) < 0 ? -EBADF : -EAGAIN;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	ssize_t rc;
	(void)vd__stack_progress_locked(st);
	if (sk->type == SOCK_STREAM) {
		rc = tcp_recvv(st, s, sk, iov, iovcnt, flags);
		if (fromlen)
			*fromlen = 0; /* a stream socket reports no source address (Linux: msg_namelen 0) */
	} else {
		struct sockaddr_in sin;
		rc = udp_recvv(st, s, sk, iov, iovcnt, flags, &sin, mflags);
		if (rc >= 0 && from && fromlen)
			put_sin(from, fromlen, sin.sin_addr.s_addr, sin.sin_port);
		else if (rc >= 0 && fromlen)
			*fromlen = sizeof(sin);
	}
	vd__stack_unlock(st);
	return rc;
}

VD_API ssize_t vd_send(struct vd_stack *st, int s, const void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return do_sendmsg(st, s, &iov, 1, flags, NULL, 0);
}

VD_API ssize_t vd_recv(struct vd_stack *st, int s, void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return do_recvmsg(st, s, &iov, 1, flags, NULL, NULL, NULL);
}

VD_API ssize_t vd_sendto(struct vd_stack *st, int s, const void *buf, size_t len, int flags,
			 const struct sockaddr *to, socklen_t tolen)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return do_sendmsg(st, s, &iov, 1, flags, to, tolen);
}

VD_API ssize_t vd_recvfrom(struct vd_stack *st, int s, void *buf, size_t len, int flags, struct sockaddr *from,
			   socklen_t *fromlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return do_recvmsg(st, s, &iov, 1, flags, from, fromlen, NULL);
}

VD_API ssize_t vd_sendmsg(struct vd_stack *st, int s, const struct msghdr *msg, int flags)
{
	if (!msg)
		return -EFAULT;
	if (msg->msg_iovlen > IOV_MAX_)
		return -EMSGSIZE;
	return do_sendmsg(st, s, msg->msg_iov, (int)msg->msg_iovlen, flags, msg->msg_name,
			  msg->msg_name ? msg->msg_namelen : 0);
}

VD_API ssize_t vd_recvmsg(struct vd_stack *st, int s, struct msghdr *msg, int flags)
{
	if (!msg)
		return -EFAULT;
	if (msg->msg_iovlen > IOV_MAX_)
		return -EMSGSIZE;
	int mflags = 0;
	socklen_t nl = msg->msg_namelen;
	ssize_t rc = do_recvmsg(st, s, msg->msg_iov, (int)msg->msg_iovlen, flags, msg->msg_name,
				msg->msg_name ? &nl : NULL, &mflags);
	if (rc >= 0) {
		if (msg->msg_name)
			msg->msg_namelen = nl;
		msg->msg_controllen = 0; /* no ancillary data is produced */
		msg->msg_flags = mflags;
	}
	return rc;
}

/* ---- shutdown, close ---------------------------------------------------------------------------- */

VD_API int vd_shutdown(struct vd_stack *st, int s, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc;
	if (sk->type == SOCK_STREAM) {
		rc = vd__tcb_shutdown(sk->tcb, how);
		vd__stack_kick_tcp(st);
	} else if (!sk->udp.connected) {
		rc = -ENOTCONN; /* Linux: shutdown of an unconnected datagram socket */
	} else {
		if (how != SHUT_WR)
			sk->udp.shut_rd = 1;
		if (how != SHUT_RD)
			sk->udp.shut_wr = 1;
		rc = 0;
	}
	st->dirty = 1;
	vd__stack_unlock(st);
	return rc;
}

VD_API int vd_close(struct vd_stack *st, int s)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc = vd__sock_let_go(st, s);
	vd__stack_unlock(st);
	return rc;
}

/* ---- options and names -------------------------------------------------------------------------- */

static int set_timeo(uint64_t *out, const void *val, socklen_t len)
{
	struct timeval tv;
	if (!val || len < sizeof(tv))
		return -EINVAL;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -EDOM;
	if (tv.tv_sec < 0) { /* Linux: a negative timeout means none (returns at once) ... treated as 0 */
		*out = 0;
		return 0;
	}
	*out = (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
	return 0;
}

static int get_timeo(uint64_t v, void *val, socklen_t *len)
{
	struct timeval tv = { .tv_sec = (time_t)(v / 1000000000u), .tv_usec = (suseconds_t)(v % 1000000000u / 1000u) };
	if (!val || !len || *len < sizeof(tv))
		return -EINVAL;
	memcpy(val, &tv, sizeof(tv));
	*len = sizeof(tv);
	return 0;
}

static int put_int(int v, void *val, socklen_t *len)
{
	if (!val || !len || *len < sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(v));
	*len = sizeof(int);
	return 0;
}

VD_API int vd_setsockopt(struct vd_stack *st, int s, int level, int name, const void *val, socklen_t len)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc;
	if (level == SOL_SOCKET && name == SO_RCVTIMEO)
		rc = set_timeo(&sk->rcvtimeo_ns, val, len);
	else if (level == SOL_SOCKET && name == SO_SNDTIMEO)
		rc = set_timeo(&sk->sndtimeo_ns, val, len);
	else if (sk->type == SOCK_STREAM)
		rc = (level == SOL_SOCKET || level == IPPROTO_TCP) ? vd__tcb_setopt(sk->tcb, level, name, val, len)
								   : -ENOPROTOOPT;
	else
		rc = vd__udp_setopt(&sk->udp, level, name, val, len);
	if (sk->type == SOCK_STREAM && rc == 0)
		vd__stack_kick_tcp(st); /* e.g. TCP_NODELAY or TCP_CORK off releases held data */
	vd__stack_unlock(st);
	return rc;
}

VD_API int vd_getsockopt(struct vd_stack *st, int s, int level, int name, void *val, socklen_t *len)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc;
	if (level == SOL_SOCKET && name == SO_RCVTIMEO)
		rc = get_timeo(sk->rcvtimeo_ns, val, len);
	else if (level == SOL_SOCKET && name == SO_SNDTIMEO)
		rc = get_timeo(sk->sndtimeo_ns, val, len);
	else if (level == SOL_SOCKET && name == SO_TYPE)
		rc = put_int(sk->type, val, len);
	else if (level == SOL_SOCKET && name == SO_DOMAIN)
		rc = put_int(AF_INET, val, len);
	else if (level == SOL_SOCKET && name == SO_PROTOCOL)
		rc = put_int(sk->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP, val, len);
	else if (sk->type == SOCK_STREAM)
		rc = (level == SOL_SOCKET || level == IPPROTO_TCP) ? vd__tcb_getopt(sk->tcb, level, name, val, len)
								   : -ENOPROTOOPT;
	else
		rc = vd__udp_getopt(&sk->udp, level, name, val, len);
	vd__stack_unlock(st);
	return rc;
}

/* getsockname (peer 0) and getpeername (peer 1). */
static int sock_name(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len, int peer)
{
	if (!addr || !len)
		return -EFAULT;
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int rc = 0;
	if (sk->type == SOCK_STREAM) {
		struct vd_addr a = { 0 };
		rc = peer ? vd__tcb_peer(sk->tcb, &a) : vd__tcb_local(sk->tcb, &a);
		if (rc == 0)
			put_sin(addr, len, a.ip, a.port);
	} else if (peer) {
		if (sk->udp.connected)
			put_sin(addr, len, sk->udp.peer_ip, sk->udp.peer_port);
		else
			rc = -ENOTCONN;
	} else {
		/* Bound to INADDR_ANY reads as 0.0.0.0 until connected, then as the source address used. */
		uint32_t ip = sk->udp.local_ip;
		if (!ip && sk->udp.connected)
			ip = st->ip;
		put_sin(addr, len, ip, sk->udp.local_port);
	}
	vd__stack_unlock(st);
	return rc;
}

VD_API int vd_getsockname(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len)
{
	return sock_name(st, s, addr, len, 0);
}

VD_API int vd_getpeername(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len)
{
	return sock_name(st, s, addr, len, 1);
}

VD_API int vd_set_nonblock(struct vd_stack *st, int s, int on)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	sk->nonblock = on != 0;
	vd__stack_unlock(st);
	return 0;
}

VD_API int vd_get_nonblock(struct vd_stack *st, int s)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int v = sk->nonblock;
	vd__stack_unlock(st);
	return v;
}

VD_API int vd_sock_type(struct vd_stack *st, int s)
{
	struct vd_sock *sk = enter(st, s);
	if (!sk)
		return -EBADF;
	int t = sk->type;
	vd__stack_unlock(st);
	return t;
}
