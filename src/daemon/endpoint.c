/* SPDX-License-Identifier: MIT */
/*
 * Endpoints: EP_OPEN builds everything an endpoint needs and hands the application its descriptors;
 * reclaim takes it all back. What one endpoint holds:
 *   - a UDP port, reserved in the kernel (port.c), and its vd_ports entry in the interface's dispatcher;
 *   - the TCP and UDP ports added with EP_PORT_ADD (port.c), likewise;
 *   - a UMEM in a sealed memfd (the application maps the same pages), mapped here for XDP_UMEM_REG;
 *   - an AF_XDP socket bound in copy mode to its own queue (one UMEM per (device, queue) is a kernel
 *     rule), with RX ring only in direct mode, and, in direct mode, its slot vd_xsks[queue];
 *   - a steering ring (BPF ringbuf of the size asked for) in vd_rings[ep_id]: every endpoint has one,
 *     because even a direct endpoint receives frames that arrive on other queues through it;
 *   - a one-page stats memfd the library writes its counters into;
 *   - where the interface takes redirected frames, a TX tap (taptx.c): a tap device of its own, made ahead
 *     by ringpool.c, whose XDP program sends what the application writes to it out of the interface.
 * Set-up order makes the dispatcher's view consistent at every instant: the ring and the XSK slot are in
 * place before the vd_ports entry that makes frames flow; teardown removes the vd_ports entry first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_xdp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "daemon.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define VD_EP_FRAME_SIZE 4096u /* holds a frame of MTU ~3500 plus headroom; a page, so no frame spans two */

/*
 * Jumbo frames: this kernel refuses UMEM chunks above a page (XDP_UMEM_REG EINVAL even on hugetlb memory),
 * so a frame larger than a chunk is carried as several, through multi-buffer AF_XDP: the XSK is bound with
 * XDP_USE_SG (Linux 6.6; Debian 12's uapi header lacks the flag) and the dispatcher is an xdp.frags
 * program. In copy mode the kernel starts every RX chunk XDP_PACKET_HEADROOM bytes in, so a chunk carries
 * VD_EP_RX_ROOM bytes of a frame. An endpoint takes up to VD_BPF_MAX_FRAGS chunks per frame.
 */
#ifndef XDP_USE_SG
#define XDP_USE_SG (1 << 4)
#endif
#define VD_EP_RX_ROOM (VD_EP_FRAME_SIZE - 256u /* XDP_PACKET_HEADROOM */)
#define VD_EP_TX_BUFS_MIN 64u /* jumbo TX buffers at least, whatever the ring size */

/*
 * AF_XDP TX metadata (Linux 6.8+, Documentation/networking/xsk-tx-metadata.rst). Debian 12's uapi headers
 * predate it, so the ABI pieces are spelled out here: the UMEM registration grew tx_metadata_len into what
 * was padding after `flags`, and the flag below tells the kernel to read it.
 */
#define VD_XDP_UMEM_TX_METADATA_LEN (1u << 2)
#define VD_XSK_TX_METADATA_LEN 16u /* sizeof(struct xsk_tx_metadata) */
struct vd_xdp_umem_reg_v3 {
	uint64_t addr;
	uint64_t len;
	uint32_t chunk_size;
	uint32_t headroom;
	uint32_t flags;
	uint32_t tx_metadata_len;
};

static struct vd_ep *eps[VD_BPF_MAX_EPS];

/* Frame-size warnings are given once per interface (at the first endpoint), not at every open. */
enum { WARNED_SG = 1, WARNED_MTU = 2 };
static unsigned warned[VD_CTL_MAX_IFACES];

static bool warn_once(const struct vd_iface *ifc, unsigned what)
{
	for (unsigned i = 0; i < vd__iface_count() && i < VD_CTL_MAX_IFACES; i++) {
		if (vd__iface_at(i) != ifc)
			continue;
		if (warned[i] & what)
			return false;
		warned[i] |= what;
		return true;
	}
	return true;
}

struct vd_ep *vd__ep_at(unsigned id)
{
	return id < VD_BPF_MAX_EPS ? eps[id] : NULL;
}

