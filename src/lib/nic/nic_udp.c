/* SPDX-License-Identifier: MIT */
/*
 * The udp backend: one non-blocking kernel UDP socket. No daemon and no privilege; the wire format is the
 * same as the xdp backend's (a frame's payload is the UDP payload, DF set), so the two interoperate.
 *
 * RX: a pool of RX_POOL buffers used as a ring, because frames are released oldest first. rx_burst fills
 * the free part of the ring with recvmmsg and lends the buffers as views; rx_release moves the tail past
 * the released frames. A datagram that did not fit a buffer (MSG_TRUNC) is counted in rx_malformed and its
 * slot is skipped; skipped slots are reclaimed when nothing is lent any more.
 *
 *        tail                 head
 *         v                    v
 *   [ lent | lent | skipped | lent | free ... free ]   (indices modulo RX_POOL)
 *
 * TX: a pool of TX_POOL buffers on a free stack. tx_alloc lends them; tx_burst sends with sendmmsg at once
 * (so flush has nothing to do) and takes the sent buffers back.
 *
 * max_payload: the MTU of the interface holding the bound address, less the IPv4 and UDP headers; 1500 (the
 * Ethernet default) when bound to the any-address or to loopback, whose 64 KiB MTU no Ethernet peer shares;
 * at most 9000 (jumbo frames) to bound the pools' memory. Larger datagrams from a peer are dropped and
 * counted as malformed, as the xdp backend drops frames larger than its UMEM frames.
 */
#include "nic_internal.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_POOL 512u          /* power of two: ring indices are masked */
#define TX_POOL 512u
#define BATCH 64u             /* messages per recvmmsg/sendmmsg call */
#define SOCK_BUF_BYTES (4 << 20)
#define DEFAULT_MTU 1500u
#define MAX_MTU 9000u
#define MIN_MTU 68u           /* RFC 791: every IPv4 module must handle 68-byte datagrams */
#define IP_UDP_HLEN 28u

struct udp_nic {
	struct vd_nic base;
	uint32_t stride;          /* bytes between buffers: max_payload rounded up to a cache line */

	uint8_t *rx_mem;
	uint64_t rx_head;         /* next slot recvmmsg fills */
	uint64_t rx_tail;         /* oldest slot not yet released */
	uint32_t rx_lent;         /* frames handed out and not released */

	uint8_t *tx_mem;
	uint32_t tx_nfree;
	uint32_t tx_free[TX_POOL];

	/* Scratch for one recvmmsg/sendmmsg call. */
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in names[BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctrl[BATCH];
};

static inline struct udp_nic *to_udp(struct vd_nic *nic)
{
	return (struct udp_nic *)nic;
}

static inline unsigned min3(unsigned a, unsigned b, unsigned c)
{
	unsigned m = a < b ? a : b;
	return m < c ? m : c;
}

/* The socket's drop counter (SO_RXQ_OVFL) rides as ancillary data on received datagrams. */
static void note_drops(struct udp_nic *u, struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		    c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			uint32_t drops;
			memcpy(&drops, CMSG_DATA(c), sizeof(drops));
			u->base.stats.rx_dropped = drops;
		}
	}
}

