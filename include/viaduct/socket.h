/* SPDX-License-Identifier: MIT */
/*
 * viaduct sockets: BSD-style TCP and UDP sockets over libviaduct's user-level TCP/IP.
 *
 * A stack (struct vd_stack) is one IPv4 host inside the process: one nic endpoint opened in
 * VD_NIC_LAYER_IPV4 mode (xdp through viaductd, or sim for tests), the TCP engine (src/lib/tcp) and UDP.
 * Sockets are small integer handles in the stack's own table (not kernel file descriptors); `viaduct run`
 * (src/lib/preload) maps kernel fd numbers onto them for unmodified programs.
 *
 * The calls mirror their BSD namesakes (same arguments after the stack, same semantics, same errors) but
 * return a negative errno instead of setting errno: vd_recv() returning -EAGAIN is recv() returning -1
 * with errno EAGAIN. Addresses are struct sockaddr_in (AF_INET only; -EAFNOSUPPORT otherwise).
 *
 * Progress runs in the calling thread, inside the calls (SOVIA's lesson: no helper thread on the latency
 * path). A blocking call busy-polls the nic for up to vd_stack_opts.spin_us, then sleeps on the nic's fd
 * until a frame or the next protocol timer. Threads: every call takes the stack's lock, which a blocking
 * call drops while it spins or sleeps, so several threads may use the sockets of one stack at once.
 */
#ifndef VIADUCT_SOCKET_H
#define VIADUCT_SOCKET_H

#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <viaduct/nic.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vd_stack;

struct vd_stack_opts {
	enum vd_backend backend;   /* AUTO or XDP: through viaductd; SIM: on opts.sim (tests). UDP: -EINVAL */
	const char *ctl_path;      /* xdp: viaductd socket; NULL: $VIADUCT_SOCKET, else the default path */
	const char *ifname;        /* xdp: interface; NULL: the daemon's first */
	struct vd_sim_link *sim;   /* sim: the link */
	const char *local_ip;      /* sim: this host's address ("10.0.0.1"); xdp: ignored (the interface's) */
	uint32_t sndbuf, rcvbuf;   /* TCP default buffers, bytes; 0: 256 KiB each */
	int spin_us;               /* blocking calls busy-poll this long before sleeping; 0: 100; < 0: never sleep */
	uint64_t secret;           /* TCP ISN / SYN-cookie key; 0: random (set it on sim for replayable tests) */
	size_t heap_bytes;         /* address space reserved for the stack's shared heap; 0: 16 GiB (memory is
	                            * only used as touched) */
};

VD_API int vd_stack_open(struct vd_stack **out, const struct vd_stack_opts *opts);
/*
 * The calling process leaves the stack: it lets go of every socket it holds (see "Processes" below; a
 * socket no other member holds is closed as by vd_close). The last member to leave closes what is left
 * (connections reset) and the endpoint, and frees the stack.
 */
VD_API void vd_stack_close(struct vd_stack *st);
/* The stack's address (network byte order) and its nic (for stats; do not do I/O on it). */
VD_API uint32_t vd_stack_ip(const struct vd_stack *st);
VD_API struct vd_nic *vd_stack_nic(struct vd_stack *st);

/* One progress pass without blocking: receive, run timers, send. Returns > 0 if anything happened. */
VD_API int vd_stack_progress(struct vd_stack *st);
/*
 * For callers that sleep in their own poll/epoll loop next to other fds: vd_stack_fd() becomes readable
 * when frames arrive. Before sleeping, call vd_stack_prepare_wait(st, &timeout_ms): it returns 1 if work is
 * already pending (do not sleep; call vd_stack_progress), else arms the wakeup, lowers *timeout_ms to the
 * next protocol timer (-1 stays -1 only when no timer runs) and returns 0.
 */
