/* SPDX-License-Identifier: MIT */
/*
 * Socket calls on mapped fds: socket, bind, listen, accept, accept4, connect, shutdown, close,
 * close_range, get/setsockopt, getsockname/getpeername, fcntl, ioctl, dup/dup2/dup3.
 *
 * Which sockets viaduct takes (docs/design.md, "Sockets under viaduct run"): AF_INET SOCK_STREAM (TCP)
 * and SOCK_DGRAM (UDP). Such a socket stays "fresh" until its first bind/connect/listen/sendto; that call
 * decides: an address viaduct owns (the stack's, or INADDR_ANY) or reaches (the kernel routes it out of the
 * stack's interface) commits it to viaduct, anything else (127.0.0.0/8, another interface's address,
 * multicast, a destination routed elsewhere) drops the viaduct socket and hands the kernel placeholder to
 * the program as is. Everything else goes to the kernel untouched.
 */
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/preload/preload.h"

static int orphan_err(struct vd__psock *ps, int fd)
{
	if (!atomic_load_explicit(&ps->orphan, memory_order_relaxed))
		return 0;
	vd__warn_orphan(fd);
	errno = ENOTSUP;
	return -1;
}

/* fd falls back to the kernel: its placeholder becomes the program's socket. */
void vd__fallback(int fd, enum vd__fb why)
{
	struct vd__psock *ps = vd__fd_get(fd);

	if (!ps)
		return;
	vd__fb_count(why);
	if (ps->refs > 1)
		vd__fd_unmap_all(ps, vd__epoll_fd_fallback);
	else {
		vd__fd_unmap(fd);
		vd__epoll_fd_fallback(fd);
	}
}

/* ---- where an address goes ---- */

static bool is_local_or_special(uint32_t ip_h)
{
	return (ip_h >> 24) == 127 || (ip_h >> 28) == 0xe || ip_h == 0xffffffffu;
}

/*
 * Would the kernel send a packet to dst out of the stack's interface? Ask its routing table: a connected
 * UDP socket's source address is the address of the interface the route uses (no packet is sent). A small
 * cache keeps this to one probe per destination.
 */
#define ROUTE_CACHE 64
static _Atomic uint64_t route_cache[ROUTE_CACHE]; /* (1 << 40) valid | ok << 32 | dst */

static bool routed_via_stack(struct vd_stack *st, uint32_t dst_n)
{
	unsigned slot = (dst_n * 2654435761u) >> 26;
	uint64_t e = atomic_load_explicit(&route_cache[slot], memory_order_relaxed);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = dst_n };
	socklen_t len = sizeof(sin);
	bool ok = false;
	int s;

	if ((e >> 40) && (uint32_t)e == dst_n)
		return (e >> 32) & 1;
	s = vd__real.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	if (vd__real.connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    vd__real.getsockname(s, (struct sockaddr *)&sin, &len) == 0)
		ok = sin.sin_addr.s_addr == vd_stack_ip(st);
	vd__real.close(s);
	atomic_store_explicit(&route_cache[slot], (1ull << 40) | ((uint64_t)ok << 32) | dst_n, memory_order_relaxed);
	return ok;
}

/* May a socket send to / connect to addr over viaduct? */
static bool reachable(struct vd_stack *st, const struct sockaddr *addr, socklen_t len)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
	uint32_t ip_n;

	if (!addr || len < sizeof(*sin) || addr->sa_family != AF_INET)
		return true; /* not an IPv4 destination: let vd_* give the error a kernel socket would */
	ip_n = sin->sin_addr.s_addr;
	/* The stack's own address: the kernel's loopback serves it (viaduct does not see local traffic). */
	if (is_local_or_special(ntohl(ip_n)) || ip_n == vd_stack_ip(st))
		return false;
	return routed_via_stack(st, ip_n);
}

