/* SPDX-License-Identifier: MIT */
/*
 * The stack: one IPv4 host inside the process (include/viaduct/socket.h).
 *
 * It owns a nic opened in VD_NIC_LAYER_IPV4 mode, so every received frame is a whole IPv4 packet whose
 * header the nic has already checked, and demultiplexes by the IPv4 protocol field (RFC 791 3.1): TCP to
 * the engine (src/lib/tcp), UDP to udp.c, anything else is counted and dropped (we send no ICMP).
 *
 * Progress happens inside the calls of whichever thread is in the stack (no helper thread: SOVIA's lesson
 * for latency). Blocking calls wait in vd__stack_wait(): busy-poll for spin_us, then sleep on the nic's fd
 * until a frame arrives or the next TCP timer is due. See sock_internal.h for the locking and wakeup rules.
 */
#include "sock_internal.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "lib/core/frame.h"
#include "lib/nic/nic_internal.h"

#define RX_ROUNDS 4u              /* bursts per progress pass: bounds the time one pass takes */
#define COND_WAIT_CAP_NS 10000000ull   /* a cond waiter rechecks at least every 10 ms */
/*
 * Address space only (MAP_NORESERVE: memory is used as touched). A connection's buffers take about half a
 * MiB at the default sizes, so 16 GiB lets a process (with its fork children) hold some 30,000 connections;
 * under strict overcommit (vm.overcommit_memory 2) such a mapping is refused and FALLBACK is tried.
 */
#define DEFAULT_HEAP_BYTES (16ull << 30)
#define FALLBACK_HEAP_BYTES (1ull << 30)

/* The lock hold's clock (tcp.h vd__tcp_clock_hold): read once per hold, shared with the engine. */
uint64_t vd__stack_now(const struct vd_stack *st)
{
	return st->tcp ? vd__tcp_clock(st->tcp) : vd_nic_now_ns(st->nic);
}

/* Wakes whoever waits for socket state that changed while we held the lock. Lock held. */
static void wake_waiters(struct vd_stack *st)
{
	if (!st->dirty)
		return;
	st->dirty = 0;
	st->gen++;
	if (st->cond_waiters)
		pthread_cond_broadcast(&st->cond);
	if (st->sleeper) {
		uint64_t one = 1;
		/* The eventfd counter saturates only after 2^64 - 2 writes; EAGAIN then is harmless. */
		ssize_t w = write(st->kick_fd, &one, sizeof(one));
		(void)w;
	}
}

/*
 * The lock is robust: when a member process dies holding it, the next locker gets EOWNERDEAD. The stack
 * is then as consistent as the dead owner's last completed step (nothing better is possible without
 * undo logs); we mark the mutex consistent, count it, and have the next progress pass reap the dead
 * member (its holds dropped). Waiters are woken: the dead owner may have owed them a wakeup.
 */
static void lock_taken_over(struct vd_stack *st)
{
	pthread_mutex_consistent(&st->lock);
	st->lock_owner_died++;
	st->reap_now = 1;
	st->dirty = 1;
}

void vd__stack_lock(struct vd_stack *st)
{
	int rc = pthread_mutex_trylock(&st->lock);
	if (rc != 0 && rc != EOWNERDEAD) {
		atomic_fetch_add_explicit(&st->contenders, 1, memory_order_relaxed);
		rc = pthread_mutex_lock(&st->lock);
		atomic_fetch_sub_explicit(&st->contenders, 1, memory_order_relaxed);
	}
	if (rc == EOWNERDEAD)
		lock_taken_over(st);
	vd__tcp_clock_drop(st->tcp); /* time moved while we did not hold the lock: one clock per hold */
}

void vd__stack_unlock(struct vd_stack *st)
{
	wake_waiters(st);
	pthread_mutex_unlock(&st->lock);
}

static void on_tcp_notify(void *ctx, struct vd__tcb *c)
{
	(void)c;
	((struct vd_stack *)ctx)->dirty = 1;
}

/* Runs the engine's timers and output, and remembers when it wants to run next. A timer that became
 * earlier than the sleeper's wakeup kicks the sleeper, or nobody would run it in time. */
