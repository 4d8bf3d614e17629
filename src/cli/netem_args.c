/* SPDX-License-Identifier: MIT */
/*
 * tc-netem(8) argument parser for the lab relay (see netem_args.h for the accepted syntax).
 *
 * Numbers are parsed by hand, not with strtod(): strtod would also take hex floats, "inf", "nan",
 * exponents and locale-dependent decimal points, none of which tc users mean. A number here is
 * DIGITS[.DIGITS], held as integer part and billionths, which is exact for every unit conversion below.
 */
#include "cli/netem_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define FIX_ONE 1000000000ull        /* fractions are held in billionths */
#define FIX_MAX_INT 1000000000000ull /* largest integer part (1e12: 60 s in ns fits, 1e12 * 1e9 does not
					overflow where it is used) */
#define MAX_WORDS 64
#define MAX_ARGS_LEN 1024

/* A decimal number: integer part and fraction in billionths (digits past the 9th dropped). */
struct fixed {
	uint64_t ip, fp;
};

/* Parses DIGITS[.DIGITS] at the start of s. Returns the first character after the number, or NULL if
 * there is no number or its integer part is above FIX_MAX_INT. */
static const char *parse_fixed(const char *s, struct fixed *x)
{
	uint64_t ip = 0, fp = 0, scale = FIX_ONE;
	const char *p = s;
	int digits = 0;

	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		ip = ip * 10 + (uint64_t)(*p - '0');
		if (ip > FIX_MAX_INT)
			return NULL;
	}
	if (*p == '.') {
		p++;
		for (; *p >= '0' && *p <= '9'; p++, digits++) {
			if (scale > 1) {
				scale /= 10;
				fp += (uint64_t)(*p - '0') * scale;
			}
		}
	}
	if (!digits)
		return NULL;
	x->ip = ip;
	x->fp = fp;
	return p;
}

/* PERCENT: number, optional '%', 0..100, to ppm. Rejects a non-zero value finer than 1 ppm, which would
 * silently become 0. Returns 0 or -1. */
static int parse_percent(const char *s, uint32_t *ppm)
{
	struct fixed x;
	const char *end = parse_fixed(s, &x);

	if (!end || (*end && strcmp(end, "%") != 0) || x.ip > 100 || (x.ip == 100 && x.fp))
		return -1;
	uint64_t v = x.ip * 10000 + x.fp / 100000; /* 1 % = 10^4 ppm; a billionth of 1 % = 10^-5 ppm */
	if (v == 0 && x.fp != 0)
		return -1;
	*ppm = (uint32_t)v;
	return 0;
}

/* TIME: number with unit ns|us|ms|s (tc's spellings), bare = ms. At most VD_NETEM_MAX_DELAY_NS. */
static int parse_time(const char *s, uint64_t *ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{ "", 1000000 },      { "ns", 1 },          { "nsec", 1 },       { "nsecs", 1 },
		{ "us", 1000 },       { "usec", 1000 },     { "usecs", 1000 },   { "ms", 1000000 },
		{ "msec", 1000000 },  { "msecs", 1000000 }, { "s", FIX_ONE },    { "sec", FIX_ONE },
		{ "secs", FIX_ONE },
	};
	struct fixed x;
	const char *end = parse_fixed(s, &x);

	if (!end)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].name) != 0)
			continue;
		if (x.ip > VD_NETEM_MAX_DELAY_NS / units[i].ns)
			return -1;
		/* fp < 1e9 and unit <= 1e9: the product fits in 64 bits */
		uint64_t v = x.ip * units[i].ns + x.fp * units[i].ns / FIX_ONE;
		if (v > VD_NETEM_MAX_DELAY_NS)
			return -1;
		*ns = v;
		return 0;
	}
	return -1;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		uint64_t d = (uint64_t)(*s - '0');
		if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
			return -1;
		v = v * 10 + d;
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

