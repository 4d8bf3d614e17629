/* SPDX-License-Identifier: MIT */
/*
 * The kernel-tcp reference of the messaging benchmarks (the same-link figure iperf3 would give for bw):
 * plain TCP on the reference link, TCP_NODELAY, default (autotuned) buffers.
 *   pingpong  one connection per size: the client writes S bytes, the server reads S bytes and writes them
 *             back; both read busy-polling (MSG_DONTWAIT), as the UDP reference does.
 *   bw        one connection per size: the client writes S-byte messages for duration_ms, half-closes, and
 *             the server answers the byte count once it has read everything; rate = bytes over the time
 *             from the first write to that answer (so it counts only what arrived).
 * Each connection starts with a request header { u32 op; u32 size; } (host order: same program both ends).
 */
#include <errno.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "perf_msg.h"

enum { OP_PING = 1, OP_STREAM, OP_QUIT };

struct hdr {
	uint32_t op, size;
};

#define IO_TIMEOUT_NS 5000000000ull

/* Reads exactly len bytes; busy: spin on MSG_DONTWAIT instead of sleeping. 0, -errno, -EPIPE at EOF. */
static int read_full(int fd, void *buf, size_t len, int busy)
{
	uint8_t *p = buf;
	uint64_t t0 = 0;

	while (len) {
		ssize_t n = recv(fd, p, len, busy ? MSG_DONTWAIT : 0);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			t0 = 0;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR && !vd__perf_stop)
			continue;
		if (errno != EAGAIN || vd__perf_stop)
			return vd__perf_stop ? -EINTR : -errno;
		if (!t0)
			t0 = vd__perf_now_ns();
		else if (vd__perf_now_ns() - t0 > IO_TIMEOUT_NS)
			return -ETIMEDOUT;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR && !vd__perf_stop)
				continue;
			return vd__perf_stop ? -EINTR : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void tune(int fd)
{
	int one = 1;
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Blocking calls never hang a benchmark whose peer died. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int serve_conn(int fd, uint8_t *buf, size_t cap)
{
	struct hdr h;
	int rc = read_full(fd, &h, sizeof(h), 0);

	if (rc < 0)
		return rc;
	if (h.op == OP_QUIT)
		return 1;
	if (h.op == OP_PING) {
		if (h.size > cap)
			return -EMSGSIZE;
		while ((rc = read_full(fd, buf, h.size, 1)) == 0)
			if ((rc = write_full(fd, buf, h.size)) < 0)
				return rc;
		return rc == -EPIPE ? 0 : rc;
	}
	if (h.op == OP_STREAM) {
		uint64_t total = 0;
		ssize_t n;

		while ((n = recv(fd, buf, cap, 0)) > 0)
			total += (uint64_t)n;
		if (n < 0)
			return -errno;
		return write_full(fd, &total, sizeof(total));
	}
	return -EPROTO;
}

static int server(const struct vd__msg_side *s)
{
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(vd__msg_path_port(VD_MSG_KERNEL_TCP)) };
	size_t cap = vd__msg_side_max_size(s);
	uint8_t *buf = malloc(cap < 65536 ? 65536 : cap);
	int one = 1, rc = 0, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (lfd < 0 || !buf) {
		rc = lfd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	if (cap < 65536)
		cap = 65536;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&me, sizeof(me)) < 0 || listen(lfd, 4) < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)s->idle_ms);

		if (vd__perf_stop) {
			rc = -EINTR;
			break;
		}
		if (pr == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		if (pr < 0)
			continue; /* EINTR: the stop flag is checked above */
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		tune(fd);
		rc = serve_conn(fd, buf, cap);
		close(fd);
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (rc < 0)
			fprintf(stderr, "viaduct perf: kernel-tcp server: connection: %s\n", strerror(-rc));
		rc = 0;
	}
out:
	if (lfd >= 0)
		close(lfd);
	free(buf);
	return rc;
}

