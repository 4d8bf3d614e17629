/* SPDX-License-Identifier: MIT */
/*
 * The viaductd control protocol, shared by the daemon and the library. docs/protocol.md describes it for
 * people; this header is the definition.
 *
 * Transport: a Unix stream socket (default VD_CTL_DEFAULT_PATH). Each message is one vd_ctl_hdr followed by
 * a payload; hdr.len counts both. Replies echo the request's seq and carry type | VD_CTL_REPLY; a reply
 * with status < 0 (a negative errno) carries an optional NUL-terminated reason text instead of the
 * payload. File descriptors travel as SCM_RIGHTS ancillary data on the reply's first byte.
 *
 * All integers are in host byte order (both ends are on one host) except fields named *_be, which are
 * network byte order because they go on the wire or into BPF maps as they are. Every message is checked
 * by vd__ctl_check() before anything reads it: magic, version, known type, exact length for fixed
 * payloads, bounded length for variable ones, NUL-terminated strings, enums in range. A message that fails
 * gets an error reply; the connection is closed only when framing is lost (bad magic or length).
 *
 * An endpoint lives as long as the connection that opened it: when the peer closes the socket or dies,
 * viaductd reclaims everything that connection held.
 */
#ifndef VD_CTL_PROTO_H
#define VD_CTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define VD_CTL_DEFAULT_PATH "/run/viaduct/viaductd.sock"
#define VD_CTL_ENV_PATH "VIADUCT_SOCKET"

#define VD_CTL_MAGIC 0x54434456u /* "VDCT" in little-endian memory order */
#define VD_CTL_VERSION 1
#define VD_CTL_MAX_MSG 65536u
#define VD_CTL_MAX_FDS 5
#define VD_CTL_IFNAMSIZ 16
#define VD_CTL_REASON_MAX 128

enum vd_ctl_type {
	VD_CTL_EP_OPEN = 1,   /* open an endpoint: reply carries fds */
	VD_CTL_EP_CLOSE,      /* close one endpoint of this connection */
	VD_CTL_NEIGH,         /* resolve the next-hop MAC address for an IPv4 destination */
	VD_CTL_STAT,          /* list interfaces and endpoints with counters */
	VD_CTL_PORT_RESERVE,  /* own a UDP or TCP port (reserved in the kernel too) for this connection */
	VD_CTL_PORT_RELEASE,
	VD_CTL_EP_PORT_ADD,   /* steer a TCP or UDP port to an endpoint (and reserve it in the kernel) */
	VD_CTL_EP_PORT_DEL,   /* stop steering it: free it, or hold it (dropped, still reserved) a while */
	VD_CTL_EP_PORTS_ADD,  /* EP_PORT_ADD of several ephemeral ports in one request */
	VD_CTL_EP_PORTS_DEL,  /* EP_PORT_DEL of several ports in one request, optionally without a reply */
	VD_CTL_TYPE_MAX_ = VD_CTL_EP_PORTS_DEL,
};
#define VD_CTL_REPLY 0x8000u

struct vd_ctl_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len;    /* header + payload, bytes */
	uint32_t seq;    /* chosen by the requester, echoed in the reply */
	int32_t status;  /* requests: 0; replies: 0 or -errno */
	uint32_t nfds;   /* replies: file descriptors attached (SCM_RIGHTS) */
};

/* RX modes on the wire (same values as enum vd_rx_mode in viaduct/nic.h). */
enum vd_ctl_rx_mode { VD_CTL_RX_AUTO = 0, VD_CTL_RX_DIRECT = 1, VD_CTL_RX_STEERED = 2 };

struct vd_ctl_ep_open_req {
	char ifname[VD_CTL_IFNAMSIZ]; /* "" = the daemon's first interface */
	uint32_t ip_be;               /* 0 = the interface's address */
	uint16_t port_be;             /* 0 = ephemeral */
	uint8_t rx_mode;              /* enum vd_ctl_rx_mode */
	uint8_t _pad;
	int32_t queue;                /* direct: queue wanted, -1 any */
	uint32_t ring_frames;         /* power of two, VD_CTL_RING_MIN..VD_CTL_RING_MAX; 0 = default */
	uint32_t steer_ring_bytes;    /* power of two multiple of the page size; 0 = default */
};
#define VD_CTL_RING_MIN 64u
#define VD_CTL_RING_MAX 16384u
#define VD_CTL_RING_DEFAULT 2048u
#define VD_CTL_STEER_RING_MIN (64u << 10)
#define VD_CTL_STEER_RING_MAX (64u << 20)
#define VD_CTL_STEER_RING_DEFAULT (4u << 20)

