/* SPDX-License-Identifier: MIT */
/*
 * epoll with viaduct and kernel fds in one set. Kernel fds go into the real epoll instance as usual. A
 * viaduct socket never does (its placeholder's readiness means nothing): its interest is kept here, in a
 * user-space list per epoll fd, created on the first EPOLL_CTL_ADD of a viaduct socket.
 *
 * epoll_wait: progress the stack, collect the ready viaduct sockets from the list, fill the rest of the
 * array from the kernel instance with a zero timeout; if nothing is ready, spin for VIADUCT_SPIN_US, then
 * sleep in ppoll on {the epoll fd, the stack's wakeup fd} (an epoll fd is readable when its set has events)
 * and look again. The stack's fd is not added to the program's epoll set: its epoll_data would be
 * indistinguishable from the program's own.
 *
 * Edge-triggered interests (EPOLLET) report a socket when an event bit appears, when more data arrived
 * (FIONREAD grew) and again once the program has seen EAGAIN on it (it drained it), which is what an
 * edge-triggered program waits for. EPOLLONESHOT disables the interest after one report until
 * EPOLL_CTL_MOD. EPOLLEXCLUSIVE and EPOLLWAKEUP are accepted and have no effect.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/preload/preload.h"

#define VD__EP_MAX 65536

struct reg {
	int fd;
	struct vd__psock *ps;
	uint32_t events;
	epoll_data_t data;
	uint32_t last;      /* EPOLLET: bits reported last time */
	int last_avail;     /* EPOLLET: FIONREAD at the last report */
	unsigned gen;       /* EPOLLET: ps->eagain_gen at the last report */
	bool disabled;      /* EPOLLONESHOT fired */
};

struct ep {
	int epfd;
	pthread_mutex_t lock;
	struct reg *regs;
	int n, cap;
	int rr;             /* round-robin start, so a short events array does not starve the tail */
	struct ep *next;
};

static struct ep *_Atomic *eps;        /* by epoll fd */
static struct ep *all;                 /* every instance, for fallback/close of a socket */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

static struct ep *ep_get(int epfd)
{
	struct ep *_Atomic *t = eps;

	if (!t || epfd < 0 || epfd >= VD__EP_MAX)
		return NULL;
	return atomic_load_explicit(&t[epfd], memory_order_acquire);
}

static struct ep *ep_create(int epfd)
{
	struct ep *ep;

	if (epfd < 0 || epfd >= VD__EP_MAX)
		return NULL;
	pthread_mutex_lock(&all_lock);
	if (!eps) {
		void *p = mmap(NULL, VD__EP_MAX * sizeof(*eps), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED) {
			pthread_mutex_unlock(&all_lock);
			return NULL;
		}
		eps = p;
	}
	ep = atomic_load(&eps[epfd]);
	if (!ep && (ep = calloc(1, sizeof(*ep)))) {
		ep->epfd = epfd;
		pthread_mutex_init(&ep->lock, NULL);
		ep->next = all;
		all = ep;
		atomic_store_explicit(&eps[epfd], ep, memory_order_release);
	}
	pthread_mutex_unlock(&all_lock);
	return ep;
}

void vd__epoll_atfork(enum vd__fork_phase ph)
{
	/* Order: all_lock, then each instance's (as each_reg). */
	if (ph == VD__FORK_PREPARE) {
		pthread_mutex_lock(&all_lock);
		for (struct ep *ep = all; ep; ep = ep->next)
			pthread_mutex_lock(&ep->lock);
		return;
	}
	for (struct ep *ep = all; ep; ep = ep->next) {
		if (ph == VD__FORK_PARENT)
			pthread_mutex_unlock(&ep->lock);
		else
			pthread_mutex_init(&ep->lock, NULL);
	}
	if (ph == VD__FORK_PARENT)
		pthread_mutex_unlock(&all_lock);
	else
		pthread_mutex_init(&all_lock, NULL);
}

