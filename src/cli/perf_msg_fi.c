/* SPDX-License-Identifier: MIT */
/*
 * libfabric references of the ping-pong bench: fabtests' fi_pingpong (Debian: libfabric-bin) with reliable
 * datagram endpoints (-e rdm) of the shm, udp and tcp providers, one fi_pingpong run per message size (the
 * server side runs the server for each size in turn, the client connects to each; fi_pingpong's out-of-band
 * TCP control channel on the path's port sets the pair up).
 *
 * fi_pingpong prints "bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec"; usec/xfer is the total time
 * over twice the iterations, i.e. the MEAN half round trip (it keeps no percentiles): it is reported as
 * p50_us with "stat":"mean" and p99_us null. It waits for completions its own way (not necessarily a busy
 * poll), which is part of what it measures.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "run_cmd.h"
#include "perf_msg.h"

#define FI_RUN_TIMEOUT_MS 20000
#define FI_PINGPONG "fi_pingpong"

static const char *provider(enum vd__msg_path p)
{
	return p == VD_MSG_FI_SHM ? "shm" : p == VD_MSG_FI_UDP ? "udp" : "tcp";
}

int vd__msg_fi_available(void)
{
	const char *path = getenv("PATH");
	char buf[512];

	if (!path)
		path = "/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, FI_PINGPONG);
		if (access(buf, X_OK) == 0)
			return 1;
		p += n;
		if (*p == ':')
			p++;
	}
	return 0;
}

/* Iterations: the shm provider is slow to progress when the two sides share few CPUs; keep runs short. */
static unsigned fi_iters(const struct vd__msg_side *s, enum vd__msg_path p)
{
	unsigned cap = p == VD_MSG_FI_SHM ? 200 : 2000;

	return s->iters < cap ? s->iters : cap;
}

/* Runs fi_pingpong with args; collects its output in out (if non-NULL). Returns its exit status. */
static int run_fi(char **argv, char *out, size_t cap)
{
	struct vd__run_opts o = { .timeout_ms = FI_RUN_TIMEOUT_MS, .quiet = !out, .stderr_fd = -1,
				  .capture = out, .capture_cap = out ? cap : 0 };
	int r = vd__run(argv, &o);

	return r < 0 ? 128 : r;
}

/* The result row: the first line after the header that starts with a number; its 7th column. */
static int parse(const char *text, double *usec)
{
	const char *h = strstr(text, "usec/xfer");

	if (!h)
		return -1;
	for (const char *l = strchr(h, '\n'); l; l = strchr(l + 1, '\n')) {
		char c[8][32];

		if (sscanf(l + 1, "%31s %31s %31s %31s %31s %31s %31s %31s", c[0], c[1], c[2], c[3], c[4], c[5], c[6],
			   c[7]) == 8 &&
		    c[0][0] >= '0' && c[0][0] <= '9') {
			char *end;

			*usec = strtod(c[6], &end);
			return end == c[6] ? -1 : 0;
		}
	}
	return -1;
}

int vd__msg_fi_run(const struct vd__msg_side *s, enum vd__msg_path p)
{
	char port[16], size_s[16], iters_s[16], text[8192];
	const char *addr = p == VD_MSG_FI_SHM ? "127.0.0.1" : s->ref_peer_ip;
	int fails = 0;

	if (!vd__msg_fi_available()) {
		fprintf(stderr, "viaduct perf: %s: %s not installed, skipped\n", vd__msg_path_name(p), FI_PINGPONG);
		return 0;
	}
	snprintf(port, sizeof(port), "%u", vd__msg_path_port(p));
	snprintf(iters_s, sizeof(iters_s), "%u", fi_iters(s, p));
	for (unsigned i = 0; s->benches[VD_MSG_PINGPONG] && i < s->nsizes[VD_MSG_PINGPONG] && !vd__perf_stop; i++) {
		unsigned size = s->sizes[VD_MSG_PINGPONG][i];

		if (size > VD_MSG_FI_MAX_SIZE)
			continue;
		snprintf(size_s, sizeof(size_s), "%u", size);
		char *argv[16] = { FI_PINGPONG, "-p", (char *)provider(p), "-e", "rdm", "-I", iters_s, "-S", size_s };

		if (s->server) {
			argv[9] = "-B";
			argv[10] = port;
			if (run_fi(argv, NULL, 0) != 0)
				fails++;
			continue;
		}
		argv[9] = "-P";
		argv[10] = port;
		argv[11] = (char *)addr;
		/* The server of this size may not be listening yet: its control connection is refused at once,
		 * so retry a few times. */
		int ok = 0;
		double usec = 0;

		for (int t = 0; t < 20 && !ok && !vd__perf_stop; t++) {
			nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
			ok = run_fi(argv, text, sizeof(text)) == 0 && parse(text, &usec) == 0;
		}
		if (!ok) {
			fprintf(stderr, "viaduct perf: %s size %u: fi_pingpong failed\n", vd__msg_path_name(p), size);
			fails++;
			break;
		}
		char extra[48];

		snprintf(extra, sizeof(extra), ",\"stat\":\"mean\",\"iters\":%s", iters_s);
		vd__msg_emit(s->out, VD_MSG_PINGPONG, p, size, usec, NAN, NAN, NAN, extra);
	}
	return fails ? -EIO : 0;
}
