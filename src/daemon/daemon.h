/* SPDX-License-Identifier: MIT */
/*
 * viaductd internals shared between its files. One file per job:
 *   main.c     arguments, daemonizing, signals, pidfile, start-up and shutdown order
 *   log.c      log lines (stderr or a file)
 *   loop.c     the epoll event loop every other part registers its fds with
 *   server.c   the control socket: connections, framing, validation, replies, request dispatch
 *   iface.c    managed interfaces: addresses, queues, the XDP dispatcher and its maps
 *   endpoint.c EP_OPEN / EP_CLOSE: UMEM, XSK, steering ring, map entries, reclaim
 *   port.c     UDP/TCP port ownership, reserved in the kernel by a bound kernel socket
 *   neigh.c    VD_CTL_NEIGH: next hop and its MAC, resolved without blocking the loop
 *   stat.c     VD_CTL_STAT
 *   taptx.c    TX taps: making and deleting them, whether an interface takes redirected frames
 */
#ifndef VD_DAEMON_H
#define VD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/types.h>

#include "bpf/dispatch.h"
#include "ctl/proto.h"

/* ---- log.c ------------------------------------------------------------------------------------- */
enum { VD_LOG_ERR = 0, VD_LOG_WARN, VD_LOG_INFO, VD_LOG_DEBUG };
int vd__log_open(const char *path, int verbose);
void vd__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vd__err(...) vd__log(VD_LOG_ERR, __VA_ARGS__)
#define vd__warn(...) vd__log(VD_LOG_WARN, __VA_ARGS__)
#define vd__info(...) vd__log(VD_LOG_INFO, __VA_ARGS__)
#define vd__dbg(...) vd__log(VD_LOG_DEBUG, __VA_ARGS__)

/* ---- loop.c ------------------------------------------------------------------------------------ */
struct vd_evsrc;
typedef void (*vd_ev_cb)(struct vd_evsrc *src, uint32_t events);
struct vd_evsrc {
	int fd;
	vd_ev_cb cb;
};
int vd__loop_init(void);
int vd__loop_add(struct vd_evsrc *src, uint32_t events);
int vd__loop_mod(struct vd_evsrc *src, uint32_t events);
void vd__loop_del(struct vd_evsrc *src);
/* Runs until vd__loop_stop(); returns 0 or -errno. */
int vd__loop_run(void);
void vd__loop_stop(void);
void vd__loop_fini(void);

/* ---- iface.c ----------------------------------------------------------------------------------- */
enum vd_xdp_mode { VD_XDP_AUTO = 0, VD_XDP_NATIVE = 1, VD_XDP_GENERIC = 2 };

struct vd_ep;
struct dispatch; /* the BPF skeleton */

struct vd_iface {
	char name[VD_CTL_IFNAMSIZ];
	uint32_t ifindex;
	uint8_t mac[6];
	uint32_t ip_be;
	uint32_t prefix_len;
	uint32_t mtu;
	uint32_t queues;            /* usable queue ids: [0, queues) */
	enum vd_xdp_mode xdp_mode;  /* as attached */
	struct dispatch *skel;
	int link_fd;                /* XDP bpf_link: the kernel detaches when it closes, also if viaductd dies */
	int ports_fd, xsks_fd, rings_fd, ep_stats_fd, glob_stats_fd;
	struct vd_ep *queue_owner[VD_BPF_MAX_QUEUES];
	int tap_prog_fd, tap_devs_fd; /* vd_tap_tx and vd_tap_devs of skel (TX taps, taptx.c) */
	bool tap_xmit;              /* takes frames redirected to it (xdp_features NDO_XMIT), last checked */
};

int vd__iface_add(const char *name, enum vd_xdp_mode mode);
void vd__iface_fini(void);
unsigned vd__iface_count(void);
struct vd_iface *vd__iface_at(unsigned i);
/* "" or NULL: the first interface. NULL if not managed. */
struct vd_iface *vd__iface_by_name(const char *name);
/* 0: the first interface. */
struct vd_iface *vd__iface_by_index(uint32_t ifindex);
/* Dispatcher counters summed over CPUs. */
int vd__iface_glob_stats(const struct vd_iface *ifc, struct vd_ctl_stat_iface *out);

/* ---- server.c ---------------------------------------------------------------------------------- */
struct vd_conn;
struct vd_server_opts {
	const char *path;
	gid_t gid;
};
int vd__server_start(const struct vd_server_opts *o);
void vd__server_stop(void);
/* Queues a reply (copied; fds dup'ed). status < 0: payload is ignored and reason (may be NULL) sent. */
int vd__conn_reply(struct vd_conn *c, uint16_t type, uint32_t seq, int32_t status, const void *payload,
		   size_t len, const int *fds, unsigned nfds, const char *reason);
/* After a reply queued outside the connection's own event: asks the loop to write it out. */
void vd__conn_kick(struct vd_conn *c);
void vd__conn_cred(const struct vd_conn *c, pid_t *pid, uid_t *uid);
/* Lists of what a connection holds (owned by endpoint.c / port.c, reclaimed on close). */
struct vd_ep **vd__conn_eps(struct vd_conn *c);
struct vd_port **vd__conn_ports(struct vd_conn *c);
/* True while the connection is alive (for async replies). Connections are identified by a serial. */
uint64_t vd__conn_serial(const struct vd_conn *c);
struct vd_conn *vd__conn_find(uint64_t serial);

