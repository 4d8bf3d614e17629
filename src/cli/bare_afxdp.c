/* SPDX-License-Identifier: MIT */
/*
 * The bare-afxdp reference: the limit of the link for an AF_XDP program, with no viaduct code on the path.
 * One process, one XSK (libxdp's xsk API) on one queue, its own UMEM, its own XDP program (bare_afxdp.bpf.c,
 * native mode, attached through a BPF link so that it goes away with the process even on kill -9), copy
 * mode with need_wakeup, busy-polled, frames built by hand from a cached header template with no UDP
 * checksum (zero: "no checksum", RFC 768) - the least work a sender can do.
 *
 * UMEM: NUM_FRAMES chunks of FRAME_SIZE; the first half is lent to the kernel through the fill ring for
 * RX, the second half is the TX pool (a stack of free chunks refilled from the completion ring).
 */
#include <errno.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "bare_afxdp.skel.h"
#include "perf.h"

#define NUM_FRAMES 4096u
#define FRAME_SIZE 4096u
#define RING_SIZE 2048u /* = NUM_FRAMES / 2: the fill ring can always take back every RX chunk */

struct bare_tp {
	struct vd__perf_tp tp;
	struct bare_afxdp *skel;
	int link_fd;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xsk_ring_prod fq, txr;
	struct xsk_ring_cons cq, rxr;
	int fd;
	uint8_t *area;
	uint64_t tx_free[NUM_FRAMES - RING_SIZE];
	unsigned ntx_free;
	uint64_t rx_addr[VD_PERF_MAX_BURST];

	/* Who we talk to; the server learns it from each received frame. */
	uint8_t my_mac[6], peer_mac[6];
	uint32_t my_ip, peer_ip;
	uint16_t port_be, peer_port_be;
	int have_peer;
	/* Ethernet+IPv4+UDP header for the current peer and payload length. */
	uint8_t tmpl[VD_PERF_HDR_OVERHEAD];
	uint32_t tmpl_len; /* payload length the template is for; 0: stale */
};

static uint16_t ip_csum(const uint8_t *h)
{
	uint32_t s = 0;

	for (int i = 0; i < 20; i += 2)
		s += (uint32_t)h[i] << 8 | h[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Ethernet II, IPv4 (no options, DF, TTL 64; RFC 791), UDP with checksum 0 (RFC 768). */
static void build_tmpl(struct bare_tp *b, uint32_t len)
{
	uint8_t *e = b->tmpl, *ip = e + 14, *udp = ip + 20;

	memset(b->tmpl, 0, sizeof(b->tmpl));
	memcpy(e, b->peer_mac, 6);
	memcpy(e + 6, b->my_mac, 6);
	put16(e + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + 8 + len));
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &b->my_ip, 4);
	memcpy(ip + 16, &b->peer_ip, 4);
	put16(ip + 10, ip_csum(ip));
	memcpy(udp, &b->port_be, 2);
	memcpy(udp + 2, &b->peer_port_be, 2);
	put16(udp + 4, (uint16_t)(8 + len));
	b->tmpl_len = len;
}

