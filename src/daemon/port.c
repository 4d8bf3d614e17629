/* SPDX-License-Identifier: MIT */
/*
 * Port ownership. A port an endpoint owns is also bound by a kernel socket of the same protocol that
 * viaductd keeps open: no kernel socket can take it meanwhile (bind fails with EADDRINUSE) and the kernel
 * chooses ephemeral ports for us (bind to port 0) from its own range, so viaduct and kernel sockets
 * never collide. The kernel socket never sees the port's traffic: the dispatcher takes it first.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
