/* SPDX-License-Identifier: MIT */
/*
 * Port ownership. A port an endpoint owns is also bound by a kernel socket of the same protocol that
 * viaductd keeps open: no kernel socket can take it meanwhile (bind fails with EADDRINUSE) and the kernel
 * chooses ephemeral ports for us (bind to port 0) from its own range, so viaduct and kernel sockets
 * never collide. The kernel socket never sees the port's traffic: the dispatcher takes it first.
 * Two kinds: ports a connection reserves (PORT_RESERVE) and ports steered to an endpoint (EP_PORT_ADD),
 * which may end held (below).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "daemon.h"

int vd__port_reserve(uint8_t proto, uint32_t ip_be, uint16_t port_be, struct vd_port **out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = ip_be, .sin_port = port_be };
	socklen_t sl = sizeof(sa);
	struct vd_port *p;
	int fd, err;

	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	fd = socket(AF_INET, (proto == IPPROTO_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* No SO_REUSEADDR/SO_REUSEPORT: the point is an exclusive bind. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (proto == IPPROTO_UDP) {
		/* Keep the reservation socket's receive queue from ever holding memory. */
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	p->proto = proto;
	p->ip_be = ip_be;
	p->port_be = sa.sin_port;
	p->fd = fd;
	*out = p;
	return 0;
}

void vd__port_free(struct vd_port *p)
{
	if (!p)
		return;
	close(p->fd);
	free(p);
}

void vd__port_reserve_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req)
{
	struct vd_iface *ifc = vd__iface_by_index(req->ifindex);
	struct vd_ctl_port_rep rep = {};
	struct vd_port *p;
	unsigned n = 0;
	int err;

	if (!ifc) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, -ENODEV, NULL, 0, NULL, 0, "interface not managed");
		return;
	}
	for (p = *vd__conn_ports(c); p; p = p->next)
		n++;
	if (n >= VD_CTL_MAX_EPS) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, -ENOSPC, NULL, 0, NULL, 0, "too many ports");
		return;
	}
	err = vd__port_reserve(req->proto, ifc->ip_be, req->port_be, &p);
	if (err) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, err, NULL, 0, NULL, 0,
			       err == -EADDRINUSE ? "port in use" : "cannot reserve port");
		return;
	}
	p->next = *vd__conn_ports(c);
	*vd__conn_ports(c) = p;
	rep.port_be = p->port_be;
	vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
}

void vd__port_release_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req)
{
	struct vd_iface *ifc = vd__iface_by_index(req->ifindex);

	for (struct vd_port **pp = vd__conn_ports(c); ifc && *pp; pp = &(*pp)->next) {
		struct vd_port *p = *pp;

		if (p->proto == req->proto && p->port_be == req->port_be && p->ip_be == ifc->ip_be) {
			*pp = p->next;
			vd__port_free(p);
			vd__conn_reply(c, VD_CTL_PORT_RELEASE, seq, 0, NULL, 0, NULL, 0, NULL);
			return;
		}
	}
	vd__conn_reply(c, VD_CTL_PORT_RELEASE, seq, -ENOENT, NULL, 0, NULL, 0, "port not reserved by this connection");
}

void vd__port_reclaim_conn(struct vd_conn *c)
{
	struct vd_port **head = vd__conn_ports(c);

	while (*head) {
		struct vd_port *p = *head;
		*head = p->next;
		vd__port_free(p);
	}
}

/* ---- ports steered to endpoints (EP_PORT_ADD / EP_PORT_DEL) and held ports ------------------------- */

/*
 * A port added to an endpoint is a kernel reservation (as above) plus the port's vd_ports slot pointing
 * at the endpoint. Giving it back with a hold, or an endpoint dying with ephemeral TCP ports, turns it
 * into a held port: the reservation stays, the slot says VD_BPF_EP_HOLD (the dispatcher drops its
 * frames), and a timer frees it when the hold ends. That is TCP TIME-WAIT kept by the daemon (RFC 9293
 * 3.6.1: a connection's 4-tuple must not be reused for 2 MSL, and a RST from the kernel for a segment of
 * a connection still closing on the other side would be wrong too).
 */
