/* SPDX-License-Identifier: MIT */
/*
 * The sim backend: an in-process simulated link with a virtual clock, for protocol tests that replay
 * exactly.
 *
 * A vd_sim_link is a shared medium. Each sim nic attaches with a unique local address and owns a bounded
 * receive queue: a min-heap of in-flight records ordered by (due time, send sequence), so delivery order
 * is a pure function of the calls made and the seed.
 *
 * Sending copies the payload into a record and decides, with the link's seeded PRNG and in a fixed order
 * per frame (loss, duplication; then per copy: jitter, reordering, corruption), what happens to it:
 *   - lost: never queued (counters.lost);
 *   - duplicated: a second copy with its own jitter, reordering and corruption decisions;
 *   - due = now + delay_ns + uniform[0, jitter_ns] (+ reorder_ns when reordered);
 *   - corrupted: one byte of the record (payload or its checksum) is XORed with a non-zero value.
 * Every record carries an Internet checksum (RFC 1071) over the payload and the addresses, computed at
 * send, as a UDP datagram carries one; rx_burst verifies it and drops a bad frame into rx_malformed, which
 * is what a real receiver's UDP checksum check does. A single flipped byte always changes a one's-
 * complement sum (a byte changes a 16-bit word by at most 0xff00, never by a multiple of 0xffff), so every
 * corrupted frame is caught.
 *
 * A frame for an address no nic holds is dropped at send and counted in counters.unroutable (not in lost:
 * a test that sends to a wrong address should see that it did). A frame for a receiver whose queue holds
 * queue_frames records is dropped (counters.overflowed, and the receiver's rx_dropped).
 *
 * Clock: starts at VD_SIM_EPOCH_NS, not 0, so protocol code that uses 0 as "never" is not fooled. It
 * moves only through vd_sim_advance() and vd_nic_wait().
 *
 * fd: each sim nic has an eventfd that is readable exactly while a frame is due in its queue, so an event
 * loop that polls vd_nic_fd() works unchanged (the clock still moves only through the calls above).
 *
 * Accounting: sent + duplicated = lost + unroutable + overflowed + corrupted + delivered + still queued
 * (+ records discarded when their receiver closed).
 */
#include "nic_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/core/frame.h"
#include "lib/core/rand.h"

#define VD_SIM_EPOCH_NS 1000000000ull
#define DEFAULT_MTU 1500u
#define MIN_MTU 68u             /* RFC 791 */
#define MAX_MTU 65535u
#define IP_UDP_HLEN 28u
#define DEFAULT_QUEUE 4096u
#define MAX_QUEUE (1u << 24)
#define MAX_TIME_NS (1ull << 60) /* bounds delay, jitter and reorder so due times never overflow */
#define TX_POOL 256u
#define EPHEMERAL_LO 49152u     /* RFC 6335 dynamic port range */
#define EPHEMERAL_HI 65535u

struct rec_link {
	struct rec_link *prev, *next;
};

struct sim_rec {
	struct rec_link link;        /* first: in the receiver's list of lent records */
	uint64_t due, seq;
	struct vd_addr src;
	uint32_t len;
	uint16_t csum;
	uint8_t data[];
};

struct sim_nic {
	struct vd_nic base;
	struct vd_sim_link *link;
	struct sim_rec **heap;       /* min-heap by (due, seq) */
	uint32_t heap_n, heap_cap;
	struct rec_link lent;        /* sentinel of the list of records lent by rx_burst */
	int signaled;                /* the eventfd holds a count */
	uint32_t stride;
	uint8_t *tx_mem;
	uint32_t tx_nfree;
	uint32_t tx_free[TX_POOL];
};

struct vd_sim_link {
	struct vd_sim_params p;
	uint64_t now;
	uint64_t seq;
	struct vd__rand rng;
	struct vd_sim_counters c;
	struct sim_nic **nics;
	uint32_t n_nics, cap_nics;
	uint32_t next_port;
};

static inline struct sim_nic *to_sim(struct vd_nic *nic)
{
	return (struct sim_nic *)nic;
}

/* ---- checksum over what a UDP checksum covers: addresses, length, payload -------------------------- */

static uint16_t rec_csum(const struct vd_addr *src, const struct vd_addr *dst, const uint8_t *data,
			uint32_t len)
{
	uint64_t s = (uint64_t)src->ip + dst->ip + src->port + dst->port + (len & 0xffff) + (len >> 16);
	s = (s & 0xffffffffu) + (s >> 32);
	return vd__csum_fold(vd__csum_partial(data, len, (uint32_t)s));
}

