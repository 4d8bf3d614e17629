/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the --netem parser of `viaduct lab up` (src/cli/netem_args.c). Any string must be
 * either refused with -EINVAL and a reason, or accepted with values inside their documented bounds; an
 * accepted one, written back with vd__netem_format, must parse again to the same parameters. Any
 * violation aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/netem_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[1200], err[256], out[512];
	struct vd__netem a, b;

	if (size >= sizeof(in))
		return 0;
	memcpy(in, data, size);
	in[size] = '\0'; /* embedded NULs just end the string early, as in argv */
	int r = vd__netem_parse(in, &a, err, sizeof(err));
	if (r != 0) {
		check(r == -EINVAL && err[0] != '\0' && memchr(err, '\0', sizeof(err)));
		return 0;
	}
	check(a.loss_ppm <= 1000000 && a.duplicate_ppm <= 1000000 && a.corrupt_ppm <= 1000000 &&
	      a.reorder_ppm <= 1000000);
	check(a.delay_ns <= VD_NETEM_MAX_DELAY_NS && a.jitter_ns <= VD_NETEM_MAX_DELAY_NS);
	check(a.limit >= 1 && a.limit <= VD_NETEM_MAX_LIMIT);
	check(!a.reorder_ppm || a.delay_ns);
	int len = vd__netem_format(&a, out, sizeof(out));
	check(len >= 0 && (size_t)len < sizeof(out) && strlen(out) == (size_t)len);
	check(vd__netem_parse(out, &b, err, sizeof(err)) == 0);
	check(a.delay_ns == b.delay_ns && a.jitter_ns == b.jitter_ns && a.loss_ppm == b.loss_ppm &&
	      a.duplicate_ppm == b.duplicate_ppm && a.corrupt_ppm == b.corrupt_ppm &&
	      a.reorder_ppm == b.reorder_ppm && a.limit == b.limit && a.seed == b.seed);
	return 0;
}
