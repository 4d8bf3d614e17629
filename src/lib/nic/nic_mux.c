/* SPDX-License-Identifier: MIT */
/*
 * The mux nic: one vd_nic in front of a primary backend (xdp or udp) and the same-host shared-memory
 * channels (nic_shm.c), so that a protocol engine above keeps using one nic while frames to peers on this
 * host (or network namespace) move through shared memory.
 *
 * Routing (tx_burst): each frame goes by its destination. A route table keyed by address remembers, per
 * destination: remote (not one of our addresses: always the primary), local without a channel (the
 * primary; a channel attempt is due at retry_ns), pending (a channel is being set up: the primary
 * meanwhile), up (the channel). Nothing waits for a channel: until it is up, frames take the primary, and
 * the engine's protocol (sequence numbers, acks, duplicate suppression, reordering) makes the switch, in
 * either direction, invisible. One exception: an xdp primary cannot deliver to this host (AF_XDP TX leaves
 * on the wire), so while a channel is pending, frames to it get back-pressure (tx_burst queues fewer)
 * instead of being lost. A frame larger than the channel's slots (peers with different MTUs) takes
 * the primary too.
 *
 * TX buffers: tx_alloc does not know where the frames will go, so it lends slots of the channel the last
 * frame went to (the hint; bulk traffic to one peer then moves zero-copy), else primary buffers. In
 * tx_burst a lent slot whose frame goes to its own channel is published in place; any other frame is
 * copied once (at most one MTU) to where it goes, and a slot left behind is filled with a pad the
 * consumer skips (shm_ring.h: slots may be filled out of order, prod covers the filled prefix). A frame
 * to the primary resets the hint, so traffic to remote peers keeps the primary's own zero-copy buffers.
 *
 * RX (rx_burst): polls the channels' rings and the primary, alternating which goes first so that neither
 * starves the other. Channel frames are zero-copy views into the ring; their cookie has MUX_COOKIE set (bit
 * 62: the xdp backend uses bit 63 and UMEM offsets far below 2^62, udp a counter, sim a user-space
 * pointer, so none ever sets it) with the channel id and the slot index; primary frames keep their cookie.
 *
 * Control work (accepting channels, acks, peers gone) is noticed through an epoll set holding the
 * primary's fd, the listening socket, every channel's socket and the eventfds we sleep on. While busy-
 * polling, rx_burst looks at it at most every SLOW_NS (1 ms), reading the clock only every 64 bursts, so
 * the rendezvous costs one epoll_wait per millisecond and nothing per frame (every 64 bursts while one
 * of our own set-ups waits for its ack). Blocking waits sleep in it.
 * vd_nic_fd() returns it.
 *
 * A peer that dies (or closes its nic) closes its end of the channel's socket: we see EOF, stop sending on
 * the channel (its destination goes back to the primary) and keep reading what it left in the ring before
 * freeing it. A ring whose indices are impossible (corrupt shared memory) is abandoned at once and counted
 * in shm_errors.
 */
#include "nic_shm.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MUX_COOKIE (1ull << 62)
#define SLOW_NS 1000000ull            /* control work at most this often while busy-polling */
#define SLOW_EVERY 64u                /* bursts between clock reads */
#define SETUP_NS 1000000000ull        /* a channel not up within this is abandoned */
#define BACKOFF_MIN_NS 10000000ull    /* retry a local peer without a listener after 10 ms, ... */
#define BACKOFF_MAX_NS 1000000000ull  /* ... doubling up to 1 s */
#define MAX_CHANS 4096u               /* channel ids fit in 16 bits of the cookie */
#define ACCEPTS_PER_PASS 16u
#define LOCAL_REFRESH_NS 1000000000ull
#define SCRATCH 64u

enum { TAG_PRIMARY = 1, TAG_LISTEN, TAG_SOCK, TAG_EFD };
enum { R_EMPTY = 0, R_REMOTE, R_IDLE, R_PENDING, R_UP };

struct route {
	uint64_t key;        /* ip << 16 | port, never 0 for a used entry (port 0 is never a destination) */
	uint64_t retry_ns;   /* R_IDLE: next channel attempt */
	uint64_t backoff_ns;
	uint32_t chan;       /* R_PENDING, R_UP */
	uint8_t state;
};

struct mux_nic {
	struct vd_nic base;
	struct vd_nic_ops ops;      /* mux_ops under the primary's name: callers see "udp" or "xdp" */
	struct vd_nic *pri;
	int lfd;                    /* listening socket, -1 if the name was taken */

	struct vd__shm_chan **chans; /* by id; NULL = free */
	uint32_t nchans;             /* ids in use are below this */
	uint32_t *poll;              /* ids of channels to read (UP, or DEAD and not drained) */
	uint32_t npoll;

	struct route *rt;
	uint32_t rt_mask, rt_used;

	uint32_t *local_ips;
	uint32_t nlocal;
	uint64_t local_at_ns;

