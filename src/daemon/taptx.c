/* SPDX-License-Identifier: MIT */
/*
 * TX taps: a tap device per endpoint whose native XDP program (vd_tap_tx, src/bpf/dispatch.bpf.c)
 * redirects every frame written to it out of the interface, through the interface driver's ndo_xdp_xmit.
 *
 * Why: on a copy-mode interface (veth here) an XSK send costs ~1.65 us per frame inside sendto
 * (__xsk_generic_xmit allocates and fills an skb, then veth_convert_skb_to_xdp_buff copies it again before
 * the peer's XDP program). A write() of the same frame to a tap whose XDP redirects it costs ~0.95 us
 * (tun_get_user -> tun_build_skb runs the XDP program on the written bytes, then xdp_do_redirect ->
 * dev_map_enqueue -> veth_xdp_xmit), peer's XDP included, measured on this machine.
 *
 * This file has the pieces the other parts call:
 *   - making and deleting a tap (thread-safe; ringpool.c's worker calls them, since attaching XDP to a
 *     tap costs ~8 ms and unregistering one 30-40 ms, measured, far too long for the event loop);
 *   - whether an interface can take redirected frames (its xdp_features has NETDEV_XDP_ACT_NDO_XMIT),
 *     asked of the kernel's "netdev" generic-netlink family;
 *   - a 1 s timer that re-asks for every interface and ends the taps of an interface that lost it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"

/*
 * The "netdev" generic-netlink family (Linux 6.3+). Debian 12's linux-libc-dev (6.1) has no
 * <linux/netdev.h>, so its constants are spelled out here, from include/uapi/linux/netdev.h:
 * enum netdev_xdp_act, enum { NETDEV_A_DEV_IFINDEX = 1, NETDEV_A_DEV_PAD, NETDEV_A_DEV_XDP_FEATURES },
 * enum { NETDEV_CMD_DEV_GET = 1, ... }. The family's version is 1 (NETDEV_FAMILY_VERSION).
 */
#define VD_NETDEV_FAMILY_NAME "netdev"
#define VD_NETDEV_FAMILY_VERSION 1
#define VD_NETDEV_CMD_DEV_GET 1
#define VD_NETDEV_A_DEV_IFINDEX 1
#define VD_NETDEV_A_DEV_XDP_FEATURES 3
#define VD_NETDEV_XDP_ACT_NDO_XMIT 4ull

#define TAP_CHECK_PERIOD_S 1 /* how soon a lost capability ends the taps of an interface */

static bool taps_on;            /* --no-tap-tx not given and /dev/net/tun usable */
static int genl_fd = -1;        /* the loop's generic-netlink socket (capability queries) */
static uint16_t netdev_family;  /* its id, 0: not known (kernel without the family: no taps) */
static uint32_t netdev_mgmt_group; /* its "mgmt" multicast group id, 0: not known */
static struct vd_evsrc check_timer = { .fd = -1 };
static struct vd_evsrc notify_src = { .fd = -1 }; /* joined to netdev_mgmt_group */

/* ---- netlink helpers ------------------------------------------------------------------------------ */

