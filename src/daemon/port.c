/* SPDX-License-Identifier: MIT */
/*
 * Port ownership. A port an endpoint owns is also bound by a kernel socket of the same protocol that
 * viaductd keeps open: no kernel socket can take it meanwhile (bind fails with EADDRINUSE) and the kernel
 * chooses ephemeral ports for us (bind to port 0) from its own range, so viaduct and kernel sockets
 * never collide. The kernel socket never sees the port's traffic: the dispatcher takes it first.
 * Two kinds: ports a connection reserves (PORT_RESERVE) and ports steered to an endpoint (EP_PORT_ADD),
 * which may end held (below).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "daemon.h"

/*
 * Ephemeral ports. A bind() to port 0 lets the kernel choose, but it takes odd ports only
 * (inet_csk_find_open_port leaves the even ones to connect()) and turns to the even half only once every
 * odd port is taken. A connect-heavy client whose ports sit in TIME-WAIT (held here: a kernel socket
 * each) fills the odd half, 14116 ports of Linux's default range, and long before that every bind(0)
 * scans its way through the taken ones: measured in a lab namespace, 8 us per socket + bind(0) with 4000
 * ports held, 20 us with 11600. So viaductd picks from the whole range itself: a random port (RFC 6056
 * 3.3.1, Algorithm 1), bound by number (an exclusive bind: the kernel still decides every conflict), a
 * few tries, then bind(0) as the fallback that finds the last free ports. Ports the administrator
 * reserved (net.ipv4.ip_local_reserved_ports) are for bind(0) to skip: with any, bind(0) it is.
 */
#define EPH_TRIES 8
#define EPH_RANGE_TTL_NS 1000000000ull /* the sysctls are read again after a second */

static struct {
	unsigned low, high;     /* net.ipv4.ip_local_port_range, inclusive; low 0: use bind(0) */
	uint64_t read_ns;
	uint64_t rng;           /* xorshift64 state, seeded from getrandom() */
} eph;

static uint64_t mono_ns(void);

static void eph_refresh(void)
{
	uint64_t now = mono_ns();
	if (eph.read_ns && now - eph.read_ns < EPH_RANGE_TTL_NS)
		return;
	eph.read_ns = now;
	eph.low = eph.high = 0;
	char text[64] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_reserved_ports", "re");
	if (f) {
		if (!fgets(text, sizeof(text), f))
			text[0] = '\0';
		fclose(f);
	}
	if (text[0] && text[0] != '\n')
		return; /* reserved ports: the kernel's bind(0) knows them */
	unsigned lo, hi;
	f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) == 2 && lo > 0 && lo < hi && hi <= 65535) {
			eph.low = lo;
			eph.high = hi;
		}
		fclose(f);
	}
	while (!eph.rng)
		if (getrandom(&eph.rng, sizeof(eph.rng), 0) != sizeof(eph.rng))
			eph.rng = now | 1; /* not secret-grade, still unpredictable enough off-path */
}

static unsigned eph_random(void)
{
	eph.rng ^= eph.rng << 13;
	eph.rng ^= eph.rng >> 7;
	eph.rng ^= eph.rng << 17;
	return eph.low + (unsigned)(eph.rng % (eph.high - eph.low + 1u));
}

/* Binds fd to (ip_be, port_be); port_be 0: an ephemeral port, written back. */
static int port_bind(int fd, uint32_t ip_be, uint16_t *port_be)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = ip_be, .sin_port = *port_be };
	socklen_t sl = sizeof(sa);

	if (*port_be == 0) {
		eph_refresh();
		for (int i = 0; eph.low && i < EPH_TRIES; i++) {
			sa.sin_port = htons((uint16_t)eph_random());
			if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
				*port_be = sa.sin_port;
				return 0;
			}
			if (errno != EADDRINUSE)
				return -errno;
		}
		sa.sin_port = 0;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &sl))
		return -errno;
	*port_be = sa.sin_port;
	return 0;
}

/*
 * Every reserved, pooled or held port is a descriptor of the daemon (n_port_fds of them). They never take
 * the last VD_PORT_FD_ROOM of RLIMIT_NOFILE: a client looping on connect (40k connections a second, each
 * port held 60 s) would otherwise leave viaductd no descriptor to accept a control connection or open an
 * endpoint with, and so stop serving everyone. Its reservations fail (EMFILE) instead, as a kernel socket's
 * connect fails once the ephemeral range is in TIME-WAIT.
 */
#define VD_PORT_FD_ROOM 256u
static unsigned n_port_fds;

static bool port_fds_left(void)
{
	struct rlimit rl;
	return getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	       (rlim_t)n_port_fds + VD_PORT_FD_ROOM < rl.rlim_cur;
}

int vd__port_reserve(uint8_t proto, uint32_t ip_be, uint16_t port_be, struct vd_port **out)
{
	struct vd_port *p;
	int fd, err;

	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	if (!port_fds_left())
		return -EMFILE;
	fd = socket(AF_INET, (proto == IPPROTO_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* No SO_REUSEADDR/SO_REUSEPORT: the point is an exclusive bind. */
	err = port_bind(fd, ip_be, &port_be);
	if (err) {
		close(fd);
		return err;
	}
	if (proto == IPPROTO_UDP) {
		/* Keep the reservation socket's receive queue from ever holding memory. */
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	p->proto = proto;
	p->ip_be = ip_be;
	p->port_be = port_be;
	p->fd = fd;
	n_port_fds++;
	*out = p;
	return 0;
}

void vd__port_free(struct vd_port *p)
{
	if (!p)
		return;
	close(p->fd);
	n_port_fds--;
	free(p);
}

void vd__port_reserve_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req)
{
	struct vd_iface *ifc = vd__iface_by_index(req->ifindex);
	struct vd_ctl_port_rep rep = {};
	struct vd_port *p;
	unsigned n = 0;
	int err;

	if (!ifc) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, -ENODEV, NULL, 0, NULL, 0, "interface not managed");
		return;
	}
	for (p = *vd__conn_ports(c); p; p = p->next)
		n++;
	if (n >= VD_CTL_MAX_EPS) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, -ENOSPC, NULL, 0, NULL, 0, "too many ports");
		return;
	}
	err = vd__port_reserve(req->proto, ifc->ip_be, req->port_be, &p);
	if (err) {
		vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, err, NULL, 0, NULL, 0,
			       err == -EADDRINUSE ? "port in use" : "cannot reserve port");
		return;
	}
	p->next = *vd__conn_ports(c);
	*vd__conn_ports(c) = p;
	rep.port_be = p->port_be;
	vd__conn_reply(c, VD_CTL_PORT_RESERVE, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
}

