/* SPDX-License-Identifier: MIT */
/* The backend interface behind viaduct/nic.h. Each backend embeds struct vd_nic first in its own state. */
#ifndef VD_NIC_INTERNAL_H
#define VD_NIC_INTERNAL_H

#include <viaduct/nic.h>

struct vd_nic_ops {
	const char *name;
	int (*rx_burst)(struct vd_nic *nic, struct vd_frame *f, unsigned max);
	void (*rx_release)(struct vd_nic *nic, struct vd_frame *f, unsigned n);
	int (*tx_alloc)(struct vd_nic *nic, struct vd_frame *f, unsigned n);
	int (*tx_burst)(struct vd_nic *nic, struct vd_frame *f, unsigned n);
	void (*tx_abort)(struct vd_nic *nic, struct vd_frame *f, unsigned n);
	int (*flush)(struct vd_nic *nic);
	int (*wait)(struct vd_nic *nic, int timeout_ms);
	uint64_t (*now_ns)(const struct vd_nic *nic);
	void (*close)(struct vd_nic *nic);
	/* Optional: fills *out (a backend whose counters are not all in nic->stats); NULL: nic->stats. */
	void (*stats)(const struct vd_nic *nic, struct vd_nic_stats *out);
	/* Optional (NULL: -EOPNOTSUPP): vd_nic_port_add/del, called with proto already checked. */
	int (*port_add)(struct vd_nic *nic, int proto, uint16_t *port_be);
	int (*port_del)(struct vd_nic *nic, int proto, uint16_t port_be, uint32_t hold_ms);
	/* Optional (NULL: one piece, the contiguous view): vd_nic_tx_pieces, f lent by this backend. */
	int (*tx_pieces)(struct vd_nic *nic, const struct vd_frame *f, uint32_t off, uint32_t len,
			 struct iovec *iov, unsigned max);
	/* Optional (NULL: -EOPNOTSUPP, lending unsupported): vd_nic_tx_lend/unlend/busy/attach. */
	int (*tx_lend)(struct vd_nic *nic, struct vd_nic_lent *out);
	void (*tx_unlend)(struct vd_nic *nic, const struct vd_nic_lent *l);
	int (*tx_busy)(struct vd_nic *nic, const struct vd_nic_lent *l, uint32_t chunk);
	int (*tx_attach)(struct vd_nic *nic, struct vd_frame *f, uint32_t hdr_len, const struct iovec *iov,
			 unsigned n);
};

struct vd_nic {
	const struct vd_nic_ops *ops;
	struct vd_addr local;
	uint32_t max_payload;
	enum vd_rx_mode rx_mode;
	int fd;                     /* what vd_nic_fd() returns */
	struct vd_nic_stats stats;  /* kept by the backend */
	enum vd_nic_layer layer;    /* what a frame's data is (set by the backend at open) */
};

int vd__nic_udp_open(struct vd_nic **out, const struct vd_nic_opts *opts);
int vd__nic_sim_open(struct vd_nic **out, const struct vd_nic_opts *opts);
int vd__nic_xdp_open(struct vd_nic **out, const struct vd_nic_opts *opts);
/*
 * vd_nic_open, with the backend's state in a process-shared heap (lib/core/shmheap.h) so that fork
 * children of the opener can use the nic (the sockets stack, socket.h "Processes"). Only xdp honours heap
 * (its rings and UMEM are shared mappings already); sim and udp stay process-local.
 */
struct vd__shmheap;
int vd__nic_open_shared(struct vd_nic **out, const struct vd_nic_opts *opts, struct vd__shmheap *heap);
int vd__nic_xdp_open_heap(struct vd_nic **out, const struct vd_nic_opts *opts, struct vd__shmheap *heap);
/* Wraps an open primary (xdp or udp) with same-host shared-memory channels (nic_mux.c). Takes ownership of
 * primary: on failure it is closed. Frame cookies with bit 62 set belong to the mux: the backends never
 * set it (xdp: bit 63 and UMEM offsets; udp: a counter; sim: a pointer). */
int vd__nic_mux_open(struct vd_nic **out, struct vd_nic *primary);

/*
 * The stats page viaductd reads for this endpoint (the sockets layer writes its sock_* counters there,
 * with relaxed atomic stores); NULL on backends without a daemon (sim, udp) and behind the shm mux.
 */
struct vd_ctl_ep_shared;
struct vd_ctl_ep_shared *vd__nic_shared(struct vd_nic *nic);

/* CLOCK_MONOTONIC in ns, for the real backends. */
uint64_t vd__mono_ns(void);

#endif
