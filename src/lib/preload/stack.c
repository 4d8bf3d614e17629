/* SPDX-License-Identifier: MIT */
/*
 * The process's one viaduct stack: opened lazily on the first AF_INET socket viaduct takes (a program
 * that never opens one never talks to viaductd), the environment knobs, the child's side of fork (procs.c
 * has the wrappers), and the wait loops of blocking calls.
 *
 * fork(): a child made through the fork wrapper becomes a member of the stack (it is process-shared) and
 * keeps its sockets. A child that got no member slot, or was made by a fork the wrapper does not see
 * (glibc's daemon(), forkpty()), must not touch the stack: its UMEM and rings are shared, so it would
 * produce into the parent's rings behind the shared state's back. It forgets the stack (opening its own
 * on its first new socket) and the viaduct sockets it inherited become orphans: every call on them fails
 * with ENOTSUP and one explanatory line on stderr; close() works (it only drops the child's fd).
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl/proto.h"
#include "lib/nic/nic_internal.h"
#include "lib/preload/preload.h"

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd_stack *_Atomic stack;
static atomic_bool stack_failed;
static atomic_bool orphan_warned;
static const char *orphan_why;           /* why this process's inherited sockets are orphans */
static _Atomic pid_t member_pid;         /* the pid that is a member of the stack (see vd__stack_member) */
static bool no_fallback, quiet;
static int spin_us = 100;
#define VD__MT_SLEEP_MS 10
static atomic_int sleepers_seen;           /* threads that have slept in vd__sleep */
static __thread bool sleeper_counted;

static bool env_true(const char *name)
{
	const char *v = getenv(name);
	return v && *v && strcmp(v, "0") != 0;
}

/* Process-local state of a fork child, whichever way it was made. */
static void child_reset(void)
{
	atomic_store(&sleepers_seen, 0);   /* the child has one thread: the one that forked */
	sleeper_counted = false;
}

/* The child must not use the stack (see the top of the file). */
static void child_orphan(const char *why)
{
	struct vd_stack *st = atomic_load(&stack);

	child_reset();
	if (!st)
		return;
	vd__fd_orphan_all();
	orphan_why = why;
	atomic_store(&orphan_warned, false);
	/* Forget, do not close: closing would let go of the parent's sockets in the shared state. */
	vd__enter();
	vd_stack_forget(st);
	vd__leave();
	atomic_store(&stack, NULL);
	atomic_store(&stack_failed, false);
}

void vd__stack_fork_child(int slot)
{
	struct vd_stack *st = atomic_load(&stack);

	if (st && slot >= 0) {
		child_reset();
		vd__enter();
		vd_stack_fork_child(st, slot);
		vd__leave();
		atomic_store(&member_pid, getpid());
		return;
	}
	child_orphan(slot == -EAGAIN ? "the stack already has its maximum of processes"
				     : "it could not be shared with the child");
}

/* A fork past the wrapper (glibc-internal: daemon(), forkpty()): the locks may have been held by threads
 * that do not exist in the child, so they are re-initialised; the child gets no member slot. */
static void atfork_child(void)
{
	if (vd__fork_wrapped)
		return; /* the wrapper does the child's side (procs.c) */
	vd__stack_atfork(VD__FORK_CHILD);
	vd__fd_atfork(VD__FORK_CHILD);
	vd__epoll_atfork(VD__FORK_CHILD);
	vd__sig_atfork(VD__FORK_CHILD);
	child_orphan("it was made by a fork() viaduct does not see (daemon(), forkpty())");
}

void vd__stack_atfork(enum vd__fork_phase ph)
{
	if (ph == VD__FORK_PREPARE)
		pthread_mutex_lock(&open_lock);
	else if (ph == VD__FORK_PARENT)
		pthread_mutex_unlock(&open_lock);
	else
		pthread_mutex_init(&open_lock, NULL);
}

bool vd__stack_member(void)
{
	/* A child that runs in the parent's memory (clone(CLONE_VM), glibc's posix_spawn) sees the parent's
	 * member_pid but is not a member: its calls must not act for the parent. */
	return atomic_load_explicit(&member_pid, memory_order_relaxed) == getpid();
}

__attribute__((constructor)) static void stack_ctor(void)
{
	const char *s = getenv("VIADUCT_SPIN_US");

	no_fallback = env_true("VIADUCT_NO_FALLBACK");
	quiet = env_true("VIADUCT_QUIET");
	if (s && *s)
		spin_us = atoi(s);
	pthread_atfork(NULL, NULL, atfork_child);
}

bool vd__no_fallback(void)
{
	return no_fallback;
}

int vd__spin_us(void)
{
	return spin_us;
}

/*
 * One round of a spin loop gives the CPU away: the kernel work that carries our frames (the veth's NAPI
 * softirq, run by ksoftirqd once the CPU is busy) needs a CPU, and on a host with few cores two processes
 * spinning against each other starve it until one of them sleeps (src/lib/sock/stack.c spin_round has the
 * measurement: a 64 B TCP ping-pong p50 of 216 us without the yield, 6-10 us with it).
 */
void vd__spin_pause(void)
{
	sched_yield();
}

int64_t vd__now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct vd_stack *vd__stack_if_open(void)
{
	return atomic_load_explicit(&stack, memory_order_acquire);
}

struct vd_stack *vd__stack(void)
{
	struct vd_stack *st = atomic_load_explicit(&stack, memory_order_acquire);

