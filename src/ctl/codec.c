/* SPDX-License-Identifier: MIT */
/*
 * Validation of control messages. Both ends run every message they receive through vd__ctl_check()
 * before reading a field, so the rules live in one place: the daemon relies on them against hostile
 * clients, the library against a confused daemon. tests/fuzz/fuzz_ctl.c fuzzes this file.
 */
#include <errno.h>
#include <string.h>

#include "proto.h"

/* Expected payload size of each message: fixed sizes are exact; `var` marks a variable payload. */
struct vd__ctl_layout {
	const char *name;
	size_t req;   /* request payload */
	size_t rep;   /* successful reply payload */
	unsigned rep_fds_max;
	int rep_var;  /* the reply's payload is variable (checked by its own function) */
};

static const struct vd__ctl_layout layouts[VD_CTL_TYPE_MAX_ + 1] = {
	[VD_CTL_EP_OPEN] = { "ep-open", sizeof(struct vd_ctl_ep_open_req), sizeof(struct vd_ctl_ep_open_rep),
			     VD_CTL_MAX_FDS, 0 },
	[VD_CTL_EP_CLOSE] = { "ep-close", sizeof(struct vd_ctl_ep_close_req), 0, 0, 0 },
	[VD_CTL_NEIGH] = { "neigh", sizeof(struct vd_ctl_neigh_req), sizeof(struct vd_ctl_neigh_rep), 0, 0 },
	[VD_CTL_STAT] = { "stat", 0, 0, 0, 1 },
	[VD_CTL_PORT_RESERVE] = { "port-reserve", sizeof(struct vd_ctl_port_req), sizeof(struct vd_ctl_port_rep),
				  0, 0 },
	[VD_CTL_PORT_RELEASE] = { "port-release", sizeof(struct vd_ctl_port_req), 0, 0, 0 },
	[VD_CTL_EP_PORT_ADD] = { "ep-port-add", sizeof(struct vd_ctl_ep_port_req), sizeof(struct vd_ctl_port_rep),
				 0, 0 },
	[VD_CTL_EP_PORT_DEL] = { "ep-port-del", sizeof(struct vd_ctl_ep_port_req), 0, 0, 0 },
	[VD_CTL_EP_PORTS_ADD] = { "ep-ports-add", sizeof(struct vd_ctl_ep_ports_req),
				  sizeof(struct vd_ctl_ep_ports_rep), 0, 0 },
	[VD_CTL_EP_PORTS_DEL] = { "ep-ports-del", sizeof(struct vd_ctl_ep_ports_req), 0, 0, 0 },
};

const char *vd__ctl_type_name(uint16_t type)
{
	uint16_t base = type & (uint16_t)~VD_CTL_REPLY;
	if (base == 0 || base > VD_CTL_TYPE_MAX_)
		return "?";
	return layouts[base].name;
}

void vd__ctl_hdr_init(struct vd_ctl_hdr *h, uint16_t type, uint32_t seq, int32_t status, size_t payload_len,
		      uint32_t nfds)
{
	memset(h, 0, sizeof(*h));
	h->magic = VD_CTL_MAGIC;
	h->version = VD_CTL_VERSION;
	h->type = type;
	h->len = (uint32_t)(sizeof(*h) + payload_len);
	h->seq = seq;
	h->status = status;
	h->nfds = nfds;
}