static int udp_rx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned max)
{
	struct udp_nic *u = to_udp(nic);
	unsigned got = 0;

	/* With nothing lent, slots skipped for truncated datagrams are free again. */
	if (u->rx_lent == 0)
		u->rx_tail = u->rx_head;

	while (got < max) {
		unsigned room = RX_POOL - (unsigned)(u->rx_head - u->rx_tail);
		unsigned want = min3(max - got, room, BATCH);
		if (want == 0)
			break;
		for (unsigned i = 0; i < want; i++) {
			uint32_t slot = (uint32_t)((u->rx_head + i) & (RX_POOL - 1));
			u->iov[i].iov_base = u->rx_mem + (size_t)slot * u->stride;
			u->iov[i].iov_len = u->base.max_payload;
			struct msghdr *mh = &u->msgs[i].msg_hdr;
			mh->msg_name = &u->names[i];
			mh->msg_namelen = sizeof(u->names[i]);
			mh->msg_iov = &u->iov[i];
			mh->msg_iovlen = 1;
			mh->msg_control = u->ctrl[i].buf;
			mh->msg_controllen = sizeof(u->ctrl[i].buf);
			mh->msg_flags = 0;
		}
		int r = recvmmsg(u->base.fd, u->msgs, want, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (got == 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return -errno;
			break;
		}
		for (int i = 0; i < r; i++) {
			struct msghdr *mh = &u->msgs[i].msg_hdr;
			if ((mh->msg_flags & MSG_TRUNC) || u->names[i].sin_family != AF_INET) {
				u->base.stats.rx_malformed++;
				continue;
			}
			struct vd_frame *fr = &f[got++];
			fr->data = u->iov[i].iov_base;
			fr->len = u->msgs[i].msg_len;
			fr->peer.ip = u->names[i].sin_addr.s_addr;
			fr->peer.port = u->names[i].sin_port;
			fr->peer._pad = 0;
			fr->cookie = u->rx_head + (uint64_t)i;
			u->rx_lent++;
			u->base.stats.rx_frames++;
			u->base.stats.rx_bytes += fr->len;
		}
		if (r > 0)
			note_drops(u, &u->msgs[r - 1].msg_hdr);
		u->rx_head += (uint64_t)r;
		if ((unsigned)r < want)
			break; /* the socket is drained */
	}
	return (int)got;
}

static void udp_rx_release(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct udp_nic *u = to_udp(nic);

	/* Oldest first, so everything up to the newest released frame's slot is free. */
	u->rx_tail = f[n - 1].cookie + 1;
	u->rx_lent -= n;
	if (u->rx_lent == 0)
		u->rx_tail = u->rx_head;
}

static int udp_tx_alloc(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct udp_nic *u = to_udp(nic);
	unsigned k = n < u->tx_nfree ? n : u->tx_nfree;

	for (unsigned i = 0; i < k; i++) {
		uint32_t idx = u->tx_free[--u->tx_nfree];
		f[i].data = u->tx_mem + (size_t)idx * u->stride;
		f[i].len = u->base.max_payload;
		f[i].cookie = idx;
	}
	if (k < n)
		u->base.stats.tx_busy++;
	return (int)k;
}

static void udp_tx_abort(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct udp_nic *u = to_udp(nic);

	for (unsigned i = 0; i < n; i++)
		u->tx_free[u->tx_nfree++] = (uint32_t)f[i].cookie;
}

/*
 * Sends with sendmmsg. Returns the frames sent; a frame the kernel refused stays with the caller. When the
 * first frame cannot go, returns -EMSGSIZE (len above max_payload) or the socket's error; a full socket
 * buffer (EAGAIN, ENOBUFS) returns what was sent so far and counts tx_busy.
 */
static int udp_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct udp_nic *u = to_udp(nic);
	unsigned done = 0;

	while (done < n) {
		unsigned k = n - done < BATCH ? n - done : BATCH;
		int too_big = 0;
		for (unsigned i = 0; i < k; i++) {
			struct vd_frame *fr = &f[done + i];
			if (fr->len > u->base.max_payload) {
				k = i;
				too_big = 1;
				break;
			}
			u->names[i].sin_family = AF_INET;
			u->names[i].sin_port = fr->peer.port;
			u->names[i].sin_addr.s_addr = fr->peer.ip;
			memset(u->names[i].sin_zero, 0, sizeof(u->names[i].sin_zero));
			u->iov[i].iov_base = fr->data;
			u->iov[i].iov_len = fr->len;
			struct msghdr *mh = &u->msgs[i].msg_hdr;
			mh->msg_name = &u->names[i];
			mh->msg_namelen = sizeof(u->names[i]);
			mh->msg_iov = &u->iov[i];
			mh->msg_iovlen = 1;
			mh->msg_control = NULL;
			mh->msg_controllen = 0;
			mh->msg_flags = 0;
		}
		if (k == 0)
			return done ? (int)done : -EMSGSIZE;
		int r = sendmmsg(u->base.fd, u->msgs, k, MSG_DONTWAIT);
		if (r < 0) {
			int err = errno;
			if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS || err == EINTR) {
				u->base.stats.tx_busy++;
				return (int)done;
			}
			return done ? (int)done : -err;
		}
		for (int i = 0; i < r; i++) {
			struct vd_frame *fr = &f[done + (unsigned)i];
			u->base.stats.tx_frames++;
			u->base.stats.tx_bytes += fr->len;
			u->tx_free[u->tx_nfree++] = (uint32_t)fr->cookie;
		}
		done += (unsigned)r;
		if ((unsigned)r < k || too_big)
			break; /* the next frame failed: the caller sees it on its retry */
	}
	return (int)done;
}

static int udp_flush(struct vd_nic *nic)
{
	(void)nic; /* sendmmsg already handed every frame to the kernel */
	return 0;
}

