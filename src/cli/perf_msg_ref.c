/* SPDX-License-Identifier: MIT */
/*
 * The frame-level references of the messaging benchmarks, run with the frames benchmark's own transports
 * and code (perf_kernel.c, bare_afxdp.c, perf_bench.c), so they are the very figures `perf frames` gives:
 *   kernel-udp   one datagram per message;  bare-afxdp   one frame per message.
 * A message of S bytes travels as a frame of max(64, S + 42) bytes (Ethernet + IPv4 + UDP + payload; the
 * payload is at least the 22 bytes the frames benchmark's header needs, so an 8 B message is measured as a
 * 22 B datagram - the minimum Ethernet frame either way). Messages that do not fit one frame within the MTU
 * are not measured on these paths: kernel UDP has no messages beyond a datagram (IP fragmentation above
 * the MTU is not a message protocol anyone benchmarks against) and bare AF_XDP has none beyond a frame.
 * bw reports the path's frame throughput at the MTU (the bound a message protocol over it can approach),
 * rate the frame rate at the message's frame size.
 *
 * All needed frame sizes run in one `perf frames` session (its server leaves on the client's QUIT).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "perf_msg.h"

static unsigned frame_of(unsigned msg)
{
	return msg + VD_PERF_HDR_OVERHEAD < VD_PERF_MIN_SIZE ? VD_PERF_MIN_SIZE : msg + VD_PERF_HDR_OVERHEAD;
}

static int open_tp(struct vd__perf_tp **tp, const struct vd__msg_side *s, enum vd__msg_path p)
{
	char ifbuf[32];
	struct vd__perf_where w = {
		.server = s->server,
		.peer_ip = s->ref_peer_ip,
		.iface = s->ref_iface,
		.queue = s->queue,
		.port = vd__msg_path_port(p),
	};

	if (!w.iface && s->server)
		w.iface = "ref0";
	if (!w.iface && w.peer_ip && vd__perf_route_src(w.peer_ip, NULL, 0, ifbuf, sizeof(ifbuf)) == 0)
		w.iface = ifbuf;
	return p == VD_MSG_BARE_AFXDP ? vd__perf_bare_open(tp, &w) : vd__perf_kernel_open(tp, &w);
}

static void add_frame(unsigned *frames, unsigned *n, unsigned f)
{
	for (unsigned i = 0; i < *n; i++)
		if (frames[i] == f)
			return;
	if (*n < VD_MSG_MAX_SIZES * VD_MSG_NBENCH)
		frames[(*n)++] = f;
}

/* Turns the frames benchmark's lines into ours. */
static void translate(const struct vd__msg_side *s, enum vd__msg_path p, char *text, unsigned mtu_frame)
{
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char bench[16], extra[96];
		double size, a, b, loss = 0;

		if (vd__perf_json_str(l, "bench", bench, sizeof(bench)) || vd__perf_json_num(l, "size", &size))
			continue;
		unsigned f = (unsigned)size;

		if (!strcmp(bench, "pingpong")) {
			if (vd__perf_json_num(l, "p50_us", &a) || vd__perf_json_num(l, "p99_us", &b))
				continue;
			snprintf(extra, sizeof(extra), ",\"frame\":%u", f);
			for (unsigned i = 0; s->benches[VD_MSG_PINGPONG] && i < s->nsizes[VD_MSG_PINGPONG]; i++)
				if (frame_of(s->sizes[VD_MSG_PINGPONG][i]) == f)
					vd__msg_emit(s->out, VD_MSG_PINGPONG, p, s->sizes[VD_MSG_PINGPONG][i], a, b, NAN,
						     NAN, extra);
			continue;
		}
		if (strcmp(bench, "stream") || vd__perf_json_num(l, "mpps", &a) || vd__perf_json_num(l, "gbps", &b))
			continue;
		vd__perf_json_num(l, "loss", &loss);
		snprintf(extra, sizeof(extra), ",\"frame\":%u,\"loss\":%.4f", f, loss);
		if (s->benches[VD_MSG_BW] && f == mtu_frame)
			vd__msg_emit(s->out, VD_MSG_BW, p, f - VD_PERF_HDR_OVERHEAD, NAN, NAN, b, a, extra);
		for (unsigned i = 0; s->benches[VD_MSG_RATE] && i < s->nsizes[VD_MSG_RATE]; i++)
			if (frame_of(s->sizes[VD_MSG_RATE][i]) == f)
				vd__msg_emit(s->out, VD_MSG_RATE, p, s->sizes[VD_MSG_RATE][i], NAN, NAN, b, a, extra);
	}
}

int vd__msg_ref_run(const struct vd__msg_side *s, enum vd__msg_path p)
{
	struct vd__perf_opts o = {
		.iters = s->iters,
		.warmup = s->warmup,
		.reps = 1,
		.duration_ms = s->duration_ms,
		.max_frames = 50000000,
		.burst = 32,
		.idle_ms = s->idle_ms,
		.json = 1,
	};
	unsigned frames[VD_MSG_MAX_SIZES * VD_MSG_NBENCH], nframes = 0, mtu_frame;
	struct vd__perf_tp *tp;
	int rc = open_tp(&tp, s, p);

	if (rc < 0) {
		fprintf(stderr, "viaduct perf: %s: cannot open: %s\n", vd__msg_path_name(p), strerror(-rc));
		return rc;
	}
	if (s->server) {
		rc = vd__perf_server_run(tp, &o);
		tp->ops->close(tp);
		return rc;
	}
	mtu_frame = tp->max_payload + VD_PERF_HDR_OVERHEAD;
	for (unsigned b = 0; b < VD_MSG_NBENCH; b++) {
		if (!s->benches[b])
			continue;
		if (b == VD_MSG_BW) {
			add_frame(frames, &nframes, mtu_frame);
			continue;
		}
		for (unsigned i = 0; i < s->nsizes[b]; i++)
			if (frame_of(s->sizes[b][i]) <= mtu_frame)
				add_frame(frames, &nframes, frame_of(s->sizes[b][i]));
	}
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);

	if (!mem) {
		tp->ops->close(tp);
		return -ENOMEM;
	}
	/* A size list with only oversized messages still runs the session (hello/quit) so the server ends. */
	rc = vd__perf_client_run(tp, (enum vd__perf_path)(p == VD_MSG_BARE_AFXDP ? VD_PERF_BARE_AFXDP
										: VD_PERF_KERNEL_UDP),
				 frames, nframes, &o, mem);
	tp->ops->close(tp);
	fclose(mem);
	translate(s, p, text, mtu_frame);
	free(text);
	return rc;
}
