/* SPDX-License-Identifier: MIT */
/*
 * `viaduct lab relay --group P,P,... [--group ...] [--netem ARGS] [--seed S] [--pidfile F] [--daemon]`
 *
 * The lab's link impairment, in userspace. This kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset), and
 * a qdisc on a host's eth0 would not see viaduct's own traffic anyway: AF_XDP copy-mode TX leaves through
 * dev_direct_xmit() past the qdisc layer, and XDP sees RX before tc. So with --netem, `lab up` joins every
 * host's eth0 (and both ends of ref0) by veth to a port in NAME-sw, and this process forwards between the
 * ports of each group, applying netem's impairments to every frame it forwards: each frame crossing a link
 * in either direction is impaired once, as by a netem qdisc on the sending host.
 *
 * Per port: an AF_PACKET SOCK_RAW socket bound to it (ETH_P_ALL), PACKET_IGNORE_OUTGOING so it does not
 * read back what the relay sends, promiscuous membership, non-blocking, read with recvmmsg. Per group: a
 * learning switch (source MAC -> port; broadcast, multicast and unknown destinations flood to the group's
 * other ports) and a PRNG seeded from --seed and the group's index. Delayed frames wait in a min-heap by
 * due time (then arrival); ppoll() sleeps until the next one is due with a nanosecond timeout, and timer
 * slack is set to 1 ns so that timeout is kept. Memory is bounded: netem's limit (default 1000) delayed
 * frames, drop-tail beyond it (counted), in one buffer pool sized from the largest port MTU.
 *
 * SIGTERM/SIGINT: print the counters to stderr and exit 0. SIGUSR1: print them and go on.
 */
#include "cli/relay.h"

#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/netem_args.h"
#include "cli/relay_sched.h"

#define RELAY_MAX_GROUPS 4
#define RELAY_MAX_PORTS 64
#define RELAY_MACS 128          /* learned addresses per group; the oldest is forgotten when full */
#define RELAY_RX_BATCH 32
#define RELAY_RX_ROUNDS 8       /* recvmmsg batches per port per wake-up: fairness between ports */
#define RELAY_RCVBUF (4 << 20)
#define RELAY_POOL_MAX (1ull << 30)

struct relay_port {
	int fd;
	int ifindex;
	char name[IF_NAMESIZE];
};

struct mac_ent {
	uint8_t mac[ETH_ALEN];
	uint16_t port;
	uint64_t seen_ns;
};

struct relay_group {
	struct relay_port port[RELAY_MAX_PORTS];
	unsigned nports;
	struct mac_ent mac[RELAY_MACS];
	unsigned nmacs;
	struct vd__impair im;
};

struct slot_meta {
	uint32_t len;
	uint16_t group, port;
};

struct relay_stats {
	uint64_t rx, tx, lost, duplicated, corrupted, ahead, delayed, queue_drops, oversize, runts, tx_errors,
		rx_errors, filtered;
};

struct relay {
	struct relay_group g[RELAY_MAX_GROUPS];
	unsigned ngroups;
	struct vd__netem netem;
	uint64_t seed;
	/* buffer pool: nslots buffers of slot_size bytes; free[] is a stack of free slot numbers */
	uint8_t *pool;
	size_t slot_size, pool_bytes;
	uint32_t nslots, nfree;
	uint32_t *free;
	struct slot_meta *meta;
	uint32_t rx_slot[RELAY_RX_BATCH]; /* the buffers recvmmsg fills; a delayed frame keeps its buffer
					     and the batch takes a free one in its place */
	struct vd__dheap heap;
	struct pollfd pfd[RELAY_MAX_GROUPS * RELAY_MAX_PORTS];
	uint16_t pfd_group[RELAY_MAX_GROUPS * RELAY_MAX_PORTS], pfd_port[RELAY_MAX_GROUPS * RELAY_MAX_PORTS];
	unsigned npfd;
	struct relay_stats st;
};

static volatile sig_atomic_t stop_req, dump_req;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		dump_req = 1;
	else
		stop_req = 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint8_t *slot_buf(struct relay *r, uint32_t s)
{
	return r->pool + (size_t)s * r->slot_size;
}

/* ---- set-up ------------------------------------------------------------------------------------------ */

