/* SPDX-License-Identifier: MIT */
/*
 * The kernel-udp reference: a plain non-blocking UDP socket, busy-polled (recvmmsg with MSG_DONTWAIT in a
 * loop, the way sockperf's busy-poll mode measures the kernel), sendmmsg for bursts.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "perf.h"

#define BUF_SIZE 9216

struct kernel_tp {
	struct vd__perf_tp tp;
	int fd;
	struct sockaddr_in peer;
	struct mmsghdr msgs[VD_PERF_MAX_BURST];
	struct iovec iov[VD_PERF_MAX_BURST];
	struct sockaddr_in from[VD_PERF_MAX_BURST];
	uint8_t bufs[VD_PERF_MAX_BURST][BUF_SIZE];
};

static int kernel_tx(struct vd__perf_tp *t, const void *payload, uint32_t len, unsigned n)
{
	struct kernel_tp *k = (struct kernel_tp *)t;
	struct mmsghdr m[VD_PERF_MAX_BURST];
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	if (n > VD_PERF_MAX_BURST)
		n = VD_PERF_MAX_BURST;
	if (n == 0)
		return 0;
	if (n == 1) {
		ssize_t r = sendto(k->fd, payload, len, MSG_DONTWAIT, (struct sockaddr *)&k->peer, sizeof(k->peer));

		if (r >= 0)
			return 1;
		/* Full socket buffer, or an ICMP error of an earlier datagram (peer not up yet): retry later. */
		return errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED ? 0 : -errno;
	}
	memset(m, 0, sizeof(m[0]) * n);
	for (unsigned i = 0; i < n; i++) {
		m[i].msg_hdr.msg_name = &k->peer;
		m[i].msg_hdr.msg_namelen = sizeof(k->peer);
		m[i].msg_hdr.msg_iov = &iov;
		m[i].msg_hdr.msg_iovlen = 1;
	}
	int r = sendmmsg(k->fd, m, n, MSG_DONTWAIT);

	if (r >= 0)
		return r;
	return errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED ? 0 : -errno;
}

static int kernel_rx(struct vd__perf_tp *t, struct vd__perf_buf *bufs, unsigned max)
{
	struct kernel_tp *k = (struct kernel_tp *)t;

	if (max > VD_PERF_MAX_BURST)
		max = VD_PERF_MAX_BURST;
	for (unsigned i = 0; i < max; i++)
		k->msgs[i].msg_hdr.msg_namelen = sizeof(k->from[i]);
	int n = recvmmsg(k->fd, k->msgs, max, MSG_DONTWAIT, NULL);

	if (n <= 0)
		return n < 0 && errno != EAGAIN && errno != ECONNREFUSED ? -errno : 0;
	for (int i = 0; i < n; i++) {
		bufs[i].data = k->bufs[i];
		bufs[i].len = k->msgs[i].msg_len;
	}
	k->peer = k->from[n - 1];
	return n;
}

static void kernel_rx_done(struct vd__perf_tp *t, unsigned n)
{
	/* The buffers are ours and reused by the next recvmmsg. */
}

static void kernel_close(struct vd__perf_tp *t)
{
	struct kernel_tp *k = (struct kernel_tp *)t;

	close(k->fd);
	free(k);
}

static const struct vd__perf_tp_ops kernel_ops = {
	.tx = kernel_tx,
	.rx = kernel_rx,
	.rx_done = kernel_rx_done,
	.close = kernel_close,
};

int vd__perf_kernel_open(struct vd__perf_tp **out, const struct vd__perf_where *w)
{
	struct kernel_tp *k = calloc(1, sizeof(*k));
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(w->port) };
	int one = 1, big = 4 << 20;

	if (!k)
		return -ENOMEM;
	k->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (k->fd < 0) {
		free(k);
		return -errno;
	}
	setsockopt(k->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Large buffers so that the stream measures the rate, not the default socket buffer (root: FORCE). */
	if (setsockopt(k->fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (setsockopt(k->fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(k->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (bind(k->fd, (struct sockaddr *)&me, sizeof(me)) < 0) {
		int e = -errno;

		kernel_close(&k->tp);
		return e;
	}
	k->peer.sin_family = AF_INET;
	k->peer.sin_port = htons(w->port);
	if (!w->server && (!w->peer_ip || inet_pton(AF_INET, w->peer_ip, &k->peer.sin_addr) != 1)) {
		kernel_close(&k->tp);
		return -EINVAL;
	}
	for (unsigned i = 0; i < VD_PERF_MAX_BURST; i++) {
		k->iov[i].iov_base = k->bufs[i];
		k->iov[i].iov_len = BUF_SIZE;
		k->msgs[i].msg_hdr.msg_iov = &k->iov[i];
		k->msgs[i].msg_hdr.msg_iovlen = 1;
		k->msgs[i].msg_hdr.msg_name = &k->from[i];
	}
	k->tp.ops = &kernel_ops;
	k->tp.max_payload = VD_PERF_MAX_PAYLOAD;
	if (w->iface) {
		int mtu = vd__perf_iface_mtu(w->iface);

		if (mtu > 28)
			k->tp.max_payload = (uint32_t)mtu - 28;
	}
	*out = &k->tp;
	return 0;
}