/* ---- endpoint.c -------------------------------------------------------------------------------- */
struct vd_ep {
	uint32_t id;                /* index in vd_rings / vd_ep_stats, unique in the daemon */
	struct vd_iface *ifc;
	struct vd_conn *conn;
	struct vd_ep *next;         /* in the owning connection's list */
	pid_t pid;
	uid_t uid;
	uint32_t ip_be;
	uint16_t port_be;
	uint8_t rx_mode;            /* VD_CTL_RX_DIRECT or VD_CTL_RX_STEERED */
	uint32_t queue;
	int xsk_fd, umem_fd, ring_fd, stats_fd;
	int xsk_spare;              /* until bound: an XSK the spare UMEM came registered on, or -1 */
	void *umem;
	size_t umem_len;
	struct vd_ctl_ep_shared *shared;
	struct vd_port *port;
	uint32_t tx_meta_len;       /* AF_XDP TX metadata registered with the UMEM (0: kernel has none) */
	struct vd_port *ports;      /* ports added with EP_PORT_ADD (port.c) */
	uint32_t n_ports;
	bool has_ntuple;            /* an ethtool ntuple rule at ntuple_loc steers the flow to our queue */
	uint32_t ntuple_loc;
	bool in_ports_map, in_xsks_map, in_rings_map;
	int tap_fd;                 /* TX tap: the daemon's queue of it (-1: none) */
	uint32_t tap_ifindex;       /* its device, key of its vd_tap_devs entry (0: none) */
	char tap_name[VD_CTL_IFNAMSIZ];
};
void vd__ep_open(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_open_req *req);
void vd__ep_close_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_close_req *req);
/* Frees every endpoint of the connection. */
void vd__ep_reclaim_conn(struct vd_conn *c);
/* ntuple.c: an ethtool ntuple rule steering UDP to ip:port to a queue; -EOPNOTSUPP where the device has none. */
int vd__ntuple_add(const char *ifname, uint32_t ip_be, uint16_t port_be, uint32_t queue, uint32_t *loc);
void vd__ntuple_del(const char *ifname, uint32_t loc);
/* Ends the TX taps of ifc's endpoints (the interface no longer takes redirected frames). */
void vd__ep_taps_end(struct vd_iface *ifc);
/* Iterates the live endpoints (for STAT): NULL past the end. */
struct vd_ep *vd__ep_at(unsigned id);
/* The steering ring size of an endpoint on ifc that asked for `asked` bytes (0: the default). */
uint32_t vd__ep_steer_bytes(const struct vd_iface *ifc, uint32_t asked);
/* The UMEM size of an endpoint on ifc with the default ring size, steered. */
size_t vd__ep_default_umem_len(struct vd_iface *ifc);
/* A memfd of len bytes sealed against resizing (it goes to an application). fd or -errno. */
int vd__memfd_sealed(const char *name, size_t len);
/* A new AF_XDP socket with the len bytes at umem registered as its UMEM (with TX metadata room where the
 * kernel has it: *tx_meta_len says). Unbound. fd or -errno. Thread-safe (ringpool.c's worker calls it). */
int vd__xsk_on_umem(void *umem, size_t len, uint32_t *tx_meta_len);

/* ---- ringpool.c: vd_rings updates (an RCU grace period each) off the loop, spare rings ahead ---- */
int vd__ringpool_init(void);
void vd__ringpool_fini(void);
/* A spare endpoint id whose vd_rings slot of ifc already holds a fresh ring of `bytes`: the id and the
 * ring's fd become the caller's. -ENOENT: none ready. */
int vd__ringpool_take(struct vd_iface *ifc, uint32_t bytes, uint32_t *id, int *ring_fd);
/* A UMEM prepared ahead: a sealed memfd with its pages allocated, mapped, and registered (XDP_UMEM_REG) on
 * an unbound AF_XDP socket xsk_fd (-1 if that failed: the endpoint then registers it itself). */
struct vd_umem_spare {
	int fd, xsk_fd;
	void *map;
	size_t len;
	uint32_t tx_meta_len; /* what the registration got (see vd__xsk_on_umem) */
};
/* A spare UMEM of ifc of exactly len bytes: everything in *out becomes the caller's. -ENOENT: none ready. */
int vd__ringpool_take_umem(const struct vd_iface *ifc, size_t len, struct vd_umem_spare *out);
/* The pool holds id (a spare, or an old ring being replaced): no endpoint may take it. */
bool vd__ringpool_reserved(uint32_t id);
/* An endpoint leaves id with its ring still in ifc's vd_rings (nothing steered to it any more): the pool
 * replaces or removes it off the loop and keeps the id until then. false: do it yourself, now. */
bool vd__ringpool_release(struct vd_iface *ifc, uint32_t id);
/* A spare TX tap of ifc (its vd_tap_devs entry in place): everything in *out becomes the caller's.
 * -ENOENT: none ready. */