#define VD_PORT_HELD_MAX 16384u       /* held ports host-wide: each is a kernel socket */

/*
 * Held ports in order of hold end, earliest first, so the timer is the head's and an expiry pops from the
 * head. Nearly every hold has the same length (TIME-WAIT), so a new one goes at the tail: O(1) with the
 * tail pointer, where an unordered list cost a walk of every held port per hold and per expiry (63 us a
 * port del with 3000 held, the largest cost of a connection in `viaduct perf sockets --bench connrate`).
 */
static struct vd_port *held;
static struct vd_port *held_tail;
static unsigned n_held;
static uint32_t time_wait_ms;
static struct vd_evsrc hold_timer = { .fd = -1 };

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int slot_write(struct vd_iface *ifc, uint8_t proto, uint16_t port_be, const struct vd_bpf_ep *v)
{
	__u32 slot = vd_bpf_port_index(proto, ntohs(port_be));
	return bpf_map_update_elem(ifc->ports_fd, &slot, v, BPF_EXIST) ? -errno : 0;
}

/* Arms the timer for the earliest hold end, the head's (disarms it with none). */
static void hold_timer_arm(void)
{
	struct itimerspec its = { 0 };
	uint64_t first = held ? held->hold_until_ns : UINT64_MAX;

	if (first != UINT64_MAX) {
		/* An absolute time of 0 would disarm: a hold already due fires at the next nanosecond. */
		its.it_value.tv_sec = (time_t)(first / 1000000000u);
		its.it_value.tv_nsec = (long)(first % 1000000000u);
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	if (hold_timer.fd >= 0 && timerfd_settime(hold_timer.fd, TFD_TIMER_ABSTIME, &its, NULL))
		vd__warn("hold timer: %s", strerror(errno));
}

/* Frees an endpoint or held port: the slot cleared first (frames go back to the kernel), then the socket. */
static void ep_port_free(struct vd_port *p)
{
	if (p->in_map) {
		const struct vd_bpf_ep cleared = { 0 };
		slot_write(p->ifc, p->proto, p->port_be, &cleared);
	}
	vd__port_free(p);
}

static void hold_expire(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks, now = mono_ns();
	(void)events;

	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vd__warn("hold timer read: %s", strerror(errno));
	while (held && held->hold_until_ns <= now) {
		struct vd_port *p = held;
		held = p->next;
		if (!held)
			held_tail = NULL;
		n_held--;
		vd__dbg("%s port %u hold ended", p->proto == IPPROTO_TCP ? "tcp" : "udp", ntohs(p->port_be));
		ep_port_free(p);
	}
	hold_timer_arm();
}

/*
 * Turns a port that left its endpoint into a held one for ms milliseconds. Returns -ENOSPC (the port
 * untouched) when too many are held already, or the map error.
 */
static int port_hold(struct vd_port *p, uint32_t ms)
{
	const struct vd_bpf_ep hold = { .flags = VD_BPF_EP_VALID | VD_BPF_EP_HOLD, .ip_be = p->ip_be };

	if (n_held >= VD_PORT_HELD_MAX)
		return -ENOSPC;
	int err = slot_write(p->ifc, p->proto, p->port_be, &hold);
	if (err)
		return err;
	p->in_map = true;
	p->hold_until_ns = mono_ns() + (uint64_t)ms * 1000000u;
	p->next = NULL;
	if (!held_tail || held_tail->hold_until_ns <= p->hold_until_ns) {
		/* the usual case: the latest end so far (the clock only moves forward) */
		if (held_tail)
			held_tail->next = p;
		else
			held = p;
		held_tail = p;
	} else {
		/* a shorter hold (the rest of a TIME-WAIT): walk to its place; the tail stays */
		struct vd_port **pp = &held;
		while ((*pp)->hold_until_ns <= p->hold_until_ns)
			pp = &(*pp)->next;
		p->next = *pp;
		*pp = p;
	}
	n_held++;
	/* Only a new earliest end moves the timer. */
	if (held == p)
		hold_timer_arm();
	return 0;
}

int vd__port_init(uint32_t time_wait_s)
{
	/*
	 * Every reserved or held port is a kernel socket of the daemon: the default soft limit of 1024
	 * descriptors would let a few clients' ports starve everyone's endpoint set-up. Take the hard limit.
	 */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			vd__warn("RLIMIT_NOFILE: %s", strerror(errno));
	}
	time_wait_ms = time_wait_s > VD_CTL_HOLD_MAX_MS / 1000 ? VD_CTL_HOLD_MAX_MS : time_wait_s * 1000u;
	hold_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (hold_timer.fd < 0)
		return -errno;
	hold_timer.cb = hold_expire;
	return vd__loop_add(&hold_timer, EPOLLIN);
}

