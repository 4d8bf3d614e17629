/* SPDX-License-Identifier: MIT */
/*
 * A small deterministic pseudo-random generator for simulations and tests: SplitMix64 (Steele, Lea and
 * Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014). One 64-bit state word, passes
 * BigCrush, and every seed (0 included) gives a full-period sequence, so a test's seed is used as is.
 * Not for anything that needs unpredictability.
 */
#ifndef VD_CORE_RAND_H
#define VD_CORE_RAND_H

#include <stdint.h>

struct vd__rand {
	uint64_t s;
};

static inline void vd__rand_seed(struct vd__rand *r, uint64_t seed)
{
	r->s = seed;
}

static inline uint64_t vd__rand_next(struct vd__rand *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) for n > 0 (Lemire's multiply-shift; its bias, below n / 2^64, does not matter here). */
static inline uint64_t vd__rand_below(struct vd__rand *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)vd__rand_next(r) * n) >> 64);
}

/* True with probability ppm / 1,000,000. */
static inline int vd__rand_ppm(struct vd__rand *r, uint32_t ppm)
{
	return vd__rand_below(r, 1000000u) < ppm;
}

#endif
