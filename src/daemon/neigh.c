/* SPDX-License-Identifier: MIT */
/*
 * VD_CTL_NEIGH: the Ethernet address to send an IPv4 datagram to. The next hop is the destination itself
 * when it is on the interface's subnet, else the interface's default gateway (/proc/net/route). Its MAC
 * comes from the kernel's neighbour table (/proc/net/arp): viaductd keeps no ARP state of its own.
 * When the kernel has no complete entry, one ICMP echo request to the next hop makes the kernel resolve
 * it (RFC 826 ARP is done by the kernel on our behalf); the request then waits in a pending list that a
 * timerfd re-checks VD_NEIGH_FIRST_US after the echo, then every VD_NEIGH_TICK_MS, up to VD_NEIGH_WAIT_MS,
 * without blocking other clients. A peer on the link answers ARP in tens of microseconds (veth: often
 * within the echo's sendto), so the table is also read once right after the echo: the first connection of
 * a process to a new peer waited a whole 20 ms tick before.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "lib/core/frame.h"

#define VD_NEIGH_FIRST_US 500
#define VD_NEIGH_TICK_MS 5
#define VD_NEIGH_WAIT_MS 1000
#define VD_NEIGH_MAX_PENDING 256
#define VD_NEIGH_MAX_PER_CONN 32

struct pending {
	struct pending *next;
	struct vd_conn *conn;
	uint32_t seq;
	struct vd_iface *ifc;
	uint32_t next_hop_be;
	uint64_t deadline_ns;
};

static struct vd_evsrc timer = { .fd = -1 };
static struct pending *pendings;
static unsigned n_pending;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Looks ip up in /proc/net/arp for ifname; only complete entries (ATF_COM) count. 0 or -ENOENT. */
static int arp_lookup(const char *ifname, uint32_t ip_be, uint8_t mac[6])
{
	char line[256], ipstr[INET_ADDRSTRLEN], dev[IF_NAMESIZE + 1], hw[32];
	unsigned type, flags, m[6];
	int err = -ENOENT;
	FILE *f;

	inet_ntop(AF_INET, &ip_be, ipstr, sizeof(ipstr));
	f = fopen("/proc/net/arp", "re");
	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f)) /* column titles */
		goto out;
	while (fgets(line, sizeof(line), f)) {
		char ipcol[32];

		if (sscanf(line, "%31s %x %x %31s %*s %16s", ipcol, &type, &flags, hw, dev) != 5)
			continue;
		if (strcmp(ipcol, ipstr) || strcmp(dev, ifname) || !(flags & ATF_COM))
			continue;
		if (sscanf(hw, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
			continue;
		for (int i = 0; i < 6; i++)
			mac[i] = (uint8_t)m[i];
		err = 0;
		break;
	}
out:
	fclose(f);
	return err;
}

/* The interface's default gateway from /proc/net/route (addresses there are printed as raw __be32). */
static int default_gateway(const char *ifname, uint32_t *gw_be)
{
	char line[512], dev[IF_NAMESIZE + 1];
	unsigned long dst, gw, mask;
	unsigned flags;
	int err = -ENETUNREACH;
	FILE *f = fopen("/proc/net/route", "re");

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f))
		goto out;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%16s %lx %lx %x %*d %*d %*d %lx", dev, &dst, &gw, &flags, &mask) != 5)
			continue;
		if (strcmp(dev, ifname) || dst || mask || !(flags & RTF_UP) || !(flags & RTF_GATEWAY))
			continue;
		*gw_be = (uint32_t)gw;
		err = 0;
		break;
	}
out:
	fclose(f);
	return err;
}

/* One ICMP echo request (RFC 792) out of ifc to ip: the kernel resolves the next hop's MAC to send it. */
static void trigger_resolution(const struct vd_iface *ifc, uint32_t ip_be)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = ip_be };
	struct icmphdr icmp = { .type = ICMP_ECHO };
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMP);

	if (fd < 0) {
		vd__warn("neigh: raw ICMP socket: %s", strerror(errno));
		return;
	}
	icmp.un.echo.id = htons((uint16_t)getpid());
	icmp.un.echo.sequence = htons(1);
	icmp.checksum = vd__csum_fold(vd__csum_partial(&icmp, sizeof(icmp), 0)); /* RFC 792: RFC 1071 sum */
	if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifc->name, (socklen_t)strlen(ifc->name) + 1) ||
	    sendto(fd, &icmp, sizeof(icmp), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		vd__dbg("neigh: echo to trigger ARP failed: %s", strerror(errno));
	close(fd);
}

static void timer_arm(int on)
{
	struct itimerspec its = {};

	if (on) {
		its.it_value.tv_nsec = VD_NEIGH_FIRST_US * 1000L;
		its.it_interval.tv_nsec = VD_NEIGH_TICK_MS * 1000000L;
	}
	timerfd_settime(timer.fd, 0, &its, NULL);
}