void vd__port_fini(void)
{
	while (held) {
		struct vd_port *p = held;
		held = p->next;
		ep_port_free(p);
	}
	held_tail = NULL;
	n_held = 0;
	if (hold_timer.fd >= 0) {
		vd__loop_del(&hold_timer);
		close(hold_timer.fd);
		hold_timer.fd = -1;
	}
}

static struct vd_ep *conn_ep(struct vd_conn *c, uint32_t ep_id)
{
	for (struct vd_ep *ep = *vd__conn_eps(c); ep; ep = ep->next)
		if (ep->id == ep_id)
			return ep;
	return NULL;
}

/* The lowest port only root may bind, as the kernel itself decides it (default 1024). */
unsigned vd__port_unprivileged_start(void)
{
	unsigned v = 1024;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	if (f) {
		if (fscanf(f, "%u", &v) != 1)
			v = 1024;
		fclose(f);
	}
	return v;
}

void vd__ep_port_add_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);
	struct vd_ctl_port_rep rep = {};
	const char *why;
	struct vd_port *p = NULL;
	int err;

#define FAIL(e, text)         \
	do {                  \
		err = (e);    \
		why = (text); \
		goto fail;    \
	} while (0)
	if (!ep)
		FAIL(-ENOENT, "no such endpoint on this connection");
	for (struct vd_port *q = ep->ports; q; q = q->next)
		if (req->port_be && q->proto == req->proto && q->port_be == req->port_be)
			FAIL(-EEXIST, "the endpoint has this port already");
	if (req->proto == IPPROTO_UDP && req->port_be == ep->port_be)
		FAIL(-EEXIST, "the endpoint's own port");
	if (ep->n_ports >= VD_CTL_EP_PORTS_MAX)
		FAIL(-ENOSPC, "too many ports on this endpoint");
	/* The daemon binds as root: it must not hand out a port the client could not bind itself. */
	if (req->port_be && ntohs(req->port_be) < vd__port_unprivileged_start() && ep->uid != 0)
		FAIL(-EACCES, "privileged port");
	/* The kernel decides conflicts: a kernel socket, another endpoint's or a held port's reservation
	 * all make this bind fail with EADDRINUSE. */
	err = vd__port_reserve(req->proto, ep->ip_be, req->port_be, &p);
	if (err)
		FAIL(err, err == -EADDRINUSE ? "port in use" : "cannot reserve the port");
	p->ifc = ep->ifc;
	p->ephemeral = req->port_be == 0;

	/* The reservation makes a second owner impossible; a slot in use anyway is refused, not stolen. */
	__u32 slot = vd_bpf_port_index(p->proto, ntohs(p->port_be));
	struct vd_bpf_ep cur;
	if (bpf_map_lookup_elem(ep->ifc->ports_fd, &slot, &cur))
		FAIL(-errno, "cannot read the dispatcher's port map");
	if (cur.flags & VD_BPF_EP_VALID)
		FAIL(-EADDRINUSE, "port still steered");
	const struct vd_bpf_ep v = {
		.ep_id = ep->id,
		.queue = ep->queue,
		.flags = VD_BPF_EP_VALID | (ep->rx_mode == VD_CTL_RX_DIRECT ? VD_BPF_EP_DIRECT : 0),
		.ip_be = ep->ip_be,
	};
	err = slot_write(ep->ifc, p->proto, p->port_be, &v);
	if (err)
		FAIL(err, "cannot install the port in the dispatcher");
	p->in_map = true;
	p->next = ep->ports;
	ep->ports = p;
	ep->n_ports++;
	rep.port_be = p->port_be;
	vd__dbg("ep %u: %s port %u added%s", ep->id, p->proto == IPPROTO_TCP ? "tcp" : "udp", ntohs(p->port_be),
		p->ephemeral ? " (ephemeral)" : "");
	vd__conn_reply(c, VD_CTL_EP_PORT_ADD, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
	return;
#undef FAIL
fail:
	if (p)
		ep_port_free(p);
	vd__conn_reply(c, VD_CTL_EP_PORT_ADD, seq, err, NULL, 0, NULL, 0, why);
}

