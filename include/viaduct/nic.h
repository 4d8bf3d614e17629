/* SPDX-License-Identifier: MIT */
/*
 * viaduct frame I/O ("nic" layer).
 *
 * A nic moves datagrams between this endpoint and peers. A peer is an IPv4 address and a UDP port, and on
 * every backend a frame's payload is exactly a UDP/IPv4 payload, so endpoints on different backends talk to
 * each other (a `udp` endpoint on one host and an `xdp` endpoint on another exchange frames unchanged).
 *
 * Backends:
 *   xdp  AF_XDP socket and UMEM handed over by viaductd; RX either direct (the endpoint's own XSK on a
 *        queue it owns) or software-steered (the XDP dispatcher copies the frame into the endpoint's ring).
 *   udp  plain kernel UDP socket (recvmmsg/sendmmsg): no daemon, no privilege.
 *   sim  in-process simulated link with seeded loss, duplication, reordering, delay and corruption, and a
 *        virtual clock: a protocol test over it replays exactly.
 * In front of xdp or udp, same-host shared memory (vd_nic_opts.same_host_shm) can carry the frames to
 * peers on this host or in this network namespace.
 *
 * Threading: a nic is used by one thread at a time. Distinct nics are independent.
 *
 * Buffers: RX is zero-copy. vd_nic_rx_burst() fills frames whose data points into backend memory (the
 * UMEM, the steering ring or a receive pool); they stay valid until handed back with vd_nic_rx_release(),
 * which must happen in the order they were received. TX is either copy (vd_nic_send, fine for small
 * frames) or zero-copy: vd_nic_tx_alloc() lends buffers in which the caller writes the payload, then
 * vd_nic_tx_burst() queues them and vd_nic_flush() makes sure the backend transmits.
 *
 * Errors: functions returning int return a count or 0 on success, a negative errno on failure.
 */
#ifndef VIADUCT_NIC_H
#define VIADUCT_NIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef VD_API
#define VD_API __attribute__((visibility("default")))
#endif

/* An endpoint address: IPv4 address and UDP port, both in network byte order. */
struct vd_addr {
	uint32_t ip;
	uint16_t port;
	uint16_t _pad;
};

/* Parses "A.B.C.D:PORT" or "HOST:PORT" (HOST resolved through getaddrinfo, IPv4 only). */
VD_API int vd_addr_parse(const char *text, struct vd_addr *out);
/* Formats as "A.B.C.D:PORT" into buf (at least VD_ADDR_STRLEN bytes); returns buf. */
#define VD_ADDR_STRLEN 22
VD_API char *vd_addr_format(const struct vd_addr *a, char *buf, size_t len);

enum vd_backend {
	VD_BACKEND_AUTO = 0, /* xdp if a viaductd answers on the control socket, else udp */
	VD_BACKEND_XDP,
	VD_BACKEND_UDP,
	VD_BACKEND_SIM,
};

enum vd_rx_mode {
	VD_RX_AUTO = 0, /* viaductd's choice: steered (its XSKs are in copy mode, where that is cheaper) */
	VD_RX_DIRECT,   /* own XSK on an owned queue (frames arriving on another queue are still steered) */
	VD_RX_STEERED,  /* XDP copies every frame into the endpoint's ring; TX through a TX-only XSK */
};

struct vd_sim_link;