static void tcp_poll(struct vd_stack *st)
{
	uint64_t prev = st->next_timer_ns;
	st->next_timer_ns = vd__tcp_poll(st->tcp);
	if (st->sleeper && st->next_timer_ns < prev)
		st->dirty = 1;
}

void vd__stack_kick_tcp(struct vd_stack *st)
{
	tcp_poll(st);
	(void)vd_nic_flush(st->nic);
}

static inline uint16_t rd_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Demultiplexes one IPv4 packet by protocol (RFC 791 3.1; numbers from RFC 790 / IANA: 6 TCP, 17 UDP). */
static void demux(struct vd_stack *st, const uint8_t *ip, uint32_t frame_len)
{
	/* The nic checked version, IHL and lengths; the total length bounds the packet (Ethernet padding may
	 * follow it in the frame). */
	uint32_t len = frame_len >= VD_IPV4_HLEN ? rd_be16(ip + 2) : 0;
	if (len < VD_IPV4_HLEN || len > frame_len) {
		st->rx_not_ours++;
		return;
	}
	switch (ip[9]) {
	case IPPROTO_TCP:
		vd__tcp_input(st->tcp, ip, len);
		break;
	case IPPROTO_UDP:
		vd__udp_input(st->udp, ip, len);
		break;
	default:
		st->rx_not_ours++;
		break;
	}
}

/*
 * Can the next TCP timer be due? A spinning receiver runs an empty pass every ~100 ns, and an exact clock
 * read (25 ns in this VM) on each was a fifth of its loop. CLOCK_MONOTONIC_COARSE (5 ns: no TSC read) is
 * CLOCK_MONOTONIC as of the last timekeeping tick, so it lags the exact clock by at most the time since
 * that tick: while coarse + coarse_slack_ns (two ticks) is before the timer, the timer is not due. Every
 * COARSE_EVERY-th empty pass checks exactly anyway, so the filter can only delay a timer by that many
 * passes should the coarse clock ever lag more (a tickless CPU).
 */
#define COARSE_EVERY 64u
static int coarse_before(const struct vd_stack *st, uint64_t t)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + st->coarse_slack_ns < t;
}

static int timer_maybe_due(struct vd_stack *st)
{
	if (st->next_timer_ns == UINT64_MAX)
		return 0;
	if (!st->coarse_slack_ns || ++st->coarse_passes >= COARSE_EVERY) {
		st->coarse_passes = 0;
		return 1;
	}
	return !coarse_before(st, st->next_timer_ns);
}

int vd__stack_progress_locked(struct vd_stack *st)
{
	struct vd_frame f[VD_SOCK_RX_BURST];
	int did = 0;

	for (unsigned round = 0; round < RX_ROUNDS; round++) {
		int n = vd_nic_rx_burst(st->nic, f, VD_SOCK_RX_BURST);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
			demux(st, f[i].data, f[i].len);
		/* Every layer copied what it keeps (tcp.h: "the data is copied out"; udp.c queues a copy). */
		vd_nic_rx_release(st->nic, f, (unsigned)n);
		did += n;
		if ((unsigned)n < VD_SOCK_RX_BURST)
			break;
	}
	if (did) {
		st->dirty = 1;
		vd__stack_kick_tcp(st);
	} else if (timer_maybe_due(st) && vd__stack_now(st) >= st->next_timer_ns) {
		vd__stack_kick_tcp(st);
		did = 1;
	}
	vd__members_check(st, 0); /* cheap unless several processes share the stack */
	return did;
}

/* Milliseconds from now to t (rounded up, so a timer is never woken for early), -1 for "no time". */
static int ms_until(uint64_t now, uint64_t t)
{
	if (t == UINT64_MAX || t == 0)
		return -1;
	if (t <= now)
		return 0;
	uint64_t ms = (t - now + 999999u) / 1000000u;
	return ms > 3600000u ? 3600000 : (int)ms;
}