struct ep_geom {
	uint32_t rx_ring, tx_ring, fill_ring, comp_ring;
	uint32_t umem_frames, rx_frames;
	uint32_t max_frags;   /* chunks per frame: > 1 binds with XDP_USE_SG; 1 if the kernel refuses it */
	uint32_t tx_frags;    /* chunks per TX buffer */
	uint32_t steer_bytes; /* steering ring data size */
};

int vd__memfd_sealed(const char *name, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	/*
	 * The application gets this fd: sealing the size means it can neither shrink the file under our
	 * mapping (SIGBUS in the daemon) nor grow it; F_SEAL_SEAL stops any further seal.
	 */
	if (ftruncate(fd, (off_t)len) || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Registers the endpoint's UMEM on a fresh XSK, with room for TX metadata where the kernel knows it (the
 * library then asks the device to complete UDP checksums, as the kernel's own UDP does) and without on
 * older kernels, which reject the unknown flag with EINVAL.
 */
static int umem_register(int fd, void *umem, size_t len, uint32_t *tx_meta_len)
{
	struct vd_xdp_umem_reg_v3 mr = {
		.addr = (uintptr_t)umem,
		.len = len,
		.chunk_size = VD_EP_FRAME_SIZE,
		.headroom = 0,
		.flags = VD_XDP_UMEM_TX_METADATA_LEN,
		.tx_metadata_len = VD_XSK_TX_METADATA_LEN,
	};
	*tx_meta_len = VD_XSK_TX_METADATA_LEN;
	if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	mr.flags = 0;
	mr.tx_metadata_len = 0;
	*tx_meta_len = 0;
	return setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) ? -errno : 0;
}

int vd__xsk_on_umem(void *umem, size_t len, uint32_t *tx_meta_len)
{
	int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int err = umem_register(fd, umem, len, tx_meta_len);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* Creates an XSK on the endpoint's UMEM and binds it to (ifindex, queue). Returns the fd or -errno. */
static int xsk_create(struct vd_ep *ep, const struct ep_geom *g, uint32_t queue)
{
	struct sockaddr_xdp sx = {
		.sxdp_family = AF_XDP,
		/* Copy mode works on every driver; need-wakeup lets the library skip syscalls when idle. */
		.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP | (g->max_frags > 1 ? XDP_USE_SG : 0),
		.sxdp_ifindex = ep->ifc->ifindex,
		.sxdp_queue_id = queue,
	};
	int fd, err;

	/* The first try uses the XSK a spare UMEM came registered on (XDP_UMEM_REG pins every page of the
	 * UMEM: about 0.5 ms of EP_OPEN for 8 MiB, done ahead by ringpool.c's worker); a retry on another
	 * queue registers the UMEM again on a new socket. */
	fd = ep->xsk_spare >= 0 ? ep->xsk_spare : vd__xsk_on_umem(ep->umem, ep->umem_len, &ep->tx_meta_len);
	ep->xsk_spare = -1;
	if (fd < 0)
		return fd;
	if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &g->fill_ring, sizeof(g->fill_ring)) ||
	    setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &g->comp_ring, sizeof(g->comp_ring)) ||
	    (g->rx_ring && setsockopt(fd, SOL_XDP, XDP_RX_RING, &g->rx_ring, sizeof(g->rx_ring))) ||
	    setsockopt(fd, SOL_XDP, XDP_TX_RING, &g->tx_ring, sizeof(g->tx_ring)) ||
	    bind(fd, (struct sockaddr *)&sx, sizeof(sx))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/*
 * A kernel without multi-buffer AF_XDP (before 6.6) rejects XDP_USE_SG at bind with EINVAL: the endpoint
 * then carries single-chunk frames only, and says so once per interface, since frames above that size
 * (the interface MTU allows them) will be dropped.
 */
static int xsk_create_sg(struct vd_ep *ep, struct ep_geom *g, uint32_t queue)
{
	int fd = xsk_create(ep, g, queue);

	if (fd != -EINVAL || g->max_frags <= 1)
		return fd;
	if (warn_once(ep->ifc, WARNED_SG)) {
		vd__warn("%s: the kernel refuses multi-buffer AF_XDP (XDP_USE_SG): endpoints carry frames up to "
			 "%u bytes only, below the interface MTU %u; larger frames are dropped", ep->ifc->name,
			 VD_EP_RX_ROOM, ep->ifc->mtu);
	}
	g->max_frags = g->tx_frags = 1;
	return xsk_create(ep, g, queue);
}

/*
 * Binds the endpoint's XSK to a queue: the one asked for if free, else the lowest free one. A queue the
 * daemon thinks free can still be held by an XSK whose copy a (dead or living) application kept: bind
 * then fails with EBUSY and the next queue is tried.
 */
static int xsk_bind_some_queue(struct vd_ep *ep, struct ep_geom *g, int want)
{
	struct vd_iface *ifc = ep->ifc;
	int err = -EBUSY;

	for (int i = -1; i < (int)ifc->queues; i++) {
		int q = i < 0 ? want : i;
		int fd;

		if (q < 0 || (i >= 0 && q == want) || ifc->queue_owner[q])
			continue;
		fd = xsk_create_sg(ep, g, (uint32_t)q);
		if (fd >= 0) {
			ep->xsk_fd = fd;
			ep->queue = (uint32_t)q;
			return 0;
		}
		err = fd;
		if (err != -EBUSY)
			return err;
		vd__info("%s queue %d: still held by an old XSK (EBUSY), trying another", ifc->name, q);
	}
	return -EBUSY;
}

/* Zeroes the endpoint's per-CPU dispatcher counters (the id may have served an older endpoint). */
static int reset_ep_stats(struct vd_ep *ep)
{
	int ncpu = libbpf_num_possible_cpus();
	void *zero;
	int err = 0;

	if (ncpu <= 0)
		return -EINVAL;
	zero = calloc((size_t)ncpu, sizeof(struct vd_bpf_ep_stats));
	if (!zero)
		return -ENOMEM;
	if (bpf_map_update_elem(ep->ifc->ep_stats_fd, &ep->id, zero, BPF_ANY))
		err = -errno;
	free(zero);
	return err;
}

/*
 * Ends the endpoint's TX tap: its vd_tap_devs entry goes at once, so vd_tap_tx drops whatever is still
 * written to it (bpf_redirect_map's XDP_DROP default); the device itself is deleted off the loop by the
 * ring pool's worker (30-40 ms of unregister_netdevice). After that the application's writes fail and it
 * sends through its XSK.
 */
static void ep_tap_end(struct vd_ep *ep)
{
	if (!ep->tap_ifindex)
		return;
	if (bpf_map_delete_elem(ep->ifc->tap_devs_fd, &ep->tap_ifindex) && errno != ENOENT)
		vd__warn("ep %u: removing TX tap %s from vd_tap_devs: %s", ep->id, ep->tap_name, strerror(errno));
	vd__ringpool_tap_del(ep->tap_ifindex, ep->tap_fd);
	ep->tap_ifindex = 0;
	ep->tap_fd = -1;
}

void vd__ep_taps_end(struct vd_iface *ifc)
{
	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++) {
		struct vd_ep *ep = eps[id];
		if (ep && ep->ifc == ifc && ep->tap_ifindex) {
			vd__info("ep %u: TX tap %s ended (%s no longer takes redirected frames)", ep->id, ep->tap_name,
				 ifc->name);
			ep_tap_end(ep);
		}
	}
}

