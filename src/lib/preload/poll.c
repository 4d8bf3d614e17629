/* SPDX-License-Identifier: MIT */
/*
 * poll, ppoll, select, pselect over viaduct and kernel fds mixed. A set without viaduct sockets goes to
 * the kernel untouched. Otherwise: progress the stack, take the viaduct sockets' events from the stack and
 * the kernel fds' from a zero-timeout poll; if nothing is ready, spin for VIADUCT_SPIN_US, then sleep in one
 * kernel ppoll on the kernel fds plus the stack's wakeup fd, and look again.
 *
 * A mapped fd's placeholder is never given to the kernel's poll: an unconnected TCP socket polls as
 * POLLOUT|POLLHUP, which would be a lie about the viaduct socket.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/preload/preload.h"

extern void __chk_fail(void) __attribute__((noreturn));

static short sock_revents(struct vd_stack *st, struct vd__psock *ps, short events)
{
	int ev;

	if (atomic_load_explicit(&ps->orphan, memory_order_relaxed) || !st)
		return POLLERR | POLLHUP;
	vd__enter();
	ev = vd_sock_events(st, ps->h);
	vd__leave();
	if (ev < 0)
		return POLLNVAL;
	return (short)(ev & (events | POLLERR | POLLHUP | POLLNVAL));
}

/*
 * The mixed poll. sigmask: ppoll's mask, applied for the whole call (signals it unblocks are delivered
 * during the sleep, or at once if pending). Timeout in ms, < 0 forever.
 */
static int poll_mixed(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *sigmask)
{
	struct vd_stack *st = vd__stack_if_open();
	struct pollfd kf_small[32], *kf = kf_small;
	nfds_t ki_small[32], *ki = ki_small, nk = 0;
	int64_t start = vd__now_us(), deadline = timeout_ms < 0 ? -1 : start + (int64_t)timeout_ms * 1000;
	unsigned gen = vd__sig_gen();
	int ready = -1;

	if (n > 32) {
		kf = malloc(n * sizeof(*kf));
		ki = malloc(n * sizeof(*ki));
		if (!kf || !ki) {
			free(kf == kf_small ? NULL : kf);
			free(ki == ki_small ? NULL : ki);
			errno = ENOMEM;
			return -1;
		}
	}
	for (nfds_t i = 0; i < n; i++) {
		if (fds[i].fd >= 0 && !vd__fd_get(fds[i].fd)) {
			kf[nk] = fds[i];
			ki[nk++] = i;
		}
	}
	for (;;) {
		uint32_t sgen = 0;

		ready = 0;
		if (st) {
			vd__enter();
			vd_stack_progress(st);
			/* Each socket's events below progress the stack again: see vd__sleep's stack_gen. */
			sgen = vd_stack_gen(st);
			vd__leave();
		}
		for (nfds_t i = 0; i < n; i++) {
			struct vd__psock *ps = fds[i].fd >= 0 ? vd__fd_get(fds[i].fd) : NULL;
			if (!ps) {
				fds[i].revents = 0;
				continue;
			}
			fds[i].revents = sock_revents(st, ps, fds[i].events);
			ready += fds[i].revents != 0;
		}
		if (nk) {
			int r = sigmask ? vd__real.ppoll(kf, nk, &(struct timespec){ 0, 0 }, sigmask)
					: vd__real.poll(kf, nk, 0);
			if (r < 0) {
				ready = -1;
				break;
			}
			for (nfds_t j = 0; j < nk; j++)
				fds[ki[j]].revents = kf[j].revents;
			ready += r;
		}
		if (ready || timeout_ms == 0)
			break;
		if (vd__sig_gen() != gen) {
			errno = EINTR;
			ready = -1;
			break;
		}
		int64_t now = vd__now_us();
		if (deadline >= 0 && now >= deadline)
			break;
		if (!st || vd__spin_us() < 0 || now - start < vd__spin_us()) {
			vd__spin_pause();
			continue;
		}
		int tmo = deadline < 0 ? -1 : (int)((deadline - now + 999) / 1000);
		if (vd__sleep(st, kf, nk, tmo, sigmask, vd__sig_gen, gen, sgen) < 0) {
			ready = -1;
			break;
		}
	}
	if (kf != kf_small) {
		free(kf);
		free(ki);
	}
	return ready;
}