static int open_port(struct relay_port *p, unsigned *mtu)
{
	int one = 1, rcvbuf = RELAY_RCVBUF;

	p->ifindex = (int)if_nametoindex(p->name);
	if (!p->ifindex) {
		fprintf(stderr, "viaduct lab relay: no interface %s: %s\n", p->name, strerror(errno));
		return -1;
	}
	/* Protocol 0 until bind: a socket created with ETH_P_ALL would receive every interface's frames
	 * between socket() and bind(). */
	p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		fprintf(stderr, "viaduct lab relay: packet socket: %s\n", strerror(errno));
		return -1;
	}
	struct packet_mreq mr = { .mr_ifindex = p->ifindex, .mr_type = PACKET_MR_PROMISC };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = p->ifindex };
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", p->name);
	if (setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0 ||
	    setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0 ||
	    bind(p->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 || ioctl(p->fd, SIOCGIFMTU, &ifr) < 0) {
		fprintf(stderr, "viaduct lab relay: port %s: %s\n", p->name, strerror(errno));
		return -1;
	}
	/* Root may exceed rmem_max; a burst from a host must not overflow the socket before we wake. */
	if (setsockopt(p->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if ((unsigned)ifr.ifr_mtu > *mtu)
		*mtu = (unsigned)ifr.ifr_mtu;
	return 0;
}

/* "p0,p1,p2" -> a group. */
static int add_group(struct relay *r, const char *list)
{
	if (r->ngroups == RELAY_MAX_GROUPS) {
		fprintf(stderr, "viaduct lab relay: at most %d groups\n", RELAY_MAX_GROUPS);
		return -1;
	}
	struct relay_group *g = &r->g[r->ngroups];
	const char *s = list;
	while (*s) {
		size_t n = strcspn(s, ",");
		if (n == 0 || n >= IF_NAMESIZE || g->nports == RELAY_MAX_PORTS) {
			fprintf(stderr, "viaduct lab relay: --group '%s': bad port list (names of 1..%d chars, at most "
					"%d ports)\n", list, IF_NAMESIZE - 1, RELAY_MAX_PORTS);
			return -1;
		}
		memcpy(g->port[g->nports].name, s, n);
		g->port[g->nports].name[n] = '\0';
		g->port[g->nports].fd = -1;
		g->nports++;
		s += n;
		if (*s == ',')
			s++;
	}
	if (g->nports < 2) {
		fprintf(stderr, "viaduct lab relay: --group '%s': a group needs at least 2 ports\n", list);
		return -1;
	}
	r->ngroups++;
	return 0;
}

static int open_all(struct relay *r)
{
	unsigned mtu = 0;

	for (unsigned gi = 0; gi < r->ngroups; gi++) {
		struct relay_group *g = &r->g[gi];
		/* Each group its own stream (SplitMix64 of seed + group: distinct, reproducible). */
		struct vd__rand mix;
		vd__rand_seed(&mix, r->seed + gi);
		vd__impair_init(&g->im, &r->netem, vd__rand_next(&mix));
		for (unsigned pi = 0; pi < g->nports; pi++) {
			if (open_port(&g->port[pi], &mtu))
				return -1;
			r->pfd[r->npfd] = (struct pollfd){ .fd = g->port[pi].fd, .events = POLLIN };
			r->pfd_group[r->npfd] = (uint16_t)gi;
			r->pfd_port[r->npfd] = (uint16_t)pi;
			r->npfd++;
		}
	}
	/* A frame is the MTU plus the Ethernet header and one VLAN tag, rounded to a cache line. */
	r->slot_size = ((size_t)mtu + ETH_HLEN + 4 + 63) & ~(size_t)63;
	r->nslots = r->netem.limit + RELAY_RX_BATCH + 1;
	r->pool_bytes = (size_t)r->nslots * r->slot_size;
	if (r->pool_bytes > RELAY_POOL_MAX) {
		fprintf(stderr, "viaduct lab relay: limit %u x %zu-byte frames is more than %llu MiB: lower the limit\n",
			r->netem.limit, r->slot_size, RELAY_POOL_MAX >> 20);
		return -1;
	}
	/* Untouched pages cost nothing: the pool occupies memory only as deep as the queue has been. */
	r->pool = mmap(NULL, r->pool_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	r->free = calloc(r->nslots, sizeof(*r->free));
	r->meta = calloc(r->nslots, sizeof(*r->meta));
	if (r->pool == MAP_FAILED || !r->free || !r->meta || vd__dheap_init(&r->heap, r->netem.limit)) {
		fprintf(stderr, "viaduct lab relay: out of memory\n");
		if (r->pool == MAP_FAILED)
			r->pool = NULL;
		return -1;
	}
	/* Slots 0..B-1 are the receive batch; the rest start free. */
	for (uint32_t i = 0; i < RELAY_RX_BATCH; i++)
		r->rx_slot[i] = i;
	for (uint32_t s = r->nslots; s > RELAY_RX_BATCH; s--)
		r->free[r->nfree++] = s - 1;
	return 0;
}

static void close_all(struct relay *r)
{
	for (unsigned gi = 0; gi < r->ngroups; gi++)
		for (unsigned pi = 0; pi < r->g[gi].nports; pi++)
			if (r->g[gi].port[pi].fd >= 0)
				close(r->g[gi].port[pi].fd);
	if (r->pool)
		munmap(r->pool, r->pool_bytes);
	free(r->free);
	free(r->meta);
	vd__dheap_free(&r->heap);
}

/* ---- switching ---------------------------------------------------------------------------------------- */

static void learn(struct relay_group *g, const uint8_t *src, unsigned port, uint64_t now)
{
	unsigned oldest = 0;

	if (src[0] & 1) /* a group address is never a source */
		return;
	for (unsigned i = 0; i < g->nmacs; i++) {
		if (memcmp(g->mac[i].mac, src, ETH_ALEN) == 0) {
			g->mac[i].port = (uint16_t)port;
			g->mac[i].seen_ns = now;
			return;
		}
		if (g->mac[i].seen_ns < g->mac[oldest].seen_ns)
			oldest = i;
	}
	unsigned i = g->nmacs < RELAY_MACS ? g->nmacs++ : oldest;
	memcpy(g->mac[i].mac, src, ETH_ALEN);
	g->mac[i].port = (uint16_t)port;
	g->mac[i].seen_ns = now;
}

static int lookup(const struct relay_group *g, const uint8_t *dst)
{
	for (unsigned i = 0; i < g->nmacs; i++)
		if (memcmp(g->mac[i].mac, dst, ETH_ALEN) == 0)
			return g->mac[i].port;
	return -1;
}

static void tx_one(struct relay *r, const struct relay_port *p, const uint8_t *buf, uint32_t len)
{
	/* A full veth peer (EAGAIN/ENOBUFS) or a port going away: the frame is lost, as on a wire. */
	if (send(p->fd, buf, len, MSG_DONTWAIT) == (ssize_t)len)
		r->st.tx++;
	else
		r->st.tx_errors++;
}

/* Sends a frame that arrived on port in of group gi to where its destination lives, or floods it. */
static void forward(struct relay *r, unsigned gi, unsigned in, const uint8_t *buf, uint32_t len)
{
	struct relay_group *g = &r->g[gi];
	int out = (buf[0] & 1) ? -1 : lookup(g, buf);

	if (out == (int)in) { /* both ends on the same port: nothing to forward, as a bridge does */
		r->st.filtered++;
		return;
	}
	if (out >= 0) {
		tx_one(r, &g->port[out], buf, len);
		return;
	}
	for (unsigned pi = 0; pi < g->nports; pi++)
		if (pi != in)
			tx_one(r, &g->port[pi], buf, len);
}

/* ---- impairment and the delay queue ----------------------------------------------------------------- */

static void put_free(struct relay *r, uint32_t s)
{
	r->free[r->nfree++] = s;
}

/*
 * One received frame in slot *rxs: decides its copies, sends at once what is due now, queues the rest.
 * A queued original keeps its buffer and *rxs gets a free one in its place.
 */
static void impair(struct relay *r, unsigned gi, unsigned in, uint32_t *rxs, uint32_t len, uint64_t now)
{
	struct vd__impair_copy c[2];
	unsigned n = vd__impair_decide(&r->g[gi].im, len, c);

	if (n == 0) {
		r->st.lost++;
		return;
	}
	if (n == 2)
		r->st.duplicated++;
	for (unsigned k = 0; k < n; k++) {
		int last = k == n - 1;
		uint32_t s;
		if (last) {
			s = *rxs;
		} else {
			/* Never empty: free = limit + 1 - queued >= 1 (see the pool sizing in open_all). */
			if (r->nfree == 0) {
				r->st.queue_drops++;
				continue;
			}
			s = r->free[--r->nfree];
			memcpy(slot_buf(r, s), slot_buf(r, *rxs), len);
		}
		uint8_t *buf = slot_buf(r, s);
		if (c[k].corrupt) {
			buf[c[k].corrupt_off] ^= (uint8_t)(1u << c[k].corrupt_bit);
			r->st.corrupted++;
		}
		r->st.ahead += (uint64_t)c[k].ahead;
		if (c[k].ahead || c[k].delay_ns == 0) {
			forward(r, gi, in, buf, len);
		} else if (vd__dheap_push(&r->heap, now + c[k].delay_ns, s) == 0) {
			r->st.delayed++;
			r->meta[s] = (struct slot_meta){ .len = len, .group = (uint16_t)gi, .port = (uint16_t)in };
			if (last)
				*rxs = r->free[--r->nfree]; /* never empty, as above */
			continue; /* the heap owns slot s now */
		} else {
			r->st.queue_drops++; /* netem's limit: drop-tail */
		}
		if (!last)
			put_free(r, s);
	}
}

/* Sends every queued frame due by now. */
static void flush_due(struct relay *r, uint64_t now)
{
	const struct vd__dheap_ent *e;

	while ((e = vd__dheap_peek(&r->heap)) && e->due_ns <= now) {
		uint32_t s = e->slot;
		vd__dheap_pop(&r->heap);
		forward(r, r->meta[s].group, r->meta[s].port, slot_buf(r, s), r->meta[s].len);
		put_free(r, s);
	}
}

/* Drains (up to RELAY_RX_ROUNDS batches) the socket of pfd entry i. */
static void rx_port(struct relay *r, unsigned i)
{
	unsigned gi = r->pfd_group[i], in = r->pfd_port[i];
	struct relay_group *g = &r->g[gi];

	for (unsigned round = 0; round < RELAY_RX_ROUNDS; round++) {
		struct mmsghdr m[RELAY_RX_BATCH];
		struct iovec iov[RELAY_RX_BATCH];
		memset(m, 0, sizeof(m));
		for (unsigned k = 0; k < RELAY_RX_BATCH; k++) {
			iov[k] = (struct iovec){ .iov_base = slot_buf(r, r->rx_slot[k]), .iov_len = r->slot_size };
			m[k].msg_hdr.msg_iov = &iov[k];
			m[k].msg_hdr.msg_iovlen = 1;
		}
		/* MSG_TRUNC: msg_len is the frame's real length, so an oversize frame is seen, not cut. */
		int n = recvmmsg(g->port[in].fd, m, RELAY_RX_BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
		if (n <= 0) {
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				r->st.rx_errors++; /* e.g. ENETDOWN once while the lab is torn down */
			return;
		}
		uint64_t now = now_ns();
		for (int k = 0; k < n; k++) {
			uint32_t len = m[k].msg_len;
			r->st.rx++;
			if (len > r->slot_size) {
				r->st.oversize++;
				continue;
			}
			if (len < ETH_HLEN) {
				r->st.runts++;
				continue;
			}
			learn(g, slot_buf(r, r->rx_slot[k]) + ETH_ALEN, in, now);
			impair(r, gi, in, &r->rx_slot[k], len, now);
		}
		if (n < RELAY_RX_BATCH)
			return;
	}
}

static void print_stats(const struct relay *r, const char *when)
{
	const struct relay_stats *s = &r->st;
	fprintf(stderr,
		"viaduct lab relay: %s: rx %llu, tx %llu, lost %llu, duplicated %llu, corrupted %llu, "
		"reordered-ahead %llu, delayed %llu, queue-drops %llu, queued %u, oversize %llu, runts %llu, "
		"rx-errors %llu, tx-errors %llu, filtered %llu\n",
		when, (unsigned long long)s->rx, (unsigned long long)s->tx, (unsigned long long)s->lost,
		(unsigned long long)s->duplicated, (unsigned long long)s->corrupted, (unsigned long long)s->ahead,
		(unsigned long long)s->delayed, (unsigned long long)s->queue_drops, r->heap.n,
		(unsigned long long)s->oversize, (unsigned long long)s->runts, (unsigned long long)s->rx_errors,
		(unsigned long long)s->tx_errors, (unsigned long long)s->filtered);
	fflush(stderr);
}

static int loop(struct relay *r, const sigset_t *waitmask)
{
	while (!stop_req) {
		uint64_t now = now_ns();
		flush_due(r, now);
		struct timespec ts, *tp = NULL;
		const struct vd__dheap_ent *e = vd__dheap_peek(&r->heap);
		if (e) {
			uint64_t w = e->due_ns - now; /* > 0: flush_due sent everything due by now */
			ts.tv_sec = (time_t)(w / 1000000000ull);
			ts.tv_nsec = (long)(w % 1000000000ull);
			tp = &ts;
		}
		/* Signals are blocked except inside ppoll: a SIGTERM is never lost between the check and the
		 * wait. */
		int n = ppoll(r->pfd, r->npfd, tp, waitmask);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "viaduct lab relay: ppoll: %s\n", strerror(errno));
			return -1;
		}
		if (dump_req) {
			dump_req = 0;
			print_stats(r, "counters");
		}
		for (unsigned i = 0; n > 0 && i < r->npfd; i++)
			if (r->pfd[i].revents & (POLLIN | POLLERR))
				rx_port(r, i);
	}
	return 0;
}

/* ---- command line -------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct lab relay --group PORT,PORT[,...] [--group ...] [--netem \"ARGS\"] [--seed S]\n"
		"                         [--pidfile FILE] [--daemon]\n"
		"Internal: the userspace netem relay `viaduct lab up --netem` runs in NAME-sw (this kernel has no\n"
		"sch_netem, and a qdisc would not see AF_XDP traffic). Forwards between the ports of each group as a\n"
		"learning switch and impairs each forwarded frame once. ARGS: see `viaduct lab --help`; correlation\n"
		"values are accepted and ignored. --seed overrides netem's `seed`. SIGUSR1 prints the counters,\n"
		"SIGTERM prints them and exits.\n");
}

static int parse_seed(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

/* Forks; the parent writes the child's pid to pidfile and exits 0, so whoever started us knows the ports
 * are open when we return. The child leaves the session of its starter. */
static int daemonize(const char *pidfile)
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "viaduct lab relay: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		if (pidfile) {
			FILE *f = fopen(pidfile, "w");
			if (!f || fprintf(f, "%d\n", (int)pid) < 0 || fclose(f) != 0) {
				fprintf(stderr, "viaduct lab relay: %s: %s\n", pidfile, strerror(errno));
				kill(pid, SIGKILL);
				_exit(1);
			}
		}
		_exit(0);
	}
	setsid();
	return 0;
}

