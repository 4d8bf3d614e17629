/* SPDX-License-Identifier: MIT */
/*
 * Helpers for messaging tests over the sim backend: two endpoints on one simulated link, driven from one
 * thread. Each step runs both endpoints' progress; when neither had anything to do the virtual clock moves
 * on, by a step that grows while the pair stays idle (so timeouts of seconds cost few iterations) and
 * shrinks back as soon as frames flow. Every loop is bounded in virtual time.
 */
#ifndef VD_TEST_MSG_SIM_UTIL_H
#define VD_TEST_MSG_SIM_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <viaduct/msg.h>

struct pair {
	struct vd_sim_link *link;
	struct vd_ep *a, *b;
	struct vd_peer *ab; /* b, as seen from a */
	struct vd_peer *ba; /* a, as seen from b */
	uint64_t step;
};

#define PAIR_STEP_MIN 2000ull      /* 2 us */
#define PAIR_STEP_MAX 50000ull    /* 50 us: well below any RTO, so a step never fakes a timeout */

static inline void pair_default_params(struct vd_sim_params *sp, uint64_t seed)
{
	memset(sp, 0, sizeof(*sp));
	sp->seed = seed;
	sp->delay_ns = 5000;
	sp->mtu = 1500;
}

/* Opens a and b (10.0.0.1:5000, 10.0.0.2:5000) with options *o (NULL: defaults) on a new link. */
static inline int pair_open(struct pair *p, const struct vd_sim_params *sp, const struct vd_ep_opts *o)
{
	struct vd_ep_opts oa, ob;
	int rc;

	memset(p, 0, sizeof(*p));
	p->step = PAIR_STEP_MIN;
	rc = vd_sim_link_new(&p->link, sp);
	if (rc)
		return rc;
	if (o) {
		oa = *o;
	} else {
		vd_ep_opts_init(&oa);
	}
	ob = oa;
	oa.nic.backend = ob.nic.backend = VD_BACKEND_SIM;
	oa.nic.sim = ob.nic.sim = p->link;
	oa.nic.local = "10.0.0.1:5000";
	ob.nic.local = "10.0.0.2:5000";
	if ((rc = vd_ep_open(&p->a, &oa)) || (rc = vd_ep_open(&p->b, &ob)))
		return rc;
	if ((rc = vd_peer_resolve(p->a, "10.0.0.2:5000", &p->ab)) || (rc = vd_peer_resolve(p->b, "10.0.0.1:5000", &p->ba)))
		return rc;
	return 0;
}

static inline void pair_close(struct pair *p)
{
	vd_ep_close(p->a);
	vd_ep_close(p->b);
	vd_sim_link_free(p->link);
}

/* One step: progress both, or move the clock if both were idle. */
static inline void pair_step(struct pair *p)
{
	int w = 0;
	if (p->a)
		w += vd_ep_progress(p->a);
	if (p->b)
		w += vd_ep_progress(p->b);
	if (w) {
		p->step = PAIR_STEP_MIN;
		return;
	}
	vd_sim_advance(p->link, p->step);
	if (p->step < PAIR_STEP_MAX)
		p->step *= 2;
}

/* Drives until vd_test says *req is complete, at most max_ns of virtual time; returns 1 if it completed. */
static inline int pair_wait(struct pair *p, struct vd_ep *ep, struct vd_req **req, struct vd_status *st,
			    uint64_t max_ns)
{
	uint64_t end = vd_sim_now_ns(p->link) + max_ns;
	while (vd_sim_now_ns(p->link) < end) {
		int rc = vd_test(ep, req, st);
		if (rc != 0)
			return rc == 1;
		pair_step(p);
	}
	return 0;
}

/* Drives for ns of virtual time. */
static inline void pair_run(struct pair *p, uint64_t ns)
{
	uint64_t end = vd_sim_now_ns(p->link) + ns;
	while (vd_sim_now_ns(p->link) < end)
		pair_step(p);
}

/* Fills buf with bytes derived from seed (verifiable after transfer). */
static inline void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint8_t *b = buf;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		if ((i & 7) == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		b[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

static inline int check_pattern(const void *buf, size_t len, uint64_t seed)
{
	uint8_t *tmp = malloc(len ? len : 1);
	fill_pattern(tmp, len, seed);
	int ok = memcmp(tmp, buf, len) == 0;
	free(tmp);
	return ok;
}

#endif
