/* SPDX-License-Identifier: MIT */
/* Address helpers of the benchmark: routes, interface addresses and MACs, neighbour resolution. */
#include <errno.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"

int vd__perf_route_src(const char *peer_ip, char *ip_buf, size_t ip_len, char *if_buf, size_t if_len)
{
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(9) }, me;
	socklen_t sl = sizeof(me);
	struct ifaddrs *ifa, *i;
	int fd, err = -ENODEV;

	if (inet_pton(AF_INET, peer_ip, &peer.sin_addr) != 1)
		return -EINVAL;
	/* connect() on a UDP socket only does the route lookup; getsockname() then gives the source. */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&peer, sizeof(peer)) < 0 || getsockname(fd, (struct sockaddr *)&me, &sl) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	close(fd);
	if (ip_buf)
		inet_ntop(AF_INET, &me.sin_addr, ip_buf, (socklen_t)ip_len);
	if (!if_buf)
		return 0;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
		    ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr == me.sin_addr.s_addr) {
			snprintf(if_buf, if_len, "%s", i->ifa_name);
			err = 0;
			break;
		}
	freeifaddrs(ifa);
	return err;
}

static int iface_ioctl(const char *ifname, unsigned long req, struct ifreq *ifr)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

	if (fd < 0)
		return -errno;
	memset(ifr, 0, sizeof(*ifr));
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", ifname);
	r = ioctl(fd, req, ifr) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int vd__perf_iface_ipv4(const char *ifname, uint32_t *ip_be)
{
	struct ifreq ifr;
	int r = iface_ioctl(ifname, SIOCGIFADDR, &ifr);

	if (!r)
		*ip_be = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
	return r;
}

int vd__perf_iface_mac(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr;
	int r = iface_ioctl(ifname, SIOCGIFHWADDR, &ifr);

	if (!r)
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return r;
}

int vd__perf_iface_mtu(const char *ifname)
{
	struct ifreq ifr;
	int r = iface_ioctl(ifname, SIOCGIFMTU, &ifr);

	return r ? r : ifr.ifr_mtu;
}

/* Looks peer_ip up in /proc/net/arp (complete entries only, flag ATF_COM = 0x2). */
static int arp_lookup(const char *ifname, const char *peer_ip, uint8_t mac[6])
{
	FILE *f = fopen("/proc/net/arp", "re");
	char line[256], ip[64], hw[64], dev[64];
	unsigned type, flags, m[6];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s 0x%x 0x%x %63s %*s %63s", ip, &type, &flags, hw, dev) == 5 &&
		    !strcmp(ip, peer_ip) && !strcmp(dev, ifname) && (flags & 0x2) &&
		    sscanf(hw, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6) {
			for (int i = 0; i < 6; i++)
				mac[i] = (uint8_t)m[i];
			r = 0;
			break;
		}
	fclose(f);
	return r;
}

int vd__perf_resolve_mac(const char *ifname, const char *peer_ip, uint8_t mac[6])
{
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(9) }; /* discard */
	int fd;

	if (arp_lookup(ifname, peer_ip, mac) == 0)
		return 0;
	if (inet_pton(AF_INET, peer_ip, &peer.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Any datagram makes the kernel resolve the neighbour (RFC 826); poll the table for up to 3 s. */
	for (int i = 0; i < 300 && !vd__perf_stop; i++) {
		if (i % 50 == 0)
			sendto(fd, "", 0, MSG_DONTWAIT, (struct sockaddr *)&peer, sizeof(peer));
		if (arp_lookup(ifname, peer_ip, mac) == 0) {
			close(fd);
			return 0;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	close(fd);
	return -EHOSTUNREACH;
}