VD_API int vd_stack_fd(const struct vd_stack *st);
VD_API int vd_stack_prepare_wait(struct vd_stack *st, int *timeout_ms);
/*
 * A number that changes whenever socket state may have changed (a progress pass that received frames or
 * ran timers, a call that changed a socket). A caller that reads several sockets' events (each call
 * progresses the stack: reading one socket's events may make another ready without any new frame to
 * wake a sleep) takes it before reading them and does not sleep when it differs after
 * vd_stack_prepare_wait.
 */
VD_API uint32_t vd_stack_gen(struct vd_stack *st);

/* type: SOCK_STREAM or SOCK_DGRAM, optionally | SOCK_NONBLOCK (| SOCK_CLOEXEC accepted, meaningless here). */
VD_API int vd_socket(struct vd_stack *st, int domain, int type, int protocol);
VD_API int vd_bind(struct vd_stack *st, int s, const struct sockaddr *addr, socklen_t len);
VD_API int vd_listen(struct vd_stack *st, int s, int backlog);
VD_API int vd_accept4(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len, int flags);
/* Blocking sockets wait for the handshake (-ETIMEDOUT, -ECONNREFUSED, -EINTR never: no signals here);
 * non-blocking ones return -EINPROGRESS. A UDP connect() only sets the default peer. */
VD_API int vd_connect(struct vd_stack *st, int s, const struct sockaddr *addr, socklen_t len);
VD_API ssize_t vd_send(struct vd_stack *st, int s, const void *buf, size_t len, int flags);
VD_API ssize_t vd_recv(struct vd_stack *st, int s, void *buf, size_t len, int flags);
VD_API ssize_t vd_sendto(struct vd_stack *st, int s, const void *buf, size_t len, int flags,
			 const struct sockaddr *to, socklen_t tolen);
VD_API ssize_t vd_recvfrom(struct vd_stack *st, int s, void *buf, size_t len, int flags, struct sockaddr *from,
			   socklen_t *fromlen);
VD_API ssize_t vd_sendmsg(struct vd_stack *st, int s, const struct msghdr *msg, int flags);
VD_API ssize_t vd_recvmsg(struct vd_stack *st, int s, struct msghdr *msg, int flags);
VD_API int vd_shutdown(struct vd_stack *st, int s, int how);
/* Lets go of the caller's hold on s; the socket closes when no member process holds it (see Processes). */
VD_API int vd_close(struct vd_stack *st, int s);
VD_API int vd_setsockopt(struct vd_stack *st, int s, int level, int name, const void *val, socklen_t len);
VD_API int vd_getsockopt(struct vd_stack *st, int s, int level, int name, void *val, socklen_t *len);
VD_API int vd_getsockname(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len);
VD_API int vd_getpeername(struct vd_stack *st, int s, struct sockaddr *addr, socklen_t *len);
/* O_NONBLOCK on or off (fcntl F_SETFL / ioctl FIONBIO); vd_get_nonblock returns 0 or 1. */
VD_API int vd_set_nonblock(struct vd_stack *st, int s, int on);
VD_API int vd_get_nonblock(struct vd_stack *st, int s);
/* FIONREAD: bytes ready to read (TCP), or the size of the next datagram (UDP). */
VD_API int vd_readable(struct vd_stack *st, int s);
/* What poll(2) would report for the socket now (POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP); -EBADF. */
VD_API int vd_sock_events(struct vd_stack *st, int s);
/* poll(2) over stack sockets (fds[i].fd are handles; negative entries ignored). timeout_ms -1: forever. */
VD_API int vd_poll(struct vd_stack *st, struct pollfd *fds, nfds_t n, int timeout_ms);
/* SOCK_STREAM or SOCK_DGRAM, or -EBADF: lets a caller tell handles apart. */
VD_API int vd_sock_type(struct vd_stack *st, int s);

