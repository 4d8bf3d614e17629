/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf frames`: internals shared by the benchmark's files.
 *
 * Every measured path is a "transport" (struct vd__perf_tp): a way to send and receive UDP payloads between
 * the client and the server. The benchmark logic (perf_bench.c) is written once against it, so every path
 * runs exactly the same ping-pong and stream code and the figures differ only by the path:
 *   kernel-udp       non-blocking kernel UDP sockets, busy-polled (perf_kernel.c)
 *   bare-afxdp       a minimal AF_XDP program with its own XDP program, no viaduct code (bare_afxdp.c)
 *   viaduct-direct   libviaduct nic, backend xdp, direct RX (perf_viaduct.c)
 *   viaduct-steered  libviaduct nic, backend xdp, software-steered RX
 *   viaduct-udp      libviaduct nic, backend udp
 *
 * Sizes: a benchmark "size" is the Ethernet frame length without FCS (14 B Ethernet + 20 B IPv4 + 8 B UDP
 * + payload), so 64 is the minimum Ethernet frame and 1500 fits a 1500 B MTU. "gbps" counts UDP payload
 * bits only; "frame_gbps" counts the whole Ethernet frame (no preamble, no FCS).
 */
#ifndef VD_CLI_PERF_H
#define VD_CLI_PERF_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define VD_PERF_HDR_OVERHEAD 42u   /* Ethernet + IPv4 + UDP headers in front of the payload */
#define VD_PERF_MIN_SIZE 64u
#define VD_PERF_MAX_BURST 64u
#define VD_PERF_MAX_PAYLOAD 65507u /* the largest UDP/IPv4 payload: frames up to the largest MTU viaduct carries */

enum vd__perf_path {
	VD_PERF_KERNEL_UDP,
	VD_PERF_VIADUCT_UDP,
	VD_PERF_BARE_AFXDP,
	VD_PERF_VIADUCT_DIRECT,
	VD_PERF_VIADUCT_STEERED,
	VD_PERF_NPATHS,
};

const char *vd__perf_path_name(enum vd__perf_path p);
/* UDP port of a path: each path has its own, so a late frame of one path never counts for another. */
uint16_t vd__perf_path_port(enum vd__perf_path p);
/* Whether the path runs on the reference link (no viaductd) or on the viaduct interface. */
int vd__perf_path_is_ref(enum vd__perf_path p);

/* Where a transport runs. Addresses are dotted quads; NULL where not known. */
struct vd__perf_where {
	int server;            /* 1: server side (learns its peer from the first frame) */
	const char *peer_ip;   /* client: the server's address on this path's link */
	const char *iface;     /* interface (bare-afxdp: required; viaduct-*: the daemon's interface) */
	int queue;             /* bare-afxdp and viaduct-direct: queue to bind on both sides */
	uint16_t port;         /* UDP port, both sides */
};

/*
 * A received payload: valid until the transport's rx_done(). Exception, bare-afxdp multi-buffer: a frame
 * larger than one UMEM chunk arrives in pieces that are not contiguous, and is not copied; only the
 * payload's first 22 bytes (a minimum frame's) are sure to be at data, the rest of len in other pieces.
 * Passing data and len back to the same transport's tx() before rx_done() sends the whole payload.
 */
struct vd__perf_buf {
	const uint8_t *data;
	uint32_t len;
};

struct vd__perf_tp;
struct vd__perf_tp_ops {
	/* Sends n frames, each a copy of the len-byte payload, to the peer; returns how many were queued and
	 * made their way to the wire (0 when the device is full: retry), or -errno. */
	int (*tx)(struct vd__perf_tp *tp, const void *payload, uint32_t len, unsigned n);
	/* Receives up to max payloads without blocking; the sender of the last one becomes the peer. */
	int (*rx)(struct vd__perf_tp *tp, struct vd__perf_buf *bufs, unsigned max);
	/* Hands back the n payloads of the last rx(). */
	void (*rx_done)(struct vd__perf_tp *tp, unsigned n);
	void (*close)(struct vd__perf_tp *tp);
};

struct vd__perf_tp {
	const struct vd__perf_tp_ops *ops;
	uint32_t max_payload;
};

int vd__perf_kernel_open(struct vd__perf_tp **out, const struct vd__perf_where *w);
int vd__perf_bare_open(struct vd__perf_tp **out, const struct vd__perf_where *w);
int vd__perf_viaduct_open(struct vd__perf_tp **out, const struct vd__perf_where *w, enum vd__perf_path p);

/* perf_net.c: small address helpers. */
/* The local IPv4 address (dotted quad into buf) the kernel would use to reach peer_ip, and its interface. */
int vd__perf_route_src(const char *peer_ip, char *ip_buf, size_t ip_len, char *if_buf, size_t if_len);
int vd__perf_iface_ipv4(const char *ifname, uint32_t *ip_be);
int vd__perf_iface_mac(const char *ifname, uint8_t mac[6]);
int vd__perf_iface_mtu(const char *ifname);
/* Resolves peer_ip's MAC through the kernel's neighbour table (sending a datagram to start ARP first). */
int vd__perf_resolve_mac(const char *ifname, const char *peer_ip, uint8_t mac[6]);

/* Parses a decimal number in [min, max] for an option; prints why and returns -1 if it is not one. */
int vd__perf_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* Set by SIGINT/SIGTERM: every loop checks it, so transports are always closed (XDP detached). */
extern volatile sig_atomic_t vd__perf_stop;

static inline uint64_t vd__perf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* perf_bench.c */
struct vd__perf_opts {
	unsigned iters;         /* ping-pong round trips measured per repetition */
	unsigned warmup;        /* round trips before measuring */
	unsigned reps;          /* repetitions; medians of the per-repetition figures are reported */
	unsigned duration_ms;   /* stream: sending time per repetition */
	uint64_t max_frames;    /* stream: frame bound per repetition */
	unsigned burst;         /* stream: frames per tx call */
	unsigned idle_ms;       /* server: give up on a path after this long without a frame */
	int json;
};

/* Client: hello, then for every size a ping-pong and a stream, then quit. Prints JSON lines to out. */
int vd__perf_client_run(struct vd__perf_tp *tp, enum vd__perf_path p, const unsigned *sizes, unsigned nsizes,
		      const struct vd__perf_opts *o, FILE *out);
/* Server: echoes pings and counts streams until the client says quit or idle_ms pass without a frame. */
int vd__perf_server_run(struct vd__perf_tp *tp, const struct vd__perf_opts *o);

/* perf_table.c: a table of JSON result lines (ours: flat objects). */
struct vd__perf_table;
struct vd__perf_table *vd__perf_table_new(void);
void vd__perf_table_add_line(struct vd__perf_table *t, const char *line);
void vd__perf_table_print(const struct vd__perf_table *t, FILE *out);
void vd__perf_table_free(struct vd__perf_table *t);
/* perf_table.c: medians over rounds of JSON result lines, one line per (bench, path, size). */
struct vd__perf_merge;
struct vd__perf_merge *vd__perf_merge_new(void);
void vd__perf_merge_add(struct vd__perf_merge *m, const char *line);
void vd__perf_merge_emit(struct vd__perf_merge *m, void (*emit)(void *ctx, const char *line), void *ctx);
void vd__perf_merge_free(struct vd__perf_merge *m);
/* perf_table.c: values of a flat JSON object line ("key": number / "key": "string"); 0 or -1. */
int vd__perf_json_num(const char *line, const char *key, double *out);
int vd__perf_json_str(const char *line, const char *key, char *out, size_t cap);

/*
 * perf.c, lab mode: runs the server argv sv and the client argv cv (each a `viaduct lab exec ...` command
 * line) at once, feeds the client's stdout lines to m, stops the client if the server fails, reaps both.
 * 0, or -EIO if either side failed.
 */
int vd__perf_lab_pair(char **sv, char **cv, struct vd__perf_merge *m);

/* perf_msg.c: `viaduct perf pingpong|bw|rate[,...]` (the messaging benchmarks). */
int vd__perf_msg_is_cmd(const char *arg);
int vd__perf_msg_main(int argc, char **argv);

#endif