	uint64_t bursts;
	uint64_t now_ns;             /* coarse clock: refreshed every SLOW_EVERY bursts and in waits */
	uint64_t slow_at_ns;
	uint32_t turn;
	uint32_t gen;                /* channel generations */
	uint32_t pri_max;            /* with channels up, bursts between two polls of an idle primary (2^k-1) */
	uint32_t pri_gap, pri_wait;  /* current gap, bursts left before the next poll */
	uint32_t npending;           /* channels we are connecting (control work is then checked sooner) */
	uint32_t hint, hint_gen;     /* channel id + 1 (0: none) whose slots tx_alloc lends, and its generation */
	int pri_local;               /* the primary reaches addresses of this host (udp yes; xdp: its frames
	                              * leave on the wire and never come back) */

	struct {
		uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes, malformed, busy, errors;
	} shm;
	struct vd_frame scratch[SCRATCH];
};

static inline struct mux_nic *to_mux(struct vd_nic *nic)
{
	return (struct mux_nic *)nic;
}

/* epoll data: what the fd is, and for a channel its id and generation (an event reported in the same batch
 * as the channel's end must not reach a new channel that reused the id). */
static inline uint64_t tag(uint32_t type, uint32_t id, uint32_t gen)
{
	return (uint64_t)type << 56 | (uint64_t)(gen & 0xffffffu) << 32 | id;
}

static int ep_add(struct mux_nic *m, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	return epoll_ctl(m->base.fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_del(struct mux_nic *m, int fd)
{
	/* Explicit: an eventfd's file is shared with the peer, so closing our fd would not remove it. */
	if (fd >= 0)
		(void)epoll_ctl(m->base.fd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- local addresses ------------------------------------------------------------------------------ */

static void local_refresh(struct mux_nic *m)
{
	struct ifaddrs *list = NULL;
	uint32_t n = 0;

	m->local_at_ns = vd__mono_ns();
	if (getifaddrs(&list) < 0)
		return;
	for (struct ifaddrs *a = list; a; a = a->ifa_next)
		if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET)
			n++;
	uint32_t *ips = calloc(n ? n : 1, sizeof(*ips));
	if (ips) {
		n = 0;
		for (struct ifaddrs *a = list; a; a = a->ifa_next)
			if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET)
				ips[n++] = ((const struct sockaddr_in *)(const void *)a->ifa_addr)->sin_addr.s_addr;
		free(m->local_ips);
		m->local_ips = ips;
		m->nlocal = n;
	}
	freeifaddrs(list);
}

/* Whether ip (network order) belongs to this host or namespace: 127.0.0.0/8 (RFC 1122 3.2.1.3) or an
 * address of one of our interfaces (re-read at most once a second when an address is not found). */
static int is_local(void *ctx, uint32_t ip_be)
{
	struct mux_nic *m = ctx;

	if ((ntohl(ip_be) >> 24) == 127)
		return 1;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < m->nlocal; i++)
			if (m->local_ips[i] == ip_be)
				return 1;
		if (pass || vd__mono_ns() - m->local_at_ns < LOCAL_REFRESH_NS)
			break;
		local_refresh(m);
	}
	return 0;
}

/* ---- route table (open addressing, linear probing, never shrinks) ---------------------------------- */

static inline uint64_t addr_key(const struct vd_addr *a)
{
	return (uint64_t)a->ip << 16 | a->port;
}

static inline uint32_t key_hash(uint64_t k)
{
	k *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(k >> 32);
}

static struct route *rt_find(struct mux_nic *m, uint64_t key)
{
	for (uint32_t i = key_hash(key) & m->rt_mask;; i = (i + 1) & m->rt_mask) {
		if (m->rt[i].key == key)
			return &m->rt[i];
		if (m->rt[i].state == R_EMPTY)
			return NULL;
	}
}