struct vd_tap;
int vd__ringpool_take_tap(const struct vd_iface *ifc, struct vd_tap *out);
/* A TX tap whose vd_tap_devs entry is gone: the worker deletes the device and closes keep_fd. */
void vd__ringpool_tap_del(uint32_t ifindex, int keep_fd);
/* Something changed that may make spares wanted (an interface takes redirected frames again). */
void vd__ringpool_kick(void);
/* STAT: ifc's spare ids, ring jobs under way and spare UMEM into out (other fields untouched). */
void vd__ringpool_stat(const struct vd_iface *ifc, struct vd_ctl_stat_spares *out);

/* ---- taptx.c: TX taps ---------------------------------------------------------------------------- */
struct vd_tap {
	int keep_fd;                /* the daemon's queue: holds the device */
	int app_fd;                 /* the application's queue (fd [4] of EP_OPEN) */
	uint32_t ifindex;
	char name[VD_CTL_IFNAMSIZ];
};
/* enabled: --no-tap-tx not given. Taps stay off (logged once) without /dev/net/tun or the netdev genl
 * family. Checks every interface now and then every second. After vd__iface_add, before the ring pool. */
int vd__taptx_init(bool enabled);
void vd__taptx_fini(void);
bool vd__taptx_on(void);
/* Spares are wanted for ifc: taps on and ifc takes redirected frames (as last checked). */
bool vd__taptx_wanted(const struct vd_iface *ifc);
/* Asks the kernel now whether ifc takes redirected frames; on a change ends its taps or asks for spares. */
bool vd__taptx_check(struct vd_iface *ifc);
/* Thread-safe (the ring pool's worker): a tap "vdtx%d" with two queues, up, vd_tap_tx (prog_fd) attached in
 * driver mode, vd_tap_devs (devs_fd) entry tap -> out_ifindex. 0 or -errno (nothing left behind). */
int vd__tap_make(int prog_fd, int devs_fd, uint32_t out_ifindex, struct vd_tap *t);
/* Thread-safe: RTM_DELLINK of the tap, then closes keep_fd (if >= 0). 0 or -errno. */
int vd__tap_delete(uint32_t ifindex, int keep_fd);

/* ---- port.c ------------------------------------------------------------------------------------ */
struct vd_port {
	uint8_t proto;     /* IPPROTO_UDP or IPPROTO_TCP */
	uint32_t ip_be;
	uint16_t port_be;  /* as bound (never 0) */
	int fd;            /* the kernel socket holding the reservation */
	struct vd_port *next;
	/* Ports steered to an endpoint (EP_PORT_ADD) and held ports; unused for PORT_RESERVE. */
	struct vd_iface *ifc;
	bool ephemeral;          /* the kernel chose it (port 0 asked) */
	bool in_map;             /* its vd_ports slot points at the endpoint or holds it */
	uint64_t hold_until_ns;  /* held: CLOCK_MONOTONIC end of the hold */
};
/* Reserves proto ip:port in the kernel (port 0: ephemeral). Returns 0 or -errno (-EADDRINUSE). */
int vd__port_reserve(uint8_t proto, uint32_t ip_be, uint16_t port_be, struct vd_port **out);
void vd__port_free(struct vd_port *p);
void vd__port_reserve_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req);
void vd__port_release_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_port_req *req);
void vd__port_reclaim_conn(struct vd_conn *c);
/* net.ipv4.ip_unprivileged_port_start: ports below it are for root only. */
unsigned vd__port_unprivileged_start(void);
/* Holds and their timer; time_wait_s: how long a dead endpoint's ephemeral TCP ports stay held. The
 * ephemeral port pools; pool_idle_s: how long a grown TCP pool target stays up with no burst needing it. */
int vd__port_init(uint32_t time_wait_s, uint32_t pool_idle_s);
void vd__port_fini(void);
void vd__ep_port_add_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req);
void vd__ep_port_del_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_port_req *req);
void vd__ep_ports_add_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_ports_req *req);
void vd__ep_ports_del_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_ep_ports_req *req);
/* An endpoint goes away: its ephemeral TCP ports are held for TIME-WAIT, the others freed. */
void vd__ep_ports_reclaim(struct vd_ep *ep);
/* STAT: fills up to max records (endpoint ports, then held ones); returns how many. */
unsigned vd__port_stat(struct vd_ctl_stat_port *out, unsigned max);
/* STAT: ifc's pooled ephemeral ports (and the pools' targets) and held ports into out (other fields
 * untouched). */
void vd__port_pool_stat(const struct vd_iface *ifc, struct vd_ctl_stat_spares *out);

/* ---- neigh.c ----------------------------------------------------------------------------------- */
int vd__neigh_init(void);
void vd__neigh_fini(void);
void vd__neigh_req(struct vd_conn *c, uint32_t seq, const struct vd_ctl_neigh_req *req);
void vd__neigh_reclaim_conn(struct vd_conn *c);

/* ---- stat.c ------------------------------------------------------------------------------------ */
void vd__stat_req(struct vd_conn *c, uint32_t seq);

#endif