static void ep_free(struct vd_ep *ep)
{
	struct vd_iface *ifc = ep->ifc;

	ep_tap_end(ep);
	/* First stop frames flowing to it, then take away where they went. */
	vd__ep_ports_reclaim(ep);
	if (ep->in_ports_map) {
		const struct vd_bpf_ep cleared = { 0 };
		__u32 slot = vd_bpf_port_index(IPPROTO_UDP, ntohs(ep->port_be));
		bpf_map_update_elem(ifc->ports_fd, &slot, &cleared, BPF_EXIST);
	}
	if (ep->has_ntuple)
		vd__ntuple_del(ifc->name, ep->ntuple_loc);
	if (ep->in_xsks_map)
		bpf_map_delete_elem(ifc->xsks_fd, &ep->queue);
	/* No vd_ports entry points at the id any more: the ring can go after the reply, off the loop. */
	if (ep->in_rings_map && !vd__ringpool_release(ifc, ep->id))
		bpf_map_delete_elem(ifc->rings_fd, &ep->id);
	if (ep->ring_fd >= 0)
		close(ep->ring_fd);
	if (ep->xsk_spare >= 0)
		close(ep->xsk_spare);
	if (ep->xsk_fd >= 0) {
		close(ep->xsk_fd);
		if (ifc->queue_owner[ep->queue] == ep)
			ifc->queue_owner[ep->queue] = NULL;
	}
	if (ep->umem)
		munmap(ep->umem, ep->umem_len);
	if (ep->umem_fd >= 0)
		close(ep->umem_fd);
	if (ep->shared)
		munmap(ep->shared, (size_t)sysconf(_SC_PAGESIZE));
	if (ep->stats_fd >= 0)
		close(ep->stats_fd);
	vd__port_free(ep->port);
	if (eps[ep->id] == ep)
		eps[ep->id] = NULL;
	free(ep);
}