void vd__port_release_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req)
{
	struct vd_iface *ifc = vd__iface_by_index(req->ifindex);

	for (struct vd_port **pp = vd__conn_ports(c); ifc && *pp; pp = &(*pp)->next) {
		struct vd_port *p = *pp;

		if (p->proto == req->proto && p->port_be == req->port_be && p->ip_be == ifc->ip_be) {
			*pp = p->next;
			vd__port_free(p);
			vd__conn_reply(c, VD_CTL_PORT_RELEASE, seq, 0, NULL, 0, NULL, 0, NULL);
			return;
		}
	}
	vd__conn_reply(c, VD_CTL_PORT_RELEASE, seq, -ENOENT, NULL, 0, NULL, 0, "port not reserved by this connection");
}

void vd__port_reclaim_conn(struct vd_conn *c)
{
	struct vd_port **head = vd__conn_ports(c);

	while (*head) {
		struct vd_port *p = *head;
		*head = p->next;
		vd__port_free(p);
	}
}

/* ---- ports steered to endpoints (EP_PORT_ADD / EP_PORT_DEL) and held ports ------------------------- */

/*
 * A port added to an endpoint is a kernel reservation (as above) plus the port's vd_ports slot pointing
 * at the endpoint. Giving it back with a hold, or an endpoint dying with ephemeral TCP ports, turns it
 * into a held port: the reservation stays, the slot says VD_BPF_EP_HOLD (the dispatcher drops its
 * frames), and a timer frees it when the hold ends. That is TCP TIME-WAIT kept by the daemon (RFC 9293
 * 3.6.1: a connection's 4-tuple must not be reused for 2 MSL, and a RST from the kernel for a segment of
 * a connection still closing on the other side would be wrong too).
 */
#define VD_PORT_HELD_MAX 16384u       /* held ports host-wide: each is a kernel socket */
#define VD_PORT_NOFILE 65536u         /* descriptors asked for (vd__port_init): held, pooled, endpoints' */

/*
 * Held ports in a binary min-heap by hold end (the key stored beside the pointer, so sifting touches only
 * the array): the timer is the root's and an expiry pops the root. A list kept in order was O(1) only
 * while every hold had the same length; holds for the rest of a TIME-WAIT (a socket closed after its
 * connection entered TIME-WAIT: tcp_sock.c) are shorter and walked the list from its head, a cache miss
 * per held port: measured, 23% of viaductd's time under `viaduct perf sockets --bench connrate` with
 * 10,000 ports held. The heap costs at most log2(16384) = 14 steps per hold and per expiry.
 */
struct held_ent {
	uint64_t until;       /* the port's hold_until_ns */
	struct vd_port *p;
};
static struct held_ent *held;   /* [VD_PORT_HELD_MAX] */
static unsigned n_held;
static uint32_t time_wait_ms;
static struct vd_evsrc hold_timer = { .fd = -1 };

static void held_push(struct vd_port *p)
{
	unsigned i = n_held++;
	while (i) {
		unsigned up = (i - 1) / 2;
		if (held[up].until <= p->hold_until_ns)
			break;
		held[i] = held[up];
		i = up;
	}
	held[i] = (struct held_ent){ .until = p->hold_until_ns, .p = p };
}

static struct vd_port *held_pop(void)
{
	struct vd_port *top = held[0].p;
	struct held_ent last = held[--n_held];
	unsigned i = 0;