static int connect_to(const struct vd__msg_side *s, uint32_t op, uint32_t size)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(vd__msg_path_port(VD_MSG_KERNEL_TCP)) };
	struct hdr h = { .op = op, .size = size };

	if (!s->ref_peer_ip || inet_pton(AF_INET, s->ref_peer_ip, &to.sin_addr) != 1)
		return -EINVAL;
	/* The server may not be listening yet: retry for up to 15 s. */
	for (int i = 0; i < 1500 && !vd__perf_stop; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		tune(fd);
		if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0) {
			int rc = write_full(fd, &h, sizeof(h));

			if (rc < 0) {
				close(fd);
				return rc;
			}
			return fd;
		}
		int e = errno;

		close(fd);
		if (e != ECONNREFUSED && e != EHOSTUNREACH && e != ENETUNREACH)
			return -e;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return vd__perf_stop ? -EINTR : -ETIMEDOUT;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int pingpong(const struct vd__msg_side *s, unsigned size)
{
	uint8_t *buf = malloc(size ? size : 1);
	uint64_t *rtt = calloc(s->iters, sizeof(*rtt));
	uint64_t budget = (uint64_t)s->pingpong_ms * 1000000ull, start = vd__perf_now_ns();
	unsigned n = 0;
	int rc = 0, fd = connect_to(s, OP_PING, size);

	if (fd < 0 || !buf || !rtt) {
		rc = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	memset(buf, 0x3c, size);
	for (unsigned i = 0; i < s->warmup + s->iters && !vd__perf_stop; i++) {
		uint64_t t0 = vd__perf_now_ns();

		if ((rc = write_full(fd, buf, size)) < 0 || (rc = read_full(fd, buf, size, 1)) < 0)
			break;
		uint64_t t1 = vd__perf_now_ns();

		if (i >= s->warmup)
			rtt[n++] = t1 - t0;
		else if (t1 - start > budget / 5)
			i = s->warmup - 1; /* warm-up gets a fifth of the time budget at most */
		if (n >= 10 && t1 - start > budget)
			break;
	}
	if (rc == 0 && n) {
		char extra[32];

		qsort(rtt, n, sizeof(*rtt), cmp_u64);
		snprintf(extra, sizeof(extra), ",\"iters\":%u", n);
		vd__msg_emit(s->out, VD_MSG_PINGPONG, VD_MSG_KERNEL_TCP, size, rtt[(n * 50 + 99) / 100 - 1] / 2000.0,
			     rtt[(n * 99 + 99) / 100 - 1] / 2000.0, NAN, NAN, extra);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(rtt);
	return rc;
}

static int bw(const struct vd__msg_side *s, unsigned size)
{
	uint8_t *buf = malloc(size ? size : 1);
	uint64_t start = vd__perf_now_ns(), end = start + (uint64_t)s->duration_ms * 1000000ull, total = 0, msgs = 0;
	int rc = 0, fd = connect_to(s, OP_STREAM, size);

	if (fd < 0 || !buf) {
		rc = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	memset(buf, 0xc3, size);
	start = vd__perf_now_ns();
	end = start + (uint64_t)s->duration_ms * 1000000ull;
	while (vd__perf_now_ns() < end && rc == 0) {
		rc = write_full(fd, buf, size);
		msgs++;
	}
	if (rc == 0 && shutdown(fd, SHUT_WR) < 0)
		rc = -errno;
	if (rc == 0)
		rc = read_full(fd, &total, sizeof(total), 0);
	if (rc == 0) {
		double ns = (double)(vd__perf_now_ns() - start);
		char extra[48];

		snprintf(extra, sizeof(extra), ",\"msgs\":%llu", (unsigned long long)msgs);
		vd__msg_emit(s->out, VD_MSG_BW, VD_MSG_KERNEL_TCP, size, NAN, NAN, (double)total * 8 / ns,
			     (double)total / size * 1000.0 / ns, extra);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

static int client(const struct vd__msg_side *s)
{
	int rc = 0;

	for (unsigned i = 0; s->benches[VD_MSG_PINGPONG] && i < s->nsizes[VD_MSG_PINGPONG] && rc == 0; i++)
		rc = pingpong(s, s->sizes[VD_MSG_PINGPONG][i]);
	for (unsigned i = 0; s->benches[VD_MSG_BW] && i < s->nsizes[VD_MSG_BW] && rc == 0; i++)
		rc = bw(s, s->sizes[VD_MSG_BW][i]);
	if (rc)
		fprintf(stderr, "viaduct perf: kernel-tcp: %s\n", strerror(-rc));
	/* The rate bench has no TCP reference (a byte stream has no message rate of its own). */
	int fd = connect_to(s, OP_QUIT, 0);

	if (fd >= 0)
		close(fd);
	return rc;
}

int vd__msg_tcp_run(const struct vd__msg_side *s)
{
	return s->server ? server(s) : client(s);
}
