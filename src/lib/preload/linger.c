/* SPDX-License-Identifier: MIT */
/*
 * Closing sockets, and process exit. With the kernel's stack, close() hands a connection's unsent data and
 * its FIN to the kernel, which finishes them after the process has moved on or exited. Here the
 * connection lives in the stack, which progresses only while one of its member processes calls into it:
 *  - close() of a socket's last fd in this process lets go of this process's hold (vd_close). While
 *    another process (fork) holds the socket, that is all: it stays open for them, as a kernel socket
 *    stays open while another process has it. The last holder's vd_close is the BSD close (FIN after the
 *    queued data; unread data or SO_LINGER 0 abort, as Linux), which the engine finishes while any member
 *    progresses the stack.
 *  - at exit() (a destructor of this library), every viaduct socket still open in the process is closed
 *    the same way. If other members remain, the process just leaves (vd_stack_close): they progress the
 *    closes. The last member progresses the stack until no closed connection is left unfinished (its FIN
 *    acknowledged: vd_stack_stats.tcp_closing) or VIADUCT_LINGER_MS (default 5000) passes; then
 *    vd_stack_close() resets what is left and hands TIME-WAIT to viaductd. Two last members exiting at
 *    the same instant may each see the other and both leave: the later one's vd_stack_close resets.
 *  - a process killed by a signal or leaving with _exit() skips this (as it skips every destructor): the
 *    other members' next progress pass detaches it (its holds are dropped as if closed); if it was the
 *    only member, its peers see the connections stall.
 */
#include <stdlib.h>

#include "lib/preload/preload.h"

void vd__sock_release(struct vd_stack *st, int h)
{
	vd__enter();
	/*
	 * First take in what has arrived, as the kernel has by the time close() runs (its softirq does not
	 * wait for the process). A server that accepts and closes at once would otherwise send its FIN
	 * before seeing the peer's, already waiting in the ring: a simultaneous close (RFC 9293 3.6) instead
	 * of CLOSE-WAIT/LAST-ACK, which leaves it a TIME-WAIT per connection and costs both sides a round
	 * trip more. And whether close() aborts (unread data, RFC 2525 2.17) is decided on the data that
	 * arrived before it, as with the kernel.
	 */
	vd_stack_progress(st);
	vd_close(st, h);
	vd__leave();
}

__attribute__((destructor)) static void linger_at_exit(void)
{
	struct vd_stack *st = vd__stack_if_open();
	const char *e = getenv("VIADUCT_LINGER_MS");
	int64_t limit_us = (e && *e ? atoll(e) : 5000) * 1000, deadline;

	if (!st)
		return;
	vd__fd_close_all(); /* what the kernel does to a dying process's fds */
	deadline = vd__now_us() + limit_us;
	for (;;) {
		struct vd_stack_stats ss;
		int tmo = 2, busy;

		vd__enter();
		vd_stack_progress(st);
		vd_stack_stats(st, &ss); /* members is exact: dead members are reaped first */
		vd__leave();
		if (ss.members > 1 || ss.tcp_closing == 0 || vd__now_us() >= deadline)
			break;
		struct pollfd p = { .fd = vd_stack_fd(st), .events = POLLIN };
		vd__enter();
		busy = vd_stack_prepare_wait(st, &tmo);
		vd__leave();
		if (!busy)
			vd__real.poll(&p, 1, tmo < 0 || tmo > 2 ? 2 : tmo);
	}
	vd__enter();
	vd_stack_close(st);
	vd__leave();
}