/* What a frame's data is (vd_nic_opts.layer). */
enum vd_nic_layer {
	VD_NIC_LAYER_UDP = 0, /* a UDP payload; peer is the remote IP and UDP port (the default) */
	/*
	 * A whole IPv4 packet, header first (for a user-level TCP/IP: src/lib/sock). xdp and sim only.
	 * RX: TCP and UDP packets addressed to a port this endpoint owns (its own UDP port, and every port
	 * added with vd_nic_port_add()); the nic checks the IPv4 header (version, IHL, lengths, header
	 * checksum, no fragments) and drops and counts what fails, the L4 header and checksum are the
	 * caller's to check; peer.ip is the source address, peer.port 0. TX: the caller writes the complete
	 * IPv4 packet, checksums included; peer.ip is the destination (the nic resolves the next hop and
	 * adds the link header). vd_nic_max_payload() is then the largest IPv4 packet (the IP MTU).
	 * TX checksum help (optional): with peer.port = VD_NIC_TX_L4_CSUM, the caller leaves in the TCP or
	 * UDP checksum field only the folded pseudo-header sum (not complemented: Linux's CHECKSUM_PARTIAL)
	 * and the nic completes it, in the device through AF_XDP TX metadata where viaductd offers that,
	 * in software otherwise; peer.port 0 sends the packet exactly as written.
	 */
	VD_NIC_LAYER_IPV4,
};
#define VD_NIC_TX_L4_CSUM 1
/* IPv4 layer, or-ed into peer.port: the data was written where vd_nic_tx_pieces() said (see there). */
#define VD_NIC_TX_PLACED 2

struct vd_nic_opts {
	enum vd_backend backend;
	enum vd_rx_mode rx_mode;   /* xdp only */
	const char *local;         /* "IP:PORT" to bind; NULL or port 0: any address, ephemeral port */
	const char *ctl_path;      /* xdp: viaductd socket; NULL: $VIADUCT_SOCKET, else VD_CTL_DEFAULT_PATH */
	const char *ifname;        /* xdp: interface; NULL: the daemon's first interface */
	int queue;                 /* xdp direct: queue to own; -1: any free queue */
	uint32_t ring_frames;      /* xdp: RX/TX ring and UMEM sizing (power of two); 0: default 2048 */
	uint32_t steer_ring_bytes; /* xdp: size of the software-steering ring (power of two); 0: default */
	struct vd_sim_link *sim;   /* sim: the link to attach to (required) */
	/*
	 * Same-host shared memory (xdp and udp; ignored on sim). > 0: frames to a peer on this host or in this
	 * network namespace move through a shared-memory channel once one is up (set up automatically, in the
	 * background, with any peer that has this on and runs under the same uid), the primary backend
	 * otherwise; the nic's semantics do not change (frames may be reordered while a peer switches paths,
	 * as datagrams may be anyway). vd_nic_backend_name() still names the primary; vd_nic_stats() counts
	 * the shm traffic in its shm_* fields. 0 (default): off for vd_nic_open(), on for vd_ep_open().
	 * < 0: off everywhere.
	 */
	int same_host_shm;
	enum vd_nic_layer layer;   /* xdp and sim; VD_NIC_LAYER_IPV4 requires same_host_shm <= 0 */
};

struct vd_frame {
	void *data;          /* UDP payload */
	uint32_t len;        /* payload length (TX: set by the caller; from tx_alloc: the capacity) */
	struct vd_addr peer; /* RX: source; TX: destination */
	uint64_t cookie;     /* backend-private: leave untouched */
};

struct vd_nic_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t tx_frames, tx_bytes;
	uint64_t rx_malformed;  /* dropped by the library: bad headers, checksum, length */
	uint64_t rx_dropped;    /* dropped before the library saw them (ring full), where the backend knows */
	uint64_t tx_busy;       /* tx_alloc/tx_burst found no room */
	/* Same-host shared memory (opts.same_host_shm), already included in the totals above; 0 otherwise. */
	uint64_t shm_rx_frames, shm_tx_frames;
	uint64_t shm_channels;  /* channels up now */
	uint64_t shm_errors;    /* channel set-ups refused or failed, rings abandoned as corrupt */
	/*
	 * TX from lent memory (vd_nic_tx_lend/vd_nic_tx_attach; xdp and sim, 0 elsewhere). tx_lent: TX
	 * buffers out of the nic's pool now (lent, or given back with pieces still queued), a gauge;
	 * tx_lend_refused: lends refused because none was left (-ENOBUFS); tx_att_frames / tx_att_pieces:
	 * frames sent with attached pieces, and those pieces.
	 */
	uint64_t tx_lent, tx_lend_refused;
	uint64_t tx_att_frames, tx_att_pieces;
	/* Frames sent through the endpoint's TX tap (xdp, where viaductd gave one; in tx_frames too). */
	uint64_t tx_tap;
};