static int min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/*
 * One spin round: let other threads in, yield the CPU, then look at the nic again. The yield matters on a
 * host with few cores: the kernel work that carries our frames (the veth's NAPI softirq, run by ksoftirqd
 * once the CPU is busy) needs a CPU, and two processes spinning against each other otherwise starve it
 * until one of them sleeps. Measured on the 2-core lab, 64-byte TCP ping-pong between two stacks: p50
 * 216 us without the yield (each answer waited for its sender's spin to end), 6-10 us with it; spinning
 * without a yield for the first microseconds of a wait was no better and less stable.
 */
static void spin_round(struct vd_stack *st)
{
	wake_waiters(st);
	pthread_mutex_unlock(&st->lock);
	sched_yield();
	vd__stack_lock(st);
	(void)vd__stack_progress_locked(st);
}

/*
 * The sim backend: a wait advances the virtual clock (to the next due frame, the next timer or the
 * deadline) instead of sleeping. Other threads blocked on the lock get their turn first, before virtual
 * time moves: otherwise a waiting thread would hold the lock while it advances the clock from timer to
 * timer, and a thread that could end the wait (a reader opening a window) would never run. Nothing in
 * flight and no time limit: yield and let another thread act.
 */
static void sim_wait(struct vd_stack *st, uint64_t deadline_ns, uint32_t gen0)
{
	if (atomic_load_explicit(&st->contenders, memory_order_relaxed) > 0) {
		wake_waiters(st);
		pthread_mutex_unlock(&st->lock);
		sched_yield();
		vd__stack_lock(st);
		(void)vd__stack_progress_locked(st);
		if (st->dirty || st->gen != gen0)
			return;
	}
	uint64_t now = vd__stack_now(st);
	int tmo = min_timeout(ms_until(now, st->next_timer_ns), ms_until(now, deadline_ns));
	int rc = vd_nic_wait(st->nic, tmo);
	vd__tcp_clock_drop(st->tcp); /* the virtual clock moved */
	if (rc <= 0 && tmo < 0) {
		wake_waiters(st);
		pthread_mutex_unlock(&st->lock);
		sched_yield();
		vd__stack_lock(st);
	}
	(void)vd__stack_progress_locked(st);
}

/* Sleeps on the nic's fd and the kick eventfd (only one thread at a time does this). */
static void fd_sleep(struct vd_stack *st, uint64_t deadline_ns)
{
	int rc = vd_nic_wait(st->nic, 0); /* arms the nic's wakeup; 1: frames already wait */
	if (rc != 0) {
		(void)vd__stack_progress_locked(st);
		return;
	}
	uint64_t now = vd__stack_now(st);
	int tmo = min_timeout(ms_until(now, st->next_timer_ns), ms_until(now, deadline_ns));
	struct pollfd pfd[2] = {
		{ .fd = vd_nic_fd(st->nic), .events = POLLIN },
		{ .fd = st->kick_fd, .events = POLLIN },
	};
	st->sleeper = 1;
	st->sleeper_pid = vd__self_pid();
	wake_waiters(st);
	pthread_mutex_unlock(&st->lock);
	(void)poll(pfd, 2, tmo);
	vd__stack_lock(st);
	st->sleeper = 0;
	uint64_t cnt;
	ssize_t r = read(st->kick_fd, &cnt, sizeof(cnt)); /* non-blocking: drains a kick, if any */
	(void)r;
	(void)vd__stack_progress_locked(st);
}