static int ep_setup(struct vd_ep *ep, const struct vd_ctl_ep_open_req *req, struct ep_geom *g, const char **why)
{
	struct vd_iface *ifc = ep->ifc;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int err;

	/* viaductd binds as root: a port the client could not bind itself is not handed out either. */
	*why = "privileged port";
	if (req->port_be && ntohs(req->port_be) < vd__port_unprivileged_start() && ep->uid != 0)
		return -EACCES;
	*why = "cannot reserve the port";
	err = vd__port_reserve(IPPROTO_UDP, ep->ip_be, req->port_be, &ep->port);
	if (err)
		return err;
	ep->port_be = ep->port->port_be;

	*why = "cannot create the UMEM";
	ep->umem_len = (size_t)g->umem_frames * VD_EP_FRAME_SIZE;
	/* A spare from ringpool.c has its pages already, and comes registered on an XSK (xsk_create). */
	struct vd_umem_spare spare;
	if (vd__ringpool_take_umem(ifc, ep->umem_len, &spare) == 0) {
		ep->umem_fd = spare.fd;
		ep->umem = spare.map;
		ep->xsk_spare = spare.xsk_fd;
		ep->tx_meta_len = spare.tx_meta_len;
	} else {
		ep->umem_fd = vd__memfd_sealed("viaduct-umem", ep->umem_len);
		if (ep->umem_fd < 0)
			return ep->umem_fd;
		ep->umem = mmap(NULL, ep->umem_len, PROT_READ | PROT_WRITE, MAP_SHARED, ep->umem_fd, 0);
		if (ep->umem == MAP_FAILED) {
			ep->umem = NULL;
			return -errno;
		}
	}

	*why = "no free queue: every endpoint owns one queue of the interface";
	err = xsk_bind_some_queue(ep, g, ep->rx_mode == VD_CTL_RX_DIRECT ? req->queue : -1);
	if (err) {
		if (err != -EBUSY)
			*why = "cannot create the AF_XDP socket";
		return err;
	}
	ifc->queue_owner[ep->queue] = ep;

	/* A spare from ringpool.c is in place already; otherwise the update waits for an RCU grace period. */
	*why = "cannot create the steering ring";
	if (!ep->in_rings_map) {
		ep->ring_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "vd_steer", 0, 0, g->steer_bytes, NULL);
		if (ep->ring_fd < 0)
			return -errno;
		if (bpf_map_update_elem(ifc->rings_fd, &ep->id, &ep->ring_fd, BPF_ANY))
			return -errno;
		ep->in_rings_map = true;
	}

	*why = "cannot create the stats page";
	ep->stats_fd = vd__memfd_sealed("viaduct-ep-stats", page);
	if (ep->stats_fd < 0)
		return ep->stats_fd;
	ep->shared = mmap(NULL, page, PROT_READ, MAP_SHARED, ep->stats_fd, 0);
	if (ep->shared == MAP_FAILED) {
		ep->shared = NULL;
		return -errno;
	}

	*why = "cannot install the endpoint in the dispatcher";
	err = reset_ep_stats(ep);
	if (err)
		return err;
	if (ep->rx_mode == VD_CTL_RX_DIRECT) {
		if (bpf_map_update_elem(ifc->xsks_fd, &ep->queue, &ep->xsk_fd, BPF_ANY))
			return -errno;
		ep->in_xsks_map = true;
		/* Best effort: without a rule, frames on other queues still reach the steering ring. */
		int nerr = vd__ntuple_add(ifc->name, ep->ip_be, ep->port_be, ep->queue, &ep->ntuple_loc);
		ep->has_ntuple = nerr == 0;
		if (nerr && nerr != -EOPNOTSUPP)
			vd__info("%s: no ntuple rule for queue %u (%s): software steering covers other queues",
				 ifc->name, ep->queue, strerror(-nerr));
	}
	__u32 slot = vd_bpf_port_index(IPPROTO_UDP, ntohs(ep->port_be));
	struct vd_bpf_ep v = {
		.ep_id = ep->id,
		.queue = ep->queue,
		.flags = VD_BPF_EP_VALID | (ep->rx_mode == VD_CTL_RX_DIRECT ? VD_BPF_EP_DIRECT : 0),
		.ip_be = ep->ip_be,
	};
	/* The kernel reservation makes a second owner impossible; if a slot is in use anyway, refuse rather
	 * than steal it. */
	struct vd_bpf_ep cur;
	if (bpf_map_lookup_elem(ifc->ports_fd, &slot, &cur))
		return -errno;
	if (cur.flags & VD_BPF_EP_VALID)
		return -EEXIST;
	if (bpf_map_update_elem(ifc->ports_fd, &slot, &v, BPF_EXIST))
		return -errno;
	ep->in_ports_map = true;
	return 0;
}

