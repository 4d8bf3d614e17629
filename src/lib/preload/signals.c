/* SPDX-License-Identifier: MIT */
/*
 * Signals and busy-polling: a blocking call that spins in user space is never interrupted by the kernel,
 * so it cannot see a signal the way a sleeping system call does (EINTR). The interposer installs its own
 * trampoline in front of every handler the program installs (sigaction/signal), which counts deliveries
 * before calling the program's handler; wait loops compare the counters before and after.
 *
 * Two counters, because signal(7) distinguishes: a blocking socket call is restarted after a handler with
 * SA_RESTART (so it keeps waiting) and fails with EINTR otherwise, while poll/select/epoll_wait fail with
 * EINTR after any handler. The program always sees its own handler and flags in the old action.
 */
#include <pthread.h>
#include <stddef.h>

#include "lib/preload/preload.h"

#ifndef _NSIG
#define _NSIG 65
#endif

typedef void (*vd__sa_fn)(int, siginfo_t *, void *);
typedef void (*vd__h_fn)(int);

static atomic_uint gen_all, gen_nores;
static _Atomic(void *) user_fn[_NSIG];
static atomic_int user_flags[_NSIG];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

unsigned vd__sig_gen(void)
{
	return atomic_load_explicit(&gen_all, memory_order_acquire);
}

unsigned vd__sig_gen_nores(void)
{
	return atomic_load_explicit(&gen_nores, memory_order_acquire);
}

/* Async-signal-safe: only atomics, then the program's handler. */
static void trampoline(int sig, siginfo_t *si, void *uc)
{
	void *fn = atomic_load_explicit(&user_fn[sig], memory_order_acquire);
	int flags = atomic_load_explicit(&user_flags[sig], memory_order_relaxed);

	atomic_fetch_add_explicit(&gen_all, 1, memory_order_release);
	if (!(flags & SA_RESTART))
		atomic_fetch_add_explicit(&gen_nores, 1, memory_order_release);
	if (!fn)
		return;
	if (flags & SA_SIGINFO)
		((vd__sa_fn)fn)(sig, si, uc);
	else
		((vd__h_fn)fn)(sig);
}

static bool wrappable(int sig, const struct sigaction *act)
{
	if (!act || sig <= 0 || sig >= _NSIG)
		return false;
	if (act->sa_flags & SA_SIGINFO)
		return true;
	return act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
}

VD__EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction kact, kold;
	void *prev_fn = NULL;
	int prev_flags = 0, r;

	VD__INIT();
	if (sig <= 0 || sig >= _NSIG)
		return vd__real.sigaction(sig, act, old);
	pthread_mutex_lock(&lock);
	prev_fn = atomic_load(&user_fn[sig]);
	prev_flags = atomic_load(&user_flags[sig]);
	if (wrappable(sig, act)) {
		kact = *act;
		atomic_store(&user_fn[sig], act->sa_flags & SA_SIGINFO ? (void *)act->sa_sigaction
								   : (void *)act->sa_handler);
		atomic_store(&user_flags[sig], act->sa_flags);
		kact.sa_flags |= SA_SIGINFO;
		kact.sa_sigaction = trampoline;
		r = vd__real.sigaction(sig, &kact, &kold);
	} else {
		r = vd__real.sigaction(sig, act, &kold);
	}
	if (r < 0 && act) {
		atomic_store(&user_fn[sig], prev_fn);
		atomic_store(&user_flags[sig], prev_flags);
	}
	pthread_mutex_unlock(&lock);
	if (r == 0 && old) {
		*old = kold;
		/* The kernel holds our trampoline: report the program's own handler and flags. */
		if (kold.sa_flags & SA_SIGINFO && kold.sa_sigaction == trampoline) {
			old->sa_flags = prev_flags;
			if (prev_flags & SA_SIGINFO)
				old->sa_sigaction = (vd__sa_fn)prev_fn;
			else
				old->sa_handler = (vd__h_fn)prev_fn;
		}
	}
	return r;
}

void vd__sig_atfork(enum vd__fork_phase ph)
{
	if (ph == VD__FORK_PREPARE)
		pthread_mutex_lock(&lock);
	else if (ph == VD__FORK_PARENT)
		pthread_mutex_unlock(&lock);
	else
		pthread_mutex_init(&lock, NULL);
}

/* glibc's signal(): BSD semantics (SA_RESTART, the signal blocked in its handler). Its own signal()
 * calls sigaction internally, past our wrapper, so it is wrapped too. */
VD__EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction act = { .sa_handler = handler, .sa_flags = SA_RESTART }, old;

	sigemptyset(&act.sa_mask);
	if (sig > 0 && sig < _NSIG)
		sigaddset(&act.sa_mask, sig);
	if (sigaction(sig, &act, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}