static void reply_mac(struct vd_conn *c, uint32_t seq, uint32_t next_hop_be, const uint8_t mac[6])
{
	struct vd_ctl_neigh_rep rep = { .next_hop_be = next_hop_be };

	memcpy(rep.mac, mac, 6);
	vd__conn_reply(c, VD_CTL_NEIGH, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
}

static void timer_event(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks, now = now_ns();
	struct pending **pp = &pendings;
	uint8_t mac[6];

	if (read(src->fd, &ticks, sizeof(ticks)) < 0)
		return;
	while (*pp) {
		struct pending *p = *pp;
		int found = arp_lookup(p->ifc->name, p->next_hop_be, mac) == 0;

		if (!found && now < p->deadline_ns) {
			pp = &p->next;
			continue;
		}
		if (found)
			reply_mac(p->conn, p->seq, p->next_hop_be, mac);
		else
			vd__conn_reply(p->conn, VD_CTL_NEIGH, p->seq, -EHOSTUNREACH, NULL, 0, NULL, 0,
				       "next hop did not answer ARP");
		/* Replies made outside the connection's own event need it woken for output. */
		vd__conn_kick(p->conn);
		*pp = p->next;
		free(p);
		n_pending--;
	}
	if (!pendings)
		timer_arm(0);
}

void vd__neigh_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_neigh_req *req)
{
	struct vd_iface *ifc = vd__iface_by_index(req->ifindex);
	uint32_t hop = req->ip_be, mask;
	unsigned mine = 0;
	uint8_t mac[6];
	struct pending *p;
	int err;

	if (!ifc) {
		vd__conn_reply(c, VD_CTL_NEIGH, seq, -ENODEV, NULL, 0, NULL, 0, "interface not managed");
		return;
	}
	mask = ifc->prefix_len ? htonl(~0u << (32 - ifc->prefix_len)) : 0;
	if (!req->ip_be || req->ip_be == ifc->ip_be || req->ip_be == INADDR_BROADCAST) {
		vd__conn_reply(c, VD_CTL_NEIGH, seq, -EINVAL, NULL, 0, NULL, 0, "not a remote unicast address");
		return;
	}
	/* Off-link destinations go through the default gateway. */
	if ((req->ip_be & mask) != (ifc->ip_be & mask)) {
		err = default_gateway(ifc->name, &hop);
		if (err) {
			vd__conn_reply(c, VD_CTL_NEIGH, seq, -EHOSTUNREACH, NULL, 0, NULL, 0, "off-link and no gateway");
			return;
		}
	}
	if (arp_lookup(ifc->name, hop, mac) == 0) {
		reply_mac(c, seq, hop, mac);
		return;
	}
	for (p = pendings; p; p = p->next)
		mine += p->conn == c;
	if (n_pending >= VD_NEIGH_MAX_PENDING || mine >= VD_NEIGH_MAX_PER_CONN) {
		vd__conn_reply(c, VD_CTL_NEIGH, seq, -EAGAIN, NULL, 0, NULL, 0, "too many pending resolutions");
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		vd__conn_reply(c, VD_CTL_NEIGH, seq, -ENOMEM, NULL, 0, NULL, 0, "out of memory");
		return;
	}
	p->conn = c;
	p->seq = seq;
	p->ifc = ifc;
	p->next_hop_be = hop;
	p->deadline_ns = now_ns() + VD_NEIGH_WAIT_MS * 1000000ull;
	trigger_resolution(ifc, hop);
	if (arp_lookup(ifc->name, hop, mac) == 0) {
		free(p);
		reply_mac(c, seq, hop, mac);
		return;
	}
	if (!pendings)
		timer_arm(1);
	p->next = pendings;
	pendings = p;
	n_pending++;
}

void vd__neigh_reclaim_conn(struct vd_conn *c)
{
	struct pending **pp = &pendings;

	while (*pp) {
		struct pending *p = *pp;

		if (p->conn == c) {
			*pp = p->next;
			free(p);
			n_pending--;
		} else {
			pp = &p->next;
		}
	}
	if (!pendings && timer.fd >= 0)
		timer_arm(0);
}

int vd__neigh_init(void)
{
	timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (timer.fd < 0)
		return -errno;
	timer.cb = timer_event;
	return vd__loop_add(&timer, EPOLLIN);
}

void vd__neigh_fini(void)
{
	while (pendings) {
		struct pending *p = pendings;
		pendings = p->next;
		free(p);
	}
	n_pending = 0;
	if (timer.fd >= 0) {
		vd__loop_del(&timer);
		close(timer.fd);
		timer.fd = -1;
	}
}
