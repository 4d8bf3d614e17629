/* SPDX-License-Identifier: MIT */
/*
 * Results of the messaging benchmarks: the human table (one block per bench: a row per size, a column per
 * path), the ratios the targets are stated in (issue 3, item 6) next to their targets, and the
 * --plot figure (latency and bandwidth against message size).
 *   8 B half round trip:  viaduct-xdp <= 1.25 x bare-afxdp and <= 0.33 x kernel-udp;
 *                         same host: viaduct-shm <= fi-shm (libfabric's shm provider)
 *   1 MiB bandwidth:      viaduct-xdp >= 0.9 x bare-afxdp frame throughput (at the MTU) and >= kernel-tcp
 *   8 B message rate:     viaduct-xdp >= 5 x kernel-udp
 * Input: our JSON lines; fields that are null or missing are NaN here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "perf_msg.h"
#include "perf_plot.h"

#define MAX_ENTRIES 512

struct entry {
	enum vd__msg_bench bench;
	enum vd__msg_path path;
	unsigned size;
	double p50, p99, gbps, mmsgs;
};

struct vd__msg_table {
	struct entry e[MAX_ENTRIES];
	unsigned n;
};

struct vd__msg_table *vd__msg_table_new(void)
{
	return calloc(1, sizeof(struct vd__msg_table));
}

void vd__msg_table_free(struct vd__msg_table *t)
{
	free(t);
}

static double num(const char *line, const char *key)
{
	double v;

	return vd__perf_json_num(line, key, &v) == 0 ? v : NAN;
}

void vd__msg_table_add(struct vd__msg_table *t, const char *line)
{
	char bench[16], path[24];
	double size;
	unsigned b, p;

	if (t->n == MAX_ENTRIES || vd__perf_json_str(line, "bench", bench, sizeof(bench)) ||
	    vd__perf_json_str(line, "path", path, sizeof(path)) || vd__perf_json_num(line, "size", &size))
		return;
	for (b = 0; b < VD_MSG_NBENCH && strcmp(bench, vd__msg_bench_name((enum vd__msg_bench)b)); b++)
		;
	for (p = 0; p < VD_MSG_NPATHS && strcmp(path, vd__msg_path_name((enum vd__msg_path)p)); p++)
		;
	if (b == VD_MSG_NBENCH || p == VD_MSG_NPATHS)
		return;
	t->e[t->n++] = (struct entry){ (enum vd__msg_bench)b, (enum vd__msg_path)p, (unsigned)size,
				       num(line, "p50_us"), num(line, "p99_us"), num(line, "gbps"), num(line, "mmsgs") };
}

static const struct entry *find(const struct vd__msg_table *t, enum vd__msg_bench b, enum vd__msg_path p,
				long size)
{
	/* size < 0: any size (the references measured at one frame size). */
	for (unsigned i = 0; i < t->n; i++)
		if (t->e[i].bench == b && t->e[i].path == p && (size < 0 || t->e[i].size == (unsigned)size))
			return &t->e[i];
	return NULL;
}

static void size_str(unsigned v, char *buf, size_t cap)
{
	if (v >= 1048576 && v % 1048576 == 0)
		snprintf(buf, cap, "%uM", v / 1048576);
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(buf, cap, "%uK", v / 1024);
	else
		snprintf(buf, cap, "%u", v);
}

