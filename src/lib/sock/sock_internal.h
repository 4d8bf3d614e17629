/* SPDX-License-Identifier: MIT */
/*
 * Internals of the stack and the sockets API (include/viaduct/socket.h).
 *
 * Layout:
 *   stack.c      the stack: nic in VD_NIC_LAYER_IPV4 mode, the progress pass (receive and demultiplex by
 *                IPv4 protocol, TCP timers, flush), the lock and the blocking wait, stats;
 *   udp.c        UDP (RFC 768): port table, datagram queues, send path with the IPv4 header;
 *   sock_table.c the handle table (small integers -> struct vd_sock);
 *   sock_api.c   the BSD calls on top of the TCP engine (src/lib/tcp) and udp.c;
 *   sock_poll.c  vd_poll, vd_sock_events, vd_readable;
 *   members.c    the member processes sharing the stack (fork, exec, exit): who holds which socket, the
 *                reaper of dead members, vd_stack_fork_* / exec_* / forget.
 *
 * Memory (socket.h "Processes"): on xdp, struct vd_stack and everything reachable from it (the TCP
 * engine, sockets, buffers, the nic's state) live in st->heap, one MAP_SHARED mapping made at open, so a
 * fork child sees it all at the same addresses. The lock and cond are process-shared, the lock robust.
 * On sim (process-local links, no fork) st->heap is NULL and everything comes from malloc, which keeps the
 * unit tests under ASan's eye.
 *
 * Locking: every public call takes st->lock for its whole run, except while a blocking call waits
 * (vd__stack_wait drops it while spinning or sleeping). The nic and the TCP engine are single-threaded;
 * the lock is what serialises them.
 *
 * Wakeups between threads: a thread blocked in a call waits either as "the sleeper" (one thread at a time:
 * it sleeps in poll(2) on the nic's fd and the stack's kick eventfd) or on st->cond. Whoever changes socket
 * state (a progress pass that received something, a send, a close) marks the stack dirty; when the lock is
 * released with the stack dirty, cond waiters are broadcast and the sleeper is kicked, so a frame consumed
 * by another thread's progress pass never leaves a waiter asleep.
 * Between processes the same holds (the eventfd and the nic's fd are inherited by fork); a cond waiter
 * whose sleeper's process died (st->sleeper_pid) takes over after its bounded wait (members.c).
 */
#ifndef VD_SOCK_INTERNAL_H
#define VD_SOCK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <viaduct/socket.h>

#include "lib/core/shmheap.h"
#include "lib/tcp/tcp.h"

#define VD_SOCK_RX_BURST 64u
#define VD_UDP_DEFAULT_RCVBUF 212992u   /* Linux's net.core.rmem_default */
#define VD_UDP_DEFAULT_SNDBUF 212992u
#define VD_UDP_DGRAM_OVERHEAD 256u      /* charged per queued datagram, so empty ones still count */

struct vd__udp_dgram {
	struct vd__udp_dgram *next;
	uint32_t src_ip, len;   /* src_ip network order */
	uint16_t src_port;      /* network order */
	uint8_t data[];
};

/* One UDP socket. Addresses and ports in network byte order. */
struct vd__udp_sock {
	uint32_t local_ip;           /* 0: any (i.e. the stack's only address) */
	uint16_t local_port;         /* 0: not bound yet */
	uint16_t peer_port;
	uint32_t peer_ip;
	int connected;
	int shut_rd, shut_wr;
	int reuse_addr, reuse_port, broadcast;
	uint32_t rcvbuf, sndbuf;     /* as getsockopt reports them (Linux doubles what is set) */
	uint32_t q_bytes, q_count;   /* queued: charged bytes, datagrams */
	struct vd__udp_dgram *q_head, *q_tail;
};

struct vd_ctl_ep_shared;
struct vd__udp;   /* the UDP layer of one stack: port table, stats */

