/* SPDX-License-Identifier: MIT */
/*
 * nic_peer: one side of a lab test over the frame I/O layer.
 *
 *   nic_peer echo  [common] [--count N] [--idle-ms I]
 *                                                  echo every frame back to its sender: N frames, or until
 *                                                  nothing arrived for I ms after the first, then exit 0
 *   nic_peer ping  [common] --peer IP:PORT [--count N] [--size S]
 *                                                  send N numbered frames with a checked pattern, expect
 *                                                  each back intact; exit 0 only if all came back
 *   nic_peer hold  [common]                        open an endpoint, print its address, sleep (for reclaim
 *                                                  tests: the test kills it)
 *   common: --backend xdp|udp|auto --local IP:PORT --mode auto|direct|steered --queue Q --timeout-ms T
 *           --busy (never block in vd_nic_wait: pure busy-polling)
 *
 * Prints one line "ADDR" when the endpoint is open (so a script can wait for it), then a result line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <viaduct/nic.h>

#define BURST 32

struct args {
	const char *cmd, *peer;
	struct vd_nic_opts o;
	unsigned count, size;
	int timeout_ms, idle_ms;
	int busy;
};

/* Idle step of the receive loops: block briefly on the nic's fd, or spin when told to busy-poll. */
static void idle(struct vd_nic *nic, const struct args *a, int ms)
{
	if (!a->busy)
		vd_nic_wait(nic, ms);
}

static int usage(void)
{
	fprintf(stderr, "usage: nic_peer echo|ping|hold [--backend B] [--local IP:PORT] [--mode M] [--queue Q] [--busy]\n"
			"                [--peer IP:PORT] [--count N] [--size S] [--timeout-ms T]\n");
	return 2;
}

static int parse(int argc, char **argv, struct args *a)
{
	static const struct option lo[] = {
		{ "backend", 1, 0, 'b' }, { "local", 1, 0, 'l' },  { "mode", 1, 0, 'm' },
		{ "queue", 1, 0, 'q' },   { "peer", 1, 0, 'p' },   { "count", 1, 0, 'n' },
		{ "size", 1, 0, 's' },    { "timeout-ms", 1, 0, 't' }, { "busy", 0, 0, 'B' },
		{ "idle-ms", 1, 0, 'I' },
		{ 0, 0, 0, 0 },
	};
	if (argc < 2)
		return usage();
	a->cmd = argv[1];
	a->o.queue = -1;
	a->count = 1000;
	a->size = 64;
	a->timeout_ms = 10000;
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			a->o.backend = !strcmp(optarg, "xdp") ? VD_BACKEND_XDP
				       : !strcmp(optarg, "udp") ? VD_BACKEND_UDP
								: VD_BACKEND_AUTO;
			break;
		case 'l': a->o.local = optarg; break;
		case 'm':
			a->o.rx_mode = !strcmp(optarg, "direct")    ? VD_RX_DIRECT
				       : !strcmp(optarg, "steered") ? VD_RX_STEERED
								    : VD_RX_AUTO;
			break;
		case 'q': a->o.queue = atoi(optarg); break;
		case 'p': a->peer = optarg; break;
		case 'n': a->count = (unsigned)strtoul(optarg, NULL, 0); break;
		case 's': a->size = (unsigned)strtoul(optarg, NULL, 0); break;
		case 't': a->timeout_ms = atoi(optarg); break;
		case 'B': a->busy = 1; break;
		case 'I': a->idle_ms = atoi(optarg); break;
		default: return usage();
		}
	}
	return 0;
}

/* Frame i of the ping test: its number, then bytes that depend on the number and position. */
static void fill(uint8_t *p, unsigned size, uint32_t seq)
{
	memcpy(p, &seq, sizeof(seq));
	for (unsigned i = sizeof(seq); i < size; i++)
		p[i] = (uint8_t)(seq * 31u + i * 7u);
}

static int intact(const struct vd_frame *f, unsigned size, uint32_t seq)
{
	uint8_t want[9000];
	if (f->len != size || size > sizeof(want))
		return 0;
	fill(want, size, seq);
	return memcmp(f->data, want, size) == 0;
}

