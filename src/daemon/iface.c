/* SPDX-License-Identifier: MIT */
/*
 * Managed interfaces: what viaductd needs to know about each (index, MAC, IPv4 address and prefix, MTU,
 * queues) and the XDP dispatcher attached to it. Each interface gets its own instance of the dispatcher
 * (own maps). The program is attached through a bpf_link: the kernel detaches it when the link fd is
 * closed, so the interface is left as found even if viaductd is killed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"
#include "dispatch.skel.h"

static struct vd_iface *ifaces[VD_CTL_MAX_IFACES];
static unsigned n_ifaces;

unsigned vd__iface_count(void)
{
	return n_ifaces;
}

struct vd_iface *vd__iface_at(unsigned i)
{
	return i < n_ifaces ? ifaces[i] : NULL;
}

struct vd_iface *vd__iface_by_name(const char *name)
{
	if (!name || !name[0])
		return n_ifaces ? ifaces[0] : NULL;
	for (unsigned i = 0; i < n_ifaces; i++)
		if (!strcmp(ifaces[i]->name, name))
			return ifaces[i];
	return NULL;
}

struct vd_iface *vd__iface_by_index(uint32_t ifindex)
{
	if (!ifindex)
		return n_ifaces ? ifaces[0] : NULL;
	for (unsigned i = 0; i < n_ifaces; i++)
		if (ifaces[i]->ifindex == ifindex)
			return ifaces[i];
	return NULL;
}

/* First IPv4 address of the interface and its prefix length. */
static int read_ipv4(struct vd_iface *ifc)
{
	struct ifaddrs *list, *a;
	int err = -EADDRNOTAVAIL;

	if (getifaddrs(&list))
		return -errno;
	for (a = list; a; a = a->ifa_next) {
		if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || strcmp(a->ifa_name, ifc->name))
			continue;
		ifc->ip_be = ((struct sockaddr_in *)a->ifa_addr)->sin_addr.s_addr;
		uint32_t mask = a->ifa_netmask ? ntohl(((struct sockaddr_in *)a->ifa_netmask)->sin_addr.s_addr) : 0;
		ifc->prefix_len = (uint32_t)__builtin_popcount(mask);
		err = 0;
		break;
	}
	freeifaddrs(list);
	return err;
}

/* Counts /sys/class/net/IF/queues/<prefix>-N entries (used when ETHTOOL_GCHANNELS is not supported). */
static unsigned sysfs_queues(const char *ifname, const char *prefix)
{
	char path[128];
	struct dirent *d;
	unsigned n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/sys/class/net/%s/queues", ifname);
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((d = readdir(dir)))
		if (!strncmp(d->d_name, prefix, strlen(prefix)))
			n++;
	closedir(dir);
	return n;
}

/*
 * An XSK may be bound to a queue id below the device's real RX and TX queue counts (RX for direct
 * delivery, TX because copy-mode TX transmits on the XSK's queue id), so the usable count is the smaller.
 */
static void read_queues(struct vd_iface *ifc, int sock)
{
	struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };
	struct ifreq ifr = {};
	unsigned rx = 0, tx = 0;

	memcpy(ifr.ifr_name, ifc->name, sizeof(ifc->name));
	ifr.ifr_data = (void *)&ch;
	if (ioctl(sock, SIOCETHTOOL, &ifr) == 0) {
		rx = ch.combined_count + ch.rx_count;
		tx = ch.combined_count + ch.tx_count;
	}
	if (!rx)
		rx = sysfs_queues(ifc->name, "rx-");
	if (!tx)
		tx = sysfs_queues(ifc->name, "tx-");
	ifc->queues = rx < tx ? rx : tx;
	if (!ifc->queues)
		ifc->queues = 1;
	if (ifc->queues > VD_BPF_MAX_QUEUES)
		ifc->queues = VD_BPF_MAX_QUEUES;
}

static int read_link(struct vd_iface *ifc)
{
	struct ifreq ifr = {};
	int sock, err = 0;

	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	memcpy(ifr.ifr_name, ifc->name, sizeof(ifc->name));
	if (ioctl(sock, SIOCGIFHWADDR, &ifr)) {
		err = -errno;
		goto out;
	}
	memcpy(ifc->mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(sock, SIOCGIFMTU, &ifr)) {
		err = -errno;
		goto out;
	}
	ifc->mtu = (uint32_t)ifr.ifr_mtu;
	read_queues(ifc, sock);
out:
	close(sock);
	return err;
}

/* bpf_link_create(BPF_XDP) takes the same mode flags as the netlink attach. */
static int attach(struct vd_iface *ifc, uint32_t flags)
{
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = flags);
	int fd = bpf_link_create(bpf_program__fd(ifc->skel->progs.vd_dispatch), (int)ifc->ifindex, BPF_XDP, &lo);

	if (fd < 0)
		return -errno;
	ifc->link_fd = fd;
	return 0;
}