static int rt_grow(struct mux_nic *m)
{
	uint32_t n = (m->rt_mask + 1) * 2;
	struct route *nr = calloc(n, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	for (uint32_t j = 0; j <= m->rt_mask; j++) {
		if (m->rt[j].state == R_EMPTY)
			continue;
		uint32_t i = key_hash(m->rt[j].key) & (n - 1);
		while (nr[i].state != R_EMPTY)
			i = (i + 1) & (n - 1);
		nr[i] = m->rt[j];
	}
	free(m->rt);
	m->rt = nr;
	m->rt_mask = n - 1;
	return 0;
}

/* The entry for key, created (state R_EMPTY, caller fills it) if absent; NULL only without memory. */
static struct route *rt_get(struct mux_nic *m, uint64_t key)
{
	struct route *r = rt_find(m, key);
	if (r)
		return r;
	if ((m->rt_used + 1) * 2 > m->rt_mask + 1 && rt_grow(m) < 0)
		return NULL;
	uint32_t i = key_hash(key) & m->rt_mask;
	while (m->rt[i].state != R_EMPTY)
		i = (i + 1) & m->rt_mask;
	m->rt_used++;
	m->rt[i].key = key;
	return &m->rt[i];
}

/* ---- channels ------------------------------------------------------------------------------------- */

static struct vd__shm_chan *chan_new(struct mux_nic *m)
{
	uint32_t id = 0;
	while (id < m->nchans && m->chans[id])
		id++;
	if (id >= MAX_CHANS)
		return NULL;
	struct vd__shm_chan *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = id;
	c->gen = ++m->gen & 0xffffffu;
	c->sock = c->efd_rx = c->efd_tx = -1;
	m->chans[id] = c;
	if (id == m->nchans)
		m->nchans++;
	return c;
}

static void chan_free(struct mux_nic *m, struct vd__shm_chan *c)
{
	if (c->initiator && c->state == VD__SHM_CONNECTING)
		m->npending--;
	ep_del(m, c->sock);
	ep_del(m, c->efd_rx);
	vd__shm_chan_close_fds(c);
	vd__shm_chan_unmap(c);
	free(c->tx.pending);
	m->chans[c->id] = NULL;
	while (m->nchans && !m->chans[m->nchans - 1])
		m->nchans--;
	free(c);
}

static void poll_del(struct mux_nic *m, uint32_t id)
{
	for (uint32_t i = 0; i < m->npoll; i++)
		if (m->poll[i] == id) {
			m->poll[i] = m->poll[--m->npoll];
			return;
		}
}

static void route_off(struct mux_nic *m, struct vd__shm_chan *c);

/*
 * Two channels with one peer happen when both sides connect at once. Both sides then send on the same one,
 * the one set up by the lower of the two addresses (as each sees the other: a wildcard-bound side is seen
 * at the address the peer sent to); the other stays open but idle, its ring polled.
 */
static int prefer(const struct mux_nic *m, const struct vd__shm_chan *c, const struct vd__shm_chan *old)
{
	if (old->state != VD__SHM_UP || c->initiator == old->initiator)
		return 0;
	struct vd_addr self = m->base.local;
	if (self.ip == 0)
		self.ip = c->peer.ip;
	int we_are_lower = addr_key(&self) < addr_key(&c->peer);
	return c->initiator == we_are_lower;
}

static void chan_up(struct mux_nic *m, struct vd__shm_chan *c)
{
	if (c->initiator)
		m->npending--; /* CONNECTING -> UP */
	/* Which lent TX slots are not filled yet (shm_ring.h): slots may come back out of order. */
	c->tx.pending = calloc((c->tx.nslots + 63) / 64, sizeof(uint64_t));
	if (!c->tx.pending || ep_add(m, c->efd_rx, EPOLLIN, tag(TAG_EFD, c->id, c->gen)) < 0) {
		m->shm.errors++;
		route_off(m, c);
		chan_free(m, c);
		return;
	}
	m->poll[m->npoll++] = c->id;
	struct route *r = rt_get(m, addr_key(&c->peer));
	if (!r)
		return; /* no memory for the route: the channel still receives, the primary sends */
	if (r->state == R_EMPTY)
		r->backoff_ns = BACKOFF_MIN_NS;
	if (r->state != R_UP || prefer(m, c, m->chans[r->chan])) {
		r->state = R_UP;
		r->chan = c->id;
	}
}

/* The destination's traffic goes back to the primary, or to another channel with the same peer. */
static void route_off(struct mux_nic *m, struct vd__shm_chan *c)
{
	struct route *r = rt_find(m, addr_key(&c->peer));
	if (!r || (r->state != R_UP && r->state != R_PENDING) || r->chan != c->id)
		return;
	for (uint32_t i = 0; i < m->npoll; i++) {
		struct vd__shm_chan *o = m->chans[m->poll[i]];
		if (o != c && o->state == VD__SHM_UP && addr_key(&o->peer) == r->key) {
			r->state = R_UP;
			r->chan = o->id;
			return;
		}
	}
	r->state = R_IDLE;
	r->retry_ns = m->now_ns + r->backoff_ns;
	if (r->backoff_ns < BACKOFF_MAX_NS)
		r->backoff_ns *= 2;
}

/* Peer gone (corrupt = 0: read what it left) or ring corrupt (corrupt = 1: read nothing more). */
static void chan_dead(struct mux_nic *m, struct vd__shm_chan *c, int corrupt)
{
	if (c->state == VD__SHM_DEAD) {
		if (corrupt)
			c->drained = 1;
		return;
	}
	int was_up = c->state == VD__SHM_UP;
	route_off(m, c);
	ep_del(m, c->sock);
	ep_del(m, c->efd_rx);
	vd__shm_chan_close_fds(c);
	if (corrupt)
		m->shm.errors++;
	if (!was_up) {
		chan_free(m, c);
		return;
	}
	c->state = VD__SHM_DEAD;
	c->drained = (uint8_t)corrupt;
}

/* Frees dead channels that are drained and have nothing lent; gives up on setups past their deadline. */
static void chans_reap(struct mux_nic *m)
{
	for (uint32_t id = 0; id < m->nchans; id++) {
		struct vd__shm_chan *c = m->chans[id];
		if (!c)
			continue;
		if (c->state == VD__SHM_DEAD && c->drained && c->lent == 0 && c->lent_tx == 0) {
			poll_del(m, id);
			chan_free(m, c);
		} else if ((c->state == VD__SHM_ACCEPTING || c->state == VD__SHM_CONNECTING) &&
			   m->now_ns > c->deadline_ns) {
			m->shm.errors++;
			chan_dead(m, c, 0);
		}
	}
}

static void try_connect(struct mux_nic *m, struct route *r, const struct vd_addr *to)
{
	struct vd__shm_chan *c = chan_new(m);
	int rc = c ? vd__shm_connect(c, &m->base.local, to, m->base.max_payload, m->now_ns + SETUP_NS)
		   : -ENOMEM;
	if (rc == 0)
		rc = ep_add(m, c->sock, EPOLLIN | EPOLLRDHUP, tag(TAG_SOCK, c->id, c->gen));
	if (rc < 0) {
		/* Nobody listens (a peer without shm, or not started yet), or we are out of resources. */
		if (c)
			chan_free(m, c);
		r->state = R_IDLE;
		r->retry_ns = m->now_ns + r->backoff_ns;
		if (r->backoff_ns < BACKOFF_MAX_NS)
			r->backoff_ns *= 2;
		return;
	}
	c->initiator = 1;
	m->npending++;
	r->state = R_PENDING;
	r->chan = c->id;
}

static void on_listen(struct mux_nic *m)
{
	for (unsigned k = 0; k < ACCEPTS_PER_PASS; k++) {
		struct vd__shm_chan *c = chan_new(m);
		if (!c)
			return;
		int rc = vd__shm_accept(c, m->lfd, m->now_ns + SETUP_NS);
		if (rc == 0)
			rc = ep_add(m, c->sock, EPOLLIN | EPOLLRDHUP, tag(TAG_SOCK, c->id, c->gen));
		if (rc < 0) {
			if (rc != -EAGAIN)
				m->shm.errors++;
			chan_free(m, c);
			if (rc == -EAGAIN)
				return;
			continue;
		}
		/* The hello usually arrived with the connection; if not, its socket event brings us back. */
		rc = vd__shm_accept_finish(c, &m->base.local, is_local, m);
		if (rc > 0)
			chan_up(m, c);
		else if (rc < 0) {
			m->shm.errors++;
			chan_free(m, c);
		}
	}
}

static void on_sock(struct mux_nic *m, struct vd__shm_chan *c, uint32_t events)
{
	int rc;
	switch (c->state) {
	case VD__SHM_ACCEPTING:
		rc = vd__shm_accept_finish(c, &m->base.local, is_local, m);
		break;
	case VD__SHM_CONNECTING:
		rc = vd__shm_connect_finish(c);
		break;
	case VD__SHM_UP: {
		/* Nothing more is ever sent on an up channel's socket: data or EOF both end the channel. */
		char b;
		ssize_t r = recv(c->sock, &b, 1, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
		    !(events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
			return;
		chan_dead(m, c, r > 0);
		return;
	}
	default:
		return;
	}
	if (rc > 0) {
		chan_up(m, c);
	} else if (rc < 0 || (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
		m->shm.errors++;
		chan_dead(m, c, 0);
	}
}

/* Handles what epoll reported: the control work of the channels. */
static void on_events(struct mux_nic *m, const struct epoll_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t d = ev[i].data.u64;
		uint32_t type = (uint32_t)(d >> 56), id = (uint32_t)d, gen = (uint32_t)(d >> 32) & 0xffffffu;
		struct vd__shm_chan *c = id < m->nchans ? m->chans[id] : NULL;
		if (c && c->gen != gen)
			c = NULL;
		if (type == TAG_LISTEN)
			on_listen(m);
		else if (type == TAG_SOCK && c && c->sock >= 0)
			on_sock(m, c, ev[i].events);
		else if (type == TAG_EFD && c && c->efd_rx >= 0)
			vd__shm_chan_drain_efd(c);
	}
}

static void slow_path(struct mux_nic *m, int timeout_ms, int *events)
{
	struct epoll_event ev[32];
	int n = epoll_wait(m->base.fd, ev, 32, timeout_ms);
	m->now_ns = vd__mono_ns();
	m->slow_at_ns = m->now_ns;
	if (events)
		*events = n < 0 ? (errno == EINTR) : n;
	if (n > 0)
		on_events(m, ev, n);
	chans_reap(m);
}

/* ---- data path ------------------------------------------------------------------------------------ */

static int chan_rx(struct mux_nic *m, struct vd__shm_chan *c, struct vd_frame *f, unsigned max)
{
	unsigned got = 0;

	while (got < max && !c->drained) {
		int avail = vd__shm_cons_avail(&c->rx);
		if (avail < 0) {
			chan_dead(m, c, 1);
			break;
		}
		if (avail == 0) {
			if (c->state == VD__SHM_DEAD)
				c->drained = 1;
			break;
		}
		for (; avail > 0 && got < max; avail--) {
			uint32_t idx, len;
			uint8_t *data;
			int rc = vd__shm_cons_take(&c->rx, &idx, &data, &len);
			if (rc != 0 || len > m->base.max_payload) {
				/* A pad, or unusable (longer than a slot, or than this nic accepts from any path).
				 * Its slot is released with the next frame, or now if nothing is lent. */
				if (rc <= 0)
					m->shm.malformed++;
				if (c->lent == 0)
					vd__shm_cons_release(&c->rx, c->rx.head);
				continue;
			}
			struct vd_frame *fr = &f[got++];
			fr->data = data;
			fr->len = len;
			fr->peer = c->peer;
			fr->cookie = MUX_COOKIE | (uint64_t)c->id << 32 | idx;
			c->lent++;
			m->shm.rx_frames++;
			m->shm.rx_bytes += len;
		}
	}
	return (int)got;
}

static int chans_rx(struct mux_nic *m, struct vd_frame *f, unsigned max)
{
	unsigned got = 0;
	/* Backwards: chan_dead() never removes from the list, but keep the loop safe for future edits. */
	for (uint32_t i = m->npoll; i-- > 0 && got < max;) {
		struct vd__shm_chan *c = m->chans[m->poll[i]];
		got += (unsigned)chan_rx(m, c, f + got, max - got);
	}
	return (int)got;
}

static int mux_rx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned max)
{
	struct mux_nic *m = to_mux(nic);
	int got = 0, r;

	if (++m->bursts % SLOW_EVERY == 0) {
		m->now_ns = vd__mono_ns();
		if (m->npending || m->now_ns - m->slow_at_ns >= SLOW_NS)
			slow_path(m, 0, NULL);
	}
	/* Alternate who goes first: a flood on one path must not starve the other. */
	int chans_first = m->turn++ & 1;
	if (m->npoll && chans_first)
		got = chans_rx(m, f, max);
	if ((unsigned)got < max && (m->npoll == 0 || m->pri_wait-- == 0)) {
		r = m->pri->ops->rx_burst(m->pri, f + got, max - (unsigned)got);
		if (r < 0 && got == 0 && m->npoll == 0)
			return r;
		if (r > 0)
			got += r;
		/* Idle: back off (see pri_max); busy: every burst. */
		m->pri_gap = r > 0 ? 0 : (m->pri_gap * 2 + 1) & m->pri_max;
		m->pri_wait = m->pri_gap;
	}
	if (m->npoll && !chans_first && (unsigned)got < max)
		got += chans_rx(m, f + got, max - (unsigned)got);
	return got;
}

static void mux_rx_release(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct mux_nic *m = to_mux(nic);
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t ck = f[i].cookie;
		if (!(ck & MUX_COOKIE)) {
			/* Primary frames go back in order, in chunks (the caller's array mixes both kinds). */
			m->scratch[k++] = f[i];
			if (k == SCRATCH) {
				m->pri->ops->rx_release(m->pri, m->scratch, k);
				k = 0;
			}
			continue;
		}
		struct vd__shm_chan *c = m->chans[(uint32_t)(ck >> 32) & 0xffffu];
		/* In order, so everything up to this slot is free; once nothing is lent, also the slots of
		 * malformed frames skipped after it. */
		c->rel_upto = (uint32_t)ck + 1;
		if (--c->lent == 0)
			c->rel_upto = c->rx.head;
		c->rel_dirty = 1;
	}
	if (k)
		m->pri->ops->rx_release(m->pri, m->scratch, k);
	for (uint32_t i = 0; i < m->npoll; i++) {
		struct vd__shm_chan *c = m->chans[m->poll[i]];
		if (c->rel_dirty) {
			c->rel_dirty = 0;
			vd__shm_cons_release(&c->rx, c->rel_upto);
		}
	}
}

/* The channel to send to peer through, or NULL for the primary; *hold set: neither yet (see pri_local). */
static struct vd__shm_chan *route_tx(struct mux_nic *m, const struct vd_addr *peer, int *hold)
{
	uint64_t key = addr_key(peer);
	struct route *r = rt_find(m, key);

	if (r && r->state == R_UP)
		return m->chans[r->chan];
	if (r && r->state == R_PENDING)
		*hold = !m->pri_local;
	if (r && r->state != R_IDLE)
		return NULL; /* remote, or pending */
	if (!r) {
		if (peer->port == 0 || key == addr_key(&m->base.local))
			return NULL;
		r = rt_get(m, key);
		if (!r)
			return NULL;
		r->backoff_ns = BACKOFF_MIN_NS;
		r->retry_ns = 0;
		r->state = is_local(m, peer->ip) ? R_IDLE : R_REMOTE;
		if (r->state == R_REMOTE)
			return NULL;
		m->now_ns = vd__mono_ns();
	}
	if (m->now_ns >= r->retry_ns) {
		try_connect(m, r, peer);
		*hold = r->state == R_PENDING && !m->pri_local;
	}
	return NULL;
}

/* The channel whose slots tx_alloc lends: the one the last frame went to, if it can take any frame. */
static struct vd__shm_chan *hint_chan(struct mux_nic *m)
{
	if (!m->hint)
		return NULL;
	struct vd__shm_chan *c = m->chans[m->hint - 1];
	if (!c || c->gen != m->hint_gen || c->state != VD__SHM_UP || !c->tx.pending ||
	    c->tx.cap < m->base.max_payload) {
		m->hint = 0;
		return NULL;
	}
	return c;
}

static void set_hint(struct mux_nic *m, const struct vd__shm_chan *c)
{
	m->hint = c ? c->id + 1 : 0;
	m->hint_gen = c ? c->gen : 0;
}

/*
 * Lends TX buffers: slots of the channel the last frame went to (zero-copy when the frame goes there
 * too, which bulk traffic to one peer always does), else, or beyond the ring's room, the primary's.
 */
static int mux_tx_alloc(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct mux_nic *m = to_mux(nic);
	struct vd__shm_chan *c = hint_chan(m);
	unsigned k = 0;

	if (c) {
		int room = vd__shm_prod_free(&c->tx);
		if (room < 0)
			chan_dead(m, c, 1);
		for (; room > 0 && k < n; k++, room--) {
			uint32_t idx = vd__shm_prod_reserve(&c->tx);
			f[k].data = vd__shm_prod_data(&c->tx, idx);
			f[k].len = m->base.max_payload;
			f[k].cookie = MUX_COOKIE | (uint64_t)c->id << 32 | idx;
		}
		c->lent_tx += k;
	}
	if (k == n)
		return (int)k;
	int r = m->pri->ops->tx_alloc(m->pri, f + k, n - k);
	if (r < 0)
		return k ? (int)k : r;
	return (int)k + r;
}

/* A lent slot comes back unused (aborted, or its frame went elsewhere): the consumer will skip it. */
static void slot_back(struct vd__shm_chan *c, uint32_t idx)
{
	vd__shm_prod_fill(&c->tx, idx, VD__SHM_PAD);
	vd__shm_prod_publish(&c->tx);
	c->lent_tx--;
}

static void mux_tx_abort(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct mux_nic *m = to_mux(nic);
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (f[i].cookie & MUX_COOKIE) {
			slot_back(m->chans[(uint32_t)(f[i].cookie >> 32) & 0xffffu], (uint32_t)f[i].cookie);
			continue;
		}
		m->scratch[k++] = f[i];
		if (k == SCRATCH) {
			m->pri->ops->tx_abort(m->pri, m->scratch, k);
			k = 0;
		}
	}
	if (k)
		m->pri->ops->tx_abort(m->pri, m->scratch, k);
}

