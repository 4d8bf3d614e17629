/* SPDX-License-Identifier: MIT */
/*
 * The public frame I/O API (viaduct/nic.h): backend choice in one place, then every call dispatches
 * through the backend's ops table. The per-frame calls are a single indirect call each, nothing more:
 * argument checking that would cost on every burst is the caller's contract, not a runtime test.
 */
#include "nic_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl/client.h"

uint64_t vd__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* AUTO picks xdp when a viaductd is listening on the control socket: connect() to a Unix stream socket
 * succeeds only if someone is accepting there. Any failure (no file, refused, no permission) means udp. */
static int daemon_answers(const char *ctl_path)
{
	int fd = vd__ctl_connect(ctl_path);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* heap: where the xdp backend keeps its state (vd__nic_open_shared); NULL: malloc. */
static int nic_open(struct vd_nic **out, const struct vd_nic_opts *opts, struct vd__shmheap *heap)
{
	static const struct vd_nic_opts defaults = { .backend = VD_BACKEND_AUTO, .queue = -1 };
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->layer != VD_NIC_LAYER_UDP && opts->layer != VD_NIC_LAYER_IPV4)
		return -EINVAL;
	if (opts->layer == VD_NIC_LAYER_IPV4) {
		/* Whole IPv4 packets need a link below IP: a kernel UDP socket has none, and the shm channel
		 * carries UDP payloads between nics of the UDP layer only. */
		if (opts->backend == VD_BACKEND_UDP)
			return -EOPNOTSUPP;
		if (opts->same_host_shm > 0)
			return -EINVAL;
	}

	switch (opts->backend) {
	case VD_BACKEND_AUTO:
		if (opts->layer == VD_NIC_LAYER_IPV4 || daemon_answers(opts->ctl_path))
			rc = vd__nic_xdp_open_heap(out, opts, heap);
		else
			rc = vd__nic_udp_open(out, opts);
		break;
	case VD_BACKEND_XDP:
		rc = vd__nic_xdp_open_heap(out, opts, heap);
		break;
	case VD_BACKEND_UDP:
		rc = vd__nic_udp_open(out, opts);
		break;
	case VD_BACKEND_SIM:
		rc = vd__nic_sim_open(out, opts);
		break;
	default:
		return -EINVAL;
	}
	if (rc < 0) {
		*out = NULL;
		return rc;
	}
	/* Same-host peers through shared memory: the sim link is in-process and virtual, so never there. */
	if (opts->same_host_shm > 0 && opts->backend != VD_BACKEND_SIM) {
		rc = vd__nic_mux_open(out, *out);
		if (rc < 0)
			*out = NULL;
	}
	return rc < 0 ? rc : 0;
}

VD_API int vd_nic_open(struct vd_nic **out, const struct vd_nic_opts *opts)
{
	return nic_open(out, opts, NULL);
}

int vd__nic_open_shared(struct vd_nic **out, const struct vd_nic_opts *opts, struct vd__shmheap *heap)
{
	/* The shm mux's channels are process-local: it cannot live in a shared heap. */
	if (heap && opts && opts->same_host_shm > 0)
		return -EINVAL;
	return nic_open(out, opts, heap);
}

VD_API void vd_nic_close(struct vd_nic *nic)
{
	if (nic)
		nic->ops->close(nic);
}

VD_API const char *vd_nic_backend_name(const struct vd_nic *nic)
{
	return nic->ops->name;
}

VD_API enum vd_rx_mode vd_nic_rx_mode(const struct vd_nic *nic)
{
	return nic->rx_mode;
}

VD_API int vd_nic_local_addr(const struct vd_nic *nic, struct vd_addr *out)
{
	*out = nic->local;
	return 0;
}

VD_API uint32_t vd_nic_max_payload(const struct vd_nic *nic)
{
	return nic->max_payload;
}

VD_API int vd_nic_rx_burst(struct vd_nic *nic, struct vd_frame *frames, unsigned max)
{
	return nic->ops->rx_burst(nic, frames, max);
}

VD_API void vd_nic_rx_release(struct vd_nic *nic, struct vd_frame *frames, unsigned n)
{
	if (n)
		nic->ops->rx_release(nic, frames, n);
}

VD_API int vd_nic_tx_alloc(struct vd_nic *nic, struct vd_frame *frames, unsigned n)
{
	return nic->ops->tx_alloc(nic, frames, n);
}

VD_API int vd_nic_tx_burst(struct vd_nic *nic, struct vd_frame *frames, unsigned n)
{
	return nic->ops->tx_burst(nic, frames, n);
}

