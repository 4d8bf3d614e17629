/* SPDX-License-Identifier: MIT */
/*
 * Readiness: vd_sock_events (what poll(2) would report for one socket), vd_poll (poll(2) over stack
 * sockets, waiting inside the stack as a blocking call does) and vd_readable (FIONREAD).
 */
#include "sock_internal.h"

#include <errno.h>
#include <poll.h>

uint32_t vd__sock_events(struct vd_sock *sk)
{
	uint32_t ev = sk->type == SOCK_STREAM ? vd__tcb_events(sk->tcb) : vd__udp_events(&sk->udp);
	/* poll(2): POLLRDNORM/POLLWRNORM go with POLLIN/POLLOUT for ordinary data. */
	if (ev & POLLIN)
		ev |= POLLRDNORM;
	if (ev & POLLOUT)
		ev |= POLLWRNORM;
	return ev;
}

VD_API int vd_sock_events(struct vd_stack *st, int s)
{
	vd__stack_lock(st);
	(void)vd__stack_progress_locked(st);
	struct vd_sock *sk = vd__sock_get(st, s);
	int ev = sk ? (int)vd__sock_events(sk) : -EBADF;
	vd__stack_unlock(st);
	return ev;
}

VD_API int vd_readable(struct vd_stack *st, int s)
{
	vd__stack_lock(st);
	(void)vd__stack_progress_locked(st);
	struct vd_sock *sk = vd__sock_get(st, s);
	int n;
	if (!sk)
		n = -EBADF;
	else if (sk->type == SOCK_STREAM)
		n = (int)vd__tcb_readable(sk->tcb);
	else
		n = sk->udp.q_head ? (int)sk->udp.q_head->len : 0;
	vd__stack_unlock(st);
	return n;
}

/* Fills revents; returns how many entries have any. */
static int scan(struct vd_stack *st, struct pollfd *fds, nfds_t n)
{
	int ready = 0;
	for (nfds_t i = 0; i < n; i++) {
		fds[i].revents = 0;
		if (fds[i].fd < 0)
			continue;
		struct vd_sock *sk = vd__sock_get(st, fds[i].fd);
		if (!sk) {
			fds[i].revents = POLLNVAL;
		} else {
			/* POLLERR, POLLHUP (and POLLNVAL) are reported whether asked for or not (poll(2)). */
			uint32_t want = (uint16_t)fds[i].events | POLLERR | POLLHUP;
			fds[i].revents = (short)(vd__sock_events(sk) & want);
		}
		if (fds[i].revents)
			ready++;
	}
	return ready;
}

VD_API int vd_poll(struct vd_stack *st, struct pollfd *fds, nfds_t n, int timeout_ms)
{
	if (n && !fds)
		return -EFAULT;
	vd__stack_lock(st);
	(void)vd__stack_progress_locked(st);
	uint64_t dl = timeout_ms > 0 ? vd__stack_now(st) + (uint64_t)timeout_ms * 1000000u : 0;
	int ready;
	for (;;) {
		ready = scan(st, fds, n);
		if (ready || timeout_ms == 0)
			break;
		if (vd__stack_wait(st, dl) == -ETIMEDOUT) {
			ready = scan(st, fds, n);
			break;
		}
	}
	vd__stack_unlock(st);
	return ready;
}