/* Chunks a frame of the interface's MTU spans on RX (the TX buffer of that many chunks holds it too). */
static uint32_t ep_frags_for_mtu(uint32_t mtu)
{
	return (mtu + 14u /* Ethernet header */ + VD_EP_RX_ROOM - 1) / VD_EP_RX_ROOM;
}

/*
 * Multi-buffer geometry: frames of up to the interface MTU, within VD_BPF_MAX_FRAGS chunks. An MTU beyond
 * that is said once per interface rather than its frames silently lost. The TX frames form buffers of
 * max_frags consecutive chunks, as many as fit in r chunks (at least VD_EP_TX_BUFS_MIN).
 */
static void ep_geom_frames(struct ep_geom *g, struct vd_iface *ifc, uint32_t r)
{
	uint32_t need = ep_frags_for_mtu(ifc->mtu);

	g->max_frags = need < VD_BPF_MAX_FRAGS ? need : VD_BPF_MAX_FRAGS;
	if (need > VD_BPF_MAX_FRAGS && warn_once(ifc, WARNED_MTU)) {
		vd__warn("%s: MTU %u is larger than an endpoint can carry (%u chunks: frames up to %u bytes); "
			 "larger frames to an endpoint are dropped", ifc->name, ifc->mtu, VD_BPF_MAX_FRAGS,
			 VD_BPF_MAX_FRAGS * VD_EP_RX_ROOM);
	}
	g->tx_frags = g->max_frags;
	uint32_t bufs = r / g->tx_frags;
	if (bufs < VD_EP_TX_BUFS_MIN)
		bufs = VD_EP_TX_BUFS_MIN;
	g->umem_frames = g->rx_frames + bufs * g->tx_frags;
}

size_t vd__ep_default_umem_len(struct vd_iface *ifc)
{
	struct ep_geom g = { .rx_frames = 0 };

	ep_geom_frames(&g, ifc, VD_CTL_RING_DEFAULT);
	return (size_t)g.umem_frames * VD_EP_FRAME_SIZE;
}

/*
 * The steering ring's size: what was asked for (or the default), but room for at least 8 records of the
 * largest frame the interface can bring (its size class, rounded up to a power of two as a ringbuf must be).
 */
uint32_t vd__ep_steer_bytes(const struct vd_iface *ifc, uint32_t asked)
{
	uint32_t bytes = asked ? asked : VD_CTL_STEER_RING_DEFAULT;
	uint32_t cls = vd_bpf_steer_class(ifc->mtu + 14u);
	uint32_t need = 8u * ((cls ? cls : VD_BPF_MAX_STEER) + 16u /* record + ringbuf headers */);

	while (bytes < need && bytes < VD_CTL_STEER_RING_MAX)
		bytes *= 2;
	return bytes;
}