struct vd_sock {
	uint64_t holders;         /* member processes holding the socket: bit i = st->members[i] */
	int type;                 /* SOCK_STREAM or SOCK_DGRAM */
	int nonblock;
	uint64_t rcvtimeo_ns, sndtimeo_ns;  /* 0: wait forever */
	struct vd__tcb *tcb;      /* SOCK_STREAM */
	struct vd__udp_sock udp;  /* SOCK_DGRAM */
};

struct vd__sock_slot {
	struct vd_sock *sk;       /* NULL: free */
	uint32_t gen;             /* bumped on every close: a waiter notices its socket went away */
	int next_free;
};

/* A process sharing the stack (members.c). */
enum { VD__MEMBER_FREE = 0, VD__MEMBER_RESERVED, VD__MEMBER_ACTIVE };
struct vd__member {
	int state;                 /* RESERVED: fork_prepare made it, the child is not confirmed yet */
	pid_t pid;                 /* 0 while RESERVED before the child or parent fills it in */
	uint64_t start;            /* start time (field 22 of /proc/PID/stat); 0: unknown */
	int exec_leaving;          /* vd_stack_exec_prepare: gone once PID no longer maps the heap */
};

struct vd_stack {
	pthread_mutex_t lock;      /* process-shared, robust */
	pthread_cond_t cond;
	_Atomic int contenders;    /* threads blocked in vd__stack_lock: a spinning waiter yields to them */
	struct vd_nic *nic;
	struct vd__tcp *tcp;
	struct vd__udp *udp;
	uint32_t ip;               /* network order */
	uint32_t mtu;              /* largest IPv4 packet */
	int spin_us;
	int is_sim;                /* waits advance the virtual clock instead of sleeping */
	int kick_fd;               /* eventfd: wakes the sleeper */
	int sleeper;               /* a thread sleeps in poll(2) on nic fd + kick_fd */
	pid_t sleeper_pid;         /* its process: a cond waiter takes over if that process is gone */
	int cond_waiters;
	int dirty;                 /* socket state changed since the lock was taken */
	uint32_t gen;              /* bumped each time waiters are woken for a change */
	uint64_t next_timer_ns;    /* from vd__tcp_poll; UINT64_MAX: none */
	uint64_t coarse_slack_ns;  /* CLOCK_MONOTONIC_COARSE lags the nic's clock by less (stack.c); 0: no filter */
	uint32_t coarse_passes;    /* empty passes since the last exact timer check */
	uint16_t ip_id;            /* IPv4 identification for UDP datagrams we send */
	/* handle table */
	struct vd__sock_slot *slots;
	int n_slots, free_head;
	/* stats of this layer (TCP's own come from the engine, UDP's from udp.c) */
	uint64_t rx_not_ours;
	uint64_t tcp_sockets, udp_sockets;
	struct vd_ctl_ep_shared *shared;  /* the endpoint's stats page (xdp), NULL on sim */
	/* processes (members.c) */
	struct vd__shmheap *heap;  /* where all of this lives; NULL on sim (malloc) */
	struct vd__member members[VD_STACK_MAX_PROCS];
	int n_members;             /* slots not FREE */
	int reap_now;              /* check members at the next progress pass (a lock owner died) */
	uint64_t next_reap_ns;
	uint64_t members_reaped, lock_owner_died;
};

/* ---- stack.c ---- */
void vd__stack_lock(struct vd_stack *st);
/* Releases the lock; wakes waiters if socket state changed meanwhile. */
void vd__stack_unlock(struct vd_stack *st);
/* Progress with the lock held; returns > 0 if anything happened. */
int vd__stack_progress_locked(struct vd_stack *st);
/* After an API call changed TCP state: run the engine's output and timers now, flush the nic. */
void vd__stack_kick_tcp(struct vd_stack *st);
/*
 * Waits (lock held on entry and on return, dropped meanwhile) until something may have changed or
 * deadline_ns (vd_nic_now_ns clock; 0: none) passes. Runs a progress pass before returning. Returns 0,
 * or -ETIMEDOUT once the deadline has passed.
 */
