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
 *
 * Multi-buffer (XDP_USE_SG): the socket is bound with it where the kernel accepts it, so that frames larger
 * than one chunk (MTU 9000) work; chunks cannot be larger than 4096 here (XDP_UMEM_REG refuses 16384).
 * Such a frame is a chain of descriptors, one per chunk, XDP_PKT_CONTD set on all but the last:
 *   RX  the kernel writes each buffer XDP_PACKET_HEADROOM (256) bytes into its chunk, so the pieces of a
 *       frame are not contiguous in the UMEM. The receiver walks the chain, validates the headers (first
 *       piece) against the frame's total length, and hands every chunk back to the fill ring; it never
 *       copies the payload: a received payload is contiguous for its first piece only (the rest is read
 *       in place when the payload is echoed, see held_frame()).
 *   TX  the frame is written across as many chunks of the TX pool as it needs (each filled whole before
 *       the next), one descriptor per chunk; the kernel completes each descriptor separately, so every
 *       chunk comes back to the pool once, through the completion ring, like a one-chunk frame.
 * Without XDP_USE_SG (the kernel refused it) a frame must fit one RX buffer and the payload is capped so.
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

/* linux/if_xdp.h of Linux >= 6.6; Debian 12's uapi header predates multi-buffer AF_XDP. */
#ifndef XDP_USE_SG
#define XDP_USE_SG (1 << 4)
#endif
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)
#endif

#define NUM_FRAMES 4096u
#define FRAME_SIZE 4096u
#define RING_SIZE 2048u /* = NUM_FRAMES / 2: the fill ring can always take back every RX chunk */
/* Bytes of a frame one RX chunk holds: copy mode writes the data XDP_PACKET_HEADROOM into the chunk. */
#define RX_ROOM (FRAME_SIZE - XDP_PACKET_HEADROOM)

/* A frame returned by the last bare_rx(): its descriptors are still on the RX ring, not yet released. */
struct rx_frame {
	uint32_t idx;           /* ring index of its first descriptor */
	uint32_t pieces;        /* descriptors (chunks) in its chain */
	const uint8_t *payload; /* UDP payload, inside the first piece */
	uint32_t len, head;     /* payload length; how much of it the first piece holds */
};

