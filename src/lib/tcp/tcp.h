/* SPDX-License-Identifier: MIT */
/*
 * The TCP engine of libviaduct's user-level TCP/IP (RFC 9293, with RFC 7323 window scaling and timestamps,
 * RFC 2018 SACK, RFC 6298 retransmission timer, RFC 6582 NewReno fast recovery / RFC 5681 congestion
 * control, RFC 1122 delayed ACK and keepalive, RFC 896 Nagle, RFC 4987 SYN cookies).
 *
 * It does no I/O of its own and takes no locks: it sends IPv4 packets through a nic opened with
 * VD_NIC_LAYER_IPV4, is fed received TCP packets by the stack (src/lib/sock), and reads time only through
 * vd_nic_now_ns(), so over the sim backend every run replays exactly. One thread at a time: the caller
 * (the socket layer) serialises all calls on one vd__tcp.
 *
 * Ports: vd__tcb_bind() and vd__tcb_connect() take ports from the nic with vd_nic_port_add(); a port goes
 * back with vd_nic_port_del() once no tcb uses it. A connection on an ephemeral port that reaches TIME-WAIT
 * after the application closed it is handed to viaductd: the port is released with hold_ms = the
 * TIME-WAIT period and the tcb freed ("TIME-WAIT belongs to the daemon once the process has closed").
 *
 * Errors: negative errno, with the values a BSD socket would give (the socket layer passes them on).
 */
#ifndef VD_TCP_H
#define VD_TCP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <viaduct/nic.h>

struct vd__tcp; /* the TCP layer of one stack: connection table, listeners, timers, ISN/cookie secret */
struct vd__tcb; /* one TCP socket: closed, listening, or a connection in any state */

struct vd__tcp_cfg {
	uint32_t sndbuf;         /* default send buffer, bytes; 0: 256 KiB (SO_SNDBUF changes it per socket) */
	uint32_t rcvbuf;         /* default receive buffer, bytes; 0: 256 KiB */
	uint32_t time_wait_ms;   /* 2 MSL; 0: 60000 (Linux's value) */
	uint32_t delack_ms;      /* delayed-ACK timer (RFC 1122 4.2.3.2: < 500 ms); 0: 40 */
	uint32_t rto_min_ms;     /* RFC 6298 2.4 says 1 s; 0: 200 (what Linux and most stacks use) */
	uint32_t max_conns;      /* connections + listeners, bound on memory; 0: 65536 */
	uint64_t secret;         /* ISN (RFC 6528) and SYN-cookie key; 0: from getrandom() */
	struct vd__shmheap *heap; /* where the layer, tcbs and buffers live (lib/core/shmheap.h); NULL: malloc */
};

struct vd__tcp_stats {
	uint64_t segs_in, segs_out, bytes_in, bytes_out;
	uint64_t retrans_segs;      /* segments sent again (RTO, fast retransmit, SACK recovery) */
	uint64_t rto_expired, fast_retrans;
	uint64_t bad_csum, malformed; /* dropped and counted: bad checksum, impossible header or options */
	uint64_t no_port;           /* no socket for the segment: answered with RST (RFC 9293 3.10.7.1) */
	uint64_t rst_in, rst_out;
	uint64_t out_of_window;     /* unacceptable segments (RFC 9293 3.10.7.4), PAWS drops included */
	uint64_t active_opens, passive_opens, syn_cookies_sent, syn_cookies_ok, backlog_drops;
	uint64_t conns;             /* tcbs alive now (all states, listeners included) */
};

int vd__tcp_new(struct vd__tcp **out, struct vd_nic *nic, const struct vd__tcp_cfg *cfg);
/* Frees everything: live connections are reset (RST sent), ports given back. */
void vd__tcp_free(struct vd__tcp *t);

/*
 * Feeds one received IPv4 packet whose protocol is TCP. ip points at the IPv4 header, which the nic has
 * checked (version, lengths, header checksum, not a fragment); len is the IPv4 total length. The engine
 * checks the rest (TCP checksum over the pseudo-header, header length, options) and drops and counts what
 * is malformed. The data is copied out: the caller may release the frame when this returns.
 */
void vd__tcp_input(struct vd__tcp *t, const void *ip, uint32_t len);

/*
 * Runs due timers (retransmission, delayed ACK, persist, keepalive, TIME-WAIT, SYN-RECEIVED expiry) and
 * sends whatever is pending (ACKs, data the windows allow). Call after every batch of input and whenever
 * the time it returned has come. Returns that time (vd_nic_now_ns clock), UINT64_MAX when no timer runs.
 */
uint64_t vd__tcp_poll(struct vd__tcp *t);
/*
 * Nonzero when a tcb call since the last vd__tcp_poll may have made it due sooner than it said: a writer
 * stopped at lent TX memory still being sent (tcp_zc.c; its completion arrives on no fd). A caller about
 * to wait runs vd__tcp_poll first when this says so, and waits no longer than the time it returns.
 */
int vd__tcp_poll_soon(const struct vd__tcp *t);

/*
 * One clock read per lock hold. The engine reads the clock at the start of every input, poll and tcb call
 * (about 25 ns each through the vDSO in a VM, five or six on one send+recv of a ping-pong). With hold on,
 * the first read after vd__tcp_clock_drop() is kept and every later one returns it, until the next drop:
 * the caller drops at each lock acquisition and wherever time may have moved while it held the lock (a
 * wait inside the hold, a sim clock advanced), as Linux's TCP keeps one clock per softirq run. A hold is
 * microseconds against millisecond timers. vd__tcp_clock() is that clock for the caller too. Off by default.
 */