/* Waits on st->cond while another thread is the sleeper; bounded so that a lost broadcast costs 10 ms. */
static void cond_sleep(struct vd_stack *st, uint64_t deadline_ns)
{
	uint64_t now = vd__stack_now(st);
	uint64_t until = now + COND_WAIT_CAP_NS;
	if (st->next_timer_ns < until)
		until = st->next_timer_ns;
	if (deadline_ns && deadline_ns < until)
		until = deadline_ns;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t rel = until > now ? until - now : 0;
	uint64_t abs_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + rel;
	ts.tv_sec = (time_t)(abs_ns / 1000000000u);
	ts.tv_nsec = (long)(abs_ns % 1000000000u);
	wake_waiters(st);
	st->cond_waiters++;
	int rc = pthread_cond_timedwait(&st->cond, &st->lock, &ts);
	vd__tcp_clock_drop(st->tcp); /* the lock was released meanwhile: time moved */
	if (rc == EOWNERDEAD)
		lock_taken_over(st);
	st->cond_waiters--;
	/* A sleeper whose process died (killed while in poll) never clears st->sleeper: after a wait that
	 * nobody ended, check, and become the sleeper next time if it is gone. */
	if (rc == ETIMEDOUT && st->sleeper && st->sleeper_pid != vd__self_pid() && vd__proc_gone(st->sleeper_pid))
		st->sleeper = 0;
	(void)vd__stack_progress_locked(st);
}

int vd__stack_wait(struct vd_stack *st, uint64_t deadline_ns)
{
	/* The caller checked its condition under the lock, which we still hold: any change from now on bumps
	 * st->gen (wake_waiters) or leaves st->dirty set, and sends us back to the caller to check again. */
	uint32_t gen0 = st->gen;
	/* a writer stopped at lent TX memory still being sent: the engine's next poll moved earlier */
	if (st->tcp && vd__tcp_poll_soon(st->tcp))
		vd__stack_kick_tcp(st);
	uint64_t now = vd__stack_now(st);
	if (deadline_ns && now >= deadline_ns)
		return -ETIMEDOUT;
	if (st->is_sim) {
		sim_wait(st, deadline_ns, gen0);
		goto out;
	}
	/* Busy-poll first: an answer within spin_us costs no syscall and no wakeup latency. */
	uint64_t spin_end = now + (st->spin_us > 0 ? (uint64_t)st->spin_us * 1000u : 0);
	do {
		spin_round(st);
		if (st->dirty || st->gen != gen0 || st->spin_us < 0)
			goto out;
		now = vd__stack_now(st);
	} while (now < spin_end && !(deadline_ns && now >= deadline_ns));
	if (deadline_ns && now >= deadline_ns)
		goto out;
	if (!st->sleeper)
		fd_sleep(st, deadline_ns);
	else
		cond_sleep(st, deadline_ns);
out:
	if (deadline_ns && vd__stack_now(st) >= deadline_ns)
		return -ETIMEDOUT;
	return 0;
}

/* ---- public ------------------------------------------------------------------------------------- */