static struct nlattr *nla_put(struct nlmsghdr *h, size_t room, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a = (struct nlattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	size_t need = NLA_ALIGN(NLA_HDRLEN + len);

	if (NLMSG_ALIGN(h->nlmsg_len) + need > room)
		return NULL;
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	memcpy((char *)a + NLA_HDRLEN, data, len);
	h->nlmsg_len = (uint32_t)(NLMSG_ALIGN(h->nlmsg_len) + need);
	return a;
}

/* Sends h and reads the one reply message into buf (an ack or an answer); -errno of an NLMSG_ERROR. */
static ssize_t nl_call(int fd, struct nlmsghdr *h, void *buf, size_t len)
{
	static uint32_t seq; /* the loop and ringpool.c's worker both call this */
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

	h->nlmsg_seq = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	if (sendto(fd, h, h->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	for (int tries = 0; tries < 8; tries++) {
		ssize_t n = recv(fd, buf, len, 0);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		struct nlmsghdr *r = buf;
		if (n < (ssize_t)sizeof(*r) || !NLMSG_OK(r, (size_t)n))
			return -EBADMSG;
		if (r->nlmsg_seq != h->nlmsg_seq)
			continue; /* a late answer to an earlier, timed-out question */
		if (r->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *e = NLMSG_DATA(r);
			return e->error; /* 0: the ack of a request without an answer */
		}
		return n;
	}
	return -EBADMSG;
}

/* A netlink socket that gives up on a reply after 200 ms (the kernel answers at once; this is a bound). */
static int nl_socket(int proto)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* NETLINK_EXT_ACK off (default): error replies carry only the header, which nl_call reads. */
	return fd;
}

/* Attribute `type` among the attributes at [a, a + len), with at least min bytes of payload, or NULL. */
static const struct nlattr *nla_get(const struct nlattr *a, size_t len, uint16_t type, size_t min)
{
	const size_t hl = (size_t)NLA_HDRLEN;

	while (len >= hl && a->nla_len >= hl && a->nla_len <= len) {
		size_t step = (size_t)NLA_ALIGN(a->nla_len);
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a->nla_len - hl >= min ? a : NULL;
		if (step >= len)
			break;
		len -= step;
		a = (const struct nlattr *)((const char *)a + step);
	}
	return NULL;
}

/* Its payload. */
static const void *nla_find(const struct nlattr *a, size_t len, uint16_t type, size_t min)
{
	const struct nlattr *f = nla_get(a, len, type, min);
	return f ? (const char *)f + NLA_HDRLEN : NULL;
}

struct genl_req {
	struct nlmsghdr h;
	struct genlmsghdr g;
	char attrs[64];
};

/* A generic-netlink request; the reply's attributes in buf, *alen their length. */
static ssize_t genl_call(uint16_t family, uint8_t cmd, uint8_t version, uint16_t attr, const void *val,
			 size_t vlen, char *buf, size_t len, const struct nlattr **attrs, size_t *alen)
{
	struct genl_req rq = {
		.h = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN), .nlmsg_type = family, .nlmsg_flags = NLM_F_REQUEST },
		.g = { .cmd = cmd, .version = version },
	};
	if (!nla_put(&rq.h, sizeof(rq), attr, val, vlen))
		return -E2BIG;
	ssize_t n = nl_call(genl_fd, &rq.h, buf, len);
	if (n <= 0)
		return n ? n : -EBADMSG;
	struct nlmsghdr *r = (struct nlmsghdr *)buf;
	if (r->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN) || r->nlmsg_len > (size_t)n)
		return -EBADMSG;
	*attrs = (const struct nlattr *)((char *)NLMSG_DATA(r) + GENL_HDRLEN);
	*alen = r->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	return n;
}

static int netdev_family_id(void)
{
	char buf[4096];
	const struct nlattr *a;
	size_t alen;
	ssize_t n = genl_call(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, CTRL_ATTR_FAMILY_NAME, VD_NETDEV_FAMILY_NAME,
			      sizeof(VD_NETDEV_FAMILY_NAME), buf, sizeof(buf), &a, &alen);
	if (n < 0)
		return (int)n;
	const uint16_t *id = nla_find(a, alen, CTRL_ATTR_FAMILY_ID, sizeof(*id));
	if (!id)
		return -EBADMSG;
	netdev_family = *id;
	/* Its "mgmt" multicast group: NETDEV_CMD_DEV_CHANGE_NTF, sent by xdp_set_features_flag whenever an
	 * interface's xdp_features change (on a veth: its peer's XDP program comes or goes). */
	netdev_mgmt_group = 0;
	const struct nlattr *groups = nla_get(a, alen, CTRL_ATTR_MCAST_GROUPS, 0);
	if (!groups)
		return 0;
	const struct nlattr *g = (const struct nlattr *)((const char *)groups + NLA_HDRLEN);
	size_t glen = groups->nla_len - (size_t)NLA_HDRLEN;
	for (uint16_t i = 1; i < 32; i++) { /* the array's entries are numbered from 1 */
		const struct nlattr *e = nla_get(g, glen, i, 0);
		if (!e)
			break;
		const struct nlattr *ea = (const struct nlattr *)((const char *)e + NLA_HDRLEN);
		size_t elen = e->nla_len - (size_t)NLA_HDRLEN;
		const char *name = nla_find(ea, elen, CTRL_ATTR_MCAST_GRP_NAME, sizeof("mgmt"));
		const uint32_t *gid = nla_find(ea, elen, CTRL_ATTR_MCAST_GRP_ID, sizeof(*gid));
		if (name && gid && !strcmp(name, "mgmt"))
			netdev_mgmt_group = *gid;
	}
	return 0;
}

