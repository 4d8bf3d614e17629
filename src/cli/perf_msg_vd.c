/* SPDX-License-Identifier: MIT */
/*
 * The viaduct messaging paths of `viaduct perf pingpong|bw|rate`: the public API (viaduct/msg.h) exactly
 * as an application uses it, busy-polling with vd_test/vd_test_any (progress runs in the calling thread).
 *
 * Match bits: kind << 32 | a counter. Kinds:
 *   HELLO  client -> server, answered with HELLO: the server is up.
 *   PING   client -> server, answered with PONG of the same bytes.
 *   DATA   client -> server, received and dropped (bw and rate). A send completes once the server's
 *          library has the whole message, so the sender's count is what arrived.
 *   QUIT   client -> server, answered with QUIT: the server leaves.
 * The server keeps SERVER_SLOTS receives posted (any kind); a PING's buffer is answered from in place and
 * reposted once the answer completes.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <viaduct/msg.h>

#include "perf.h"
#include "perf_msg.h"

enum { K_HELLO = 1, K_PING, K_PONG, K_DATA, K_QUIT };
#define TAG(kind, n) ((uint64_t)(kind) << 32 | (uint32_t)(n))
#define KIND(match) ((unsigned)((match) >> 32))
#define ALL_BITS (~0ull)

#define SERVER_SLOTS 16u
#define BW_WINDOW_MAX 64u
#define REQ_TIMEOUT_NS 5000000000ull /* one request taking this long: the peer is gone */

static int open_ep(struct vd_ep **ep, const struct vd__msg_side *s, enum vd__msg_path p)
{
	char ip[32] = "0.0.0.0", local[48];
	struct vd_ep_opts o;
	const char *iface = p == VD_MSG_VIADUCT_XDP ? s->iface : s->ref_iface;

	vd_ep_opts_init(&o);
	if (p == VD_MSG_VIADUCT_SHM) {
		/* Both sides in one host: the server on a fixed port of the loopback address, the client on an
		 * ephemeral one; the udp backend carries the first frames until the channel is up. */
		snprintf(local, sizeof(local), "127.0.0.1:%u", s->server ? vd__msg_path_port(p) : 0u);
		o.nic.local = local;
		o.nic.backend = VD_BACKEND_UDP;
		o.nic.same_host_shm = 1;
		return vd_ep_open(ep, &o);
	}
	if (!s->server) {
		int r = vd__perf_route_src(p == VD_MSG_VIADUCT_XDP ? s->peer_ip : s->ref_peer_ip, ip, sizeof(ip),
					   NULL, 0);
		if (r < 0)
			return r;
	} else if (iface) {
		uint32_t a;

		if (vd__perf_iface_ipv4(iface, &a) == 0)
			snprintf(ip, sizeof(ip), "%u.%u.%u.%u", ((uint8_t *)&a)[0], ((uint8_t *)&a)[1],
				 ((uint8_t *)&a)[2], ((uint8_t *)&a)[3]);
	}
	snprintf(local, sizeof(local), "%s:%u", ip, vd__msg_path_port(p));
	o.nic.local = local;
	if (p == VD_MSG_VIADUCT_XDP) {
		o.nic.backend = VD_BACKEND_XDP;
		/* Steered by default, as the sockets stack: with the XSKs in copy mode the dispatcher's copy
		 * into the ring buffer costs less than the XSK receive path (docs/design.md). Measured on the
		 * MTU 1500 lab, 8 B ping-pong, --rx-mode runs interleaved: p50 2.03-2.09 us steered (one run
		 * 2.37), 2.38-2.39 us direct, bare AF_XDP 1.83-1.89 us; bw 1 MiB at MTU 9000: 17.8-18.7
		 * Gbit/s steered (a multi-chunk frame is one ring record, no bounce copy), 16.3 direct. */
		o.nic.rx_mode = s->rx_direct ? VD_RX_DIRECT : VD_RX_STEERED;
		o.nic.queue = s->rx_direct ? s->queue : -1;
		o.nic.ifname = s->iface;
	} else {
		o.nic.backend = VD_BACKEND_UDP;
	}
	/* Combining stays on (the default): it is what makes the small-message rate, and a ping-pong never
	 * has data in flight when it sends, so Nagle never holds a ping back. */
	return vd_ep_open(ep, &o);
}

/* --- server --------------------------------------------------------------------------------------- */

struct slot {
	uint8_t *buf;
	int quit; /* the answer in flight is QUIT's: leave once it completes */
};

static int post_recv(struct vd_ep *ep, struct slot *sl, size_t cap)
{
	struct vd_req *r;

	return vd_irecv(ep, sl->buf, cap, 0, 0, sl, &r);
}

