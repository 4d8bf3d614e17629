/* SPDX-License-Identifier: MIT */
/*
 * `viaduct perf pingpong|bw|rate`: internals shared by the messaging benchmark's files.
 *
 * Benchmarks (message sizes are application message lengths in bytes):
 *   pingpong  one message in flight, answered by the same length: half round trip p50/p99 (us)
 *   bw        a window of large messages streamed one way: payload Gbit/s and messages/s at the sender once
 *             the receiver has them (osu_bw style: a send completes when the receiving library has it)
 *   rate      the same with small messages and a deep window: million messages per second
 * Paths (perf_msg.c runs each as a client/server pair):
 *   viaduct-xdp   vd_ep over the xdp backend, direct RX (perf_msg_vd.c)
 *   viaduct-udp   vd_ep over the udp backend (kernel sockets under the same engine)
 *   viaduct-shm   vd_ep with both sides in one host (the client's) on 127.0.0.1: the udp backend with
 *                 same-host shared memory on (vd_ep_open's default), so once the channel is up (during the
 *                 HELLO and warm-up) every frame moves through it; compared with fi-shm
 *   kernel-udp    the frames benchmark's kernel UDP transport: one datagram per message, only for messages
 *                 that fit one datagram within the MTU (perf_msg_ref.c)
 *   bare-afxdp    the frames benchmark's bare AF_XDP transport: ping-pong of one frame, frame throughput at
 *                 the MTU (bw) and at 64 B (rate) (perf_msg_ref.c)
 *   kernel-tcp    one TCP connection, TCP_NODELAY: ping-pong and a byte stream cut into messages (perf_msg_tcp.c)
 *   fi-shm, fi-udp, fi-tcp   libfabric's fi_pingpong (rdm endpoints) for those providers, if installed
 *                 (perf_msg_fi.c); ping-pong only; fi-shm runs both sides in the client's host
 * Output: one JSON line per (bench, path, size) with "bench", "path", "size", "p50_us", "p99_us", "gbps",
 * "mmsgs" (null where the bench does not measure it) and path-specific extras.
 */
#ifndef VD_CLI_PERF_MSG_H
#define VD_CLI_PERF_MSG_H

#include <stdint.h>
#include <stdio.h>

enum vd__msg_bench { VD_MSG_PINGPONG, VD_MSG_BW, VD_MSG_RATE, VD_MSG_NBENCH };

enum vd__msg_path {
	VD_MSG_VIADUCT_XDP,
	VD_MSG_VIADUCT_UDP,
	VD_MSG_VIADUCT_SHM,
	VD_MSG_KERNEL_UDP,
	VD_MSG_BARE_AFXDP,
	VD_MSG_KERNEL_TCP,
	VD_MSG_FI_SHM,
	VD_MSG_FI_UDP,
	VD_MSG_FI_TCP,
	VD_MSG_NPATHS,
};

#define VD_MSG_MAX_SIZES 16
#define VD_MSG_MAX_SIZE (64u << 20)

const char *vd__msg_bench_name(enum vd__msg_bench b);
const char *vd__msg_path_name(enum vd__msg_path p);
/* UDP/TCP port of a path (each path its own, so a late frame of one never counts for another). */
uint16_t vd__msg_path_port(enum vd__msg_path p);

/* One side's view of a run: what to measure and where. */
struct vd__msg_side {
	int server;
	const char *peer_ip;     /* client: server address on eth0 (viaduct-*) */
	const char *ref_peer_ip; /* client: server address on the reference link (kernel-*, bare, fi-udp/tcp) */
	const char *iface;       /* viaduct interface (NULL: the daemon's first) */
	const char *ref_iface;   /* reference interface (server: default ref0) */
	int queue;               /* bare-afxdp (and direct viaduct-xdp) queue, same on both sides */
	int rx_direct;           /* viaduct-xdp: direct RX on queue, not steered (--rx-mode) */
	int benches[VD_MSG_NBENCH];                   /* which to run, in enum order */
	unsigned sizes[VD_MSG_NBENCH][VD_MSG_MAX_SIZES];
	unsigned nsizes[VD_MSG_NBENCH];
	unsigned iters, warmup; /* ping-pong round trips (bounded also by time: pingpong_ms per size) */
	unsigned pingpong_ms;
	unsigned duration_ms;   /* bw and rate: streaming time per size */
	unsigned window;        /* bw: messages in flight; rate uses VD_MSG_RATE_WINDOW */
	unsigned idle_ms;       /* server: give up after this long without a client */
	int fi_first_round;     /* lab: 1 when this round also runs the fi-* paths' sizes */
	FILE *out;              /* client: JSON lines */
};

#define VD_MSG_RATE_WINDOW 256u
/* fi_pingpong runs only for message sizes up to this (it starts a process per size: slow to set up). */
#define VD_MSG_FI_MAX_SIZE 4096u

/* The largest size of any bench this side runs (server buffers). */
unsigned vd__msg_side_max_size(const struct vd__msg_side *s);

/* One result line. NaN fields print as null. extra: more ",\"k\":v" text or NULL. */
void vd__msg_emit(FILE *out, enum vd__msg_bench b, enum vd__msg_path p, unsigned size, double p50_us,
		  double p99_us, double gbps, double mmsgs, const char *extra);

/* Each runs one path for every bench of the side; 0 or -errno (a client prints its lines to s->out). */
int vd__msg_vd_run(const struct vd__msg_side *s, enum vd__msg_path p);
int vd__msg_ref_run(const struct vd__msg_side *s, enum vd__msg_path p);
int vd__msg_tcp_run(const struct vd__msg_side *s);
int vd__msg_fi_run(const struct vd__msg_side *s, enum vd__msg_path p);
/* Whether fi_pingpong can be run here (it is installed). */
int vd__msg_fi_available(void);

/* perf_msg_table.c: the human table of result lines, with the targets next to the ratios. */
struct vd__msg_table;
struct vd__msg_table *vd__msg_table_new(void);
void vd__msg_table_add(struct vd__msg_table *t, const char *line);
void vd__msg_table_print(const struct vd__msg_table *t, FILE *out);
void vd__msg_table_free(struct vd__msg_table *t);
/* The --plot figure: p50 half round trip and Gbit/s against message size, one line per path, as SVG. */
int vd__msg_table_plot(const struct vd__msg_table *t, FILE *f);

#endif
