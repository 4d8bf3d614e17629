/* SPDX-License-Identifier: MIT */
/*
 * Progress: one pass receives a bounded batch of frames, resumes streams held by back-pressure, sends
 * pull replies, frames queued sends, runs the timers, and rings the nic's doorbell once for everything.
 * It runs in the caller's thread, inside vd_test/vd_wait/... (no helper thread on the latency path: SOVIA).
 *
 * The optional background thread (VD_EP_PROGRESS_THREAD) exists for applications that compute for long
 * stretches without calling the library: without it, their peers see no acks and no pull replies and
 * retransmit. Its price: every API call then takes the endpoint mutex, and the thread and the application
 * touch the same endpoint state from two cores, so small-message latency gets worse; leave it off when the
 * application polls anyway.
 */
#include "lib/msg/msg_internal.h"

#include <errno.h>
#include <poll.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#define VD__RX_BURST 32
#define VD__RX_ROUNDS 4 /* bounds one pass: timers and sending get their turn under a flood */

/* --- the idle gate ------------------------------------------------------------------------------------
 *
 * A busy-polling application runs millions of passes a second that find nothing: no frame arrived, and no
 * timer is due. Reading the clock on each (clock_gettime through the vDSO, about 25 ns in a VM) was a
 * third of the cycles of such a pass, and the walk over the peers' timers most of the rest, on every
 * peer, every pass. So a pass that found nothing to do arms a gate: the time before which no timer can be
 * due (vd__next_deadline: the earliest deadline of every timer the pass runs). Until it passes, a pass
 * that receives nothing stops right after the receive poll. Anything that can change the timers without a
 * frame arriving (an API call that queues, posts or cancels) disarms the gate (vd__gate_off); a frame
 * arriving ends it too.
 *
 * The gate is checked against the time-stamp counter where it is invariant (x86-64 with the invariant TSC
 * flag: constant rate, not stopped in idle states), about 10 ns, else against the clock, still saving the
 * timer walk. The counter's rate is learnt from the clock readings of passes at least 10 ms apart (until
 * then, the clock gate); the gate stops 1/8 of the remaining time early, which covers the rate's error
 * and the time the arming pass took. The sim backend's virtual clock moves without the counter: it always
 * uses the clock gate (a virtual clock read is a load).
 */
#if defined(__x86_64__)
static int tsc_invariant(void)
{
	unsigned a, b, c, d;

	/* CPUID 0x80000007 EDX bit 8: invariant TSC (Intel SDM vol. 3, 17.17.1; AMD APM the same bit). */
	if (!__get_cpuid(0x80000007, &a, &b, &c, &d))
		return 0;
	return (d >> 8) & 1;
}

static inline uint64_t tsc_read(void)
{
	return __rdtsc();
}
#else
static int tsc_invariant(void)
{
	return 0;
}

static inline uint64_t tsc_read(void)
{
	return 0;
}
#endif

#define VD__TSC_CALIB_NS 10000000ull /* clock readings this far apart give the counter's rate */
#define VD__GATE_MAX_NS 1000000000ull

void vd__gate_init(struct vd_ep *ep, int virtual_clock)
{
	ep->gate = VD__GATE_OFF;
	ep->tsc_ok = !virtual_clock && tsc_invariant();
}

/* Arms the gate after a pass that found nothing to do (ep->now is that pass's clock reading). */
static void gate_arm(struct vd_ep *ep)
{
	uint64_t d = vd__next_deadline(ep);

	ep->gate = VD__GATE_OFF;
	if (d <= ep->now)
		return;
	if (ep->tsc_ok) {
		uint64_t tsc = tsc_read();

		if (!ep->tsc_ref_ns || tsc < ep->tsc_ref) {
			ep->tsc_ref = tsc;
			ep->tsc_ref_ns = ep->now;
		} else if (ep->now - ep->tsc_ref_ns >= VD__TSC_CALIB_NS) {
			/* Counter ticks per ns, 16.16 fixed point. */
			ep->tsc_q16 = ((tsc - ep->tsc_ref) << 16) / (ep->now - ep->tsc_ref_ns);
			ep->tsc_ref = tsc;
			ep->tsc_ref_ns = ep->now;
		}
		if (ep->tsc_q16) {
			uint64_t left = d - ep->now;
			if (left > VD__GATE_MAX_NS)
				left = VD__GATE_MAX_NS;
			left -= left / 8;
			ep->gate_tsc = tsc + ((left * ep->tsc_q16) >> 16);
			ep->gate = VD__GATE_TSC;
			return;
		}
	}
	ep->gate_ns = d;
	ep->gate = VD__GATE_CLOCK;
}

/* Whether the gate still holds; a clock read on the way is left in ep->now (*fresh set). */
static int gate_holds(struct vd_ep *ep, int *fresh)
{
	switch (ep->gate) {
	case VD__GATE_TSC:
		return (int64_t)(tsc_read() - ep->gate_tsc) < 0;
	case VD__GATE_CLOCK:
		ep->now = vd_nic_now_ns(ep->nic);
		*fresh = 1;
		return ep->now < ep->gate_ns;
	default:
		return 0;
	}
}

/*
 * A receiver pulling bulk data that finds nothing arrived waits about 2 us before it looks again. Busy-
 * polling flat out, it reads the steering ring's producer position and the header of the record being
 * written between each of the producer's writes to those lines: each write then takes the line back from
 * our core. The producer is the kernel on the sender's core (veth runs the receiver's XDP program there),
 * the bottleneck of a bulk transfer, and perf record showed 18-35% of that core in bpf_ringbuf_submit (the
 * commit's atomic exchange on the header) for a 1 MiB transfer at MTU 1500; with the pause, about 5%. At
 * about one frame per 1.5 us, the pause delays a reply by about a frame's time, which a pull (a stream of
 * replies, asked for ahead) does not notice; passes with nothing pulling (latency) never pause. Lab bw
 * 1 MiB, MTU 1500, interleaved rounds, with the one-pass copy of rndv.c: 5.79 -> 6.80 Gbit/s (medians).
 * Only with small frames: the contention costs per frame, and with 60 KB frames (MTU 61398) the receiver's
 * copy is what bounds the transfer and a pause is time lost (measured: lower in 4 of 5 rounds there).
 */