static int serve(const struct vd__msg_side *s, enum vd__msg_path p)
{
	size_t cap = vd__msg_side_max_size(s);
	struct slot slots[SERVER_SLOTS];
	struct vd_ep *ep;
	int rc = open_ep(&ep, s, p), done = 0;

	if (rc < 0)
		return rc;
	memset(slots, 0, sizeof(slots));
	for (unsigned i = 0; i < SERVER_SLOTS && rc == 0; i++) {
		slots[i].buf = malloc(cap ? cap : 1);
		rc = slots[i].buf ? post_recv(ep, &slots[i], cap) : -ENOMEM;
	}
	uint64_t last = vd__perf_now_ns(), idle_ns = (uint64_t)s->idle_ms * 1000000ull;
	unsigned spins = 0, nrepost = 0;
	struct slot *repost[SERVER_SLOTS];
	int active = 0;

	/*
	 * Off the answer's path: the completion of the previous answer comes with the next request (its ack
	 * rides on it) and is reported first, so its buffer is reposted when the server is idle (or at once if
	 * fewer than half the slots are posted), and the clock is read only every 1024 idle polls.
	 */
	while (rc == 0 && !done && !vd__perf_stop) {
		struct vd_req *r;
		struct vd_status st;
		int got = vd_test_any(ep, &r, &st);

		if (got < 0) {
			rc = got;
			break;
		}
		if (!got) {
			if (nrepost) {
				rc = post_recv(ep, repost[--nrepost], cap);
				continue;
			}
			if ((++spins & 1023) == 0) {
				uint64_t now = vd__perf_now_ns();

				if (active)
					last = now, active = 0;
				else if (now - last > idle_ns)
					rc = -ETIMEDOUT;
			}
			continue;
		}
		active = 1;
		struct slot *sl = st.context;

		if (st.is_send) {
			/* An answer finished (or its peer is gone: a client restarted; not our failure). */
			if (sl->quit)
				done = 1;
			else if ((repost[nrepost++] = sl, nrepost > SERVER_SLOTS / 2))
				rc = post_recv(ep, repost[--nrepost], cap);
			continue;
		}
		if (st.error && st.error != -EMSGSIZE) {
			rc = post_recv(ep, sl, cap); /* a receive failed with its peer: keep serving others */
			continue;
		}
		unsigned kind = KIND(st.match), answer = kind == K_PING ? K_PONG : kind;

		if (kind == K_PING || kind == K_HELLO || kind == K_QUIT) {
			sl->quit = kind == K_QUIT;
			rc = vd_isend(ep, sl->buf, kind == K_PING ? st.xfer_len : 0, st.peer,
				      TAG(answer, st.match), sl, &r);
			if (rc < 0 && vd_peer_state(st.peer) < 0)
				rc = post_recv(ep, sl, cap);
		} else {
			rc = post_recv(ep, sl, cap); /* DATA (or anything else): received, counted by the sender */
		}
	}
	vd_ep_close(ep);
	for (unsigned i = 0; i < SERVER_SLOTS; i++)
		free(slots[i].buf);
	return vd__perf_stop ? -EINTR : rc;
}

/* --- client --------------------------------------------------------------------------------------- */

/* Busy-polls req to completion; 0, its status error, or -ETIMEDOUT. */
static int poll_req(struct vd_ep *ep, struct vd_req **req, struct vd_status *st)
{
	uint64_t t0 = vd__perf_now_ns();
	unsigned spins = 0;

	for (;;) {
		int r = vd_test(ep, req, st);

		if (r < 0)
			return r;
		if (r)
			return st->error;
		if ((++spins & 255) == 0 && (vd__perf_now_ns() - t0 > REQ_TIMEOUT_NS || vd__perf_stop))
			return vd__perf_stop ? -EINTR : -ETIMEDOUT;
	}
}

/* A zero-byte exchange of kind with the server (HELLO, QUIT), waiting up to timeout_ms. */
static int exchange(struct vd_ep *ep, struct vd_peer *peer, unsigned kind, uint32_t n, int timeout_ms)
{
	struct vd_req *rr, *sr;
	struct vd_status st;
	int rc = vd_irecv(ep, NULL, 0, TAG(kind, n), ALL_BITS, NULL, &rr);

	if (rc < 0)
		return rc;
	rc = vd_isend(ep, NULL, 0, peer, TAG(kind, n), NULL, &sr);
	if (rc < 0)
		return rc;
	/* vd_wait sleeps in the nic between timers: fine here, off the measured path. */
	rc = vd_wait(ep, &rr, &st, timeout_ms);
	if (rc == 1)
		rc = st.error;
	else if (rc == 0)
		rc = -ETIMEDOUT;
	if (rc == 0 && vd_wait(ep, &sr, &st, timeout_ms) != 1)
		rc = -ETIMEDOUT;
	return rc;
}