void vd__ep_open(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_open_req *req)
{
	struct vd_iface *ifc = vd__iface_by_name(req->ifname);
	struct vd_ctl_ep_open_rep rep = {};
	struct ep_geom g;
	const char *why = NULL;
	struct vd_ep *ep;
	uint32_t id, r, steer_bytes;
	int err, spare_ring = -1;

#define FAIL(e, text)              \
	do {                       \
		err = (e);         \
		why = (text);      \
		goto fail;         \
	} while (0)
	ep = NULL;
	if (!ifc)
		FAIL(-ENODEV, "interface not managed by viaductd");
	if (req->ip_be && req->ip_be != ifc->ip_be)
		FAIL(-EADDRNOTAVAIL, "address is not the interface's");
	if (req->queue >= (int32_t)ifc->queues)
		FAIL(-EINVAL, "no such queue");
	/* A spare id with its steering ring installed ahead (ringpool.c), else the lowest free one. */
	steer_bytes = vd__ep_steer_bytes(ifc, req->steer_ring_bytes);
	if (vd__ringpool_take(ifc, steer_bytes, &id, &spare_ring)) {
		for (id = 0; id < VD_BPF_MAX_EPS && (eps[id] || vd__ringpool_reserved(id)); id++)
			;
		if (id == VD_BPF_MAX_EPS)
			FAIL(-ENOSPC, "too many endpoints");
	}

	ep = calloc(1, sizeof(*ep));
	if (!ep) {
		if (spare_ring >= 0)
			close(spare_ring); /* vd_rings[id] keeps a ring nobody uses: the id's next owner replaces it */
		FAIL(-ENOMEM, "out of memory");
	}
	ep->id = id;
	ep->ifc = ifc;
	ep->conn = c;
	ep->xsk_fd = ep->xsk_spare = ep->umem_fd = ep->ring_fd = ep->stats_fd = ep->tap_fd = -1;
	if (spare_ring >= 0) {
		ep->ring_fd = spare_ring;
		ep->in_rings_map = true;
	}
	vd__conn_cred(c, &ep->pid, &ep->uid);
	ep->ip_be = ifc->ip_be;
	/*
	 * AUTO means steered: every XSK is bound in copy mode (xsk_bind_some_queue), where the dispatcher's
	 * copy into the endpoint's ring costs less than the kernel's XSK receive path (xsk_rcv, the RX and
	 * fill rings) and the latency does not depend on the queue the peer's frames arrive on (docs/design.md
	 * "What the measurements taught"). Direct is there for who asks, and for drivers with zero-copy AF_XDP.
	 */
	ep->rx_mode = req->rx_mode == VD_CTL_RX_DIRECT ? VD_CTL_RX_DIRECT : VD_CTL_RX_STEERED;
	eps[id] = ep;

	/* UMEM: RX frames (direct only, one per fill-ring entry) first, then about as many TX frames, in
	 * buffers of as many chunks as the largest frame needs. */
	r = req->ring_frames ? req->ring_frames : VD_CTL_RING_DEFAULT;
	g.tx_ring = g.comp_ring = g.fill_ring = r;
	g.rx_ring = ep->rx_mode == VD_CTL_RX_DIRECT ? r : 0;
	g.rx_frames = g.rx_ring;
	ep_geom_frames(&g, ifc, r);
	g.steer_bytes = steer_bytes;

	err = ep_setup(ep, req, &g, &why);
	if (err)
		goto fail;

	ep->next = *vd__conn_eps(c);
	*vd__conn_eps(c) = ep;

	rep.ep_id = ep->id;
	rep.ifindex = ifc->ifindex;
	memcpy(rep.ifname, ifc->name, sizeof(rep.ifname));
	memcpy(rep.mac, ifc->mac, 6);
	rep.rx_mode = ep->rx_mode;
	rep.ip_be = ep->ip_be;
	rep.port_be = ep->port_be;
	rep.prefix_len = ifc->prefix_len;
	rep.mtu = ifc->mtu;
	rep.queue = ep->queue;
	rep.frame_size = VD_EP_FRAME_SIZE;
	rep.umem_frames = g.umem_frames;
	rep.rx_frames = g.rx_frames;
	rep.rx_ring = g.rx_ring;
	rep.tx_ring = g.tx_ring;
	rep.fill_ring = g.fill_ring;
	rep.comp_ring = g.comp_ring;
	rep.steer_ring_bytes = g.steer_bytes;
	rep.max_frags = (uint8_t)g.max_frags; /* after binding: 1 if the kernel refused XDP_USE_SG */
	rep.tx_frags = (uint16_t)g.tx_frags;
	rep.stats_bytes = (uint32_t)sysconf(_SC_PAGESIZE);
	rep.tx_meta_len = ep->tx_meta_len;
	rep.tx_offloads = ep->tx_meta_len ? VD_CTL_TXO_CSUM : 0;
	int fds[VD_CTL_MAX_FDS] = { ep->umem_fd, ep->xsk_fd, ep->ring_fd, ep->stats_fd, -1 };
	/*
	 * A TX tap, if one is ready (never waited for: making one takes ~8 ms) and the interface takes
	 * redirected frames now (asked of the kernel here, a netlink round trip: a veth loses it when its peer's
	 * XDP program goes, and would then drop every frame written to the tap).
	 */
	const char *tap_why = "off (--no-tap-tx or no /dev/net/tun)";
	struct vd_tap tap = { .keep_fd = -1, .app_fd = -1 };
	if (vd__taptx_on()) {
		if (!vd__taptx_check(ifc))
			tap_why = "interface takes no redirected frames";
		else if (vd__ringpool_take_tap(ifc, &tap))
			tap_why = "none ready";
		else {
			ep->tap_fd = tap.keep_fd;
			ep->tap_ifindex = tap.ifindex;
			memcpy(ep->tap_name, tap.name, sizeof(ep->tap_name));
			fds[4] = tap.app_fd;
			rep.tap_tx_max = ifc->mtu + 14u < VD_CTL_TAP_TX_MAX ? ifc->mtu + 14u : VD_CTL_TAP_TX_MAX;
		}
	}
	err = vd__conn_reply(c, VD_CTL_EP_OPEN, seq, 0, &rep, sizeof(rep), fds, fds[4] >= 0 ? 5 : 4, NULL);
	/* vd__conn_reply dup'ed it (or failed): the application's queue is the application's alone. */
	if (tap.app_fd >= 0)
		close(tap.app_fd);
	if (err) {
		/* Could not queue the reply: the endpoint is useless to the client; undo it. */
		*vd__conn_eps(c) = ep->next;
		why = "cannot queue the reply";
		goto fail;
	}
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &ep->ip_be, ip, sizeof(ip));
	vd__info("ep %u opened: pid %d uid %u %s %s:%u queue %u %s%s, frames up to %u bytes (%u chunks), "
		 "TX tap %s%s%s", ep->id, (int)ep->pid, (unsigned)ep->uid, ifc->name, ip, ntohs(ep->port_be), ep->queue,
		 ep->rx_mode == VD_CTL_RX_DIRECT ? "direct" : "steered", ep->tx_meta_len ? ", tx checksum offload" : "",
		 g.max_frags * VD_EP_RX_ROOM, g.max_frags, ep->tap_ifindex ? ep->tap_name : "none (",
		 ep->tap_ifindex ? "" : tap_why, ep->tap_ifindex ? "" : ")");
	return;
