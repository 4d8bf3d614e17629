/* SPDX-License-Identifier: MIT */
/*
 * Lab tool: ping-pong (half round trip) and one-way streaming through vd_nic, or through a plain kernel UDP
 * socket for the interop and reference side. Run one side per host (namespace):
 *
 *   xdp_pingpong server [opts]                       echo every datagram back (ping-pong) or count them
 *   xdp_pingpong client --peer IP:PORT [opts]        measure
 *
 * opts: --backend xdp|udp|kudp   (kudp: a kernel UDP socket, busy-polled with MSG_DONTWAIT; no viaduct)
 *       --rx auto|direct|steered --local IP:PORT --size BYTES --iters N --warmup N --seconds S
 *       --stream (client sends back to back for --seconds; server reports the rate it received)
 *       --wait (block in vd_nic_wait instead of busy-polling)
 * Client output, one JSON line: {"bench":"pingpong","backend":...,"rx":...,"size":...,"n":...,
 * "lost":...,"p50_us":...,"p99_us":...,"min_us":...}; server with --stream: {"bench":"stream",...,"mpps":...}.
 * Every loop is bounded in count and time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/nic.h>

struct pp_opts {
	int server, stream, wait;
	const char *backend, *rx, *local, *peer;
	uint32_t size, iters, warmup, seconds;
};

/* The transport under test: a vd_nic, or a kernel UDP socket (kudp). */
struct pp_io {
	struct vd_nic *nic;
	int sock;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int io_open(struct pp_io *io, const struct pp_opts *o)
{
	io->nic = NULL;
	io->sock = -1;
	if (strcmp(o->backend, "kudp") == 0) {
		struct vd_addr a = { 0 };
		if (o->local && vd_addr_parse(o->local, &a) < 0)
			return -EINVAL;
		io->sock = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = a.ip, .sin_port = a.port };
		if (io->sock < 0 || bind(io->sock, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			return -errno;
		struct timeval tv = { .tv_usec = 100000 }; /* --wait: blocking receives stay bounded */
		setsockopt(io->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		return 0;
	}
	struct vd_nic_opts no = { .queue = -1, .local = o->local };
	no.backend = strcmp(o->backend, "udp") == 0 ? VD_BACKEND_UDP : VD_BACKEND_XDP;
	no.rx_mode = strcmp(o->rx, "direct") == 0 ? VD_RX_DIRECT
		     : strcmp(o->rx, "steered") == 0 ? VD_RX_STEERED : VD_RX_AUTO;
	return vd_nic_open(&io->nic, &no);
}

static int io_send(struct pp_io *io, const struct vd_addr *to, const void *buf, size_t len)
{
	if (io->nic)
		return vd_nic_send(io->nic, to, buf, len);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = to->ip, .sin_port = to->port };
	return sendto(io->sock, buf, len, 0, (struct sockaddr *)&sin, sizeof(sin)) < 0 ? -errno : 0;
}

/* Receives one datagram without blocking (or after vd_nic_wait with --wait); returns its length, 0 if
 * none, or -errno. */
static int io_recv(struct pp_io *io, int wait, void *buf, size_t cap, struct vd_addr *from)
{
	if (io->nic) {
		struct vd_frame f;
		if (wait)
			vd_nic_wait(io->nic, 100);
		int n = vd_nic_rx_burst(io->nic, &f, 1);
		if (n <= 0)
			return n;
		size_t len = f.len < cap ? f.len : cap;
		memcpy(buf, f.data, len);
		*from = f.peer;
		vd_nic_rx_release(io->nic, &f, 1);
		return (int)len;
	}
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	ssize_t n = recvfrom(io->sock, buf, cap, wait ? 0 : MSG_DONTWAIT, (struct sockaddr *)&sin, &sl);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	from->ip = sin.sin_addr.s_addr;
	from->port = sin.sin_port;
	return (int)n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static const char *io_rx(const struct pp_io *io)
{
	if (!io->nic)
		return "kernel";
	return vd_nic_rx_mode(io->nic) == VD_RX_DIRECT ? "direct" : "steered";
}

/* Echo server: runs for --seconds, or until a client says "stop" (a 4-byte "STOP" datagram). */
static int run_server(struct pp_io *io, const struct pp_opts *o)
{
	static uint8_t buf[9000];
	uint64_t end = now_ns() + (uint64_t)o->seconds * 1000000000ull, first = 0, last = 0, count = 0;
	while (now_ns() < end) {
		struct vd_addr from;
		int n = io_recv(io, o->wait, buf, sizeof(buf), &from);
		if (n < 0)
			return n;
		if (n == 0)
			continue;
		if (n == 4 && memcmp(buf, "STOP", 4) == 0)
			break;
		if (o->stream) {
			last = now_ns();
			if (!count++)
				first = last;
			continue;
		}
		int err = io_send(io, &from, buf, (size_t)n);
		if (err < 0)
			fprintf(stderr, "server: send: %s\n", strerror(-err));
	}
	if (o->stream) {
		double secs = (double)(last - first) / 1e9;
		printf("{\"bench\":\"stream\",\"backend\":\"%s\",\"rx\":\"%s\",\"size\":%u,\"frames\":%llu,"
		       "\"mpps\":%.4f,\"gbps\":%.3f}\n",
		       o->backend, io_rx(io), o->size, (unsigned long long)count,
		       secs > 0 ? (double)(count - 1) / secs / 1e6 : 0.0,
		       secs > 0 ? (double)(count - 1) * o->size * 8 / secs / 1e9 : 0.0);
	}
	return 0;
}

static int run_stream_client(struct pp_io *io, const struct pp_opts *o, const struct vd_addr *peer)
{
	static uint8_t buf[9000];
	memset(buf, 0x5a, o->size);
	uint64_t end = now_ns() + (uint64_t)o->seconds * 1000000000ull, sent = 0, busy = 0;
	while (now_ns() < end) {
		if (io->nic) {
			struct vd_frame f[32];
			int n = vd_nic_tx_alloc(io->nic, f, 32);
			for (int i = 0; i < n; i++) {
				memcpy(f[i].data, buf, o->size);
				f[i].len = o->size;
				f[i].peer = *peer;
			}
			int q = n > 0 ? vd_nic_tx_burst(io->nic, f, (unsigned)n) : 0;
			if (q < 0)
				return q;
			if (q < n)
				vd_nic_tx_abort(io->nic, f + q, (unsigned)(n - q));
			sent += (uint64_t)q;
			busy += n == 0;
			int err = vd_nic_flush(io->nic);
			if (err < 0)
				return err;
		} else if (io_send(io, peer, buf, o->size) == 0) {
			sent++;
		}
	}
	/* Let the server drain, then tell it to stop (several times: the link may drop under load). */
	usleep(200000);
	for (int i = 0; i < 5; i++) {
		io_send(io, peer, "STOP", 4);
		usleep(10000);
	}
	fprintf(stderr, "client: sent %llu frames (%llu alloc-busy rounds)\n", (unsigned long long)sent,
		(unsigned long long)busy);
	return 0;
}

static int run_pingpong_client(struct pp_io *io, const struct pp_opts *o, const struct vd_addr *peer)
{
	static uint8_t buf[9000], rbuf[9000];
	uint64_t *half = calloc(o->iters, sizeof(uint64_t));
	uint32_t got = 0, lost = 0;
	uint64_t deadline = now_ns() + (uint64_t)o->seconds * 1000000000ull;
	if (!half)
		return -ENOMEM;
	memset(buf, 0xa5, o->size);
	for (uint32_t i = 0; i < o->warmup + o->iters && now_ns() < deadline; i++) {
		memcpy(buf, &i, sizeof(i));
		uint64_t t0 = now_ns();
		int err = io_send(io, peer, buf, o->size);
		if (err < 0) {
			fprintf(stderr, "client: send: %s\n", strerror(-err));
			lost++;
			continue;
		}
		/* Wait for this sequence number's echo; 200 ms per message at most. */
		for (;;) {
			struct vd_addr from;
			int n = io_recv(io, o->wait, rbuf, sizeof(rbuf), &from);
			uint64_t t1 = now_ns();
			if (n < 0) {
				free(half);
				return n;
			}
			if (n >= 4 && memcmp(rbuf, &i, sizeof(i)) == 0) {
				if (i >= o->warmup)
					half[got++] = (t1 - t0) / 2;
				break;
			}
			if (t1 - t0 > 200000000ull) {
				lost++;
				break;
			}
		}
	}
	io_send(io, peer, "STOP", 4);
	if (!got) {
		fprintf(stderr, "client: no reply\n");
		free(half);
		return -ETIMEDOUT;
	}
	qsort(half, got, sizeof(uint64_t), cmp_u64);
	printf("{\"bench\":\"pingpong\",\"backend\":\"%s\",\"rx\":\"%s\",\"size\":%u,\"n\":%u,\"lost\":%u,"
	       "\"min_us\":%.3f,\"p50_us\":%.3f,\"p99_us\":%.3f}\n",
	       o->backend, io_rx(io), o->size, got, lost, half[0] / 1e3, half[got / 2] / 1e3,
	       half[(uint64_t)got * 99 / 100] / 1e3);
	free(half);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: xdp_pingpong server|client [--backend xdp|udp|kudp] [--rx auto|direct|steered]\n"
			"  [--local IP:PORT] [--peer IP:PORT] [--size B] [--iters N] [--warmup N] [--seconds S]\n"
			"  [--stream] [--wait]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct pp_opts o = { .backend = "xdp", .rx = "auto", .size = 64, .iters = 100000, .warmup = 1000,
			     .seconds = 20 };
	if (argc < 2)
		usage();
	o.server = strcmp(argv[1], "server") == 0;
	if (!o.server && strcmp(argv[1], "client") != 0)
		usage();
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--stream")) { o.stream = 1; continue; }
		if (!strcmp(a, "--wait")) { o.wait = 1; continue; }
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--backend")) o.backend = v;
		else if (!strcmp(a, "--rx")) o.rx = v;
		else if (!strcmp(a, "--local")) o.local = v;
		else if (!strcmp(a, "--peer")) o.peer = v;
		else if (!strcmp(a, "--size")) o.size = (uint32_t)atoi(v);
		else if (!strcmp(a, "--iters")) o.iters = (uint32_t)atoi(v);
		else if (!strcmp(a, "--warmup")) o.warmup = (uint32_t)atoi(v);
		else if (!strcmp(a, "--seconds")) o.seconds = (uint32_t)atoi(v);
		else usage();
	}
	if (o.size < 4 || o.size > 8972 || o.iters == 0 || (!o.server && !o.peer))
		usage();
	struct pp_io io;
	int err = io_open(&io, &o);
	if (err < 0) {
		fprintf(stderr, "open %s: %s\n", o.backend, strerror(-err));
		return 1;
	}
	if (io.nic) {
		struct vd_addr l;
		char s[VD_ADDR_STRLEN];
		vd_nic_local_addr(io.nic, &l);
		fprintf(stderr, "%s: %s on %s, rx %s, max payload %u\n", argv[1], vd_nic_backend_name(io.nic),
			vd_addr_format(&l, s, sizeof(s)), io_rx(&io), vd_nic_max_payload(io.nic));
	}
	if (o.server) {
		err = run_server(&io, &o);
	} else {
		struct vd_addr peer;
		err = vd_addr_parse(o.peer, &peer);
		if (!err)
			err = o.stream ? run_stream_client(&io, &o, &peer) : run_pingpong_client(&io, &o, &peer);
	}
	if (io.nic) {
		struct vd_nic_stats st;
		vd_nic_stats(io.nic, &st);
		fprintf(stderr, "%s: rx %llu tx %llu malformed %llu tx_busy %llu\n", argv[1],
			(unsigned long long)st.rx_frames, (unsigned long long)st.tx_frames,
			(unsigned long long)st.rx_malformed, (unsigned long long)st.tx_busy);
		vd_nic_close(io.nic);
	} else {
		close(io.sock);
	}
	if (err < 0)
		fprintf(stderr, "%s: %s\n", argv[1], strerror(-err));
	return err < 0;
}
