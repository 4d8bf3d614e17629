/* SPDX-License-Identifier: MIT */
/*
 * The benchmark itself, written once against a transport (perf.h), so every path runs the same code.
 *
 * Messages (UDP payload, host byte order: both ends run this program on the same machine kind):
 *   struct msg { u16 magic; u8 type; u8 pad; u32 seq; u64 ts; } then padding up to the frame size.
 *   HELLO  client -> server, echoed: the server is up on this path.
 *   PING   client -> server, echoed unchanged: seq = iteration, ts = the client's send time.
 *   DATA   client -> server, counted, not answered: seq = stream run id.
 *   STATS  client -> server with seq = run id; the server answers STATS with its counts for that run.
 *   QUIT   client -> server, echoed: the server leaves this path.
 * Requests that may be lost (HELLO, PING, STATS, QUIT) are retried by the client on a timeout, so a lost
 * frame never hangs the benchmark; lost pings are counted and reported.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"

#define MSG_MAGIC 0x7664u /* "vd" */

enum msg_type { MSG_HELLO = 1, MSG_PING, MSG_DATA, MSG_STATS, MSG_QUIT };

struct msg {
	uint16_t magic;
	uint8_t type;
	uint8_t pad;
	uint32_t seq;
	uint64_t ts;
};

struct stats_msg {
	struct msg h;
	uint64_t frames, bytes, first_ns, last_ns;
};

_Static_assert(sizeof(struct msg) <= VD_PERF_MIN_SIZE - VD_PERF_HDR_OVERHEAD, "ping must fit 64 B frames");

#define PING_TIMEOUT_NS 200000000ull   /* a round trip this long is a lost frame: resend */
#define CTL_RETRY_NS 20000000ull       /* retry period of hello/stats/quit */
#define HELLO_TIMEOUT_NS 15000000000ull /* the server may still be loading its XDP program */

static int parse_msg(const struct vd__perf_buf *b, struct msg *m)
{
	if (b->len < sizeof(*m))
		return -1;
	memcpy(m, b->data, sizeof(*m));
	return m->magic == MSG_MAGIC ? 0 : -1;
}

/* Sends one frame, retrying while the device is momentarily full (bounded by the stop flag and 1 s). */
static int send1(struct vd__perf_tp *tp, const void *p, uint32_t len)
{
	uint64_t t0 = 0;

	for (;;) {
		int r = tp->ops->tx(tp, p, len, 1);

		if (r != 0)
			return r < 0 ? r : 0;
		if (vd__perf_stop)
			return -EINTR;
		if (!t0)
			t0 = vd__perf_now_ns();
		else if (vd__perf_now_ns() - t0 > 1000000000ull)
			return -ETIMEDOUT;
	}
}

/*
 * Sends req (len bytes) every CTL_RETRY_NS until a reply of the same type and seq arrives (copied to
 * reply, up to reply_len) or timeout_ns pass.
 */
