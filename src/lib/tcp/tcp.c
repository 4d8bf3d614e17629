/* SPDX-License-Identifier: MIT */
/*
 * The TCP layer: tcb allocation and lifetime, the connection table (4-tuple hash), the bind table (local
 * port -> tcbs bound to it, listeners among them), local ports taken from the nic (refcounted: a listener
 * and its accepted connections share one), ISNs (RFC 6528), the timer heap, the dirty list, poll and stats.
 */
#include "tcp_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DEF_BUF (256u * 1024u)
#define DEF_DELACK_MS 40u
#define DEF_RTO_MIN_MS 200u
#define DEF_MAX_CONNS 65536u
#define WS_BASE_BUF (1u << 20)   /* window scale chosen for at least this much, so SO_RCVBUF can grow */

uint64_t vd__tcp_clock(struct vd__tcp *t)
{
	if (t->now_held)
		return t->now;
	t->now = vd_nic_now_ns(t->nic);
	t->now_held = t->hold_clock;
	return t->now;
}

void vd__tcp_clock_hold(struct vd__tcp *t, int on)
{
	t->hold_clock = on != 0;
	t->now_held = 0;
}

void vd__tcp_clock_drop(struct vd__tcp *t)
{
	t->now_held = 0;
}

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;
	while (p < v && p < (1u << 30))
		p <<= 1;
	return p;
}

/* Frees the engine's tables and t itself (each may be NULL: a vd__tcp_new that failed half-way). */
static void tables_free(struct vd__tcp *t)
{
	struct vd__shmheap *heap = t->cfg.heap;
	vd__shm_free(heap, t->hash);
	vd__shm_free(heap, t->bind);
	vd__shm_free(heap, t->heap);
	vd__shm_free(heap, t->port_ref);
	vd__shm_free(heap, t->port_eph);
	vd__shm_free(heap, t);
}