/*
 * Reply to EP_OPEN. fds, in this order: [0] UMEM memfd, [1] XSK, [2] steering ring (BPF ringbuf map fd,
 * mmap-only: the consumer page read-write at offset 0, producer page and data read-only after it),
 * [3] stats memfd (one page: struct vd_ctl_ep_shared, written by the library, read by the daemon),
 * and, when tap_tx_max != 0, [4] the TX tap: a queue of a tap device that belongs to this endpoint alone
 * (O_NONBLOCK), whose XDP program redirects every frame written to it to the interface (the driver's
 * ndo_xdp_xmit). One write() sends one frame of at most tap_tx_max bytes from its Ethernet header, with
 * its checksums complete; the copy is made before write() returns (no completion to wait for). Where
 * write() fails the tap is gone (the daemon removed it: the interface can no longer take redirected
 * frames) and the XSK is the way out.
 *
 * UMEM layout: umem_frames frames of frame_size bytes. Frames [0, rx_frames) are for the fill ring (direct
 * mode; steered endpoints get rx_frames = 0), frames [rx_frames, umem_frames) for TX. The XSK is bound to
 * (ifindex, queue) with XDP_USE_NEED_WAKEUP; rings have the sizes given. The library maps them itself
 * (getsockopt XDP_MMAP_OFFSETS, mmap at XDP_PGOFF_*_RING / XDP_UMEM_PGOFF_*_RING).
 */
struct vd_ctl_ep_open_rep {
	uint32_t ep_id;
	uint32_t ifindex;
	char ifname[VD_CTL_IFNAMSIZ];
	uint8_t mac[6];               /* the interface's MAC: source of every frame sent */
	uint8_t rx_mode;              /* what was granted: VD_CTL_RX_DIRECT or VD_CTL_RX_STEERED */
	/*
	 * Multi-buffer AF_XDP (was padding: 0 from a daemon without it, which means 1). max_frags: UMEM
	 * chunks one frame may span, on RX (descriptors with XDP_PKT_CONTD on all but the last) and TX
	 * (the XSK is bound with XDP_USE_SG when > 1), at most VD_CTL_MAX_FRAGS.
	 */
	uint8_t max_frags;
	uint32_t ip_be;               /* local address and port of the endpoint */
	uint16_t port_be;
	/* tx_frags: the TX frames [rx_frames, umem_frames) form buffers of tx_frags consecutive chunks each
	 * (1 or 0: one chunk; otherwise <= max_frags and dividing umem_frames - rx_frames). */
	uint16_t tx_frags;
	uint32_t prefix_len;          /* the interface's IPv4 prefix length */
	uint32_t mtu;                 /* IP MTU of the interface */
	uint32_t queue;               /* queue the XSK is bound to */
	uint32_t frame_size;          /* UMEM frame size (power of two) */
	uint32_t umem_frames;
	uint32_t rx_frames;           /* UMEM frames reserved for RX (fill ring), starting at frame 0 */
	uint32_t rx_ring, tx_ring, fill_ring, comp_ring; /* ring sizes, entries */
	uint32_t steer_ring_bytes;    /* data size of the steering ring (0 if none) */
	uint32_t stats_bytes;         /* size of the stats memfd */
	uint32_t tx_meta_len;         /* AF_XDP TX metadata bytes before each TX packet (0: none) */
	uint32_t tx_offloads;         /* VD_CTL_TXO_*: what that metadata can ask of the device */
	uint32_t tap_tx_max;          /* largest frame for the TX tap, fd [4]; 0: no TX tap (4 fds) */
};
/* A TX tap takes frames that fit a page with the room tun's XDP path wants (tun_can_build_skb:
 * XDP_PACKET_HEADROOM, NET_SKB_PAD, skb_shared_info); larger ones would take its skb path, slower than
 * the XSK's. 2048 covers a full MTU-1500 frame. */
#define VD_CTL_TAP_TX_MAX 2048u
#define VD_CTL_MAX_FRAGS 16u /* = VD_BPF_MAX_FRAGS */
/* The device completes the UDP checksum (struct xsk_tx_metadata, XDP_TXMD_FLAGS_CHECKSUM). */
#define VD_CTL_TXO_CSUM 1u

/* The per-endpoint page shared with the daemon (stats memfd): counters only the library knows. */
struct vd_ctl_ep_shared {
	uint64_t tx_frames, tx_bytes;
	uint64_t rx_frames, rx_bytes;   /* frames the library consumed */
	uint64_t rx_malformed;
	uint64_t tx_busy;
	/* The sockets layer (src/lib/sock), when it runs on this endpoint: sockets open now, and sockets
	 * handed to the kernel since the process started (fallback). Relaxed stores, read one by one. */
	uint64_t sock_tcp, sock_udp;
	uint64_t sock_fallback;
	/* TX from lent memory (vd_nic_stats of the same names): TX buffers lent now (a gauge), lends refused,
	 * frames sent with attached pieces and the pieces. */
	uint64_t tx_lent, tx_lend_refused;
	uint64_t tx_att_frames, tx_att_pieces;
	/* Frames sent through the TX tap (counted in tx_frames too). */
	uint64_t tx_tap;
};