/* The interface's xdp_features (enum netdev_xdp_act bits) or -errno. */
static int64_t xdp_features(uint32_t ifindex)
{
	char buf[1024];
	const struct nlattr *a;
	size_t alen;
	ssize_t n = genl_call(netdev_family, VD_NETDEV_CMD_DEV_GET, VD_NETDEV_FAMILY_VERSION, VD_NETDEV_A_DEV_IFINDEX,
			      &ifindex, sizeof(ifindex), buf, sizeof(buf), &a, &alen);
	if (n < 0)
		return n;
	const uint64_t *f = nla_find(a, alen, VD_NETDEV_A_DEV_XDP_FEATURES, sizeof(*f));
	if (!f)
		return -EBADMSG;
	uint64_t v;
	memcpy(&v, f, sizeof(v)); /* attributes are 4-byte aligned only */
	return (int64_t)(v & ~(1ull << 63));
}

/*
 * Whether frames redirected to the interface leave it: the driver's ndo_xdp_xmit is there and on. A veth
 * has NETDEV_XDP_ACT_NDO_XMIT only while its peer has an XDP program or GRO (veth_set_xdp_features);
 * without it veth_xdp_xmit drops every frame (its peer has no rq xdp ring), silently for the writer.
 */
static bool iface_xmit_ok(const struct vd_iface *ifc)
{
	if (genl_fd < 0 || !netdev_family)
		return false;
	int64_t f = xdp_features(ifc->ifindex);
	return f >= 0 && (f & (int64_t)VD_NETDEV_XDP_ACT_NDO_XMIT);
}

/* ---- making and deleting taps (any thread) -------------------------------------------------------- */

static int tap_queue(const char *name, char out[IFNAMSIZ])
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE };
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		int err = -errno;
		close(fd);
		return err;
	}
	memcpy(out, ifr.ifr_name, IFNAMSIZ);
	return fd;
}