static int request(struct vd__perf_tp *tp, const struct msg *req, uint32_t len, void *reply, size_t reply_len,
		   uint64_t timeout_ns)
{
	struct vd__perf_buf bufs[VD_PERF_MAX_BURST];
	uint64_t start = vd__perf_now_ns(), sent = 0;

	while (!vd__perf_stop) {
		uint64_t now = vd__perf_now_ns();

		if (now - start > timeout_ns)
			return -ETIMEDOUT;
		if (!sent || now - sent > CTL_RETRY_NS) {
			int r = send1(tp, req, len);

			if (r < 0)
				return r;
			sent = now;
		}
		int n = tp->ops->rx(tp, bufs, VD_PERF_MAX_BURST);
		int found = 0;

		for (int i = 0; i < n; i++) {
			struct msg m;

			if (!found && parse_msg(&bufs[i], &m) == 0 && m.type == req->type && m.seq == req->seq) {
				size_t c = bufs[i].len < reply_len ? bufs[i].len : reply_len;

				if (reply)
					memcpy(reply, bufs[i].data, c);
				found = 1;
			}
		}
		if (n > 0)
			tp->ops->rx_done(tp, (unsigned)n);
		if (found)
			return 0;
	}
	return -EINTR;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	/* n is small (repetitions): insertion sort. */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t percentile(const uint64_t *sorted, unsigned n, unsigned pct)
{
	unsigned long rank = ((unsigned long)pct * n + 99) / 100;

	return sorted[rank ? rank - 1 : 0];
}

/*
 * One ping-pong repetition: warmup + iters round trips, one frame in flight, both sides busy-polling.
 * rtt[] receives the iters measured round trips in ns. Returns the number of lost frames, or -errno.
 */
static long pingpong_rep(struct vd__perf_tp *tp, uint32_t payload, unsigned warmup, unsigned iters, uint64_t *rtt,
			 uint32_t *seqp)
{
	uint8_t frame[VD_PERF_MAX_PAYLOAD];
	struct vd__perf_buf bufs[VD_PERF_MAX_BURST];
	struct msg m = { .magic = MSG_MAGIC, .type = MSG_PING };
	long lost = 0;
	unsigned in_row = 0;

	memset(frame, 0xa5, payload);
	for (unsigned i = 0; i < warmup + iters;) {
		if (vd__perf_stop)
			return -EINTR;
		m.seq = ++*seqp;
		m.ts = vd__perf_now_ns();
		memcpy(frame, &m, sizeof(m));
		int r = send1(tp, frame, payload);

		if (r < 0)
			return r;
		uint64_t now, got = 0;

		do {
			int n = tp->ops->rx(tp, bufs, VD_PERF_MAX_BURST);

			now = vd__perf_now_ns();
			for (int k = 0; k < n; k++) {
				struct msg e;

				if (parse_msg(&bufs[k], &e) == 0 && e.type == MSG_PING && e.seq == m.seq)
					got = now - e.ts;
			}
			if (n > 0)
				tp->ops->rx_done(tp, (unsigned)n);
		} while (!got && now - m.ts < PING_TIMEOUT_NS && !vd__perf_stop);
		if (!got) {
			/* Lost (or later than the timeout): count it and try again with a new sequence number. */
			/* Ten in a row (2 s) means the peer is gone, not a lossy link. */
			if (++lost > 100 + (long)(warmup + iters) / 10 || ++in_row == 10)
				return -ETIMEDOUT;
			continue;
		}
		in_row = 0;
		if (i >= warmup)
			rtt[i - warmup] = got;
		i++;
	}
	return lost;
}

static int bench_pingpong(struct vd__perf_tp *tp, const char *path, unsigned size, const struct vd__perf_opts *o,
			  FILE *out, uint32_t *seq)
{
	uint64_t *rtt = calloc(o->iters, sizeof(*rtt));
	double p50[o->reps], p99[o->reps];
	long lost = 0;

	if (!rtt)
		return -ENOMEM;
	for (unsigned r = 0; r < o->reps; r++) {
		long l = pingpong_rep(tp, size - VD_PERF_HDR_OVERHEAD, o->warmup, o->iters, rtt, seq);

		if (l < 0) {
			free(rtt);
			return (int)l;
		}
		lost += l;
		qsort(rtt, o->iters, sizeof(*rtt), cmp_u64);
		/* Half round trip: the one-way latency of the link as both ends see it. */
		p50[r] = percentile(rtt, o->iters, 50) / 2000.0;
		p99[r] = percentile(rtt, o->iters, 99) / 2000.0;
	}
	free(rtt);
	fprintf(out,
		"{\"bench\":\"pingpong\",\"path\":\"%s\",\"size\":%u,\"p50_us\":%.3f,\"p99_us\":%.3f,"
		"\"reps\":%u,\"iters\":%u,\"lost\":%ld}\n",
		path, size, median(p50, o->reps), median(p99, o->reps), o->reps, o->iters, lost);
	fflush(out);
	return 0;
}

/* One stream repetition; fills the receiver's rate and the loss. */
static int stream_rep(struct vd__perf_tp *tp, uint32_t payload, const struct vd__perf_opts *o, uint32_t run,
		      double *mpps, double *loss, uint64_t *received)
{
	uint8_t frame[VD_PERF_MAX_PAYLOAD];
	struct vd__perf_buf bufs[VD_PERF_MAX_BURST];
	struct msg m = { .magic = MSG_MAGIC, .type = MSG_DATA, .seq = run };
	uint64_t sent = 0, start = vd__perf_now_ns(), end = start + o->duration_ms * 1000000ull;
	unsigned spins = 0;

	memset(frame, 0x5a, payload);
	memcpy(frame, &m, sizeof(m));
	while (sent < o->max_frames && !vd__perf_stop) {
		uint64_t left = o->max_frames - sent;
		int r = tp->ops->tx(tp, frame, payload, left < o->burst ? (unsigned)left : o->burst);

		if (r < 0)
			return r;
		sent += (uint64_t)r;
		/* Reading the clock every burst would be noticeable at 64 B: check it every 16 calls. */
		if ((++spins & 15) == 0 && vd__perf_now_ns() >= end)
			break;
		if ((spins & 255) == 0) {
			/* Nothing is expected back, but keep our RX side drained (stale echoes). */
			int n = tp->ops->rx(tp, bufs, VD_PERF_MAX_BURST);

			if (n > 0)
				tp->ops->rx_done(tp, (unsigned)n);
		}
	}
	/* Let the frames in flight arrive before asking: the STATS request queues behind them anyway. */
	uint64_t settle = vd__perf_now_ns() + 20000000ull;

	while (vd__perf_now_ns() < settle && !vd__perf_stop) {
		tp->ops->tx(tp, frame, payload, 0); /* n = 0: only push out what is still queued */
		int n = tp->ops->rx(tp, bufs, VD_PERF_MAX_BURST);

		if (n > 0)
			tp->ops->rx_done(tp, (unsigned)n);
	}
	struct stats_msg req = { .h = { .magic = MSG_MAGIC, .type = MSG_STATS, .seq = run } }, rep;

	memset(&rep, 0, sizeof(rep));
	int r = request(tp, &req.h, sizeof(req), &rep, sizeof(rep), 2000000000ull);

	if (r < 0)
		return r;
	*received = rep.frames;
	*loss = sent ? 1.0 - (double)rep.frames / (double)sent : 0;
	if (*loss < 0)
		*loss = 0;
	/* Receiver's rate: frames after the first over the time from the first to the last. */
	*mpps = rep.frames > 1 && rep.last_ns > rep.first_ns
			? (double)(rep.frames - 1) * 1000.0 / (double)(rep.last_ns - rep.first_ns)
			: 0;
	return 0;
}

static int bench_stream(struct vd__perf_tp *tp, const char *path, unsigned size, const struct vd__perf_opts *o,
			FILE *out, uint32_t *run)
{
	double mpps[o->reps], loss[o->reps];
	uint64_t rcv = 0;

	for (unsigned r = 0; r < o->reps; r++) {
		uint64_t got;
		int e = stream_rep(tp, size - VD_PERF_HDR_OVERHEAD, o, ++*run, &mpps[r], &loss[r], &got);

		if (e < 0)
			return e;
		rcv += got;
	}
	double rate = median(mpps, o->reps);

	fprintf(out,
		"{\"bench\":\"stream\",\"path\":\"%s\",\"size\":%u,\"mpps\":%.4f,\"gbps\":%.3f,\"frame_gbps\":%.3f,"
		"\"loss\":%.4f,\"reps\":%u,\"duration_ms\":%u,\"frames\":%llu}\n",
		path, size, rate, rate * (size - VD_PERF_HDR_OVERHEAD) * 8 / 1000.0, rate * size * 8 / 1000.0,
		median(loss, o->reps), o->reps, o->duration_ms, (unsigned long long)rcv);
	fflush(out);
	return 0;
}

int vd__perf_client_run(struct vd__perf_tp *tp, enum vd__perf_path p, const unsigned *sizes, unsigned nsizes,
		       const struct vd__perf_opts *o, FILE *out)
{
	const char *name = vd__perf_path_name(p);
	struct msg hello = { .magic = MSG_MAGIC, .type = MSG_HELLO, .seq = (uint32_t)vd__perf_now_ns() };
	uint32_t seq = hello.seq, run = hello.seq;
	int err = request(tp, &hello, sizeof(hello), NULL, 0, HELLO_TIMEOUT_NS);

	if (err < 0) {
		fprintf(stderr, "viaduct perf: %s: no answer from the server: %s\n", name, strerror(-err));
		return err;
	}
	for (unsigned i = 0; i < nsizes && !err; i++) {
		if (sizes[i] - VD_PERF_HDR_OVERHEAD > tp->max_payload) {
			fprintf(stderr, "viaduct perf: %s: size %u exceeds the path's MTU (payload %u > %u)\n", name,
				sizes[i], sizes[i] - VD_PERF_HDR_OVERHEAD, tp->max_payload);
			continue;
		}
		err = bench_pingpong(tp, name, sizes[i], o, out, &seq);
		if (!err)
			err = bench_stream(tp, name, sizes[i], o, out, &run);
		if (err)
			fprintf(stderr, "viaduct perf: %s size %u: %s\n", name, sizes[i], strerror(-err));
	}
	struct msg quit = { .magic = MSG_MAGIC, .type = MSG_QUIT, .seq = ++seq };

	/* Best effort: if the acknowledgement is lost the server leaves on its idle timeout. */
	request(tp, &quit, sizeof(quit), NULL, 0, 200000000ull);
	return err;
}

int vd__perf_server_run(struct vd__perf_tp *tp, const struct vd__perf_opts *o)
{
	struct vd__perf_buf bufs[VD_PERF_MAX_BURST];
	uint64_t idle_ns = (uint64_t)o->idle_ms * 1000000ull, last_seen = vd__perf_now_ns();
	struct stats_msg st = { .h = { .magic = MSG_MAGIC, .type = MSG_STATS } };
	uint32_t run = 0;
	unsigned spins = 0;
	int quit = 0;

	while (!quit && !vd__perf_stop) {
		int n = tp->ops->rx(tp, bufs, VD_PERF_MAX_BURST);

		if (n <= 0) {
			if (n < 0)
				return n;
			if ((++spins & 1023) == 0 && vd__perf_now_ns() - last_seen > idle_ns)
				return -ETIMEDOUT;
			continue;
		}
		uint64_t now = vd__perf_now_ns();

		last_seen = now;
		for (int i = 0; i < n; i++) {
			struct msg m;

			if (parse_msg(&bufs[i], &m) < 0)
				continue;
			switch (m.type) {
			case MSG_DATA:
				if (m.seq != run) {
					run = m.seq;
					st.frames = st.bytes = 0;
					st.first_ns = now;
				}
				st.frames++;
				st.bytes += bufs[i].len;
				st.last_ns = now;
				break;
			case MSG_PING:
			case MSG_HELLO:
			case MSG_QUIT:
				send1(tp, bufs[i].data, bufs[i].len);
				quit |= m.type == MSG_QUIT;
				break;
			case MSG_STATS:
				st.h.seq = m.seq;
				if (m.seq != run)
					st.frames = st.bytes = st.first_ns = st.last_ns = 0; /* nothing arrived */
				run = m.seq;
				send1(tp, &st, sizeof(st));
				break;
			default:
				break;
			}
		}
		tp->ops->rx_done(tp, (unsigned)n);
	}
	return vd__perf_stop ? -EINTR : 0;
}