	for (;;) {
		unsigned c = 2 * i + 1;
		if (c >= n_held)
			break;
		if (c + 1 < n_held && held[c + 1].until < held[c].until)
			c++;
		if (last.until <= held[c].until)
			break;
		held[i] = held[c];
		i = c;
	}
	if (n_held)
		held[i] = last;
	return top;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int slot_write(struct vd_iface *ifc, uint8_t proto, uint16_t port_be, const struct vd_bpf_ep *v)
{
	__u32 slot = vd_bpf_port_index(proto, ntohs(port_be));
	return bpf_map_update_elem(ifc->ports_fd, &slot, v, BPF_EXIST) ? -errno : 0;
}

/* Arms the timer for the earliest hold end, the head's (disarms it with none). */
static void hold_timer_arm(void)
{
	struct itimerspec its = { 0 };
	uint64_t first = n_held ? held[0].until : UINT64_MAX;

	if (first != UINT64_MAX) {
		/* An absolute time of 0 would disarm: a hold already due fires at the next nanosecond. */
		its.it_value.tv_sec = (time_t)(first / 1000000000u);
		its.it_value.tv_nsec = (long)(first % 1000000000u);
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	if (hold_timer.fd >= 0 && timerfd_settime(hold_timer.fd, TFD_TIMER_ABSTIME, &its, NULL))
		vd__warn("hold timer: %s", strerror(errno));
}

/* Frees an endpoint or held port: the slot cleared first (frames go back to the kernel), then the socket. */
static void ep_port_free(struct vd_port *p)
{
	if (p->in_map) {
		const struct vd_bpf_ep cleared = { 0 };
		slot_write(p->ifc, p->proto, p->port_be, &cleared);
	}
	vd__port_free(p);
}

static bool pool_recycle(struct vd_port *p);

/* Frees an ephemeral port or keeps it, reservation and all, in the pool for the next ephemeral request. */
static void port_release(struct vd_port *p)
{
	if (p->ephemeral && p->in_map) {
		const struct vd_bpf_ep cleared = { 0 };
		if (slot_write(p->ifc, p->proto, p->port_be, &cleared) == 0)
			p->in_map = false;
	}
	if (!p->ephemeral || !pool_recycle(p))
		ep_port_free(p);
}

static void hold_expire(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks, now = mono_ns();
	(void)events;

	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vd__warn("hold timer read: %s", strerror(errno));
	while (n_held && held[0].until <= now) {
		struct vd_port *p = held_pop();
		vd__dbg("%s port %u hold ended", p->proto == IPPROTO_TCP ? "tcp" : "udp", ntohs(p->port_be));
		port_release(p);
	}
	hold_timer_arm();
}

/*
 * Turns a port that left its endpoint into a held one for ms milliseconds. Returns -ENOSPC (the port
 * untouched) when too many are held already, or the map error.
 */
static struct vd_bpf_ep hold_slot(const struct vd_port *p)
{
	return (struct vd_bpf_ep){ .flags = VD_BPF_EP_VALID | VD_BPF_EP_HOLD, .ip_be = p->ip_be };
}

/* A port whose slot says VD_BPF_EP_HOLD now joins the held ones until now_ns + ms (n_held < the maximum). */
static void held_add(struct vd_port *p, uint64_t now_ns, uint32_t ms)
{
	p->in_map = true;
	p->hold_until_ns = now_ns + (uint64_t)ms * 1000000u;
	p->next = NULL;
	held_push(p);
	/* Only a new earliest end moves the timer. */
	if (held[0].p == p)
		hold_timer_arm();
}

static int port_hold(struct vd_port *p, uint32_t ms)
{
	const struct vd_bpf_ep hold = hold_slot(p);

	if (n_held >= VD_PORT_HELD_MAX)
		return -ENOSPC;
	int err = slot_write(p->ifc, p->proto, p->port_be, &hold);
	if (err)
		return err;
	held_add(p, mono_ns(), ms);
	return 0;
}

/* ---- the pool: ephemeral ports reserved ahead ---------------------------------------------------- */

/*
 * A connect-heavy client needs a fresh ephemeral port per connection (its last ones sit in TIME-WAIT,
 * held above), and reserving one is a kernel socket + bind: about 7 us of the daemon's time, spent while
 * the client and its peer busy-poll the same 2 CPUs (perf under `viaduct perf sockets --bench connrate`:
 * socket + bind were about a third of viaductd's time per connection, and a batch of them a burst that
 * delays whichever side it preempts). So viaductd keeps, per interface and protocol, a pool of ephemeral
 * ports reserved ahead (bound kernel sockets, in no endpoint and not in the dispatcher's map): an
 * ephemeral EP_PORT(S)_ADD takes from it and costs a map update. The pool is refilled only when no port
 * request came for POOL_IDLE_NS, a chunk at a time, so refilling does not compete with a burst of
 * connections; a held port whose TIME-WAIT ended goes back into the pool with its socket (RFC 9293
 * 3.6.1's 2 MSL are over) instead of close now and socket + bind later. Ports an endpoint gives back
 * without a hold are freed, not pooled: the peer of their last connection may still be in TIME-WAIT.
 * The pooled ports come from the kernel's ephemeral range like any other of ours (28,232 ports in
 * Linux's default range). Measured with a fixed pool of 1024 (3 interleaved runs each): connect+close
 * p99 216-260 -> 133-183 us; the connection rate did not move beyond the noise.
 *
 * How big. A burst of more connections than the pool (a `perf sockets` connrate round is 3000) ran a
 * pool of 1024 dry after a third, and from then on every batch was socket + bind in one go, about 7 us a
 * port of the daemon on the client's CPU: connect+close p99 433-481 us (kernel 60). A fixed pool of 4096
 * made it 75-90 us, but every pooled port is one another program's bind of that port fails on
 * (EADDRINUSE: a bind to 0.0.0.0 conflicts with ours on the interface's address), and at 4096 a fixed
 * port of fi_pingpong in a lab failed so in one lab out of two. So the TCP pool adapts: its target starts
 * at POOL_TCP (its base) and, once a burst has asked for 7/8 of the target since the pool was last full
 * (pool_mark: the pool is nearly or already empty), doubles until the mark is above that demand, up to
 * POOL_TCP_MAX (less when a quarter of the descriptor limit per interface is less), and only as far as
 * the descriptors left above VD_PORT_FD_ROOM allow. Growing costs nothing at once: the idle refill fills
 * to the new target, in the burst's idle gaps already and so for the next burst. Once no burst asked for
 * more than the base's mark for pool_shrink_ns (`viaductd --pool-idle-s`, default 30 s), the target drops
 * back to the base and the surplus is closed, a chunk per idle step like the refill (never while requests
 * keep coming); held ports coming back are pooled only up to the current target. The ring is allocated
 * for the largest target once. UDP stays at POOL_UDP. Measured (perf sockets connrate --reps 3, fresh
 * labs, fixed 1024 and adaptive interleaved, 4 runs each): p99 442-476 -> 103-175 us (kernel 56-100),
 * connections/s and p50 unchanged beyond the noise; the first round of a run still grows the pool (p99
 * about 450 us). Details in docs/design.md (User-level TCP/IP).
 */
#define POOL_TCP 1024u                  /* the TCP pool's base target: what it keeps when no burst needs more */
#define POOL_TCP_MAX 4096u              /* the most a burst grows the TCP target to */
#define POOL_UDP 64u
#define POOL_CHUNK 32u                  /* ports reserved or freed per step (about 0.2 ms) */
#define POOL_IDLE_NS 2000000ull         /* no port request for this long: the daemon may refill */
#define POOL_STEP_NS 1000000ull         /* between two refill steps */
#define POOL_RETRY_NS 1000000000ull     /* after a failed reservation (range full, no descriptors) */
#define POOL_SHRINK_S 30u               /* default of --pool-idle-s */
#define POOL_MAX_IFACES 8u

struct port_pool {
	struct vd_iface *ifc;
	uint8_t proto;
	unsigned head, n;      /* the ring: taken at head, put back at the tail (head + n) */
	unsigned target;       /* what the idle steps fill or trim the pool to: base..cap */
	unsigned base, cap;    /* the target with no burst, and the most a burst grows it to */
	unsigned demand;       /* ports asked for since the pool was last full */
	uint64_t pressure_ns;  /* the last request with demand above pool_mark(base): a burst that needs growth */
	struct vd_port **p;    /* [cap], allocated once: the target moves within it */
};
static struct port_pool pools[2 * POOL_MAX_IFACES];
static unsigned n_pools;
static struct vd_evsrc pool_timer = { .fd = -1 };
static uint64_t pool_last_req_ns; /* the last port request (pool_busy) */
static uint64_t pool_timer_at;    /* when the armed timer fires; 0: not armed */
static uint64_t pool_shrink_ns = POOL_SHRINK_S * 1000000000ull;
static struct {
	uint64_t taken, reserved, recycled, missed, grown, trimmed;
} pool_st;

static struct port_pool *pool_of(const struct vd_iface *ifc, uint8_t proto)
{
	for (unsigned i = 0; i < n_pools; i++)
		if (pools[i].ifc == ifc && pools[i].proto == proto)
			return &pools[i];
	return NULL;
}

static const char *pool_name(const struct port_pool *pl)
{
	return pl->proto == IPPROTO_TCP ? "tcp" : "udp";
}

static void pool_arm(uint64_t at)
{
	struct itimerspec its = { 0 };

	if (pool_timer.fd < 0 || (pool_timer_at && pool_timer_at <= at))
		return;
	its.it_value.tv_sec = (time_t)(at / 1000000000u);
	its.it_value.tv_nsec = (long)(at % 1000000000u);
	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1; /* an absolute 0 would disarm */
	if (timerfd_settime(pool_timer.fd, TFD_TIMER_ABSTIME, &its, NULL))
		vd__warn("port pool timer: %s", strerror(errno));
	else
		pool_timer_at = at;
}

/* A pool the idle steps still have work on: ports to reserve (it has an address) or a surplus to free. */
static bool pool_off_target(const struct port_pool *pl)
{
	return (pl->ifc->ip_be && pl->n < pl->target) || pl->n > pl->target;
}

static bool pool_work_left(void)
{
	for (unsigned i = 0; i < n_pools; i++)
		if (pool_off_target(&pools[i]))
			return true;
	return false;
}

/*
 * A port request came: the pool waits for the daemon to be idle again (one timer call per idle period:
 * a timer armed for an earlier idle point fires, finds the request and moves itself; one armed later, for
 * a shrink, is brought forward).
 */
static void pool_busy(void)
{
	pool_last_req_ns = mono_ns();
	if ((!pool_timer_at || pool_timer_at > pool_last_req_ns + POOL_IDLE_NS) && pool_work_left())
		pool_arm(pool_last_req_ns + POOL_IDLE_NS);
}

/* The demand at which a burst counts as having (nearly) drained a pool of target t: 7/8 of it. */
static unsigned pool_mark(unsigned t)
{
	return t - t / 8u;
}

/*
 * A burst took nearly all of pl since it was last full: the next burst should find more. The target
 * doubles until its mark is above the demand, within pl->cap and within the descriptors the daemon has
 * left (half of those above VD_PORT_FD_ROOM: held ports and endpoints need the rest). Growing before
 * the pool is empty gives the refill, which runs in the burst's idle gaps, a head start.
 */
static void pool_grow(struct port_pool *pl)
{
	unsigned t = pl->target;
	struct rlimit rl;

	while (t < pl->cap && pool_mark(t) < pl->demand)
		t = t < pl->cap / 2 ? t * 2 : pl->cap;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		rlim_t used = (rlim_t)n_port_fds + VD_PORT_FD_ROOM;
		rlim_t room = rl.rlim_cur > used ? (rl.rlim_cur - used) / 2 : 0;
		if ((rlim_t)t > pl->n + room)
			t = (unsigned)(pl->n + room);
	}
	if (t <= pl->target)
		return;
	vd__dbg("port pool %s/%s: target %u -> %u (%u ports asked for since it was full)", pl->ifc->name,
		pool_name(pl), pl->target, t, pl->demand);
	pl->target = t;
	pool_st.grown++;
	/* The refill waits for an idle daemon (armed by pool_take); the way back down is timed from here. */
	pool_arm(pl->pressure_ns + pool_shrink_ns);
}

/* An ephemeral port reserved ahead on ifc's address, or NULL (pool empty or the address changed). */
static struct vd_port *pool_take(const struct vd_iface *ifc, uint8_t proto, uint32_t ip_be)
{
	struct port_pool *pl = pool_of(ifc, proto);
	struct vd_port *got = NULL;