static int cmp_uint(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

static void print_bench(const struct vd__msg_table *t, FILE *out, enum vd__msg_bench b)
{
	static const char *const titles[VD_MSG_NBENCH] = {
		"ping-pong: half round trip p50 us (p99; fi-*: mean)",
		"bandwidth: Gbit/s of message payload (bare-afxdp, kernel-udp: frames at the MTU)",
		"message rate: million messages/s (bare-afxdp, kernel-udp: frames of max(64, size+42) B)",
	};
	unsigned sizes[MAX_ENTRIES], ns = 0;
	int cols[VD_MSG_NPATHS] = { 0 };

	for (unsigned i = 0; i < t->n; i++) {
		const struct entry *e = &t->e[i];
		unsigned k;

		if (e->bench != b)
			continue;
		cols[e->path] = 1;
		for (k = 0; k < ns && sizes[k] != e->size; k++)
			;
		if (k == ns)
			sizes[ns++] = e->size;
	}
	if (!ns)
		return;
	qsort(sizes, ns, sizeof(sizes[0]), cmp_uint);
	fprintf(out, "\n%s\n%-6s", titles[b], "size");
	for (unsigned p = 0; p < VD_MSG_NPATHS; p++)
		if (cols[p])
			fprintf(out, " %17s", vd__msg_path_name((enum vd__msg_path)p));
	fputc('\n', out);
	for (unsigned k = 0; k < ns; k++) {
		char sz[16];

		size_str(sizes[k], sz, sizeof(sz));
		fprintf(out, "%-6s", sz);
		for (unsigned p = 0; p < VD_MSG_NPATHS; p++) {
			if (!cols[p])
				continue;
			const struct entry *e = find(t, b, (enum vd__msg_path)p, sizes[k]);
			char cell[40] = "-";

			if (e && b == VD_MSG_PINGPONG && isfinite(e->p50))
				snprintf(cell, sizeof(cell), isfinite(e->p99) ? "%.2f (%.1f)" : "%.2f", e->p50, e->p99);
			else if (e && b == VD_MSG_BW && isfinite(e->gbps))
				snprintf(cell, sizeof(cell), "%.2f", e->gbps);
			else if (e && b == VD_MSG_RATE && isfinite(e->mmsgs))
				snprintf(cell, sizeof(cell), "%.3f", e->mmsgs);
			fprintf(out, " %17s", cell);
		}
		fputc('\n', out);
	}
}

/* One target line: value = num/den of the chosen field, compared with the target. */
static void target(FILE *out, const char *what, const struct entry *num, const struct entry *den, int field,
		   int at_least, double goal)
{
	double a = NAN, b = NAN;

	if (num && den) {
		a = field == 0 ? num->p50 : field == 1 ? num->gbps : num->mmsgs;
		b = field == 0 ? den->p50 : field == 1 ? den->gbps : den->mmsgs;
	}
	if (!isfinite(a) || !isfinite(b) || b <= 0) {
		fprintf(out, "  %-52s %8s   (target %s %.2f)  not measured\n", what, "-", at_least ? ">=" : "<=", goal);
		return;
	}
	double r = a / b;
	int ok = at_least ? r >= goal : r <= goal;

	fprintf(out, "  %-52s %8.2f   (target %s %.2f)  %s\n", what, r, at_least ? ">=" : "<=", goal,
		ok ? "ok" : "MISS");
}

void vd__msg_table_print(const struct vd__msg_table *t, FILE *out)
{
	if (!t->n) {
		fprintf(out, "no results\n");
		return;
	}
	for (unsigned b = 0; b < VD_MSG_NBENCH; b++)
		print_bench(t, out, (enum vd__msg_bench)b);
	fprintf(out, "\ntargets (issue 3, item 6), ratios of medians:\n");
	if (find(t, VD_MSG_PINGPONG, VD_MSG_VIADUCT_XDP, -1)) {
		const struct entry *x = find(t, VD_MSG_PINGPONG, VD_MSG_VIADUCT_XDP, 8);

		target(out, "8 B half round trip  viaduct-xdp / bare-afxdp", x,
		       find(t, VD_MSG_PINGPONG, VD_MSG_BARE_AFXDP, 8), 0, 0, 1.25);
		target(out, "8 B half round trip  viaduct-xdp / kernel-udp", x,
		       find(t, VD_MSG_PINGPONG, VD_MSG_KERNEL_UDP, 8), 0, 0, 0.33);
	}
	if (find(t, VD_MSG_BW, VD_MSG_VIADUCT_XDP, -1)) {
		const struct entry *x = find(t, VD_MSG_BW, VD_MSG_VIADUCT_XDP, 1048576);

		target(out, "1 MiB bandwidth  viaduct-xdp / bare-afxdp (MTU frames)", x,
		       find(t, VD_MSG_BW, VD_MSG_BARE_AFXDP, -1), 1, 1, 0.9);
		target(out, "1 MiB bandwidth  viaduct-xdp / kernel-tcp", x, find(t, VD_MSG_BW, VD_MSG_KERNEL_TCP, 1048576),
		       1, 1, 1.0);
	}
	if (find(t, VD_MSG_RATE, VD_MSG_VIADUCT_XDP, -1))
		target(out, "8 B message rate  viaduct-xdp / kernel-udp", find(t, VD_MSG_RATE, VD_MSG_VIADUCT_XDP, 8),
		       find(t, VD_MSG_RATE, VD_MSG_KERNEL_UDP, 8), 2, 1, 5.0);
	if (find(t, VD_MSG_PINGPONG, VD_MSG_VIADUCT_SHM, -1) || find(t, VD_MSG_PINGPONG, VD_MSG_FI_SHM, -1)) {
		/* fi_pingpong reports a mean, not a median: the ratio compares our p50 with its mean. */
		target(out, "8 B half round trip  viaduct-shm / fi-shm (its mean)",
		       find(t, VD_MSG_PINGPONG, VD_MSG_VIADUCT_SHM, 8), find(t, VD_MSG_PINGPONG, VD_MSG_FI_SHM, 8), 0, 0,
		       1.0);
	}
}

/* Latency (p50 half round trip) and bandwidth against message size, one series per path. */
int vd__msg_table_plot(const struct vd__msg_table *t, FILE *f)
{
	static struct vd__plot_series lat[VD_MSG_NPATHS], bw[VD_MSG_NPATHS];
	unsigned nl = 0, nb = 0;

	for (unsigned p = 0; p < VD_MSG_NPATHS; p++) {
		struct vd__plot_series *l = &lat[nl], *w = &bw[nb];

		memset(l, 0, sizeof(*l));
		memset(w, 0, sizeof(*w));
		l->name = w->name = vd__msg_path_name((enum vd__msg_path)p);
		for (unsigned i = 0; i < t->n; i++) {
			const struct entry *e = &t->e[i];

			if (e->path != p)
				continue;
			if (e->bench == VD_MSG_PINGPONG && isfinite(e->p50) && l->n < VD_PLOT_MAX_POINTS) {
				l->x[l->n] = e->size;
				l->y[l->n++] = e->p50;
			}
			if (e->bench == VD_MSG_BW && isfinite(e->gbps) && w->n < VD_PLOT_MAX_POINTS) {
				w->x[w->n] = e->size;
				w->y[w->n++] = e->gbps;
			}
		}
		nl += l->n > 0;
		nb += w->n > 0;
	}
	const struct vd__plot_panel panels[2] = {
		{ "Latency", "message size (bytes)", "half round trip p50 (us)", 1, lat, nl },
		{ "Bandwidth", "message size (bytes)", "Gbit/s", 0, bw, nb },
	};

	return vd__plot_svg(f, panels, 2);
}