#undef FAIL

fail:
	vd__info("ep-open from pid %d refused: %s (%s)", ep ? (int)ep->pid : -1, why, strerror(-err));
	if (ep)
		ep_free(ep);
	vd__conn_reply(c, VD_CTL_EP_OPEN, seq, err, NULL, 0, NULL, 0, why);
}

void vd__ep_close_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_close_req *req)
{
	for (struct vd_ep **pp = vd__conn_eps(c); *pp; pp = &(*pp)->next) {
		struct vd_ep *ep = *pp;

		if (ep->id == req->ep_id) {
			*pp = ep->next;
			vd__info("ep %u closed by its owner", ep->id);
			ep_free(ep);
			vd__conn_reply(c, VD_CTL_EP_CLOSE, seq, 0, NULL, 0, NULL, 0, NULL);
			return;
		}
	}
	vd__conn_reply(c, VD_CTL_EP_CLOSE, seq, -ENOENT, NULL, 0, NULL, 0, "no such endpoint on this connection");
}

void vd__ep_reclaim_conn(struct vd_conn *c)
{
	struct vd_ep **head = vd__conn_eps(c);

	while (*head) {
		struct vd_ep *ep = *head;

		*head = ep->next;
		vd__info("ep %u reclaimed (pid %d)", ep->id, (int)ep->pid);
		ep_free(ep);
	}
}