struct vd_ctl_ep_close_req {
	uint32_t ep_id;
};

struct vd_ctl_neigh_req {
	uint32_t ifindex;
	uint32_t ip_be;
};
struct vd_ctl_neigh_rep {
	uint8_t mac[6];
	uint16_t _pad;
	uint32_t next_hop_be;   /* the gateway when ip is off-link, else ip itself */
};

enum vd_ctl_proto { VD_CTL_PROTO_UDP = 17, VD_CTL_PROTO_TCP = 6 };
struct vd_ctl_port_req {
	uint32_t ifindex;     /* 0 = the daemon's first interface */
	uint16_t port_be;     /* 0 = ephemeral (reserve only) */
	uint8_t proto;        /* enum vd_ctl_proto */
	uint8_t _pad;
};
struct vd_ctl_port_rep {
	uint16_t port_be;
	uint16_t _pad;
};

/*
 * EP_PORT_ADD / EP_PORT_DEL (request vd_ctl_ep_port_req; ADD replies vd_ctl_port_rep, DEL nothing).
 * ADD: port_be 0 = an ephemeral port chosen by the kernel; hold_ms must be 0. The daemon binds a kernel
 * socket of that protocol to (the interface's address, port) and points the port's dispatcher entry at
 * the endpoint, which must belong to the requesting connection. Errors: -ENOENT no such endpoint,
 * -EEXIST the endpoint has it already, -EADDRINUSE someone else (kernel socket, another endpoint, a
 * hold) has it, -EACCES a port below net.ipv4.ip_unprivileged_port_start for a client that is not root,
 * -ENOSPC past VD_CTL_EP_PORTS_MAX ports.
 * DEL: hold_ms 0 frees the port at once; > 0 (at most VD_CTL_HOLD_MAX_MS) keeps the kernel reservation
 * and makes the dispatcher drop the port's frames (never handed to the kernel, which would answer with a
 * RST or an ICMP error) until the hold ends. -ENOENT when the endpoint does not own the port.
 */
#define VD_CTL_EP_PORTS_MAX 1024u
#define VD_CTL_HOLD_MAX_MS (600u * 1000u)
struct vd_ctl_ep_port_req {
	uint32_t ep_id;
	uint16_t port_be;
	uint8_t proto;        /* enum vd_ctl_proto */
	uint8_t _pad;         /* 0 */
	uint32_t hold_ms;     /* DEL only */
};

/*
 * EP_PORTS_ADD / EP_PORTS_DEL (request vd_ctl_ep_ports_req; ADD replies vd_ctl_ep_ports_rep, DEL nothing):
 * the batch forms of EP_PORT_ADD / EP_PORT_DEL, added so that a connect-heavy client pays one round trip
 * per batch of ephemeral ports rather than two per connection. Same rules and errors per port.
 * ADD: count (1..VD_CTL_PORTS_BATCH_MAX) ephemeral ports; port_be[] and hold_ms 0, flags 0. The reply lists
 * the ports reserved: as many as asked, or fewer (at least 1) when a limit (VD_CTL_EP_PORTS_MAX, the
 * kernel's range) stopped the batch early; an error reply when not even one could be reserved. The ports
 * are the endpoint's like any other: a client keeps the ones it has not used yet and gives them back
 * with DEL (they are ephemeral, so a dead client's are held for TIME-WAIT like its used ones).
 * DEL: count ports port_be[0..count) (each non-zero; the rest of the array 0), all with hold_ms. Each
 * port is done on its own: one that fails stays the endpoint's and the others go on; the reply's status
 * is then the first failure. flags VD_CTL_PORTS_QUIET: reply only on failure, so a client can send it
 * and go on (the reply, if any, comes later, matched by seq; see client.h).
 */
#define VD_CTL_PORTS_BATCH_MAX 64u
#define VD_CTL_PORTS_QUIET 1u
struct vd_ctl_ep_ports_req {
	uint32_t ep_id;
	uint8_t proto;        /* enum vd_ctl_proto */
	uint8_t flags;        /* DEL: VD_CTL_PORTS_QUIET or 0; ADD: 0 */
	uint16_t count;       /* 1..VD_CTL_PORTS_BATCH_MAX */
	uint32_t hold_ms;     /* DEL only */
	uint16_t port_be[VD_CTL_PORTS_BATCH_MAX];
};
struct vd_ctl_ep_ports_rep {
	uint16_t count;       /* 1..the request's count */
	uint16_t _pad;
	uint16_t port_be[VD_CTL_PORTS_BATCH_MAX]; /* [count..] are 0 */
};

