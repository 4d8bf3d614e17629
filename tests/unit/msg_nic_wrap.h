/* SPDX-License-Identifier: MIT */
/*
 * A wrapper around an endpoint's nic for messaging tests over the sim backend: the nic's ops table (the
 * backend vtable of src/lib/nic/nic_internal.h) is replaced by a copy whose TX can be made to
 *   - refuse: tx_alloc lends nothing, as an xdp TX ring full of frames waiting for completion does;
 *   - drop:   tx_burst takes the frames and loses them (a burst loss the sim's random loss rarely makes).
 * At most two wrapped nics at a time (the two endpoints of a pair); unwrap before closing.
 */
#ifndef VD_TEST_MSG_NIC_WRAP_H
#define VD_TEST_MSG_NIC_WRAP_H

#include <string.h>

#include <viaduct/msg.h>

#include "lib/nic/nic_internal.h"

struct nic_wrap {
	struct vd_nic_ops ops;
	const struct vd_nic_ops *orig;
	int refuse, drop;
	unsigned refused, dropped;
};

static struct nic_wrap nic_wraps[2];

static inline struct nic_wrap *nic_wrap_of(struct vd_nic *nic)
{
	return nic->ops == &nic_wraps[0].ops ? &nic_wraps[0] : &nic_wraps[1];
}

static inline int nic_wrap_tx_alloc(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct nic_wrap *w = nic_wrap_of(nic);

	if (w->refuse) {
		w->refused++;
		return 0;
	}
	return w->orig->tx_alloc(nic, f, n);
}

static inline int nic_wrap_tx_burst(struct vd_nic *nic, struct vd_frame *f, unsigned n)
{
	struct nic_wrap *w = nic_wrap_of(nic);

	if (w->drop) {
		w->orig->tx_abort(nic, f, n); /* the buffers go back to the pool, the frames nowhere */
		w->dropped += n;
		return (int)n;
	}
	return w->orig->tx_burst(nic, f, n);
}

/* Wraps ep's nic as nic_wraps[i]. */
static inline struct nic_wrap *nic_wrap_install(struct vd_ep *ep, int i)
{
	struct vd_nic *nic = vd_ep_nic(ep);
	struct nic_wrap *w = &nic_wraps[i];

	memset(w, 0, sizeof(*w));
	w->orig = nic->ops;
	w->ops = *nic->ops;
	w->ops.tx_alloc = nic_wrap_tx_alloc;
	w->ops.tx_burst = nic_wrap_tx_burst;
	nic->ops = &w->ops;
	return w;
}

static inline void nic_wrap_remove(struct vd_ep *ep, int i)
{
	vd_ep_nic(ep)->ops = nic_wraps[i].orig;
}

#endif