int vd__lab_relay(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' }, { "netem", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },  { "pidfile", required_argument, NULL, 'p' },
		{ "daemon", no_argument, NULL, 'd' },      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct relay r; /* large (MAC tables, poll set): not on the stack */
	const char *netem = NULL, *pidfile = NULL;
	int daemon = 0, have_seed = 0, c;
	char err[256];

	memset(&r, 0, sizeof(r));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			if (add_group(&r, optarg))
				return 2;
			break;
		case 'n': netem = optarg; break;
		case 's':
			if (parse_seed(optarg, &r.seed)) {
				fprintf(stderr, "viaduct lab relay: --seed: '%s' is not a number\n", optarg);
				return 2;
			}
			have_seed = 1;
			break;
		case 'p': pidfile = optarg; break;
		case 'd': daemon = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "viaduct lab relay: unknown or misused option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc || r.ngroups == 0) {
		usage(stderr);
		return 2;
	}
	if (vd__netem_parse(netem, &r.netem, err, sizeof(err))) {
		fprintf(stderr, "viaduct lab relay: --netem: %s\n", err);
		return 2;
	}
	if (!have_seed)
		r.seed = r.netem.seed;

	int rc = 1;
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGUSR1);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	/* ppoll's timeout is the delay's precision: without this the kernel may add its default 50 us. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	if (open_all(&r) == 0 && (!daemon || daemonize(pidfile) == 0)) {
		char desc[256];
		vd__netem_format(&r.netem, desc, sizeof(desc));
		fprintf(stderr, "viaduct lab relay: pid %d, %u groups, netem \"%s\", seed %llu, limit %u, %zu-byte "
				"buffers%s\n", (int)getpid(), r.ngroups, desc, (unsigned long long)r.seed, r.netem.limit,
			r.slot_size, r.netem.correlations ? " (correlations ignored)" : "");
		fflush(stderr);
		rc = loop(&r, &waitmask) ? 1 : 0;
		print_stats(&r, "exit");
		if (daemon && pidfile)
			unlink(pidfile);
	}
	close_all(&r);
	return rc;
}