static int pri_burst(struct mux_nic *m, struct vd_frame *f, unsigned n)
{
	return n ? m->pri->ops->tx_burst(m->pri, f, n) : 0;
}

/* Copies frame fr into channel d's ring. 1 done, 0 ring full, -EBADMSG ring corrupt (d is then dead). */
static int copy_to_chan(struct mux_nic *m, struct vd__shm_chan *d, const struct vd_frame *fr)
{
	int room = vd__shm_prod_free(&d->tx);
	if (room < 0) {
		chan_dead(m, d, 1);
		return room;
	}
	if (room == 0)
		return 0;
	uint32_t idx = vd__shm_prod_reserve(&d->tx);
	if (fr->len)
		memcpy(vd__shm_prod_data(&d->tx, idx), fr->data, fr->len);
	vd__shm_prod_fill(&d->tx, idx, fr->len);
	vd__shm_prod_publish(&d->tx);
	return 1;
}

/* Sends a frame that sits in a lent slot through the primary: one copy into a primary buffer. 1 sent, 0 no
 * room, or the primary's error. */
static int copy_to_primary(struct mux_nic *m, const struct vd_frame *fr)
{
	struct vd_frame g;
	int r = m->pri->ops->tx_alloc(m->pri, &g, 1);
	if (r <= 0)
		return r;
	if (fr->len > g.len) {
		m->pri->ops->tx_abort(m->pri, &g, 1);
		return -EMSGSIZE;
	}
	if (fr->len)
		memcpy(g.data, fr->data, fr->len);
	g.len = fr->len;
	g.peer = fr->peer;
	r = m->pri->ops->tx_burst(m->pri, &g, 1);
	if (r <= 0)
		m->pri->ops->tx_abort(m->pri, &g, 1);
	return r;
}

