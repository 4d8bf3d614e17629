/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf pingpong|bw|rate[,...]`: the messaging benchmarks (issue 3, item 6). Command line, the two
 * sides, lab mode and output; the paths are in perf_msg_vd.c, perf_msg_ref.c, perf_msg_tcp.c,
 * perf_msg_fi.c, the table and plot in perf_msg_table.c and perf_plot.c.
 *
 *   --server / --client ADDR   one side each: both walk the same --path list in order, --reps times.
 *   --lab NAME                 --reps rounds; each round runs every path once as a server in NAME-h1 and
 *                              a client in NAME-h0 (viaduct-shm, fi-shm: both in NAME-h0), started through
 *                              `viaduct lab exec`, and the medians over rounds are reported (the machine's
 *                              slow phases then hit every path alike). fi-* run in the first round only.
 * viaduct-xdp uses eth0 (viaductd's link); every other path the reference link ref0.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "perf.h"
#include "perf_msg.h"

static const char *const bench_names[VD_MSG_NBENCH] = { "pingpong", "bw", "rate" };
static const char *const path_names[VD_MSG_NPATHS] = {
	[VD_MSG_VIADUCT_XDP] = "viaduct-xdp", [VD_MSG_VIADUCT_UDP] = "viaduct-udp",
	[VD_MSG_VIADUCT_SHM] = "viaduct-shm",
	[VD_MSG_KERNEL_UDP] = "kernel-udp",   [VD_MSG_BARE_AFXDP] = "bare-afxdp",
	[VD_MSG_KERNEL_TCP] = "kernel-tcp",   [VD_MSG_FI_SHM] = "fi-shm",
	[VD_MSG_FI_UDP] = "fi-udp",           [VD_MSG_FI_TCP] = "fi-tcp",
};
/* Defaults: ping-pong from 8 B to 1 MiB in steps of 8, bandwidth 64 KiB to 4 MiB, rate 8 B. */
static const unsigned default_sizes[VD_MSG_NBENCH][VD_MSG_MAX_SIZES] = {
	{ 8, 64, 512, 4096, 32768, 262144, 1048576 },
	{ 65536, 262144, 1048576, 4194304 },
	{ 8 },
};
static const unsigned default_nsizes[VD_MSG_NBENCH] = { 7, 4, 1 };

const char *vd__msg_bench_name(enum vd__msg_bench b)
{
	return b < VD_MSG_NBENCH ? bench_names[b] : "?";
}

const char *vd__msg_path_name(enum vd__msg_path p)
{
	return p < VD_MSG_NPATHS ? path_names[p] : "?";
}

uint16_t vd__msg_path_port(enum vd__msg_path p)
{
	return (uint16_t)(27901 + p); /* next to perf frames' 2780x; below the kernel's ephemeral range
				       (32768-60999), where viaductd's port pool or any connection may hold them */
}

unsigned vd__msg_side_max_size(const struct vd__msg_side *s)
{
	unsigned m = 0;

	for (unsigned b = 0; b < VD_MSG_NBENCH; b++)
		for (unsigned i = 0; s->benches[b] && i < s->nsizes[b]; i++)
			m = s->sizes[b][i] > m ? s->sizes[b][i] : m;
	return m;
}

static void put_num(FILE *out, const char *key, double v)
{
	if (isfinite(v))
		fprintf(out, ",\"%s\":%.4f", key, v);
	else
		fprintf(out, ",\"%s\":null", key);
}

void vd__msg_emit(FILE *out, enum vd__msg_bench b, enum vd__msg_path p, unsigned size, double p50_us,
		  double p99_us, double gbps, double mmsgs, const char *extra)
{
	fprintf(out, "{\"bench\":\"%s\",\"path\":\"%s\",\"size\":%u", vd__msg_bench_name(b), vd__msg_path_name(p),
		size);
	put_num(out, "p50_us", p50_us);
	put_num(out, "p99_us", p99_us);
	put_num(out, "gbps", gbps);
	put_num(out, "mmsgs", mmsgs);
	fprintf(out, "%s}\n", extra ? extra : "");
	fflush(out);
}

/* Whether path p has anything to measure for the benches chosen. */
static int path_applies(const struct vd__msg_side *s, enum vd__msg_path p)
{
	if (p == VD_MSG_KERNEL_TCP)
		return s->benches[VD_MSG_PINGPONG] || s->benches[VD_MSG_BW];
	if (p >= VD_MSG_FI_SHM) {
		for (unsigned i = 0; s->benches[VD_MSG_PINGPONG] && i < s->nsizes[VD_MSG_PINGPONG]; i++)
			if (s->sizes[VD_MSG_PINGPONG][i] <= VD_MSG_FI_MAX_SIZE)
				return 1;
		return 0;
	}
	return 1;
}

/* --- arguments ------------------------------------------------------------------------------------ */

struct msg_args {
	struct vd__msg_side side;
	const char *lab, *client, *bench_arg, *path_arg, *size_arg, *plot;
	enum vd__msg_path paths[VD_MSG_NPATHS];
	unsigned npaths, reps;
	int cpu, json;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct perf pingpong|bw|rate[,...] [--lab NAME | --server | --client ADDR] [options]\n"
		"options:\n"
		"  --path P[,P...]    viaduct-xdp, viaduct-udp, viaduct-shm, kernel-udp, bare-afxdp, kernel-tcp,\n"
		"                     fi-shm, fi-udp, fi-tcp (default all; fi-* need fi_pingpong from libfabric-bin,\n"
		"                     else skipped; viaduct-shm and fi-shm run both sides in the client's host)\n"
		"  --size S[,S...]    message sizes in bytes (K and M suffixes: KiB, MiB) for every bench given;\n"
		"                     defaults: pingpong 8..1M in steps of x8, bw 64K,256K,1M,4M, rate 8\n"
		"  --iters N          ping-pong round trips per size (default 5000), --warmup N (default 500)\n"
		"  --pingpong-ms MS   at most this long per ping-pong size (at least 10 round trips; default 1000)\n"
		"  --duration-ms D    bw and rate: streaming time per size (default 300)\n"
		"  --window W         bw: messages in flight (default 8; rate: %u)\n"
		"  --reps R           repetitions, medians reported (default 3); with --lab, R interleaved rounds\n"
		"  --ref-addr ADDR    client: server address on the reference link (default: ADDR)\n"
		"  --iface IF         viaduct interface (default: the daemon's first)\n"
		"  --ref-iface IF     reference interface (server default ref0; client: the route to --ref-addr)\n"
		"  --queue Q          queue of bare-afxdp and of viaduct-xdp in direct mode, the same on both\n"
		"                     sides (default 1)\n"
		"  --rx-mode M        viaduct-xdp receive mode: steered (default: the dispatcher copies frames\n"
		"                     into the endpoint's ring buffer, cheaper than the XSK path in copy mode) or\n"
		"                     direct (the endpoint's XSK on --queue)\n"
		"  --cpu C            pin this side to CPU C\n"
		"  --idle-ms MS       server: leave a path after MS without a client (default 10000)\n"
		"  --json             JSON lines (one per bench, path and size) instead of a table\n"
		"  --plot FILE        also write latency and bandwidth against message size as SVG to FILE\n"
		"Lines: \"bench\",\"path\",\"size\",\"p50_us\",\"p99_us\" (half round trip),\"gbps\" (payload Gbit/s),\n"
		"\"mmsgs\" (million messages/s); null where a bench does not measure it.\n",
		VD_MSG_RATE_WINDOW);
}

typedef int (*tok_fn)(const char *tok, struct msg_args *a);

static int parse_list(const char *arg, tok_fn one, struct msg_args *a)
{
	char buf[512], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (one(t, a) < 0)
			return -1;
	return 0;
}

static int add_bench(const char *tok, struct msg_args *a)
{
	for (unsigned b = 0; b < VD_MSG_NBENCH; b++)
		if (!strcmp(tok, bench_names[b])) {
			a->side.benches[b] = 1;
			return 0;
		}
	return -1;
}

int vd__perf_msg_is_cmd(const char *arg)
{
	struct msg_args a;

	memset(&a, 0, sizeof(a));
	return arg && *arg && strlen(arg) < 64 && parse_list(arg, add_bench, &a) == 0;
}

static int add_path(const char *tok, struct msg_args *a)
{
	for (unsigned p = 0; p < VD_MSG_NPATHS; p++) {
		if (strcmp(tok, "all") && strcmp(tok, path_names[p]))
			continue;
		unsigned i = 0;

		while (i < a->npaths && a->paths[i] != p)
			i++;
		if (i == a->npaths)
			a->paths[a->npaths++] = (enum vd__msg_path)p;
		if (strcmp(tok, "all"))
			return 0;
	}
	if (!strcmp(tok, "all"))
		return 0;
	fprintf(stderr, "viaduct perf: unknown path '%s'\n", tok);
	return -1;
}

static int add_size(const char *tok, struct msg_args *a)
{
	char *end;
	unsigned long long v = strtoull(tok, &end, 10);

	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (end == tok || *end || v < 1 || v > VD_MSG_MAX_SIZE || a->side.nsizes[0] == VD_MSG_MAX_SIZES) {
		fprintf(stderr, "viaduct perf: bad size '%s' (1..%u, at most %u sizes)\n", tok, VD_MSG_MAX_SIZE,
			VD_MSG_MAX_SIZES);
		return -1;
	}
	/* One list for every bench given. */
	for (unsigned b = 0; b < VD_MSG_NBENCH; b++)
		a->side.sizes[b][a->side.nsizes[b]++] = (unsigned)v;
	return 0;
}

enum { O_LAB = 256, O_SERVER, O_CLIENT, O_PATH, O_SIZE, O_ITERS, O_WARMUP, O_PPMS, O_DURATION, O_WINDOW,
       O_REPS, O_REFADDR, O_IFACE, O_REFIFACE, O_QUEUE, O_RXMODE, O_CPU, O_IDLE, O_JSON, O_PLOT, O_FI_ROUND, O_HELP };

static int parse_args(int argc, char **argv, struct msg_args *a)
{
	static const struct option opts[] = {
		{ "lab", required_argument, NULL, O_LAB },           { "server", no_argument, NULL, O_SERVER },
		{ "client", required_argument, NULL, O_CLIENT },     { "path", required_argument, NULL, O_PATH },
		{ "size", required_argument, NULL, O_SIZE },         { "iters", required_argument, NULL, O_ITERS },
		{ "warmup", required_argument, NULL, O_WARMUP },     { "pingpong-ms", required_argument, NULL, O_PPMS },
		{ "duration-ms", required_argument, NULL, O_DURATION },
		{ "window", required_argument, NULL, O_WINDOW },     { "reps", required_argument, NULL, O_REPS },
		{ "ref-addr", required_argument, NULL, O_REFADDR },  { "iface", required_argument, NULL, O_IFACE },
		{ "ref-iface", required_argument, NULL, O_REFIFACE }, { "queue", required_argument, NULL, O_QUEUE },
		{ "rx-mode", required_argument, NULL, O_RXMODE },
		{ "cpu", required_argument, NULL, O_CPU },           { "idle-ms", required_argument, NULL, O_IDLE },
		{ "json", no_argument, NULL, O_JSON },               { "plot", required_argument, NULL, O_PLOT },
		{ "no-fi", no_argument, NULL, O_FI_ROUND },          { "help", no_argument, NULL, O_HELP },
		{ 0 },
	};
	struct vd__msg_side *s = &a->side;
	unsigned u = 0;
	int c;

	memset(a, 0, sizeof(*a));
	a->bench_arg = argv[0];
	if (parse_list(argv[0], add_bench, a) < 0)
		return -1;
	s->queue = 1;
	s->iters = 5000;
	s->warmup = 500;
	s->pingpong_ms = 1000;
	s->duration_ms = 300;
	s->window = 8;
	s->idle_ms = 10000;
	s->fi_first_round = 1;
	s->out = stdout;
	a->reps = 3;
	a->cpu = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case O_LAB: a->lab = optarg; break;
		case O_SERVER: s->server = 1; break;
		case O_CLIENT: a->client = optarg; break;
		case O_PATH: a->path_arg = optarg; bad = parse_list(optarg, add_path, a); break;
		case O_SIZE: a->size_arg = optarg; bad = parse_list(optarg, add_size, a); break;
		case O_ITERS: bad = vd__perf_parse_uint(optarg, 1, 10000000, &s->iters); break;
		case O_WARMUP: bad = vd__perf_parse_uint(optarg, 0, 10000000, &s->warmup); break;
		case O_PPMS: bad = vd__perf_parse_uint(optarg, 1, 600000, &s->pingpong_ms); break;
		case O_DURATION: bad = vd__perf_parse_uint(optarg, 1, 600000, &s->duration_ms); break;
		case O_WINDOW: bad = vd__perf_parse_uint(optarg, 1, 64, &s->window); break;
		case O_REPS: bad = vd__perf_parse_uint(optarg, 1, 100, &a->reps); break;
		case O_REFADDR: s->ref_peer_ip = optarg; break;
		case O_IFACE: s->iface = optarg; break;
		case O_REFIFACE: s->ref_iface = optarg; break;
		case O_QUEUE: bad = vd__perf_parse_uint(optarg, 0, 1023, &u); s->queue = (int)u; break;
		case O_RXMODE:
			bad = strcmp(optarg, "steered") && strcmp(optarg, "direct");
			s->rx_direct = !strcmp(optarg, "direct");
			if (bad)
				fprintf(stderr, "viaduct perf: --rx-mode: steered or direct, not \"%s\"\n", optarg);
			break;
		case O_CPU: bad = vd__perf_parse_uint(optarg, 0, 4095, &u); a->cpu = (int)u; break;
		case O_IDLE: bad = vd__perf_parse_uint(optarg, 1, 3600000, &s->idle_ms); break;
		case O_JSON: a->json = 1; break;
		case O_PLOT: a->plot = optarg; break;
		case O_FI_ROUND: s->fi_first_round = 0; break;
		case O_HELP: usage(stdout); return 1;
		default: bad = 1; break;
		}
		if (bad) {
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc || (!!a->lab + s->server + !!a->client) != 1) {
		fprintf(stderr, "viaduct perf %s: give exactly one of --lab NAME, --server, --client ADDR\n", argv[0]);
		usage(stderr);
		return -1;
	}
	if (!a->npaths)
		add_path("all", a);
	if (!a->size_arg)
		for (unsigned b = 0; b < VD_MSG_NBENCH; b++) {
			memcpy(s->sizes[b], default_sizes[b], sizeof(s->sizes[b]));
			s->nsizes[b] = default_nsizes[b];
		}
	s->peer_ip = a->client;
	if (!s->ref_peer_ip)
		s->ref_peer_ip = a->client;
	return 0;
}

/* --- output --------------------------------------------------------------------------------------- */

struct sink {
	int json;
	struct vd__msg_table *table;
};

/*
 * A merged line (perf_table.c keeps numbers only, as medians) in our shape again: the seven fields first,
 * null where absent, then the other numbers as they were.
 */
static void sink_line(void *ctx, const char *line)
{
	static const char *const keys[] = { "p50_us", "p99_us", "gbps", "mmsgs" };
	struct sink *s = ctx;
	char bench[16], path[24], out[1024];
	double size, v;

	if (vd__perf_json_str(line, "bench", bench, sizeof(bench)) || vd__perf_json_str(line, "path", path, sizeof(path)) ||
	    vd__perf_json_num(line, "size", &size))
		return;
	int n = snprintf(out, sizeof(out), "{\"bench\":\"%s\",\"path\":\"%s\",\"size\":%.0f", bench, path, size);

	for (unsigned k = 0; k < 4; k++)
		n += vd__perf_json_num(line, keys[k], &v) == 0
			     ? snprintf(out + n, sizeof(out) - (size_t)n, ",\"%s\":%.4g", keys[k], v)
			     : snprintf(out + n, sizeof(out) - (size_t)n, ",\"%s\":null", keys[k]);
	if (!strncmp(path, "fi-", 3))
		n += snprintf(out + n, sizeof(out) - (size_t)n, ",\"stat\":\"mean\"");
	/* The rest: every ,"key":number after "size" that is not one of ours. */
	const char *p = strstr(line, "\"size\"");

	for (p = p ? strchr(p, ',') : NULL; p && (size_t)n < sizeof(out) - 2; p = strchr(p + 1, ',')) {
		char key[24];
		const char *q = strchr(p + 2, '"');

		if (p[1] != '"' || !q || (size_t)(q - p - 2) >= sizeof(key))
			continue;
		memcpy(key, p + 2, (size_t)(q - p - 2));
		key[q - p - 2] = '\0';
		int ours = 0;

		for (unsigned k = 0; k < 4; k++)
			ours |= !strcmp(key, keys[k]);
		if (ours || vd__perf_json_num(line, key, &v))
			continue;
		n += snprintf(out + n, sizeof(out) - (size_t)n, ",\"%s\":%.10g", key, v);
	}
	if ((size_t)n >= sizeof(out) - 2)
		return;
	snprintf(out + n, sizeof(out) - (size_t)n, "}");
	if (s->json) {
		printf("%s\n", out);
		fflush(stdout);
	}
	if (s->table)
		vd__msg_table_add(s->table, out);
}

static void note_skipped(const struct sink *s, enum vd__msg_path p, const char *why)
{
	if (s->json)
		printf("{\"bench\":\"pingpong\",\"path\":\"%s\",\"size\":null,\"p50_us\":null,\"p99_us\":null,"
		       "\"gbps\":null,\"mmsgs\":null,\"skipped\":\"%s\"}\n",
		       vd__msg_path_name(p), why);
	else
		printf("note: %s skipped: %s\n", vd__msg_path_name(p), why);
	fflush(stdout);
}

static int finish(struct sink *s, struct vd__perf_merge *m, const char *plot)
{
	int rc = 0;

	vd__perf_merge_emit(m, sink_line, s);
	if (!s->json)
		vd__msg_table_print(s->table, stdout);
	if (plot) {
		FILE *f = fopen(plot, "w");

		if (!f || vd__msg_table_plot(s->table, f) < 0) {
			fprintf(stderr, "viaduct perf: cannot write %s: %s\n", plot, strerror(errno));
			rc = 1;
		}
		if (f && fclose(f) != 0)
			rc = 1;
	}
	return rc;
}

/* --- one side --------------------------------------------------------------------------------------- */

static int run_path(const struct vd__msg_side *s, enum vd__msg_path p)
{
	switch (p) {
	case VD_MSG_VIADUCT_XDP:
	case VD_MSG_VIADUCT_UDP:
	case VD_MSG_VIADUCT_SHM:
		return vd__msg_vd_run(s, p);
	case VD_MSG_KERNEL_UDP:
	case VD_MSG_BARE_AFXDP:
		return vd__msg_ref_run(s, p);
	case VD_MSG_KERNEL_TCP:
		return vd__msg_tcp_run(s);
	default:
		return vd__msg_fi_run(s, p);
	}
}

static void on_signal(int sig)
{
	(void)sig;
	vd__perf_stop = 1;
}

static int run_side(struct msg_args *a, struct sink *sk, struct vd__perf_merge *m)
{
	struct vd__msg_side *s = &a->side;
	char *text = NULL;
	size_t len = 0;
	int fails = 0;

	if (a->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(a->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			fprintf(stderr, "viaduct perf: cannot pin to CPU %d: %s\n", a->cpu, strerror(errno));
	}
	/* Client lines are collected and merged over the repetitions (medians). */
	if (!s->server && !(s->out = open_memstream(&text, &len)))
		return 1;
	for (unsigned r = 0; r < a->reps && !vd__perf_stop; r++)
		for (unsigned i = 0; i < a->npaths && !vd__perf_stop; i++) {
			enum vd__msg_path p = a->paths[i];

			if (!path_applies(s, p) || (p >= VD_MSG_FI_SHM && (r > 0 || !s->fi_first_round)))
				continue;
			int rc = run_path(s, p);

			if (rc < 0) {
				fprintf(stderr, "viaduct perf: %s %s: %s\n", vd__msg_path_name(p),
					s->server ? "server" : "client", strerror(-rc));
				fails++;
			}
		}
	if (s->server)
		return fails ? 1 : 0;
	fclose(s->out);
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		vd__perf_merge_add(m, l);
	free(text);
	fails += finish(sk, m, a->plot);
	return fails ? 1 : 0;
}

/* --- lab mode --------------------------------------------------------------------------------------- */

/* argv of `viaduct lab exec --name NAME HOST -- viaduct perf BENCHES <side args>`. */
static void side_argv(char **v, size_t cap, char store[][32], const struct msg_args *a, const char *host,
		      int server, enum vd__msg_path p)
{
	const struct vd__msg_side *s = &a->side;
	const char *self = vd__cli_self();
	size_t n = 0;
	int k = 0;

#define ARG(x) (n + 1 < cap ? (void)(v[n++] = (char *)(x)) : (void)0)
#define NUM(x) (snprintf(store[k], 32, "%u", (unsigned)(x)), ARG(store[k++]))
	ARG(self), ARG("lab"), ARG("exec"), ARG("--name"), ARG(a->lab), ARG(host), ARG("--"), ARG(self);
	ARG("perf"), ARG(a->bench_arg), ARG("--json"), ARG("--reps"), ARG("1"), ARG("--path"), ARG(path_names[p]);
	if (a->size_arg)
		ARG("--size"), ARG(a->size_arg);
	ARG("--queue"), NUM(s->queue), ARG("--iters"), NUM(s->iters), ARG("--warmup"), NUM(s->warmup);
	ARG("--rx-mode"), ARG(s->rx_direct ? "direct" : "steered");
	ARG("--pingpong-ms"), NUM(s->pingpong_ms), ARG("--duration-ms"), NUM(s->duration_ms);
	ARG("--window"), NUM(s->window), ARG("--idle-ms"), NUM(s->idle_ms);
	/* Two busy-polling sides: one CPU each where there are two. */
	if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
		ARG("--cpu"), ARG(server ? "1" : "0");
	if (server) {
		ARG("--server"), ARG("--ref-iface"), ARG("ref0"), ARG("--iface"), ARG("eth0");
	} else {
		ARG("--client"), ARG("10.99.0.2"), ARG("--ref-addr"), ARG("10.98.0.2");
		ARG("--ref-iface"), ARG("ref0"), ARG("--iface"), ARG("eth0");
	}
#undef NUM
#undef ARG
	v[n] = NULL;
}

static int run_lab(struct msg_args *a, struct sink *sk, struct vd__perf_merge *m)
{
	int fails = 0, have_fi = vd__msg_fi_available();

	for (unsigned i = 0; i < a->npaths; i++)
		if (a->paths[i] >= VD_MSG_FI_SHM && path_applies(&a->side, a->paths[i]) && !have_fi)
			note_skipped(sk, a->paths[i], "fi_pingpong (libfabric-bin) not installed");
	for (unsigned r = 0; r < a->reps && !vd__perf_stop; r++)
		for (unsigned i = 0; i < a->npaths && !vd__perf_stop; i++) {
			enum vd__msg_path p = a->paths[i];
			char *sv[72], *cv[72], sstore[16][32], cstore[16][32];

			if (!path_applies(&a->side, p))
				continue;
			/* fi_pingpong keeps no percentiles and takes long to set up: one round is its figure. */
			if (p >= VD_MSG_FI_SHM && (r > 0 || !have_fi || !a->side.fi_first_round))
				continue;
			/* Shared memory needs both sides on one host. */
			side_argv(sv, 72, sstore, a, p == VD_MSG_FI_SHM || p == VD_MSG_VIADUCT_SHM ? "h0" : "h1", 1, p);
			side_argv(cv, 72, cstore, a, "h0", 0, p);
			if (vd__perf_lab_pair(sv, cv, m) < 0) {
				fprintf(stderr, "viaduct perf: %s failed on lab %s (round %u)\n", path_names[p], a->lab,
					r + 1);
				fails++;
			}
		}
	fails += finish(sk, m, a->plot);
	return fails ? 1 : 0;
}

int vd__perf_msg_main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct msg_args a;
	struct sink sk = { 0 };
	int r = parse_args(argc, argv, &a);

	if (r)
		return r > 0 ? 0 : 2;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (a.side.server)
		return run_side(&a, &sk, NULL);
	struct vd__perf_merge *m = vd__perf_merge_new();

	sk.json = a.json;
	sk.table = vd__msg_table_new();
	if (!m || !sk.table) {
		vd__perf_merge_free(m);
		vd__msg_table_free(sk.table);
		return 1;
	}
	r = a.lab ? run_lab(&a, &sk, m) : run_side(&a, &sk, m);
	vd__perf_merge_free(m);
	vd__msg_table_free(sk.table);
	return r;
}