static bool any_mapped(const struct pollfd *fds, nfds_t n)
{
	if (vd__in_lib)
		return false;
	for (nfds_t i = 0; i < n; i++)
		if (fds[i].fd >= 0 && vd__fd_get(fds[i].fd))
			return true;
	return false;
}

VD__EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
	VD__INIT();
	if (!any_mapped(fds, n))
		return vd__real.poll(fds, n, timeout_ms);
	return poll_mixed(fds, n, timeout_ms, NULL);
}

static int ts_ms(const struct timespec *ts)
{
	if (!ts)
		return -1;
	if (ts->tv_sec > 2000000)
		return 2000000000;
	return (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
}

VD__EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	VD__INIT();
	if (!any_mapped(fds, n))
		return vd__real.ppoll(fds, n, ts, mask);
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return poll_mixed(fds, n, ts_ms(ts), mask);
}

VD__EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen);
VD__EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout_ms);
}

VD__EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
			   size_t fdslen);
VD__EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
			   size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, ts, mask);
}

/* select through poll_mixed when a viaduct socket is in a set. Readiness as the kernel maps it
 * (fs/select.c): read = IN|HUP|ERR, write = OUT|ERR, except = PRI. */
#define SEL_IN (POLLIN | POLLHUP | POLLERR)
#define SEL_OUT (POLLOUT | POLLERR)

static bool sets_mapped(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
	if (vd__in_lib)
		return false;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) && vd__fd_get(fd))
			return true;
	return false;
}

static int select_mixed(int nfds, fd_set *r, fd_set *w, fd_set *e, int timeout_ms, const sigset_t *mask)
{
	struct pollfd small[64], *p = small;
	int n = 0, res, count = 0;

	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE;
	if (nfds > 64 && !(p = malloc((size_t)nfds * sizeof(*p)))) {
		errno = ENOMEM;
		return -1;
	}
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;
		if (r && FD_ISSET(fd, r))
			ev |= POLLIN;
		if (w && FD_ISSET(fd, w))
			ev |= POLLOUT;
		if (e && FD_ISSET(fd, e))
			ev |= POLLPRI;
		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	res = poll_mixed(p, (nfds_t)n, timeout_ms, mask);
	if (res >= 0) {
		for (int i = 0; i < n; i++) {
			if (p[i].revents & POLLNVAL) {
				errno = EBADF;
				res = -1;
				break;
			}
		}
	}
	if (res >= 0) {
		if (r)
			FD_ZERO(r);
		if (w)
			FD_ZERO(w);
		if (e)
			FD_ZERO(e);
		for (int i = 0; i < n; i++) {
			short ev = p[i].events, re = p[i].revents;
			if ((ev & POLLIN) && (re & SEL_IN)) {
				FD_SET(p[i].fd, r);
				count++;
			}
			if ((ev & POLLOUT) && (re & SEL_OUT)) {
				FD_SET(p[i].fd, w);
				count++;
			}
			if ((ev & POLLPRI) && (re & POLLPRI)) {
				FD_SET(p[i].fd, e);
				count++;
			}
		}
		res = count;
	}
	if (p != small)
		free(p);
	return res;
}

VD__EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	int64_t start, ms;
	int res;

	VD__INIT();
	if (!sets_mapped(nfds, r, w, e))
		return vd__real.select(nfds, r, w, e, tv);
	if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
		errno = EINVAL;
		return -1;
	}
	ms = tv ? (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000 : -1;
	start = vd__now_us();
	res = select_mixed(nfds, r, w, e, ms > 2000000000 ? 2000000000 : (int)ms, NULL);
	if (tv) {
		/* Linux select() leaves the time not slept in *tv (select(2)). */
		int64_t left = (int64_t)tv->tv_sec * 1000000 + tv->tv_usec - (vd__now_us() - start);
		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000;
		tv->tv_usec = left % 1000000;
	}
	return res;
}

VD__EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts, const sigset_t *mask)
{
	VD__INIT();
	if (!sets_mapped(nfds, r, w, e))
		return vd__real.pselect(nfds, r, w, e, ts, mask);
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return select_mixed(nfds, r, w, e, ts_ms(ts), mask);
}