int vd__tcp_new(struct vd__tcp **out, struct vd_nic *nic, const struct vd__tcp_cfg *cfg)
{
	struct vd__shmheap *heap = cfg ? cfg->heap : NULL;
	struct vd__tcp *t = vd__shm_calloc(heap, 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->nic = nic;
	if (cfg)
		t->cfg = *cfg;
	if (!t->cfg.sndbuf)
		t->cfg.sndbuf = DEF_BUF;
	if (!t->cfg.rcvbuf)
		t->cfg.rcvbuf = DEF_BUF;
	if (!t->cfg.time_wait_ms)
		t->cfg.time_wait_ms = TCP_MSL_DEFAULT_MS;
	if (!t->cfg.delack_ms)
		t->cfg.delack_ms = DEF_DELACK_MS;
	if (t->cfg.delack_ms >= 500)
		t->cfg.delack_ms = 499;   /* RFC 1122 4.2.3.2: the delay MUST be less than 0.5 s */
	if (!t->cfg.rto_min_ms)
		t->cfg.rto_min_ms = DEF_RTO_MIN_MS;
	if (!t->cfg.max_conns)
		t->cfg.max_conns = DEF_MAX_CONNS;
	uint64_t secret = t->cfg.secret;
	if (!secret && getrandom(&secret, sizeof(secret), 0) != sizeof(secret)) {
		vd__shm_free(heap, t);
		return -EIO;
	}
	vd__siphash_key(t, secret);

	struct vd_addr la;
	int r = vd_nic_local_addr(nic, &la);
	if (r < 0) {
		vd__shm_free(heap, t);
		return r;
	}
	t->lip = la.ip;
	t->ip_mtu = vd_nic_max_payload(nic);
	if (t->ip_mtu < 68 || t->ip_mtu > 65535) {
		vd__shm_free(heap, t);
		return -EINVAL;
	}
	uint32_t hsize = pow2_at_least(t->cfg.max_conns / 2 < 256 ? 256 : t->cfg.max_conns / 2);
	t->hash = vd__shm_calloc(heap, hsize, sizeof(*t->hash));
	t->hash_mask = hsize - 1;
	t->bind = vd__shm_calloc(heap, 1024, sizeof(*t->bind));
	t->bind_mask = 1023;
	t->heap_cap = t->cfg.max_conns + 1;
	t->heap = vd__shm_calloc(heap, t->heap_cap, sizeof(*t->heap));
	t->port_ref = vd__shm_calloc(heap, 65536, sizeof(*t->port_ref));
	t->port_eph = vd__shm_calloc(heap, 65536 / 8, 1);
	if (!t->hash || !t->bind || !t->heap || !t->port_ref || !t->port_eph) {
		tables_free(t);
		return -ENOMEM;
	}
	vd__tcp_clock(t);
	*out = t;
	return 0;
}

static uint16_t eph_pool_take(struct vd__tcp *t, uint32_t min);

void vd__tcp_free(struct vd__tcp *t)
{
	if (!t)
		return;
	vd__tcp_clock(t);
	while (t->all) {
		struct vd__tcb *c = t->all;
		if (c->state == TCPS_TIME_WAIT) {
			(void)vd__tcp_tw_handoff(c);
		} else if (c->state >= TCPS_SYN_RCVD) {
			vd__tcp_send_ctl(c, TH_RST | TH_ACK);   /* RFC 9293 3.10.4 ABORT */
			t->st.rst_out++;
		}
		c->closed_by_user = 1;
		vd__tcp_free_tcb(c);   /* a child leaves its listener's queue; a listener takes its children */
	}
	vd__tcp_tx_flush(t);
	if (t->tx.navail)
		vd_nic_tx_abort(t->nic, t->tx.avail, t->tx.navail);
	/* the pooled ephemeral ports owe no TIME-WAIT of ours, but their peers may keep one (they closed
	 * first): held, as vd__tcp_port_recycle explains */
	for (uint16_t p; (p = eph_pool_take(t, 1)) != 0;) {
		uint32_t i = ntohs(p);
		t->port_eph[i / 8] &= (uint8_t)~(1u << (i % 8));   /* a duplicate entry is then stale */
		vd_nic_port_del(t->nic, IPPROTO_TCP, p, t->cfg.time_wait_ms);
	}
	tables_free(t);
}

void vd__tcp_stats(const struct vd__tcp *t, struct vd__tcp_stats *out)
{
	*out = t->st;
}

uint32_t vd__tcp_closing(const struct vd__tcp *t)
{
	uint32_t n = 0;
	for (const struct vd__tcb *c = t->all; c; c = c->all_next)
		if (c->closed_by_user && c->state != TCPS_LISTEN && c->state != TCPS_FIN_WAIT_2 &&
		    c->state != TCPS_TIME_WAIT && c->state != TCPS_CLOSED)
			n++;
	return n;
}

void vd__tcp_set_notify(struct vd__tcp *t, void (*fn)(void *ctx, struct vd__tcb *c), void *ctx)
{
	t->notify = fn;
	t->notify_ctx = ctx;
}

void vd__tcp_notify(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	if (!t->notify)
		return;
	if (c->parent)
		t->notify(t->notify_ctx, c->parent);   /* not accepted yet: the listener's POLLIN may change */
	else if (!c->closed_by_user)
		t->notify(t->notify_ctx, c);
}

/* ---- ISN (RFC 6528) and timestamps ---------------------------------------------------------------- */

static uint64_t tuple_hash(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport,
			   uint32_t dom)
{
	uint8_t b[16];
	memcpy(b, &lip, 4);
	memcpy(b + 4, &rip, 4);
	memcpy(b + 8, &lport, 2);
	memcpy(b + 10, &rport, 2);
	memcpy(b + 12, &dom, 4);
	return vd__siphash(t, b, sizeof(b));
}

/* RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us timer. */
uint32_t vd__tcp_isn(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	return (uint32_t)(t->now / 4000) + (uint32_t)tuple_hash(t, lip, lport, rip, rport, 0x69736e00);
}

/* RFC 7323 5.4 / 7.1: a per-connection random offset for TSval, so timestamps leak no host clock. */
uint32_t vd__tcp_ts_off(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	return (uint32_t)tuple_hash(t, lip, lport, rip, rport, 0x74730000);
}

/* RFC 7323 5.4: a 1 ms timestamp clock. */
uint32_t vd__tcp_ts_now(struct vd__tcp *t)
{
	return (uint32_t)(t->now / NS_PER_MS);
}

/* ---- tcb lifetime --------------------------------------------------------------------------------- */

struct vd__tcb *vd__tcp_alloc_tcb(struct vd__tcp *t)
{
	if (t->st.conns >= t->cfg.max_conns)
		return NULL;
	struct vd__tcb *c = vd__shm_calloc(t->cfg.heap, 1, sizeof(*c));
	if (!c)
		return NULL;
	c->t = t;
	c->heap_idx = UINT32_MAX;
	c->state = TCPS_CLOSED;
	c->sndbuf = t->cfg.sndbuf;
	c->rcvbuf = t->cfg.rcvbuf;
	c->keepidle_s = 7200;   /* RFC 1122 4.2.3.6: no less than two hours by default */
	c->keepintvl_s = 75;    /* Linux's defaults */
	c->keepcnt = 9;
	c->all_next = t->all;
	if (t->all)
		t->all->all_prev = c;
	t->all = c;
	t->st.conns++;
	return c;
}

static void heap_remove(struct vd__tcp *t, struct vd__tcb *c);

static void dirty_del(struct vd__tcb *c)
{
	if (!c->in_dirty)
		return;
	if (c->dprev)
		c->dprev->dnext = c->dnext;
	else
		c->t->dirty = c->dnext;
	if (c->dnext)
		c->dnext->dprev = c->dprev;
	c->dnext = c->dprev = NULL;
	c->in_dirty = 0;
}

static void queue_del(struct vd__tcb *c)
{
	struct vd__tcb *l = c->parent;
	if (!l)
		return;
	int in_acq = c->in_acq;
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else if (in_acq)
		l->acq_head = c->qnext;
	else
		l->synq = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else if (in_acq)
		l->acq_tail = c->qprev;
	if (in_acq)
		l->acq_len--;
	else
		l->syn_len--;
	c->qnext = c->qprev = NULL;
	c->parent = NULL;
	c->in_acq = 0;
}

void vd__tcp_free_tcb(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	if (c->state == TCPS_LISTEN || c->synq || c->acq_head) {
		/* a listener's children go with it: reset those that reached the peer (Linux does the same) */
		while (c->synq || c->acq_head) {
			struct vd__tcb *k = c->acq_head ? c->acq_head : c->synq;
			if (k->state != TCPS_CLOSED) {
				vd__tcp_send_ctl(k, TH_RST | TH_ACK);
				t->st.rst_out++;
			}
			vd__tcp_free_tcb(k);
		}
	}
	queue_del(c);
	vd__tcp_hash_del(c);
	vd__tcp_bind_del(c);
	dirty_del(c);
	heap_remove(t, c);
	if (c->owns_port && c->closed_clean)
		vd__tcp_port_recycle(t, c->lport);
	else if (c->owns_port)
		vd__tcp_port_put(t, c->lport, 0);
	if (c->all_prev)
		c->all_prev->all_next = c->all_next;
	else
		t->all = c->all_next;
	if (c->all_next)
		c->all_next->all_prev = c->all_prev;
	vd__ring_free(&c->snd);
	vd__ring_free(&c->rcv);
	t->st.conns--;
	vd__shm_free(t->cfg.heap, c);
}

/* RFC 7323 2.3: the smallest shift that lets the 16-bit field cover the buffer (at least WS_BASE_BUF, so
 * a later SO_RCVBUF increase can still be advertised). */
uint8_t vd__tcp_wscale_for(uint32_t rcvbuf)
{
	uint32_t base = rcvbuf > WS_BASE_BUF ? rcvbuf : WS_BASE_BUF;
	uint8_t ws = 0;
	while (ws < 14 && (base >> ws) > 65535u)
		ws++;
	return ws;
}

void vd__tcp_set_mss(struct vd__tcb *c)
{
	uint32_t m = c->t->ip_mtu - IP_HLEN - TCP_HLEN;
	if (c->peer_mss < m)
		m = c->peer_mss;
	if (c->user_mss && c->user_mss < m)
		m = c->user_mss;
	/* RFC 6691: the MSS counts no options; the data per segment is what remains after ours */
	if (c->ts_ok)
		m -= 12;
	if (m < 64)
		m = 64;   /* a floor against absurd announced values (Linux clamps similarly) */
	c->mss = m;
}

int vd__tcb_init_conn(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	c->rcv_wscale = vd__tcp_wscale_for(c->rcvbuf);
	if (!c->snd.buf && vd__ring_init(&c->snd, c->t->cfg.heap, c->sndbuf) < 0)
		return -ENOMEM;
	/* one window-scale unit of slack: the advertised edge is rounded up to it (see vd__tcp_rcv_wnd) */
	if (!c->rcv.buf && vd__ring_init(&c->rcv, c->t->cfg.heap, c->rcvbuf + (1u << 14)) < 0)
		return -ENOMEM;
	c->rto = vd__tcp_initial_rto();
	c->peer_mss = 536;   /* RFC 9293 3.7.1: without the option, 536 */
	c->mss = 536;
	c->last_rcv_ns = t->now;
	return 0;
}

void vd__tcp_set_state(struct vd__tcb *c, int state)
{
	c->state = (uint8_t)state;
}

int vd__tcp_drop(struct vd__tcb *c, int err)
{
	if (err)
		c->err = err;
	if (err == -ECONNRESET)
		c->was_reset = 1;
	int was_child = c->parent != NULL;
	c->state = TCPS_CLOSED;
	c->t_rto = c->t_delack = c->t_persist = c->t_keep = c->t_2msl = c->t_tlp = 0;
	vd__tcp_hash_del(c);
	dirty_del(c);
	if (was_child || c->closed_by_user) {
		if (was_child)
			vd__tcp_notify(c);
		vd__tcp_free_tcb(c);
		return 1;
	}
	vd__tcp_notify(c);
	return 0;
}

/*
 * A TIME-WAIT connection nobody holds only answers a retransmitted FIN with an ACK (RFC 9293 3.10.7.4):
 * its send ring is empty (our FIN was acknowledged) and nobody will read its receive ring. The rings
 * (about half a MiB at the default buffer sizes) go back to the heap now rather than after 2 MSL: a
 * server that closes first, or a simultaneous close, keeps one TIME-WAIT per connection, and at a few
 * thousand connections a second their rings would exhaust the stack's heap (new connections then fail),
 * where the kernel keeps only a small timewait socket.
 */
void vd__tcp_tw_trim(struct vd__tcb *c)
{
	vd__ring_free(&c->snd);
	vd__ring_free(&c->rcv);
}

int vd__tcp_tw_handoff(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	if (!c->ephemeral || !c->owns_port || vd__tcp_port_refs(t, c->lport) != 1)
		return 0;
	uint64_t left = c->t_2msl > t->now ? (c->t_2msl - t->now) / NS_PER_MS : 0;
	vd__tcp_port_put(t, c->lport, left ? (uint32_t)left : 1);
	c->owns_port = 0;
	return 1;
}

int vd__tcp_enter_time_wait(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	c->state = TCPS_TIME_WAIT;
	c->t_rto = c->t_persist = c->t_keep = c->t_delack = c->t_tlp = 0;
	if (c->closed_by_user && c->ephemeral && c->owns_port && vd__tcp_port_refs(t, c->lport) == 1) {
		/*
		 * An ACK still owed goes out before the tcb does: after a simultaneous close (RFC 9293 3.6 figure
		 * 13) the peer's FIN moved us to CLOSING and the ACK of ours, often in the same burst, moves us
		 * here before the output pass would have acknowledged that FIN. Unacknowledged, the peer would
		 * retransmit it into the hold below (dropped) until it gives up.
		 */
		if (c->ack_now)
			vd__tcp_send_ctl(c, TH_ACK);
		/* contract (tcp.h): the TIME-WAIT of an ephemeral port the application closed belongs to viaductd,
		 * which keeps the port for 2 MSL (RFC 9293 3.6.1) */
		vd__tcp_port_put(t, c->lport, t->cfg.time_wait_ms);
		c->owns_port = 0;
		vd__tcp_free_tcb(c);
		return 1;
	}
	if (c->closed_by_user)
		vd__tcp_tw_trim(c);
	/* RFC 9293 3.10.7.4: TIME-WAIT lasts 2 MSL (cfg.time_wait_ms is that whole period) */
	c->t_2msl = t->now + (uint64_t)t->cfg.time_wait_ms * NS_PER_MS;
	vd__tcp_timer_sched(c);
	vd__tcp_notify(c);
	return 0;
}

/* ---- connection table ------------------------------------------------------------------------------ */

static inline uint32_t hash4(const struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip,
			     uint16_t rport)
{
	/* keyed multiplicative mixing: cheap per packet, and the key keeps remote peers from choosing chains */
	uint64_t h = ((uint64_t)rip << 32 | (uint32_t)rport << 16 | lport) ^ t->k1;
	h ^= (uint64_t)lip * 0x9e3779b97f4a7c15ull;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 31;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 29;
	return (uint32_t)h & t->hash_mask;
}

struct vd__tcb *vd__tcp_lookup(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	for (struct vd__tcb *c = t->hash[hash4(t, lip, lport, rip, rport)]; c; c = c->hnext)
		if (c->rport == rport && c->rip == rip && c->lport == lport && c->lip == lip)
			return c;
	return NULL;
}

void vd__tcp_hash_add(struct vd__tcb *c)
{
	if (c->in_hash)
		return;
	struct vd__tcb **b = &c->t->hash[hash4(c->t, c->lip, c->lport, c->rip, c->rport)];
	c->hnext = *b;
	*b = c;
	c->in_hash = 1;
}

void vd__tcp_hash_del(struct vd__tcb *c)
{
	if (!c->in_hash)
		return;
	struct vd__tcb **p = &c->t->hash[hash4(c->t, c->lip, c->lport, c->rip, c->rport)];
	while (*p && *p != c)
		p = &(*p)->hnext;
	if (*p)
		*p = c->hnext;
	c->hnext = NULL;
	c->in_hash = 0;
}

/* ---- bind table and ports --------------------------------------------------------------------------- */

static inline uint32_t bind_slot(const struct vd__tcp *t, uint16_t lport)
{
	return ntohs(lport) & t->bind_mask;
}

void vd__tcp_bind_add(struct vd__tcb *c)
{
	if (c->in_bind)
		return;
	struct vd__tcb **b = &c->t->bind[bind_slot(c->t, c->lport)];
	c->bnext = *b;
	*b = c;
	c->in_bind = 1;
}

void vd__tcp_bind_del(struct vd__tcb *c)
{
	if (!c->in_bind)
		return;
	struct vd__tcb **p = &c->t->bind[bind_slot(c->t, c->lport)];
	while (*p && *p != c)
		p = &(*p)->bnext;
	if (*p)
		*p = c->bnext;
	c->bnext = NULL;
	c->in_bind = 0;
}

/* A listener for (lip, lport): one bound to that address before one bound to any. */
struct vd__tcb *vd__tcp_find_listener(struct vd__tcp *t, uint32_t lip, uint16_t lport)
{
	struct vd__tcb *any = NULL;
	for (struct vd__tcb *c = t->bind[bind_slot(t, lport)]; c; c = c->bnext) {
		if (c->state != TCPS_LISTEN || c->lport != lport)
			continue;
		if (c->lip == lip)
			return c;
		if (c->lip == 0 && !any)
			any = c;
	}
	return any;
}

/*
 * Whether c may bind (lip, lport), as Linux decides: both SO_REUSEPORT, or both SO_REUSEADDR with the
 * other not listening; a port held only by connections (accepted ones, TIME-WAIT) needs SO_REUSEADDR.
 */
int vd__tcp_bind_conflict(struct vd__tcp *t, const struct vd__tcb *c, uint32_t lip, uint16_t lport)
{
	int bound_seen = 0;
	for (struct vd__tcb *o = t->bind[bind_slot(t, lport)]; o; o = o->bnext) {
		if (o == c || o->lport != lport)
			continue;
		if (o->lip && lip && o->lip != lip)
			continue;
		bound_seen = 1;
		if (c->reuseport && o->reuseport)
			continue;
		if (c->reuseaddr && o->reuseaddr && o->state != TCPS_LISTEN)
			continue;
		return 1;
	}
	if (!bound_seen && t->port_ref[ntohs(lport)] && !c->reuseaddr)
		return 1;
	return 0;
}

/*
 * Takes the oldest pooled ephemeral port that is still ours and unused, once at least min ports wait
 * there (a delay line: see vd__tcp_port_recycle); 0 if there is none.
 */
static uint16_t eph_pool_take(struct vd__tcp *t, uint32_t min)
{
	while (t->eph_n && t->eph_n >= min) {
		uint16_t p = t->eph_pool[t->eph_head];
		uint32_t i = ntohs(p);
		t->eph_head = (t->eph_head + 1) % VD__TCP_EPH_POOL;
		t->eph_n--;
		/* An entry goes stale when the application bound that port by number meanwhile (it is then
		 * not ephemeral any more, or in use): skip it. */
		if (!t->port_ref[i] && (t->port_eph[i / 8] >> (i % 8)) & 1)
			return p;
	}
	return 0;
}

int vd__tcp_port_get(struct vd__tcp *t, uint16_t *port_be, int *ephemeral)
{
	if (*port_be == 0) {
		uint16_t p = eph_pool_take(t, VD__TCP_EPH_POOL);
		if (p) {
			/* still steered to us by viaductd: no round trip to it on this connect */
			t->port_ref[ntohs(p)] = 1;
			*port_be = p;
			*ephemeral = 1;
			return 0;
		}
		int r = vd_nic_port_add(t->nic, IPPROTO_TCP, &p);
		if (r < 0)
			return r == -ENOSPC ? -EADDRNOTAVAIL : r;
		uint32_t i = ntohs(p);
		t->port_ref[i] = 1;
		t->port_eph[i / 8] |= (uint8_t)(1u << (i % 8));
		*port_be = p;
		*ephemeral = 1;
		return 0;
	}
	uint32_t i = ntohs(*port_be);
	if (t->port_ref[i]) {
		t->port_ref[i]++;
		*ephemeral = (t->port_eph[i / 8] >> (i % 8)) & 1;
		return 0;
	}
	uint16_t p = *port_be;
	int r = vd_nic_port_add(t->nic, IPPROTO_TCP, &p);
	if (r < 0 && r != -EEXIST)
		return r;
	t->port_ref[i] = 1;
	t->port_eph[i / 8] &= (uint8_t)~(1u << (i % 8));
	*ephemeral = 0;
	return 0;
}

void vd__tcp_port_ref(struct vd__tcp *t, uint16_t port_be)
{
	t->port_ref[ntohs(port_be)]++;
}

uint32_t vd__tcp_port_refs(const struct vd__tcp *t, uint16_t port_be)
{
	return t->port_ref[ntohs(port_be)];
}

void vd__tcp_port_put(struct vd__tcp *t, uint16_t port_be, uint32_t hold_ms)
{
	uint32_t i = ntohs(port_be);
	if (!t->port_ref[i])
		return;
	if (--t->port_ref[i] == 0) {
		vd_nic_port_del(t->nic, IPPROTO_TCP, port_be, hold_ms);
		t->port_eph[i / 8] &= (uint8_t)~(1u << (i % 8));
	}
}

/*
 * The port of a connection that closed cleanly with the peer closing first (LAST-ACK ended by the ACK
 * of our FIN; RFC 9293 3.6: the TIME-WAIT is the peer's, ours is none): an ephemeral port then owes
 * nothing to the network, so instead of a viaductd round trip now and another for the next connect's
 * port (about 15 + 25 us, most of a connection's cost on a fast link) it stays ours in a small FIFO pool
 * for the next active opens, as the kernel's connect() reuses a free port at once. The pool is a delay
 * line: a port is taken only from a full pool, the oldest first, so it comes back after
 * VD__TCP_EPH_POOL other connections ended (giving back the port just freed would reuse the last
 * 4-tuple at once). Should the peer still be in TIME-WAIT for that 4-tuple then, RFC 6191 (a newer
 * timestamp, or a higher ISN from the RFC 6528 clock) lets it accept the new SYN, as it does for the
 * kernel's clients, which cycle through their port range. Only clean closes: after a reset, an abort or
 * a connect that never completed the peer may still hold a half-open connection on the 4-tuple. Ports
 * with a hold (our TIME-WAIT) still go to viaductd (tcp.h).
 * That RFC 6191 test holds only within this process: timestamps and ISNs come from this stack's secret
 * (vd__tcp_ts_off, vd__tcp_isn), another process's SYN on the same 4-tuple carries unrelated ones, and the
 * peer's TIME-WAIT would take it for an old duplicate (a SYN retransmitted after 1 s, measured). So an
 * ephemeral port that leaves this process while its peer may keep TIME-WAIT (the pool is full here, or
 * vd__tcp_free gives the pool back) goes to viaductd with a TIME-WAIT hold, not back to the kernel.
 */
void vd__tcp_port_recycle(struct vd__tcp *t, uint16_t port_be)
{
	uint32_t i = ntohs(port_be);
	int eph = (t->port_eph[i / 8] >> (i % 8)) & 1;
	if (t->port_ref[i] == 1 && eph && t->eph_n < VD__TCP_EPH_POOL) {
		t->port_ref[i] = 0;
		t->eph_pool[(t->eph_head + t->eph_n++) % VD__TCP_EPH_POOL] = port_be;
		return;
	}
	vd__tcp_port_put(t, port_be, eph ? t->cfg.time_wait_ms : 0);
}

/* ---- dirty list and timer heap --------------------------------------------------------------------- */

void vd__tcp_mark_dirty(struct vd__tcb *c)
{
	if (c->in_dirty)
		return;
	c->dprev = NULL;
	c->dnext = c->t->dirty;
	if (c->t->dirty)
		c->t->dirty->dprev = c;
	c->t->dirty = c;
	c->in_dirty = 1;
}

static void heap_swap(struct vd__tcp *t, uint32_t a, uint32_t b)
{
	struct vd__tcb *x = t->heap[a];
	t->heap[a] = t->heap[b];
	t->heap[b] = x;
	t->heap[a]->heap_idx = a;
	t->heap[b]->heap_idx = b;
}

static void sift_up(struct vd__tcp *t, uint32_t i)
{
	while (i) {
		uint32_t p = (i - 1) / 2;
		if (t->heap[p]->timer_key <= t->heap[i]->timer_key)
			break;
		heap_swap(t, p, i);
		i = p;
	}
}

static void sift_down(struct vd__tcp *t, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->heap_n && t->heap[l]->timer_key < t->heap[m]->timer_key)
			m = l;
		if (r < t->heap_n && t->heap[r]->timer_key < t->heap[m]->timer_key)
			m = r;
		if (m == i)
			return;
		heap_swap(t, i, m);
		i = m;
	}
}