int vd__tap_make(int prog_fd, int devs_fd, uint32_t out_ifindex, struct vd_tap *t)
{
	char path[96];
	int err, sock = -1;

	*t = (struct vd_tap){ .keep_fd = -1, .app_fd = -1 };
	/*
	 * Two queues of one multi-queue tap: the daemon keeps the first, the application gets the second. The
	 * device lives while either is open (tun_detach of the last queue unregisters a non-persistent tap), so
	 * nothing is made persistent and nothing outlives both the daemon and the application.
	 */
	t->keep_fd = tap_queue("vdtx%d", t->name);
	if (t->keep_fd < 0)
		return t->keep_fd;
	t->app_fd = tap_queue(t->name, t->name);
	if (t->app_fd < 0) {
		err = t->app_fd;
		goto fail;
	}
	/* No IPv6 on it: no link-local address, no router solicitations or MLD reports out of the tap. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", t->name);
	int pf = open(path, O_WRONLY | O_CLOEXEC);
	if (pf >= 0) {
		if (write(pf, "1", 1) != 1) {
			/* without IPv6 configured at all there is nothing to disable */
		}
		close(pf);
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		err = -errno;
		goto fail;
	}
	struct ifreq ifr = {};
	memcpy(ifr.ifr_name, t->name, IFNAMSIZ);
	if (ioctl(sock, SIOCGIFINDEX, &ifr)) {
		err = -errno;
		goto fail;
	}
	t->ifindex = (uint32_t)ifr.ifr_ifindex;
	if (ioctl(sock, SIOCGIFFLAGS, &ifr)) {
		err = -errno;
		goto fail;
	}
	/* Up (tun drops writes to a device that is down), no ARP: nothing of the tap's own goes anywhere. */
	ifr.ifr_flags |= IFF_UP | IFF_NOARP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr)) {
		err = -errno;
		goto fail;
	}
	/* Driver mode: tun runs the program on the written bytes (tun_build_skb) before any skb exists. */
	err = bpf_xdp_attach((int)t->ifindex, prog_fd, XDP_FLAGS_DRV_MODE, NULL);
	if (err)
		goto fail;
	if (bpf_map_update_elem(devs_fd, &t->ifindex, &out_ifindex, BPF_ANY)) {
		err = -errno;
		goto fail;
	}
	close(sock);
	return 0;
fail:
	if (sock >= 0)
		close(sock);
	/* Closing both queues unregisters the device (it was never persistent). */
	if (t->app_fd >= 0)
		close(t->app_fd);
	if (t->keep_fd >= 0)
		close(t->keep_fd);
	*t = (struct vd_tap){ .keep_fd = -1, .app_fd = -1 };
	return err < 0 ? err : -EIO;
}

int vd__tap_delete(uint32_t ifindex, int keep_fd)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} rq = {
		.h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_DELLINK,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
		.i = { .ifi_family = AF_UNSPEC, .ifi_index = (int)ifindex },
	};
	char buf[512];
	int err;
	/*
	 * RTM_DELLINK by ifindex: tun sets its rtnl_link_ops on every device it makes (tun_set_iff), so
	 * rtnl_dellink unregisters it whether or not the application still holds its queue (its fd then
	 * fails every write, tun_get finding no device: the library falls back to its XSK). Waiting for the
	 * application to close first would make it pay the ~35 ms unregister in its own close().
	 * The daemon's queue stays open until then, so the ifindex cannot name another device meanwhile.
	 */
	int fd = nl_socket(NETLINK_ROUTE);
	if (fd < 0) {
		err = fd;
	} else {
		ssize_t n = nl_call(fd, &rq.h, buf, sizeof(buf));
		err = n == -ENODEV ? 0 : (int)(n < 0 ? n : 0);
		close(fd);
	}
	if (keep_fd >= 0)
		close(keep_fd);
	return err;
}

/* ---- the loop's side: capability, the check timer ------------------------------------------------ */

bool vd__taptx_on(void)
{
	return taps_on;
}

bool vd__taptx_wanted(const struct vd_iface *ifc)
{
	return taps_on && ifc->tap_xmit;
}

bool vd__taptx_check(struct vd_iface *ifc)
{
	if (!taps_on)
		return false;
	bool ok = iface_xmit_ok(ifc);
	if (ok != ifc->tap_xmit) {
		vd__info("%s: %s redirected frames (xdp_features NDO_XMIT %s): TX taps %s", ifc->name,
			 ok ? "takes" : "no longer takes", ok ? "on" : "off", ok ? "handed out" : "ended");
		ifc->tap_xmit = ok;
		if (!ok)
			vd__ep_taps_end(ifc);
		else
			vd__ringpool_kick();
	}
	return ok;
}

static void check_event(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		return;
	for (unsigned i = 0; i < vd__iface_count(); i++)
		vd__taptx_check(vd__iface_at(i));
	/* Spares that failed to be made are tried again (ringpool.c waits a few seconds after a failure). */
	vd__ringpool_kick();
}

