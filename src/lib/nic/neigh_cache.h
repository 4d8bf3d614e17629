/* SPDX-License-Identifier: MIT */
/*
 * A small IPv4 -> MAC cache for the xdp backend: what the destination MAC of a frame to an address is.
 * Filled from viaductd's VD_CTL_NEIGH answers and from the source MAC of frames received from a peer.
 * Negative entries (the daemon could not resolve the address) stop a storm of requests for a short while.
 *
 * Open addressing with a bounded probe window and no deletion: an insert takes a free, expired or the
 * oldest slot in the window of its key, so a lookup never needs more than VD__NEIGH_PROBE probes. Losing
 * an entry only costs another request. Times are vd_nic_now_ns() values.
 */
#ifndef VD_NIC_NEIGH_CACHE_H
#define VD_NIC_NEIGH_CACHE_H

#include <stdint.h>
#include <string.h>

#define VD__NEIGH_SLOTS 256 /* power of two */
#define VD__NEIGH_PROBE 8

struct vd__neigh_entry {
	uint32_t ip_be;     /* 0 = empty slot */
	uint8_t mac[6];
	uint8_t negative;   /* 1: resolution failed; mac meaningless */
	uint8_t _pad;
	uint64_t expires_ns;
};

struct vd__neigh_cache {
	struct vd__neigh_entry slot[VD__NEIGH_SLOTS];
};

enum { VD__NEIGH_MISS = 0, VD__NEIGH_HIT = 1, VD__NEIGH_NEGATIVE = 2 };


/* Fibonacci hashing of the address: consecutive host addresses spread over the table. */
static inline uint32_t vd__neigh_home(uint32_t ip_be)
{
	return (uint32_t)((ip_be * 2654435769u) >> 24) & (VD__NEIGH_SLOTS - 1);
}

static inline void vd__neigh_init(struct vd__neigh_cache *c)
{
	memset(c, 0, sizeof(*c));
}

/* Returns VD__NEIGH_HIT (mac filled), VD__NEIGH_NEGATIVE or VD__NEIGH_MISS. */
static inline int vd__neigh_lookup(const struct vd__neigh_cache *c, uint32_t ip_be, uint64_t now_ns, uint8_t mac[6])
{
	uint32_t h = vd__neigh_home(ip_be);
	for (uint32_t i = 0; i < VD__NEIGH_PROBE; i++) {
		const struct vd__neigh_entry *e = &c->slot[(h + i) & (VD__NEIGH_SLOTS - 1)];
		if (e->ip_be != ip_be || ip_be == 0)
			continue;
		if (e->expires_ns <= now_ns)
			return VD__NEIGH_MISS;
		if (e->negative)
			return VD__NEIGH_NEGATIVE;
		memcpy(mac, e->mac, 6);
		return VD__NEIGH_HIT;
	}
	return VD__NEIGH_MISS;
}

/* Inserts or refreshes; mac NULL records a negative entry. */
static inline void vd__neigh_put(struct vd__neigh_cache *c, uint32_t ip_be, const uint8_t *mac, uint64_t expires_ns)
{
	if (ip_be == 0)
		return;
	uint32_t h = vd__neigh_home(ip_be);
	struct vd__neigh_entry *victim = NULL;
	for (uint32_t i = 0; i < VD__NEIGH_PROBE; i++) {
		struct vd__neigh_entry *e = &c->slot[(h + i) & (VD__NEIGH_SLOTS - 1)];
		if (e->ip_be == ip_be) {
			victim = e;
			break;
		}
		/* Prefer an empty slot, else the entry that expires first (expired ones are 'oldest'). */
		if (!victim || (victim->ip_be != 0 && (e->ip_be == 0 || e->expires_ns < victim->expires_ns)))
			victim = e;
	}
	victim->ip_be = ip_be;
	victim->negative = mac == NULL;
	if (mac)
		memcpy(victim->mac, mac, 6);
	victim->expires_ns = expires_ns;
}

#endif