struct bare_tp {
	struct vd__perf_tp tp;
	struct bare_afxdp *skel;
	int link_fd;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xsk_ring_prod fq, txr;
	struct xsk_ring_cons cq, rxr;
	int fd;
	int sg; /* bound with XDP_USE_SG: frames may span several chunks */
	uint8_t *area;
	uint64_t tx_free[NUM_FRAMES - RING_SIZE];
	unsigned ntx_free;
	/* The last bare_rx(): its frames, and the descriptors it took from the RX ring (all their pieces). */
	struct rx_frame rx[VD_PERF_MAX_BURST];
	unsigned nrx;
	uint32_t rx_idx, rx_ndesc;

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
	/* Copy mode transmits only inside this syscall (at most 32 descriptors per call in the kernel's
	 * generic xmit loop; a frame cut there is finished by the next call): the stream calls tx()
	 * continuously, so leftovers go out on the next call. */
	if (xsk_ring_prod__needs_wakeup(&b->txr))
		sendto(b->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}

static void reclaim_tx(struct bare_tp *b)
{
	uint32_t idx;
	unsigned n = xsk_ring_cons__peek(&b->cq, RING_SIZE, &idx);

	/* One completion per descriptor, i.e. per chunk, whatever frame it belonged to. The pool cannot
	 * overflow: it has room for every TX chunk and a chunk completes only once after each use. */
	for (unsigned i = 0; i < n; i++)
		b->tx_free[b->ntx_free++] = *xsk_ring_cons__comp_addr(&b->cq, idx + i);
	/* release: store-release of the consumer index after the addresses were read (inside libxdp). */
	if (n)
		xsk_ring_cons__release(&b->cq, n);
}

/*
 * The received frame whose payload starts at p, if it came in several pieces and is still held (between
 * bare_rx() and bare_rx_done()): a caller echoing a payload hands back what bare_rx() gave it, and only
 * its first piece is contiguous at p, so the rest is read from the other pieces in place.
 */
static const struct rx_frame *held_frame(const struct bare_tp *b, const void *p)
{
	for (unsigned i = 0; i < b->nrx; i++)
		if (b->rx[i].payload == p && b->rx[i].pieces > 1)
			return &b->rx[i];
	return NULL;
}

/* Where the payload being written comes from: one buffer, or the pieces of a held received frame. */
struct src {
	const uint8_t *p;
	uint32_t left;                 /* bytes left at p */
	const struct bare_tp *b;       /* gather only: ... */
	uint32_t next_idx, pieces_left; /* the RX descriptors of the pieces after the current one */
};

static void src_init(struct src *s, const struct bare_tp *b, const struct rx_frame *g, const uint8_t *payload,
		     uint32_t len)
{
	s->b = b;
	s->p = payload;
	s->left = g ? g->head : len;
	s->next_idx = g ? g->idx + 1 : 0;
	s->pieces_left = g ? g->pieces - 1 : 0;
}

/* Moves to the next piece when the current one is used up; 0, or -1 if there is none. */
static int src_refill(struct src *s)
{
	while (!s->left) {
		const struct xdp_desc *d;

		if (!s->pieces_left)
			return -1;
		d = xsk_ring_cons__rx_desc(&s->b->rxr, s->next_idx++);
		s->pieces_left--;
		s->p = s->b->area + d->addr;
		s->left = d->len;
	}
	return 0;
}

/*
 * Writes one frame (template header + len payload bytes from g's pieces or from payload) into chunks taken
 * from the TX pool, filling each chunk whole before the next, and posts one descriptor per chunk starting
 * at TX ring index idx. The caller reserved chunks_for(len) descriptors and pool entries. Returns the
 * index after the last descriptor written.
 */
static uint32_t put_frame(struct bare_tp *b, uint32_t idx, const struct rx_frame *g, const uint8_t *payload,
			  uint32_t len)
{
	struct xdp_desc *d = xsk_ring_prod__tx_desc(&b->txr, idx++);
	uint8_t *dst;
	uint32_t used = VD_PERF_HDR_OVERHEAD;
	struct src s;

	src_init(&s, b, g, payload, len);
	d->addr = b->tx_free[--b->ntx_free];
	dst = b->area + d->addr;
	memcpy(dst, b->tmpl, VD_PERF_HDR_OVERHEAD);
	while (len) {
		if (used == FRAME_SIZE) {
			/* This chunk is full: the frame continues in the next descriptor. */
			d->len = used;
			d->options = XDP_PKT_CONTD;
			d = xsk_ring_prod__tx_desc(&b->txr, idx++);
			d->addr = b->tx_free[--b->ntx_free];
			dst = b->area + d->addr;
			used = 0;
		}
		if (src_refill(&s) < 0)
			break; /* cannot happen: rx_frame.len never exceeds what its pieces hold */
		uint32_t m = FRAME_SIZE - used;

		if (m > s.left)
			m = s.left;
		if (m > len)
			m = len;
		memcpy(dst + used, s.p, m);
		used += m;
		s.p += m;
		s.left -= m;
		len -= m;
	}
	d->len = used;
	d->options = 0; /* the last (or only) descriptor of the frame; slots are reused, so always set */
	return idx;
}

static uint32_t chunks_for(uint32_t len)
{
	return (VD_PERF_HDR_OVERHEAD + len + FRAME_SIZE - 1) / FRAME_SIZE;
}

static int bare_tx(struct vd__perf_tp *t, const void *payload, uint32_t len, unsigned n)
{
	struct bare_tp *b = (struct bare_tp *)t;
	const struct rx_frame *g = held_frame(b, payload);
	uint32_t idx, k = chunks_for(len);

	if (!b->have_peer)
		return -ENOTCONN;
	if (len > b->tp.max_payload || (g && len > g->len))
		return -EMSGSIZE;
	reclaim_tx(b);
	if (n > b->ntx_free / k)
		n = b->ntx_free / k;
	/* The TX ring has a slot for every TX chunk, so room for n * k free chunks means room for their
	 * descriptors: the reservation fails only when n is 0. */
	if (n == 0 || xsk_ring_prod__reserve(&b->txr, n * k, &idx) != n * k) {
		kick_tx(b);
		return 0;
	}
	if (len != b->tmpl_len)
		build_tmpl(b, len);
	for (unsigned i = 0; i < n; i++)
		idx = put_frame(b, idx, g, payload, len);
	/* submit: store-release of the producer index after the descriptors and the frames' bytes (barrier
	 * inside libxdp), so the kernel never sees a descriptor before what it points to. */
	xsk_ring_prod__submit(&b->txr, n * k);
	kick_tx(b);
	return (int)n;
}

/*
 * Validates one received frame (descriptors idx .. idx + pieces - 1, total bytes in all) and fills its
 * record and buf. The XDP program let through only IPv4/UDP to our port; the headers lie in the first
 * piece, and the UDP length is checked against the whole frame. A frame that fails is returned with an
 * empty payload (its chunks still go back to the fill ring in rx_done).
 */
static void rx_frame_parse(struct bare_tp *b, struct rx_frame *r, struct vd__perf_buf *buf, uint32_t idx,
			   uint32_t pieces, uint32_t total)
{
	const struct xdp_desc *d = xsk_ring_cons__rx_desc(&b->rxr, idx);
	const uint8_t *f = b->area + d->addr, *ip = f + 14, *udp;
	unsigned ihl = (ip[0] & 0xf) * 4u;
	uint32_t ulen;

	r->idx = idx;
	r->pieces = pieces;
	r->payload = f;
	r->len = r->head = 0;
	buf->data = f;
	buf->len = 0;
	/* The first piece must hold the headers, and, if the frame goes on, the payload's first 22 bytes
	 * (a minimum frame's): callers read their own header there. Copy mode fills it whole anyway. */
	if (ihl < 20 || d->len < 14 + ihl + 8 ||
	    (pieces > 1 && d->len < 14 + ihl + VD_PERF_MIN_SIZE - VD_PERF_HDR_OVERHEAD + 8))
		return;
	udp = ip + ihl;
	ulen = (uint32_t)udp[4] << 8 | udp[5];
	if (ulen < 8 || 14 + ihl + ulen > total)
		return;
	r->payload = udp + 8;
	r->len = ulen - 8;
	r->head = d->len - (14 + ihl + 8);
	if (r->head > r->len)
		r->head = r->len; /* Ethernet padding of a short frame, or a frame in one piece */
	buf->data = r->payload;
	buf->len = r->len;
	if (memcmp(b->peer_mac, f + 6, 6) || memcmp(&b->peer_ip, ip + 12, 4) || memcmp(&b->peer_port_be, udp, 2) ||
	    !b->have_peer) {
		memcpy(b->peer_mac, f + 6, 6);
		memcpy(&b->peer_ip, ip + 12, 4);
		memcpy(&b->peer_port_be, udp, 2);
		b->have_peer = 1;
		b->tmpl_len = 0;
	}
}

static int bare_rx(struct vd__perf_tp *t, struct vd__perf_buf *bufs, unsigned max)
{
	struct bare_tp *b = (struct bare_tp *)t;
	uint32_t idx, i = 0;
	/* peek: load-acquire of the producer index (inside libxdp), so the descriptors and the frames'
	 * bytes read below are the kernel's completed writes. All that is there: the frames' pieces. */
	unsigned n = xsk_ring_cons__peek(&b->rxr, RING_SIZE, &idx), f = 0;

	b->nrx = 0;
	if (!n) {
		/* Copy mode never sets the fill ring's flag; a zero-copy driver would, so honour it. */
		if (xsk_ring_prod__needs_wakeup(&b->fq))
			recvfrom(b->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		return 0;
	}
	if (max > VD_PERF_MAX_BURST)
		max = VD_PERF_MAX_BURST;
	while (f < max && i < n) {
		uint32_t first = i, total = 0;
		int last = 0;

		/* Walk the chain: every descriptor but the frame's last has XDP_PKT_CONTD. */
		while (!last && i < n) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&b->rxr, idx + i++);

			total += d->len;
			last = !(d->options & XDP_PKT_CONTD);
		}
		if (!last) {
			/* The kernel publishes a frame's descriptors together, so this does not happen; should
			 * the rest of the chain not be visible yet, leave the whole frame for the next call. */
			i = first;
			break;
		}
		rx_frame_parse(b, &b->rx[f], &bufs[f], idx + first, i - first, total);
		f++;
	}
	/* Descriptors past the frames returned (more than max frames, or a partial chain) stay on the ring
	 * for the next call: only the local consumer copy moves back, nothing is published. */
	if (i < n)
		xsk_ring_cons__cancel(&b->rxr, n - i);
	b->rx_idx = idx;
	b->rx_ndesc = i;
	b->nrx = f;
	return (int)f;
}

