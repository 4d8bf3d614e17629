/* SPDX-License-Identifier: MIT */
/*
 * viaduct message passing: reliable tagged messages between endpoints (the Myrinet Express model as
 * Open-MX runs it over Ethernet, with SOVIA's flow control).
 *
 * An endpoint is an IPv4 address and a UDP port on top of a frame I/O nic (viaduct/nic.h: xdp, udp or sim
 * backend). Messages carry 64-bit match bits; a receive names the bits it wants and a mask of the bits it
 * cares about. Delivery is reliable, exactly once and, per (sender endpoint, receiver endpoint) pair, in
 * order: two messages from the same sender that both match a receive are matched in the order they were
 * sent (the MPI non-overtaking rule). The wire protocol is described in docs/msg-protocol.md.
 *
 * Sizes: messages up to the eager threshold (default 32 KiB) are sent at once ("eager") and buffered by the
 * receiver if no receive is posted yet; larger ones announce themselves and the receiver pulls the data
 * straight into the receive buffer once matched ("rendezvous", Open-MX pull). Any length up to 2^48 bytes
 * is accepted (tested to 64 MiB on the sim backend; the protocol has no 1 GiB limit).
 *
 * Requests: vd_isend/vd_issend/vd_irecv return a request handle at once. A request is finished when
 * vd_test/vd_wait/vd_test_any/vd_wait_any report it complete; that call frees it and the handle is no longer
 * valid. Buffers handed to a request belong to the library until then. Every request carries a context
 * pointer of the caller's choosing, given back in its status.
 *
 * Send completion: a vd_isend completes when the receiving endpoint's library has the whole message (eager:
 * all of its frames are acknowledged; rendezvous: the receiver has pulled it), whether or not a receive has
 * matched it yet. A vd_issend completes only once a receive has matched the message (MPI synchronous send).
 *
 * Progress: the library makes progress only inside its calls, in the calling thread (SOVIA's lesson: no
 * helper thread on the latency path). Call vd_test/vd_wait/vd_ep_progress often enough; a peer that never
 * calls into its endpoint does not acknowledge, and its senders retransmit. For applications that compute
 * for long periods, VD_EP_PROGRESS_THREAD starts a background thread that makes progress when the
 * application does not; it costs a mutex around every call and cache-line traffic between two cores, so it
 * lengthens small-message latency (see docs/msg-protocol.md, "Progress").
 *
 * Threading: an endpoint is used by one thread at a time (calls on one endpoint must not run concurrently,
 * the background progress thread excepted, which the library serialises itself). Distinct endpoints are
 * independent; a process may open several.
 *
 * Errors: functions returning int return 0 (or a count / boolean as documented) on success and a negative
 * errno on failure. A request's own outcome is in its status (struct vd_status.error).
 */
#ifndef VIADUCT_MSG_H
#define VIADUCT_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <viaduct/nic.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vd_ep;   /* an endpoint (opaque) */
struct vd_peer; /* a remote endpoint as seen from one local endpoint (opaque, owned by the endpoint) */
struct vd_req;  /* an outstanding request (opaque) */

/* vd_ep_opts.flags */
enum {
	/* Send every message at once instead of combining queued small messages into one frame (the
	 * TCP_NODELAY of SOVIA's message combining). Lowers latency of back-to-back sends, costs frames. */
	VD_EP_NODELAY = 1u << 0,
	/* Start a background progress thread (not allowed on the sim backend: its clock is virtual). */
	VD_EP_PROGRESS_THREAD = 1u << 1,
};

/*
 * Endpoint options. Initialise with vd_ep_opts_init() and change what you need; zero fields mean the
 * default shown.
 */
