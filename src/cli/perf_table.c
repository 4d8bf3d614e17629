/* SPDX-License-Identifier: MIT */
/*
 * The human table of `viaduct perf frames` results: one row per (bench, size), one column per path, then
 * the ratios the project's targets are stated in (issue 2, item 5), each next to its target:
 *   ping-pong p50:  direct/bare <= 1.25, steered/bare <= 1.8, direct/kernel <= 0.5, steered/kernel <= 0.5
 *   stream Mpps:    direct/bare >= 0.9, steered/bare >= 0.9
 * Input: our JSON lines (flat objects, no nesting); lines that do not parse are ignored.
 */
#include <stdlib.h>
#include <string.h>

#include "perf.h"

#define MAX_ROWS 64

struct row {
	int stream;  /* 0: pingpong (p50/p99), 1: stream (mpps/gbps) */
	unsigned size;
	int have[VD_PERF_NPATHS];
	double v[VD_PERF_NPATHS], v2[VD_PERF_NPATHS];
};

struct vd__perf_table {
	struct row rows[MAX_ROWS];
	unsigned n;
};

struct vd__perf_table *vd__perf_table_new(void)
{
	return calloc(1, sizeof(struct vd__perf_table));
}

void vd__perf_table_free(struct vd__perf_table *t)
{
	free(t);
}

/* Finds "key": in a flat JSON object; returns a pointer to the value (after blanks) or NULL. */
static const char *json_val(const char *line, const char *key)
{
	char pat[40];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	for (p = strstr(line, pat); p; p = strstr(p + 1, pat)) {
		const char *q = p + strlen(pat);

		while (*q == ' ')
			q++;
		if (*q != ':')
			continue;
		q++;
		while (*q == ' ')
			q++;
		return q;
	}
	return NULL;
}

int vd__perf_json_num(const char *line, const char *key, double *out)
{
	const char *v = json_val(line, key);
	char *end;

	if (!v)
		return -1;
	*out = strtod(v, &end);
	return end == v ? -1 : 0;
}

static int json_str_is(const char *line, const char *key, const char *want)
{
	const char *v = json_val(line, key);
	size_t n = strlen(want);

	return v && v[0] == '"' && !strncmp(v + 1, want, n) && v[1 + n] == '"';
}

void vd__perf_table_add_line(struct vd__perf_table *t, const char *line)
{
	int stream = json_str_is(line, "bench", "stream");
	double size, a, b;
	unsigned p, i;

	if (!stream && !json_str_is(line, "bench", "pingpong"))
		return;
	for (p = 0; p < VD_PERF_NPATHS; p++)
		if (json_str_is(line, "path", vd__perf_path_name(p)))
			break;
	if (p == VD_PERF_NPATHS || vd__perf_json_num(line, "size", &size) < 0 ||
	    vd__perf_json_num(line, stream ? "mpps" : "p50_us", &a) < 0 || vd__perf_json_num(line, stream ? "gbps" : "p99_us", &b) < 0)
		return;
	for (i = 0; i < t->n; i++)
		if (t->rows[i].stream == stream && t->rows[i].size == (unsigned)size)
			break;
	if (i == t->n) {
		if (t->n == MAX_ROWS)
			return;
		memset(&t->rows[i], 0, sizeof(t->rows[i]));
		t->rows[i].stream = stream;
		t->rows[i].size = (unsigned)size;
		t->n++;
	}
	t->rows[i].have[p] = 1;
	t->rows[i].v[p] = a;
	t->rows[i].v2[p] = b;
}

static const enum vd__perf_path columns[] = { VD_PERF_VIADUCT_DIRECT, VD_PERF_VIADUCT_STEERED, VD_PERF_VIADUCT_UDP,
					     VD_PERF_KERNEL_UDP, VD_PERF_BARE_AFXDP };

struct ratio {
	const char *label;
	enum vd__perf_path num, den;
	double target;
};