void vd__epoll_close(int fd)
{
	struct ep *ep = ep_get(fd), **pp;

	if (!ep)
		return;
	pthread_mutex_lock(&all_lock);
	atomic_store(&eps[fd], NULL);
	for (pp = &all; *pp; pp = &(*pp)->next) {
		if (*pp == ep) {
			*pp = ep->next;
			break;
		}
	}
	pthread_mutex_unlock(&all_lock);
	/* A thread still in epoll_wait on a closed epoll fd is the program's bug; like psocks, the instance
	 * is not freed, only emptied, so that thread reads an empty list rather than freed memory. */
	pthread_mutex_lock(&ep->lock);
	ep->n = 0;
	pthread_mutex_unlock(&ep->lock);
}

static int find(struct ep *ep, int fd)
{
	for (int i = 0; i < ep->n; i++)
		if (ep->regs[i].fd == fd)
			return i;
	return -1;
}

/* For every instance holding fd: fn(instance, index) under the instance's lock. */
static void each_reg(int fd, bool to_kernel)
{
	pthread_mutex_lock(&all_lock);
	for (struct ep *ep = all; ep; ep = ep->next) {
		pthread_mutex_lock(&ep->lock);
		int i = find(ep, fd);
		if (i >= 0) {
			if (to_kernel) {
				struct epoll_event ev = { .events = ep->regs[i].events, .data = ep->regs[i].data };
				vd__real.epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev);
			}
			ep->regs[i] = ep->regs[--ep->n];
		}
		pthread_mutex_unlock(&ep->lock);
	}
	pthread_mutex_unlock(&all_lock);
}

void vd__epoll_fd_fallback(int fd)
{
	each_reg(fd, true);
}

void vd__epoll_fd_closed(int fd)
{
	each_reg(fd, false);
}

VD__EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct vd__psock *ps;
	struct ep *ep;
	int i, r = 0;

	VD__INIT();
	ps = vd__mapped(fd);
	if (!ps)
		return vd__real.epoll_ctl(epfd, op, fd, ev);
	/* Let the kernel validate epfd: an fcntl on it fails exactly when epoll_ctl would with EBADF. */
	if (vd__real.fcntl(epfd, F_GETFD) < 0)
		return -1;
	if (epfd == fd) {
		errno = EINVAL;
		return -1;
	}
	if (op != EPOLL_CTL_DEL && !ev) {
		errno = EFAULT;
		return -1;
	}
	ep = op == EPOLL_CTL_ADD ? ep_create(epfd) : ep_get(epfd);
	if (!ep) {
		errno = op == EPOLL_CTL_ADD ? ENOMEM : ENOENT;
		return -1;
	}
	pthread_mutex_lock(&ep->lock);
	i = find(ep, fd);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (i >= 0) {
			r = -EEXIST;
			break;
		}
		if (ep->n == ep->cap) {
			int cap = ep->cap ? ep->cap * 2 : 8;
			struct reg *nr = realloc(ep->regs, (size_t)cap * sizeof(*nr));
			if (!nr) {
				r = -ENOMEM;
				break;
			}
			ep->regs = nr;
			ep->cap = cap;
		}
		i = ep->n++;
		ep->regs[i] = (struct reg){ .fd = fd, .ps = ps };
		__attribute__((fallthrough)); /* set the interest */
	case EPOLL_CTL_MOD:
		if (i < 0) {
			r = -ENOENT;
			break;
		}
		ep->regs[i].ps = ps;
		ep->regs[i].events = ev->events;
		ep->regs[i].data = ev->data;
		ep->regs[i].last = 0;
		ep->regs[i].last_avail = 0;
		ep->regs[i].gen = atomic_load(&ps->eagain_gen);
		ep->regs[i].disabled = false;
		break;
	case EPOLL_CTL_DEL:
		if (i < 0)
			r = -ENOENT;
		else
			ep->regs[i] = ep->regs[--ep->n];
		break;
	default:
		r = -EINVAL;
	}
	pthread_mutex_unlock(&ep->lock);
	return (int)vd__ret(r);
}