	if (!pl)
		return NULL;
	while (pl->n && !got) {
		struct vd_port *p = pl->p[pl->head];
		pl->head = (pl->head + 1) % pl->cap;
		pl->n--;
		if (p->ip_be == ip_be)
			got = p;
		else
			vd__port_free(p); /* bound to an address the interface no longer has */
	}
	if (got)
		pool_st.taken++;
	else
		pool_st.missed++;
	/* The pool is short now: refill it once the daemon is idle (pool_last_req_ns is this request's
	 * time, taken by pool_busy). pool_arm keeps a timer due earlier, and brings one due later (a grown
	 * pool's shrink, armed while it was full, which pool_busy left alone) forward. */
	pool_arm(pool_last_req_ns + POOL_IDLE_NS);
	/* A burst that needs nearly the base or more keeps a grown target up; nearly the target grows it. */
	if (++pl->demand > pool_mark(pl->base))
		pl->pressure_ns = pool_last_req_ns;
	if (pl->demand > pool_mark(pl->target) && pl->target < pl->cap)
		pool_grow(pl);
	return got;
}

/* Puts a port in no endpoint, not in the map, into its pool if there is room; false: the caller frees it. */
static bool pool_put(struct vd_port *p)
{
	struct port_pool *pl = p->ifc ? pool_of(p->ifc, p->proto) : NULL;

	/* Bounded by the target, not the ring: after a shrink, ports coming back are freed, not kept. */
	if (!pl || pl->n >= pl->target || p->in_map || p->ip_be != p->ifc->ip_be)
		return false;
	p->next = NULL;
	p->hold_until_ns = 0;
	p->ephemeral = true;
	/* At the tail: a port given back is handed out again only after the whole pool, not at once (a
	 * peer may still know the last 4-tuple it was in) */
	pl->p[(pl->head + pl->n++) % pl->cap] = p;
	if (pl->n == pl->target)
		pl->demand = 0;
	return true;
}

/* A held port whose hold ended, its slot cleared: into the pool (true) if there is room. */
static bool pool_recycle(struct vd_port *p)
{
	if (!pool_put(p))
		return false;
	pool_st.recycled++;
	return true;
}

/*
 * One idle step over the pools, POOL_CHUNK ports in all: a target grown for bursts none of which needed
 * more than the base for pool_shrink_ns goes back to its base, a surplus is freed, a shortfall reserved.
 */
static void pool_step(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks, now = mono_ns();
	unsigned done = 0;
	(void)events;

	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vd__warn("port pool timer read: %s", strerror(errno));
	pool_timer_at = 0;
	if (now - pool_last_req_ns < POOL_IDLE_NS) {
		pool_arm(pool_last_req_ns + POOL_IDLE_NS);
		return;
	}
	for (unsigned i = 0; i < n_pools && done < POOL_CHUNK; i++) {
		struct port_pool *pl = &pools[i];

		if (pl->target > pl->base && now - pl->pressure_ns >= pool_shrink_ns) {
			vd__dbg("port pool %s/%s: target %u -> %u (no burst above it for %llu s)", pl->ifc->name,
				pool_name(pl), pl->target, pl->base, (unsigned long long)(pool_shrink_ns / 1000000000u));
			pl->target = pl->base;
		}
		/* The surplus from the tail: the ports put back last (a peer may know their last 4-tuple). */
		while (pl->n > pl->target && done < POOL_CHUNK) {
			pl->n--;
			vd__port_free(pl->p[(pl->head + pl->n) % pl->cap]);
			pool_st.trimmed++;
			done++;
		}
		/* no address yet: a bind to 0.0.0.0 would reserve the port on every address */
		while (pl->ifc->ip_be && pl->n < pl->target && done < POOL_CHUNK) {
			struct vd_port *p;
			int err = vd__port_reserve(pl->proto, pl->ifc->ip_be, 0, &p);
			if (err) {
				vd__dbg("port pool %s/%s: %s", pl->ifc->name, pool_name(pl), strerror(-err));
				pool_arm(now + POOL_RETRY_NS);
				return;
			}
			p->ifc = pl->ifc;
			p->ephemeral = true;
			pl->p[(pl->head + pl->n++) % pl->cap] = p;
			pool_st.reserved++;
			done++;
		}
		if (pl->n == pl->target)
			pl->demand = 0;
	}
	if (pool_work_left()) {
		pool_arm(mono_ns() + POOL_STEP_NS);
		return;
	}
	for (unsigned i = 0; i < n_pools; i++)
		if (pools[i].target > pools[i].base)
			pool_arm(pools[i].pressure_ns + pool_shrink_ns);
}

static int pool_init(void)
{
	unsigned nif = vd__iface_count(), tcp = POOL_TCP, tcp_max = POOL_TCP_MAX, udp = POOL_UDP;
	struct rlimit rl;

	/* Every pooled port is a descriptor: the pools take at most a quarter of RLIMIT_NOFILE (which
	 * vd__port_init raised to the hard limit), leaving the rest to endpoints and held ports. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		rlim_t budget = rl.rlim_cur / 4u / (nif ? nif : 1u); /* per interface */
		if (budget < POOL_TCP + POOL_UDP) {
			tcp = (unsigned)(budget * POOL_TCP / (POOL_TCP + POOL_UDP));
			udp = (unsigned)budget - tcp;
		}
		if (budget < (rlim_t)tcp_max + udp)
			tcp_max = (unsigned)budget - udp; /* >= tcp: tcp + udp <= budget */
	}
	for (unsigned i = 0; i < nif && i < POOL_MAX_IFACES; i++) {
		for (unsigned k = 0; k < 2; k++) {
			struct port_pool *pl = &pools[n_pools];
			pl->ifc = vd__iface_at(i);
			pl->proto = k ? IPPROTO_UDP : IPPROTO_TCP;
			pl->target = pl->base = k ? udp : tcp;
			pl->cap = k ? udp : tcp_max;
			if (!pl->target)
				continue;
			pl->p = calloc(pl->cap, sizeof(*pl->p));
			if (!pl->p)
				return -ENOMEM;
			n_pools++;
		}
	}
	pool_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (pool_timer.fd < 0)
		return -errno;
	pool_timer.cb = pool_step;
	int err = vd__loop_add(&pool_timer, EPOLLIN);
	if (err)
		return err;
	pool_arm(mono_ns() + POOL_IDLE_NS); /* the first fill, once start-up is over */
	return 0;
}

