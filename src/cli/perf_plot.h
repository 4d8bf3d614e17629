/* SPDX-License-Identifier: MIT */
/*
 * A small SVG line-plot writer for the benchmarks (no plotting tool needed): panels side by side, each with
 * a log2-scaled x axis (sizes in bytes), a linear or log10 y axis, one polyline per series and a legend.
 */
#ifndef VD_CLI_PERF_PLOT_H
#define VD_CLI_PERF_PLOT_H

#include <stdio.h>

#define VD_PLOT_MAX_POINTS 32
#define VD_PLOT_MAX_SERIES 12

struct vd__plot_series {
	const char *name;
	unsigned n;                      /* points, in any order (drawn sorted by x) */
	double x[VD_PLOT_MAX_POINTS];    /* > 0 */
	double y[VD_PLOT_MAX_POINTS];    /* > 0 on a log axis; points with y <= 0 there are skipped */
};

struct vd__plot_panel {
	const char *title, *xlabel, *ylabel;
	int log_y;
	const struct vd__plot_series *series;
	unsigned nseries;
};

/* Writes one SVG document with the panels left to right. 0 or -errno (write error). */
int vd__plot_svg(FILE *f, const struct vd__plot_panel *panels, unsigned npanels);

#endif