static void bare_rx_done(struct vd__perf_tp *t, unsigned n)
{
	struct bare_tp *b = (struct bare_tp *)t;
	uint32_t idx, ndesc;

	if (n > b->nrx)
		n = b->nrx;
	/* The descriptors of the first n frames; those of frames not handed back are seen again. */
	ndesc = n < b->nrx ? b->rx[n].idx - b->rx_idx : b->rx_ndesc;
	if (ndesc < b->rx_ndesc)
		xsk_ring_cons__cancel(&b->rxr, b->rx_ndesc - ndesc);
	b->nrx = 0;
	if (!ndesc)
		return;
	/* Give every piece's chunk back for RX, read from the descriptors before they are released. Cannot
	 * fail: the fill ring has a slot for every RX chunk and these are not on it. */
	if (xsk_ring_prod__reserve(&b->fq, ndesc, &idx) == ndesc) {
		for (uint32_t i = 0; i < ndesc; i++)
			*xsk_ring_prod__fill_addr(&b->fq, idx + i) =
				xsk_ring_cons__rx_desc(&b->rxr, b->rx_idx + i)->addr & ~(uint64_t)(FRAME_SIZE - 1);
		/* submit: store-release of the fill producer index after the addresses (inside libxdp). */
		xsk_ring_prod__submit(&b->fq, ndesc);
	}
	/* release: store-release of the RX consumer index after every read of these descriptors and of the
	 * frames' bytes, so the kernel reuses the slots only afterwards (inside libxdp). */
	xsk_ring_cons__release(&b->rxr, ndesc);
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

/* UMEM and socket on the mapped area, bound with bind_flags; on failure both are gone again. */
static int create_xsk(struct bare_tp *b, const struct vd__perf_where *w, uint16_t bind_flags)
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
		.bind_flags = bind_flags,
	};
	int r = xsk_umem__create(&b->umem, b->area, (size_t)NUM_FRAMES * FRAME_SIZE, &b->fq, &b->cq, &ucfg);

	if (r) {
		b->umem = NULL;
		return r;
	}
	r = xsk_socket__create(&b->xsk, w->iface, (uint32_t)w->queue, b->umem, &b->rxr, &b->txr, &scfg);
	if (r) {
		b->xsk = NULL;
		xsk_umem__delete(b->umem);
		b->umem = NULL;
	}
	return r;
}

