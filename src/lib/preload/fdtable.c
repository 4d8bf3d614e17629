/* SPDX-License-Identifier: MIT */
/*
 * Kernel fd number -> viaduct socket. The table is a flat array indexed by fd (mmap'd, so untouched pages
 * cost nothing); fds beyond it are never mapped and simply stay kernel sockets.
 *
 * Lookups are lock-free (one acquire load) because every socket call does one. Mutations take a mutex.
 * A psock is never returned to malloc: a program that closes an fd in one thread while another thread
 * still uses it (a bug, but one the kernel survives) must not make us touch freed memory, so psocks are
 * recycled through a free list instead.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "lib/preload/preload.h"

#define VD__FD_MAX 65536

static struct vd__psock *_Atomic *table;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct vd__psock *free_list;
static _Atomic uint64_t fb_counts[VD__FB_COUNT];

static bool table_ready(void)
{
	if (table)
		return true;
	void *p = mmap(NULL, VD__FD_MAX * sizeof(*table), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return false;
	table = p;
	return true;
}

struct vd__psock *vd__fd_get(int fd)
{
	struct vd__psock *_Atomic *t = table;

	if (!t || fd < 0 || fd >= VD__FD_MAX)
		return NULL;
	return atomic_load_explicit(&t[fd], memory_order_acquire);
}

/* Under lock: drops fd's entry; returns the psock if that was its last fd (the caller closes it). */
static struct vd__psock *unmap_locked(int fd)
{
	struct vd__psock *ps = atomic_load_explicit(&table[fd], memory_order_relaxed);

	if (!ps)
		return NULL;
	atomic_store_explicit(&table[fd], NULL, memory_order_release);
	return --ps->refs == 0 ? ps : NULL;
}

static void release(struct vd__psock *ps)
{
	struct vd_stack *st = vd__stack_if_open();

	/* An orphan's handle belongs to a stack this process must not touch (stack.c). */
	if (st && !atomic_load(&ps->orphan))
		vd__sock_release(st, ps->h);
	pthread_mutex_lock(&lock);
	ps->next_free = free_list;
	free_list = ps;
	pthread_mutex_unlock(&lock);
}

int vd__fd_map_new(int fd, int h, int type, bool nonblock)
{
	struct vd__psock *ps, *stale = NULL;

	if (fd < 0 || fd >= VD__FD_MAX)
		return -EMFILE;
	pthread_mutex_lock(&lock);
	if (!table_ready()) {
		pthread_mutex_unlock(&lock);
		return -ENOMEM;
	}
	ps = free_list;
	if (ps)
		free_list = ps->next_free;
	else
		ps = malloc(sizeof(*ps));
	if (!ps) {
		pthread_mutex_unlock(&lock);
		return -ENOMEM;
	}
	ps->h = h;
	ps->type = type;
	ps->refs = 1;
	ps->state = VD__PS_FRESH;
	atomic_init(&ps->nonblock, nonblock);
	atomic_init(&ps->orphan, false);
	atomic_init(&ps->eagain_gen, 0);
	ps->rcvtimeo_us = ps->sndtimeo_us = 0;
	ps->next_free = NULL;
	/* A stale entry: the fd was closed behind our back (e.g. fclose() of an fdopen'ed socket, which
	 * closes through libc's internal close) and the kernel reused the number. */
	stale = unmap_locked(fd);
	atomic_store_explicit(&table[fd], ps, memory_order_release);
	pthread_mutex_unlock(&lock);
	if (stale)
		release(stale);
	return 0;
}

void vd__fd_map_dup(int newfd, struct vd__psock *ps)
{
	struct vd__psock *stale;

	if (newfd < 0 || newfd >= VD__FD_MAX || !table)
		return;
	pthread_mutex_lock(&lock);
	stale = unmap_locked(newfd);
	ps->refs++;
	atomic_store_explicit(&table[newfd], ps, memory_order_release);
	pthread_mutex_unlock(&lock);
	if (stale)
		release(stale);
}

void vd__fd_unmap(int fd)
{
	struct vd__psock *last;

	if (fd < 0 || fd >= VD__FD_MAX || !table)
		return;
	pthread_mutex_lock(&lock);
	last = unmap_locked(fd);
	pthread_mutex_unlock(&lock);
	if (last)
		release(last);
}

void vd__fd_close_all(void)
{
	if (!table)
		return;
	for (int fd = 0; fd < VD__FD_MAX; fd++)
		if (atomic_load_explicit(&table[fd], memory_order_relaxed))
			vd__fd_unmap(fd);
}

void vd__fd_orphan_all(void)
{
	if (!table)
		return;
	for (int fd = 0; fd < VD__FD_MAX; fd++) {
		struct vd__psock *ps = atomic_load_explicit(&table[fd], memory_order_relaxed);
		if (ps)
			atomic_store(&ps->orphan, true);
	}
}

void vd__fd_atfork(enum vd__fork_phase ph)
{
	if (ph == VD__FORK_PREPARE)
		pthread_mutex_lock(&lock);
	else if (ph == VD__FORK_PARENT)
		pthread_mutex_unlock(&lock);
	else
		pthread_mutex_init(&lock, NULL); /* in a fork the wrapper did not see, another thread may hold it */
}

void vd__fb_count(enum vd__fb what)
{
	atomic_fetch_add_explicit(&fb_counts[what], 1, memory_order_relaxed);
	vd__fb_publish();
}

uint64_t vd__fb_get(enum vd__fb what)
{
	return atomic_load_explicit(&fb_counts[what], memory_order_relaxed);
}

void vd__fd_unmap_all(struct vd__psock *ps, void (*fn)(int fd))
{
	struct vd__psock *last = NULL;
	int fds[8], nfds = 0;

	if (!table)
		return;
	pthread_mutex_lock(&lock);
	/* refs counts the fds still to find: stop scanning once all are found. */
	for (int fd = 0; fd < VD__FD_MAX && ps->refs > 0; fd++) {
		if (atomic_load_explicit(&table[fd], memory_order_relaxed) != ps)
			continue;
		last = unmap_locked(fd);
		if (nfds < (int)(sizeof(fds) / sizeof(fds[0])))
			fds[nfds++] = fd;
	}
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < nfds; i++)
		fn(fds[i]);
	if (last)
		release(last);
}