struct vd_ep_opts {
	struct vd_nic_opts nic;       /* the frame I/O layer to open under the endpoint (backend, address) */
	uint32_t flags;               /* VD_EP_* */
	uint32_t eager_max;           /* largest eager message in bytes; 32 KiB; at most VD_EAGER_LIMIT */
	uint32_t window;              /* w: frames a sender may have unacknowledged per peer; 64 (16..64) */
	uint32_t ack_every;           /* t: frames received before an ack goes out on its own; w/4 (1..w) */
	uint32_t delayed_ack_us;      /* longest time an ack waits for a frame to ride on; 50 us */
	uint32_t combine_us;          /* longest time a small message waits to be combined; 20 us */
	uint32_t rto_min_us;          /* lower bound of the retransmission timeout; 2000 us */
	uint32_t rto_max_us;          /* upper bound, also of the backoff; 1 s */
	uint32_t peer_timeout_ms;     /* a peer silent this long while we wait on it is gone; 10 s */
	uint64_t unexpected_max;      /* bytes of unexpected messages buffered before back-pressure; 16 MiB */
	uint32_t pull_blocks;         /* rendezvous: pull requests in flight per message; 4 (1..16) */
	uint32_t max_peers;           /* peers one endpoint keeps state for; 4096 */
};

/* Largest eager threshold allowed (the receiver must buffer that much for an unexpected message). */
#define VD_EAGER_LIMIT (1u << 20)

VD_API void vd_ep_opts_init(struct vd_ep_opts *opts);

/* Opens an endpoint (and its nic). opts NULL: all defaults (backend auto, any address). */
VD_API int vd_ep_open(struct vd_ep **out, const struct vd_ep_opts *opts);
/* Closes the endpoint: outstanding requests are dropped without completion, peers are not told (they find
 * out by their timeout or the reset answer a new endpoint on the same address gives). */
VD_API void vd_ep_close(struct vd_ep *ep);
/* The endpoint's own address (what peers resolve). */
VD_API int vd_ep_addr(const struct vd_ep *ep, struct vd_addr *out);
/* The underlying nic (for its statistics and backend name); owned by the endpoint. */
VD_API struct vd_nic *vd_ep_nic(const struct vd_ep *ep);
/* An fd that becomes readable when frames may be waiting. Before blocking on it, call vd_ep_progress()
 * until it returns 0, and do not block longer than vd_ep_timeout_ms() says: timers (retransmission,
 * delayed acks) run only inside library calls. */
VD_API int vd_ep_fd(const struct vd_ep *ep);
/* Runs the protocol once without blocking; returns how many frames were received or sent (0: idle). */
VD_API int vd_ep_progress(struct vd_ep *ep);
/* Milliseconds until the endpoint's next timer (-1: none pending), for poll() on vd_ep_fd(). */
VD_API int vd_ep_timeout_ms(struct vd_ep *ep);

/* Peer handle for "A.B.C.D:PORT" or "HOST:PORT" (IPv4). The same address gives the same handle while
 * that peer is alive; handles stay valid until the endpoint closes. */
VD_API int vd_peer_resolve(struct vd_ep *ep, const char *text, struct vd_peer **out);
VD_API int vd_peer_from_addr(struct vd_ep *ep, const struct vd_addr *addr, struct vd_peer **out);
VD_API int vd_peer_addr(const struct vd_peer *peer, struct vd_addr *out);
/* 0 while the peer is usable; -ECONNRESET (it restarted or reset us) or -ETIMEDOUT (silent past
 * peer_timeout_ms) once it is gone. A gone peer stays gone: sends to it fail with that error; if the
 * remote endpoint comes back, vd_peer_resolve() gives a new handle. */
VD_API int vd_peer_state(const struct vd_peer *peer);
/*
 * Peer-gone notices: returns 1 and the next peer declared gone (with its error) since the last call, or 0
 * if there is none. The pending requests that depended on that peer have already completed with the error.
 */
VD_API int vd_ep_peer_gone(struct vd_ep *ep, struct vd_peer **peer, int *error);

/* What a completed request reports. */
struct vd_status {
	int error;            /* 0; -EMSGSIZE: receive truncated (msg_len is the full length); -ECONNRESET or
	                       * -ETIMEDOUT: the peer is gone; -ECANCELED: cancelled */
	int is_send;          /* 1 for send requests, 0 for receives */
	struct vd_peer *peer; /* receive: the source; send: the destination */
	uint64_t match;       /* the message's match bits */
	uint64_t msg_len;     /* the message's length as sent */
	uint64_t xfer_len;    /* bytes placed in the receive buffer (send: bytes delivered) */
	void *context;        /* the request's context pointer */
};

/*
 * Sends len bytes at buf to peer with the given match bits. Completes as described at the top. The buffer
 * must stay unchanged until completion. -EINVAL bad arguments; peer gone: the peer's error.
 */
