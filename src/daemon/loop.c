/* SPDX-License-Identifier: MIT */
/* The event loop: one epoll instance; each registered source carries its own callback. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"

static int ep_fd = -1;
static volatile int running;

int vd__loop_init(void)
{
	ep_fd = epoll_create1(EPOLL_CLOEXEC);
	return ep_fd < 0 ? -errno : 0;
}

int vd__loop_add(struct vd_evsrc *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(ep_fd, EPOLL_CTL_ADD, src->fd, &ev) ? -errno : 0;
}

int vd__loop_mod(struct vd_evsrc *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(ep_fd, EPOLL_CTL_MOD, src->fd, &ev) ? -errno : 0;
}

void vd__loop_del(struct vd_evsrc *src)
{
	epoll_ctl(ep_fd, EPOLL_CTL_DEL, src->fd, NULL);
}

/*
 * Callbacks may delete (and free) any source, including ones still pending in this batch, so the loop
 * handles one event per epoll_wait: a freed source is never dereferenced. The control plane is not on
 * the data path; one syscall per event is cheap here.
 */
int vd__loop_run(void)
{
	running = 1;
	while (running) {
		struct epoll_event ev;
		int n = epoll_wait(ep_fd, &ev, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 1) {
			struct vd_evsrc *src = ev.data.ptr;
			src->cb(src, ev.events);
		}
	}
	return 0;
}

void vd__loop_stop(void)
{
	running = 0;
}

void vd__loop_fini(void)
{
	if (ep_fd >= 0)
		close(ep_fd);
	ep_fd = -1;
}
