/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets that read their input as a script share: the input as a cursor, values taken from
 * it little-endian (zero past its end, so every input is a complete script), and the invariant check.
 */
#ifndef VD_FUZZ_INPUT_H
#define VD_FUZZ_INPUT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fuzz_input {
	const uint8_t *p;
	size_t n;
};

/* The next `bytes` (at most 8) of the input as a number; what is missing reads as 0. */
static inline uint64_t fuzz_take(struct fuzz_input *in, size_t bytes)
{
	uint64_t v = 0;
	size_t k = in->n < bytes ? in->n : bytes;
	memcpy(&v, in->p, k);
	in->p += k;
	in->n -= k;
	return v;
}

/* An invariant: abort (the fuzzer's finding) when it does not hold. */
static inline void fuzz_check(int cond)
{
	if (!cond)
		abort();
}

#endif