static int do_echo(struct vd_nic *nic, const struct args *a)
{
	struct vd_frame rx[BURST], tx[BURST];
	unsigned echoed = 0;
	uint64_t now = vd_nic_now_ns(nic), last = 0;
	uint64_t deadline = now + (uint64_t)a->timeout_ms * 1000000u;
	uint64_t idle_ns = (uint64_t)a->idle_ms * 1000000u;

	for (; echoed < a->count && now < deadline; now = vd_nic_now_ns(nic)) {
		int n = vd_nic_rx_burst(nic, rx, BURST);
		if (n <= 0) {
			if (idle_ns && last && now - last > idle_ns)
				break;
			idle(nic, a, 10);
			continue;
		}
		last = now;
		int m = vd_nic_tx_alloc(nic, tx, (unsigned)n);
		for (int i = 0; i < m; i++) {
			memcpy(tx[i].data, rx[i].data, rx[i].len);
			tx[i].len = rx[i].len;
			tx[i].peer = rx[i].peer;
		}
		int sent = m > 0 ? vd_nic_tx_burst(nic, tx, (unsigned)m) : 0;
		if (sent < m)
			vd_nic_tx_abort(nic, tx + sent, (unsigned)(m - sent));
		vd_nic_flush(nic);
		vd_nic_rx_release(nic, rx, (unsigned)n);
		echoed += (unsigned)(sent > 0 ? sent : 0);
	}
	struct vd_nic_stats st;
	vd_nic_stats(nic, &st);
	printf("echoed %u malformed %" PRIu64 " tap %" PRIu64 "\n", echoed, st.rx_malformed, st.tx_tap);
	return echoed >= a->count || (idle_ns && echoed) ? 0 : 1;
}

static int do_ping(struct vd_nic *nic, const struct args *a)
{
	struct vd_addr peer;
	uint8_t buf[9000];
	int err = a->peer ? vd_addr_parse(a->peer, &peer) : -EINVAL;
	if (err || a->size < 4 || a->size > vd_nic_max_payload(nic) || a->size > sizeof(buf)) {
		fprintf(stderr, "nic_peer: bad --peer or --size (max payload %u)\n", vd_nic_max_payload(nic));
		return 2;
	}
	unsigned ok = 0, bad = 0, resent = 0;
	for (uint32_t seq = 0; seq < a->count; seq++) {
		fill(buf, a->size, seq);
		int got = 0;
		/* Frames may be lost before the peer is ready: resend, a bounded number of times. */
		for (int attempt = 0; attempt < 50 && !got; attempt++) {
			if (attempt)
				resent++;
			if (vd_nic_send(nic, &peer, buf, a->size) < 0)
				continue;
			uint64_t until = vd_nic_now_ns(nic) + 50000000u; /* 50 ms */
			while (!got && vd_nic_now_ns(nic) < until) {
				struct vd_frame f[BURST];
				int n = vd_nic_rx_burst(nic, f, BURST);
				if (n <= 0) {
					idle(nic, a, 5);
					continue;
				}
				for (int i = 0; i < n; i++) {
					uint32_t s;
					if (f[i].len < sizeof(s))
						continue;
					memcpy(&s, f[i].data, sizeof(s));
					if (s != seq)
						continue; /* a late echo of a resent frame */
					if (intact(&f[i], a->size, seq))
						got = 1;
					else
						bad++;
				}
				vd_nic_rx_release(nic, f, (unsigned)n);
			}
		}
		ok += (unsigned)got;
		if (!got)
			break;
	}
	struct vd_nic_stats st;
	vd_nic_stats(nic, &st);
	printf("ping ok %u/%u bad %u resent %u tx %" PRIu64 " rx %" PRIu64 " malformed %" PRIu64 " tap %" PRIu64 "\n",
	       ok, a->count, bad, resent, st.tx_frames, st.rx_frames, st.rx_malformed, st.tx_tap);
	return ok == a->count && bad == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	if (parse(argc, argv, &a))
		return 2;
	struct vd_nic *nic;
	int err = vd_nic_open(&nic, &a.o);
	if (err) {
		fprintf(stderr, "nic_peer: open: %s\n", strerror(-err));
		return 1;
	}
	struct vd_addr local;
	char text[VD_ADDR_STRLEN];
	vd_nic_local_addr(nic, &local);
	printf("%s %s %s\n", vd_addr_format(&local, text, sizeof(text)), vd_nic_backend_name(nic),
	       vd_nic_rx_mode(nic) == VD_RX_DIRECT ? "direct" : vd_nic_rx_mode(nic) == VD_RX_STEERED ? "steered" : "-");
	fflush(stdout);

	int rc;
	if (!strcmp(a.cmd, "echo"))
		rc = do_echo(nic, &a);
	else if (!strcmp(a.cmd, "ping"))
		rc = do_ping(nic, &a);
	else if (!strcmp(a.cmd, "hold")) {
		for (int i = 0; i < a.timeout_ms / 100; i++)
			usleep(100000);
		rc = 0;
	} else
		rc = usage();
	vd_nic_close(nic);
	return rc;
}
