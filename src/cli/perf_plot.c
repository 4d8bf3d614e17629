/* SPDX-License-Identifier: MIT */
/*
 * SVG line plots (SVG 1.1, plain elements only: rect, line, polyline, circle, text), so `--plot` needs no
 * plotting tool. Layout per panel: PANEL_W x PANEL_H with margins for the axes' labels; x is log2 (ticks at
 * powers of two, labelled 8, 1K, 1M...), y linear with "nice" steps or log10 with decade ticks.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "perf_plot.h"

#define PANEL_W 520.0
#define PANEL_H 380.0
#define M_LEFT 64.0
#define M_RIGHT 16.0
#define M_TOP 36.0
#define M_BOTTOM 52.0

static const char *const colors[VD_PLOT_MAX_SERIES] = {
	"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
	"#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8",
};

struct axis {
	double lo, hi; /* in axis units (log2/log10 already applied where log) */
	int log;       /* 0 linear, 2 log2, 10 log10 */
};

static double to_axis(const struct axis *a, double v)
{
	return a->log == 2 ? log2(v) : a->log == 10 ? log10(v) : v;
}

/* Escapes text for XML character data (names come from our own tables, but be safe). */
static void put_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
}

static void size_label(double v, char *buf, size_t cap)
{
	if (v >= 1048576 && fmod(v, 1048576) == 0)
		snprintf(buf, cap, "%.0fM", v / 1048576);
	else if (v >= 1024 && fmod(v, 1024) == 0)
		snprintf(buf, cap, "%.0fK", v / 1024);
	else
		snprintf(buf, cap, "%.0f", v);
}

static int usable(const struct axis *ay, double y)
{
	return isfinite(y) && (!ay->log || y > 0);
}

/* Data ranges of the panel; 0 if there is no point at all. */
static int ranges(const struct vd__plot_panel *p, struct axis *ax, struct axis *ay)
{
	int any = 0;

	ax->log = 2;
	ay->log = p->log_y ? 10 : 0;
	for (unsigned s = 0; s < p->nseries; s++)
		for (unsigned i = 0; i < p->series[s].n; i++) {
			double x = p->series[s].x[i], y = p->series[s].y[i];

			if (!(x > 0) || !usable(ay, y))
				continue;
			double xa = to_axis(ax, x), ya = to_axis(ay, y);

			if (!any) {
				ax->lo = ax->hi = xa;
				ay->lo = ay->hi = ya;
				any = 1;
			}
			ax->lo = fmin(ax->lo, xa);
			ax->hi = fmax(ax->hi, xa);
			ay->lo = fmin(ay->lo, ya);
			ay->hi = fmax(ay->hi, ya);
		}
	if (!any)
		return 0;
	ax->lo = floor(ax->lo);
	ax->hi = ceil(ax->hi);
	if (ax->hi <= ax->lo)
		ax->hi = ax->lo + 1;
	if (ay->log) {
		ay->lo = floor(ay->lo);
		ay->hi = ceil(ay->hi);
		if (ay->hi <= ay->lo)
			ay->hi = ay->lo + 1;
	} else {
		ay->lo = 0; /* rates: from zero, so heights compare */
		ay->hi = ay->hi > 0 ? ay->hi * 1.1 : 1;
	}
	return 1;
}

/* A "nice" linear step (1, 2 or 5 times a power of ten) giving about 5 ticks. */
static double nice_step(double span)
{
	double raw = span / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;

	return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void panel(FILE *f, const struct vd__plot_panel *p, double ox)
{
	const double x0 = ox + M_LEFT, x1 = ox + PANEL_W - M_RIGHT, y0 = PANEL_H - M_BOTTOM, y1 = M_TOP;
	struct axis ax, ay;
	char lab[32];

	fprintf(f, "<text x=\"%.1f\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">",
		(x0 + x1) / 2);
	put_text(f, p->title);
	fputs("</text>\n", f);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#000\"/>\n",
		x0, y1, x1 - x0, y0 - y1);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", (x0 + x1) / 2,
		PANEL_H - 12);
	put_text(f, p->xlabel);
	fputs("</text>\n", f);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
		   "transform=\"rotate(-90 %.1f %.1f)\">",
		ox + 16, (y0 + y1) / 2, ox + 16, (y0 + y1) / 2);
	put_text(f, p->ylabel);
	fputs("</text>\n", f);
	if (!ranges(p, &ax, &ay)) {
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">no data</text>\n",
			(x0 + x1) / 2, (y0 + y1) / 2);
		return;
	}