/* The ready viaduct sockets of ep, at most max, into out. */
static int collect(struct vd_stack *st, struct ep *ep, struct epoll_event *out, int max)
{
	int got = 0;

	pthread_mutex_lock(&ep->lock);
	for (int k = 0; k < ep->n && got < max; k++) {
		int i = (ep->rr + k) % ep->n;
		struct reg *g = &ep->regs[i];
		uint32_t want = (g->events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP)) | EPOLLERR | EPOLLHUP;
		uint32_t ready;
		int ev;

		if (g->disabled)
			continue;
		if (atomic_load_explicit(&g->ps->orphan, memory_order_relaxed)) {
			ev = POLLERR | POLLHUP;
		} else {
			vd__enter();
			ev = vd_sock_events(st, g->ps->h);
			vd__leave();
			if (ev < 0)
				continue;
		}
		/* poll and epoll event bits have the same values on Linux (EPOLLIN == POLLIN...). */
		ready = (uint32_t)ev & want;
		if (g->events & EPOLLET) {
			unsigned gen = atomic_load_explicit(&g->ps->eagain_gen, memory_order_relaxed);
			int avail = 0;
			if (ready & EPOLLIN && g->ps->type == SOCK_STREAM) {
				vd__enter();
				avail = vd_readable(st, g->ps->h);
				vd__leave();
			}
			if (gen != g->gen)
				g->last = 0; /* the program drained it: the next readiness is a new edge */
			bool edge = (ready & ~g->last) || ((ready & EPOLLIN) && avail > g->last_avail);
			g->last = ready;
			g->last_avail = avail;
			g->gen = gen;
			if (!edge)
				continue;
		}
		if (!ready)
			continue;
		out[got].events = ready;
		out[got].data = g->data;
		got++;
		if (g->events & EPOLLONESHOT)
			g->disabled = true;
	}
	if (ep->n)
		ep->rr = (ep->rr + 1) % ep->n;
	pthread_mutex_unlock(&ep->lock);
	return got;
}

VD__EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout_ms, const sigset_t *mask)
{
	struct ep *ep;
	struct vd_stack *st;
	int64_t start, deadline;
	unsigned gen;

	VD__INIT();
	ep = vd__in_lib ? NULL : ep_get(epfd);
	st = vd__stack_if_open();
	if (!ep || !ep->n || max <= 0)
		return vd__real.epoll_pwait(epfd, evs, max, timeout_ms, mask);
	start = vd__now_us();
	deadline = timeout_ms < 0 ? -1 : start + (int64_t)timeout_ms * 1000;
	gen = vd__sig_gen();
	for (;;) {
		int n = 0, m;
		uint32_t sgen = 0;

		if (st) {
			vd__enter();
			vd_stack_progress(st);
			/* Each socket's events in collect() progress the stack again: see vd__sleep's stack_gen. */
			sgen = vd_stack_gen(st);
			vd__leave();
		}
		n = collect(st, ep, evs, max);
		if (n < max) {
			m = vd__real.epoll_pwait(epfd, evs + n, max - n, 0, mask);
			if (m < 0)
				return n ? n : -1;
			n += m;
		}
		if (n || timeout_ms == 0)
			return n;
		if (vd__sig_gen() != gen) {
			errno = EINTR;
			return -1;
		}
		int64_t now = vd__now_us();
		if (deadline >= 0 && now >= deadline)
			return 0;
		if (!st || vd__spin_us() < 0 || now - start < vd__spin_us()) {
			vd__spin_pause();
			continue;
		}
		struct pollfd kf = { .fd = epfd, .events = POLLIN };
		int tmo = deadline < 0 ? -1 : (int)((deadline - now + 999) / 1000);
		if (vd__sleep(st, &kf, 1, tmo, mask, vd__sig_gen, gen, sgen) < 0)
			return -1;
	}
}

VD__EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
	VD__INIT();
	if (vd__in_lib || !ep_get(epfd))
		return vd__real.epoll_wait(epfd, evs, max, timeout_ms);
	return epoll_pwait(epfd, evs, max, timeout_ms, NULL);
}
