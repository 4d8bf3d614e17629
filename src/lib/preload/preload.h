/* SPDX-License-Identifier: MIT */
/*
 * libviaduct-preload: the LD_PRELOAD interposer behind `viaduct run` (docs/design.md, "Sockets under
 * viaduct run"). Shared declarations of its files, each with one job:
 *   real.c      the libc functions it wraps, resolved once with dlsym(RTLD_NEXT), and the re-entry guard
 *   fdtable.c   kernel fd number -> viaduct socket (refcounted across dup), fallback counters
 *   stack.c     the process's one vd_stack, opened lazily; a fork child's side; waiting for events
 *   signals.c   sigaction/signal wrappers that count deliveries, so spin loops can return EINTR
 *   procs.c     fork/vfork (the child joins the process-shared stack) and the exec family (leaves it)
 *   sock_calls.c socket/bind/listen/accept/connect/shutdown/close/sockopt/name/fcntl/ioctl/dup
 *   io_calls.c  send/recv families, read/write/readv/writev, sendfile on mapped fds
 *   poll.c      poll/ppoll/select/pselect over mixed viaduct and kernel fds
 *   epoll.c     epoll with viaduct and kernel fds in one set
 *
 * Model: every viaduct socket has a real kernel socket (the "placeholder") whose fd number the program
 * sees, so fd numbers stay unique and every fd call that viaduct does not handle still works on it. The
 * table maps that number to the viaduct socket. A socket that has not yet committed to viaduct (no
 * bind/connect/listen yet) may still fall back: the mapping is dropped and the placeholder becomes the
 * program's socket.
 */
#ifndef VD_PRELOAD_H
#define VD_PRELOAD_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <viaduct/socket.h>

/* The exported wrappers (everything else in the library is hidden). */
#define VD__EXPORT __attribute__((visibility("default")))

/* ---- real.c ---- */
struct vd__real {
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	int (*shutdown)(int, int);
	int (*close)(int);
	int (*close_range)(unsigned, unsigned, int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*fcntl)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	pid_t (*fork)(void);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execv)(const char *, char *const[]);
	int (*execvp)(const char *, char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
};
extern struct vd__real vd__real;

/* Resolves vd__real (idempotent, thread-safe); every wrapper calls it through VD__INIT first, because
 * another library's constructor may call a wrapper before ours ran. */
void vd__preload_init(void);
extern atomic_bool vd__preload_ready;
#define VD__INIT() do { if (!atomic_load_explicit(&vd__preload_ready, memory_order_acquire)) vd__preload_init(); } while (0)

/*
 * Re-entry guard: libviaduct itself calls socket(), poll(), sendmsg()... (the control connection, the
 * nic's sleep), and since this library contains libviaduct those calls land in our own wrappers. While a
 * thread is inside libviaduct (vd__enter .. vd__leave), every wrapper goes straight to libc.
 */
extern __thread int vd__in_lib __attribute__((tls_model("initial-exec")));
static inline void vd__enter(void) { vd__in_lib++; }
static inline void vd__leave(void) { vd__in_lib--; }

/* fd's viaduct socket if it has one and this thread is not inside libviaduct (then: the kernel's). */
struct vd__psock;
static inline struct vd__psock *vd__mapped(int fd);

/* Returns -1 with errno = -neg for a negative errno, else the value (the libc convention). */
static inline long vd__ret(long v)
{
	if (v < 0) {
		errno = (int)-v;
		return -1;
	}
	return v;
}

/* ---- fdtable.c ---- */
enum vd__ps_state {
	VD__PS_FRESH,     /* created, nothing bound or connected: may still fall back to the kernel */
	VD__PS_VIADUCT,   /* committed to viaduct */
};

struct vd__psock {
	int h;                      /* handle in the stack */
	int type;                   /* SOCK_STREAM or SOCK_DGRAM */
	int refs;                   /* fds mapped to it (dup); under the table lock */
	enum vd__ps_state state;
	atomic_bool nonblock;       /* the program's O_NONBLOCK (shared by dups, like a file description's) */
	atomic_bool orphan;         /* inherited by a fork child that is no member of the stack: unusable */
	atomic_uint eagain_gen;     /* bumped when an operation returns EAGAIN: re-arms EPOLLET */
	int64_t rcvtimeo_us, sndtimeo_us; /* SO_RCVTIMEO / SO_SNDTIMEO; 0: none */
	struct vd__psock *next_free;
};

/* The mapped viaduct socket of fd, or NULL (not mapped, or the table is not set up). Lock-free. */
struct vd__psock *vd__fd_get(int fd);
static inline struct vd__psock *vd__mapped(int fd)
{
	return vd__in_lib ? NULL : vd__fd_get(fd);
}
/* Unmaps every fd of ps (fallback of a dup'ed fresh socket); calls fn(fd) for each. */
void vd__fd_unmap_all(struct vd__psock *ps, void (*fn)(int fd));
/* Maps fd to a new psock for handle h. -ENOMEM / -EMFILE (fd beyond the table). */
int vd__fd_map_new(int fd, int h, int type, bool nonblock);
/* Maps newfd to the same psock as ps (dup); an earlier mapping of newfd is dropped first. */
void vd__fd_map_dup(int newfd, struct vd__psock *ps);
/* Drops fd's mapping; lets go of the viaduct socket when it was the last fd (unless orphaned). */
void vd__fd_unmap(int fd);
/* Unmaps every fd (process exit): each viaduct socket whose last fd it was is closed. */
void vd__fd_close_all(void);
/* Marks every mapped psock orphaned (a fork child that is no member of the stack). */
void vd__fd_orphan_all(void);