/*
 * Each frame goes where its destination's route says (route_tx). Four cases by where its buffer is and
 * where it goes: a lent slot of the right channel is published in place (zero-copy); a primary buffer for
 * the primary joins a run handed to the primary in one call; anything else is copied once (into the
 * channel's ring, or into a primary buffer) and its buffer given back. Frames are taken in order and the
 * primary's runs are flushed before any other frame, so that "the first n were queued" stays exact.
 */
static int mux_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct mux_nic *m = to_mux(nic);
	unsigned run = 0; /* first frame of the current run of primary buffers bound for the primary */

	for (unsigned i = 0; i < n; i++) {
		struct vd_frame *fr = &f[i];
		int hold = 0, lent = (fr->cookie & MUX_COOKIE) != 0;
		struct vd__shm_chan *d = route_tx(m, &fr->peer, &hold);
		if (d && fr->len > d->tx.cap)
			d = NULL; /* peers with different MTUs: the primary */
		if (!lent && !d && !hold) {
			set_hint(m, NULL);
			continue;
		}
		int q = pri_burst(m, f + run, i - run);
		if (q < 0)
			return run ? (int)run : q;
		if ((unsigned)q < i - run)
			return (int)(run + (unsigned)q);
		run = i;
		if (hold) {
			m->shm.busy++;
			return (int)i; /* back-pressure until the channel is up (or given up) */
		}
		struct vd__shm_chan *c = lent ? m->chans[(uint32_t)(fr->cookie >> 32) & 0xffffu] : NULL;
		uint32_t idx = (uint32_t)fr->cookie;
		if (lent && d == c) {
			vd__shm_prod_fill(&c->tx, idx, fr->len); /* in place */
			vd__shm_prod_publish(&c->tx);
			c->lent_tx--;
		} else {
			int r = d ? copy_to_chan(m, d, fr) : copy_to_primary(m, fr);
			if (r == -EBADMSG) {
				i--; /* d is dead now: route this frame again */
				continue;
			}
			if (r <= 0) {
				if (r == 0)
					m->shm.busy++;
				return i ? (int)i : (r < 0 ? r : 0);
			}
			if (lent)
				slot_back(c, idx);
			else
				m->pri->ops->tx_abort(m->pri, fr, 1); /* the primary's buffer is free again */
		}
		if (d) {
			c = d;
			m->shm.tx_frames++;
			m->shm.tx_bytes += fr->len;
			c->kick = 1;
		}
		set_hint(m, d);
		run = i + 1;
	}
	int q = pri_burst(m, f + run, n - run);
	if (q < 0)
		return run ? (int)run : q;
	return (int)(run + (unsigned)q);
}