static void pool_fini(void)
{
	for (unsigned i = 0; i < n_pools; i++) {
		for (; pools[i].n; pools[i].n--, pools[i].head = (pools[i].head + 1) % pools[i].cap)
			vd__port_free(pools[i].p[pools[i].head]);
		free(pools[i].p);
		pools[i].p = NULL;
	}
	n_pools = 0;
	if (pool_timer.fd >= 0) {
		vd__loop_del(&pool_timer);
		close(pool_timer.fd);
		pool_timer.fd = -1;
	}
	vd__dbg("port pool: %llu reserved ahead, %llu taken, %llu recycled from holds, %llu requests found it "
		"empty, %llu target increases, %llu freed as surplus",
		(unsigned long long)pool_st.reserved, (unsigned long long)pool_st.taken,
		(unsigned long long)pool_st.recycled, (unsigned long long)pool_st.missed,
		(unsigned long long)pool_st.grown, (unsigned long long)pool_st.trimmed);
}

int vd__port_init(uint32_t time_wait_s, uint32_t pool_idle_s)
{
	/*
	 * Every reserved or held port is a kernel socket of the daemon: the default soft limit of 1024
	 * descriptors would let a few clients' ports starve everyone's endpoint set-up. Held ports alone may
	 * be VD_PORT_HELD_MAX, plus the pools and the endpoints' own: ask for VD_PORT_NOFILE (root may raise
	 * the hard limit up to fs.nr_open), else take the hard limit as it is.
	 */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) {
		struct rlimit want = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
		if (want.rlim_max < VD_PORT_NOFILE)
			want.rlim_cur = want.rlim_max = VD_PORT_NOFILE;
		if (setrlimit(RLIMIT_NOFILE, &want)) {
			rl.rlim_cur = rl.rlim_max; /* refused (fs.nr_open lower?): the hard limit as it is */
			if (setrlimit(RLIMIT_NOFILE, &rl))
				vd__warn("RLIMIT_NOFILE: %s", strerror(errno));
		}
	}
	held = calloc(VD_PORT_HELD_MAX, sizeof(*held));
	if (!held)
		return -ENOMEM;
	time_wait_ms = time_wait_s > VD_CTL_HOLD_MAX_MS / 1000 ? VD_CTL_HOLD_MAX_MS : time_wait_s * 1000u;
	pool_shrink_ns = (uint64_t)(pool_idle_s ? pool_idle_s : POOL_SHRINK_S) * 1000000000u;
	hold_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (hold_timer.fd < 0)
		return -errno;
	hold_timer.cb = hold_expire;
	int err = vd__loop_add(&hold_timer, EPOLLIN);
	return err ? err : pool_init();
}

