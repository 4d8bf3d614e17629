/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf sockets --lab NAME`: unmodified socket programs on viaduct against the kernel's TCP, on one
 * lab, in one run (issue 4, item 6). Benchmarks:
 *   sockperf  `sockperf ping-pong --tcp --nonblocked`, --size bytes (default 64), the server non-blocking
 *             too: p50 and p99 of the half round trip (sockperf's own percentiles). Both sides
 *             busy-poll (issue 4): on the kernel path sockperf spins on its non-blocking calls; under
 *             viaduct the interposer's own waits (the server's epoll, a connect) get `viaduct run
 *             --spin-us -1` (--spin-us changes it), so that a scheduling hiccup longer than the default
 *             100 us spin does not cost a sleep and a wakeup. Measured on the 2-core lab (3 interleaved
 *             rounds, twice each): p50 about the same as with 100 us (2.7-3.8 us), p99 3.3-3.5 us
 *             instead of 4.2-4.4 us.
 *   iperf3    one TCP stream for --seconds: Gbit/s received
 *   connrate  connect() + close() in a loop (viaduct perf conn-client / conn-server): connections per
 *             second, p50 and p99 of one connection, after a first (warm-up) connection reported apart as
 *             first_us. A round stops after --seconds or CONN_PORT_BUDGET / reps connections, whichever
 *             comes first: every connection leaves its client port in TIME-WAIT for 60 s (the kernel: that
 *             4-tuple; viaductd: the port, held) and Linux's default range has 28232 ports, so unbounded
 *             back-to-back rounds measure how fast the range runs out instead of connection set-up and
 *             tear-down.
 * Paths:
 *   kernel    the lab's reference link ref0 (10.98.0.x, no viaductd, no XDP), programs run as they are:
 *             the kernel as a user would run it
 *   viaduct   the viaduct link eth0 (10.99.0.x), both programs under `viaduct run`
 * Servers run in host h1, clients in h0, each pinned to its own CPU where there are two. --reps rounds run
 * every (bench, path) once each, interleaved, and the medians are printed as JSON lines and a table with
 * the viaduct / kernel ratios.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "perf.h"
#include "perf_sock.h"
#include "run_cmd.h"

enum sock_bench { B_SOCKPERF, B_IPERF3, B_CONNRATE, B_N };
enum sock_path { P_KERNEL, P_VIADUCT, P_N };

static const char *const bench_names[B_N] = { "sockperf", "iperf3", "connrate" };
static const char *const path_names[P_N] = { "kernel", "viaduct" };
/* Each (bench, path) its own port: a straggler of one run never meets the next. */
static const unsigned base_port = 17100;
/* Client ports all connrate rounds of one run may leave in TIME-WAIT per path (see the top comment). */
#define CONN_PORT_BUDGET 9000u

struct sock_args {
	const char *lab;
	int bench[B_N], path[P_N];
	unsigned reps, seconds, size;
	int json, verbose;
	const char *spin_us;   /* viaduct run --spin-us for the sockperf sides */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct perf sockets --lab NAME [options]\n"
		"  unmodified programs on viaduct (under `viaduct run`, link eth0) against the kernel's TCP (link\n"
		"  ref0, no viaductd), same lab, same run, rounds interleaved, medians\n"
		"  --bench LIST     sockperf,iperf3,connrate (default all; sockperf and iperf3 must be installed)\n"
		"  --path LIST      kernel,viaduct (default both)\n"
		"  --reps R         rounds (default 3)\n"
		"  --seconds S      length of each run (default 3)\n"
		"  --size N         sockperf message size (default 64)\n"
		"  --spin-us N      viaduct run --spin-us for the sockperf sides (default -1: busy-poll, never\n"
		"                   sleep, as sockperf --nonblocked does on the kernel path)\n"
		"  connrate rounds stop after --seconds or 9000/R connections (TIME-WAIT keeps one port per\n"
		"  connection for 60 s: longer rounds would measure the exhaustion of the port range)\n"
		"  --json           JSON lines only, no table\n"
		"  -v               show the servers' output\n");
}

static int pick(const char *list, const char *const names[], int n, int *on)
{
	char buf[128];

	snprintf(buf, sizeof(buf), "%s", list);
	memset(on, 0, sizeof(int) * (size_t)n);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k = 0;

		while (k < n && strcmp(t, names[k]))
			k++;
		if (k == n) {
			fprintf(stderr, "viaduct perf sockets: unknown name '%s'\n", t);
			return -1;
		}
		on[k] = 1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct sock_args *a)
{
	*a = (struct sock_args){ .reps = 3, .seconds = 3, .size = 64, .spin_us = "-1" };
	for (int k = 0; k < B_N; k++)
		a->bench[k] = 1;
	for (int k = 0; k < P_N; k++)
		a->path[k] = 1;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(o, "--json")) {
			a->json = 1;
		} else if (!strcmp(o, "-v")) {
			a->verbose = 1;
		} else if (!v) {
			usage(stderr);
			return -1;
		} else if (!strcmp(o, "--lab")) {
			a->lab = v, i++;
		} else if (!strcmp(o, "--bench")) {
			if (pick(v, bench_names, B_N, a->bench))
				return -1;
			i++;
		} else if (!strcmp(o, "--path")) {
			if (pick(v, path_names, P_N, a->path))
				return -1;
			i++;
		} else if (!strcmp(o, "--reps")) {
			if (vd__perf_parse_uint(argv[++i], 1, 99, &a->reps))
				return -1;
		} else if (!strcmp(o, "--seconds")) {
			if (vd__perf_parse_uint(argv[++i], 1, 600, &a->seconds))
				return -1;
		} else if (!strcmp(o, "--spin-us")) {
			char *end;
			long x = strtol(v, &end, 10);
			if (*end || x < -1 || x > 10000000) {
				usage(stderr);
				return -1;
			}
			a->spin_us = v, i++;
		} else if (!strcmp(o, "--size")) {
			if (vd__perf_parse_uint(argv[++i], 1, 65000, &a->size))
				return -1;
		} else {
			usage(stderr);
			return -1;
		}
	}
	if (!a->lab) {
		fprintf(stderr, "viaduct perf sockets: --lab NAME required\n");
		return -1;
	}
	return 0;
}

/* argv builder: `viaduct lab exec --name LAB HOST -- [viaduct run --] [taskset -c CPU] PROG...`. */
struct cmd {
	char *v[48];
	char store[8][32];
	unsigned n, k;
};

static void add(struct cmd *c, const char *s)
{
	if (c->n + 1 < sizeof(c->v) / sizeof(c->v[0]))
		c->v[c->n++] = (char *)s;
	c->v[c->n] = NULL;
}

static const char *num(struct cmd *c, unsigned x)
{
	if (c->k == sizeof(c->store) / sizeof(c->store[0]))
		return "0";
	snprintf(c->store[c->k], sizeof(c->store[0]), "%u", x);
	return c->store[c->k++];
}

static void prefix(struct cmd *c, const struct sock_args *a, int server, enum sock_bench b, enum sock_path p)
{
	const char *self = vd__cli_self();

	add(c, self), add(c, "lab"), add(c, "exec"), add(c, "--name"), add(c, a->lab);
	add(c, server ? "h1" : "h0"), add(c, "--");
	if (p == P_VIADUCT) {
		add(c, self), add(c, "run");
		/* sockperf --nonblocked busy-polls its sockets on the kernel path; under viaduct the waits in
		 * the interposer (the server's epoll, a blocking call) must not fall asleep after the default
		 * 100 us either, or a scheduling hiccup costs a sleep and a wakeup (see the top comment). */
		if (b == B_SOCKPERF)
			add(c, "--spin-us"), add(c, a->spin_us);
		add(c, "--");
	}
	/* Two busy-polling sides: one CPU each where there are two. */
	if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
		add(c, "taskset"), add(c, "-c"), add(c, server ? "1" : "0");
}

static const char *server_ip(enum sock_path p)
{
	return p == P_KERNEL ? "10.98.0.2" : "10.99.0.2";
}

static void build(struct cmd *c, const struct sock_args *a, enum sock_bench b, enum sock_path p, int server)
{
	unsigned port = base_port + (unsigned)b * P_N + (unsigned)p;
	const char *ip = server_ip(p);

	*c = (struct cmd){ .n = 0 };
	prefix(c, a, server, b, p);
	switch (b) {
	case B_SOCKPERF:
		add(c, "sockperf"), add(c, server ? "server" : "ping-pong"), add(c, "--tcp"), add(c, "--nonblocked");
		add(c, "-i"), add(c, ip), add(c, "-p"), add(c, num(c, port));
		if (!server)
			add(c, "-m"), add(c, num(c, a->size)), add(c, "-t"), add(c, num(c, a->seconds));
		break;
	case B_IPERF3:
		if (server)
			add(c, "iperf3"), add(c, "-s"), add(c, "-1"), add(c, "-B"), add(c, ip);
		else
			add(c, "iperf3"), add(c, "-c"), add(c, ip), add(c, "-t"), add(c, num(c, a->seconds)), add(c, "-J");
		add(c, "-p"), add(c, num(c, port));
		break;
	default: {
		static char addr[P_N][32];

		snprintf(addr[p], sizeof(addr[p]), "%s:%u", ip, port);
		add(c, vd__cli_self()), add(c, "perf"), add(c, server ? "conn-server" : "conn-client");
		add(c, "--addr"), add(c, addr[p]), add(c, "--path"), add(c, path_names[p]);
		/* The server outlives the client's run: it is stopped once the client is done. */
		add(c, "--seconds"), add(c, num(c, server ? a->seconds + 30 : a->seconds));
		if (!server)
			add(c, "--max"), add(c, num(c, CONN_PORT_BUDGET / a->reps));
		break;
	}
	}
}

static pid_t start(char **argv, int verbose)
{
	fflush(stdout);
	pid_t pid = fork();

	if (pid == 0) {
		if (!verbose) {
			FILE *n = freopen("/dev/null", "w", stdout);

			(void)n;
			dup2(STDOUT_FILENO, STDERR_FILENO);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Stops a server: `lab exec` and `viaduct run` exec in place, so pid is the server program itself. */
static void stop(pid_t pid)
{
	int st;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

/* The number after `key` (a literal that ends just before it) at or after from; -1 if absent. */
static int after(const char *from, const char *key, double *out)
{
	const char *k = from ? strstr(from, key) : NULL;
	char *end;

	if (!k)
		return -1;
	*out = strtod(k + strlen(key), &end);
	return end == k + strlen(key) ? -1 : 0;
}

/* Turns a client's output into one JSON result line; 0 or -1 if the output holds no result. */
static int result_line(enum sock_bench b, enum sock_path p, const struct sock_args *a, const char *out,
		       char *line, size_t cap)
{
	double x, y;

	switch (b) {
	case B_SOCKPERF:
		/* "sockperf: ---> percentile 50.000 =    9.433": half round trips in microseconds. */
		if (after(out, "percentile 50.000 =", &x) || after(out, "percentile 99.000 =", &y))
			return -1;
		snprintf(line, cap, "{\"bench\":\"sockperf\",\"path\":\"%s\",\"size\":%u,\"p50_us\":%.3f,\"p99_us\":%.3f}",
			 path_names[p], a->size, x, y);
		return 0;
	case B_IPERF3:
		/* iperf3 -J: end.sum_received.bits_per_second. */
		if (after(strstr(out, "\"sum_received\""), "\"bits_per_second\":", &x))
			return -1;
		snprintf(line, cap, "{\"bench\":\"iperf3\",\"path\":\"%s\",\"size\":0,\"gbps\":%.3f}", path_names[p],
			 x / 1e9);
		return 0;
	default: {
		const char *l = strstr(out, "{\"bench\":\"connrate\"");
		const char *nl = l ? strchr(l, '\n') : NULL;

		if (!l)
			return -1;
		snprintf(line, cap, "%.*s", nl ? (int)(nl - l) : (int)strlen(l), l);
		return 0;
	}
	}
}

/* One (bench, path) run: server up, client with retries until the server listens, server down. */
static int run_one(const struct sock_args *a, enum sock_bench b, enum sock_path p, struct vd__perf_merge *m)
{
	struct cmd sv, cv;
	static char out[1 << 16];
	char line[512];
	int ok = 0;

	build(&sv, a, b, p, 1);
	build(&cv, a, b, p, 0);
	pid_t server = start(sv.v, a->verbose);

	if (server < 0)
		return -errno;
	for (int t = 0; t < 30 && !ok && !vd__perf_stop; t++) {
		struct vd__run_opts o = { .timeout_ms = (int)(a->seconds + 20) * 1000, .stderr_fd = -1,
					  .capture = out, .capture_cap = sizeof(out) };

		nanosleep(&(struct timespec){ .tv_nsec = 200000000 }, NULL);
		int rc = vd__run(cv.v, &o);

		ok = rc == 0 && result_line(b, p, a, out, line, sizeof(line)) == 0;
		/* A refused connection means the server is not listening yet: try again. Anything after a
		 * result was produced is final. */
		if (!ok && rc == -ETIMEDOUT)
			break;
	}
	stop(server);
	if (!ok) {
		fprintf(stderr, "viaduct perf sockets: %s over %s failed; the client's last output:\n%.2000s\n",
			bench_names[b], path_names[p], out);
		return -EIO;
	}
	vd__perf_merge_add(m, line);
	return 0;
}

struct printer {
	char lines[B_N * P_N][512];
	unsigned n;
	int json;
};

static void collect(void *ctx, const char *line)
{
	struct printer *pr = ctx;

	if (pr->n < B_N * P_N)
		snprintf(pr->lines[pr->n++], sizeof(pr->lines[0]), "%s", line);
	puts(line);
}

static const char *find(const struct printer *pr, enum sock_bench b, enum sock_path p)
{
	char want[64];

	snprintf(want, sizeof(want), "\"bench\":\"%s\",\"path\":\"%s\"", bench_names[b], path_names[p]);
	for (unsigned i = 0; i < pr->n; i++)
		if (strstr(pr->lines[i], want))
			return pr->lines[i];
	return NULL;
}

static void cell(int have, double x)
{
	if (have)
		printf(" %10.2f |", x);
	else
		printf(" %10s |", "-");
}

/* One table row: kernel, viaduct, their ratio and the target for it (want <= 0: none). */
static void row(const struct printer *pr, enum sock_bench b, const char *key, const char *label, double want,
		int lower_better)
{
	const char *lk = find(pr, b, P_KERNEL), *lv = find(pr, b, P_VIADUCT);
	double k = 0, v = 0;
	int hk = lk && !vd__perf_json_num(lk, key, &k), hv = lv && !vd__perf_json_num(lv, key, &v);
	char target[24] = "";

	if (!hk && !hv)
		return;
	printf("| %-26s |", label);
	cell(hk, k);
	cell(hv, v);
	if (want > 0)
		snprintf(target, sizeof(target), "%s %.2g", lower_better ? "<=" : ">=", want);
	if (hk && hv && k > 0) {
		double r = v / k;
		int met = lower_better ? r <= want : r >= want;

		printf(" %6.2f x | %-8s %-5s |\n", r, target, want <= 0 ? "" : met ? "met" : "MISS");
	} else {
		printf(" %8s | %-14s |\n", "-", target);
	}
}

static void table(const struct printer *pr, const struct sock_args *a)
{
	char label[40];

	printf("\nviaduct perf sockets (lab %s, medians of %u rounds; kernel on ref0 without viaductd, viaduct under "
	       "`viaduct run` on eth0)\n",
	       a->lab, a->reps);
	printf("| %-26s | %10s | %10s | %8s | %-14s |\n", "benchmark", "kernel", "viaduct", "ratio", "target");
	printf("|%.28s|%.12s|%.12s|%.10s|%.16s|\n", "----------------------------", "------------", "------------",
	       "----------", "----------------");
	snprintf(label, sizeof(label), "sockperf %u B p50 (us)", a->size);
	row(pr, B_SOCKPERF, "p50_us", label, 0.5, 1);
	snprintf(label, sizeof(label), "sockperf %u B p99 (us)", a->size);
	row(pr, B_SOCKPERF, "p99_us", label, 0, 1);
	row(pr, B_IPERF3, "gbps", "iperf3 1 stream (Gbit/s)", 0.7, 0);
	row(pr, B_CONNRATE, "conns_per_s", "connections/s", 1.0, 0);
	row(pr, B_CONNRATE, "p50_us", "connect+close p50 (us)", 0, 1);
	row(pr, B_CONNRATE, "p99_us", "connect+close p99 (us)", 0, 1);
	row(pr, B_CONNRATE, "first_us", "first connect+close (us)", 0, 1);
}

int vd__perf_sock_main(int argc, char **argv)
{
	struct sock_args a;
	int r = parse_args(argc, argv, &a), fails = 0;

	if (r)
		return r > 0 ? 0 : 2;
	struct vd__perf_merge *m = vd__perf_merge_new();
	struct printer *pr = calloc(1, sizeof(*pr));

	if (!m || !pr) {
		vd__perf_merge_free(m);
		free(pr);
		return 1;
	}
	for (unsigned rep = 0; rep < a.reps && !vd__perf_stop; rep++)
		for (int b = 0; b < B_N; b++)
			for (int p = 0; p < P_N && !vd__perf_stop; p++)
				if (a.bench[b] && a.path[p] && run_one(&a, b, p, m) < 0)
					fails++;
	vd__perf_merge_emit(m, collect, pr);
	if (!a.json)
		table(pr, &a);
	vd__perf_merge_free(m);
	free(pr);
	return fails ? 1 : 0;
}