static int mux_flush(struct vd_nic *nic)
{
	struct mux_nic *m = to_mux(nic);

	/* The doorbell of a channel: write its eventfd only if its consumer said it sleeps. */
	for (uint32_t i = 0; i < m->npoll; i++) {
		struct vd__shm_chan *c = m->chans[m->poll[i]];
		if (c->kick) {
			c->kick = 0;
			if (c->state == VD__SHM_UP && vd__shm_prod_need_wakeup(&c->tx))
				vd__shm_chan_kick(c);
		}
	}
	return m->pri->ops->flush(m->pri);
}

static void disarm_all(struct mux_nic *m)
{
	for (uint32_t i = 0; i < m->npoll; i++)
		vd__shm_cons_disarm(&m->chans[m->poll[i]]->rx);
}

static int mux_wait(struct vd_nic *nic, int timeout_ms)
{
	struct mux_nic *m = to_mux(nic);
	int ready = 0, events = 0;

	/* Ask each channel's producer for a wakeup, then look once more (see shm_ring.h: need_wakeup). */
	for (uint32_t i = 0; i < m->npoll && !ready; i++) {
		struct vd__shm_chan *c = m->chans[m->poll[i]];
		ready = c->drained ? 0 : vd__shm_cons_arm(&c->rx) != 0; /* corrupt counts: rx_burst handles it */
	}
	if (!ready) {
		int r = m->pri->ops->wait(m->pri, 0); /* arms the primary's wakeup (xdp) */
		if (r < 0) {
			disarm_all(m);
			return r;
		}
		ready = r > 0;
	}
	slow_path(m, ready ? 0 : timeout_ms, &events);
	disarm_all(m);
	return ready || events > 0;
}