/*
 * A change of some interface's xdp_features (or another device event of the netdev family): every
 * interface is asked again at once. Without it a peer's XDP program coming up would be seen at the next
 * tick only, and endpoints opened until then, and until spares are made, would go without a tap for life.
 */
static void notify_event(struct vd_evsrc *src, uint32_t events)
{
	char buf[4096];
	int n = 0;

	(void)events;
	while (n < 64 && recv(src->fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		n++; /* what changed does not matter: asking is cheaper than parsing */
	check_event(&check_timer, 0);
}

/* Best effort: the 1 s timer covers a kernel without the group. */
static void notify_start(void)
{
	if (!netdev_mgmt_group)
		return;
	/* Bound (the kernel picks the port id): netlink's do_one_broadcast skips a socket whose port id is
	 * the sender's, and an unbound socket's 0 is the kernel's own. */
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	notify_src.fd = nl_socket(NETLINK_GENERIC);
	notify_src.cb = notify_event;
	if (notify_src.fd >= 0 && bind(notify_src.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    setsockopt(notify_src.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &netdev_mgmt_group,
		       sizeof(netdev_mgmt_group)) == 0 &&
	    vd__loop_add(&notify_src, EPOLLIN) == 0)
		return;
	vd__warn("TX taps: no netdev notifications (%s): interfaces are checked every %d s only", strerror(errno),
		 TAP_CHECK_PERIOD_S);
	if (notify_src.fd >= 0)
		close(notify_src.fd);
	notify_src.fd = -1;
}

int vd__taptx_init(bool enabled)
{
	taps_on = false;
	if (!enabled) {
		vd__info("TX taps off (--no-tap-tx): endpoints send through their XSK only");
		return 0;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		vd__warn("TX taps off: /dev/net/tun: %s", strerror(errno));
		return 0;
	}
	close(fd);
	genl_fd = nl_socket(NETLINK_GENERIC);
	int err = genl_fd < 0 ? genl_fd : netdev_family_id();
	if (err) {
		vd__warn("TX taps off: no netdev generic-netlink family to ask for xdp_features (%s)", strerror(-err));
		goto off;
	}
	check_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	check_timer.cb = check_event;
	struct itimerspec its = { .it_interval = { .tv_sec = TAP_CHECK_PERIOD_S },
				  .it_value = { .tv_sec = TAP_CHECK_PERIOD_S } };
	if (check_timer.fd < 0 || timerfd_settime(check_timer.fd, 0, &its, NULL) ||
	    (err = vd__loop_add(&check_timer, EPOLLIN))) {
		vd__warn("TX taps off: check timer: %s", strerror(err ? -err : errno));
		goto off;
	}
	taps_on = true;
	vd__dbg("netdev generic-netlink family %u, mgmt group %u", netdev_family, netdev_mgmt_group);
	notify_start();
	for (unsigned i = 0; i < vd__iface_count(); i++) {
		struct vd_iface *ifc = vd__iface_at(i);
		ifc->tap_xmit = iface_xmit_ok(ifc);
		vd__info("%s: %s redirected frames (xdp_features NDO_XMIT): TX taps %s", ifc->name,
			 ifc->tap_xmit ? "takes" : "does not take", ifc->tap_xmit ? "on" : "off until it does");
	}
	return 0;
off:
	if (check_timer.fd >= 0)
		close(check_timer.fd);
	check_timer.fd = -1;
	if (genl_fd >= 0)
		close(genl_fd);
	genl_fd = -1;
	return 0;
}

void vd__taptx_fini(void)
{
	if (notify_src.fd >= 0) {
		vd__loop_del(&notify_src);
		close(notify_src.fd);
	}
	notify_src.fd = -1;
	if (check_timer.fd >= 0) {
		vd__loop_del(&check_timer);
		close(check_timer.fd);
	}
	check_timer.fd = -1;
	if (genl_fd >= 0)
		close(genl_fd);
	genl_fd = -1;
	taps_on = false;
}