void vd__tcp_clock_hold(struct vd__tcp *t, int on);
void vd__tcp_clock_drop(struct vd__tcp *t);
uint64_t vd__tcp_clock(struct vd__tcp *t);

void vd__tcp_stats(const struct vd__tcp *t, struct vd__tcp_stats *out);
/* Connections closed by their user (vd__tcb_close) whose close is not done: our FIN not yet acknowledged
 * (any state before FIN-WAIT-2 / TIME-WAIT / CLOSED). What a process must let finish before it exits. */
uint32_t vd__tcp_closing(const struct vd__tcp *t);

/*
 * Called (from inside vd__tcp_input/poll and the tcb calls) whenever a tcb's events may have changed, so
 * the socket layer can wake whoever waits on it. A tcb that is created by a listener is announced through
 * its listener's events (POLLIN) before vd__tcb_accept() returns it.
 */
void vd__tcp_set_notify(struct vd__tcp *t, void (*fn)(void *ctx, struct vd__tcb *c), void *ctx);

/* --- sockets ------------------------------------------------------------------------------------- */

int vd__tcb_new(struct vd__tcp *t, struct vd__tcb **out);
/* ip_be 0 or the nic's address; port_be 0 picks an ephemeral port. -EADDRINUSE, -EADDRNOTAVAIL (an
 * address that is not ours), -EINVAL (already bound). */
int vd__tcb_bind(struct vd__tcb *c, uint32_t ip_be, uint16_t port_be);
int vd__tcb_listen(struct vd__tcb *c, int backlog);
/* -EAGAIN when no connection is ready; -EINVAL when not listening. */
int vd__tcb_accept(struct vd__tcb *listener, struct vd__tcb **out);
/* Starts the handshake and returns -EINPROGRESS; the outcome shows in events (POLLOUT, or POLLERR with
 * vd__tcb_error() = -ECONNREFUSED/-ETIMEDOUT/...). -EISCONN, -EALREADY as BSD sockets. */
int vd__tcb_connect(struct vd__tcb *c, uint32_t ip_be, uint16_t port_be);
/* Copies what fits into the send buffer; returns bytes taken, -EAGAIN if none fit, -EPIPE after
 * shutdown(SHUT_WR) or once the connection is closed or reset, -ENOTCONN before it is established.
 * flags: MSG_MORE (hold a partial segment as TCP_CORK would), MSG_DONTWAIT ignored (never blocks). */
ssize_t vd__tcb_send(struct vd__tcb *c, const struct iovec *iov, int iovcnt, int flags);
/* Returns bytes copied out, 0 at end of stream (FIN received, all data read), -EAGAIN when nothing is
 * there yet, -ECONNRESET after a reset, -ENOTCONN. flags: MSG_PEEK, MSG_WAITALL/MSG_DONTWAIT ignored. */
ssize_t vd__tcb_recv(struct vd__tcb *c, const struct iovec *iov, int iovcnt, int flags);
int vd__tcb_shutdown(struct vd__tcb *c, int how);
/*
 * The application lets go of the socket. A connection is closed gracefully (FIN after the queued data),
 * or reset when unread data remains (RFC 9293 3.10.4 / RFC 2525 2.17) or SO_LINGER is on with timeout 0.
 * The engine frees the tcb itself when the connection is over; the caller must not use c again.
 */
void vd__tcb_close(struct vd__tcb *c);
/* POLLIN, POLLOUT, POLLERR, POLLHUP, POLLRDHUP, as poll(2) would report them for a kernel TCP socket. */
uint32_t vd__tcb_events(const struct vd__tcb *c);
/* SO_ERROR: the pending error (negative errno) or 0, cleared by reading it. */
int vd__tcb_error(struct vd__tcb *c);
/*
 * Socket options: SOL_SOCKET SO_REUSEADDR, SO_REUSEPORT (accepted, recorded), SO_RCVBUF, SO_SNDBUF,
 * SO_KEEPALIVE, SO_LINGER, SO_ERROR (get), SO_TYPE (get), SO_ACCEPTCONN (get); IPPROTO_TCP TCP_NODELAY,
 * TCP_CORK, TCP_MAXSEG, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_INFO (get: struct tcp_info, the
 * fields the engine has). Anything else: -ENOPROTOOPT.
 */
int vd__tcb_setopt(struct vd__tcb *c, int level, int name, const void *val, socklen_t len);
int vd__tcb_getopt(struct vd__tcb *c, int level, int name, void *val, socklen_t *len);
/* Local and remote address (network byte order); -ENOTCONN for peer when there is none. */
int vd__tcb_local(const struct vd__tcb *c, struct vd_addr *out);
int vd__tcb_peer(const struct vd__tcb *c, struct vd_addr *out);
/* Bytes ready to read (FIONREAD). */
uint32_t vd__tcb_readable(const struct vd__tcb *c);
/* The RFC 9293 state name ("ESTABLISHED", ...), for stat and tests. */
const char *vd__tcb_state_name(const struct vd__tcb *c);

/* The socket layer's pointer for this tcb (its socket), NULL until set. */
void vd__tcb_set_user(struct vd__tcb *c, void *user);
void *vd__tcb_user(const struct vd__tcb *c);

#endif /* VD_TCP_H */