/*
 * STAT reply: vd_ctl_stat_rep, then n_ifaces vd_ctl_stat_iface, then n_eps vd_ctl_stat_ep, then n_ports
 * vd_ctl_stat_port (ports added to endpoints and held ports; as many as fit in one message), then
 * (added later, optional: a daemon without it ends the reply before) n_ifaces vd_ctl_stat_spares, in the
 * same order as the interfaces.
 */
#define VD_CTL_MAX_IFACES 16
#define VD_CTL_MAX_EPS 256
struct vd_ctl_stat_rep {
	uint32_t n_ifaces;
	uint32_t n_eps;
	uint32_t daemon_pid;
	uint32_t n_ports;
};
#define VD_CTL_STAT_PORT_EPHEMERAL 1u /* chosen by the kernel: held for TIME-WAIT if the endpoint dies */
#define VD_CTL_STAT_PORT_HELD 2u      /* no endpoint: dropped until the hold ends */
struct vd_ctl_stat_port {
	uint32_t ep_id;       /* owner (meaningless when held) */
	uint32_t ifindex;
	uint16_t port_be;
	uint8_t proto;
	uint8_t flags;        /* VD_CTL_STAT_PORT_* */
	uint32_t hold_left_ms;
};
struct vd_ctl_stat_iface {
	char ifname[VD_CTL_IFNAMSIZ];
	uint32_t ifindex;
	uint32_t ip_be;
	uint32_t mtu;
	uint32_t queues;
	uint32_t xdp_mode;              /* 1 native (driver), 2 generic (skb) */
	uint32_t _pad;
	uint64_t passed;                /* frames handed to the kernel unchanged */
	uint64_t malformed;             /* IPv4/UDP headers that fail the dispatcher's checks (passed on) */
	uint64_t steered, redirected;   /* to an endpoint ring / XSK */
	uint64_t ring_full;             /* dropped: the endpoint's ring was full */
	uint64_t too_big;               /* dropped: larger than the biggest steering size class */
	uint64_t held;                  /* dropped: for a port held after its endpoint let it go */
};
struct vd_ctl_stat_ep {
	uint32_t ep_id;
	uint32_t pid, uid;
	char ifname[VD_CTL_IFNAMSIZ];
	uint32_t ip_be;
	uint16_t port_be;
	uint8_t rx_mode;
	uint8_t _pad;
	uint32_t queue;
	uint32_t _pad2;
	uint64_t rx_redirected, rx_steered, rx_bytes, rx_dropped; /* counted by the dispatcher */
	uint64_t xsk_rx_dropped, xsk_rx_ring_full, xsk_tx_invalid; /* XDP_STATISTICS */
	struct vd_ctl_ep_shared lib;                               /* counted by the library */
	uint32_t n_ports;                                          /* ports added (all, listed or not) */
	uint32_t _pad3;
};
/* What viaductd holds ahead of time on one interface (src/daemon/ringpool.c, port.c), and its held ports. */
struct vd_ctl_stat_spares {
	uint32_t ifindex;
	uint32_t spare_eps;        /* endpoint ids reserved with a steering ring already in vd_rings */
	uint32_t ring_jobs;        /* steering rings being installed or removed by the worker thread */
	uint32_t spare_umems;      /* pre-faulted UMEMs ready (0 or 1) */
	uint64_t spare_umem_bytes; /* their size */
	uint32_t pool_tcp, pool_tcp_target; /* ephemeral ports reserved ahead, and how many the pool keeps */
	uint32_t pool_udp, pool_udp_target;
	uint32_t held_tcp, held_udp; /* ports held (TIME-WAIT) after their endpoint let them go */
};

/* ---- codec (src/ctl/codec.c) -------------------------------------------------------------------- */

/*
 * Checks a complete message of len bytes at buf (header included) as described at the top. Returns 0 or
 * a negative errno: -EPROTO bad magic or length (framing lost), -EPROTONOSUPPORT version, -EBADMSG bad
 * type, payload size or field. `is_reply` selects which payload layouts are expected.
 */
int vd__ctl_check(const void *buf, size_t len, int is_reply);

/* Fills a header; payload_len is the bytes that follow it. */
void vd__ctl_hdr_init(struct vd_ctl_hdr *h, uint16_t type, uint32_t seq, int32_t status, size_t payload_len,
		      uint32_t nfds);

/* Short name of a message type, for logs ("ep-open", ...); "?" if unknown. */
const char *vd__ctl_type_name(uint16_t type);

#endif /* VD_CTL_PROTO_H */
