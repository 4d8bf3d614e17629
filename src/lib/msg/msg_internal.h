/* SPDX-License-Identifier: MIT */
/*
 * Internal state of the messaging engine, shared by its files:
 *   wire.c     frame encode/decode          peer.c     per-peer reliability: seq/ack/sack, RTO, reorder
 *   match.c    posted/unexpected queues     eager.c    framing of queued sends (combining, Nagle)
 *   rndv.c     rendezvous pull (both sides) progress.c the progress loop, timers, blocking, bg thread
 *   req.c      requests, completion, iovecs ep.c       the public API
 */
#ifndef VD_MSG_INTERNAL_H
#define VD_MSG_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <viaduct/msg.h>

#include "lib/msg/wire.h"

/* --- intrusive doubly linked list ------------------------------------------------------------------ */
struct vd__link {
	struct vd__link *prev, *next;
};

static inline void vd__list_init(struct vd__link *h)
{
	h->prev = h->next = h;
}

static inline int vd__list_empty(const struct vd__link *h)
{
	return h->next == h;
}

static inline void vd__list_add_tail(struct vd__link *h, struct vd__link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void vd__list_del(struct vd__link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define vd__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define vd__list_first(h, type, member) vd__container_of((h)->next, type, member)
/* Iterates allowing deletion of the current node. */
#define vd__list_each_safe(pos, tmp, h) for (pos = (h)->next, tmp = pos->next; pos != (h); pos = tmp, tmp = pos->next)

/* Serial-number comparison of 32-bit sequence numbers (RFC 1982): valid while they are < 2^31 apart. */
static inline int vd__seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* Slots per peer in each direction: the largest window, and the span of the 64-bit sack bitmap. */
#define VD__RING 64
#define VD__INIT_WND 16    /* frames a sender may send before it has heard the receiver's window */
#define VD__PULL_BLOCK 64  /* most frames per pull request (its want bitmap) */
#define VD__PULL_BLOCK_BYTES (64u << 10) /* most data bytes one pull request asks for */
#define VD__PULL_BLOCKS_MAX 16
/*
 * Most data bytes all our pulls from one peer ask for at once (their open blocks), whatever the number of
 * messages being pulled: it bounds what a burst of replies puts in our receive path (the steering ring is
 * 4 MiB by default, an XSK's fill ring 2048 frames) so that many messages in flight do not overrun it and
 * stall on re-requests. Below it each message still keeps up to pull_blocks blocks open.
 */
#define VD__PULL_PEER_BYTES (1u << 20)

/* --- requests --------------------------------------------------------------------------------------- */
enum vd__req_state {
	VD__REQ_QUEUED, /* send: in peer->txq; recv: in ep->posted */
	VD__REQ_ACTIVE, /* being transferred (framed, announced, matched, pulling) */
	VD__REQ_DONE,   /* in ep->done, waiting for test/wait */
};

struct vd__pull;
struct vd__unexp;

struct vd_req {
	struct vd__link all;  /* ep->reqs: every live request (freed at close) */
	struct vd__link link; /* the one queue the request is in (txq, sent, rndv list, posted, done) */
	struct vd_ep *ep;
	uint8_t state, is_send, sync, rndv;
	uint8_t started, acked, matched;
	struct vd_status st;
	struct iovec *iov;
	int iovcnt;
	struct iovec iov_one;  /* storage when the caller gave one buffer */
	uint64_t len;          /* total bytes of iov */
	uint64_t match, mask;  /* send: match bits; recv: wanted bits and mask */
	/* send */
	uint32_t send_id;
	uint64_t tx_off;       /* eager: bytes framed so far */
	uint32_t last_seq;     /* eager: seq of the frame with the last fragment */
	/* recv */
	uint64_t got;          /* eager: bytes of the message arrived */
	struct vd__pull *pull; /* rendezvous receive in progress */
	struct vd__unexp *unexp; /* took an unexpected eager message that is still arriving */
};

/* --- peers ------------------------------------------------------------------------------------------ */
struct vd__txslot {
	uint8_t *buf;       /* the frame as sent, kept until acknowledged (retransmission) */
	uint16_t len;
	uint8_t sacked;     /* selectively acknowledged: never resent */
	uint8_t tx_count;   /* times transmitted; Karn's rule: RTT sampled only when 1 */
	uint8_t owed;       /* a retransmission the nic had no room for: goes on the next pass, no backoff */
	uint64_t sent_ns;   /* last transmission */
	uint64_t deadline;  /* retransmission time */
};

struct vd__rxslot {
	uint8_t *buf; /* body of a frame received out of order or held by back-pressure */
	uint16_t len;
	uint8_t present;
};

struct vd_peer {
	struct vd_ep *ep;
	struct vd__link all;      /* ep->peers: every peer ever created, freed at close */
	struct vd_peer *hnext;    /* ep hash chain (live or most recent peer of an address) */
	struct vd__link gone_link; /* ep->gone_q while a gone notice is pending */
	struct vd_addr addr;
	uint32_t remote_session;  /* 0 until we hear from it */
	uint32_t prev_session;    /* the incarnation this peer replaced: its late frames are dropped */
	int gone;                 /* 0, -ECONNRESET or -ETIMEDOUT */

	/* Sending side. */
	uint32_t snd_una, snd_nxt; /* oldest unacknowledged seq, next seq to use */
	uint32_t snd_tx;           /* next seq to hand to the nic: [snd_tx, snd_nxt) are framed, never sent
	                            * (the nic had no room), and go first on the next pass */
	uint64_t rto_next;         /* no retransmission timer of [snd_una, snd_tx) expires before this
	                            * (a lower bound: the timer scan runs only once it is reached) */
	int rtx_owed;              /* some slot has owed set */
	uint64_t last_advance;     /* the retransmission timer's start: the last ack of new data, or the
	                            * first transmission with nothing in flight (RFC 6298 5.1, 5.3) */
	uint32_t recover;          /* after an RTO expiry: snd_tx then; recovery ends when snd_una reaches it */
	uint8_t in_recovery, rec_partial; /* in recovery; a partial ack came (rto_scan) */
	uint64_t rto_time;         /* when the expiry happened: frames sent before it are in recovery */
	uint32_t snd_edge;         /* the receiver accepts seq < snd_edge */
	struct vd__txslot tx[VD__RING];
	uint64_t srtt, rttvar, rto; /* RFC 6298 estimator, ns; rto includes backoff */
	int rtt_valid;
	struct vd__link txq;       /* sends not yet fully framed, in order */
	uint64_t txq_bytes;        /* wire bytes still to frame (combining decision) */
	uint64_t txq_since;        /* when txq last became non-empty (combining timer) */
	struct vd__link sent;      /* eager sends fully framed, waiting for ack (and match) */
	struct vd__link rndv_sends; /* rendezvous sends announced, waiting to be pulled */
	uint64_t *ctrl;            /* control records to send: type << 32 | send_id (ring) */
	uint32_t ctrl_head, ctrl_tail, ctrl_cap;
	uint64_t last_probe;

	/* Receiving side. */
	uint32_t rcv_nxt;   /* next seq expected: everything below has been received */
	uint32_t proc_seq;  /* next seq to process; [proc_seq, rcv_nxt) are held in rx[] */
	uint32_t rx_top;    /* one above the highest seq ever stored in rx[] (none held at or beyond it) */
	uint32_t held_off;  /* record offset in the held frame proc_seq where processing stopped */
	int blocked;        /* processing stopped by back-pressure (unexpected buffer full) */
	struct vd__rxslot rx[VD__RING];
	uint32_t ack_pending;  /* frames received since our last ack (SOVIA's d) */
	uint64_t ack_deadline; /* delayed ack time, 0: none */
	int ack_now;
	struct vd_req *cur_req;     /* eager message being assembled into a receive */
	struct vd__unexp *cur_unexp; /* ... or into the unexpected buffer */
	uint64_t cur_off;           /* next fragment offset expected */
	uint64_t cur_match, cur_len; /* and its match bits and length (fragments must agree) */
	struct vd__link pulls;      /* our rendezvous receives pulling from this peer */
	uint64_t pull_req_order;    /* pull requests sent to this peer so far (numbers them) */
	uint64_t pull_served;       /* highest such number whose block has had a reply */
	uint64_t last_pull_reply;   /* when the last pull reply from this peer arrived */
	uint64_t pull_inflight;     /* data bytes asked for by the open blocks of our pulls (VD__PULL_PEER_BYTES) */

	uint64_t last_heard;   /* last valid frame from the peer */
	uint64_t busy_since;   /* when we started waiting on it (0: not waiting) */
};

/* --- unexpected messages ---------------------------------------------------------------------------- */
struct vd__unexp {
	struct vd__link link; /* ep->unexp, arrival order */
	struct vd_peer *peer;
	uint64_t match, msg_len;
	uint8_t rndv, sync;
	uint16_t max_payload; /* rndv: the sender's */
	uint32_t send_id;
	uint8_t *data;        /* eager */
	uint64_t got;
	struct vd_req *req;   /* receive that took it while it is still arriving */
	uint64_t cost;        /* bytes charged against unexpected_max */
};

/* --- rendezvous ------------------------------------------------------------------------------------- */
struct vd__pull_blk {
	uint32_t first;    /* first frame index of the block */
	uint64_t want;     /* frames still missing; 0: block free */
	uint64_t deadline; /* re-request time (refreshed by every reply) */
	unsigned tries;
	uint32_t last;     /* highest frame (relative to first) asked for by the latest request */
	uint8_t replied;   /* a reply came since the latest request */
	uint8_t fast;      /* deadline is the short reorder grace, not an RTO: no backoff when it fires */
	uint8_t unsent;    /* the nic had no room for the latest request: it goes on the next pass */
	uint64_t order;    /* the latest request's place in peer->pull_req_order */
	uint32_t bytes;    /* data bytes the block asks for: charged to peer->pull_inflight while want != 0 */
};

struct vd__pull {
	struct vd__link link; /* peer->pulls */
	struct vd_req *req;
	struct vd_peer *peer;
	uint32_t send_id, pull_id;
	uint64_t total;       /* bytes to pull: min(message, receive buffer) */
	uint32_t chunk;       /* data bytes per reply frame */
	uint32_t nframes, next_frame, frames_done;
	uint32_t blk_frames;  /* frames per block */
	struct vd__pull_blk blk[VD__PULL_BLOCKS_MAX];
	uint64_t last_progress;
};

/* A pull request being answered by the sender: frames still to send. */
struct vd__pwork {
	struct vd__link link; /* ep->pwork */
	struct vd_req *req;
	struct vd_peer *peer;
	uint32_t pull_id, first, chunk;
	uint64_t want;
};

/* --- endpoint --------------------------------------------------------------------------------------- */
struct vd_ep {
	struct vd_nic *nic;
	uint32_t flags;
	uint32_t session;
	uint32_t maxp;          /* vd_nic_max_payload */
	uint32_t eager_max, window, ack_every;
	uint64_t delack_ns, combine_ns, rto_min, rto_max, rto_init, peer_timeout, keepalive;
	uint64_t unexp_max, unexp_bytes;
	uint32_t pull_blocks, max_peers, npeers;
	uint32_t next_send_id, next_pull_id;
	uint64_t now;           /* clock read at the start of this progress pass, or by the API call */
	/* The idle gate (progress.c): no timer is due before gate_ns (clock) or gate_tsc (time-stamp
	 * counter, ticking tsc_q16 / 65536 per ns, learnt from the reading tsc_ref at tsc_ref_ns). */
	int gate, tsc_ok;
	uint64_t gate_ns, gate_tsc;
	uint64_t tsc_ref, tsc_ref_ns, tsc_q16;

	struct vd_peer **htab;
	uint32_t hmask;
	struct vd__link peers;
	struct vd__link posted;  /* receives waiting for a message, post order */
	struct vd__link unexp;   /* messages waiting for a receive, arrival order */
	struct vd__link done;    /* completed requests, completion order */
	struct vd__link reqs;    /* every live request */
	struct vd__link pwork;   /* pull replies to send */
	uint32_t npwork;
	uint32_t npulls;         /* rendezvous receives pulling (all peers) */
	struct vd__link gone_q;  /* peers gone, notice not yet collected */
	int unblock;             /* something freed unexpected space or posted a receive */
	int tx_pending;          /* frames queued on the nic since the last flush */
	struct vd_ep_stats stats;

	/* Optional background progress thread. */
	int bg;
	pthread_t bg_thread;
	pthread_mutex_t lock;
	volatile int bg_stop;
};

/* req.c */
struct vd_req *vd__req_new(struct vd_ep *ep, int is_send, const struct iovec *iov, int iovcnt, void *ctx);
void vd__req_free(struct vd_req *req);
/* Moves req to ep->done with the given error (an error already recorded, e.g. -EMSGSIZE, is kept if 0). */
void vd__req_complete(struct vd_req *req, int error);
void vd__iov_copy_to(const struct iovec *iov, int cnt, uint64_t off, const void *src, uint64_t len);
void vd__iov_copy_from(void *dst, const struct iovec *iov, int cnt, uint64_t off, uint64_t len);

/* peer.c */
struct vd_peer *vd__peer_find(struct vd_ep *ep, const struct vd_addr *a);
struct vd_peer *vd__peer_new(struct vd_ep *ep, const struct vd_addr *a, uint32_t prev_session);
void vd__peer_free(struct vd_peer *p);
void vd__peer_gone(struct vd_peer *p, int err);
void vd__rx_frame(struct vd_ep *ep, const uint8_t *data, size_t len, const struct vd_addr *from);
void vd__peer_deliver(struct vd_peer *p);
void vd__peer_timers(struct vd_peer *p);
uint64_t vd__peer_next_deadline(const struct vd_peer *p);
void vd__peer_fill_ack(struct vd_peer *p, struct vd__whdr *h);
int vd__peer_send_ack(struct vd_peer *p, uint8_t extra_flags);
int vd__peer_busy(const struct vd_peer *p);
int vd__tx_copy(struct vd_ep *ep, const struct vd_addr *to, const void *buf, size_t len);

uint64_t vd__reorder_grace(const struct vd_peer *p);

/* match.c */
enum { VD__RX_DONE = 0, VD__RX_BLOCKED = 1 };
int vd__rx_records(struct vd_peer *p, const uint8_t *body, size_t len, uint32_t *pos);
void vd__recv_post(struct vd_ep *ep, struct vd_req *req);
int vd__probe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *st);
void vd__unexp_free(struct vd_ep *ep, struct vd__unexp *u);
void vd__recv_finish(struct vd_req *req, struct vd_peer *p, uint64_t msg_len, int err);

/* eager.c */
int vd__peer_emit(struct vd_peer *p, int force);
void vd__send_enqueue(struct vd_peer *p, struct vd_req *req);
int vd__send_cancel(struct vd_req *req);
int vd__ctrl_push(struct vd_peer *p, uint8_t type, uint32_t send_id);
void vd__on_matched(struct vd_peer *p, uint32_t send_id);
void vd__sent_acked(struct vd_peer *p);

/* rndv.c */
int vd__pull_start(struct vd_req *req, struct vd_peer *p, uint32_t send_id, uint64_t msg_len,
		   uint16_t sender_maxp);
/* unsummed: the whole frame when its checksum is still to verify (vd__wire_decode_hdr_lazy), else NULL.
 * Returns -EBADMSG (nothing done: the caller counts it malformed) when that check fails, else 0. */
int vd__pull_on_reply(struct vd_peer *p, const struct vd__wpull_reply *r, const uint8_t *unsummed);
void vd__pull_on_req(struct vd_peer *p, const struct vd__wpull_req *q);
void vd__pull_on_done(struct vd_peer *p, uint32_t send_id);
void vd__pull_timers(struct vd_peer *p);
uint64_t vd__pull_next_deadline(const struct vd_peer *p);
int vd__pwork_drain(struct vd_ep *ep);
void vd__pwork_purge(struct vd_ep *ep, struct vd_req *req);
void vd__pull_abort(struct vd__pull *pl, int err);

/* progress.c */
enum { VD__GATE_OFF = 0, VD__GATE_CLOCK, VD__GATE_TSC };
void vd__gate_init(struct vd_ep *ep, int virtual_clock);
/* Something changed the timers outside a progress pass (an API call): the next pass runs them all. */
static inline void vd__gate_off(struct vd_ep *ep)
{
	ep->gate = VD__GATE_OFF;
}
int vd__progress(struct vd_ep *ep);
uint64_t vd__next_deadline(struct vd_ep *ep);
int vd__bg_start(struct vd_ep *ep);
void vd__bg_stop(struct vd_ep *ep);
void vd__ep_lock(struct vd_ep *ep);
void vd__ep_unlock(struct vd_ep *ep);

#endif
