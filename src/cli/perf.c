/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf frames`: frame ping-pong and streaming over viaduct, against kernel UDP and bare AF_XDP.
 *
 *   --server / --client ADDR   one side each (real hosts): both sides walk the same --path list in order,
 *                              one path at a time (bare-afxdp attaches an XDP program that must be gone
 *                              before kernel-udp runs).
 *   --lab NAME                 both sides on a lab: for each path, a server in NAME-h1 and a client in
 *                              NAME-h0, each started through `viaduct lab exec` (so viaduct paths find the
 *                              host's viaductd). kernel-udp, viaduct-udp and bare-afxdp use the reference
 *                              link ref0 (10.98.0.0/24, no viaductd), viaduct-direct/steered use eth0.
 * `viaduct perf table FILE` prints the table of a file of JSON results.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "perf.h"
#include "perf_sock.h"
#include "perf_msg.h"

volatile sig_atomic_t vd__perf_stop;

static const char *const path_names[VD_PERF_NPATHS] = {
	[VD_PERF_KERNEL_UDP] = "kernel-udp",
	[VD_PERF_VIADUCT_UDP] = "viaduct-udp",
	[VD_PERF_BARE_AFXDP] = "bare-afxdp",
	[VD_PERF_VIADUCT_DIRECT] = "viaduct-direct",
	[VD_PERF_VIADUCT_STEERED] = "viaduct-steered",
};

const char *vd__perf_path_name(enum vd__perf_path p)
{
	return p < VD_PERF_NPATHS ? path_names[p] : "?";
}

uint16_t vd__perf_path_port(enum vd__perf_path p)
{
	return (uint16_t)(27801 + p);
}

int vd__perf_path_is_ref(enum vd__perf_path p)
{
	return p == VD_PERF_KERNEL_UDP || p == VD_PERF_VIADUCT_UDP || p == VD_PERF_BARE_AFXDP;
}

struct perf_args {
	const char *lab, *client, *ref_addr, *iface, *ref_iface;
	int server, queue, cpu;
	enum vd__perf_path paths[VD_PERF_NPATHS];
	unsigned npaths;
	unsigned sizes[16];
	unsigned nsizes;
	const char *path_arg, *size_arg; /* as given, passed on to the lab's sides */
	struct vd__perf_opts o;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct perf frames [--lab NAME | --server | --client ADDR] [options]\n"
		"       viaduct perf table FILE\n"
		"       viaduct perf pingpong|bw|rate[,...] --help   (messaging benchmarks)\n"
		"       viaduct perf sockets --help                   (programs under `viaduct run` against the kernel)\n"
		"options:\n"
		"  --path P[,P...]    kernel-udp, viaduct-udp, bare-afxdp, viaduct-direct, viaduct-steered (default all)\n"
		"  --size S[,S...]    Ethernet frame sizes without FCS, >= 64 (default 64,1500)\n"
		"  --iters N          ping-pong round trips per repetition (default 20000), --warmup N (default 2000)\n"
		"  --reps R           repetitions; the median is reported (default 3); with --lab, R rounds that\n"
		"                     each run every path once, so the machine's slow phases hit all paths alike\n"
		"  --duration-ms D    stream time per repetition (default 500), --burst B frames per send (default 32)\n"
		"  --ref-addr ADDR    client: server address on the reference link (default: ADDR)\n"
		"  --iface IF         viaduct interface (default: the daemon's first)\n"
		"  --ref-iface IF     reference interface (server default ref0; client: the route to --ref-addr)\n"
		"  --queue Q          queue of bare-afxdp and viaduct-direct, the same on both sides (default 1)\n"
		"  --cpu C            pin this side to CPU C\n"
		"  --idle-ms MS       server: leave a path after MS without frames (default 10000)\n"
		"  --json             JSON lines (one per result) instead of a table\n"
		"Half round trip p50/p99 in us for ping-pong; receiver's Mpps, payload Gbit/s (\"gbps\"), frame Gbit/s\n"
		"(\"frame_gbps\") and loss for streams.\n");
}

static int parse_list(const char *arg, int (*one)(const char *tok, struct perf_args *a), struct perf_args *a)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (one(t, a) < 0)
			return -1;
	return 0;
}

static int add_path(const char *tok, struct perf_args *a)
{
	if (!strcmp(tok, "all")) {
		for (unsigned p = 0; p < VD_PERF_NPATHS; p++)
			add_path(path_names[p], a);
		return 0;
	}
	for (unsigned p = 0; p < VD_PERF_NPATHS; p++)
		if (!strcmp(tok, path_names[p])) {
			for (unsigned i = 0; i < a->npaths; i++)
				if (a->paths[i] == p)
					return 0;
			a->paths[a->npaths++] = (enum vd__perf_path)p;
			return 0;
		}
	fprintf(stderr, "viaduct perf: unknown path '%s'\n", tok);
	return -1;
}

static int add_size(const char *tok, struct perf_args *a)
{
	char *end;
	unsigned long v = strtoul(tok, &end, 10);

	if (*end || v < VD_PERF_MIN_SIZE || v > VD_PERF_MAX_PAYLOAD + VD_PERF_HDR_OVERHEAD ||
	    a->nsizes == sizeof(a->sizes) / sizeof(a->sizes[0])) {
		fprintf(stderr, "viaduct perf: bad size '%s' (%u..%u, at most 16 sizes)\n", tok, VD_PERF_MIN_SIZE,
			VD_PERF_MAX_PAYLOAD + VD_PERF_HDR_OVERHEAD);
		return -1;
	}
	a->sizes[a->nsizes++] = (unsigned)v;
	return 0;
}

int vd__perf_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v < min || v > max) {
		fprintf(stderr, "viaduct perf: bad number '%s' (%u..%u)\n", s, min, max);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned *out)
{
	return vd__perf_parse_uint(s, min, 1000000000u, out);
}

enum { O_LAB = 256, O_SERVER, O_CLIENT, O_PATH, O_SIZE, O_ITERS, O_WARMUP, O_REPS, O_DURATION, O_BURST,
       O_REFADDR, O_IFACE, O_REFIFACE, O_QUEUE, O_CPU, O_IDLE, O_JSON, O_HELP };

static int parse_args(int argc, char **argv, struct perf_args *a)
{
	static const struct option opts[] = {
		{ "lab", required_argument, NULL, O_LAB },         { "server", no_argument, NULL, O_SERVER },
		{ "client", required_argument, NULL, O_CLIENT },   { "path", required_argument, NULL, O_PATH },
		{ "size", required_argument, NULL, O_SIZE },       { "iters", required_argument, NULL, O_ITERS },
		{ "warmup", required_argument, NULL, O_WARMUP },   { "reps", required_argument, NULL, O_REPS },
		{ "duration-ms", required_argument, NULL, O_DURATION },
		{ "burst", required_argument, NULL, O_BURST },     { "ref-addr", required_argument, NULL, O_REFADDR },
		{ "iface", required_argument, NULL, O_IFACE },     { "ref-iface", required_argument, NULL, O_REFIFACE },
		{ "queue", required_argument, NULL, O_QUEUE },     { "cpu", required_argument, NULL, O_CPU },
		{ "idle-ms", required_argument, NULL, O_IDLE },    { "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP },             { 0 },
	};
	unsigned u = 0;
	int c;

	memset(a, 0, sizeof(*a));
	a->queue = 1;
	a->cpu = -1;
	a->o = (struct vd__perf_opts){ .iters = 20000, .warmup = 2000, .reps = 3, .duration_ms = 500,
				      .max_frames = 50000000, .burst = 32, .idle_ms = 10000 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case O_LAB: a->lab = optarg; break;
		case O_SERVER: a->server = 1; break;
		case O_CLIENT: a->client = optarg; break;
		case O_PATH: a->path_arg = optarg; bad = parse_list(optarg, add_path, a); break;
		case O_SIZE: a->size_arg = optarg; bad = parse_list(optarg, add_size, a); break;
		case O_ITERS: bad = parse_uint(optarg, 1, &a->o.iters); break;
		case O_WARMUP: bad = parse_uint(optarg, 0, &a->o.warmup); break;
		case O_REPS: bad = parse_uint(optarg, 1, &a->o.reps); bad |= a->o.reps > 100; break;
		case O_DURATION: bad = parse_uint(optarg, 1, &a->o.duration_ms); break;
		case O_BURST:
			bad = parse_uint(optarg, 1, &a->o.burst);
			bad |= a->o.burst > VD_PERF_MAX_BURST;
			break;
		case O_REFADDR: a->ref_addr = optarg; break;
		case O_IFACE: a->iface = optarg; break;
		case O_REFIFACE: a->ref_iface = optarg; break;
		case O_QUEUE: bad = parse_uint(optarg, 0, &u); a->queue = (int)u; break;
		case O_CPU: bad = parse_uint(optarg, 0, &u); a->cpu = (int)u; break;
		case O_IDLE: bad = parse_uint(optarg, 1, &a->o.idle_ms); break;
		case O_JSON: a->o.json = 1; break;
		case O_HELP: usage(stdout); return 1;
		default: bad = 1; break;
		}
		if (bad) {
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc || (!!a->lab + a->server + !!a->client) != 1) {
		fprintf(stderr, "viaduct perf frames: give exactly one of --lab NAME, --server, --client ADDR\n");
		usage(stderr);
		return -1;
	}
	if (!a->npaths)
		add_path("all", a);
	if (!a->nsizes) {
		add_size("64", a);
		add_size("1500", a);
	}
	return 0;
}

static void on_signal(int sig)
{
	vd__perf_stop = 1;
}

static void setup_process(const struct perf_args *a)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (a->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(a->cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			fprintf(stderr, "viaduct perf: cannot pin to CPU %d: %s\n", a->cpu, strerror(errno));
	}
}

static int open_path(struct vd__perf_tp **tp, const struct perf_args *a, enum vd__perf_path p)
{
	char ref_if[32];
	struct vd__perf_where w = {
		.server = a->server,
		.queue = a->queue,
		.port = vd__perf_path_port(p),
	};

	if (vd__perf_path_is_ref(p)) {
		w.peer_ip = a->ref_addr ? a->ref_addr : a->client;
		w.iface = a->ref_iface;
		if (!w.iface && a->server)
			w.iface = "ref0";
		if (!w.iface && vd__perf_route_src(w.peer_ip, NULL, 0, ref_if, sizeof(ref_if)) == 0)
			w.iface = ref_if;
	} else {
		w.peer_ip = a->client;
		w.iface = a->iface;
	}
	switch (p) {
	case VD_PERF_KERNEL_UDP:
		return vd__perf_kernel_open(tp, &w);
	case VD_PERF_BARE_AFXDP:
		return vd__perf_bare_open(tp, &w);
	default:
		return vd__perf_viaduct_open(tp, &w, p);
	}
}

/* Prints JSON lines, or collects them for a table printed at the end. */
struct sink {
	FILE *out;
	struct vd__perf_table *table;
	char *mem;
	size_t memlen;
};

static int sink_open(struct sink *s, int json)
{
	memset(s, 0, sizeof(*s));
	if (json) {
		s->out = stdout;
		return 0;
	}
	s->out = open_memstream(&s->mem, &s->memlen);
	s->table = vd__perf_table_new();
	return s->out && s->table ? 0 : -ENOMEM;
}

/* One line without its newline. */
static void sink_line(struct sink *s, const char *line)
{
	if (s->table) {
		vd__perf_table_add_line(s->table, line);
	} else {
		fprintf(s->out, "%s\n", line);
		fflush(s->out);
	}
}

static void sink_close(struct sink *s)
{
	if (!s->table)
		return;
	fclose(s->out);
	for (char *save = NULL, *l = strtok_r(s->mem, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		vd__perf_table_add_line(s->table, l);
	vd__perf_table_print(s->table, stdout);
	vd__perf_table_free(s->table);
	free(s->mem);
}

/* One side, every path in order. */
static int run_side(const struct perf_args *a)
{
	struct sink s;
	int fails = 0;

	if (sink_open(&s, a->o.json || a->server) < 0)
		return 1;
	for (unsigned i = 0; i < a->npaths && !vd__perf_stop; i++) {
		enum vd__perf_path p = a->paths[i];
		struct vd__perf_tp *tp;
		int r = open_path(&tp, a, p);

		if (r < 0) {
			fprintf(stderr, "viaduct perf: %s: cannot open: %s\n", vd__perf_path_name(p), strerror(-r));
			fails++;
			continue;
		}
		if (a->server)
			r = vd__perf_server_run(tp, &a->o);
		else
			r = vd__perf_client_run(tp, p, a->sizes, a->nsizes, &a->o, s.out);
		tp->ops->close(tp);
		if (r < 0) {
			if (a->server)
				fprintf(stderr, "viaduct perf: %s server: %s\n", vd__perf_path_name(p), strerror(-r));
			fails++;
		}
	}
	sink_close(&s);
	return fails ? 1 : 0;
}

/* --- lab mode ------------------------------------------------------------------------------------- */

static pid_t spawn(char **argv, int out_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (out_fd >= 0)
			dup2(out_fd, STDOUT_FILENO);
		execv(argv[0], argv);
		fprintf(stderr, "viaduct perf: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* argv of `viaduct lab exec --name NAME HOST -- viaduct perf frames <side args> <common args>`. */
static void side_argv(char **v, size_t cap, char store[][32], const struct perf_args *a, const char *host,
		      int server, const char *path, unsigned reps)
{
	const char *self = vd__cli_self();
	size_t n = 0;
	int k = 0;

#define ARG(x) (n + 1 < cap ? (void)(v[n++] = (char *)(x)) : (void)0)
#define NUM(x) (snprintf(store[k], 32, "%u", (unsigned)(x)), ARG(store[k++]))
	ARG(self), ARG("lab"), ARG("exec"), ARG("--name"), ARG(a->lab), ARG(host), ARG("--"), ARG(self);
	ARG("perf"), ARG("frames"), ARG("--json"), ARG("--path"), ARG(path);
	if (a->size_arg)
		ARG("--size"), ARG(a->size_arg);
	ARG("--queue"), NUM(a->queue), ARG("--iters"), NUM(a->o.iters), ARG("--warmup"), NUM(a->o.warmup);
	ARG("--reps"), NUM(reps), ARG("--duration-ms"), NUM(a->o.duration_ms), ARG("--burst"), NUM(a->o.burst);
	ARG("--idle-ms"), NUM(a->o.idle_ms);
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

/* Waits for pid up to timeout_ms; kills it (it is the benchmark itself: lab exec execs in place). */
static int reap(pid_t pid, int timeout_ms)
{
	int st = 0;

	for (int i = 0; i < timeout_ms / 10; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		if (r < 0)
			return 1;
		usleep(10000);
	}
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	return 128;
}

static int run_lab_path(const struct perf_args *a, enum vd__perf_path p, struct vd__perf_merge *m)
{
	char *sv[64], *cv[64], sstore[12][32], cstore[12][32];
	const char *name = vd__perf_path_name(p);

	side_argv(sv, 64, sstore, a, "h1", 1, name, 1);
	side_argv(cv, 64, cstore, a, "h0", 0, name, 1);
	return vd__perf_lab_pair(sv, cv, m);
}

int vd__perf_lab_pair(char **sv, char **cv, struct vd__perf_merge *m)
{
	int fds[2], st = 0, rc;
	pid_t server, client;

	if (pipe(fds) < 0)
		return -errno;
	fflush(stdout);
	server = spawn(sv, -1);
	client = spawn(cv, fds[1]);
	close(fds[1]);
	if (server < 0 || client < 0) {
		close(fds[0]);
		return -EAGAIN;
	}
	/* The client's JSON lines, as they come. A server that fails (say, it cannot attach its XDP program)
	 * ends the client's wait for it early. */
	char buf[4096];
	size_t have = 0;
	int server_rc = -1;

	for (;;) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		int pr = poll(&pfd, 1, 100);

		if (pr < 0 && errno != EINTR)
			break;
		if (pr > 0) {
			ssize_t n = read(fds[0], buf + have, sizeof(buf) - 1 - have);

			if (n <= 0)
				break; /* the client closed its stdout: it is exiting */
			have += (size_t)n;
			buf[have] = '\0';
			char *start = buf, *nl;

			while ((nl = strchr(start, '\n'))) {
				*nl = '\0';
				vd__perf_merge_add(m, start);
				start = nl + 1;
			}
			have -= (size_t)(start - buf);
			memmove(buf, start, have);
			if (have == sizeof(buf) - 1)
				have = 0; /* a line this long is not ours: drop it */
		}
		if (server_rc < 0 && waitpid(server, &st, WNOHANG) == server) {
			server_rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			if (server_rc != 0)
				kill(client, SIGTERM);
		}
		if (vd__perf_stop) {
			kill(client, SIGTERM);
			kill(server, SIGTERM);
		}
	}
	close(fds[0]);
	waitpid(client, &st, 0);
	rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	/* The server leaves when the client said quit, or after its idle time. */
	if (server_rc < 0)
		server_rc = reap(server, 3000);
	if (server_rc != 0)
		rc = rc ? rc : 1;
	return rc ? -EIO : 0;
}

static void emit_to_sink(void *ctx, const char *line)
{
	sink_line(ctx, line);
}

/*
 * --reps rounds, each running every path once with one repetition: the machine's slow phases (a shared VM
 * varies by tens of percent from second to second) then hit every path alike, and the ratios of the
 * medians compare like with like.
 */
static int run_lab(const struct perf_args *a)
{
	struct vd__perf_merge *m = vd__perf_merge_new();
	struct sink s;
	int fails = 0;

	if (!m || sink_open(&s, a->o.json) < 0) {
		vd__perf_merge_free(m);
		return 1;
	}
	for (unsigned r = 0; r < a->o.reps && !vd__perf_stop; r++)
		for (unsigned i = 0; i < a->npaths && !vd__perf_stop; i++)
			if (run_lab_path(a, a->paths[i], m) < 0) {
				fprintf(stderr, "viaduct perf: %s failed on lab %s (round %u)\n",
					vd__perf_path_name(a->paths[i]), a->lab, r + 1);
				fails++;
			}
	vd__perf_merge_emit(m, emit_to_sink, &s);
	sink_close(&s);
	vd__perf_merge_free(m);
	return fails ? 1 : 0;
}

static int cmd_table(int argc, char **argv)
{
	struct vd__perf_table *t;
	char line[1024];
	FILE *f;

	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	f = strcmp(argv[1], "-") ? fopen(argv[1], "r") : stdin;
	if (!f) {
		fprintf(stderr, "viaduct perf table: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	t = vd__perf_table_new();
	/* Messaging results (perf pingpong|bw|rate, which have "mmsgs") get their own table. */
	struct vd__msg_table *mt = vd__msg_table_new();
	unsigned nframes = 0, nmsg = 0;

	if (!t || !mt) {
		vd__perf_table_free(t);
		vd__msg_table_free(mt);
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "\"mmsgs\"")) {
			vd__msg_table_add(mt, line);
			nmsg++;
		} else {
			vd__perf_table_add_line(t, line);
			nframes++;
		}
	}
	if (f != stdin)
		fclose(f);
	if (nframes || !nmsg)
		vd__perf_table_print(t, stdout);
	if (nmsg)
		vd__msg_table_print(mt, stdout);
	vd__perf_table_free(t);
	vd__msg_table_free(mt);
	return 0;
}

int vd__cli_perf(int argc, char **argv)
{
	struct perf_args a;
	int r;

	/* argv[0] is "perf". */
	if (argc >= 2 && !strcmp(argv[1], "table"))
		return cmd_table(argc - 1, argv + 1);
	if (argc >= 2 && (!strcmp(argv[1], "sockets") || !strcmp(argv[1], "conn-server") ||
			  !strcmp(argv[1], "conn-client"))) {
		/* Their loops check vd__perf_stop: ^C or SIGTERM ends them cleanly (servers close, children stop). */
		struct sigaction sa = { .sa_handler = on_signal };

		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		if (!strcmp(argv[1], "sockets"))
			return vd__perf_sock_main(argc - 1, argv + 1);
		return vd__perf_conn_main(argc - 1, argv + 1); /* the sides of `perf sockets --bench connrate` */
	}
	if (argc >= 2 && vd__perf_msg_is_cmd(argv[1]))
		return vd__perf_msg_main(argc - 1, argv + 1); /* pingpong|bw|rate: perf_msg.c */
	if (argc < 2 || strcmp(argv[1], "frames")) {
		usage(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
		return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	r = parse_args(argc - 1, argv + 1, &a);
	if (r)
		return r > 0 ? 0 : 2;
	if (a.lab) {
		/* The sides are other processes: this one only waits, but still must stop them on ^C. */
		struct sigaction sa = { .sa_handler = on_signal };

		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		return run_lab(&a);
	}
	setup_process(&a);
	return run_side(&a);
}