struct parser {
	char *w[MAX_WORDS];
	unsigned n, i;
	char *err;
	size_t errcap;
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
	if (p->err && p->errcap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err, p->errcap, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static const char *peek(const struct parser *p)
{
	return p->i < p->n ? p->w[p->i] : NULL;
}

/* An optional CORRELATION after a value: taken if the next word is a percentage. */
static void opt_correlation(struct parser *p, struct vd__netem *n)
{
	uint32_t ppm;
	if (peek(p) && parse_percent(peek(p), &ppm) == 0) {
		p->i++;
		n->correlations++;
	}
}

static int kw_percent(struct parser *p, struct vd__netem *n, const char *kw, uint32_t *out)
{
	const char *v = peek(p);
	if (!v)
		return fail(p, "'%s' needs a PERCENT", kw);
	if (parse_percent(v, out))
		return fail(p, "%s: '%s' is not a percentage in 0..100 (resolution 0.0001%%)", kw, v);
	p->i++;
	opt_correlation(p, n);
	return 0;
}

static int kw_delay(struct parser *p, struct vd__netem *n, const char *kw)
{
	const char *v = peek(p);
	if (!v)
		return fail(p, "'%s' needs a TIME", kw);
	if (parse_time(v, &n->delay_ns))
		return fail(p, "%s: '%s' is not a time (e.g. 5ms, 200us, 0.5s; at most 60s)", kw, v);
	p->i++;
	n->jitter_ns = 0;
	if (peek(p) && parse_time(peek(p), &n->jitter_ns) == 0) {
		p->i++;
		opt_correlation(p, n);
	}
	return 0;
}

static int kw_loss(struct parser *p, struct vd__netem *n)
{
	const char *v = peek(p);
	if (v && strcmp(v, "random") == 0) {
		p->i++;
	} else if (v && (strcmp(v, "state") == 0 || strcmp(v, "gemodel") == 0)) {
		return fail(p, "loss %s: the lab relay has only random loss (loss [random] PERCENT)", v);
	}
	return kw_percent(p, n, "loss", &n->loss_ppm);
}

static int kw_one(struct parser *p, struct vd__netem *n)
{
	const char *kw = p->w[p->i++];
	const char *v = peek(p);
	uint64_t u;

	if (strcmp(kw, "delay") == 0 || strcmp(kw, "latency") == 0)
		return kw_delay(p, n, kw);
	if (strcmp(kw, "loss") == 0)
		return kw_loss(p, n);
	if (strcmp(kw, "duplicate") == 0)
		return kw_percent(p, n, kw, &n->duplicate_ppm);
	if (strcmp(kw, "corrupt") == 0)
		return kw_percent(p, n, kw, &n->corrupt_ppm);
	if (strcmp(kw, "reorder") == 0) {
		int r = kw_percent(p, n, kw, &n->reorder_ppm);
		if (r == 0 && peek(p) && strcmp(peek(p), "gap") == 0)
			return fail(p, "reorder ... gap: not supported by the lab relay (reorder PERCENT only)");
		return r;
	}
	if (strcmp(kw, "limit") == 0) {
		if (!v || parse_u64(v, 1, VD_NETEM_MAX_LIMIT, &u))
			return fail(p, "limit: '%s' is not a frame count in 1..%u", v ? v : "", VD_NETEM_MAX_LIMIT);
		p->i++;
		n->limit = (uint32_t)u;
		return 0;
	}
	if (strcmp(kw, "seed") == 0) {
		if (!v || parse_u64(v, 0, UINT64_MAX, &u))
			return fail(p, "seed: '%s' is not an unsigned 64-bit number", v ? v : "");
		p->i++;
		n->seed = u;
		return 0;
	}
	if (strcmp(kw, "distribution") == 0) {
		if (!v || strcmp(v, "uniform") != 0)
			return fail(p, "distribution %s: the lab relay draws jitter from the uniform distribution only",
				    v ? v : "");
		p->i++;
		return 0;
	}
	if (strcmp(kw, "ecn") == 0 || strcmp(kw, "gap") == 0 || strcmp(kw, "rate") == 0 ||
	    strcmp(kw, "slot") == 0)
		return fail(p, "'%s': a netem option the lab relay does not implement", kw);
	return fail(p, "unknown netem keyword '%s' (limit, delay, distribution, loss, duplicate, corrupt, "
		       "reorder, seed)", kw);
}

int vd__netem_parse(const char *args, struct vd__netem *out, char *err, size_t errcap)
{
	char copy[MAX_ARGS_LEN];
	struct parser p = { .err = err, .errcap = errcap };
	struct vd__netem n = { .limit = VD_NETEM_DEFAULT_LIMIT, .seed = VD_NETEM_DEFAULT_SEED };

	if (err && errcap)
		err[0] = '\0';
	if (!args)
		args = "";
	if (strlen(args) >= sizeof(copy))
		return fail(&p, "netem arguments longer than %d characters", MAX_ARGS_LEN - 1);
	memcpy(copy, args, strlen(args) + 1);
	char *save = NULL;
	for (char *t = strtok_r(copy, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
		if (p.n == MAX_WORDS)
			return fail(&p, "more than %d netem words", MAX_WORDS);
		p.w[p.n++] = t;
	}
	while (p.i < p.n) {
		int r = kw_one(&p, &n);
		if (r)
			return r;
	}
	/* tc refuses it too: reordering is sending some frames ahead of delayed ones. */
	if (n.reorder_ppm && !n.delay_ns)
		return fail(&p, "reorder needs a delay (e.g. \"delay 10ms reorder 25%%\"), as in tc-netem");
	*out = n;
	return 0;
}

/* Appends to buf (always NUL-terminated: callers size it for the longest output). */
static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(buf + *off, cap - *off, fmt, ap);
	va_end(ap);
	if (w > 0)
		*off = *off + (size_t)w < cap ? *off + (size_t)w : cap - 1;
}

/* A time in the largest unit that holds it exactly, and never with more integer digits than
 * parse_fixed() takes: ms or us when they divide it, else seconds with 9 decimals. */
static void put_time(char *buf, size_t cap, size_t *off, uint64_t ns)
{
	if (ns % 1000000 == 0)
		put(buf, cap, off, " %llums", (unsigned long long)(ns / 1000000));
	else if (ns % 1000 == 0)
		put(buf, cap, off, " %lluus", (unsigned long long)(ns / 1000));
	else
		put(buf, cap, off, " %llu.%09llus", (unsigned long long)(ns / FIX_ONE),
		    (unsigned long long)(ns % FIX_ONE));
}

int vd__netem_format(const struct vd__netem *n, char *buf, size_t cap)
{
	const struct {
		const char *kw;
		uint32_t ppm;
	} pct[] = { { "loss", n->loss_ppm },
		    { "duplicate", n->duplicate_ppm },
		    { "corrupt", n->corrupt_ppm },
		    { "reorder", n->reorder_ppm } };
	/* The longest output is about 200 characters (two 20-digit times, four percentages, limit, seed). */
	char s[512];
	size_t off = 0;

	s[0] = '\0';
	if (n->delay_ns || n->jitter_ns) {
		put(s, sizeof(s), &off, " delay");
		put_time(s, sizeof(s), &off, n->delay_ns);
		put_time(s, sizeof(s), &off, n->jitter_ns);
	}
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++)
		if (pct[i].ppm)
			put(s, sizeof(s), &off, " %s %u.%04u%%", pct[i].kw, pct[i].ppm / 10000, pct[i].ppm % 10000);
	if (n->limit != VD_NETEM_DEFAULT_LIMIT)
		put(s, sizeof(s), &off, " limit %u", n->limit);
	if (n->seed != VD_NETEM_DEFAULT_SEED)
		put(s, sizeof(s), &off, " seed %llu", (unsigned long long)n->seed);
	return snprintf(buf, cap, "%s", off ? s + 1 : s); /* without the leading blank */
}