#define VD__PULL_IDLE_PAUSES 64 /* x86 pause: ~30 ns each on the lab's AMD EPYC */
#define VD__PULL_PAUSE_MAXP 4096 /* largest max payload at which a pulling receiver pauses */

static inline void pull_idle_pause(void)
{
#if defined(__x86_64__)
	for (int i = 0; i < VD__PULL_IDLE_PAUSES; i++)
		_mm_pause();
#endif
}

int vd__progress(struct vd_ep *ep)
{
	struct vd_frame f[VD__RX_BURST];
	struct vd__link *pos;
	int work = 0, fresh = 0;

	int n = vd_nic_rx_burst(ep->nic, f, VD__RX_BURST);
	if (n <= 0 && ep->npulls && ep->maxp <= VD__PULL_PAUSE_MAXP)
		pull_idle_pause();
	if (n <= 0 && gate_holds(ep, &fresh))
		return 0; /* nothing arrived and no timer can be due: the rest of the pass would find nothing */
	ep->gate = VD__GATE_OFF;
	if (!fresh)
		ep->now = vd_nic_now_ns(ep->nic);
	for (int round = 0; round < VD__RX_ROUNDS && n > 0; round++) {
		if (round > 0 && (n = vd_nic_rx_burst(ep->nic, f, VD__RX_BURST)) <= 0)
			break;
		for (int i = 0; i < n; i++)
			vd__rx_frame(ep, f[i].data, f[i].len, &f[i].peer);
		vd_nic_rx_release(ep->nic, f, (unsigned)n);
		work += n;
		if (n < VD__RX_BURST)
			break;
	}
	if (ep->unblock) {
		ep->unblock = 0;
		for (pos = ep->peers.next; pos != &ep->peers; pos = pos->next) {
			struct vd_peer *p = vd__container_of(pos, struct vd_peer, all);
			if (p->blocked && !p->gone)
				vd__peer_deliver(p);
		}
	}
	work += vd__pwork_drain(ep);
	for (pos = ep->peers.next; pos != &ep->peers; pos = pos->next) {
		struct vd_peer *p = vd__container_of(pos, struct vd_peer, all);
		if (p->gone)
			continue;
		vd__pull_timers(p);
		/* Data first, so that pending acks ride on it; the timers then send only what is left. */
		work += vd__peer_emit(p, 0);
		vd__peer_timers(p);
	}
	if (ep->tx_pending) {
		vd_nic_flush(ep->nic);
		ep->tx_pending = 0;
	}
	if (!work)
		gate_arm(ep);
	return work;
}

uint64_t vd__next_deadline(struct vd_ep *ep)
{
	uint64_t d = UINT64_MAX;
	struct vd__link *pos;

	if (!vd__list_empty(&ep->pwork) || ep->unblock)
		return ep->now;
	for (pos = ep->peers.next; pos != &ep->peers; pos = pos->next) {
		struct vd_peer *p = vd__container_of(pos, struct vd_peer, all);
		uint64_t x = vd__peer_next_deadline(p);
		if (x < d)
			d = x;
	}
	return d;
}

void vd__ep_lock(struct vd_ep *ep)
{
	if (ep->bg)
		pthread_mutex_lock(&ep->lock);
}

void vd__ep_unlock(struct vd_ep *ep)
{
	if (ep->bg)
		pthread_mutex_unlock(&ep->lock);
}

static void *bg_main(void *arg)
{
	struct vd_ep *ep = arg;
	struct pollfd pfd = { .fd = vd_nic_fd(ep->nic), .events = POLLIN };

	while (!__atomic_load_n(&ep->bg_stop, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&ep->lock);
		int work = vd__progress(ep);
		uint64_t now = ep->now = vd_nic_now_ns(ep->nic); /* the pass may have stopped at the gate */
		uint64_t d = vd__next_deadline(ep);
		/* Arm the nic's wakeups before sleeping on its fd (viaduct/nic.h, vd_nic_fd): without this the
		 * xdp and shm paths never signal it and a frame would wait for the 1 ms timeout. */
		if (!work)
			work = vd_nic_wait(ep->nic, 0) > 0;
		pthread_mutex_unlock(&ep->lock);
		if (work)
			continue;
		/* Sleep until a frame arrives or the next timer, at most 1 ms so a stop request is seen. */
		int ms = 1;
		if (d > now && d - now < 1000000)
			ms = 0;
		if (ms)
			poll(&pfd, 1, ms);
	}
	return NULL;
}

int vd__bg_start(struct vd_ep *ep)
{
	int rc = pthread_mutex_init(&ep->lock, NULL);
	if (rc)
		return -rc;
	ep->bg = 1;
	rc = pthread_create(&ep->bg_thread, NULL, bg_main, ep);
	if (rc) {
		ep->bg = 0;
		pthread_mutex_destroy(&ep->lock);
		return -rc;
	}
	return 0;
}

void vd__bg_stop(struct vd_ep *ep)
{
	if (!ep->bg)
		return;
	__atomic_store_n(&ep->bg_stop, 1, __ATOMIC_RELEASE);
	pthread_join(ep->bg_thread, NULL);
	pthread_mutex_destroy(&ep->lock);
	ep->bg = 0;
}