/* Does viaduct own this local address? */
static bool owned(struct vd_stack *st, const struct sockaddr *addr, socklen_t len)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

	if (!addr || len < sizeof(*sin) || addr->sa_family != AF_INET)
		return true;
	return sin->sin_addr.s_addr == htonl(INADDR_ANY) || sin->sin_addr.s_addr == vd_stack_ip(st);
}

/* For sendto/sendmsg on a fresh UDP socket: commit to viaduct or fall back. 1: still viaduct's. */
bool vd__decide_dest(int fd, struct vd__psock *ps, const struct sockaddr *to, socklen_t tolen)
{
	struct vd_stack *st = vd__stack_if_open();

	if (ps->state != VD__PS_FRESH || !to || vd__no_fallback())
		return true;
	if (reachable(st, to, tolen)) {
		ps->state = VD__PS_VIADUCT;
		return true;
	}
	vd__fallback(fd, VD__FB_ADDR);
	return false;
}

/* ---- socket, bind, listen, accept, connect ---- */

VD__EXPORT int socket(int domain, int type, int protocol)
{
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), fd, h;
	struct vd_stack *st;

	VD__INIT();
	fd = vd__real.socket(domain, type, protocol);
	if (fd < 0 || vd__in_lib)
		return fd;
	if (domain != AF_INET || (base != SOCK_STREAM && base != SOCK_DGRAM) ||
	    (protocol != 0 && protocol != (base == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP))) {
		if (domain == AF_INET || domain == AF_INET6)
			vd__fb_count(VD__FB_FAMILY);
		return fd;
	}
	st = vd__stack();
	if (!st) {
		if (vd__no_fallback()) {
			vd__real.close(fd);
			errno = ENETDOWN;
			return -1;
		}
		vd__fb_count(VD__FB_NOSTACK);
		return fd;
	}
	vd__enter();
	h = vd_socket(st, AF_INET, base | SOCK_NONBLOCK, protocol);
	vd__leave();
	if (h < 0 || vd__fd_map_new(fd, h, base, type & SOCK_NONBLOCK) < 0) {
		if (h >= 0) {
			vd__enter();
			vd_close(st, h);
			vd__leave();
		}
		if (vd__no_fallback()) {
			vd__real.close(fd);
			errno = h < 0 ? -h : EMFILE;
			return -1;
		}
		vd__fb_count(VD__FB_NOSTACK);
	}
	return fd;
}

VD__EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct vd__psock *ps;
	struct vd_stack *st;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.bind(fd, addr, len);
	if (orphan_err(ps, fd))
		return -1;
	st = vd__stack_if_open();
	if (!owned(st, addr, len)) {
		if (ps->state != VD__PS_FRESH || vd__no_fallback()) {
			errno = EADDRNOTAVAIL;
			return -1;
		}
		vd__fallback(fd, VD__FB_ADDR);
		return vd__real.bind(fd, addr, len);
	}
	vd__enter();
	r = vd_bind(st, ps->h, addr, len);
	vd__leave();
	if (r == 0)
		ps->state = VD__PS_VIADUCT;
	return (int)vd__ret(r);
}

VD__EXPORT int listen(int fd, int backlog)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.listen(fd, backlog);
	if (orphan_err(ps, fd))
		return -1;
	vd__enter();
	r = vd_listen(vd__stack_if_open(), ps->h, backlog);
	vd__leave();
	if (r == 0)
		ps->state = VD__PS_VIADUCT;
	return (int)vd__ret(r);
}