/* Counters at the start of a measurement, for the extra fields of its result. */
struct snap {
	uint64_t retrans, frames, shm_frames;
};

static struct snap snap_take(const struct vd_ep *ep)
{
	struct vd_ep_stats es;
	struct vd_nic_stats ns;

	vd_ep_stats(ep, &es);
	vd_nic_stats(vd_ep_nic(ep), &ns);
	return (struct snap){ es.retransmits, es.frames_sent, ns.shm_tx_frames };
}

/* ,"retrans":N since s0, and for viaduct-shm the share of frames sent through shared memory (a check that
 * the path measured is the one named: the udp backend carries frames only until the channel is up). */
static void snap_extra(char *buf, size_t cap, const struct vd_ep *ep, enum vd__msg_path p, struct snap s0)
{
	struct snap s1 = snap_take(ep);
	int n = snprintf(buf, cap, ",\"retrans\":%llu", (unsigned long long)(s1.retrans - s0.retrans));

	if (p == VD_MSG_VIADUCT_SHM && n > 0 && (size_t)n < cap)
		snprintf(buf + n, cap - (size_t)n, ",\"shm_share\":%.4f",
			 s1.frames > s0.frames ? (double)(s1.shm_frames - s0.shm_frames) / (double)(s1.frames - s0.frames)
					       : 0.0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int pingpong(struct vd_ep *ep, struct vd_peer *peer, const struct vd__msg_side *s, enum vd__msg_path p,
		    unsigned size, uint32_t *seq)
{
	uint8_t *out = malloc(size ? size : 1), *in = malloc(size ? size : 1);
	uint64_t *rtt = calloc(s->iters, sizeof(*rtt));
	uint64_t budget = (uint64_t)s->pingpong_ms * 1000000ull, t_start = vd__perf_now_ns();
	struct snap s0 = snap_take(ep);
	unsigned n = 0;
	int rc = 0;

	if (!out || !in || !rtt) {
		rc = -ENOMEM;
		goto out;
	}
	memset(out, 0x5a, size);
	/* warmup + iters round trips, or fewer once the time budget (pingpong_ms) is spent: at least 10. */
	for (unsigned i = 0; i < s->warmup + s->iters && rc == 0 && !vd__perf_stop; i++) {
		struct vd_req *rr, *sr;
		struct vd_status st;
		uint32_t k = ++*seq;
		uint64_t t0 = vd__perf_now_ns();

		if ((rc = vd_irecv(ep, in, size, TAG(K_PONG, k), ALL_BITS, NULL, &rr)) < 0 ||
		    (rc = vd_isend(ep, out, size, peer, TAG(K_PING, k), NULL, &sr)) < 0)
			break;
		if ((rc = poll_req(ep, &rr, &st)) != 0 || (rc = poll_req(ep, &sr, &st)) != 0)
			break;
		uint64_t t1 = vd__perf_now_ns();

		if (i >= s->warmup)
			rtt[n++] = t1 - t0;
		else if (t1 - t_start > budget / 5)
			i = s->warmup - 1; /* warm-up gets a fifth of the time budget at most */
		if (n >= 10 && t1 - t_start > budget)
			break;
	}
	if (rc == 0 && n) {
		qsort(rtt, n, sizeof(*rtt), cmp_u64);
		char extra[128], more[96];

		snap_extra(more, sizeof(more), ep, p, s0);
		snprintf(extra, sizeof(extra), ",\"iters\":%u%s", n, more);
		/* Half round trip, nearest-rank percentiles. */
		vd__msg_emit(s->out, VD_MSG_PINGPONG, p, size, rtt[(n * 50 + 99) / 100 - 1] / 2000.0,
			     rtt[(n * 99 + 99) / 100 - 1] / 2000.0, NAN, NAN, extra);
	}
out:
	free(out);
	free(in);
	free(rtt);
	return rc;
}

/* This process's CPU time (user + system) in ns. */
static uint64_t cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/*
 * bw and rate: window sends of size in flight for duration_ms; rates at the sender's completions.
 * "cpu_ns_per_kb": the sender's CPU time (user + system) per KiB sent. A busy-polling sender that is the
 * bottleneck is never idle, so on a quiet machine this is its wall time per KiB. Time other processes
 * take from it does not count (it does from the rate), but a receiver they stall makes it spin, which
 * does: to compare changes of the sending path on a shared machine, take the lowest over several runs.
 */
static int stream(struct vd_ep *ep, struct vd_peer *peer, const struct vd__msg_side *s, enum vd__msg_path p,
		  enum vd__msg_bench b, unsigned size, uint32_t *seq)
{
	unsigned window = b == VD_MSG_RATE ? VD_MSG_RATE_WINDOW : s->window, inflight = 0;
	uint8_t *buf = malloc(size ? size : 1);
	uint64_t start = vd__perf_now_ns(), end = start + (uint64_t)s->duration_ms * 1000000ull, last = start;
	uint64_t done = 0, last_progress = start;
	struct snap s0 = snap_take(ep);
	uint64_t cpu0 = cpu_ns();
	unsigned spins = 0;
	int rc = 0, sending = 1;

	if (!buf)
		return -ENOMEM;
	memset(buf, 0xa5, size);
	/* Every send reads the same buffer: allowed, the library only reads it. */
	while ((sending || inflight) && rc == 0 && !vd__perf_stop) {
		while (sending && inflight < window && rc == 0) {
			struct vd_req *r;

			rc = vd_isend(ep, buf, size, peer, TAG(K_DATA, ++*seq), NULL, &r);
			inflight += rc == 0;
		}
		struct vd_req *r;
		struct vd_status st;
		int got = vd_test_any(ep, &r, &st);

		/* The clock only on a completion and every 16th idle poll: read on every poll, it took a
		 * quarter of the sender's time (the deadline checks need no better than a few us). */
		if (!got && (++spins & 15) != 0)
			continue;
		uint64_t now = vd__perf_now_ns();

		if (got < 0) {
			rc = got;
		} else if (got) {
			if (st.error)
				rc = st.error;
			inflight--;
			done++;
			last = last_progress = now;
		} else if (now - last_progress > REQ_TIMEOUT_NS) {
			rc = -ETIMEDOUT;
		}
		if (now >= end)
			sending = 0;
	}
	free(buf);
	if (rc == 0 && done && last > start) {
		double ns = (double)(last - start), kb = (double)done * size / 1024.0;
		char extra[192], more[96];

		snap_extra(more, sizeof(more), ep, p, s0);
		snprintf(extra, sizeof(extra), ",\"window\":%u,\"msgs\":%llu,\"cpu_ns_per_kb\":%.1f%s", window,
			 (unsigned long long)done, kb > 0 ? (double)(cpu_ns() - cpu0) / kb : 0.0, more);
		vd__msg_emit(s->out, b, p, size, NAN, NAN, (double)done * size * 8 / ns, (double)done * 1000.0 / ns,
			     extra);
	}
	return rc;
}

static int client(const struct vd__msg_side *s, enum vd__msg_path p)
{
	const char *name = vd__msg_path_name(p);
	char server[48];
	struct vd_peer *peer;
	struct vd_ep *ep;
	uint32_t seq = 0;
	int rc = open_ep(&ep, s, p);

	if (rc < 0) {
		fprintf(stderr, "viaduct perf: %s: cannot open an endpoint: %s\n", name, strerror(-rc));
		return rc;
	}
	snprintf(server, sizeof(server), "%s:%u",
		 p == VD_MSG_VIADUCT_SHM ? "127.0.0.1" : p == VD_MSG_VIADUCT_XDP ? s->peer_ip : s->ref_peer_ip,
		 vd__msg_path_port(p));
	rc = vd_peer_resolve(ep, server, &peer);
	/* The server may still be opening its endpoint: retransmission covers the wait. */
	if (rc == 0 && (rc = exchange(ep, peer, K_HELLO, 0, 15000)) != 0)
		fprintf(stderr, "viaduct perf: %s: no answer from %s: %s\n", name, server, strerror(-rc));
	for (unsigned b = 0; b < VD_MSG_NBENCH && rc == 0; b++) {
		if (!s->benches[b])
			continue;
		for (unsigned i = 0; i < s->nsizes[b] && rc == 0 && !vd__perf_stop; i++) {
			unsigned size = s->sizes[b][i];

			rc = b == VD_MSG_PINGPONG ? pingpong(ep, peer, s, p, size, &seq)
						  : stream(ep, peer, s, p, (enum vd__msg_bench)b, size, &seq);
			if (rc)
				fprintf(stderr, "viaduct perf: %s %s size %u: %s\n", name,
					vd__msg_bench_name((enum vd__msg_bench)b), size, strerror(-rc));
		}
	}
	/* Best effort: a server that misses it leaves on its idle timeout. */
	exchange(ep, peer, K_QUIT, 0, 2000);
	vd_ep_close(ep);
	return vd__perf_stop ? -EINTR : rc;
}

int vd__msg_vd_run(const struct vd__msg_side *s, enum vd__msg_path p)
{
	return s->server ? serve(s, p) : client(s, p);
}
