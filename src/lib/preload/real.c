/* SPDX-License-Identifier: MIT */
/*
 * The libc functions the interposer wraps, resolved once with dlsym(RTLD_NEXT): the next definition after
 * this library in the lookup order, i.e. libc's (or another preloaded library's, which then keeps working).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/preload/preload.h"

struct vd__real vd__real;
atomic_bool vd__preload_ready;
__thread int vd__in_lib __attribute__((tls_model("initial-exec")));

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *need(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	if (!f) {
		/* Without the real function the program cannot run at all: say so and stop. */
		static const char pre[] = "viaduct-preload: libc has no ";
		/* The raw system call: write() is our own wrapper, which would wait for this very init. */
		syscall(SYS_write, 2, pre, sizeof(pre) - 1);
		syscall(SYS_write, 2, name, strlen(name));
		syscall(SYS_write, 2, "\n", 1);
		abort();
	}
	return f;
}

#define RESOLVE(fn) vd__real.fn = (__typeof__(vd__real.fn))need(#fn)

static void resolve(void)
{
	RESOLVE(socket);
	RESOLVE(bind);
	RESOLVE(listen);
	RESOLVE(accept);
	RESOLVE(accept4);
	RESOLVE(connect);
	RESOLVE(send);
	RESOLVE(recv);
	RESOLVE(sendto);
	RESOLVE(recvfrom);
	RESOLVE(sendmsg);
	RESOLVE(recvmsg);
	RESOLVE(sendmmsg);
	RESOLVE(recvmmsg);
	RESOLVE(read);
	RESOLVE(write);
	RESOLVE(readv);
	RESOLVE(writev);
	RESOLVE(sendfile);
	RESOLVE(shutdown);
	RESOLVE(close);
	RESOLVE(close_range);
	RESOLVE(setsockopt);
	RESOLVE(getsockopt);
	RESOLVE(getsockname);
	RESOLVE(getpeername);
	RESOLVE(fcntl);
	RESOLVE(ioctl);
	RESOLVE(dup);
	RESOLVE(dup2);
	RESOLVE(dup3);
	RESOLVE(poll);
	RESOLVE(ppoll);
	RESOLVE(select);
	RESOLVE(pselect);
	RESOLVE(epoll_ctl);
	RESOLVE(epoll_wait);
	RESOLVE(epoll_pwait);
	RESOLVE(sigaction);
	RESOLVE(fork);
	RESOLVE(execve);
	RESOLVE(execv);
	RESOLVE(execvp);
	RESOLVE(execvpe);
	RESOLVE(fexecve);
	atomic_store_explicit(&vd__preload_ready, true, memory_order_release);
}

void vd__preload_init(void)
{
	pthread_once(&once, resolve);
}

__attribute__((constructor)) static void preload_ctor(void)
{
	vd__preload_init();
}