int vd__stack_wait(struct vd_stack *st, uint64_t deadline_ns);
uint64_t vd__stack_now(const struct vd_stack *st);

/* ---- members.c ---- */
/* The calling process's pid, cached (a pthread_atfork child handler drops the cache). */
pid_t vd__self_pid(void);
/* The opener becomes the first member. */
void vd__members_init(struct vd_stack *st);
/* The caller's member bit (0: the caller is not a member). Lock held. */
uint64_t vd__member_bit(struct vd_stack *st);
/* The reaper (lock held): detaches members whose process is gone; rate-limited unless force. */
void vd__members_check(struct vd_stack *st, int force);
/* Lets go of member m's holds (sockets no one holds any more are closed) and frees its slot. Lock held. */
void vd__member_detach(struct vd_stack *st, int m);
/* 1 if process pid is gone (no such process, a zombie). */
int vd__proc_gone(pid_t pid);

/* ---- udp.c ---- */
int vd__udp_new(struct vd__udp **out, struct vd_stack *st);
void vd__udp_free(struct vd__udp *u);
void vd__udp_input(struct vd__udp *u, const uint8_t *ip, uint32_t len);
void vd__udp_sock_init(struct vd__udp_sock *us);
/* Frees the queue and gives the port back. */
void vd__udp_sock_release(struct vd__udp *u, struct vd__udp_sock *us);
int vd__udp_bind(struct vd__udp *u, struct vd__udp_sock *us, uint32_t ip, uint16_t port);
/* ip 0 and port 0 with unspec = 1: dissolve the association (AF_UNSPEC). */
int vd__udp_connect(struct vd__udp *u, struct vd__udp_sock *us, uint32_t ip, uint16_t port, int unspec);
/* Returns bytes sent, -EAGAIN when the nic has no TX room (retry), or another error. dst NULL: the peer. */
ssize_t vd__udp_send(struct vd__udp *u, struct vd__udp_sock *us, const struct iovec *iov, int iovcnt,
		     const struct sockaddr_in *dst);
/* -EAGAIN when nothing is queued. *from filled if non-NULL; *msg_flags gets MSG_TRUNC. */
ssize_t vd__udp_recv(struct vd__udp *u, struct vd__udp_sock *us, const struct iovec *iov, int iovcnt, int flags,
		     struct sockaddr_in *from, int *msg_flags);
uint32_t vd__udp_events(const struct vd__udp_sock *us);
int vd__udp_setopt(struct vd__udp_sock *us, int level, int name, const void *val, socklen_t len);
int vd__udp_getopt(struct vd__udp_sock *us, int level, int name, void *val, socklen_t *len);
void vd__udp_stats(const struct vd__udp *u, struct vd_stack_stats *out);

/* ---- sock_table.c ---- */
/* Publishes the socket counts into the endpoint's shared stats page (`viaduct stat` reads it). */
void vd__sock_publish(struct vd_stack *st);
int vd__sock_alloc(struct vd_stack *st, struct vd_sock *sk);   /* returns the handle or -EMFILE/-ENOMEM */
struct vd_sock *vd__sock_get(struct vd_stack *st, int s);       /* NULL if not a handle */
uint32_t vd__sock_gen(struct vd_stack *st, int s);
void vd__sock_free_slot(struct vd_stack *st, int s);
void vd__sock_destroy(struct vd_stack *st, struct vd_sock *sk); /* releases tcb or UDP state, frees sk */
/* A zeroed struct vd_sock from the stack's heap; NULL: -ENOMEM. vd__sock_delete frees one never handed to
 * vd__sock_alloc. */
struct vd_sock *vd__sock_new(struct vd_stack *st);
void vd__sock_delete(struct vd_stack *st, struct vd_sock *sk);
/* The caller's vd_close: drops its hold on s; closes the socket when nobody holds it. -EBADF if the caller
 * does not hold it. Lock held. */
int vd__sock_let_go(struct vd_stack *st, int s);

/* ---- sock_poll.c ---- */
uint32_t vd__sock_events(struct vd_sock *sk);

#endif