/*
 * fork(): each file's process-local locks, taken by the fork wrapper before the stack's lock (procs.c has
 * the order), released in the parent, re-initialised in the child.
 */
enum vd__fork_phase { VD__FORK_PREPARE, VD__FORK_PARENT, VD__FORK_CHILD };
void vd__fd_atfork(enum vd__fork_phase ph);
void vd__stack_atfork(enum vd__fork_phase ph);
void vd__epoll_atfork(enum vd__fork_phase ph);
void vd__sig_atfork(enum vd__fork_phase ph);
/* True in the thread running the fork wrapper's fork (the atfork child handler, which runs in that thread,
 * then leaves the child to the wrapper). Thread-local: a glibc-internal fork in another thread at the
 * same time is not the wrapper's. */
extern __thread bool vd__fork_wrapped __attribute__((tls_model("initial-exec")));

/* Fallback counters (kernel took a socket or call that viaduct could have had). */
enum vd__fb {
	VD__FB_NOSTACK,       /* AF_INET socket while no stack could be opened */
	VD__FB_FAMILY,        /* socket of another family/type (AF_UNIX, AF_INET6, SOCK_RAW...) */
	VD__FB_ADDR,          /* bind/connect/sendto to an address viaduct does not own or reach */
	VD__FB_SOCKOPT,       /* socket option viaduct does not know, applied to the kernel socket */
	VD__FB_COUNT
};
void vd__fb_count(enum vd__fb what);
uint64_t vd__fb_get(enum vd__fb what);
/* Copies the total into the endpoint's stats page (sock_fallback, shown by `viaduct stat`). */
void vd__fb_publish(void);

/* ---- stack.c ---- */
/* The stack, opened on first use; NULL when none can be (with one warning, unless VIADUCT_QUIET=1). */
struct vd_stack *vd__stack(void);
/* The stack if already open (never opens it). */
struct vd_stack *vd__stack_if_open(void);
/* VIADUCT_NO_FALLBACK=1: AF_INET sockets must go over viaduct (errors instead of kernel fallback). */
bool vd__no_fallback(void);
/* Busy-poll budget of blocking waits, microseconds (VIADUCT_SPIN_US, default 100). */
int vd__spin_us(void);
/* Called once per round of a spin loop: yields the CPU (see stack.c). */
void vd__spin_pause(void);
/* Monotonic microseconds. */
int64_t vd__now_us(void);
/*
 * Waits until ps has any of events (or POLLERR/POLLHUP), the timeout passes (timeout_us < 0: none) or a
 * signal whose handler is not SA_RESTART arrives. 0: ready; -EAGAIN: timed out; -EINTR.
 */
int vd__wait_sock(struct vd__psock *ps, short events, int64_t timeout_us);
/*
 * Sleeps until the stack's fd is readable, one of kfds (kernel fds, may be NULL) has events, or
 * timeout_ms passes (lowered to the stack's next timer); arms the stack's wakeup first. The sleep runs with
 * every signal blocked except during the ppoll() itself (mask, or the thread's mask when NULL), and fails
 * with EINTR if gen_fn() no longer returns gen: a signal that arrives between the caller's last check and
 * the sleep is not lost. stack_gen: vd_stack_gen() from before the caller read its sockets' events; if the
 * stack changed since, no sleep (returns 1): the caller's own reads may have consumed the frames that made
 * a socket it already looked at ready. Returns the real poll's result (> 0 also when only the stack woke),
 * 0 on timeout, -1 with errno (EINTR).
 */
int vd__sleep(struct vd_stack *st, struct pollfd *kfds, nfds_t nk, int timeout_ms, const sigset_t *mask,
	      unsigned (*gen_fn)(void), unsigned gen, uint32_t stack_gen);
/* Prints "viaduct: MSG" once per process for the orphaned-socket case. */
void vd__warn_orphan(int fd);
/* Is this process the stack's member? False in a child that shares the parent's memory (clone with
 * CLONE_VM) and must not act for it. */
bool vd__stack_member(void);
/* The child's side of the fork wrapper: slot >= 0 joins the stack (vd_stack_fork_child), else the child
 * forgets it and its inherited viaduct sockets become orphans (slot is fork_prepare's error). */
void vd__stack_fork_child(int slot);

/* ---- linger.c ---- */
/* The last fd of viaduct socket h in this process was closed: let go of it (vd_close). Process exit is
 * linger.c's destructor. */
void vd__sock_release(struct vd_stack *st, int h);

/* ---- signals.c ---- */
/* Counts deliveries of caught signals: all of them, and those whose handler lacks SA_RESTART. */
unsigned vd__sig_gen(void);
unsigned vd__sig_gen_nores(void);

/* ---- epoll.c ---- */
/* fd stopped being a viaduct socket but stays open (fallback): move its user-space epoll interests to
 * the kernel epoll sets. */
void vd__epoll_fd_fallback(int fd);
/* fd was closed: drop its user-space epoll interests. */
void vd__epoll_fd_closed(int fd);
/* fd is being closed: if it is an epoll instance with user-space interests, free them. */
void vd__epoll_close(int fd);

/* ---- sock_calls.c ---- */
/* Falls a fresh mapped socket back to its kernel placeholder (drops the viaduct socket). */
void vd__fallback(int fd, enum vd__fb why);
/* sendto/sendmsg with a destination on a fresh socket: commits it to viaduct (true) or falls it back to
 * the kernel (false: the caller then uses the kernel call). */
bool vd__decide_dest(int fd, struct vd__psock *ps, const struct sockaddr *to, socklen_t tolen);

#endif