void vd__port_fini(void)
{
	while (n_held)
		ep_port_free(held_pop());
	pool_fini();
	free(held);
	held = NULL;
	if (hold_timer.fd >= 0) {
		vd__loop_del(&hold_timer);
		close(hold_timer.fd);
		hold_timer.fd = -1;
	}
}

static struct vd_ep *conn_ep(struct vd_conn *c, uint32_t ep_id)
{
	for (struct vd_ep *ep = *vd__conn_eps(c); ep; ep = ep->next)
		if (ep->id == ep_id)
			return ep;
	return NULL;
}

/* The lowest port only root may bind, as the kernel itself decides it (default 1024). */
unsigned vd__port_unprivileged_start(void)
{
	unsigned v = 1024;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	if (f) {
		if (fscanf(f, "%u", &v) != 1)
			v = 1024;
		fclose(f);
	}
	return v;
}

/* The dispatcher slot value steering a port to ep. */
static struct vd_bpf_ep ep_slot(const struct vd_ep *ep)
{
	return (struct vd_bpf_ep){
		.ep_id = ep->id,
		.queue = ep->queue,
		.flags = VD_BPF_EP_VALID | (ep->rx_mode == VD_CTL_RX_DIRECT ? VD_BPF_EP_DIRECT : 0),
		.ip_be = ep->ip_be,
	};
}

/*
 * Reserves port_be (0: ephemeral, from the pool when it has one) of proto for ep, not yet steered: the
 * caller writes the slot (ep_slot) and then links it (ep_port_link), or frees it. Returns 0 with *out,
 * or a negative errno with *why the reason text.
 */
static int ep_port_get(struct vd_ep *ep, uint8_t proto, uint16_t port_be, struct vd_port **out, const char **why)
{
	struct vd_port *p = NULL;
	int err;

#define FAIL(e, text)         \
	do {                  \
		err = (e);    \
		*why = (text); \
		goto fail;    \
	} while (0)
	/* Only a port asked for by number can be the endpoint's already (an ephemeral one is a new kernel
	 * bind); not walking the list for the others matters: a walk is a cache miss per port the endpoint
	 * has, measured at half the daemon's cost of an ephemeral port with 70 of them. */
	for (struct vd_port *q = port_be ? ep->ports : NULL; q; q = q->next)
		if (q->proto == proto && q->port_be == port_be)
			FAIL(-EEXIST, "the endpoint has this port already");
	if (proto == IPPROTO_UDP && port_be == ep->port_be)
		FAIL(-EEXIST, "the endpoint's own port");
	if (ep->n_ports >= VD_CTL_EP_PORTS_MAX)
		FAIL(-ENOSPC, "too many ports on this endpoint");
	/* The daemon binds as root: it must not hand out a port the client could not bind itself. */
	if (port_be && ntohs(port_be) < vd__port_unprivileged_start() && ep->uid != 0)
		FAIL(-EACCES, "privileged port");
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		FAIL(-EPROTONOSUPPORT, "cannot reserve the port");
	p = port_be ? NULL : pool_take(ep->ifc, proto, ep->ip_be);
	if (!p) {
		/* The kernel decides conflicts: a kernel socket, another endpoint's or a held port's
		 * reservation all make this bind fail with EADDRINUSE. */
		err = vd__port_reserve(proto, ep->ip_be, port_be, &p);
		if (err)
			FAIL(err, err == -EADDRINUSE ? "port in use" : "cannot reserve the port");
	}
	p->ifc = ep->ifc;
	p->ephemeral = port_be == 0;

	/* The reservation makes a second owner impossible: every slot owner (an endpoint's port or its own
	 * UDP port, a held port) keeps its kernel reservation while its slot is set, and a pooled port's
	 * slot is clear. For a port asked for by number, a slot in use anyway is refused, not stolen (one
	 * lookup); an ephemeral one, which the kernel just gave us or we kept, skips the lookup. */
	if (port_be) {
		__u32 slot = vd_bpf_port_index(p->proto, ntohs(p->port_be));
		struct vd_bpf_ep cur;
		if (bpf_map_lookup_elem(ep->ifc->ports_fd, &slot, &cur))
			FAIL(-errno, "cannot read the dispatcher's port map");
		if (cur.flags & VD_BPF_EP_VALID)
			FAIL(-EADDRINUSE, "port still steered");
	}
	*out = p;
	return 0;
#undef FAIL
fail:
	if (p)
		ep_port_free(p);
	return err;
}

/* A port whose slot now steers to ep becomes the endpoint's. */
static void ep_port_link(struct vd_ep *ep, struct vd_port *p)
{
	p->in_map = true;
	p->next = ep->ports;
	ep->ports = p;
	ep->n_ports++;
	vd__dbg("ep %u: %s port %u added%s", ep->id, p->proto == IPPROTO_TCP ? "tcp" : "udp", ntohs(p->port_be),
		p->ephemeral ? " (ephemeral)" : "");
}

/* A port from ep_port_get that will not be the endpoint's: back to the pool if it came from there. */
static void ep_port_unget(struct vd_port *p)
{
	if (!p->ephemeral || !pool_put(p))
		ep_port_free(p);
}

/*
 * Reserves port_be (0: ephemeral) of proto for ep and steers it there. Returns 0 with *out_be the port, or
 * a negative errno with *why the reason text.
 */
static int ep_port_add(struct vd_ep *ep, uint8_t proto, uint16_t port_be, uint16_t *out_be, const char **why)
{
	struct vd_port *p;
	int err = ep_port_get(ep, proto, port_be, &p, why);
	if (err)
		return err;
	const struct vd_bpf_ep v = ep_slot(ep);
	err = slot_write(ep->ifc, p->proto, p->port_be, &v);
	if (err) {
		*why = "cannot install the port in the dispatcher";
		ep_port_unget(p);
		return err;
	}
	ep_port_link(ep, p);
	*out_be = p->port_be;
	return 0;
}

void vd__ep_port_add_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);
	struct vd_ctl_port_rep rep = {};
	const char *why = "no such endpoint on this connection";
	pool_busy();
	int err = ep ? ep_port_add(ep, req->proto, req->port_be, &rep.port_be, &why) : -ENOENT;

	if (err)
		vd__conn_reply(c, VD_CTL_EP_PORT_ADD, seq, err, NULL, 0, NULL, 0, why);
	else
		vd__conn_reply(c, VD_CTL_EP_PORT_ADD, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
}