static void heap_remove(struct vd__tcp *t, struct vd__tcb *c)
{
	uint32_t i = c->heap_idx;
	if (i == UINT32_MAX)
		return;
	c->heap_idx = UINT32_MAX;
	if (i != --t->heap_n) {
		t->heap[i] = t->heap[t->heap_n];
		t->heap[i]->heap_idx = i;
		sift_down(t, i);
		sift_up(t, i);
	}
}

/*
 * Makes sure the heap will visit c at or before its earliest deadline. Lazy: a deadline that moved later
 * leaves the key as it is (the visit finds nothing due and re-schedules), so restarting the RTO on every
 * ACK costs no heap work.
 */
void vd__tcp_timer_sched(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	uint64_t d = vd__tcp_next_deadline(c);
	if (!d)
		return;
	if (c->heap_idx != UINT32_MAX) {
		if (d < c->timer_key) {
			c->timer_key = d;
			sift_up(t, c->heap_idx);
		}
		return;
	}
	if (t->heap_n >= t->heap_cap)
		return; /* cannot happen: one slot per tcb, tcbs bounded by max_conns */
	c->timer_key = d;
	c->heap_idx = t->heap_n;
	t->heap[t->heap_n++] = c;
	sift_up(t, c->heap_idx);
}

uint64_t vd__tcp_poll(struct vd__tcp *t)
{
	uint64_t now = vd__tcp_clock(t);
	/* timers first: they may make output (retransmissions, ACKs) that the dirty pass then sends */
	for (unsigned guard = 0; t->heap_n && t->heap[0]->timer_key <= now && guard < 1u << 20; guard++) {
		struct vd__tcb *c = t->heap[0];
		heap_remove(t, c);
		vd__tcp_timers_run(c, now);   /* re-schedules c itself, or frees it */
	}
	while (t->dirty) {
		struct vd__tcb *c = t->dirty;
		dirty_del(c);
		if (vd__tcp_output(c) < 0) {
			/* out of TX buffers: the rest waits for the next poll */
			vd__tcp_mark_dirty(c);
			break;
		}
	}
	vd__tcp_tx_flush(t);
	uint64_t next = t->heap_n ? t->heap[0]->timer_key : UINT64_MAX;
	if (t->dirty && next > now + 100000)
		next = now + 100000; /* output waits for TX buffers: come back soon */
	if (t->zc_wait) {
		uint64_t zw = vd__tcp_zc_poll(t, now); /* writers waiting for lent TX memory (tcp_zc.c) */
		if (zw < next)
			next = zw;
	}
	return next;
}

int vd__tcp_poll_soon(const struct vd__tcp *t)
{
	return t->zc_wait != NULL;
}