struct vd_nic;

VD_API int vd_nic_open(struct vd_nic **out, const struct vd_nic_opts *opts);
VD_API void vd_nic_close(struct vd_nic *nic);

VD_API const char *vd_nic_backend_name(const struct vd_nic *nic); /* "xdp", "udp", "sim" */
VD_API enum vd_rx_mode vd_nic_rx_mode(const struct vd_nic *nic);
VD_API int vd_nic_local_addr(const struct vd_nic *nic, struct vd_addr *out);
/* Largest payload one frame carries on this nic (path MTU minus IPv4 and UDP headers). */
VD_API uint32_t vd_nic_max_payload(const struct vd_nic *nic);

/* Receives up to max frames without blocking; returns how many (0 if none). */
VD_API int vd_nic_rx_burst(struct vd_nic *nic, struct vd_frame *frames, unsigned max);
/* Hands received frames back, oldest first. */
VD_API void vd_nic_rx_release(struct vd_nic *nic, struct vd_frame *frames, unsigned n);

/* Lends up to n TX buffers (data, len = capacity); returns how many. */
VD_API int vd_nic_tx_alloc(struct vd_nic *nic, struct vd_frame *frames, unsigned n);
/* Queues frames filled after tx_alloc (len and peer set); returns how many were queued. Frames not
 * queued remain the caller's: retry them or give them back with vd_nic_tx_abort(). */
VD_API int vd_nic_tx_burst(struct vd_nic *nic, struct vd_frame *frames, unsigned n);
VD_API void vd_nic_tx_abort(struct vd_nic *nic, struct vd_frame *frames, unsigned n);
/*
 * Placed writing (optional, IPv4 layer). A lent buffer is contiguous for the caller, but a backend may
 * have to move part of it before sending: xdp with jumbo frames sends a frame as several 4 KiB chunks
 * with room the kernel wants before each (nic_xdp.c xdp_tx_descs), and moves what lies past the first
 * chunk into place. A caller that writes large data can write it there itself, sparing that move: this
 * fills iov (at most max pieces) with where bytes [off, off + len) of the lent frame f's data go and
 * returns how many pieces (-ENOSPC: more than max would be needed; -EMSGSIZE: past the buffer). The
 * caller then writes the whole frame through the pieces of [0, len) (the headers normally fall in the
 * first one, where the contiguous view agrees) and queues it with VD_NIC_TX_PLACED or-ed into peer.port.
 * On backends without such a layout (sim, udp, xdp with single-chunk buffers) it returns one piece, the
 * contiguous view, and the flag changes nothing. Frames without the flag are sent as written, as ever.
 * At most VD_NIC_TX_PIECES_MAX pieces are ever needed for a whole frame.
 */
#define VD_NIC_TX_PIECES_MAX 16
VD_API int vd_nic_tx_pieces(struct vd_nic *nic, const struct vd_frame *f, uint32_t off, uint32_t len,
			    struct iovec *iov, unsigned max);
