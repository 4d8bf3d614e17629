/* SPDX-License-Identifier: MIT */
/*
 * Closing streams, and process exit. With the kernel's stack, close() hands a connection's unsent data and
 * its FIN to the kernel, which finishes them after the process has moved on or exited. Here the
 * connection lives in the process, so:
 *  - close() of a stream's last fd shuts it down for writing (FIN after the queued data) and keeps the
 *    viaduct socket on a linger list until its FIN is acknowledged (FIN-WAIT-2, TIME-WAIT, CLOSED) or it
 *    fails; then vd_close() frees it. The list is looked at from the interposer's progress points (at most
 *    once a millisecond). Unread data or SO_LINGER 0 make close() an abort at once, as Linux (the engine's
 *    vd_close RSTs those).
 *  - at exit() (a destructor of this library), every still-open viaduct socket is closed the same way and
 *    the stack progressed until the linger list is empty or VIADUCT_LINGER_MS (default 5000) passes; then
 *    vd_stack_close() resets what is left and hands TIME-WAIT to viaductd. A process killed by a signal
 *    skips this (as it skips every destructor): its peers see the connections stall.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/preload/preload.h"

#define LINGER_MAX_US (120 * 1000000LL) /* a connection the peer never finishes is aborted after this */

struct lingerer {
	int h;
	int64_t since_us;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct lingerer *list;
static int n, cap;
static atomic_int pending;      /* n, readable without the lock */
static _Atomic int64_t last_poll_us;

/* Under the stack's view: is h's close finished (or hopeless)? */
static bool finished(struct vd_stack *st, int h, int64_t since_us, int64_t now)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int ev, r;

	ev = vd_sock_events(st, h);
	if (ev < 0 || (ev & POLLERR))
		return true;
	r = vd_getsockopt(st, h, IPPROTO_TCP, TCP_INFO, &ti, &len);
	if (r < 0)
		return true;
	if (ti.tcpi_state == TCP_FIN_WAIT2 || ti.tcpi_state == TCP_TIME_WAIT || ti.tcpi_state == TCP_CLOSE)
		return true;
	return now - since_us > LINGER_MAX_US;
}

void vd__linger_close(struct vd_stack *st, int h, int type)
{
	int r;

	vd__enter();
	if (type != SOCK_STREAM || vd_readable(st, h) > 0) {
		vd_close(st, h);
		vd__leave();
		return;
	}
	struct linger lg;
	socklen_t ll = sizeof(lg);
	if (vd_getsockopt(st, h, SOL_SOCKET, SO_LINGER, &lg, &ll) == 0 && lg.l_onoff && lg.l_linger == 0) {
		vd_close(st, h);
		vd__leave();
		return;
	}
	r = vd_shutdown(st, h, SHUT_WR);
	if (r < 0 || finished(st, h, vd__now_us(), vd__now_us())) {
		vd_close(st, h);
		vd__leave();
		return;
	}
	vd__leave();
	pthread_mutex_lock(&lock);
	if (n == cap) {
		int ncap = cap ? cap * 2 : 16;
		struct lingerer *nl = realloc(list, (size_t)ncap * sizeof(*nl));
		if (!nl) {
			pthread_mutex_unlock(&lock);
			vd__enter();
			vd_close(st, h); /* no memory to wait: the engine still finishes it while progressed */
			vd__leave();
			return;
		}
		list = nl;
		cap = ncap;
	}
	list[n++] = (struct lingerer){ .h = h, .since_us = vd__now_us() };
	atomic_store_explicit(&pending, n, memory_order_relaxed);
	pthread_mutex_unlock(&lock);
}

void vd__linger_poll(struct vd_stack *st, bool force)
{
	int64_t now;

	if (!atomic_load_explicit(&pending, memory_order_relaxed) || !st)
		return;
	now = vd__now_us();
	if (!force && now - atomic_load_explicit(&last_poll_us, memory_order_relaxed) < 1000)
		return;
	atomic_store_explicit(&last_poll_us, now, memory_order_relaxed);
	if (pthread_mutex_trylock(&lock) != 0)
		return; /* another thread is at it */
	vd__enter();
	for (int i = 0; i < n;) {
		if (finished(st, list[i].h, list[i].since_us, now)) {
			vd_close(st, list[i].h);
			list[i] = list[--n];
		} else {
			i++;
		}
	}
	vd__leave();
	atomic_store_explicit(&pending, n, memory_order_relaxed);
	pthread_mutex_unlock(&lock);
}

void vd__linger_atfork_child(void)
{
	/* The handles belong to the parent's stack, which the child forgets. */
	pthread_mutex_init(&lock, NULL);
	n = 0;
	atomic_store(&pending, 0);
}

__attribute__((destructor)) static void linger_at_exit(void)
{
	struct vd_stack *st = vd__stack_if_open();
	const char *e = getenv("VIADUCT_LINGER_MS");
	int64_t limit_us = (e && *e ? atoll(e) : 5000) * 1000, deadline;

	if (!st)
		return;
	vd__fd_close_all(); /* what the kernel does to a dying process's fds: each stream goes through close */
	deadline = vd__now_us() + limit_us;
	while (atomic_load(&pending) && vd__now_us() < deadline) {
		vd__enter();
		vd_stack_progress(st);
		vd__leave();
		vd__linger_poll(st, true);
		struct pollfd p = { .fd = vd_stack_fd(st), .events = POLLIN };
		int tmo = 2;
		vd__enter();
		int busy = vd_stack_prepare_wait(st, &tmo);
		vd__leave();
		if (!busy)
			vd__real.poll(&p, 1, tmo < 0 || tmo > 2 ? 2 : tmo);
	}
	vd__enter();
	vd_stack_close(st);
	vd__leave();
}