static int setup_xsk(struct bare_tp *b, const struct vd__perf_where *w)
{
	const uint16_t flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
	size_t len = (size_t)NUM_FRAMES * FRAME_SIZE;
	uint32_t idx;
	int r;

	b->area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->area == MAP_FAILED) {
		b->area = NULL;
		return -errno;
	}
	/* EBUSY: the queue still has a socket. The kernel lets go of a closed socket's queue from a work
	 * queue, after close() returned, so the previous benchmark process's socket (a round just ended)
	 * can hold it a few milliseconds longer: retry for up to 2 s. */
	for (int tries = 0; tries < 100; tries++) {
		/* Multi-buffer where the kernel has it (Linux >= 6.6; older ones reject the unknown flag
		 * with EINVAL, a driver without it EOPNOTSUPP): then frames stay within one chunk. */
		r = create_xsk(b, w, flags | XDP_USE_SG);
		b->sg = !r;
		if (r == -EINVAL || r == -EOPNOTSUPP)
			r = create_xsk(b, w, flags);
		if (r != -EBUSY)
			break;
		usleep(20000);
	}
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
	uint32_t cap;
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
	/* The interface MTU less IPv4 and UDP headers; without multi-buffer also what one RX chunk holds;
	 * never more than the benchmark's buffers (VD_PERF_MAX_PAYLOAD). */
	b->tp.max_payload = mtu > 28 ? (uint32_t)mtu - 28 : 0;
	cap = b->sg ? VD_PERF_MAX_PAYLOAD : RX_ROOM - VD_PERF_HDR_OVERHEAD;
	if (b->tp.max_payload > cap)
		b->tp.max_payload = cap;
	*out = &b->tp;
	return 0;
}