/*
 * The batch: reserves up to count ephemeral ports and steers them with one map call
 * (bpf_map_update_batch: one syscall, not one per port). A failure after the first port ends the batch
 * with what was reserved (the client asked for spares; fewer is fine); only a batch with none fails.
 */
void vd__ep_ports_add_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_ports_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);
	struct vd_ctl_ep_ports_rep rep = {};
	struct vd_port *got[VD_CTL_PORTS_BATCH_MAX];
	__u32 keys[VD_CTL_PORTS_BATCH_MAX];
	struct vd_bpf_ep vals[VD_CTL_PORTS_BATCH_MAX];
	const char *why = "no such endpoint on this connection";
	unsigned n = 0;
	int err = ep ? 0 : -ENOENT;

	pool_busy();
	while (ep && n < req->count && n < VD_CTL_PORTS_BATCH_MAX) {
		/* ep_port_get counts the endpoint's ports; those gathered here are not linked yet */
		if (ep->n_ports + n >= VD_CTL_EP_PORTS_MAX) {
			err = -ENOSPC;
			why = "too many ports on this endpoint";
			break;
		}
		err = ep_port_get(ep, req->proto, 0, &got[n], &why);
		if (err)
			break;
		keys[n] = vd_bpf_port_index(got[n]->proto, ntohs(got[n]->port_be));
		vals[n] = ep_slot(ep);
		n++;
	}
	if (n) {
		/* An array map updates element by element and stops at the first failure, with count
		 * saying how many were written: those are steered, the rest go back. elem_flags 0: the
		 * batch takes no BPF_EXIST (only BPF_F_LOCK), and an array's slots always exist. A kernel
		 * that fails before the first element (no batch ops: before 5.6) leaves count as it was:
		 * then one update per port. */
		LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0);
		__u32 done = n;
		if (bpf_map_update_batch(ep->ifc->ports_fd, keys, vals, &done, &opts)) {
			err = -errno;
			why = "cannot install the ports in the dispatcher";
			if (done >= n)
				for (done = 0; done < n && slot_write(ep->ifc, got[done]->proto, got[done]->port_be,
								      &vals[done]) == 0;)
					done++;
		}
		for (unsigned i = 0; i < n; i++) {
			if (i < done) {
				ep_port_link(ep, got[i]);
				rep.port_be[rep.count++] = got[i]->port_be;
			} else {
				ep_port_unget(got[i]);
			}
		}
	}
	if (rep.count) {
		vd__dbg("ep %u: %u of %u ephemeral ports added", ep->id, rep.count, req->count);
		vd__conn_reply(c, VD_CTL_EP_PORTS_ADD, seq, 0, &rep, sizeof(rep), NULL, 0, NULL);
	} else {
		vd__conn_reply(c, VD_CTL_EP_PORTS_ADD, seq, err, NULL, 0, NULL, 0, why);
	}
}

/*
 * Takes proto/port_be from ep: frees it (hold_ms 0) or holds it. Returns 0, -ENOENT when ep does not have
 * it, or the hold's error (the port then stays the endpoint's).
 */
static int ep_port_del(struct vd_ep *ep, uint8_t proto, uint16_t port_be, uint32_t hold_ms, const char **why)
{
	for (struct vd_port **pp = &ep->ports; *pp; pp = &(*pp)->next) {
		struct vd_port *p = *pp;
		if (p->proto != proto || p->port_be != port_be)
			continue;
		if (hold_ms) {
			/* Unlinked only once the hold is in place: on failure the endpoint keeps the port. */
			struct vd_port *next = p->next;
			int err = port_hold(p, hold_ms);
			if (err) {
				p->next = next;
				*why = err == -ENOSPC ? "too many held ports" : "cannot hold the port";
				return err;
			}
			*pp = next;
		} else {
			/* Freed, not pooled: its last connection may have ended without TIME-WAIT on our side
			 * while the peer keeps one for 2 MSL (it closed second, or at the same time), and a
			 * pooled port would come back to a new connection long before that. */
			*pp = p->next;
			ep_port_free(p);
		}
		ep->n_ports--;
		return 0;
	}
	*why = "port not added to this endpoint";
	return -ENOENT;
}

void vd__ep_port_del_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);
	const char *why = "no such endpoint on this connection";
	int err = ep ? ep_port_del(ep, req->proto, req->port_be, req->hold_ms, &why) : -ENOENT;

	vd__conn_reply(c, VD_CTL_EP_PORT_DEL, seq, err, NULL, 0, NULL, 0, err ? why : NULL);
}

/*
 * The holds of one EP_PORTS_DEL (a connect-heavy client's TIME-WAITs, up to VD_CTL_PORTS_BATCH_MAX at a
 * time) with one map call, as EP_PORTS_ADD does: one syscall per port was most of the daemon's time for
 * the message, and that time is taken from the client or its peer on a small host (the connect+close
 * p99). Each port on its own as ep_port_del: one the endpoint does not have, or past the held maximum,
 * fails alone; one whose slot could not be written stays the endpoint's. Returns the first failure.
 * The endpoint's port list is walked once for the whole request, the ports asked for marked in a bitmap:
 * a walk per port (as ep_port_del does) was a cache miss per port the endpoint has, for each of up to 64,
 * with a connect-heavy client's spares and gathered holds 200-300 of them: measured, a stall of the client
 * of 300-500 us per message.
 */