VD__EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct vd__psock *ps;
	struct vd_stack *st;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.accept4(fd, addr, len, flags);
	if (orphan_err(ps, fd))
		return -1;
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		errno = EINVAL;
		return -1;
	}
	st = vd__stack_if_open();
	for (;;) {
		int h, nfd, w;

		vd__enter();
		h = vd_accept4(st, ps->h, addr, len, SOCK_NONBLOCK);
		vd__leave();
		if (h >= 0) {
			/* The accepted connection's fd number: a placeholder kernel socket of its own. */
			nfd = vd__real.socket(AF_INET, SOCK_STREAM | flags, 0);
			if (nfd >= 0 && vd__fd_map_new(nfd, h, SOCK_STREAM, flags & SOCK_NONBLOCK) == 0) {
				vd__fd_get(nfd)->state = VD__PS_VIADUCT;
				return nfd;
			}
			int e = nfd < 0 ? errno : EMFILE;
			if (nfd >= 0)
				vd__real.close(nfd);
			vd__enter();
			vd_close(st, h);
			vd__leave();
			errno = e;
			return -1;
		}
		if (h != -EAGAIN)
			return (int)vd__ret(h);
		/* vd_accept4 ran a progress pass under its lock first (what has arrived, a SYN or the
		 * handshake's ACK, is taken in): no second one here, it only lengthened a spinning server's
		 * round (sockperf's server calls accept on its listener in every round). */
		if (atomic_load(&ps->nonblock)) {
			atomic_fetch_add(&ps->eagain_gen, 1);
			errno = EAGAIN;
			return -1;
		}
		w = vd__wait_sock(ps, POLLIN, ps->rcvtimeo_us ? ps->rcvtimeo_us : -1);
		if (w < 0)
			return (int)vd__ret(w);
	}
}

VD__EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	VD__INIT();
	if (!vd__mapped(fd))
		return vd__real.accept(fd, addr, len);
	return accept4(fd, addr, len, 0);
}

/*
 * A non-blocking connect whose handshake is under way: spin for the wait budget (VIADUCT_SPIN_US, 1 ms when
 * spinning forever) and return 0 if it completes meanwhile, else -EINPROGRESS. The kernel's handshake on a
 * fast link usually completes within its connect() call (the SYN-ACK is processed in the same softirq
 * pass), and some programs send right after EINPROGRESS without waiting for POLLOUT (sockperf
 * --nonblocked drops its first messages on EAGAIN); connect(2) allows either answer.
 */
static int nonblock_connect_spin(struct vd_stack *st, struct vd__psock *ps)
{
	int64_t budget = vd__spin_us() < 0 ? 1000 : vd__spin_us(), start = vd__now_us();

	do {
		int ev;
		vd__enter();
		vd_stack_progress(st);
		ev = vd_sock_events(st, ps->h);
		vd__leave();
		if (ev < 0 || (ev & (POLLERR | POLLHUP)))
			break; /* a failed handshake reports through poll and SO_ERROR, as usual */
		if (ev & POLLOUT)
			return 0;
	} while (vd__now_us() - start < budget);
	return -EINPROGRESS;
}

VD__EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct vd__psock *ps;
	struct vd_stack *st;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.connect(fd, addr, len);
	if (orphan_err(ps, fd))
		return -1;
	st = vd__stack_if_open();
	if (ps->state == VD__PS_FRESH && !vd__no_fallback() && !reachable(st, addr, len)) {
		vd__fallback(fd, VD__FB_ADDR);
		return vd__real.connect(fd, addr, len);
	}
	vd__enter();
	r = vd_connect(st, ps->h, addr, len);
	vd__leave();
	if ((r == -ENETUNREACH || r == -EHOSTUNREACH) && ps->state == VD__PS_FRESH && !vd__no_fallback()) {
		vd__fallback(fd, VD__FB_ADDR);
		return vd__real.connect(fd, addr, len);
	}
	if (r == 0 || r == -EINPROGRESS)
		ps->state = VD__PS_VIADUCT;
	if (r == -EINPROGRESS && ps->type == SOCK_STREAM && atomic_load(&ps->nonblock))
		return (int)vd__ret(nonblock_connect_spin(st, ps));
	if (r != -EINPROGRESS || ps->type != SOCK_STREAM)
		return (int)vd__ret(r);
	/* A blocking connect: wait for the handshake's outcome, as the kernel's connect() does. */
	r = vd__wait_sock(ps, POLLOUT, ps->sndtimeo_us ? ps->sndtimeo_us : -1);
	if (r == -EAGAIN)
		r = -EINPROGRESS; /* SO_SNDTIMEO ran out: socket(7) */
	if (r == 0) {
		int err = 0;
		socklen_t el = sizeof(err);
		vd__enter();
		r = vd_getsockopt(st, ps->h, SOL_SOCKET, SO_ERROR, &err, &el);
		vd__leave();
		if (r == 0 && err)
			r = -err;
	}
	return (int)vd__ret(r);
}