static const struct ratio pp_ratios[] = {
	{ "direct/bare", VD_PERF_VIADUCT_DIRECT, VD_PERF_BARE_AFXDP, 1.25 },
	{ "steered/bare", VD_PERF_VIADUCT_STEERED, VD_PERF_BARE_AFXDP, 1.8 },
	{ "direct/kernel", VD_PERF_VIADUCT_DIRECT, VD_PERF_KERNEL_UDP, 0.5 },
	{ "steered/kernel", VD_PERF_VIADUCT_STEERED, VD_PERF_KERNEL_UDP, 0.5 },
};
static const struct ratio st_ratios[] = {
	{ "direct/bare", VD_PERF_VIADUCT_DIRECT, VD_PERF_BARE_AFXDP, 0.9 },
	{ "steered/bare", VD_PERF_VIADUCT_STEERED, VD_PERF_BARE_AFXDP, 0.9 },
};

static void print_rows(const struct vd__perf_table *t, FILE *out, int stream)
{
	const struct ratio *ratios = stream ? st_ratios : pp_ratios;
	unsigned nratios = stream ? 2 : 4;
	int any = 0;

	for (unsigned i = 0; i < t->n; i++)
		any |= t->rows[i].stream == stream;
	if (!any)
		return;
	fprintf(out, "\n%s\n%-6s", stream ? "stream: receiver's Mpps (payload Gbit/s)"
					   : "ping-pong: half round trip p50 us (p99)",
		"size");
	for (unsigned c = 0; c < sizeof(columns) / sizeof(columns[0]); c++)
		fprintf(out, " %18s", vd__perf_path_name(columns[c]));
	fprintf(out, "\n");
	for (unsigned i = 0; i < t->n; i++) {
		const struct row *r = &t->rows[i];

		if (r->stream != stream)
			continue;
		fprintf(out, "%-6u", r->size);
		for (unsigned c = 0; c < sizeof(columns) / sizeof(columns[0]); c++) {
			char cell[40];

			if (!r->have[columns[c]])
				snprintf(cell, sizeof(cell), "-");
			else
				snprintf(cell, sizeof(cell), stream ? "%.3f (%.2f)" : "%.2f (%.2f)",
					 r->v[columns[c]], r->v2[columns[c]]);
			fprintf(out, " %18s", cell);
		}
		fprintf(out, "\n");
	}
	fprintf(out, "%-6s", "ratio");
	for (unsigned k = 0; k < nratios; k++)
		fprintf(out, " %22s", ratios[k].label);
	fprintf(out, "\n");
	for (unsigned i = 0; i < t->n; i++) {
		const struct row *r = &t->rows[i];

		if (r->stream != stream)
			continue;
		fprintf(out, "%-6u", r->size);
		for (unsigned k = 0; k < nratios; k++) {
			const struct ratio *q = &ratios[k];
			char cell[40];

			if (!r->have[q->num] || !r->have[q->den] || r->v[q->den] <= 0) {
				snprintf(cell, sizeof(cell), "-");
			} else {
				double x = r->v[q->num] / r->v[q->den];
				int ok = stream ? x >= q->target : x <= q->target;

				snprintf(cell, sizeof(cell), "%.2f (%s%.2f %s)", x, stream ? ">=" : "<=", q->target,
					 ok ? "ok" : "MISS");
			}
			fprintf(out, " %22s", cell);
		}
		fprintf(out, "\n");
	}
}

void vd__perf_table_print(const struct vd__perf_table *t, FILE *out)
{
	if (!t->n) {
		fprintf(out, "no results\n");
		return;
	}
	print_rows(t, out, 0);
	print_rows(t, out, 1);
}

/* ---- merging rounds ------------------------------------------------------------------------------- */

/*
 * `--lab` runs R rounds of every path, one repetition each, so that the slow phases of a shared machine
 * fall on all paths alike; this folds the rounds' lines into one line per (bench, path, size): string
 * fields as they were, "reps" the number of rounds, every other number the median over the rounds.
 */
#define MERGE_MAX_KEYS 16
#define MERGE_MAX_LINES 256
#define MERGE_MAX_ROUNDS 101

struct merge_line {
	char bench[16], path[24];
	unsigned size, rounds, nkeys;
	char key[MERGE_MAX_KEYS][16];
	double val[MERGE_MAX_KEYS][MERGE_MAX_ROUNDS];
};