VD_API int vd_stack_open(struct vd_stack **out, const struct vd_stack_opts *opts)
{
	if (!out || !opts)
		return -EINVAL;
	*out = NULL;

	struct vd_nic_opts no = {
		.rx_mode = VD_RX_AUTO,
		.ctl_path = opts->ctl_path,
		.ifname = opts->ifname,
		.queue = -1,
		.same_host_shm = -1,
		.layer = VD_NIC_LAYER_IPV4,
	};
	char local[32];
	switch (opts->backend) {
	case VD_BACKEND_AUTO:
	case VD_BACKEND_XDP:
		no.backend = VD_BACKEND_XDP;
		/*
		 * Software-steered RX: viaductd binds every XSK in copy mode (src/daemon/endpoint.c), where the
		 * dispatcher's copy into the endpoint's ring buffer costs less than xsk_rcv and the XSK's rings
		 * (docs/design.md "What the measurements taught"). Measured on the MTU 9000 lab, interleaved:
		 * sockperf 64 B TCP ping-pong half round trip p50 2.27-2.43 us steered against 2.58-2.61 us
		 * direct; iperf3 no slower (4.3-4.5 against 4.1-4.3 Gbit/s on a loaded host). It also makes
		 * the latency independent of which queue each side's endpoint got (direct only where the
		 * peer's frames arrive on our queue).
		 */
		no.rx_mode = VD_RX_STEERED;
		break;
	case VD_BACKEND_SIM: {
		struct in_addr a;
		if (!opts->sim || !opts->local_ip || inet_pton(AF_INET, opts->local_ip, &a) != 1)
			return -EINVAL;
		no.backend = VD_BACKEND_SIM;
		no.sim = opts->sim;
		snprintf(local, sizeof(local), "%s:0", opts->local_ip);
		no.local = local;
		break;
	}
	default:
		return -EINVAL;
	}

	/* Sim links are process-local (no fork): malloc, where ASan sees every access. Otherwise the shared
	 * heap, mapped now, before any fork, so it sits at the same address in every descendant. */
	struct vd__shmheap *heap = NULL;
	int rc;
	if (opts->backend != VD_BACKEND_SIM) {
		rc = vd__shm_create(&heap, opts->heap_bytes ? opts->heap_bytes : DEFAULT_HEAP_BYTES);
		if (rc == -ENOMEM && !opts->heap_bytes)
			rc = vd__shm_create(&heap, FALLBACK_HEAP_BYTES);
		if (rc < 0)
			return rc;
	}
	struct vd_stack *st = vd__shm_calloc(heap, 1, sizeof(*st));
	if (!st) {
		vd__shm_destroy(heap);
		return -ENOMEM;
	}
	st->heap = heap;
	st->kick_fd = -1;
	st->free_head = -1;
	st->next_timer_ns = UINT64_MAX;
	rc = vd__nic_open_shared(&st->nic, &no, heap);
	if (rc < 0)
		goto fail;
	struct vd_addr la;
	(void)vd_nic_local_addr(st->nic, &la);
	st->ip = la.ip;
	st->mtu = vd_nic_max_payload(st->nic);
	st->is_sim = opts->backend == VD_BACKEND_SIM;
	st->shared = vd__nic_shared(st->nic);
	st->spin_us = opts->spin_us == 0 ? 100 : opts->spin_us;
	st->ip_id = (uint16_t)(vd__stack_now(st) >> 10);

	struct vd__tcp_cfg cfg = {
		.sndbuf = opts->sndbuf, .rcvbuf = opts->rcvbuf, .secret = opts->secret, .heap = heap,
	};
	rc = vd__tcp_new(&st->tcp, st->nic, &cfg);
	if (rc < 0)
		goto fail;
	vd__tcp_set_notify(st->tcp, on_tcp_notify, st);
	vd__tcp_clock_hold(st->tcp, 1); /* every lock acquisition drops it (vd__stack_lock) */
	if (!st->is_sim) {
		/* xdp's clock is CLOCK_MONOTONIC (timer_maybe_due); the sim's is virtual: no filter there */
		struct timespec res;
		if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0)
			st->coarse_slack_ns = 2 * (uint64_t)res.tv_nsec;
	}
	rc = vd__udp_new(&st->udp, st);
	if (rc < 0)
		goto fail;
	st->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (st->kick_fd < 0) {
		rc = -errno;
		goto fail;
	}
	/* Process-shared: fork children wait and lock here too. Robust: a member dying with the lock held
	 * must not wedge the others (vd__stack_lock). */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&st->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	vd__members_init(st);
	*out = st;
	return 0;
fail:
	if (st->udp)
		vd__udp_free(st->udp);
	if (st->tcp)
		vd__tcp_free(st->tcp);
	if (st->nic)
		vd_nic_close(st->nic);
	if (st->kick_fd >= 0)
		close(st->kick_fd);
	vd__shm_free(heap, st);
	vd__shm_destroy(heap);
	return rc;
}

/* The last member: everything goes (connections reset, the endpoint closed). Lock held; freed with it. */
static void stack_free(struct vd_stack *st)
{
	struct vd__shmheap *heap = st->heap;
	for (int s = 0; s < st->n_slots; s++) {
		struct vd_sock *sk = st->slots[s].sk;
		if (!sk)
			continue;
		vd__sock_free_slot(st, s);
		if (sk->type == SOCK_STREAM) {
			/* vd__tcp_free below resets every live connection and frees the tcbs. */
			vd__tcb_set_user(sk->tcb, NULL);
			vd__sock_delete(st, sk);
		} else {
			vd__sock_destroy(st, sk);
		}
	}
	vd__tcp_free(st->tcp);
	vd__udp_free(st->udp);
	(void)vd_nic_flush(st->nic);
	vd_nic_close(st->nic);
	close(st->kick_fd);
	vd__shm_free(heap, st->slots);
	pthread_mutex_unlock(&st->lock);
	pthread_mutex_destroy(&st->lock);
	/* Not pthread_cond_destroy on a shared stack: glibc's waits there for every waiter to have left,
	 * and a member killed inside pthread_cond_timedwait never leaves. The memory goes with the heap. */
	if (!heap)
		pthread_cond_destroy(&st->cond);
	vd__shm_free(heap, st);
	vd__shm_destroy(heap);
}