/* ---- heap ---------------------------------------------------------------------------------------- */

static inline int rec_before(const struct sim_rec *a, const struct sim_rec *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_push(struct sim_nic *s, struct sim_rec *r)
{
	uint32_t i = s->heap_n++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!rec_before(r, s->heap[parent]))
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = r;
}

static struct sim_rec *heap_pop(struct sim_nic *s)
{
	struct sim_rec *top = s->heap[0];
	struct sim_rec *last = s->heap[--s->heap_n];
	uint32_t i = 0, n = s->heap_n;

	while (n > 0) {
		uint32_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && rec_before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!rec_before(s->heap[c], last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (n > 0)
		s->heap[i] = last;
	return top;
}

static inline int due_now(const struct sim_nic *s)
{
	return s->heap_n > 0 && s->heap[0]->due <= s->link->now;
}

/* Keeps the eventfd readable exactly while a frame is due; a syscall only on a change of state. */
static void update_signal(struct sim_nic *s)
{
	int due = due_now(s);
	uint64_t v = 1;

	if (due && !s->signaled) {
		if (write(s->base.fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
			s->signaled = 1;
	} else if (!due && s->signaled) {
		if (read(s->base.fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
			s->signaled = 0;
	}
}

static void advance_to(struct vd_sim_link *l, uint64_t t)
{
	if (t > l->now)
		l->now = t;
	for (uint32_t i = 0; i < l->n_nics; i++)
		update_signal(l->nics[i]);
}

/* ---- data path ----------------------------------------------------------------------------------- */

static int sim_rx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned max)
{
	struct sim_nic *s = to_sim(nic);
	unsigned got = 0;

	while (got < max && due_now(s)) {
		struct sim_rec *r = heap_pop(s);
		if (rec_csum(&r->src, &s->base.local, r->data, r->len) != r->csum) {
			s->base.stats.rx_malformed++;
			free(r);
			continue;
		}
		r->link.next = &s->lent;
		r->link.prev = s->lent.prev;
		s->lent.prev->next = &r->link;
		s->lent.prev = &r->link;
		f[got].data = r->data;
		f[got].len = r->len;
		f[got].peer = r->src;
		f[got].cookie = (uint64_t)(uintptr_t)r;
		got++;
		s->link->c.delivered++;
		s->base.stats.rx_frames++;
		s->base.stats.rx_bytes += r->len;
	}
	update_signal(s);
	return (int)got;
}

static void sim_rx_release(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	(void)nic;
	for (unsigned i = 0; i < n; i++) {
		struct sim_rec *r = (struct sim_rec *)(uintptr_t)f[i].cookie;
		r->link.prev->next = r->link.next;
		r->link.next->prev = r->link.prev;
		free(r);
	}
}

static int sim_tx_alloc(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct sim_nic *s = to_sim(nic);
	unsigned k = n < s->tx_nfree ? n : s->tx_nfree;

	for (unsigned i = 0; i < k; i++) {
		uint32_t idx = s->tx_free[--s->tx_nfree];
		f[i].data = s->tx_mem + (size_t)idx * s->stride;
		f[i].len = s->base.max_payload;
		f[i].cookie = idx;
	}
	if (k < n)
		s->base.stats.tx_busy++;
	return (int)k;
}

static void sim_tx_abort(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct sim_nic *s = to_sim(nic);

	for (unsigned i = 0; i < n; i++)
		s->tx_free[s->tx_nfree++] = (uint32_t)f[i].cookie;
}

static struct sim_nic *find_nic(const struct vd_sim_link *l, const struct vd_addr *a)
{
	for (uint32_t i = 0; i < l->n_nics; i++)
		if (l->nics[i]->base.local.ip == a->ip && l->nics[i]->base.local.port == a->port)
			return l->nics[i];
	return NULL;
}

/* One copy of a frame onto the wire: its own delay, reordering and corruption decisions. */
static int send_copy(struct vd_sim_link *l, struct sim_nic *src, struct sim_nic *dst,
		     const struct vd_frame *fr)
{
	const struct vd_sim_params *p = &l->p;
	uint64_t due = l->now + p->delay_ns + vd__rand_below(&l->rng, p->jitter_ns + 1);
	int reorder = vd__rand_ppm(&l->rng, p->reorder_ppm);
	int corrupt = vd__rand_ppm(&l->rng, p->corrupt_ppm);

	if (dst->heap_n >= dst->heap_cap) {
		l->c.overflowed++;
		dst->base.stats.rx_dropped++;
		return 0;
	}
	struct sim_rec *r = malloc(sizeof(*r) + fr->len);
	if (!r)
		return -ENOMEM;
	if (reorder) {
		due += p->reorder_ns;
		l->c.reordered++;
	}
	r->due = due;
	r->seq = l->seq++;
	r->src = src->base.local;
	r->len = fr->len;
	memcpy(r->data, fr->data, fr->len);
	r->csum = rec_csum(&r->src, &dst->base.local, r->data, r->len);
	if (corrupt) {
		/* The byte may be in the payload or in the checksum: an empty payload can be hit too. */
		uint64_t at = vd__rand_below(&l->rng, (uint64_t)r->len + sizeof(r->csum));
		uint8_t x = (uint8_t)(1 + vd__rand_below(&l->rng, 255));
		if (at < r->len)
			r->data[at] ^= x;
		else
			((uint8_t *)&r->csum)[at - r->len] ^= x;
		l->c.corrupted++;
	}
	heap_push(dst, r);
	if (due <= l->now)
		update_signal(dst);
	return 0;
}

/* Returns the frames taken (their TX buffers go back to the pool); -EMSGSIZE if the first is too big. */
static int sim_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct sim_nic *s = to_sim(nic);
	struct vd_sim_link *l = s->link;
	unsigned done;

	for (done = 0; done < n; done++) {
		const struct vd_frame *fr = &f[done];
		if (fr->len > s->base.max_payload)
			return done ? (int)done : -EMSGSIZE;
		struct sim_nic *dst = find_nic(l, &fr->peer);
		if (!dst) {
			l->c.unroutable++;
		} else if (vd__rand_ppm(&l->rng, l->p.loss_ppm)) {
			l->c.lost++;
		} else {
			int copies = 1 + vd__rand_ppm(&l->rng, l->p.dup_ppm);
			if (copies == 2)
				l->c.duplicated++;
			for (int c = 0; c < copies; c++) {
				if (send_copy(l, s, dst, fr) < 0) {
					if (c == 0)
						return done ? (int)done : -ENOMEM;
					l->c.lost++; /* no memory for the duplicate: it is lost */
				}
			}
		}
		l->c.sent++;
		s->base.stats.tx_frames++;
		s->base.stats.tx_bytes += fr->len;
		s->tx_free[s->tx_nfree++] = (uint32_t)fr->cookie;
	}
	return (int)done;
}

static int sim_flush(struct vd_nic *nic)
{
	(void)nic; /* frames are on the link as soon as tx_burst returns */
	return 0;
}

/*
 * Returns 1 at once if a frame is due. Otherwise moves the link's clock to the earlier of this nic's next
 * due frame and now + timeout, and returns whether a frame is due then. With nothing in flight towards
 * this nic and timeout -1, returns 0 at once: nothing can ever arrive without another call being made.
 */
static int sim_wait(struct vd_nic *nic, int timeout_ms)
{
	struct sim_nic *s = to_sim(nic);
	struct vd_sim_link *l = s->link;

	if (due_now(s))
		return 1;
	if (s->heap_n == 0 && timeout_ms < 0)
		return 0;
	uint64_t target = s->heap_n ? s->heap[0]->due : UINT64_MAX;
	if (timeout_ms >= 0) {
		uint64_t limit = l->now + (uint64_t)timeout_ms * 1000000u;
		if (limit < target)
			target = limit;
	}
	advance_to(l, target);
	return due_now(s);
}

static uint64_t sim_now_ns(const struct vd_nic *nic)
{
	return ((const struct sim_nic *)nic)->link->now;
}

static void sim_close(struct vd_nic *nic)
{
	struct sim_nic *s = to_sim(nic);
	struct vd_sim_link *l = s->link;

	for (uint32_t i = 0; l && i < l->n_nics; i++) {
		if (l->nics[i] == s) {
			l->nics[i] = l->nics[--l->n_nics];
			break;
		}
	}
	while (s->heap_n)
		free(heap_pop(s));
	while (s->lent.next && s->lent.next != &s->lent) {
		struct rec_link *r = s->lent.next;
		s->lent.next = r->next;
		free(r); /* the link is the record's first member */
	}
	if (s->base.fd >= 0)
		close(s->base.fd);
	free(s->heap);
	free(s->tx_mem);
	free(s);
}

static const struct vd_nic_ops sim_ops = {
	.name = "sim",
	.rx_burst = sim_rx_burst,
	.rx_release = sim_rx_release,
	.tx_alloc = sim_tx_alloc,
	.tx_burst = sim_tx_burst,
	.tx_abort = sim_tx_abort,
	.flush = sim_flush,
	.wait = sim_wait,
	.now_ns = sim_now_ns,
	.close = sim_close,
};

/* ---- attach -------------------------------------------------------------------------------------- */

static int pick_port(struct vd_sim_link *l, struct vd_addr *a)
{
	const uint32_t span = EPHEMERAL_HI - EPHEMERAL_LO + 1;

	for (uint32_t tries = 0; tries < span; tries++) {
		uint32_t port = EPHEMERAL_LO + (l->next_port++ % span);
		a->port = htons((uint16_t)port);
		if (!find_nic(l, a))
			return 0;
	}
	return -EADDRINUSE;
}

int vd__nic_sim_open(struct vd_nic **out, const struct vd_nic_opts *opts)
{
	struct vd_sim_link *l = opts->sim;
	struct vd_addr local;
	int rc;

	if (!l || !opts->local)
		return -EINVAL;
	rc = vd_addr_parse(opts->local, &local);
	if (rc)
		return rc;
	if (local.ip == 0) /* a sim nic's address is its identity on the link: it must be a real one */
		return -EINVAL;
	if (local.port == 0)
		rc = pick_port(l, &local);
	else if (find_nic(l, &local))
		rc = -EADDRINUSE;
	if (rc)
		return rc;

	if (l->n_nics == l->cap_nics) {
		uint32_t cap = l->cap_nics ? 2 * l->cap_nics : 8;
		struct sim_nic **n = realloc(l->nics, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->nics = n;
		l->cap_nics = cap;
	}

	struct sim_nic *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &sim_ops;
	s->base.local = local;
	s->base.max_payload = l->p.mtu - IP_UDP_HLEN;
	s->base.rx_mode = VD_RX_AUTO; /* RX modes exist only on xdp */
	s->lent.next = s->lent.prev = &s->lent;
	s->heap_cap = l->p.queue_frames;
	s->stride = (s->base.max_payload + 63u) & ~63u;
	s->base.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->heap = malloc((size_t)s->heap_cap * sizeof(*s->heap));
	s->tx_mem = malloc((size_t)TX_POOL * s->stride);
	if (s->base.fd < 0 || !s->heap || !s->tx_mem) {
		rc = s->base.fd < 0 ? -errno : -ENOMEM;
		sim_close(&s->base); /* s->link is still NULL: nothing to detach */
		return rc;
	}
	for (uint32_t i = 0; i < TX_POOL; i++)
		s->tx_free[i] = TX_POOL - 1 - i;
	s->tx_nfree = TX_POOL;
	s->link = l;
	l->nics[l->n_nics++] = s;
	*out = &s->base;
	return 0;
}

/* ---- link ---------------------------------------------------------------------------------------- */

VD_API int vd_sim_link_new(struct vd_sim_link **out, const struct vd_sim_params *params)
{
	struct vd_sim_params p = { 0 };

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (params)
		p = *params;
	if (p.mtu == 0)
		p.mtu = DEFAULT_MTU;
	if (p.queue_frames == 0)
		p.queue_frames = DEFAULT_QUEUE;
	if (p.loss_ppm > 1000000 || p.dup_ppm > 1000000 || p.reorder_ppm > 1000000 ||
	    p.corrupt_ppm > 1000000 || p.mtu < MIN_MTU || p.mtu > MAX_MTU || p.queue_frames > MAX_QUEUE ||
	    p.delay_ns > MAX_TIME_NS || p.jitter_ns > MAX_TIME_NS || p.reorder_ns > MAX_TIME_NS)
		return -EINVAL;

	struct vd_sim_link *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->p = p;
	l->now = VD_SIM_EPOCH_NS;
	vd__rand_seed(&l->rng, p.seed);
	*out = l;
	return 0;
}

VD_API void vd_sim_link_free(struct vd_sim_link *link)
{
	if (!link)
		return;
	/* Nics should be closed first; any left are detached so that closing them later is still safe. */
	for (uint32_t i = 0; i < link->n_nics; i++)
		link->nics[i]->link = NULL;
	free(link->nics);
	free(link);
}

VD_API uint64_t vd_sim_now_ns(const struct vd_sim_link *link)
{
	return link->now;
}

VD_API void vd_sim_advance(struct vd_sim_link *link, uint64_t ns)
{
	uint64_t t = link->now + ns;
	advance_to(link, t < link->now ? UINT64_MAX : t);
}

VD_API void vd_sim_counters(const struct vd_sim_link *link, struct vd_sim_counters *out)
{
	*out = link->c;
}
