/* SPDX-License-Identifier: MIT */
/*
 * VD_CTL_STAT: every managed interface with its dispatcher counters, every endpoint with its owner, RX
 * mode, queue and three sets of counters: the dispatcher's (per-CPU, summed here), the kernel's for its
 * XSK (XDP_STATISTICS) and the library's (the endpoint's shared stats page). Then the ports, and per
 * interface what the daemon holds ahead of EP_OPEN and port requests (spare ids with their steering
 * rings, a spare UMEM, pooled ephemeral ports) and the ports it holds for TIME-WAIT.
 */
#include <errno.h>
#include <linux/if_xdp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

static void ep_dispatch_stats(const struct vd_ep *ep, struct vd_ctl_stat_ep *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct vd_bpf_ep_stats *v;

	if (ncpu <= 0)
		return;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return;
	if (bpf_map_lookup_elem(ep->ifc->ep_stats_fd, &ep->id, v) == 0) {
		for (int i = 0; i < ncpu; i++) {
			out->rx_redirected += v[i].redirected;
			out->rx_steered += v[i].steered;
			out->rx_bytes += v[i].bytes;
			out->rx_dropped += v[i].dropped;
		}
	}
	free(v);
}

static void fill_ep(const struct vd_ep *ep, struct vd_ctl_stat_ep *out)
{
	struct xdp_statistics xs;
	socklen_t len = sizeof(xs);

	out->ep_id = ep->id;
	out->pid = (uint32_t)ep->pid;
	out->uid = (uint32_t)ep->uid;
	memcpy(out->ifname, ep->ifc->name, sizeof(out->ifname));
	out->ip_be = ep->ip_be;
	out->port_be = ep->port_be;
	out->rx_mode = ep->rx_mode;
	out->queue = ep->queue;
	out->n_ports = ep->n_ports;
	ep_dispatch_stats(ep, out);
	memset(&xs, 0, sizeof(xs));
	if (getsockopt(ep->xsk_fd, SOL_XDP, XDP_STATISTICS, &xs, &len) == 0) {
		out->xsk_rx_dropped = xs.rx_dropped;
		out->xsk_rx_ring_full = xs.rx_ring_full;
		out->xsk_tx_invalid = xs.tx_invalid_descs;
	}
	/* Written by the application at any time: a torn read of a counter only affects the display. */
	memcpy(&out->lib, (const void *)ep->shared, sizeof(out->lib));
}

void vd__stat_req(struct vd_conn *c, uint32_t seq)
{
	unsigned n_if = vd__iface_count(), n_ep = 0;
	struct vd_ctl_stat_rep *hdr;
	struct vd_ctl_stat_iface *si;
	struct vd_ctl_stat_ep *se;
	size_t len;
	char *buf;

	for (unsigned i = 0; i < VD_BPF_MAX_EPS; i++)
		n_ep += vd__ep_at(i) != NULL;
	/* 16 interfaces and 256 endpoints fit in VD_CTL_MAX_MSG with their spares records; ports fill what
	 * is left (the endpoint records say how many each has, so a reader sees when the list is cut). */
	len = sizeof(*hdr) + n_if * sizeof(*si) + n_ep * sizeof(*se);
	size_t spares_len = n_if * sizeof(struct vd_ctl_stat_spares);
	size_t room = VD_CTL_MAX_MSG - sizeof(struct vd_ctl_hdr) - len - spares_len;
	unsigned max_ports = (unsigned)(room / sizeof(struct vd_ctl_stat_port));
	buf = calloc(1, len + (size_t)max_ports * sizeof(struct vd_ctl_stat_port) + spares_len);
	if (!buf) {
		vd__conn_reply(c, VD_CTL_STAT, seq, -ENOMEM, NULL, 0, NULL, 0, "out of memory");
		return;
	}
	hdr = (struct vd_ctl_stat_rep *)buf;
	hdr->n_ifaces = n_if;
	hdr->n_eps = n_ep;
	hdr->daemon_pid = (uint32_t)getpid();
	si = (struct vd_ctl_stat_iface *)(hdr + 1);
	for (unsigned i = 0; i < n_if; i++, si++) {
		const struct vd_iface *ifc = vd__iface_at(i);

		memcpy(si->ifname, ifc->name, sizeof(si->ifname));
		si->ifindex = ifc->ifindex;
		si->ip_be = ifc->ip_be;
		si->mtu = ifc->mtu;
		si->queues = ifc->queues;
		si->xdp_mode = ifc->xdp_mode;
		vd__iface_glob_stats(ifc, si);
	}
	se = (struct vd_ctl_stat_ep *)si;
	for (unsigned i = 0; i < VD_BPF_MAX_EPS; i++) {
		const struct vd_ep *ep = vd__ep_at(i);

		if (ep)
			fill_ep(ep, se++);
	}
	hdr->n_ports = vd__port_stat((struct vd_ctl_stat_port *)se, max_ports);
	len += (size_t)hdr->n_ports * sizeof(struct vd_ctl_stat_port);
	struct vd_ctl_stat_spares *sp = (struct vd_ctl_stat_spares *)(buf + len);
	for (unsigned i = 0; i < n_if; i++, sp++) {
		const struct vd_iface *ifc = vd__iface_at(i);

		sp->ifindex = ifc->ifindex;
		vd__ringpool_stat(ifc, sp);
		vd__port_pool_stat(ifc, sp);
	}
	len += spares_len;
	vd__conn_reply(c, VD_CTL_STAT, seq, 0, buf, len, NULL, 0, NULL);
	free(buf);
}
