/* SPDX-License-Identifier: MIT */
/*
 * pingpong: a small program using the viaduct messaging API (viaduct/msg.h).
 *
 *   pingpong --server [--local IP:PORT] [--backend auto|udp|xdp]
 *   pingpong --client SERVER_IP:PORT [--local IP:PORT] [--backend ...] [--iters N] [--sizes a,b,c]
 *   pingpong --loopback [--iters N] [--sizes ...]   both ends in this process (two threads, udp, 127.0.0.1)
 *
 * The client sends a message tagged PING, the server answers with the same bytes tagged PONG; the client
 * checks every byte and prints, per size, the median and 99th percentile half round trip. A message tagged
 * QUIT ends the server. Exit status: 0 if every message came back intact.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <viaduct/msg.h>

enum { TAG_PING = 1, TAG_PONG = 2, TAG_QUIT = 3 };
#define MATCH_ALL (~0ull)
#define MAX_SIZES 32

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int open_ep(struct vd_ep **ep, const char *local, enum vd_backend be)
{
	struct vd_ep_opts o;
	vd_ep_opts_init(&o);
	o.nic.backend = be;
	o.nic.local = local;
	o.flags = VD_EP_NODELAY; /* a ping-pong never has two messages to combine */
	int rc = vd_ep_open(ep, &o);
	if (rc < 0)
		fprintf(stderr, "pingpong: cannot open endpoint on %s: %s\n", local ? local : "any", strerror(-rc));
	return rc;
}

/* Waits for a request, retrying on timeouts; returns its status error or a call error. */
static int wait_req(struct vd_ep *ep, struct vd_req **r, struct vd_status *st)
{
	for (int tries = 0; tries < 30; tries++) {
		int rc = vd_wait(ep, r, st, 1000);
		if (rc == 1)
			return st->error;
		if (rc < 0)
			return rc;
	}
	return -ETIMEDOUT;
}

static int serve(struct vd_ep *ep, size_t max)
{
	uint8_t *buf = malloc(max);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct vd_req *r, *s;
		struct vd_status st;
		rc = vd_irecv(ep, buf, max, 0, 0, NULL, &r);
		if (rc < 0)
			break;
		/* Wait forever for the next ping (a server is idle between clients). */
		while ((rc = vd_wait(ep, &r, &st, 1000)) == 0)
			;
		if (rc < 0 || st.error) {
			rc = rc < 0 ? rc : st.error;
			break;
		}
		if (st.match == TAG_QUIT) {
			rc = 0;
			break;
		}
		rc = vd_isend(ep, buf, st.xfer_len, st.peer, TAG_PONG, NULL, &s);
		if (rc < 0 || (rc = wait_req(ep, &s, &st)) != 0)
			break;
	}
	free(buf);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int client(struct vd_ep *ep, const char *server, const size_t *sizes, int nsizes, int iters)
{
	struct vd_peer *peer;
	int rc = vd_peer_resolve(ep, server, &peer);
	if (rc < 0) {
		fprintf(stderr, "pingpong: cannot resolve %s: %s\n", server, strerror(-rc));
		return rc;
	}
	size_t max = 0;
	for (int i = 0; i < nsizes; i++)
		max = sizes[i] > max ? sizes[i] : max;
	uint8_t *out = malloc(max ? max : 1), *in = malloc(max ? max : 1);
	uint64_t *t = malloc(sizeof(*t) * (size_t)iters);
	if (!out || !in || !t)
		return -ENOMEM;
	for (size_t i = 0; i < max; i++)
		out[i] = (uint8_t)(i * 131 + 7);

	for (int k = 0; k < nsizes && rc == 0; k++) {
		size_t len = sizes[k];
		for (int it = 0; it < iters && rc == 0; it++) {
			struct vd_req *s, *r;
			struct vd_status st;
			out[0] = (uint8_t)it;
			uint64_t t0 = now_ns();
			if ((rc = vd_irecv(ep, in, max, TAG_PONG, MATCH_ALL, NULL, &r)) < 0 ||
			    (rc = vd_isend(ep, out, len, peer, TAG_PING, NULL, &s)) < 0)
				break;
			if ((rc = wait_req(ep, &r, &st)) != 0 || (rc = wait_req(ep, &s, &st)) != 0)
				break;
			t[it] = now_ns() - t0;
			memset(&st, 0, sizeof(st));
			if (len && (in[0] != (uint8_t)it || memcmp(in + 1, out + 1, len - 1) != 0)) {
				fprintf(stderr, "pingpong: size %zu iteration %d: reply differs\n", len, it);
				rc = -EIO;
			}
		}
		if (rc == 0) {
			qsort(t, (size_t)iters, sizeof(*t), cmp_u64);
			printf("{\"bench\": \"pingpong\", \"path\": \"%s\", \"size\": %zu, \"p50_us\": %.2f, "
			       "\"p99_us\": %.2f}\n",
			       vd_nic_backend_name(vd_ep_nic(ep)), len, t[iters / 2] / 2000.0,
			       t[(size_t)iters * 99 / 100] / 2000.0);
		}
	}
	/* Tell the server to stop (best effort). */
	struct vd_req *q;
	struct vd_status st;
	if (vd_isend(ep, NULL, 0, peer, TAG_QUIT, NULL, &q) == 0)
		wait_req(ep, &q, &st);
	free(out);
	free(in);
	free(t);
	if (rc)
		fprintf(stderr, "pingpong: %s\n", strerror(rc < 0 ? -rc : rc));
	return rc;
}