VD_API void vd_stack_close(struct vd_stack *st)
{
	if (!st)
		return;
	vd__stack_lock(st);
	vd__members_check(st, 1); /* a dead member must not keep the stack alive */
	uint64_t bit = vd__member_bit(st);
	if (bit) {
		vd__member_detach(st, __builtin_ctzll(bit)); /* our holds go: sockets only we held close */
		if (st->n_members == 0) {
			stack_free(st);
			return;
		}
	}
	/* Others still use the stack: leave it to them; only this process's mapping of the heap goes. */
	(void)vd_nic_flush(st->nic);
	struct vd__shmheap *heap = st->heap;
	vd__stack_unlock(st);
	vd__shm_destroy(heap);
}

VD_API uint32_t vd_stack_ip(const struct vd_stack *st)
{
	return st->ip;
}

VD_API struct vd_nic *vd_stack_nic(struct vd_stack *st)
{
	return st->nic;
}

VD_API int vd_stack_progress(struct vd_stack *st)
{
	vd__stack_lock(st);
	int did = vd__stack_progress_locked(st);
	vd__stack_unlock(st);
	return did;
}

VD_API int vd_stack_fd(const struct vd_stack *st)
{
	return vd_nic_fd(st->nic);
}

VD_API int vd_stack_prepare_wait(struct vd_stack *st, int *timeout_ms)
{
	vd__stack_lock(st);
	if (st->tcp && vd__tcp_poll_soon(st->tcp))
		vd__stack_kick_tcp(st); /* as vd__stack_wait: the engine's next poll may have moved earlier */
	int pending = vd__stack_progress_locked(st) > 0;
	if (!pending)
		pending = vd_nic_wait(st->nic, 0) != 0;
	if (!pending && timeout_ms)
		*timeout_ms = min_timeout(*timeout_ms, ms_until(vd__stack_now(st), st->next_timer_ns));
	vd__stack_unlock(st);
	return pending;
}

VD_API uint32_t vd_stack_gen(struct vd_stack *st)
{
	/* wake_waiters bumps gen on every unlock after a change: under the lock it is settled */
	vd__stack_lock(st);
	uint32_t g = st->gen;
	vd__stack_unlock(st);
	return g;
}

VD_API void vd_stack_stats(struct vd_stack *st, struct vd_stack_stats *out)
{
	struct vd__tcp_stats ts = { 0 };
	memset(out, 0, sizeof(*out));
	vd__stack_lock(st);
	vd__members_check(st, 1); /* members exact (socket.h): a dead member not yet reaped must not count */
	vd__tcp_stats(st->tcp, &ts);
	vd__udp_stats(st->udp, out);
	out->tcp_sockets = st->tcp_sockets;
	out->udp_sockets = st->udp_sockets;
	out->tcp_active_opens = ts.active_opens;
	out->tcp_passive_opens = ts.passive_opens;
	out->tcp_retrans_segs = ts.retrans_segs;
	out->tcp_bad_csum = ts.bad_csum;
	out->tcp_malformed = ts.malformed;
	out->tcp_rst_out = ts.rst_out;
	out->rx_not_ours = st->rx_not_ours + ts.no_port;
	out->members = (uint64_t)st->n_members;
	out->members_reaped = st->members_reaped;
	out->lock_owner_died = st->lock_owner_died;
	out->heap_bytes_used = vd__shm_used(st->heap);
	out->tcp_closing = vd__tcp_closing(st->tcp);
	vd__stack_unlock(st);
}