/*
 * Lent TX memory (optional, IPv4 layer): sending from memory the caller keeps, without copying it into
 * a TX buffer first (a TCP send ring; issue 4 "large sends without an extra copy").
 * vd_nic_tx_lend lends one region of the nic's TX memory for as long as the caller likes: `chunks`
 * chunks of `stride` bytes from data, of which each chunk's bytes [0, gap) stay the nic's (AF_XDP wants
 * room for TX metadata before every descriptor inside its chunk). -EOPNOTSUPP when the backend cannot
 * send from lent memory (udp; xdp without multi-buffer frames, TX metadata and checksum offload: then
 * copy as ever), -ENOBUFS when none is free or the nic keeps the rest for ordinary TX (at most about half
 * its TX memory is ever lent, so TX buffers never run out because of lending).
 * A frame lent by vd_nic_tx_alloc, with its headers written in data[0, hdr_len), then carries after them
 * up to VD_NIC_TX_ATTACH_MAX pieces of lent memory (vd_nic_tx_attach: each piece inside one chunk, from
 * its gap on); queue it with VD_NIC_TX_ATTACHED (and normally VD_NIC_TX_L4_CSUM: nothing reads the
 * pieces to sum them) or-ed into peer.port and len = hdr_len + the pieces' bytes. The nic counts, per
 * chunk, the pieces queued and not yet completed by the device (AF_XDP: from submission until their
 * address comes back on the completion ring, in any order): the caller must not write a chunk while
 * vd_nic_tx_busy (which takes completions first) says it is busy. Reading it is always fine.
 * vd_nic_tx_unlend gives a region back; the nic reuses it only once nothing queued refers to it.
 * On the sim backend the pieces' bytes are also checked, when the completion comes (vd_sim_params
 * tx_complete_ns later), to be what they were when queued (vd_sim_counters.tx_rewritten counts
 * violations), so a test sees a caller that writes busy memory.
 */
struct vd_nic_lent {
	uint8_t *data;    /* the first chunk */
	uint64_t id;      /* the nic's name for the region: leave untouched */
	uint32_t chunks;  /* chunks of stride bytes from data */
	uint32_t stride;
	uint32_t gap;     /* each chunk's first gap bytes are the nic's */
};
#define VD_NIC_TX_ATTACH_MAX 16
#define VD_NIC_TX_ATTACHED 4
VD_API int vd_nic_tx_lend(struct vd_nic *nic, struct vd_nic_lent *out);
VD_API void vd_nic_tx_unlend(struct vd_nic *nic, const struct vd_nic_lent *l);
/* > 0: pieces in chunk `chunk` of l are queued and not completed (do not write it); 0: free. */
VD_API int vd_nic_tx_busy(struct vd_nic *nic, const struct vd_nic_lent *l, uint32_t chunk);
/* Attaches pieces (iov_base inside lent memory) to f (lent by vd_nic_tx_alloc, hdr_len header bytes in
 * f->data); -EINVAL for a piece outside lent memory or across a chunk, -ENOSPC past the maximum. */
VD_API int vd_nic_tx_attach(struct vd_nic *nic, struct vd_frame *f, uint32_t hdr_len, const struct iovec *iov,
			    unsigned n);
/* Makes sure queued frames are on their way (a doorbell for xdp, a no-op where sending is immediate). */
VD_API int vd_nic_flush(struct vd_nic *nic);
/* Copying convenience: alloc, copy, burst and flush one frame. */
VD_API int vd_nic_send(struct vd_nic *nic, const struct vd_addr *to, const void *data, size_t len);

/* A file descriptor that becomes readable when frames may be waiting (for poll/epoll). On sim: an eventfd
 * that is readable exactly while a frame is due at the virtual clock's current time. Before blocking on it
 * in your own poll loop, call vd_nic_wait(nic, 0): it arms the wakeup (the xdp backend keeps wakeups off
 * while the caller busy-polls, as they cost microseconds per frame) and returns 1 if frames already wait. */
VD_API int vd_nic_fd(const struct vd_nic *nic);
/* Blocks until a frame may be waiting or timeout_ms passes (-1: forever); returns 1, 0 on timeout. On the
 * sim backend this advances the virtual clock instead of sleeping: to this nic's next due frame or the
 * timeout, whichever is first; with nothing in flight to this nic and -1, it returns 0 at once. */
VD_API int vd_nic_wait(struct vd_nic *nic, int timeout_ms);
/* Monotonic time in ns: the real clock, or the virtual one on sim. Protocol engines use only this. */
VD_API uint64_t vd_nic_now_ns(const struct vd_nic *nic);

VD_API void vd_nic_stats(const struct vd_nic *nic, struct vd_nic_stats *out);