struct loop_server {
	struct vd_ep *ep;
	size_t max;
	int rc;
};

static void *server_thread(void *arg)
{
	struct loop_server *ls = arg;
	ls->rc = serve(ls->ep, ls->max);
	/* Closing sends the ack the client's QUIT is waiting for. */
	vd_ep_close(ls->ep);
	return NULL;
}

static int parse_sizes(const char *s, size_t *out)
{
	int n = 0;
	while (*s && n < MAX_SIZES) {
		char *end;
		unsigned long long v = strtoull(s, &end, 10);
		if (end == s || v > (1ull << 30))
			return -1;
		out[n++] = (size_t)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

static void usage(void)
{
	fprintf(stderr, "usage: pingpong --server [--local IP:PORT] [--backend auto|udp|xdp]\n"
			"       pingpong --client IP:PORT [--local IP:PORT] [--backend ...] [--iters N] "
			"[--sizes a,b,...]\n"
			"       pingpong --loopback [--iters N] [--sizes a,b,...]\n");
}

int main(int argc, char **argv)
{
	const char *local = NULL, *server = NULL;
	enum { NONE, SERVER, CLIENT, LOOPBACK } mode = NONE;
	enum vd_backend be = VD_BACKEND_AUTO;
	size_t sizes[MAX_SIZES] = { 8, 1024, 32768, 1u << 20 };
	int nsizes = 4, iters = 1000;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--server")) {
			mode = SERVER;
		} else if (!strcmp(a, "--loopback")) {
			mode = LOOPBACK;
		} else if (!strcmp(a, "--client") && v) {
			mode = CLIENT;
			server = v;
			i++;
		} else if (!strcmp(a, "--local") && v) {
			local = v;
			i++;
		} else if (!strcmp(a, "--iters") && v) {
			iters = atoi(v);
			i++;
		} else if (!strcmp(a, "--sizes") && v) {
			nsizes = parse_sizes(v, sizes);
			i++;
		} else if (!strcmp(a, "--backend") && v) {
			be = !strcmp(v, "udp") ? VD_BACKEND_UDP : !strcmp(v, "xdp") ? VD_BACKEND_XDP : VD_BACKEND_AUTO;
			i++;
		} else {
			usage();
			return 2;
		}
	}
	if (mode == NONE || nsizes <= 0 || iters <= 0) {
		usage();
		return 2;
	}

	struct vd_ep *ep;
	if (mode == SERVER) {
		if (open_ep(&ep, local, be) < 0)
			return 1;
		struct vd_addr a;
		char text[VD_ADDR_STRLEN];
		vd_ep_addr(ep, &a);
		printf("pingpong server on %s (%s)\n", vd_addr_format(&a, text, sizeof(text)),
		       vd_nic_backend_name(vd_ep_nic(ep)));
		fflush(stdout);
		int rc = serve(ep, 1u << 30);
		vd_ep_close(ep);
		return rc ? 1 : 0;
	}
	if (mode == CLIENT) {
		if (open_ep(&ep, local, be) < 0)
			return 1;
		int rc = client(ep, server, sizes, nsizes, iters);
		vd_ep_close(ep);
		return rc ? 1 : 0;
	}

	/* Loopback: a server endpoint in a thread, the client here; each endpoint used by one thread. */
	struct loop_server ls = { .max = 0 };
	for (int i = 0; i < nsizes; i++)
		ls.max = sizes[i] > ls.max ? sizes[i] : ls.max;
	if (open_ep(&ls.ep, "127.0.0.1:0", VD_BACKEND_UDP) < 0 || open_ep(&ep, "127.0.0.1:0", VD_BACKEND_UDP) < 0)
		return 1;
	struct vd_addr sa;
	char text[VD_ADDR_STRLEN];
	vd_ep_addr(ls.ep, &sa);
	vd_addr_format(&sa, text, sizeof(text));
	pthread_t th;
	if (pthread_create(&th, NULL, server_thread, &ls) != 0)
		return 1;
	int rc = client(ep, text, sizes, nsizes, iters);
	pthread_join(th, NULL);
	vd_ep_close(ep);
	return rc || ls.rc ? 1 : 0;
}
