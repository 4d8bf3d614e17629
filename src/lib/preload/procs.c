/* SPDX-License-Identifier: MIT */
/*
 * fork() and exec() under `viaduct run` (docs/design.md, "Sockets under viaduct run").
 *
 * fork: the stack lives in a process-shared mapping (include/viaduct/socket.h, "Processes"), so the child
 * becomes one more member of it and keeps every viaduct socket it inherited, as with kernel sockets. The
 * wrapper brackets the real fork with vd_stack_fork_prepare (which takes the stack's lock and reserves the
 * child's member slot) and vd_stack_fork_child / vd_stack_fork_done. Before that it takes every
 * process-local lock of the interposer, in the order the rest of it nests them (these locks are taken
 * before the stack's, never after: epoll's collect calls into the stack while holding its instance's),
 * so that no other thread of the parent is half-way through a change the child would inherit.
 * A fork the wrapper does not see (glibc-internal ones: daemon(), forkpty()) and a child for which
 * fork_prepare failed (VD_STACK_MAX_PROCS members already) fall back to the stack.c atfork handler: the
 * child forgets the stack and its inherited viaduct sockets fail with ENOTSUP.
 *
 * vfork() is made a fork(): a vfork child runs in the parent's memory until it execs, so every wrapper it
 * calls would act on the parent's fd table and holds - Python's subprocess closes the inherited fds
 * between vfork and exec, which closed the parent's viaduct sockets. A fork child has its own memory and
 * becomes a member (its closes drop its own holds; its exec leaves). POSIX allows vfork to be fork: the
 * child may do less, never more. posix_spawn(), system() and popen() clone with glibc-internal calls that
 * never reach the wrappers, so they are left alone; an exec in a child that shares the parent's memory
 * anyway (clone(CLONE_VM)) is recognised by its pid (vd__stack_member) and does not touch the stack.
 *
 * exec: the new image does not map the stack, so viaduct sockets do not survive exec. The caller is
 * marked as leaving at its next successful exec (vd_stack_exec_prepare; undone if exec returns): its holds
 * are dropped as if it had closed every socket (a socket no other process holds is closed: FIN). The fds
 * stay what the kernel has, the placeholders: a descriptor without FD_CLOEXEC reaches the new program as
 * an unconnected kernel socket.
 */
#include <pthread.h>
#include <stdarg.h>
#include <unistd.h>

#include "lib/preload/preload.h"

__thread bool vd__fork_wrapped __attribute__((tls_model("initial-exec")));

static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

static void lock_all(void)
{
	pthread_mutex_lock(&fork_lock);
	vd__stack_atfork(VD__FORK_PREPARE);
	vd__fd_atfork(VD__FORK_PREPARE);
	vd__epoll_atfork(VD__FORK_PREPARE);
	vd__sig_atfork(VD__FORK_PREPARE);
}

static void unlock_all(enum vd__fork_phase ph)
{
	vd__sig_atfork(ph);
	vd__epoll_atfork(ph);
	vd__fd_atfork(ph);
	vd__stack_atfork(ph);
	if (ph == VD__FORK_CHILD)
		pthread_mutex_init(&fork_lock, NULL);
	else
		pthread_mutex_unlock(&fork_lock);
}

VD__EXPORT pid_t fork(void)
{
	struct vd_stack *st;
	int slot = -1, saved;
	pid_t pid;

	VD__INIT();
	if (vd__in_lib)
		return vd__real.fork();
	lock_all();
	st = vd__stack_if_open();
	if (st && vd__stack_member()) {
		vd__enter();
		slot = vd_stack_fork_prepare(st);
		vd__leave();
	}
	vd__fork_wrapped = true;
	pid = vd__real.fork();
	saved = errno;
	if (pid == 0) {
		vd__fork_wrapped = false;
		unlock_all(VD__FORK_CHILD);
		vd__stack_fork_child(slot);
		return 0;
	}
	vd__fork_wrapped = false;
	if (slot >= 0) {
		vd__enter();
		vd_stack_fork_done(st, slot, pid); /* pid < 0: releases the slot */
		vd__leave();
	}
	unlock_all(VD__FORK_PARENT);
	errno = saved;
	return pid;
}

/* Not a tail call into libc's vfork: its child would return through this frame, which the parent then
 * returns through again after the child has reused the stack below it. */
VD__EXPORT pid_t vfork(void)
{
	return fork();
}

/* ---- exec ---- */

/* Marks this process as leaving the stack at its exec; true if it did (undo with exec_failed). */
static bool exec_begin(void)
{
	struct vd_stack *st = vd__stack_if_open();

	if (vd__in_lib || !st || !vd__stack_member())
		return false;
	vd__enter();
	vd_stack_exec_prepare(st);
	vd__leave();
	return true;
}

/* exec returned (failed): this process stays a member. Keeps exec's errno. */
static void exec_failed(bool marked)
{
	int saved = errno;

	if (marked) {
		vd__enter();
		vd_stack_exec_failed(vd__stack_if_open());
		vd__leave();
	}
	errno = saved;
}

VD__EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	VD__INIT();
	bool m = exec_begin();
	int r = vd__real.execve(path, argv, envp);
	exec_failed(m);
	return r;
}

VD__EXPORT int execv(const char *path, char *const argv[])
{
	VD__INIT();
	bool m = exec_begin();
	int r = vd__real.execv(path, argv);
	exec_failed(m);
	return r;
}

VD__EXPORT int execvp(const char *file, char *const argv[])
{
	VD__INIT();
	bool m = exec_begin();
	int r = vd__real.execvp(file, argv);
	exec_failed(m);
	return r;
}

VD__EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	VD__INIT();
	bool m = exec_begin();
	int r = vd__real.execvpe(file, argv, envp);
	exec_failed(m);
	return r;
}

VD__EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	VD__INIT();
	bool m = exec_begin();
	int r = vd__real.fexecve(fd, argv, envp);
	exec_failed(m);
	return r;
}

/*
 * The list forms collect their arguments into an array on the stack, as glibc's own do (no malloc: a
 * child of a multithreaded program may only call async-signal-safe functions before exec), and exec
 * through the wrappers above. envp: execle's environment (after the terminating NULL), else NULL.
 */
enum list_kind { LIST_V, LIST_VP, LIST_VE };

static int exec_list(enum list_kind kind, const char *path, const char *arg0, va_list ap)
{
	va_list cp;
	size_t n = 0; /* arguments before the terminating NULL (arg0 may be that NULL) */

	if (arg0) {
		va_copy(cp, ap);
		for (n = 1; va_arg(cp, const char *); n++)
			;
		va_end(cp);
	}
	const char *argv[n + 1];
	argv[0] = arg0;
	for (size_t i = 1; i <= n; i++)
		argv[i] = va_arg(ap, const char *); /* argv[n] is the terminating NULL */
	char *const *av = (char *const *)argv;
	switch (kind) {
	case LIST_VP:
		return execvp(path, av);
	case LIST_VE:
		return execve(path, av, va_arg(ap, char *const *));
	default:
		return execv(path, av);
	}
}

VD__EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = exec_list(LIST_V, path, arg, ap);
	va_end(ap);
	return r;
}

VD__EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = exec_list(LIST_VP, file, arg, ap);
	va_end(ap);
	return r;
}

VD__EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = exec_list(LIST_VE, path, arg, ap);
	va_end(ap);
	return r;
}