struct vd__perf_merge {
	struct merge_line lines[MERGE_MAX_LINES];
	unsigned n;
};

struct vd__perf_merge *vd__perf_merge_new(void)
{
	return calloc(1, sizeof(struct vd__perf_merge));
}

void vd__perf_merge_free(struct vd__perf_merge *m)
{
	free(m);
}

/* Copies a string value of line's key into out; 0 or -1. */
int vd__perf_json_str(const char *line, const char *key, char *out, size_t cap)
{
	const char *v = json_val(line, key), *end;
	if (!v || *v != '"' || !(end = strchr(v + 1, '"')) || (size_t)(end - v - 1) >= cap)
		return -1;
	memcpy(out, v + 1, (size_t)(end - v - 1));
	out[end - v - 1] = '\0';
	return 0;
}

void vd__perf_merge_add(struct vd__perf_merge *m, const char *line)
{
	char bench[16], path[24];
	double size;
	if (vd__perf_json_str(line, "bench", bench, sizeof(bench)) || vd__perf_json_str(line, "path", path, sizeof(path)) ||
	    vd__perf_json_num(line, "size", &size) < 0)
		return;
	struct merge_line *l = NULL;
	for (unsigned i = 0; i < m->n && !l; i++)
		if (!strcmp(m->lines[i].bench, bench) && !strcmp(m->lines[i].path, path) &&
		    m->lines[i].size == (unsigned)size)
			l = &m->lines[i];
	if (!l) {
		if (m->n == MERGE_MAX_LINES)
			return;
		l = &m->lines[m->n++];
		memset(l, 0, sizeof(*l));
		strcpy(l->bench, bench);
		strcpy(l->path, path);
		l->size = (unsigned)size;
	}
	if (l->rounds == MERGE_MAX_ROUNDS)
		return;
	/* Walk the flat object: every "key": number other than size and reps. */
	for (const char *p = strchr(line, '"'); p; p = strchr(p, '"')) {
		const char *end = strchr(p + 1, '"');
		if (!end)
			break;
		char key[16];
		size_t klen = (size_t)(end - p - 1);
		const char *v = end + 1;
		while (*v == ' ')
			v++;
		if (*v != ':' || klen == 0 || klen >= sizeof(key)) {
			p = end + 1;
			continue;
		}
		memcpy(key, p + 1, klen);
		key[klen] = '\0';
		double x;
		char *num_end;
		for (v++; *v == ' '; v++)
			;
		x = strtod(v, &num_end);
		p = num_end > v ? num_end : v;
		if (num_end == v || !strcmp(key, "size") || !strcmp(key, "reps"))
			continue;
		unsigned k = 0;
		while (k < l->nkeys && strcmp(l->key[k], key))
			k++;
		if (k == l->nkeys) {
			if (k == MERGE_MAX_KEYS)
				continue;
			strcpy(l->key[l->nkeys++], key);
		}
		l->val[k][l->rounds] = x;
	}
	l->rounds++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void vd__perf_merge_emit(struct vd__perf_merge *m, void (*emit)(void *ctx, const char *line), void *ctx)
{
	for (unsigned i = 0; i < m->n; i++) {
		struct merge_line *l = &m->lines[i];
		char buf[1024];
		int n = snprintf(buf, sizeof(buf), "{\"bench\":\"%s\",\"path\":\"%s\",\"size\":%u", l->bench, l->path,
				 l->size);
		for (unsigned k = 0; k < l->nkeys && n > 0 && (size_t)n < sizeof(buf); k++) {
			qsort(l->val[k], l->rounds, sizeof(double), cmp_double);
			double med = l->rounds % 2 ? l->val[k][l->rounds / 2]
						   : (l->val[k][l->rounds / 2 - 1] + l->val[k][l->rounds / 2]) / 2;
			n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"%s\":%.4g", l->key[k], med);
		}
		if (n > 0 && (size_t)n < sizeof(buf)) {
			snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"reps\":%u}", l->rounds);
			emit(ctx, buf);
		}
	}
}
