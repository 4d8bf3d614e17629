/* SPDX-License-Identifier: MIT */
/*
 * The viaduct paths: the public frame I/O API (viaduct/nic.h) exactly as an application uses it.
 *   viaduct-direct   backend xdp, RX_DIRECT on the queue given (both sides the same queue: a veth delivers
 *                    a frame on the receiver's queue with the sender's queue index)
 *   viaduct-steered  backend xdp, RX_STEERED
 *   viaduct-udp      backend udp (kernel sockets behind the same API)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <viaduct/nic.h>

#include "perf.h"

struct viaduct_tp {
	struct vd__perf_tp tp;
	struct vd_nic *nic;
	struct vd_addr peer;
	struct vd_frame rx[VD_PERF_MAX_BURST];
	unsigned nrx;
};

static int viaduct_tx(struct vd__perf_tp *t, const void *payload, uint32_t len, unsigned n)
{
	struct viaduct_tp *v = (struct viaduct_tp *)t;
	struct vd_frame f[VD_PERF_MAX_BURST];
	int got, sent;

	if (n > VD_PERF_MAX_BURST)
		n = VD_PERF_MAX_BURST;
	if (n == 0) {
		vd_nic_flush(v->nic);
		return 0;
	}
	got = vd_nic_tx_alloc(v->nic, f, n);
	if (got <= 0) {
		vd_nic_flush(v->nic); /* reclaims completions and rings the doorbell */
		return got < 0 && got != -EAGAIN && got != -ENOBUFS ? got : 0;
	}
	for (int i = 0; i < got; i++) {
		memcpy(f[i].data, payload, len);
		f[i].len = len;
		f[i].peer = v->peer;
	}
	sent = vd_nic_tx_burst(v->nic, f, (unsigned)got);
	if (sent < 0)
		sent = 0;
	if (sent < got)
		vd_nic_tx_abort(v->nic, f + sent, (unsigned)(got - sent));
	int r = vd_nic_flush(v->nic);

	return r < 0 && r != -EAGAIN && r != -ENOBUFS && r != -EBUSY ? r : sent;
}

static int viaduct_rx(struct vd__perf_tp *t, struct vd__perf_buf *bufs, unsigned max)
{
	struct viaduct_tp *v = (struct viaduct_tp *)t;
	int n;

	if (max > VD_PERF_MAX_BURST)
		max = VD_PERF_MAX_BURST;
	n = vd_nic_rx_burst(v->nic, v->rx, max);
	if (n <= 0)
		return n;
	for (int i = 0; i < n; i++) {
		bufs[i].data = v->rx[i].data;
		bufs[i].len = v->rx[i].len;
	}
	v->peer = v->rx[n - 1].peer;
	v->nrx = (unsigned)n;
	return n;
}

static void viaduct_rx_done(struct vd__perf_tp *t, unsigned n)
{
	struct viaduct_tp *v = (struct viaduct_tp *)t;

	vd_nic_rx_release(v->nic, v->rx, n < v->nrx ? n : v->nrx);
	v->nrx = 0;
}

static void viaduct_close(struct vd__perf_tp *t)
{
	struct viaduct_tp *v = (struct viaduct_tp *)t;

	vd_nic_close(v->nic);
	free(v);
}

static const struct vd__perf_tp_ops viaduct_ops = {
	.tx = viaduct_tx,
	.rx = viaduct_rx,
	.rx_done = viaduct_rx_done,
	.close = viaduct_close,
};

int vd__perf_viaduct_open(struct vd__perf_tp **out, const struct vd__perf_where *w, enum vd__perf_path p)
{
	struct vd_nic_opts o = { .queue = -1 };
	struct viaduct_tp *v;
	char local[64], ip[32] = "0.0.0.0", peer[64];
	int r;

	switch (p) {
	case VD_PERF_VIADUCT_DIRECT:
		o.backend = VD_BACKEND_XDP;
		o.rx_mode = VD_RX_DIRECT;
		o.queue = w->queue;
		o.ifname = w->iface;
		break;
	case VD_PERF_VIADUCT_STEERED:
		o.backend = VD_BACKEND_XDP;
		o.rx_mode = VD_RX_STEERED;
		o.ifname = w->iface;
		break;
	case VD_PERF_VIADUCT_UDP:
		o.backend = VD_BACKEND_UDP;
		break;
	default:
		return -EINVAL;
	}
	/* Bind to the address of the link measured: the client's source towards the server, the server's
	 * interface address (or any address when no interface was named). */
	if (!w->server) {
		r = vd__perf_route_src(w->peer_ip, ip, sizeof(ip), NULL, 0);
		if (r < 0)
			return r;
	} else if (w->iface) {
		uint32_t a;

		if (vd__perf_iface_ipv4(w->iface, &a) == 0)
			snprintf(ip, sizeof(ip), "%u.%u.%u.%u", ((uint8_t *)&a)[0], ((uint8_t *)&a)[1],
				 ((uint8_t *)&a)[2], ((uint8_t *)&a)[3]);
	}
	snprintf(local, sizeof(local), "%s:%u", ip, w->port);
	o.local = local;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (!w->server) {
		snprintf(peer, sizeof(peer), "%s:%u", w->peer_ip, w->port);
		r = vd_addr_parse(peer, &v->peer);
		if (r < 0) {
			free(v);
			return r;
		}
	}
	r = vd_nic_open(&v->nic, &o);
	if (r < 0) {
		free(v);
		return r;
	}
	v->tp.ops = &viaduct_ops;
	v->tp.max_payload = vd_nic_max_payload(v->nic);
	*out = &v->tp;
	return 0;
}