VD__EXPORT int shutdown(int fd, int how)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.shutdown(fd, how);
	if (orphan_err(ps, fd))
		return -1;
	vd__enter();
	r = vd_shutdown(vd__stack_if_open(), ps->h, how);
	vd__leave();
	return (int)vd__ret(r);
}

/* ---- close ---- */

VD__EXPORT int close(int fd)
{
	VD__INIT();
	if (!vd__in_lib) {
		vd__epoll_close(fd);
		if (vd__fd_get(fd)) {
			vd__epoll_fd_closed(fd);
			vd__fd_unmap(fd);
		}
	}
	return vd__real.close(fd);
}

VD__EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	VD__INIT();
	if (!vd__in_lib && !(flags & CLOSE_RANGE_CLOEXEC)) {
		for (unsigned fd = first; fd <= last && fd < 65536; fd++) {
			vd__epoll_close((int)fd);
			if (vd__fd_get((int)fd)) {
				vd__epoll_fd_closed((int)fd);
				vd__fd_unmap((int)fd);
			}
		}
	}
	return vd__real.close_range(first, last, flags);
}

/* ---- options and names ---- */

static int64_t tv_us(const void *val, socklen_t len)
{
	struct timeval tv;

	if (len < sizeof(tv))
		return -1;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -1;
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

VD__EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct vd__psock *ps;
	int r, rk, ek;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.setsockopt(fd, level, name, val, len);
	if (orphan_err(ps, fd))
		return -1;
	/* The placeholder gets every option too: if the socket falls back later, it has them all. */
	rk = vd__real.setsockopt(fd, level, name, val, len);
	ek = errno;
	if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
		/* Timeouts of blocking calls: the interposer's own wait loops apply them. */
		int64_t us = tv_us(val, len);
		if (us < 0) {
			errno = EINVAL;
			return -1;
		}
		*(name == SO_RCVTIMEO ? &ps->rcvtimeo_us : &ps->sndtimeo_us) = us;
		return 0;
	}
	vd__enter();
	r = vd_setsockopt(vd__stack_if_open(), ps->h, level, name, val, len);
	vd__leave();
	if (r == -ENOPROTOOPT) {
		vd__fb_count(VD__FB_SOCKOPT);
		errno = ek;
		return rk;
	}
	return (int)vd__ret(r);
}

VD__EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.getsockopt(fd, level, name, val, len);
	if (orphan_err(ps, fd))
		return -1;
	if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
		int64_t us = name == SO_RCVTIMEO ? ps->rcvtimeo_us : ps->sndtimeo_us;
		struct timeval tv = { .tv_sec = us / 1000000, .tv_usec = us % 1000000 };
		if (!len || *len < sizeof(tv)) {
			errno = EINVAL;
			return -1;
		}
		memcpy(val, &tv, sizeof(tv));
		*len = sizeof(tv);
		return 0;
	}
	vd__enter();
	r = vd_getsockopt(vd__stack_if_open(), ps->h, level, name, val, len);
	vd__leave();
	if (r == -ENOPROTOOPT) {
		/* SO_TYPE, SO_DOMAIN, SO_PROTOCOL... are the same on the placeholder. */
		vd__fb_count(VD__FB_SOCKOPT);
		return vd__real.getsockopt(fd, level, name, val, len);
	}
	return (int)vd__ret(r);
}

typedef int (*vd__name_fn)(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len);
typedef int (*vd__real_name_fn)(int fd, struct sockaddr *addr, socklen_t *len);