/*
 * Port ownership beyond the endpoint's own UDP port (xdp and sim). proto is IPPROTO_TCP or IPPROTO_UDP.
 * vd_nic_port_add: from now on, packets to (this endpoint's IP, proto, *port_be) come to this nic; the
 * port is reserved host-wide (kernel sockets cannot bind it). *port_be == 0 picks a free ephemeral port
 * and writes it back. -EADDRINUSE when another endpoint or a kernel socket holds it, -ENOSPC past the
 * daemon's per-endpoint limit, -EOPNOTSUPP on udp.
 * vd_nic_port_del: gives it back. hold_ms > 0 keeps it reserved (steered nowhere: packets to it are
 * dropped, never answered by the kernel) for that long, the daemon's way of keeping TCP TIME-WAIT
 * (RFC 9293 3.6.1) after the process closed or exited; 0 frees it at once.
 * When the process exits or crashes, viaductd reclaims its ports: ephemeral TCP ports (those it picked) are
 * held for its TIME-WAIT period, as their connections may not have ended cleanly; ports asked for by
 * number are freed at once (a restarted server binds again, as SO_REUSEADDR allows with the kernel).
 * On xdp, to keep viaductd off the path of each connection: ephemeral ports are reserved several at a
 * time and the ones not handed out yet wait in the nic (given back when it closes; held like the rest if
 * the process dies first), and a del with a hold returns 0 without waiting for viaductd: holds are
 * gathered into one message (sent within about 1 ms of progress, when the process waits in the nic,
 * before any later request of this process and at close), the nic drops the port's frames itself until
 * then, and a hold viaductd refuses (too many held ports) leaves the port with the endpoint (held when it
 * goes) and is counted, not returned. A del without a hold still waits: the port is free when it returns.
 */
VD_API int vd_nic_port_add(struct vd_nic *nic, int proto, uint16_t *port_be);
VD_API int vd_nic_port_del(struct vd_nic *nic, int proto, uint16_t port_be, uint32_t hold_ms);

/* --- sim backend ---------------------------------------------------------------------------------- */

struct vd_sim_params {
	uint64_t seed;
	uint32_t loss_ppm;      /* each frame is lost with this probability (parts per million) */
	uint32_t dup_ppm;       /* ... duplicated */
	uint32_t reorder_ppm;   /* ... held back by an extra reorder_ns */
	uint32_t corrupt_ppm;   /* ... has one byte flipped (then dropped by the receiver's checksum) */
	uint64_t delay_ns;      /* one-way delay */
	uint64_t jitter_ns;     /* uniform extra delay in [0, jitter_ns] */
	uint64_t reorder_ns;
	uint32_t mtu;           /* IP MTU; 0: 1500 */
	uint32_t queue_frames;  /* frames in flight per receiver before tail drop; 0: 4096 */
	uint64_t tx_complete_ns; /* lent TX memory (vd_nic_tx_lend): a piece completes this long after it was
				  * queued (0: at the next call that looks) */
};

VD_API int vd_sim_link_new(struct vd_sim_link **out, const struct vd_sim_params *params);
/* The link must outlive its nics. */
VD_API void vd_sim_link_free(struct vd_sim_link *link);
/* The virtual clock starts at 1 s (not 0, which protocol code often reads as "never"). */
VD_API uint64_t vd_sim_now_ns(const struct vd_sim_link *link);
/* Moves the virtual clock forward, delivering what falls due. */
VD_API void vd_sim_advance(struct vd_sim_link *link, uint64_t ns);

struct vd_sim_counters {
	uint64_t sent, delivered, lost, duplicated, reordered, corrupted, overflowed;
	uint64_t unroutable;    /* sent to an address no nic on the link holds (not counted in lost) */
	uint64_t tx_rewritten;  /* lent TX memory written while a queued piece referred to it */
	uint64_t tx_attached;   /* pieces of lent TX memory sent */
};
VD_API void vd_sim_counters(const struct vd_sim_link *link, struct vd_sim_counters *out);

#ifdef __cplusplus
}
#endif
#endif /* VIADUCT_NIC_H */