int vd__iface_add(const char *name, enum vd_xdp_mode mode)
{
	struct vd_iface *ifc;
	int err;

	if (n_ifaces == VD_CTL_MAX_IFACES)
		return -E2BIG;
	if (strlen(name) >= VD_CTL_IFNAMSIZ)
		return -ENAMETOOLONG;
	if (vd__iface_by_name(name) && n_ifaces)
		return -EEXIST;
	ifc = calloc(1, sizeof(*ifc));
	if (!ifc)
		return -ENOMEM;
	strcpy(ifc->name, name);
	ifc->link_fd = -1;
	ifc->ifindex = if_nametoindex(name);
	if (!ifc->ifindex) {
		err = -errno;
		vd__err("%s: no such interface", name);
		goto fail;
	}
	err = read_link(ifc);
	if (!err)
		err = read_ipv4(ifc);
	if (err) {
		vd__err("%s: cannot read link or IPv4 address: %s", name, strerror(-err));
		goto fail;
	}

	ifc->skel = dispatch__open_and_load();
	if (!ifc->skel) {
		err = -errno;
		vd__err("%s: loading the XDP dispatcher failed: %s", name, strerror(-err));
		goto fail;
	}
	ifc->ports_fd = bpf_map__fd(ifc->skel->maps.vd_ports);
	ifc->xsks_fd = bpf_map__fd(ifc->skel->maps.vd_xsks);
	ifc->rings_fd = bpf_map__fd(ifc->skel->maps.vd_rings);
	ifc->ep_stats_fd = bpf_map__fd(ifc->skel->maps.vd_ep_stats);
	ifc->glob_stats_fd = bpf_map__fd(ifc->skel->maps.vd_glob_stats);
	/* TX taps (taptx.c) run this instance's vd_tap_tx, which redirects through its vd_tap_devs. */
	ifc->tap_prog_fd = bpf_program__fd(ifc->skel->progs.vd_tap_tx);
	ifc->tap_devs_fd = bpf_map__fd(ifc->skel->maps.vd_tap_devs);

	/* Native (driver) mode first; generic (skb) mode works everywhere but costs an skb per frame. */
	err = -EOPNOTSUPP;
	if (mode != VD_XDP_GENERIC) {
		err = attach(ifc, XDP_FLAGS_DRV_MODE);
		if (!err)
			ifc->xdp_mode = VD_XDP_NATIVE;
		else if (mode == VD_XDP_NATIVE || err == -EBUSY || err == -EEXIST)
			goto attach_failed;
		else
			vd__warn("%s: native XDP failed (%s), falling back to generic mode", name, strerror(-err));
	}
	if (err) {
		err = attach(ifc, XDP_FLAGS_SKB_MODE);
		if (err)
			goto attach_failed;
		ifc->xdp_mode = VD_XDP_GENERIC;
	}
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &ifc->ip_be, ip, sizeof(ip));
	vd__info("%s: ifindex %u %s/%u mtu %u queues %u, XDP dispatcher attached (%s mode)", name, ifc->ifindex,
		 ip, ifc->prefix_len, ifc->mtu, ifc->queues, ifc->xdp_mode == VD_XDP_NATIVE ? "native" : "generic");
	ifaces[n_ifaces++] = ifc;
	return 0;

attach_failed:
	/* EBUSY/EEXIST: another XDP program is attached; viaductd never replaces someone else's program. */
	vd__err("%s: attaching the XDP dispatcher failed: %s", name, strerror(-err));
fail:
	if (ifc->skel)
		dispatch__destroy(ifc->skel);
	free(ifc);
	return err;
}

void vd__iface_fini(void)
{
	for (unsigned i = 0; i < n_ifaces; i++) {
		struct vd_iface *ifc = ifaces[i];

		/* Destroying the link detaches the program: no XDP program is left on the interface. */
		close(ifc->link_fd);
		dispatch__destroy(ifc->skel);
		vd__info("%s: XDP dispatcher detached", ifc->name);
		free(ifc);
		ifaces[i] = NULL;
	}
	n_ifaces = 0;
}

int vd__iface_glob_stats(const struct vd_iface *ifc, struct vd_ctl_stat_iface *out)
{
	int ncpu = libbpf_num_possible_cpus();
	struct vd_bpf_glob_stats *v;
	uint32_t zero = 0;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(ifc->glob_stats_fd, &zero, v)) {
		int err = -errno;
		free(v);
		return err;
	}
	for (int i = 0; i < ncpu; i++) {
		out->passed += v[i].passed;
		out->malformed += v[i].malformed;
		out->steered += v[i].steered;
		out->redirected += v[i].redirected;
		out->ring_full += v[i].ring_full;
		out->too_big += v[i].too_big;
		out->held += v[i].held;
	}
	free(v);
	return 0;
}
