/* SPDX-License-Identifier: MIT */
/*
 * Two TCP engines end to end for unit tests (header-only, like tcp_harness.h): each on its own
 * IPv4-layer sim nic on one link (10.0.0.1 and 10.0.0.2), the socket layer's part played here (received
 * packets into vd__tcp_input, vd__tcp_poll when its time comes), plus a byte pattern per stream and a
 * connected pair on a listener. Used by test_tcp_basic.c and test_tcp_zc.c.
 */
#ifndef VD_TEST_TCP_PAIR_H
#define VD_TEST_TCP_PAIR_H

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>

#include <viaduct/nic.h>

#include "lib/tcp/tcp.h"

#define IP_A "10.0.0.1"
#define IP_B "10.0.0.2"
#define MS 1000000ull

static uint32_t ip_of(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

struct host {
	struct vd_nic *nic;
	struct vd__tcp *tcp;
	uint64_t next;
};

struct net {
	struct vd_sim_link *link;
	struct host h[2];
};

static int net_open(struct net *n, const struct vd_sim_params *p, const struct vd__tcp_cfg *cfg)
{
	memset(n, 0, sizeof(*n));
	if (vd_sim_link_new(&n->link, p) < 0)
		return -1;
	const char *ips[2] = { IP_A, IP_B };
	for (int i = 0; i < 2; i++) {
		struct vd_nic_opts o = {
			.backend = VD_BACKEND_SIM, .sim = n->link, .local = ips[i], .layer = VD_NIC_LAYER_IPV4,
		};
		if (vd_nic_open(&n->h[i].nic, &o) < 0)
			return -1;
		struct vd__tcp_cfg c = cfg ? *cfg : (struct vd__tcp_cfg){ 0 };
		c.secret = 0x1234 + (uint64_t)i;
		if (vd__tcp_new(&n->h[i].tcp, n->h[i].nic, &c) < 0)
			return -1;
		n->h[i].next = UINT64_MAX;
	}
	return 0;
}

static void net_close(struct net *n)
{
	for (int i = 0; i < 2; i++) {
		if (n->h[i].tcp)
			vd__tcp_free(n->h[i].tcp);
		if (n->h[i].nic)
			vd_nic_close(n->h[i].nic);
	}
	vd_sim_link_free(n->link);
}

/* VD_TCP_TRACE=1 prints every delivered segment (debugging aid). */
static void trace(const struct host *h, const uint8_t *p, uint32_t len)
{
	static int on = -1;
	if (on < 0)
		on = getenv("VD_TCP_TRACE") != NULL;
	if (!on || len < 40)
		return;
	const uint8_t *t = p + (p[0] & 15) * 4;
	uint32_t seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
	uint32_t ack = (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
	uint32_t dl = len - (uint32_t)(p[0] & 15) * 4 - (uint32_t)(t[12] >> 4) * 4;
	printf("%p %u->%u seq %u ack %u len %u flags %02x win %u\n", (const void *)h, t[0] << 8 | t[1],
	       t[2] << 8 | t[3], seq, ack, dl, t[13], t[14] << 8 | t[15]);
}

/* Feeds a host's received packets to its engine and polls it; returns packets taken. */
static int host_pump(struct host *h)
{
	struct vd_frame f[64];
	int total = 0, n;
	while ((n = vd_nic_rx_burst(h->nic, f, 64)) > 0) {
		for (int i = 0; i < n; i++) {
			trace(h, f[i].data, f[i].len);
			vd__tcp_input(h->tcp, f[i].data, f[i].len);
		}
		vd_nic_rx_release(h->nic, f, (unsigned)n);
		total += n;
	}
	h->next = vd__tcp_poll(h->tcp);
	return total;
}

/* One step of the world: pump both hosts (host 1 only if pump_b), then move the clock: a little when
 * packets moved, else up to the next timer (at most 1 ms, so frames in flight are not skipped by much). */
static void net_step2(struct net *n, int pump_b)
{
	int moved = host_pump(&n->h[0]);
	if (pump_b)
		moved += host_pump(&n->h[1]);
	uint64_t now = vd_sim_now_ns(n->link);
	uint64_t next = n->h[0].next;
	if (pump_b && n->h[1].next < next)
		next = n->h[1].next;
	uint64_t adv = moved ? 5000 : 200000;
	if (next > now && next - now < adv)
		adv = next - now;
	if (next <= now)
		adv = 1000;
	vd_sim_advance(n->link, adv);
}

static void net_step(struct net *n)
{
	net_step2(n, 1);
}

static uint8_t pat(uint32_t stream, uint64_t off)
{
	uint64_t x = off * 0x9e3779b97f4a7c15ull + stream * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (off >> 9));
}

/* A listener on host 0 port 80 and a connected pair (client on host 1). */
struct conn {
	struct vd__tcb *lst, *srv, *cli;
};

static int connect_pair(struct net *n, struct conn *c, int backlog)
{
	memset(c, 0, sizeof(*c));
	if (vd__tcb_new(n->h[0].tcp, &c->lst) < 0 || vd__tcb_bind(c->lst, 0, htons(80)) < 0 ||
	    vd__tcb_listen(c->lst, backlog) < 0)
		return -1;
	if (vd__tcb_new(n->h[1].tcp, &c->cli) < 0)
		return -1;
	if (vd__tcb_connect(c->cli, ip_of(IP_A), htons(80)) != -EINPROGRESS)
		return -1;
	for (int i = 0; i < 200000 && !c->srv; i++) {
		net_step(n);
		if (!(vd__tcb_events(c->lst) & POLLIN))
			continue;
		if (vd__tcb_accept(c->lst, &c->srv) < 0)
			return -1;
	}
	for (int i = 0; i < 200000 && !(vd__tcb_events(c->cli) & (POLLOUT | POLLERR)); i++)
		net_step(n);
	return c->srv && (vd__tcb_events(c->cli) & POLLOUT) ? 0 : -1;
}

#endif