VD_API int vd_isend(struct vd_ep *ep, const void *buf, size_t len, struct vd_peer *peer, uint64_t match,
		    void *context, struct vd_req **req);
/* The same, completing only once the message has been matched by a receive at the peer. */
VD_API int vd_issend(struct vd_ep *ep, const void *buf, size_t len, struct vd_peer *peer, uint64_t match,
		     void *context, struct vd_req **req);
/* Gather variants: the message is the concatenation of iov[0..iovcnt) (iovcnt <= VD_IOV_MAX). */
#define VD_IOV_MAX 64
VD_API int vd_isendv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, struct vd_peer *peer,
		     uint64_t match, void *context, struct vd_req **req);
VD_API int vd_issendv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, struct vd_peer *peer,
		      uint64_t match, void *context, struct vd_req **req);

/*
 * Receives the first message, in arrival order (per sender: send order), whose match bits m satisfy
 * (m & mask) == (match & mask), from any peer. A message longer than len fills the buffer and completes
 * with -EMSGSIZE, msg_len holding its full length.
 */
VD_API int vd_irecv(struct vd_ep *ep, void *buf, size_t len, uint64_t match, uint64_t mask, void *context,
		    struct vd_req **req);
/* Scatter variant. */
VD_API int vd_irecvv(struct vd_ep *ep, const struct iovec *iov, int iovcnt, uint64_t match, uint64_t mask,
		     void *context, struct vd_req **req);

/*
 * Completion. vd_test: 1 and *status filled if *req is complete (the request is freed and *req set to
 * NULL), 0 if not yet. vd_wait: the same, blocking up to timeout_ms (-1: forever); 0 on timeout.
 * vd_test_any / vd_wait_any: the oldest completed request of the endpoint; *req is set to its handle,
 * already freed, for identification only (the status's context pointer is the usual way to tell requests
 * apart). status may be NULL.
 */
VD_API int vd_test(struct vd_ep *ep, struct vd_req **req, struct vd_status *status);
VD_API int vd_wait(struct vd_ep *ep, struct vd_req **req, struct vd_status *status, int timeout_ms);
VD_API int vd_test_any(struct vd_ep *ep, struct vd_req **req, struct vd_status *status);
VD_API int vd_wait_any(struct vd_ep *ep, struct vd_req **req, struct vd_status *status, int timeout_ms);
/* The context pointer given when the request was made. */
VD_API void *vd_req_context(const struct vd_req *req);

/*
 * Probing: 1 and *status (peer, match, msg_len; xfer_len 0) if a message matching (match, mask) has
 * arrived and no receive has taken it yet (the one the next vd_irecv with the same arguments would get);
 * 0 if none. vd_probe waits up to timeout_ms (-1: forever).
 */
VD_API int vd_iprobe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *status);
VD_API int vd_probe(struct vd_ep *ep, uint64_t match, uint64_t mask, struct vd_status *status,
		    int timeout_ms);

/*
 * Cancels a request: 0 if done, after which the request completes with -ECANCELED (collect it with
 * vd_test/vd_wait as any other); -EBUSY if it is too late: a receive already matched, a send whose first
 * frame has left. The request then completes normally.
 */
VD_API int vd_cancel(struct vd_ep *ep, struct vd_req *req);

/* Endpoint counters (protocol events; frame counters are in vd_nic_stats). */
struct vd_ep_stats {
	uint64_t msgs_sent, msgs_received;
	uint64_t frames_sent, frames_received;
	uint64_t retransmits;      /* data frames sent again (timeout or selective-ack hole) */
	uint64_t dup_frames;       /* frames received twice and dropped */
	uint64_t out_of_order;     /* data frames received ahead of a gap and kept */
	uint64_t malformed;        /* frames failing the wire checks, dropped */
	uint64_t acks_sent;        /* pure ack frames */
	uint64_t pull_requests, pull_retransmits;
	uint64_t backpressure;     /* times a peer's stream stopped because unexpected buffering was full */
	uint64_t peers_gone;
};
VD_API void vd_ep_stats(const struct vd_ep *ep, struct vd_ep_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VIADUCT_MSG_H */