#define SX(v) (x0 + (to_axis(&ax, (v)) - ax.lo) / (ax.hi - ax.lo) * (x1 - x0))
#define SY(v) (y0 - (to_axis(&ay, (v)) - ay.lo) / (ay.hi - ay.lo) * (y0 - y1))
	/* x ticks: every power of two, labelled every k-th so at most ~10 labels. */
	int span = (int)(ax.hi - ax.lo), every = span > 10 ? (span + 9) / 10 : 1;

	for (int e = (int)ax.lo; e <= (int)ax.hi; e++) {
		double v = ldexp(1, e), x = SX(v);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x, y0, x, y1);
		if ((e - (int)ax.lo) % every == 0) {
			size_label(v, lab, sizeof(lab));
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n", x,
				y0 + 16, lab);
		}
	}
	/* y ticks */
	if (ay.log) {
		for (int e = (int)ay.lo; e <= (int)ay.hi; e++) {
			double v = pow(10, e), y = SY(v);

			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x1,
				y);
			snprintf(lab, sizeof(lab), "%g", v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n", x0 - 4,
				y + 4, lab);
		}
	} else {
		double step = nice_step(ay.hi - ay.lo);

		for (double v = 0; v <= ay.hi + step * 1e-9; v += step) {
			double y = SY(v);

			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x1,
				y);
			snprintf(lab, sizeof(lab), "%g", v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n", x0 - 4,
				y + 4, lab);
		}
	}
	/* One polyline per series (points sorted by x), a dot on every point, the legend top left. */
	unsigned shown = 0;

	for (unsigned s = 0; s < p->nseries && s < VD_PLOT_MAX_SERIES; s++) {
		const struct vd__plot_series *sr = &p->series[s];
		unsigned idx[VD_PLOT_MAX_POINTS], n = 0;

		for (unsigned i = 0; i < sr->n && i < VD_PLOT_MAX_POINTS; i++)
			if (sr->x[i] > 0 && usable(&ay, sr->y[i]))
				idx[n++] = i;
		if (!n)
			continue;
		for (unsigned i = 1; i < n; i++)
			for (unsigned j = i; j > 0 && sr->x[idx[j - 1]] > sr->x[idx[j]]; j--) {
				unsigned t = idx[j];

				idx[j] = idx[j - 1];
				idx[j - 1] = t;
			}
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
		for (unsigned i = 0; i < n; i++)
			fprintf(f, "%s%.1f,%.1f", i ? " " : "", SX(sr->x[idx[i]]), SY(sr->y[idx[i]]));
		fputs("\"/>\n", f);
		for (unsigned i = 0; i < n; i++)
			fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", SX(sr->x[idx[i]]),
				SY(sr->y[idx[i]]), colors[s]);
		double ly = y1 + 14 + 15 * shown++;

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
			x0 + 8, ly - 4, x0 + 28, ly - 4, colors[s]);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", x0 + 32, ly);
		put_text(f, sr->name);
		fputs("</text>\n", f);
	}
#undef SX
#undef SY
}

int vd__plot_svg(FILE *f, const struct vd__plot_panel *panels, unsigned npanels)
{
	double w = PANEL_W * (npanels ? npanels : 1);

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
		   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
		   "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n",
		w, PANEL_H, w, PANEL_H, w, PANEL_H);
	for (unsigned i = 0; i < npanels; i++)
		panel(f, &panels[i], PANEL_W * i);
	fputs("</svg>\n", f);
	return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}