static int has_nul(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static int is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static int check_ep_open_req(const struct vd_ctl_ep_open_req *r)
{
	if (!has_nul(r->ifname, sizeof(r->ifname)))
		return -EBADMSG;
	if (r->rx_mode > VD_CTL_RX_STEERED)
		return -EBADMSG;
	if (r->queue < -1 || r->queue >= 4096)
		return -EBADMSG;
	if (r->ring_frames &&
	    (!is_pow2(r->ring_frames) || r->ring_frames < VD_CTL_RING_MIN || r->ring_frames > VD_CTL_RING_MAX))
		return -EBADMSG;
	if (r->steer_ring_bytes && (!is_pow2(r->steer_ring_bytes) || r->steer_ring_bytes < VD_CTL_STEER_RING_MIN ||
				    r->steer_ring_bytes > VD_CTL_STEER_RING_MAX))
		return -EBADMSG;
	return 0;
}

static int check_ep_open_rep(const struct vd_ctl_ep_open_rep *r, uint32_t nfds)
{
	if (!has_nul(r->ifname, sizeof(r->ifname)))
		return -EBADMSG;
	if (r->rx_mode != VD_CTL_RX_DIRECT && r->rx_mode != VD_CTL_RX_STEERED)
		return -EBADMSG;
	if (!is_pow2(r->frame_size) || r->frame_size < 2048 || r->frame_size > 65536)
		return -EBADMSG;
	if (!r->umem_frames || r->umem_frames > (1u << 20) || r->rx_frames >= r->umem_frames)
		return -EBADMSG;
	if (!is_pow2(r->tx_ring) || !is_pow2(r->fill_ring) || !is_pow2(r->comp_ring) ||
	    (r->rx_ring && !is_pow2(r->rx_ring)))
		return -EBADMSG;
	if (r->mtu < 68 || r->mtu > 65535 || r->prefix_len > 32)
		return -EBADMSG;
	if (r->tap_tx_max > VD_CTL_TAP_TX_MAX || nfds != 4u + (r->tap_tx_max != 0))
		return -EBADMSG;
	if (r->tx_meta_len % 8 || r->tx_meta_len > 256 || (r->tx_offloads & ~VD_CTL_TXO_CSUM) ||
	    (r->tx_offloads && !r->tx_meta_len))
		return -EBADMSG;
	/* Multi-buffer: TX buffers of tx_frags chunks tile the TX frames exactly. */
	uint32_t frags = r->max_frags ? r->max_frags : 1, tx_frags = r->tx_frags ? r->tx_frags : 1;
	if (frags > VD_CTL_MAX_FRAGS || tx_frags > frags || (r->umem_frames - r->rx_frames) % tx_frags)
		return -EBADMSG;
	return 0;
}

static int check_port_req(const struct vd_ctl_port_req *r)
{
	return (r->proto == VD_CTL_PROTO_UDP || r->proto == VD_CTL_PROTO_TCP) ? 0 : -EBADMSG;
}

static int check_ep_port_req(const struct vd_ctl_ep_port_req *r, uint16_t type)
{
	if ((r->proto != VD_CTL_PROTO_UDP && r->proto != VD_CTL_PROTO_TCP) || r->_pad != 0)
		return -EBADMSG;
	if (type == VD_CTL_EP_PORT_ADD)
		return r->hold_ms == 0 ? 0 : -EBADMSG;
	/* DEL names a port it owns (never 0) and holds it for a bounded time. */
	return (r->port_be != 0 && r->hold_ms <= VD_CTL_HOLD_MAX_MS) ? 0 : -EBADMSG;
}

static int check_ep_ports_req(const struct vd_ctl_ep_ports_req *r, uint16_t type)
{
	if ((r->proto != VD_CTL_PROTO_UDP && r->proto != VD_CTL_PROTO_TCP) || r->count == 0 ||
	    r->count > VD_CTL_PORTS_BATCH_MAX)
		return -EBADMSG;
	for (unsigned i = 0; i < VD_CTL_PORTS_BATCH_MAX; i++) {
		/* DEL: exactly count non-zero ports, then zeros; ADD: all zeros (the kernel picks) */
		int want = type == VD_CTL_EP_PORTS_DEL && i < r->count;
		if (!!r->port_be[i] != want)
			return -EBADMSG;
	}
	if (type == VD_CTL_EP_PORTS_ADD)
		return (r->flags == 0 && r->hold_ms == 0) ? 0 : -EBADMSG;
	return ((r->flags & ~VD_CTL_PORTS_QUIET) == 0 && r->hold_ms <= VD_CTL_HOLD_MAX_MS) ? 0 : -EBADMSG;
}

static int check_ep_ports_rep(const struct vd_ctl_ep_ports_rep *r)
{
	if (r->count == 0 || r->count > VD_CTL_PORTS_BATCH_MAX || r->_pad)
		return -EBADMSG;
	for (unsigned i = 0; i < VD_CTL_PORTS_BATCH_MAX; i++)
		if (!!r->port_be[i] != (i < r->count))
			return -EBADMSG;
	return 0;
}

/* STAT reply: header counts, then exactly that many records of each kind, all within bounds. */
static int check_stat_rep(const void *p, size_t len)
{
	struct vd_ctl_stat_rep s;
	if (len < sizeof(s))
		return -EBADMSG;
	memcpy(&s, p, sizeof(s));
	if (s.n_ifaces > VD_CTL_MAX_IFACES || s.n_eps > VD_CTL_MAX_EPS)
		return -EBADMSG;
	/* 32-bit counts times small record sizes cannot overflow a 64-bit size_t. */
	size_t want = sizeof(s) + (size_t)s.n_ifaces * sizeof(struct vd_ctl_stat_iface) +
		      (size_t)s.n_eps * sizeof(struct vd_ctl_stat_ep) +
		      (size_t)s.n_ports * sizeof(struct vd_ctl_stat_port);
	/* The spares section is optional (a daemon before it ends the reply without one). */
	if (len != want && len != want + (size_t)s.n_ifaces * sizeof(struct vd_ctl_stat_spares))
		return -EBADMSG;
	const char *at = (const char *)p + sizeof(s);
	for (uint32_t i = 0; i < s.n_ifaces; i++, at += sizeof(struct vd_ctl_stat_iface))
		if (!has_nul(((const struct vd_ctl_stat_iface *)(const void *)at)->ifname, VD_CTL_IFNAMSIZ))
			return -EBADMSG;
	for (uint32_t i = 0; i < s.n_eps; i++, at += sizeof(struct vd_ctl_stat_ep))
		if (!has_nul(((const struct vd_ctl_stat_ep *)(const void *)at)->ifname, VD_CTL_IFNAMSIZ))
			return -EBADMSG;
	for (uint32_t i = 0; i < s.n_ports; i++, at += sizeof(struct vd_ctl_stat_port)) {
		struct vd_ctl_stat_port sp;
		memcpy(&sp, at, sizeof(sp));
		if ((sp.proto != VD_CTL_PROTO_UDP && sp.proto != VD_CTL_PROTO_TCP) ||
		    (sp.flags & ~(VD_CTL_STAT_PORT_EPHEMERAL | VD_CTL_STAT_PORT_HELD)))
			return -EBADMSG;
	}
	return 0;
}

int vd__ctl_check(const void *buf, size_t len, int is_reply)
{
	struct vd_ctl_hdr h;

	/* Framing first: without a sane header and length the stream cannot be resynchronised. */
	if (len < sizeof(h))
		return -EPROTO;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != VD_CTL_MAGIC || h.len != len || h.len > VD_CTL_MAX_MSG)
		return -EPROTO;
	if (h.version != VD_CTL_VERSION)
		return -EPROTONOSUPPORT;

	if (!!(h.type & VD_CTL_REPLY) != !!is_reply)
		return -EBADMSG;
	uint16_t type = h.type & (uint16_t)~VD_CTL_REPLY;
	if (type == 0 || type > VD_CTL_TYPE_MAX_)
		return -EBADMSG;
	const struct vd__ctl_layout *l = &layouts[type];
	size_t plen = len - sizeof(h);
	const void *p = (const char *)buf + sizeof(h);

	if (!is_reply) {
		if (h.status != 0 || h.nfds != 0 || plen != l->req)
			return -EBADMSG;
		switch (type) {
		case VD_CTL_EP_OPEN: {
			struct vd_ctl_ep_open_req r;
			memcpy(&r, p, sizeof(r));
			return check_ep_open_req(&r);
		}
		case VD_CTL_PORT_RESERVE:
		case VD_CTL_PORT_RELEASE: {
			struct vd_ctl_port_req r;
			memcpy(&r, p, sizeof(r));
			return check_port_req(&r);
		}
		case VD_CTL_EP_PORT_ADD:
		case VD_CTL_EP_PORT_DEL: {
			struct vd_ctl_ep_port_req r;
			memcpy(&r, p, sizeof(r));
			return check_ep_port_req(&r, type);
		}
		case VD_CTL_EP_PORTS_ADD:
		case VD_CTL_EP_PORTS_DEL: {
			struct vd_ctl_ep_ports_req r;
			memcpy(&r, p, sizeof(r));
			return check_ep_ports_req(&r, type);
		}
		default:
			return 0;
		}
	}

	/* An error reply carries a reason text (NUL-terminated, bounded) and no descriptors. */
	if (h.status != 0) {
		if (h.status > 0 || h.status < -4095 || h.nfds != 0 || plen > VD_CTL_REASON_MAX)
			return -EBADMSG;
		if (plen && ((const char *)p)[plen - 1] != '\0')
			return -EBADMSG;
		return 0;
	}
	if (h.nfds > l->rep_fds_max)
		return -EBADMSG;
	if (l->rep_var)
		return check_stat_rep(p, plen);
	if (plen != l->rep)
		return -EBADMSG;
	if (type == VD_CTL_EP_OPEN) {
		struct vd_ctl_ep_open_rep r;
		memcpy(&r, p, sizeof(r));
		return check_ep_open_rep(&r, h.nfds);
	}
	if (type == VD_CTL_EP_PORTS_ADD) {
		struct vd_ctl_ep_ports_rep r;
		memcpy(&r, p, sizeof(r));
		return check_ep_ports_rep(&r);
	}
	return 0;
}