static int ep_ports_hold(struct vd_ep *ep, const struct vd_ctl_ep_ports_req *req, const char **why)
{
	static uint64_t asked[65536 / 64]; /* ports of this request still to find; all 0 between calls */
	struct vd_port *got[VD_CTL_PORTS_BATCH_MAX];
	__u32 keys[VD_CTL_PORTS_BATCH_MAX];
	struct vd_bpf_ep vals[VD_CTL_PORTS_BATCH_MAX];
	unsigned n = 0, count = req->count < VD_CTL_PORTS_BATCH_MAX ? req->count : VD_CTL_PORTS_BATCH_MAX;
	int first = 0;

	for (unsigned i = 0; i < count; i++) {
		uint16_t h = ntohs(req->port_be[i]);
		asked[h / 64] |= 1ull << (h % 64);
	}
	for (struct vd_port **pp = &ep->ports; *pp && n < count;) {
		uint16_t h = ntohs((*pp)->port_be);
		if ((*pp)->proto != req->proto || !(asked[h / 64] & (1ull << (h % 64)))) {
			pp = &(*pp)->next;
			continue;
		}
		if (n_held + n >= VD_PORT_HELD_MAX) {
			/* left marked: reported below with the ports not found */
			pp = &(*pp)->next;
			continue;
		}
		asked[h / 64] &= ~(1ull << (h % 64)); /* a port asked for twice: the second is not the endpoint's */
		got[n] = *pp;
		*pp = got[n]->next; /* unlinked; linked back below if its slot cannot be written */
		keys[n] = vd_bpf_port_index(got[n]->proto, h);
		vals[n] = hold_slot(got[n]);
		n++;
	}
	for (unsigned i = 0; i < count; i++) {
		uint16_t h = ntohs(req->port_be[i]);
		if (!(asked[h / 64] & (1ull << (h % 64))))
			continue;
		asked[h / 64] &= ~(1ull << (h % 64));
		int err = n_held + n >= VD_PORT_HELD_MAX ? -ENOSPC : -ENOENT;
		vd__dbg("ep %u: port %u not held: %s", ep->id, h, strerror(-err));
		if (!first) {
			first = err;
			*why = err == -ENOENT ? "port not added to this endpoint" : "too many held ports";
		}
	}
	if (!n)
		return first;
	/* As in vd__ep_ports_add_req: an array map writes element by element and stops at the first
	 * failure with done saying how many it wrote; none written at all (no batch ops): one at a time. */
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0);
	__u32 done = n;
	if (bpf_map_update_batch(ep->ifc->ports_fd, keys, vals, &done, &opts)) {
		int err = -errno;
		if (done >= n)
			for (done = 0; done < n && (err = slot_write(ep->ifc, got[done]->proto, got[done]->port_be,
								     &vals[done])) == 0;)
				done++;
		if (done < n && !first) {
			first = err;
			*why = "cannot hold the port";
		}
	}
	uint64_t now = mono_ns();
	for (unsigned i = 0; i < n; i++) {
		if (i < done) {
			held_add(got[i], now, req->hold_ms);
			ep->n_ports--;
		} else {
			got[i]->next = ep->ports;
			ep->ports = got[i];
		}
	}
	return first;
}

/* The batch: every port on its own; the first failure is the status. QUIET: no reply when all went well. */
void vd__ep_ports_del_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_ports_req *req)
{
	struct vd_ep *ep = conn_ep(c, req->ep_id);
	const char *why = "no such endpoint on this connection", *w;
	int first = ep ? 0 : -ENOENT;

	pool_busy();
	if (ep && req->hold_ms)
		first = ep_ports_hold(ep, req, &why);
	for (unsigned i = 0; ep && !req->hold_ms && i < req->count; i++) {
		int err = ep_port_del(ep, req->proto, req->port_be[i], req->hold_ms, &w);
		if (err) {
			vd__dbg("ep %u: port %u not given back: %s", ep->id, ntohs(req->port_be[i]), w);
			if (!first) {
				first = err;
				why = w;
			}
		}
	}
	if (first || !(req->flags & VD_CTL_PORTS_QUIET))
		vd__conn_reply(c, VD_CTL_EP_PORTS_DEL, seq, first, NULL, 0, NULL, 0, first ? why : NULL);
}

/*
 * nic.h's promise: ephemeral TCP ports of a closed or dead endpoint are held for the TIME-WAIT period,
 * since its connections may not have ended cleanly; ports asked for by number are freed at once (a
 * restarted server binds again, as SO_REUSEADDR allows with the kernel); UDP has no TIME-WAIT.
 */
void vd__ep_ports_reclaim(struct vd_ep *ep)
{
	while (ep->ports) {
		struct vd_port *p = ep->ports;
		ep->ports = p->next;
		if (p->proto == IPPROTO_TCP && p->ephemeral && time_wait_ms) {
			int err = port_hold(p, time_wait_ms);
			if (err == 0)
				continue;
			vd__warn("ep %u: tcp port %u freed without TIME-WAIT: %s", ep->id, ntohs(p->port_be),
				 strerror(-err));
		}
		ep_port_free(p);
	}
	ep->n_ports = 0;
}

void vd__port_pool_stat(const struct vd_iface *ifc, struct vd_ctl_stat_spares *out)
{
	const struct port_pool *tcp = pool_of(ifc, IPPROTO_TCP), *udp = pool_of(ifc, IPPROTO_UDP);

	out->pool_tcp = tcp ? tcp->n : 0;
	out->pool_tcp_target = tcp ? tcp->target : 0;
	out->pool_udp = udp ? udp->n : 0;
	out->pool_udp_target = udp ? udp->target : 0;
	out->held_tcp = out->held_udp = 0;
	for (unsigned h = 0; h < n_held; h++) {
		const struct vd_port *p = held[h].p;
		if (p->ifc == ifc && p->proto == IPPROTO_TCP)
			out->held_tcp++;
		else if (p->ifc == ifc)
			out->held_udp++;
	}
}

unsigned vd__port_stat(struct vd_ctl_stat_port *out, unsigned max)
{
	unsigned n = 0;
	uint64_t now = mono_ns();

	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++) {
		const struct vd_ep *ep = vd__ep_at(id);
		for (const struct vd_port *p = ep ? ep->ports : NULL; p && n < max; p = p->next)
			out[n++] = (struct vd_ctl_stat_port){
				.ep_id = ep->id, .ifindex = p->ifc->ifindex, .port_be = p->port_be, .proto = p->proto,
				.flags = p->ephemeral ? VD_CTL_STAT_PORT_EPHEMERAL : 0,
			};
	}
	for (unsigned h = 0; h < n_held && n < max; h++) {
		const struct vd_port *p = held[h].p;
		uint64_t left = p->hold_until_ns > now ? (p->hold_until_ns - now + 999999u) / 1000000u : 0;
		out[n++] = (struct vd_ctl_stat_port){
			.ifindex = p->ifc->ifindex, .port_be = p->port_be, .proto = p->proto,
			.flags = (uint8_t)(VD_CTL_STAT_PORT_HELD | (p->ephemeral ? VD_CTL_STAT_PORT_EPHEMERAL : 0)),
			.hold_left_ms = (uint32_t)left,
		};
	}
	return n;
}
