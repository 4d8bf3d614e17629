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

#define VD__RX_BURST 32
#define VD__RX_ROUNDS 4 /* bounds one pass: timers and sending get their turn under a flood */

int vd__progress(struct vd_ep *ep)
{
	struct vd_frame f[VD__RX_BURST];
	struct vd__link *pos;
	int work = 0;

	ep->now = vd_nic_now_ns(ep->nic);
	for (int round = 0; round < VD__RX_ROUNDS; round++) {
		int n = vd_nic_rx_burst(ep->nic, f, VD__RX_BURST);
		if (n <= 0)
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
		uint64_t d = vd__next_deadline(ep);
		uint64_t now = ep->now;
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
