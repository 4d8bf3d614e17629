/* SPDX-License-Identifier: MIT */
/*
 * Same-host shared-memory channels (nic_shm.c), used by the mux nic (nic_mux.c).
 *
 * A channel joins two nics of one host (or network namespace): one shared memory file holding two rings
 * (shm_ring.h), ring 0 carrying frames from the side that connected to the side that accepted, ring 1 the
 * other way, an eventfd per ring for the sleeping consumer, and the Unix socket the channel was set up on,
 * kept open for the channel's life: its end-of-file is how each side learns that the other is gone.
 */
#ifndef VD_NIC_SHM_H
#define VD_NIC_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "nic_internal.h"
#include "shm_ring.h"

enum vd__shm_state {
	VD__SHM_ACCEPTING = 1, /* accepted a connection, waiting for its hello */
	VD__SHM_CONNECTING,    /* sent our hello and the rings, waiting for the acceptor's ack */
	VD__SHM_UP,            /* both rings in use */
	VD__SHM_DEAD,          /* peer gone or channel corrupt: no TX; RX drained, freed once nothing is lent */
};

struct vd__shm_chan {
	enum vd__shm_state state;
	int sock;                /* SOCK_SEQPACKET Unix socket; -1 once closed */
	int efd_tx;              /* eventfd of the ring we produce into: we write it when its consumer sleeps */
	int efd_rx;              /* eventfd of the ring we consume: we sleep on it */
	void *mem;
	size_t mem_bytes;
	struct vd__shm_ring tx, rx;
	struct vd_addr peer;     /* the peer's address on the primary path: RX frames carry it */
	uint32_t id;             /* index in the mux's channel table (frame cookies name it) */
	uint32_t gen;            /* the mux's generation of that index */
	uint32_t lent;           /* RX frames handed out and not released */
	uint32_t lent_tx;        /* TX slots lent by tx_alloc, not yet sent or given back */
	uint64_t deadline_ns;    /* ACCEPTING / CONNECTING: give up after this */
	uint8_t kick;            /* published TX since the last wakeup check */
	uint8_t rel_dirty;       /* rel_upto not yet published */
	uint8_t drained;         /* DEAD: RX ring seen empty */
	uint8_t initiator;       /* we connected (rather than accepted) */
	uint32_t rel_upto;
};

/*
 * Geometry of new channels: slots of 8 + max_payload bytes (rounded to a cache line), as many per ring as
 * fit in about 3 MiB, a power of two within [256, 2048]: 2048 slots at a 1500-byte MTU, 256 at 9000. The
 * engine above keeps up to its window of data frames plus its pull replies in flight to one peer; with
 * 512 slots a bulk transfer between two busy processes filled the ring thousands of times per 64 MiB
 * (each a refused frame, retransmitted later), with 2048 practically never.
 */
#define VD__SHM_RING_TARGET (3u << 20)
#define VD__SHM_SLOTS_MIN 256u
#define VD__SHM_SLOTS_MAX 2048u

/* Listens on the abstract Unix name of addr ("\0viaduct-shm/A.B.C.D:PORT"). Returns the socket or -errno. */
int vd__shm_listen(const struct vd_addr *addr);

/*
 * Starts a channel to the nic at `to` (tried under its exact name, then under the wildcard name
 * 0.0.0.0:PORT): connects, creates the rings for payloads up to max_payload, sends them with our address
 * `self`. On success c is CONNECTING and owns its fds; the caller waits for the socket to become readable
 * and calls vd__shm_connect_finish(). Returns 0 or -errno (nobody listens: -ECONNREFUSED or -ENOENT).
 */
int vd__shm_connect(struct vd__shm_chan *c, const struct vd_addr *self, const struct vd_addr *to,
		    uint32_t max_payload, uint64_t deadline_ns);
/* CONNECTING -> UP on the acceptor's ack: 1 up, 0 not yet, -errno refused or failed. */
int vd__shm_connect_finish(struct vd__shm_chan *c);

/* Takes a connection from the listening socket: c is ACCEPTING. 0, -EAGAIN if none waits, or -errno. */
int vd__shm_accept(struct vd__shm_chan *c, int listen_fd, uint64_t deadline_ns);
/*
 * ACCEPTING -> UP: reads the hello, validates everything in it (sender credentials, the peer's claimed
 * address must be local per is_local, the shared file's seals, size and header, the eventfds), maps the
 * rings, sends the ack. `self` is our own address (a wildcard IP is replaced by the one the peer asked
 * for). 1 up, 0 hello not here yet, -errno rejected.
 */
int vd__shm_accept_finish(struct vd__shm_chan *c, const struct vd_addr *self,
			  int (*is_local)(void *ctx, uint32_t ip_be), void *ctx);

/* Closes the socket and the eventfds (the mapping stays until vd__shm_chan_unmap: lent frames live there). */
void vd__shm_chan_close_fds(struct vd__shm_chan *c);
void vd__shm_chan_unmap(struct vd__shm_chan *c);

/* Writes the eventfd of our TX ring (the consumer asked for a wakeup). */
void vd__shm_chan_kick(struct vd__shm_chan *c);
/* Empties the eventfd we sleep on. */
void vd__shm_chan_drain_efd(struct vd__shm_chan *c);

#endif /* VD_NIC_SHM_H */