	if (st || atomic_load(&stack_failed))
		return st;
	pthread_mutex_lock(&open_lock);
	st = atomic_load(&stack);
	if (!st && !atomic_load(&stack_failed)) {
		struct vd_stack_opts o = { .backend = VD_BACKEND_XDP, .spin_us = spin_us };
		int r;

		o.ifname = getenv("VIADUCT_IFACE");
		vd__enter();
		r = vd_stack_open(&st, &o);
		vd__leave();
		if (r < 0) {
			st = NULL;
			atomic_store(&stack_failed, true);
			if (!quiet) {
				const char *path = getenv("VIADUCT_SOCKET");
				fprintf(stderr, "viaduct: cannot open a stack through viaductd at %s (%s); %s\n",
					path && *path ? path : "the default socket", strerror(-r),
					no_fallback ? "AF_INET sockets fail (VIADUCT_NO_FALLBACK)"
						    : "sockets use the kernel");
			}
		} else {
			atomic_store(&member_pid, getpid());
			atomic_store_explicit(&stack, st, memory_order_release);
			vd__fb_publish(); /* the fallbacks counted before the stack existed */
		}
	}
	pthread_mutex_unlock(&open_lock);
	return st;
}

void vd__fb_publish(void)
{
	struct vd_stack *st = vd__stack_if_open();
	struct vd_ctl_ep_shared *sh;
	uint64_t total = 0;

	if (!st || !(sh = vd__nic_shared(vd_stack_nic(st))))
		return;
	for (int i = 0; i < VD__FB_COUNT; i++)
		total += vd__fb_get((enum vd__fb)i);
	/* viaductd reads the page with plain loads, counter by counter (proto.h): a relaxed store suffices. */
	__atomic_store_n(&sh->sock_fallback, total, __ATOMIC_RELAXED);
}

void vd__warn_orphan(int fd)
{
	if (!quiet && !atomic_exchange(&orphan_warned, true))
		fprintf(stderr,
			"viaduct: fd %d is a viaduct socket inherited across fork(), which this process cannot use "
			"because %s (calls on it fail with ENOTSUP)\n", fd, orphan_why ? orphan_why : "of its fork");
}

int vd__sleep(struct vd_stack *st, struct pollfd *kfds, nfds_t nk, int timeout_ms, const sigset_t *mask,
	      unsigned (*gen_fn)(void), unsigned gen, uint32_t stack_gen)
{
	struct pollfd small[16], *p = small;
	sigset_t all, orig;
	int r, pending;

	if (nk + 1 > sizeof(small) / sizeof(small[0])) {
		p = malloc((nk + 1) * sizeof(*p));
		if (!p) {
			errno = ENOMEM;
			return -1;
		}
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &orig);
	if (gen_fn() != gen) {
		pthread_sigmask(SIG_SETMASK, &orig, NULL);
		if (p != small)
			free(p);
		errno = EINTR;
		return -1;
	}
	vd__enter();
	pending = vd_stack_prepare_wait(st, &timeout_ms) || vd_stack_gen(st) != stack_gen;
	vd__leave();
	/*
	 * The stack's fd wakes one sleeper for new frames, but another thread's progress pass may consume
	 * frames that make this thread's socket ready without writing to that fd again. With more than one
	 * thread sleeping here, bound the sleep so such a wakeup is late by at most VD__MT_SLEEP_MS.
	 */
	if (!sleeper_counted) {
		sleeper_counted = true;
		atomic_fetch_add(&sleepers_seen, 1);
	}
	if (atomic_load_explicit(&sleepers_seen, memory_order_relaxed) > 1 &&
	    (timeout_ms < 0 || timeout_ms > VD__MT_SLEEP_MS))
		timeout_ms = VD__MT_SLEEP_MS;
	if (pending) {
		pthread_sigmask(SIG_SETMASK, &orig, NULL);
		if (p != small)
			free(p);
		return 1;
	}
	for (nfds_t i = 0; i < nk; i++) {
		p[i] = kfds[i];
		p[i].revents = 0;
	}
	p[nk] = (struct pollfd){ .fd = vd_stack_fd(st), .events = POLLIN };
	struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };
	r = vd__real.ppoll(p, nk + 1, timeout_ms < 0 ? NULL : &ts, mask ? mask : &orig);
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &orig, NULL);
	errno = saved;
	for (nfds_t i = 0; i < nk; i++)
		kfds[i].revents = p[i].revents;
	if (p != small)
		free(p);
	return r;
}

int vd__wait_sock(struct vd__psock *ps, short events, int64_t timeout_us)
{
	struct vd_stack *st = vd__stack_if_open();
	int64_t start = vd__now_us(), deadline = timeout_us < 0 ? -1 : start + timeout_us;
	/* signal(7): a socket call is restarted after an SA_RESTART handler, unless the socket has a
	 * timeout (SO_RCVTIMEO/SO_SNDTIMEO) for it: then it fails with EINTR after any handler. */
	unsigned (*gen_fn)(void) = timeout_us >= 0 ? vd__sig_gen : vd__sig_gen_nores;
	unsigned gen = gen_fn();

	if (!st)
		return -EBADF;
	for (;;) {
		int ev;
		int64_t now;
		uint32_t sgen;

		vd__enter();
		vd_stack_progress(st);
		sgen = vd_stack_gen(st);
		ev = vd_sock_events(st, ps->h);
		vd__leave();
		if (ev < 0)
			return ev;
		if (ev & (events | POLLERR | POLLHUP))
			return 0;
		if (gen_fn() != gen)
			return -EINTR;
		now = vd__now_us();
		if (deadline >= 0 && now >= deadline)
			return -EAGAIN;
		if (spin_us < 0 || now - start < spin_us) {
			vd__spin_pause();
			continue;
		}
		int tmo = deadline < 0 ? -1 : (int)((deadline - now + 999) / 1000);
		if (vd__sleep(st, NULL, 0, tmo, NULL, gen_fn, gen, sgen) < 0 && errno != EINTR)
			return -errno;
		/* EINTR from the sleep: the loop's signal check decides (SA_RESTART handlers keep waiting). */
	}
}
