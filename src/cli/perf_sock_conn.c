/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf conn-server|conn-client`: the connection-rate benchmark's two sides, written with plain
 * BSD sockets so that the same code measures the kernel (run as is) and viaduct (run under `viaduct run`).
 *
 *   conn-server --addr IP:PORT --seconds S   accepts connections and closes each at once, for S seconds
 *   conn-client --addr IP:PORT --seconds S --path NAME [--max N]
 *       opens (blocking connect), then closes, one connection after the other, for S seconds or N
 *       connections, whichever comes first (N bounds the ports a run leaves in TIME-WAIT); prints one
 *       JSON line: {"bench":"connrate","path":NAME,"size":0,"conns_per_s":..,"p50_us":..,"p99_us":..,
 *       "first_us":..} with the percentiles of one connect()+close() (the handshake's round trip
 *       dominates). The first connection is a warm-up, timed apart as first_us: it pays the process's
 *       one-time costs (under viaduct run the endpoint's set-up: the EP_OPEN round trip, mapping the
 *       UMEM and rings, the first ports; about 1.4 ms on the 2-core lab since viaductd prepares steering
 *       rings and registered UMEMs ahead, 22-27 ms before), which the steady rate and the percentiles
 *       leave out, for both paths alike.
 * The client closes first, so TIME-WAIT stays on its side, as with a web client.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "perf.h"
#include "perf_sock.h"

#define CONN_MAX_SAMPLES (1u << 20)

static int parse_addr(const char *text, struct sockaddr_in *sa)
{
	char ip[32];
	unsigned port;
	const char *colon = strrchr(text, ':');

	if (!colon || (size_t)(colon - text) >= sizeof(ip) || vd__perf_parse_uint(colon + 1, 1, 65535, &port))
		return -1;
	memcpy(ip, text, (size_t)(colon - text));
	ip[colon - text] = '\0';
	*sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int serve(const struct sockaddr_in *sa, unsigned seconds)
{
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t end = vd__perf_now_ns() + seconds * 1000000000ull;
	unsigned long n = 0;

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (const struct sockaddr *)sa, sizeof(*sa)) < 0 || listen(l, 1024) < 0) {
		perror("viaduct perf conn-server");
		return 1;
	}
	while (vd__perf_now_ns() < end && !vd__perf_stop) {
		/* Wait with a bound, so the time limit holds even when no client comes. */
		struct pollfd p = { .fd = l, .events = POLLIN };

		if (poll(&p, 1, 200) <= 0)
			continue;
		int c = accept(l, NULL, NULL);

		if (c >= 0) {
			close(c);
			n++;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			perror("viaduct perf conn-server: accept");
			break;
		}
	}
	close(l);
	fprintf(stderr, "viaduct perf conn-server: %lu connections\n", n);
	return 0;
}

static int client(const struct sockaddr_in *sa, unsigned seconds, unsigned max, const char *path)
{
	uint32_t *lat = malloc(CONN_MAX_SAMPLES * sizeof(*lat));
	uint64_t start = vd__perf_now_ns(), end = start + seconds * 1000000000ull, now = start;
	uint64_t first_ns = 0; /* the warm-up connection's connect()+close(); 0 until it succeeded */
	unsigned n = 0, fails = 0;

	if (!lat)
		return 1;
	while (now < end && n < CONN_MAX_SAMPLES && n < max && !vd__perf_stop) {
		uint64_t t0 = now;
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s < 0) {
			perror("viaduct perf conn-client: socket");
			break;
		}
		int r = connect(s, (const struct sockaddr *)sa, sizeof(*sa));

		close(s);
		now = vd__perf_now_ns();
		if (r < 0) {
			/* Refused before the server listens, or a transient failure: count, back off, go on. */
			if (++fails > 100 && n == 0) {
				perror("viaduct perf conn-client: connect");
				break;
			}
			usleep(10000);
			now = vd__perf_now_ns();
			continue;
		}
		if (!first_ns) {
			first_ns = now - t0;
			start = now; /* the rate counts from the end of the warm-up */
			continue;
		}
		lat[n++] = (uint32_t)((now - t0) / 1000 ? (now - t0) / 1000 : 1);
	}
	if (n == 0) {
		free(lat);
		return 1;
	}
	double secs = (double)(now - start) / 1e9;

	qsort(lat, n, sizeof(*lat), cmp_u32);
	printf("{\"bench\":\"connrate\",\"path\":\"%s\",\"size\":0,\"conns_per_s\":%.0f,\"p50_us\":%u,\"p99_us\":%u,"
	       "\"first_us\":%.0f,\"conns\":%u,\"failed\":%u}\n",
	       path, n / secs, lat[n / 2], lat[(size_t)n * 99 / 100], first_ns / 1e3, n, fails);
	free(lat);
	return 0;
}

int vd__perf_conn_main(int argc, char **argv)
{
	const char *addr = NULL, *path = "kernel";
	unsigned seconds = 3, max = CONN_MAX_SAMPLES;
	struct sockaddr_in sa;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--addr") && i + 1 < argc)
			addr = argv[++i];
		else if (!strcmp(argv[i], "--path") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			if (vd__perf_parse_uint(argv[++i], 1, 3600, &seconds))
				return 2;
		} else if (!strcmp(argv[i], "--max") && i + 1 < argc) {
			if (vd__perf_parse_uint(argv[++i], 1, CONN_MAX_SAMPLES, &max))
				return 2;
		} else {
			fprintf(stderr, "usage: viaduct perf conn-server|conn-client --addr IP:PORT [--seconds S] "
					"[--path NAME] [--max N]\n");
			return 2;
		}
	}
	if (!addr || parse_addr(addr, &sa)) {
		fprintf(stderr, "viaduct perf %s: --addr IP:PORT required\n", argv[0]);
		return 2;
	}
	return !strcmp(argv[0], "conn-server") ? serve(&sa, seconds) : client(&sa, seconds, max, path);
}