void vd__ep_port_del_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);

	for (struct vd_port **pp = ep ? &ep->ports : NULL; pp && *pp; pp = &(*pp)->next) {
		struct vd_port *p = *pp;
		if (p->proto != req->proto || p->port_be != req->port_be)
			continue;
		if (req->hold_ms) {
			/* Unlinked only once the hold is in place: on failure the endpoint keeps the port. */
			struct vd_port *next = p->next;
			int err = port_hold(p, req->hold_ms);
			if (err) {
				p->next = next;
				vd__conn_reply(c, VD_CTL_EP_PORT_DEL, seq, err, NULL, 0, NULL, 0,
					       err == -ENOSPC ? "too many held ports" : "cannot hold the port");
				return;
			}
			*pp = next;
		} else {
			*pp = p->next;
			ep_port_free(p);
		}
		ep->n_ports--;
		vd__conn_reply(c, VD_CTL_EP_PORT_DEL, seq, 0, NULL, 0, NULL, 0, NULL);
		return;
	}
	vd__conn_reply(c, VD_CTL_EP_PORT_DEL, seq, -ENOENT, NULL, 0, NULL, 0,
		       ep ? "port not added to this endpoint" : "no such endpoint on this connection");
}

/*
 * nic.h's promise: ephemeral TCP ports of a closed or dead endpoint are held for the TIME-WAIT period,
 * since its connections may not have ended cleanly; ports asked for by number are freed at once (a
 * restarted server binds again, as SO_REUSEADDR allows with the kernel); UDP has no TIME-WAIT.
 */
void vd__ep_ports_reclaim(struct vd_ep *ep)
{
	while (ep->ports) {
		struct vd_port *p = ep->ports;
		ep->ports = p->next;
		if (p->proto == IPPROTO_TCP && p->ephemeral && time_wait_ms) {
			int err = port_hold(p, time_wait_ms);
			if (err == 0)
				continue;
			vd__warn("ep %u: tcp port %u freed without TIME-WAIT: %s", ep->id, ntohs(p->port_be),
				 strerror(-err));
		}
		ep_port_free(p);
	}
	ep->n_ports = 0;
}

unsigned vd__port_stat(struct vd_ctl_stat_port *out, unsigned max)
{
	unsigned n = 0;
	uint64_t now = mono_ns();

	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++) {
		const struct vd_ep *ep = vd__ep_at(id);
		for (const struct vd_port *p = ep ? ep->ports : NULL; p && n < max; p = p->next)
			out[n++] = (struct vd_ctl_stat_port){
				.ep_id = ep->id, .ifindex = p->ifc->ifindex, .port_be = p->port_be, .proto = p->proto,
				.flags = p->ephemeral ? VD_CTL_STAT_PORT_EPHEMERAL : 0,
			};
	}
	for (const struct vd_port *p = held; p && n < max; p = p->next) {
		uint64_t left = p->hold_until_ns > now ? (p->hold_until_ns - now + 999999u) / 1000000u : 0;
		out[n++] = (struct vd_ctl_stat_port){
			.ifindex = p->ifc->ifindex, .port_be = p->port_be, .proto = p->proto,
			.flags = (uint8_t)(VD_CTL_STAT_PORT_HELD | (p->ephemeral ? VD_CTL_STAT_PORT_EPHEMERAL : 0)),
			.hold_left_ms = (uint32_t)left,
		};
	}
	return n;
}
