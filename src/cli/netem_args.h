/* SPDX-License-Identifier: MIT */
/*
 * The `--netem "ARGS"` of `viaduct lab up`: tc-netem(8) syntax, parsed into the parameters of the lab's
 * userspace impairment relay (relay.c). This kernel has no sch_netem, and a qdisc would not see AF_XDP
 * traffic anyway (copy-mode TX skips qdiscs, XDP RX runs before tc), so the lab forwards every link
 * through a relay process that applies these impairments itself.
 *
 * Accepted (tc-netem(8) keywords; a later occurrence of a keyword replaces the earlier one):
 *   limit PACKETS                          frames the relay may hold delayed (default 1000, as netem)
 *   delay|latency TIME [JITTER [CORR]]     delay, uniform in [TIME - JITTER, TIME + JITTER], clamped at 0
 *   distribution uniform                   the only distribution the relay draws
 *   loss [random] PERCENT [CORR]           independent random loss
 *   duplicate PERCENT [CORR]               a second copy, impaired independently
 *   corrupt PERCENT [CORR]                 one random bit flipped past the Ethernet header
 *   reorder PERCENT [CORR]                 PERCENT of frames sent at once, the rest delayed (needs delay)
 *   seed VALUE                             PRNG seed (netem's SEED); default a fixed constant
 * TIME: a decimal number with unit ns|us|ms|s (also nsec, usec, msec, sec, secs...), a bare number is
 * milliseconds (tc-netem(8): "expressed in milliseconds"). PERCENT: a decimal number with an optional
 * '%', 0..100, resolution 0.0001 % (1 ppm). CORR (correlation) values are accepted and ignored: every
 * decision is independent.
 * Refused with a message: loss state|gemodel, ecn, gap, rate, slot, distributions other than uniform,
 * and any other word.
 */
#ifndef VD_CLI_NETEM_ARGS_H
#define VD_CLI_NETEM_ARGS_H

#include <stddef.h>
#include <stdint.h>

#define VD_NETEM_DEFAULT_LIMIT 1000u
#define VD_NETEM_MAX_LIMIT 100000u
#define VD_NETEM_MAX_DELAY_NS (60ull * 1000000000ull) /* a minute: a lab link, not a satellite */
#define VD_NETEM_DEFAULT_SEED 0x7669616475637431ull

struct vd__netem {
	uint64_t delay_ns;
	uint64_t jitter_ns;
	uint32_t loss_ppm;      /* parts per million */
	uint32_t duplicate_ppm;
	uint32_t corrupt_ppm;
	uint32_t reorder_ppm;
	uint32_t limit;
	uint64_t seed;
	unsigned correlations;  /* how many correlation values were given (and ignored) */
};

/*
 * Parses args (blank-separated words, NULL or "" for none) into *out, which it fills entirely. Returns 0,
 * or -EINVAL with a one-line reason in err (err may be NULL).
 */
int vd__netem_parse(const char *args, struct vd__netem *out, char *err, size_t errcap);

/*
 * Writes *n back in the syntax vd__netem_parse() reads, exactly (times in ms, us or s with 9 decimals,
 * percentages with 4 decimals), "" when nothing is impaired; parse(format(n)) gives n again except for correlations.
 * Returns the length it needed (like snprintf).
 */
int vd__netem_format(const struct vd__netem *n, char *buf, size_t cap);

#endif