VD_API void vd_nic_tx_abort(struct vd_nic *nic, struct vd_frame *frames, unsigned n)
{
	if (n)
		nic->ops->tx_abort(nic, frames, n);
}

/* Backends whose lent buffers go out as written have no tx_pieces op: one piece, the contiguous view. */
VD_API int vd_nic_tx_pieces(struct vd_nic *nic, const struct vd_frame *f, uint32_t off, uint32_t len,
			    struct iovec *iov, unsigned max)
{
	if (nic->ops->tx_pieces)
		return nic->ops->tx_pieces(nic, f, off, len, iov, max);
	if (off > f->len || len > f->len - off)
		return -EMSGSIZE;
	if (!len)
		return 0;
	if (!max)
		return -ENOSPC;
	iov[0].iov_base = (uint8_t *)f->data + off;
	iov[0].iov_len = len;
	return 1;
}

/* Lent TX memory: only backends with the ops (xdp where the device can send from it, sim). */
VD_API int vd_nic_tx_lend(struct vd_nic *nic, struct vd_nic_lent *out)
{
	return nic->ops->tx_lend ? nic->ops->tx_lend(nic, out) : -EOPNOTSUPP;
}

VD_API void vd_nic_tx_unlend(struct vd_nic *nic, const struct vd_nic_lent *l)
{
	if (nic->ops->tx_unlend)
		nic->ops->tx_unlend(nic, l);
}

VD_API int vd_nic_tx_busy(struct vd_nic *nic, const struct vd_nic_lent *l, uint32_t chunk)
{
	return nic->ops->tx_busy ? nic->ops->tx_busy(nic, l, chunk) : 0;
}

VD_API int vd_nic_tx_attach(struct vd_nic *nic, struct vd_frame *f, uint32_t hdr_len, const struct iovec *iov,
			    unsigned n)
{
	if (!nic->ops->tx_attach)
		return -EOPNOTSUPP;
	if (n > VD_NIC_TX_ATTACH_MAX)
		return -ENOSPC;
	return nic->ops->tx_attach(nic, f, hdr_len, iov, n);
}

VD_API int vd_nic_flush(struct vd_nic *nic)
{
	return nic->ops->flush(nic);
}

/*
 * Returns 0 once the frame is handed to the backend and flushed, -EMSGSIZE if len exceeds the nic's
 * capacity, -EAGAIN if no TX buffer or ring room is free right now (nothing was sent: retry later), or
 * the backend's error.
 */
VD_API int vd_nic_send(struct vd_nic *nic, const struct vd_addr *to, const void *data, size_t len)
{
	struct vd_frame f;

	if (len > nic->max_payload)
		return -EMSGSIZE;
	int rc = nic->ops->tx_alloc(nic, &f, 1);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -EAGAIN;
	if (len > f.len) {
		nic->ops->tx_abort(nic, &f, 1);
		return -EMSGSIZE;
	}
	if (len)
		memcpy(f.data, data, len);
	f.len = (uint32_t)len;
	f.peer = *to;
	rc = nic->ops->tx_burst(nic, &f, 1);
	if (rc <= 0) {
		nic->ops->tx_abort(nic, &f, 1);
		return rc < 0 ? rc : -EAGAIN;
	}
	return nic->ops->flush(nic);
}

VD_API int vd_nic_fd(const struct vd_nic *nic)
{
	return nic->fd;
}

VD_API int vd_nic_wait(struct vd_nic *nic, int timeout_ms)
{
	return nic->ops->wait(nic, timeout_ms);
}

VD_API uint64_t vd_nic_now_ns(const struct vd_nic *nic)
{
	return nic->ops->now_ns(nic);
}

VD_API void vd_nic_stats(const struct vd_nic *nic, struct vd_nic_stats *out)
{
	if (nic->ops->stats)
		nic->ops->stats(nic, out);
	else
		*out = nic->stats;
}

VD_API int vd_nic_port_add(struct vd_nic *nic, int proto, uint16_t *port_be)
{
	if (!port_be || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return -EINVAL;
	if (!nic->ops->port_add)
		return -EOPNOTSUPP;
	return nic->ops->port_add(nic, proto, port_be);
}

VD_API int vd_nic_port_del(struct vd_nic *nic, int proto, uint16_t port_be, uint32_t hold_ms)
{
	if (port_be == 0 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP))
		return -EINVAL;
	if (!nic->ops->port_del)
		return -EOPNOTSUPP;
	return nic->ops->port_del(nic, proto, port_be, hold_ms);
}