static void kick_tx(struct bare_tp *b)
{
	/* Copy mode transmits only inside this syscall (at most 32 frames per call in the kernel's generic
	 * xmit loop): the stream calls tx() continuously, so leftovers go out on the next call. */
	if (xsk_ring_prod__needs_wakeup(&b->txr))
		sendto(b->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}

static void reclaim_tx(struct bare_tp *b)
{
	uint32_t idx;
	unsigned n = xsk_ring_cons__peek(&b->cq, RING_SIZE, &idx);

	for (unsigned i = 0; i < n; i++)
		b->tx_free[b->ntx_free++] = *xsk_ring_cons__comp_addr(&b->cq, idx + i);
	if (n)
		xsk_ring_cons__release(&b->cq, n);
}

static int bare_tx(struct vd__perf_tp *t, const void *payload, uint32_t len, unsigned n)
{
	struct bare_tp *b = (struct bare_tp *)t;
	uint32_t idx;

	if (!b->have_peer)
		return -ENOTCONN;
	reclaim_tx(b);
	if (n > b->ntx_free)
		n = b->ntx_free;
	if (n == 0 || xsk_ring_prod__reserve(&b->txr, n, &idx) != n) {
		kick_tx(b);
		return 0;
	}
	if (len != b->tmpl_len)
		build_tmpl(b, len);
	for (unsigned i = 0; i < n; i++) {
		struct xdp_desc *d = xsk_ring_prod__tx_desc(&b->txr, idx + i);
		uint64_t addr = b->tx_free[--b->ntx_free];
		uint8_t *f = b->area + addr;

		memcpy(f, b->tmpl, VD_PERF_HDR_OVERHEAD);
		memcpy(f + VD_PERF_HDR_OVERHEAD, payload, len);
		d->addr = addr;
		d->len = VD_PERF_HDR_OVERHEAD + len;
	}
	/* submit: store-release of the producer index after the descriptors (barrier inside libxdp). */
	xsk_ring_prod__submit(&b->txr, n);
	kick_tx(b);
	return (int)n;
}

static int bare_rx(struct vd__perf_tp *t, struct vd__perf_buf *bufs, unsigned max)
{
	struct bare_tp *b = (struct bare_tp *)t;
	uint32_t idx;
	unsigned n = xsk_ring_cons__peek(&b->rxr, max, &idx);

	if (!n) {
		/* Copy mode never sets the fill ring's flag; a zero-copy driver would, so honour it. */
		if (xsk_ring_prod__needs_wakeup(&b->fq))
			recvfrom(b->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&b->rxr, idx + i);
		const uint8_t *f = b->area + d->addr, *ip = f + 14, *udp;
		unsigned ihl = (ip[0] & 0xf) * 4u;

		b->rx_addr[i] = d->addr;
		/* The XDP program let through only IPv4/UDP to our port; check the lengths against the frame. */
		if (d->len < 14 + ihl + 8 || ihl < 20) {
			bufs[i].data = f;
			bufs[i].len = 0;
			continue;
		}
		udp = ip + ihl;
		uint32_t ulen = (uint32_t)udp[4] << 8 | udp[5];

		if (ulen < 8 || 14 + ihl + ulen > d->len)
			ulen = 8;
		bufs[i].data = udp + 8;
		bufs[i].len = ulen - 8;
		if (memcmp(b->peer_mac, f + 6, 6) || memcmp(&b->peer_ip, ip + 12, 4) ||
		    memcmp(&b->peer_port_be, udp, 2) || !b->have_peer) {
			memcpy(b->peer_mac, f + 6, 6);
			memcpy(&b->peer_ip, ip + 12, 4);
			memcpy(&b->peer_port_be, udp, 2);
			b->have_peer = 1;
			b->tmpl_len = 0;
		}
	}
	return (int)n;
}

static void bare_rx_done(struct vd__perf_tp *t, unsigned n)
{
	struct bare_tp *b = (struct bare_tp *)t;
	uint32_t idx;

	xsk_ring_cons__release(&b->rxr, n);
	/* Give the chunks back for RX; cannot fail: the fill ring holds every RX chunk. */
	if (xsk_ring_prod__reserve(&b->fq, n, &idx) != n)
		return;
	for (unsigned i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&b->fq, idx + i) = b->rx_addr[i] & ~(uint64_t)(FRAME_SIZE - 1);
	xsk_ring_prod__submit(&b->fq, n);
}

static void bare_close(struct vd__perf_tp *t)
{
	struct bare_tp *b = (struct bare_tp *)t;

	/* Detach first, so that no frame is redirected to a socket being torn down. */
	if (b->link_fd >= 0)
		close(b->link_fd);
	if (b->xsk)
		xsk_socket__delete(b->xsk);
	if (b->umem)
		xsk_umem__delete(b->umem);
	if (b->area)
		munmap(b->area, (size_t)NUM_FRAMES * FRAME_SIZE);
	bare_afxdp__destroy(b->skel);
	free(b);
}

static const struct vd__perf_tp_ops bare_ops = {
	.tx = bare_tx,
	.rx = bare_rx,
	.rx_done = bare_rx_done,
	.close = bare_close,
};

static int setup_xsk(struct bare_tp *b, const struct vd__perf_where *w)
{
	struct xsk_umem_config ucfg = {
		.fill_size = RING_SIZE,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = RING_SIZE,
		.tx_size = RING_SIZE,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD, /* our own program, below */
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	size_t len = (size_t)NUM_FRAMES * FRAME_SIZE;
	uint32_t idx;
	int r;

	b->area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->area == MAP_FAILED) {
		b->area = NULL;
		return -errno;
	}
	r = xsk_umem__create(&b->umem, b->area, len, &b->fq, &b->cq, &ucfg);
	if (r)
		return r;
	r = xsk_socket__create(&b->xsk, w->iface, (uint32_t)w->queue, b->umem, &b->rxr, &b->txr, &scfg);
	if (r)
		return r;
	b->fd = xsk_socket__fd(b->xsk);
	if (xsk_ring_prod__reserve(&b->fq, RING_SIZE, &idx) != RING_SIZE)
		return -ENOSPC;
	for (uint32_t i = 0; i < RING_SIZE; i++)
		*xsk_ring_prod__fill_addr(&b->fq, idx + i) = (uint64_t)i * FRAME_SIZE;
	xsk_ring_prod__submit(&b->fq, RING_SIZE);
	for (uint32_t i = RING_SIZE; i < NUM_FRAMES; i++)
		b->tx_free[b->ntx_free++] = (uint64_t)i * FRAME_SIZE;
	return 0;
}

static int setup_xdp(struct bare_tp *b, const struct vd__perf_where *w)
{
	LIBBPF_OPTS(bpf_link_create_opts, lopts, .flags = XDP_FLAGS_DRV_MODE);
	unsigned ifindex = if_nametoindex(w->iface);
	uint32_t q = (uint32_t)w->queue;
	int xfd = b->fd;

	if (!ifindex)
		return -ENODEV;
	b->skel = bare_afxdp__open();
	if (!b->skel)
		return -errno ? -errno : -ENOMEM;
	b->skel->rodata->bare_port_be = htons(w->port);
	if (bare_afxdp__load(b->skel))
		return -errno ? -errno : -EINVAL;
	if (bpf_map_update_elem(bpf_map__fd(b->skel->maps.bare_xsks), &q, &xfd, BPF_ANY))
		return -errno;
	/* A BPF link, native (driver) mode: detached when the last fd closes, i.e. whenever we exit. */
	b->link_fd = bpf_link_create(bpf_program__fd(b->skel->progs.bare_afxdp), (int)ifindex, BPF_XDP, &lopts);
	return b->link_fd < 0 ? -errno : 0;
}

int vd__perf_bare_open(struct vd__perf_tp **out, const struct vd__perf_where *w)
{
	struct bare_tp *b;
	int r, mtu;

	if (!w->iface || w->queue < 0)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->link_fd = -1;
	b->tp.ops = &bare_ops;
	b->port_be = b->peer_port_be = htons(w->port);
	mtu = vd__perf_iface_mtu(w->iface);
	r = mtu < 0 ? mtu : vd__perf_iface_mac(w->iface, b->my_mac);
	if (!r)
		r = vd__perf_iface_ipv4(w->iface, &b->my_ip);
	if (!r && !w->server) {
		if (!w->peer_ip || inet_pton(AF_INET, w->peer_ip, &b->peer_ip) != 1)
			r = -EINVAL;
		else
			r = vd__perf_resolve_mac(w->iface, w->peer_ip, b->peer_mac);
		b->have_peer = !r;
	}
	if (!r)
		r = setup_xsk(b, w);
	if (!r)
		r = setup_xdp(b, w);
	if (r) {
		bare_close(&b->tp);
		return r;
	}
	b->tp.max_payload = (uint32_t)mtu - 28;
	if (b->tp.max_payload > FRAME_SIZE - VD_PERF_HDR_OVERHEAD)
		b->tp.max_payload = FRAME_SIZE - VD_PERF_HDR_OVERHEAD;
	*out = &b->tp;
	return 0;
}
