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
 *
 * IPv4 layer (opts.layer = VD_NIC_LAYER_IPV4, opts.local "IP" or "IP:0"; "IP:PORT" also owns UDP PORT):
 * frames are whole IPv4 packets and the link is a router of sorts. A sent packet goes to the IPv4-layer
 * nic whose address is the packet's destination address and that owns (protocol, destination port):
 * the ports added with vd_nic_port_add(), which, as viaductd does host-wide, are unique per (address,
 * protocol) among the nics of the link. Several IPv4-layer nics may share an address (processes of one
 * host). A packet nobody owns, or one too short to name a port, counts as unroutable: there is no kernel
 * on the link to answer it (the xdp backend would hand it to the kernel). Loss, duplication, reordering,
 * delay and corruption apply as in the UDP layer, but no link checksum is added: the receiver checks the
 * IPv4 header exactly as the xdp backend does (vd__ipv4_parse: a damaged header is dropped into
 * rx_malformed) and damage past the IPv4 header is for the stack's TCP or UDP checksum to find, so such a
 * record is counted in both corrupted and delivered. vd_nic_max_payload() is the link's IP MTU.
 * Ports: vd_nic_port_add(..., 0) picks from 32768-60999 (Linux's default ip_local_port_range). Port holds
 * (vd_nic_port_del with hold_ms) run on the virtual clock; closing a nic holds the ephemeral TCP ports it
 * picked for SIM_TIME_WAIT_NS (viaductd's default TIME-WAIT period) and frees the rest, like viaductd.
 * TX with VD_NIC_TX_L4_CSUM in peer.port: the TCP/UDP checksum is completed here, as xdp's device would
 * (VD_NIC_TX_PLACED changes nothing here: sim's buffers go out as written).
 * Lent TX memory (vd_nic_tx_lend, IPv4 layer): SIM_LEND_N regions of SIM_LEND_CHUNKS chunks of 4 KiB with
 * a 64-byte gap, at most half of them lent at once (as xdp keeps half its TX memory). An attached frame
 * is gathered and sent at once, but its pieces stay "queued" until tx_complete_ns later: they count in
 * vd_nic_tx_busy until then, and at completion their bytes are compared with what was sent
 * (counters.tx_rewritten), which is how a test catches a caller that writes memory still being sent.
 * UDP-layer and IPv4-layer nics share a link but never see each other's frames.
 */
#include "nic_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
#define L3_EPH_LO 32768u        /* IPv4 layer: Linux's default ip_local_port_range */
#define L3_EPH_HI 60999u
#define SIM_MAX_PORTS 1024u     /* per nic, as viaductd's default per-endpoint limit */
#define SIM_TIME_WAIT_NS (60ull * 1000000000ull)

/* A port a nic of the IPv4 layer owns. */
struct sim_port {
	uint16_t port_be;
	uint8_t proto;
	uint8_t ephemeral;     /* picked by port_add(0): held after close if TCP */
};

/* A port reserved for no one until the clock reaches `until`. */
struct sim_hold {
	uint64_t until;
	uint32_t ip_be;
	uint16_t port_be;
	uint8_t proto;
};

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

/* Lent TX memory (see the top of the file). */
#define SIM_LEND_N 32u
#define SIM_LEND_CHUNKS 4u
#define SIM_LEND_STRIDE 4096u
#define SIM_LEND_GAP 64u
enum { SIM_LENT_FREE = 0, SIM_LENT_OUT, SIM_LENT_BACK };
struct sim_piece_rec {          /* a queued piece not completed yet */
	uint64_t due, hash;
	const uint8_t *at;
	uint32_t len, chunk;
};
struct sim_att {                /* pieces attached to one TX buffer */
	uint32_t n, hdr_len;
	struct iovec iov[VD_NIC_TX_ATTACH_MAX];
};
struct sim_lend {
	uint8_t *mem;                           /* SIM_LEND_N * SIM_LEND_CHUNKS chunks */
	uint8_t state[SIM_LEND_N];
	uint32_t n_out;                         /* regions lent (or given back, refs pending) */
	uint32_t refs[SIM_LEND_N * SIM_LEND_CHUNKS];
	struct sim_piece_rec *q;
	uint32_t q_n, q_cap;
	struct sim_att att[TX_POOL];
};

struct sim_nic {
	struct vd_nic base;
	struct sim_lend *lend;       /* lazily, by the first tx_lend */
	struct vd_sim_link *link;
	struct sim_rec **heap;       /* min-heap by (due, seq) */
	uint32_t heap_n, heap_cap;
	struct rec_link lent;        /* sentinel of the list of records lent by rx_burst */
	int signaled;                /* the eventfd holds a count */
	uint32_t stride;
	uint8_t *tx_mem;
	uint32_t tx_nfree;
	uint32_t tx_free[TX_POOL];
	struct sim_port *ports;      /* IPv4 layer: ports added */
	uint32_t n_ports, cap_ports;
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
	uint32_t next_l3_port;
	struct sim_hold *holds;
	uint32_t n_holds, cap_holds;
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
		if (s->base.layer == VD_NIC_LAYER_IPV4) {
			/* The same check as the xdp backend's; the packet's source is the peer. */
			struct vd__ipv4_view v;
			if (vd__ipv4_parse(r->data, r->len, &v) != 0) {
				s->base.stats.rx_malformed++;
				free(r);
				continue;
			}
			r->len = v.tot_len;
			r->src.ip = v.src_ip_be;
			r->src.port = 0;
		} else if (rec_csum(&r->src, &s->base.local, r->data, r->len) != r->csum) {
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
		if (s->lend)
			s->lend->att[idx].n = 0;
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
		if (l->nics[i]->base.layer == VD_NIC_LAYER_UDP && l->nics[i]->base.local.ip == a->ip &&
		    l->nics[i]->base.local.port == a->port)
			return l->nics[i];
	return NULL;
}

/* ---- IPv4 layer: port ownership ------------------------------------------------------------------ */

static int l3_owns(const struct sim_nic *s, uint8_t proto, uint16_t port_be)
{
	if (proto == IPPROTO_UDP && s->base.local.port != 0 && s->base.local.port == port_be)
		return 1;
	for (uint32_t i = 0; i < s->n_ports; i++)
		if (s->ports[i].proto == proto && s->ports[i].port_be == port_be)
			return 1;
	return 0;
}

static struct sim_nic *l3_owner(const struct vd_sim_link *l, uint32_t ip_be, uint8_t proto, uint16_t port_be)
{
	for (uint32_t i = 0; i < l->n_nics; i++) {
		const struct sim_nic *s = l->nics[i];
		if (s->base.layer == VD_NIC_LAYER_IPV4 && s->base.local.ip == ip_be && l3_owns(s, proto, port_be))
			return l->nics[i];
	}
	return NULL;
}

/* Whether a hold keeps (ip, proto, port) from everyone; drops expired holds on the way. */
static int l3_held(struct vd_sim_link *l, uint32_t ip_be, uint8_t proto, uint16_t port_be)
{
	int held = 0;

	for (uint32_t i = 0; i < l->n_holds;) {
		struct sim_hold *h = &l->holds[i];
		if (h->until <= l->now) {
			*h = l->holds[--l->n_holds];
			continue;
		}
		if (h->ip_be == ip_be && h->proto == proto && h->port_be == port_be)
			held = 1;
		i++;
	}
	return held;
}

static int l3_hold(struct vd_sim_link *l, uint32_t ip_be, uint8_t proto, uint16_t port_be, uint64_t ns)
{
	if (l->n_holds == l->cap_holds) {
		uint32_t cap = l->cap_holds ? 2 * l->cap_holds : 16;
		struct sim_hold *h = realloc(l->holds, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->holds = h;
		l->cap_holds = cap;
	}
	uint64_t until = l->now + ns;
	l->holds[l->n_holds++] = (struct sim_hold){
		.until = until < l->now ? UINT64_MAX : until, .ip_be = ip_be, .port_be = port_be, .proto = proto,
	};
	return 0;
}

static int l3_port_free(struct vd_sim_link *l, uint32_t ip_be, uint8_t proto, uint16_t port_be)
{
	return !l3_owner(l, ip_be, proto, port_be) && !l3_held(l, ip_be, proto, port_be);
}

/* -EEXIST: this nic already owns the port; -EADDRINUSE: another nic or a hold has it. */
static int sim_port_add(struct vd_nic *nic, int proto, uint16_t *port_be)
{
	struct sim_nic *s = to_sim(nic);
	struct vd_sim_link *l = s->link;
	uint32_t ip = s->base.local.ip;
	uint16_t port = *port_be;

	if (s->base.layer != VD_NIC_LAYER_IPV4)
		return -EOPNOTSUPP; /* a UDP-layer nic receives only its own port's payloads */
	if (!l)
		return -ENOTCONN;
	if (s->n_ports >= SIM_MAX_PORTS)
		return -ENOSPC;
	if (port != 0) {
		if (l3_owns(s, (uint8_t)proto, port))
			return -EEXIST;
		if (!l3_port_free(l, ip, (uint8_t)proto, port))
			return -EADDRINUSE;
	} else {
		const uint32_t span = L3_EPH_HI - L3_EPH_LO + 1;
		uint32_t tries;
		for (tries = 0; tries < span; tries++) {
			port = htons((uint16_t)(L3_EPH_LO + (l->next_l3_port++ % span)));
			if (l3_port_free(l, ip, (uint8_t)proto, port))
				break;
		}
		if (tries == span)
			return -EADDRINUSE;
	}
	if (s->n_ports == s->cap_ports) {
		uint32_t cap = s->cap_ports ? 2 * s->cap_ports : 8;
		struct sim_port *p = realloc(s->ports, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->ports = p;
		s->cap_ports = cap;
	}
	s->ports[s->n_ports++] = (struct sim_port){
		.port_be = port, .proto = (uint8_t)proto, .ephemeral = *port_be == 0,
	};
	*port_be = port;
	return 0;
}

/* -ENOENT if the port was not added to this nic (its own UDP port cannot be given back). */
static int sim_port_del(struct vd_nic *nic, int proto, uint16_t port_be, uint32_t hold_ms)
{
	struct sim_nic *s = to_sim(nic);

	if (s->base.layer != VD_NIC_LAYER_IPV4)
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < s->n_ports; i++) {
		if (s->ports[i].proto != proto || s->ports[i].port_be != port_be)
			continue;
		if (hold_ms && s->link) {
			int rc = l3_hold(s->link, s->base.local.ip, (uint8_t)proto, port_be,
					 (uint64_t)hold_ms * 1000000u);
			if (rc)
				return rc;
		}
		s->ports[i] = s->ports[--s->n_ports];
		return 0;
	}
	return -ENOENT;
}

/*
 * The receiver of an IPv4 packet: the owner of (destination address, protocol, destination port). Reads
 * only the fields routing needs, wherever they lie inside the packet; the receiver checks the rest, so a
 * packet with a bad header checksum or length still arrives and is counted there as malformed.
 */
static struct sim_nic *l3_route(const struct vd_sim_link *l, const uint8_t *p, uint32_t len)
{
	if (len < VD_IPV4_HLEN)
		return NULL;
	uint32_t ihl = (uint32_t)(p[0] & 0x0f) * 4;
	if (ihl < VD_IPV4_HLEN || ihl + 4 > len || (p[9] != IPPROTO_TCP && p[9] != IPPROTO_UDP))
		return NULL;
	uint32_t dst;
	uint16_t dport;
	memcpy(&dst, p + 16, 4);
	memcpy(&dport, p + ihl + 2, 2);
	return l3_owner(l, dst, p[9], dport);
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
	int l3 = dst->base.layer == VD_NIC_LAYER_IPV4;
	/* No link checksum on the IPv4 layer: see the top of the file. */
	r->csum = l3 ? 0 : rec_csum(&r->src, &dst->base.local, r->data, r->len);
	if (corrupt && l3) {
		/* A routable packet has at least 24 bytes: the byte is somewhere in it. */
		uint64_t at = vd__rand_below(&l->rng, r->len);
		r->data[at] ^= (uint8_t)(1 + vd__rand_below(&l->rng, 255));
		l->c.corrupted++;
	} else if (corrupt) {
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

/* ---- lent TX memory --------------------------------------------------------------------------------- */

static uint64_t sim_hash(const uint8_t *p, uint32_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Completes the pieces that are due: checks they were not rewritten, drops their chunks' counts, and
 * takes back given-back regions nothing refers to any more. */
static void sim_lend_reap(struct sim_nic *s)
{
	struct sim_lend *d = s->lend;
	uint64_t now = s->link->now;
	for (uint32_t i = 0; i < d->q_n;) {
		struct sim_piece_rec *r = &d->q[i];
		if (r->due > now) {
			i++;
			continue;
		}
		if (sim_hash(r->at, r->len) != r->hash)
			s->link->c.tx_rewritten++;
		uint32_t reg = r->chunk / SIM_LEND_CHUNKS;
		d->refs[r->chunk]--;
		*r = d->q[--d->q_n]; /* completions come in any order: so may ours */
		if (d->state[reg] == SIM_LENT_BACK) {
			uint32_t busy = 0;
			for (uint32_t c = 0; c < SIM_LEND_CHUNKS; c++)
				busy += d->refs[reg * SIM_LEND_CHUNKS + c];
			if (!busy) {
				d->state[reg] = SIM_LENT_FREE;
				d->n_out--;
				s->base.stats.tx_lent = d->n_out;
			}
		}
	}
}

static int sim_tx_lend(struct vd_nic *nic, struct vd_nic_lent *out)
{
	struct sim_nic *s = to_sim(nic);
	if (s->base.layer != VD_NIC_LAYER_IPV4)
		return -EOPNOTSUPP;
	if (!s->lend) {
		s->lend = calloc(1, sizeof(*s->lend));
		if (!s->lend)
			return -ENOMEM;
		s->lend->mem = calloc(SIM_LEND_N * SIM_LEND_CHUNKS, SIM_LEND_STRIDE);
		if (!s->lend->mem) {
			free(s->lend);
			s->lend = NULL;
			return -ENOMEM;
		}
	}
	struct sim_lend *d = s->lend;
	sim_lend_reap(s);
	if (d->n_out >= SIM_LEND_N / 2) {
		s->base.stats.tx_lend_refused++;
		return -ENOBUFS;
	}
	for (uint32_t i = 0; i < SIM_LEND_N; i++) {
		if (d->state[i] != SIM_LENT_FREE)
			continue;
		d->state[i] = SIM_LENT_OUT;
		d->n_out++;
		s->base.stats.tx_lent = d->n_out;
		out->data = d->mem + (size_t)i * SIM_LEND_CHUNKS * SIM_LEND_STRIDE;
		out->id = i;
		out->chunks = SIM_LEND_CHUNKS;
		out->stride = SIM_LEND_STRIDE;
		out->gap = SIM_LEND_GAP;
		return 0;
	}
	s->base.stats.tx_lend_refused++;
	return -ENOBUFS;
}

static void sim_tx_unlend(struct vd_nic *nic, const struct vd_nic_lent *l)
{
	struct sim_nic *s = to_sim(nic);
	if (!s->lend || l->id >= SIM_LEND_N || s->lend->state[l->id] != SIM_LENT_OUT)
		return;
	s->lend->state[l->id] = SIM_LENT_BACK;
	sim_lend_reap(s);
	uint32_t busy = 0;
	for (uint32_t c = 0; c < SIM_LEND_CHUNKS; c++)
		busy += s->lend->refs[l->id * SIM_LEND_CHUNKS + c];
	if (!busy && s->lend->state[l->id] == SIM_LENT_BACK) {
		s->lend->state[l->id] = SIM_LENT_FREE;
		s->lend->n_out--;
		s->base.stats.tx_lent = s->lend->n_out;
	}
}

static int sim_tx_busy(struct vd_nic *nic, const struct vd_nic_lent *l, uint32_t chunk)
{
	struct sim_nic *s = to_sim(nic);
	if (!s->lend || l->id >= SIM_LEND_N || chunk >= SIM_LEND_CHUNKS)
		return 0;
	sim_lend_reap(s);
	return (int)s->lend->refs[l->id * SIM_LEND_CHUNKS + chunk];
}

/* The lent chunk (global index) holding [p, p + len), or -1 when that is not inside one chunk's data. */
static int64_t sim_lent_chunk(const struct sim_lend *d, const uint8_t *p, size_t len)
{
	if (p < d->mem || p >= d->mem + (size_t)SIM_LEND_N * SIM_LEND_CHUNKS * SIM_LEND_STRIDE)
		return -1;
	size_t off = (size_t)(p - d->mem), in = off % SIM_LEND_STRIDE;
	if (in < SIM_LEND_GAP || len > SIM_LEND_STRIDE - in || !len)
		return -1;
	return (int64_t)(off / SIM_LEND_STRIDE);
}

static int sim_tx_attach(struct vd_nic *nic, struct vd_frame *f, uint32_t hdr_len, const struct iovec *iov,
			 unsigned n)
{
	struct sim_nic *s = to_sim(nic);
	if (!s->lend || f->cookie >= TX_POOL || hdr_len > s->base.max_payload)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (sim_lent_chunk(s->lend, iov[i].iov_base, iov[i].iov_len) < 0)
			return -EINVAL;
	struct sim_att *a = &s->lend->att[f->cookie];
	memcpy(a->iov, iov, n * sizeof(*iov));
	a->n = n;
	a->hdr_len = hdr_len;
	return 0;
}

/*
 * An attached frame as the device sees it: headers then pieces, gathered into *buf (the caller frees it);
 * the pieces become queued (counted busy, checked at completion). NULL if the lengths disagree.
 */
static uint8_t *sim_gather(struct sim_nic *s, const struct vd_frame *fr, uint8_t **buf)
{
	struct sim_lend *d = s->lend;
	struct sim_att *a = &d->att[fr->cookie];
	uint32_t tot = a->hdr_len;
	for (uint32_t i = 0; i < a->n; i++)
		tot += (uint32_t)a->iov[i].iov_len;
	if (tot != fr->len || d->q_n + a->n > (1u << 20))
		return NULL;
	if (d->q_n + a->n > d->q_cap) {
		uint32_t cap = d->q_cap ? d->q_cap * 2 : 256;
		while (cap < d->q_n + a->n)
			cap *= 2;
		struct sim_piece_rec *q = realloc(d->q, cap * sizeof(*q));
		if (!q)
			return NULL;
		d->q = q;
		d->q_cap = cap;
	}
	uint8_t *b = malloc(tot ? tot : 1);
	if (!b)
		return NULL;
	memcpy(b, fr->data, a->hdr_len);
	uint32_t at = a->hdr_len;
	for (uint32_t i = 0; i < a->n; i++) {
		const uint8_t *p = a->iov[i].iov_base;
		uint32_t len = (uint32_t)a->iov[i].iov_len;
		memcpy(b + at, p, len);
		at += len;
		uint32_t ch = (uint32_t)sim_lent_chunk(d, p, len);
		d->refs[ch]++;
		d->q[d->q_n++] = (struct sim_piece_rec){ .due = s->link->now + s->link->p.tx_complete_ns,
							 .hash = sim_hash(p, len), .at = p, .len = len, .chunk = ch };
		s->link->c.tx_attached++;
		s->base.stats.tx_att_pieces++;
	}
	s->base.stats.tx_att_frames++;
	a->n = 0;
	*buf = b;
	return b;
}

/* Returns the frames taken (their TX buffers go back to the pool); -EMSGSIZE if the first is too big. */
static int sim_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct sim_nic *s = to_sim(nic);
	struct vd_sim_link *l = s->link;
	unsigned done;

	for (done = 0; done < n; done++) {
		const struct vd_frame *orig = &f[done];
		if (orig->len > s->base.max_payload)
			return done ? (int)done : -EMSGSIZE;
		struct vd_frame gathered = *orig;
		const struct vd_frame *fr = orig;
		uint8_t *gbuf = NULL;
		if (s->base.layer == VD_NIC_LAYER_IPV4 && (orig->peer.port & VD_NIC_TX_ATTACHED) && s->lend &&
		    orig->cookie < TX_POOL && s->lend->att[orig->cookie].n) {
			if (!sim_gather(s, orig, &gbuf))
				return done ? (int)done : -ENOMEM;
			gathered.data = gbuf;
			fr = &gathered;
		}
		if (s->base.layer == VD_NIC_LAYER_IPV4 && (fr->peer.port & VD_NIC_TX_L4_CSUM))
			(void)vd__ipv4_l4_csum_finish(fr->data, fr->len); /* what a device would do */
		struct sim_nic *dst = s->base.layer == VD_NIC_LAYER_IPV4 ? l3_route(l, fr->data, fr->len)
									 : find_nic(l, &fr->peer);
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
					if (c == 0) {
						free(gbuf);
						return done ? (int)done : -ENOMEM;
					}
					l->c.lost++; /* no memory for the duplicate: it is lost */
				}
			}
		}
		free(gbuf);
		l->c.sent++;
		s->base.stats.tx_frames++;
		s->base.stats.tx_bytes += fr->len;
		s->tx_free[s->tx_nfree++] = (uint32_t)fr->cookie;
	}
	return (int)done;
}

static int sim_flush(struct vd_nic *nic)
{
	/* frames are on the link as soon as tx_burst returns; lent pieces complete when due (whatever the
	 * sender looks at: a sender ignoring busy counts is caught) */
	struct sim_nic *s = to_sim(nic);
	if (s->lend)
		sim_lend_reap(s);
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

	/* As viaductd reclaims an exited endpoint's ports: picked TCP ports wait out TIME-WAIT. */
	for (uint32_t i = 0; l && i < s->n_ports; i++)
		if (s->ports[i].ephemeral && s->ports[i].proto == IPPROTO_TCP)
			(void)l3_hold(l, s->base.local.ip, IPPROTO_TCP, s->ports[i].port_be, SIM_TIME_WAIT_NS);

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
	free(s->ports);
	if (s->lend) {
		free(s->lend->q);
		free(s->lend->mem);
		free(s->lend);
	}
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
	.port_add = sim_port_add,
	.port_del = sim_port_del,
	.tx_lend = sim_tx_lend,
	.tx_unlend = sim_tx_unlend,
	.tx_busy = sim_tx_busy,
	.tx_attach = sim_tx_attach,
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
	int l3 = opts->layer == VD_NIC_LAYER_IPV4;
	if (l3 && !strchr(opts->local, ':')) {
		/* The IPv4 layer names only an address: "IP" stands for "IP:0". */
		char buf[64];
		if (strlen(opts->local) + 3 > sizeof(buf))
			return -EINVAL;
		strcpy(buf, opts->local);
		strcat(buf, ":0");
		rc = vd_addr_parse(buf, &local);
	} else {
		rc = vd_addr_parse(opts->local, &local);
	}
	if (rc)
		return rc;
	if (local.ip == 0) /* a sim nic's address is its identity on the link: it must be a real one */
		return -EINVAL;
	if (l3) {
		/* Port 0 means no own port here: the stack adds what it binds with vd_nic_port_add(). */
		if (local.port != 0 && !l3_port_free(l, local.ip, IPPROTO_UDP, local.port))
			rc = -EADDRINUSE;
	} else if (local.port == 0) {
		rc = pick_port(l, &local);
	} else if (find_nic(l, &local)) {
		rc = -EADDRINUSE;
	}
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
	s->base.layer = l3 ? VD_NIC_LAYER_IPV4 : VD_NIC_LAYER_UDP;
	s->base.max_payload = l3 ? l->p.mtu : l->p.mtu - IP_UDP_HLEN;
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
	free(link->holds);
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