/* getsockname and getpeername: the same path, one call apart. */
static int name_call(int fd, struct sockaddr *addr, socklen_t *len, vd__name_fn ours, vd__real_name_fn real)
{
	struct vd__psock *ps = vd__mapped(fd);
	int r;

	if (!ps)
		return real(fd, addr, len);
	if (orphan_err(ps, fd))
		return -1;
	vd__enter();
	r = ours(vd__stack_if_open(), ps->h, addr, len);
	vd__leave();
	return (int)vd__ret(r);
}

VD__EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	VD__INIT();
	return name_call(fd, addr, len, vd_getsockname, vd__real.getsockname);
}

VD__EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	VD__INIT();
	return name_call(fd, addr, len, vd_getpeername, vd__real.getpeername);
}

/* ---- fcntl, ioctl: O_NONBLOCK lives on the placeholder (F_GETFL reads it there) and in the psock ---- */

static int fcntl_impl(int fd, int cmd, void *arg)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	r = vd__real.fcntl(fd, cmd, arg);
	if (!ps || r < 0)
		return r;
	switch (cmd) {
	case F_SETFL:
		atomic_store(&ps->nonblock, ((int)(intptr_t)arg & O_NONBLOCK) != 0);
		break;
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		vd__fd_map_dup(r, ps);
		break;
	default:
		break;
	}
	return r;
}

/* Every fcntl argument is an int or a pointer; glibc's own fcntl reads it as a pointer too. */
VD__EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_impl(fd, cmd, arg);
}

/* What programs built with _FILE_OFFSET_BITS=64 call (glibc >= 2.28 redirects fcntl there); on LP64 it is
 * the same call as fcntl. */
VD__EXPORT int fcntl64(int fd, int cmd, ...);
VD__EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_impl(fd, cmd, arg);
}

VD__EXPORT int ioctl(int fd, unsigned long req, ...)
{
	struct vd__psock *ps;
	va_list ap;
	void *arg;
	int r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	VD__INIT();
	ps = vd__mapped(fd);
	if (ps && req == FIONREAD) {
		if (orphan_err(ps, fd))
			return -1;
		vd__enter();
		r = vd_readable(vd__stack_if_open(), ps->h);
		vd__leave();
		if (r < 0)
			return (int)vd__ret(r);
		*(int *)arg = r;
		return 0;
	}
	r = vd__real.ioctl(fd, req, arg);
	if (ps && r == 0 && req == FIONBIO)
		atomic_store(&ps->nonblock, *(const int *)arg != 0);
	return r;
}

/* ---- dup: the new fd maps to the same viaduct socket (refcounted) ---- */

VD__EXPORT int dup(int fd)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(fd);
	r = vd__real.dup(fd);
	if (ps && r >= 0)
		vd__fd_map_dup(r, ps);
	return r;
}

/* After dup2/dup3 made newfd a copy of oldfd: newfd's old viaduct socket (if any) lost this fd. */
static void after_dup(int oldfd, int newfd, struct vd__psock *ps)
{
	if (vd__fd_get(newfd)) {
		vd__epoll_fd_closed(newfd);
		if (!ps)
			vd__fd_unmap(newfd);
	}
	vd__epoll_close(newfd);
	if (ps)
		vd__fd_map_dup(newfd, ps); /* drops newfd's earlier mapping itself */
	(void)oldfd;
}

VD__EXPORT int dup2(int oldfd, int newfd)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(oldfd);
	r = vd__real.dup2(oldfd, newfd);
	if (r >= 0 && oldfd != newfd && !vd__in_lib)
		after_dup(oldfd, newfd, ps);
	return r;
}

VD__EXPORT int dup3(int oldfd, int newfd, int flags)
{
	struct vd__psock *ps;
	int r;

	VD__INIT();
	ps = vd__mapped(oldfd);
	r = vd__real.dup3(oldfd, newfd, flags);
	if (r >= 0 && !vd__in_lib)
		after_dup(oldfd, newfd, ps);
	return r;
}