static uint64_t mux_now_ns(const struct vd_nic *nic)
{
	const struct mux_nic *m = (const struct mux_nic *)nic;
	return m->pri->ops->now_ns(m->pri);
}

static void mux_stats(const struct vd_nic *nic, struct vd_nic_stats *out)
{
	const struct mux_nic *m = (const struct mux_nic *)nic;

	vd_nic_stats(m->pri, out);
	out->rx_frames += m->shm.rx_frames;
	out->rx_bytes += m->shm.rx_bytes;
	out->tx_frames += m->shm.tx_frames;
	out->tx_bytes += m->shm.tx_bytes;
	out->rx_malformed += m->shm.malformed;
	out->tx_busy += m->shm.busy;
	out->shm_rx_frames = m->shm.rx_frames;
	out->shm_tx_frames = m->shm.tx_frames;
	out->shm_errors = m->shm.errors;
	out->shm_channels = 0;
	for (uint32_t i = 0; i < m->npoll; i++)
		out->shm_channels += m->chans[m->poll[i]]->state == VD__SHM_UP;
}

static void mux_close(struct vd_nic *nic)
{
	struct mux_nic *m = to_mux(nic);

	for (uint32_t id = 0; id < m->nchans; id++)
		if (m->chans[id])
			chan_free(m, m->chans[id]);
	if (m->lfd >= 0)
		close(m->lfd);
	if (m->base.fd >= 0)
		close(m->base.fd);
	if (m->pri)
		m->pri->ops->close(m->pri);
	free(m->chans);
	free(m->poll);
	free(m->rt);
	free(m->local_ips);
	free(m);
}