static int udp_wait(struct vd_nic *nic, int timeout_ms)
{
	struct pollfd p = { .fd = nic->fd, .events = POLLIN };
	int r = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
	if (r < 0)
		return errno == EINTR ? 1 : -errno; /* a signal: "may be waiting", the caller polls again */
	return r > 0 ? 1 : 0;
}

static uint64_t udp_now_ns(const struct vd_nic *nic)
{
	(void)nic;
	return vd__mono_ns();
}

static size_t pool_bytes(const struct udp_nic *u)
{
	return (size_t)(RX_POOL + TX_POOL) * u->stride;
}

static void udp_close(struct vd_nic *nic)
{
	struct udp_nic *u = to_udp(nic);

	if (u->base.fd >= 0)
		close(u->base.fd);
	if (u->rx_mem)
		munmap(u->rx_mem, pool_bytes(u));
	free(u);
}

static const struct vd_nic_ops udp_ops = {
	.name = "udp",
	.rx_burst = udp_rx_burst,
	.rx_release = udp_rx_release,
	.tx_alloc = udp_tx_alloc,
	.tx_burst = udp_tx_burst,
	.tx_abort = udp_tx_abort,
	.flush = udp_flush,
	.wait = udp_wait,
	.now_ns = udp_now_ns,
	.close = udp_close,
};

/* The MTU of the interface that holds ip_be (see the top of the file for the other cases). */
static uint32_t bound_mtu(int fd, uint32_t ip_be)
{
	struct ifaddrs *ifa_list = NULL;
	uint32_t mtu = DEFAULT_MTU;

	if (ip_be == htonl(INADDR_ANY) || (ntohl(ip_be) >> 24) == 127)
		return DEFAULT_MTU;
	if (getifaddrs(&ifa_list) < 0)
		return DEFAULT_MTU;
	for (struct ifaddrs *ifa = ifa_list; ifa; ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET)
			continue;
		if (((const struct sockaddr_in *)ifa->ifa_addr)->sin_addr.s_addr != ip_be)
			continue;
		struct ifreq ifr;
		memset(&ifr, 0, sizeof(ifr));
		strncpy(ifr.ifr_name, ifa->ifa_name, IFNAMSIZ - 1);
		if (ioctl(fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu >= (int)MIN_MTU)
			mtu = (uint32_t)ifr.ifr_mtu;
		break;
	}
	freeifaddrs(ifa_list);
	return mtu > MAX_MTU ? MAX_MTU : mtu;
}

int vd__nic_udp_open(struct vd_nic **out, const struct vd_nic_opts *opts)
{
	struct vd_addr local = { 0 };
	int one = 1, rc;

	if (opts->local) {
		rc = vd_addr_parse(opts->local, &local);
		if (rc)
			return rc;
	}

	struct udp_nic *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->base.ops = &udp_ops;
	u->base.rx_mode = VD_RX_AUTO; /* RX modes exist only on xdp */
	u->base.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->base.fd < 0) {
		rc = -errno;
		goto fail;
	}
	int fd = u->base.fd;

	/*
	 * Large socket buffers absorb bursts between two rx_burst calls. The *FORCE variants pass
	 * net.core.{r,w}mem_max but need CAP_NET_ADMIN; unprivileged, the plain ones are capped at those
	 * limits. Failure only means smaller buffers. DF on every datagram, as the xdp backend sends: a
	 * payload above the path MTU fails with EMSGSIZE instead of being fragmented.
	 */
	int bytes = SOCK_BUF_BYTES, pmtu = IP_PMTUDISC_DO;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
	(void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu)) < 0) {
		rc = -errno;
		goto fail;
	}

	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = local.port, .sin_addr = { local.ip } };
	socklen_t slen = sizeof(sin);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &slen) < 0) {
		rc = -errno;
		goto fail;
	}
	u->base.local.ip = sin.sin_addr.s_addr;
	u->base.local.port = sin.sin_port;

	u->base.max_payload = bound_mtu(fd, u->base.local.ip) - IP_UDP_HLEN;
	u->stride = (u->base.max_payload + 63u) & ~63u;
	void *mem = mmap(NULL, pool_bytes(u), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	u->rx_mem = mem;
	u->tx_mem = u->rx_mem + (size_t)RX_POOL * u->stride;
	/* Hand out low indices first (a stack pops from the top): keeps the touched memory compact. */
	for (uint32_t i = 0; i < TX_POOL; i++)
		u->tx_free[i] = TX_POOL - 1 - i;
	u->tx_nfree = TX_POOL;

	*out = &u->base;
	return 0;
fail:
	udp_close(&u->base);
	return rc;
}