/*
 * Processes. A stack keeps all its state (sockets, the TCP engine, buffers, the nic's ring state) in one
 * shared mapping made at vd_stack_open, and its lock is process-shared and robust: a child made by fork()
 * goes on using every socket it inherited, as with kernel sockets, and parent and child may use the same
 * socket at once (calls are serialised by the lock, as between threads). Handles mean the same socket in
 * every member process.
 *
 * Each socket records which member processes hold it. vd_close() lets go of the caller's hold; the socket
 * is closed (the BSD close: graceful, or reset with unread data or SO_LINGER 0) when its last holder
 * lets go or leaves. A member leaves by vd_stack_close, by exec (see below) or by dying: a member whose
 * process is gone (exit without vd_stack_close, _exit, a signal) is detached by the next progress pass of
 * any other member (within about a second), its holds dropped as if it had closed them. A member that dies
 * holding the lock leaves the stack consistent only as far as the engine's last completed step (the lock
 * is robust: the next caller takes it over and counts it in vd_stack_stats.lock_owner_died).
 *
 * fork(), as `viaduct run` does it:
 *     int slot = vd_stack_fork_prepare(st);     parent: takes the lock, reserves the child's member slot,
 *                                               giving it a hold on every socket the caller holds
 *     pid_t pid = fork();
 *     child:  vd_stack_fork_child(st, slot);    becomes that member (does not touch the lock)
 *     parent: vd_stack_fork_done(st, slot, pid); pid < 0: the slot is released; then unlocks
 * vd_stack_fork_prepare returns -EAGAIN when VD_STACK_MAX_PROCS members exist already (the child then
 * must not use the stack: it may vd_stack_forget() it). Only stacks on the xdp backend can be shared
 * (sim links live in one process): on sim, vd_stack_fork_prepare returns -EOPNOTSUPP.
 *
 * exec(): the new image does not map the stack. vd_stack_exec_prepare(st) marks the caller as leaving at
 * its next successful exec (a member that still runs but no longer maps the stack is detached like a dead
 * one); vd_stack_exec_failed(st) undoes it when exec returned.
 *
 * vd_stack_forget(st): the caller stops using the stack without leaving it in the shared state (for a
 * fork child that was not given a slot; its process-local view is dropped, nothing shared is touched).
 */
#define VD_STACK_MAX_PROCS 64
VD_API int vd_stack_fork_prepare(struct vd_stack *st);
VD_API void vd_stack_fork_done(struct vd_stack *st, int slot, pid_t child);
VD_API void vd_stack_fork_child(struct vd_stack *st, int slot);
VD_API void vd_stack_exec_prepare(struct vd_stack *st);
VD_API void vd_stack_exec_failed(struct vd_stack *st);
VD_API void vd_stack_forget(struct vd_stack *st);

struct vd_stack_stats {
	uint64_t tcp_sockets, udp_sockets;       /* open now */
	uint64_t tcp_active_opens, tcp_passive_opens;
	uint64_t tcp_retrans_segs, tcp_bad_csum, tcp_malformed, tcp_rst_out;
	uint64_t udp_rx_datagrams, udp_tx_datagrams, udp_rx_dropped, udp_malformed;
	uint64_t rx_not_ours;                    /* IPv4 packets for a protocol or port nobody holds */
	uint64_t members;                        /* processes sharing the stack now */
	uint64_t members_reaped;                 /* members detached because their process was gone */
	uint64_t lock_owner_died;                /* the lock was taken over from a dead member */
	uint64_t heap_bytes_used;                /* the shared heap: bytes allocated now */
	uint64_t tcp_closing;                    /* TCP connections every holder closed whose FIN is not yet
	                                          * acknowledged (not FIN-WAIT-2, TIME-WAIT or closed): the
	                                          * last member progresses until 0 before it leaves, or its
	                                          * peers see a reset instead of an orderly close */
};
/* Members are checked first (dead ones detached), so `members` is exact: a caller deciding whether it is
 * the last member (at exit) may trust it. */
VD_API void vd_stack_stats(struct vd_stack *st, struct vd_stack_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VIADUCT_SOCKET_H */