static const struct vd_nic_ops mux_ops = {
	.name = "mux",
	.rx_burst = mux_rx_burst,
	.rx_release = mux_rx_release,
	.tx_alloc = mux_tx_alloc,
	.tx_burst = mux_tx_burst,
	.tx_abort = mux_tx_abort,
	.flush = mux_flush,
	.wait = mux_wait,
	.now_ns = mux_now_ns,
	.close = mux_close,
	.stats = mux_stats,
};

int vd__nic_mux_open(struct vd_nic **out, struct vd_nic *primary)
{
	int rc;
	struct mux_nic *m = calloc(1, sizeof(*m));
	if (!m) {
		primary->ops->close(primary);
		return -ENOMEM;
	}
	m->pri = primary;
	m->lfd = -1;
	m->ops = mux_ops;
	m->ops.name = primary->ops->name;
	m->base.ops = &m->ops;
	m->base.local = primary->local;
	m->base.max_payload = primary->max_payload;
	m->base.rx_mode = primary->rx_mode;
	/* Polling the udp primary is a recvmmsg syscall (about half a microsecond here), polling a ring a
	 * few cache-line reads (a burst that finds nothing, about 20 ns). So while channels are up, an idle
	 * udp socket is polled ever more rarely: after 1, 3, 7, ... then every 255 bursts; as soon as it
	 * delivers, every burst again. With at most 15 the syscall still took over half the polling time, and
	 * a channel frame arriving meanwhile waited for it to return: the shm ping-pong measured 0.58 us half
	 * round trip, against 0.32 us with 255 (same run). The price: a frame arriving on an idle udp socket
	 * while channels are up waits at most 255 bursts of ring polls (about 5 us, next to a kernel UDP
	 * hop's several); a busy socket is polled every burst. The xdp primary is a ring itself: every
	 * burst. */
	m->pri_max = strcmp(primary->ops->name, "udp") == 0 ? 255 : 0;
	/* While a channel is being set up, frames to that peer go through the primary if it can deliver
	 * them (udp, through the kernel's loopback); an xdp primary cannot (AF_XDP TX goes out on the wire),
	 * so they are held back instead (tx_burst's back-pressure) for the millisecond or so that takes,
	 * rather than lost and retransmitted after a timeout. */
	m->pri_local = strcmp(primary->ops->name, "udp") == 0;
	m->base.fd = epoll_create1(EPOLL_CLOEXEC);
	m->chans = calloc(MAX_CHANS, sizeof(*m->chans));
	m->poll = calloc(MAX_CHANS, sizeof(*m->poll));
	m->rt = calloc(256, sizeof(*m->rt));
	m->rt_mask = 255;
	if (m->base.fd < 0 || !m->chans || !m->poll || !m->rt) {
		rc = m->base.fd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	rc = primary->fd >= 0 ? ep_add(m, primary->fd, EPOLLIN, tag(TAG_PRIMARY, 0, 0)) : 0;
	if (rc < 0)
		goto fail;
	/* Without the name (taken by another socket on this address) peers cannot reach us through shared
	 * memory, but we can still reach them: not an error. */
	m->lfd = vd__shm_listen(&m->base.local);
	if (m->lfd >= 0 && ep_add(m, m->lfd, EPOLLIN, tag(TAG_LISTEN, 0, 0)) < 0) {
		close(m->lfd);
		m->lfd = -1;
	}
	local_refresh(m);
	m->now_ns = m->slow_at_ns = vd__mono_ns();
	*out = &m->base;
	return 0;
fail:
	mux_close(&m->base);
	return rc;
}
