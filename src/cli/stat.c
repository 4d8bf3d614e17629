/* SPDX-License-Identifier: MIT */
/*
 * `viaduct stat [--socket PATH] [--json]`: one VD_CTL_STAT exchange with viaductd, printed as two tables
 * (interfaces with the dispatcher's counters, endpoints with theirs) or as one JSON object.
 *
 * Columns of the endpoint table: rx frames = frames the dispatcher delivered (redirected to the XSK +
 * copied to the steering ring), rx drops = dispatcher drops (ring full) + the XSK's own drops (rx_dropped,
 * rx_ring_full from XDP_STATISTICS); tx and malformed are the library's counts from the shared page. Then
 * the sockets layer's counters of each endpoint (open TCP and UDP sockets, sockets handed to the kernel)
 * with the ports added to it, and the ports viaductd holds (TCP TIME-WAIT after an endpoint let them go).
 * In that table too, TX from lent memory (TCP large sends on xdp jumbo, docs/design.md): TX buffers lent to
 * send rings now (LENT), lends refused for want of a free one (REFUSED), frames sent with attached pieces
 * of lent memory and those pieces (ATT_FRAMES, ATT_PIECES); all 0 where sends take the copying path.
 * Last, per interface, what viaductd keeps ready ahead of requests (src/daemon/ringpool.c, port.c): spare
 * endpoint ids with their steering rings installed, ring installs/removals under way, a spare pre-faulted
 * UMEM, pooled ephemeral ports (of the pool's target), and the number of held ports.
 * The JSON object carries every raw counter.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ctl/client.h"
#include "ctl/proto.h"

#define STAT_TIMEOUT_MS 3000

struct stat_data {
	struct vd_ctl_stat_rep hdr;
	struct vd_ctl_stat_iface ifaces[VD_CTL_MAX_IFACES];
	struct vd_ctl_stat_ep *eps; /* hdr.n_eps entries */
	struct vd_ctl_stat_port *ports; /* hdr.n_ports entries */
	struct vd_ctl_stat_spares spares[VD_CTL_MAX_IFACES];
	int has_spares; /* the daemon sent them (one before them ends its reply with the ports) */
};

static const char *xdp_mode_name(uint32_t m)
{
	return m == 1 ? "native" : m == 2 ? "generic" : "?";
}

static const char *rx_mode_name(uint8_t m)
{
	return m == VD_CTL_RX_DIRECT ? "direct" : m == VD_CTL_RX_STEERED ? "steered" : "?";
}

static void ip_str(uint32_t ip_be, char *buf)
{
	struct in_addr a = { .s_addr = ip_be };
	inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static uint64_t ep_rx_frames(const struct vd_ctl_stat_ep *e)
{
	return e->rx_redirected + e->rx_steered;
}

static uint64_t ep_rx_drops(const struct vd_ctl_stat_ep *e)
{
	return e->rx_dropped + e->xsk_rx_dropped + e->xsk_rx_ring_full;
}

/* Connects, asks, and copies the (already validated by vd__ctl_call) reply out. Returns 0 or -errno. */
static int fetch(const char *path, struct stat_data *d, const char **why)
{
	/* uint64_t storage: the records carry 64-bit counters; memcpy below keeps alignment moot anyway. */
	static uint64_t buf[VD_CTL_MAX_MSG / sizeof(uint64_t)];
	struct vd_ctl_reply rep;

	memset(&rep, 0, sizeof(rep));
	*why = NULL;
	int fd = vd__ctl_connect(path);
	if (fd < 0)
		return fd;
	int r = vd__ctl_call(fd, VD_CTL_STAT, NULL, 0, buf, sizeof(buf), &rep, STAT_TIMEOUT_MS);
	close(fd);
	if (r < 0) {
		if (rep.hdr.status < 0 && rep.payload_len > 0)
			*why = rep.payload;
		return r;
	}
	for (unsigned i = 0; i < rep.nfds; i++) /* STAT carries none; never leak one a daemon sent anyway */
		close(rep.fds[i]);
	const char *p = rep.payload;
	memcpy(&d->hdr, p, sizeof(d->hdr));
	p += sizeof(d->hdr);
	memcpy(d->ifaces, p, d->hdr.n_ifaces * sizeof(d->ifaces[0]));
	p += d->hdr.n_ifaces * sizeof(d->ifaces[0]);
	d->eps = calloc(d->hdr.n_eps ? d->hdr.n_eps : 1, sizeof(*d->eps));
	if (!d->eps)
		return -ENOMEM;
	memcpy(d->eps, p, d->hdr.n_eps * sizeof(*d->eps));
	p += d->hdr.n_eps * sizeof(*d->eps);
	d->ports = calloc(d->hdr.n_ports ? d->hdr.n_ports : 1, sizeof(*d->ports));
	if (!d->ports)
		return -ENOMEM;
	memcpy(d->ports, p, d->hdr.n_ports * sizeof(*d->ports));
	p += d->hdr.n_ports * sizeof(*d->ports);
	/* vd__ctl_check let through exactly the records, with the spares section or without. */
	d->has_spares = (size_t)(p - (const char *)rep.payload) < rep.payload_len;
	if (d->has_spares)
		memcpy(d->spares, p, d->hdr.n_ifaces * sizeof(d->spares[0]));
	return 0;
}

static const char *proto_name(uint8_t p)
{
	return p == VD_CTL_PROTO_TCP ? "tcp" : "udp";
}

/* The ports of endpoint ep_id as "tcp/80 udp/53 tcp/40123*" (* = ephemeral), cut to fit buf. */
static void ep_ports_str(const struct stat_data *d, uint32_t ep_id, char *buf, size_t cap)
{
	size_t at = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < d->hdr.n_ports && at + 1 < cap; i++) {
		const struct vd_ctl_stat_port *sp = &d->ports[i];
		if ((sp->flags & VD_CTL_STAT_PORT_HELD) || sp->ep_id != ep_id)
			continue;
		int n = snprintf(buf + at, cap - at, "%s%s/%u%s", at ? " " : "", proto_name(sp->proto),
				 ntohs(sp->port_be), (sp->flags & VD_CTL_STAT_PORT_EPHEMERAL) ? "*" : "");
		if (n < 0 || (size_t)n >= cap - at) {
			buf[at] = '\0';
			break;
		}
		at += (size_t)n;
	}
}

static void print_held(const struct stat_data *d)
{
	uint32_t held = 0;

	for (uint32_t i = 0; i < d->hdr.n_ports; i++)
		held += (d->ports[i].flags & VD_CTL_STAT_PORT_HELD) != 0;
	if (!held)
		return;
	printf("\nheld ports (frames dropped until the hold ends):\n");
	for (uint32_t i = 0; i < d->hdr.n_ports; i++) {
		const struct vd_ctl_stat_port *sp = &d->ports[i];
		if (sp->flags & VD_CTL_STAT_PORT_HELD)
			printf("  %s/%u ifindex %" PRIu32 " %" PRIu32 " ms left\n", proto_name(sp->proto),
			       ntohs(sp->port_be), sp->ifindex, sp->hold_left_ms);
	}
}

static void print_ports(const struct stat_data *d)
{
	char ports[160];

	printf("\n%5s %8s %8s %9s %5s %8s %11s %11s %11s %6s  %s\n", "EP", "SOCK_TCP", "SOCK_UDP", "FALLBACK", "LENT",
	       "REFUSED", "ATT_FRAMES", "ATT_PIECES", "TAP_FRAMES", "PORTS", "(* = ephemeral)");
	for (uint32_t i = 0; i < d->hdr.n_eps; i++) {
		const struct vd_ctl_stat_ep *e = &d->eps[i];
		ep_ports_str(d, e->ep_id, ports, sizeof(ports));
		printf("%5" PRIu32 " %8" PRIu64 " %8" PRIu64 " %9" PRIu64 " %5" PRIu64 " %8" PRIu64 " %11" PRIu64
		       " %11" PRIu64 " %11" PRIu64 " %6" PRIu32 "  %s\n",
		       e->ep_id, e->lib.sock_tcp, e->lib.sock_udp, e->lib.sock_fallback, e->lib.tx_lent,
		       e->lib.tx_lend_refused, e->lib.tx_att_frames, e->lib.tx_att_pieces, e->lib.tx_tap, e->n_ports,
		       ports);
	}
	print_held(d);
}

/* "8.0M": a byte count the way the spares table shows it; "-" for none. */
static void mib_str(uint64_t bytes, char *buf, size_t cap)
{
	if (bytes)
		snprintf(buf, cap, "%.1fM", (double)bytes / (1024.0 * 1024.0));
	else
		snprintf(buf, cap, "-");
}

static void print_spares(const struct stat_data *d)
{
	char umem[24], tcp[24], udp[24];

	if (!d->has_spares)
		return;
	printf("\nready ahead in viaductd (spare endpoint ids with steering rings, UMEM, ephemeral ports):\n");
	printf("%-10s %9s %9s %10s %11s %9s %8s %8s\n", "IFACE", "SPARE_EPS", "RING_JOBS", "SPARE_UMEM", "POOL_TCP",
	       "POOL_UDP", "HELD_TCP", "HELD_UDP");
	for (uint32_t i = 0; i < d->hdr.n_ifaces; i++) {
		const struct vd_ctl_stat_spares *sp = &d->spares[i];
		mib_str(sp->spare_umem_bytes, umem, sizeof(umem));
		snprintf(tcp, sizeof(tcp), "%" PRIu32 "/%" PRIu32, sp->pool_tcp, sp->pool_tcp_target);
		snprintf(udp, sizeof(udp), "%" PRIu32 "/%" PRIu32, sp->pool_udp, sp->pool_udp_target);
		printf("%-10s %9" PRIu32 " %9" PRIu32 " %10s %11s %9s %8" PRIu32 " %8" PRIu32 "\n", d->ifaces[i].ifname,
		       sp->spare_eps, sp->ring_jobs, umem, tcp, udp, sp->held_tcp, sp->held_udp);
	}
}

static void print_text(const struct stat_data *d)
{
	char ip[INET_ADDRSTRLEN];

	printf("viaductd pid %" PRIu32 ": %" PRIu32 " interface(s), %" PRIu32 " endpoint(s)\n\n", d->hdr.daemon_pid,
	       d->hdr.n_ifaces, d->hdr.n_eps);
	printf("%-10s %-15s %5s %6s %-7s %12s %10s %12s %12s %10s %8s\n", "IFACE", "IP", "MTU", "QUEUES", "XDP",
	       "PASSED", "MALFORMED", "STEERED", "REDIRECTED", "RING_FULL", "TOO_BIG");
	for (uint32_t i = 0; i < d->hdr.n_ifaces; i++) {
		const struct vd_ctl_stat_iface *f = &d->ifaces[i];
		ip_str(f->ip_be, ip);
		printf("%-10s %-15s %5" PRIu32 " %6" PRIu32 " %-7s %12" PRIu64 " %10" PRIu64 " %12" PRIu64
		       " %12" PRIu64 " %10" PRIu64 " %8" PRIu64 "\n",
		       f->ifname, ip, f->mtu, f->queues, xdp_mode_name(f->xdp_mode), f->passed, f->malformed,
		       f->steered, f->redirected, f->ring_full, f->too_big);
	}
	print_spares(d);
	if (d->hdr.n_eps == 0) {
		printf("\nno endpoints\n");
		print_held(d);
		return;
	}
	printf("\n%5s %7s %6s %-21s %-7s %5s %12s %14s %8s %12s %14s %9s\n", "EP", "PID", "UID", "ADDR", "RX",
	       "QUEUE", "RX_FRAMES", "RX_BYTES", "RX_DROPS", "TX_FRAMES", "TX_BYTES", "MALFORMED");
	for (uint32_t i = 0; i < d->hdr.n_eps; i++) {
		const struct vd_ctl_stat_ep *e = &d->eps[i];
		char addr[32];
		ip_str(e->ip_be, ip);
		snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(e->port_be));
		printf("%5" PRIu32 " %7" PRIu32 " %6" PRIu32 " %-21s %-7s %5" PRIu32 " %12" PRIu64 " %14" PRIu64
		       " %8" PRIu64 " %12" PRIu64 " %14" PRIu64 " %9" PRIu64 "\n",
		       e->ep_id, e->pid, e->uid, addr, rx_mode_name(e->rx_mode), e->queue, ep_rx_frames(e), e->rx_bytes,
		       ep_rx_drops(e), e->lib.tx_frames, e->lib.tx_bytes, e->lib.rx_malformed);
	}
	print_ports(d);
}

/* Interface names come from the kernel, but a JSON string is only ever written escaped. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(const struct stat_data *d)
{
	char ip[INET_ADDRSTRLEN];

	printf("{\"daemon_pid\": %" PRIu32 ", \"interfaces\": [", d->hdr.daemon_pid);
	for (uint32_t i = 0; i < d->hdr.n_ifaces; i++) {
		const struct vd_ctl_stat_iface *f = &d->ifaces[i];
		ip_str(f->ip_be, ip);
		printf("%s{\"name\": ", i ? ", " : "");
		json_str(f->ifname);
		printf(", \"ifindex\": %" PRIu32 ", \"ip\": \"%s\", \"mtu\": %" PRIu32 ", \"queues\": %" PRIu32
		       ", \"xdp_mode\": \"%s\", \"passed\": %" PRIu64 ", \"malformed\": %" PRIu64
		       ", \"steered\": %" PRIu64 ", \"redirected\": %" PRIu64 ", \"ring_full\": %" PRIu64
		       ", \"too_big\": %" PRIu64 ", \"held\": %" PRIu64,
		       f->ifindex, ip, f->mtu, f->queues, xdp_mode_name(f->xdp_mode), f->passed, f->malformed,
		       f->steered, f->redirected, f->ring_full, f->too_big, f->held);
		if (d->has_spares) {
			const struct vd_ctl_stat_spares *sp = &d->spares[i];
			printf(", \"spare_eps\": %" PRIu32 ", \"ring_jobs\": %" PRIu32 ", \"spare_umems\": %" PRIu32
			       ", \"spare_umem_bytes\": %" PRIu64 ", \"pool_tcp\": %" PRIu32
			       ", \"pool_tcp_target\": %" PRIu32 ", \"pool_udp\": %" PRIu32 ", \"pool_udp_target\": %" PRIu32 ", \"held_tcp\": %" PRIu32
			       ", \"held_udp\": %" PRIu32,
			       sp->spare_eps, sp->ring_jobs, sp->spare_umems, sp->spare_umem_bytes, sp->pool_tcp,
			       sp->pool_tcp_target, sp->pool_udp, sp->pool_udp_target, sp->held_tcp, sp->held_udp);
		}
		printf("}");
	}
	printf("], \"endpoints\": [");
	for (uint32_t i = 0; i < d->hdr.n_eps; i++) {
		const struct vd_ctl_stat_ep *e = &d->eps[i];
		ip_str(e->ip_be, ip);
		printf("%s{\"id\": %" PRIu32 ", \"pid\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"iface\": ", i ? ", " : "",
		       e->ep_id, e->pid, e->uid);
		json_str(e->ifname);
		printf(", \"ip\": \"%s\", \"port\": %u, \"rx_mode\": \"%s\", \"queue\": %" PRIu32
		       ", \"rx_frames\": %" PRIu64 ", \"rx_redirected\": %" PRIu64 ", \"rx_steered\": %" PRIu64
		       ", \"rx_bytes\": %" PRIu64 ", \"rx_dropped\": %" PRIu64 ", \"xsk_rx_dropped\": %" PRIu64
		       ", \"xsk_rx_ring_full\": %" PRIu64 ", \"xsk_tx_invalid\": %" PRIu64
		       ", \"lib_rx_frames\": %" PRIu64 ", \"lib_rx_bytes\": %" PRIu64 ", \"tx_frames\": %" PRIu64
		       ", \"tx_bytes\": %" PRIu64 ", \"tx_busy\": %" PRIu64 ", \"malformed\": %" PRIu64
		       ", \"sock_tcp\": %" PRIu64 ", \"sock_udp\": %" PRIu64 ", \"sock_fallback\": %" PRIu64
		       ", \"tx_lent\": %" PRIu64 ", \"tx_lend_refused\": %" PRIu64 ", \"tx_att_frames\": %" PRIu64
		       ", \"tx_att_pieces\": %" PRIu64 ", \"tx_tap\": %" PRIu64 ", \"n_ports\": %" PRIu32 "}",
		       ip, ntohs(e->port_be), rx_mode_name(e->rx_mode), e->queue, ep_rx_frames(e), e->rx_redirected,
		       e->rx_steered, e->rx_bytes, e->rx_dropped, e->xsk_rx_dropped, e->xsk_rx_ring_full,
		       e->xsk_tx_invalid, e->lib.rx_frames, e->lib.rx_bytes, e->lib.tx_frames, e->lib.tx_bytes,
		       e->lib.tx_busy, e->lib.rx_malformed, e->lib.sock_tcp, e->lib.sock_udp, e->lib.sock_fallback,
		       e->lib.tx_lent, e->lib.tx_lend_refused, e->lib.tx_att_frames, e->lib.tx_att_pieces, e->lib.tx_tap,
		       e->n_ports);
	}
	printf("], \"ports\": [");
	for (uint32_t i = 0; i < d->hdr.n_ports; i++) {
		const struct vd_ctl_stat_port *sp = &d->ports[i];
		int is_held = (sp->flags & VD_CTL_STAT_PORT_HELD) != 0;
		printf("%s{\"proto\": \"%s\", \"port\": %u, \"ifindex\": %" PRIu32 ", \"ephemeral\": %s, \"held\": %s",
		       i ? ", " : "", proto_name(sp->proto), ntohs(sp->port_be), sp->ifindex,
		       (sp->flags & VD_CTL_STAT_PORT_EPHEMERAL) ? "true" : "false", is_held ? "true" : "false");
		if (is_held)
			printf(", \"hold_left_ms\": %" PRIu32 "}", sp->hold_left_ms);
		else
			printf(", \"ep\": %" PRIu32 "}", sp->ep_id);
	}
	printf("]}\n");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: viaduct stat [--socket PATH] [--json]\n"
		   "Interfaces and endpoints of a running viaductd, with their counters; per interface\n"
		   "what it keeps ready ahead: SPARE_EPS endpoint ids with a steering ring installed\n"
		   "(RING_JOBS: rings being installed or removed), a pre-faulted SPARE_UMEM, pooled\n"
		   "ephemeral ports (POOL_TCP/POOL_UDP: pooled/target), and HELD_TCP/HELD_UDP ports\n"
		   "held for TIME-WAIT. Per endpoint, TCP large sends from lent TX memory (xdp, jumbo\n"
		   "MTU): LENT TX buffers lent to send rings now, REFUSED lends (none free), ATT_FRAMES\n"
		   "frames sent with attached pieces of lent memory and ATT_PIECES those pieces; all 0\n"
		   "when sends copy into each frame (MTU 1500, other backends).\n"
		   "  --socket PATH  the daemon's control socket (default $" VD_CTL_ENV_PATH ", else " VD_CTL_DEFAULT_PATH
		   ")\n"
		   "  --json         one JSON object instead of tables\n");
}

int vd__cli_stat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int json = 0, c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "viaduct stat: unknown or misused option '%s'\n\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "viaduct stat: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* Name the socket actually tried, resolved as vd__ctl_connect() does. */
	const char *shown = path ? path : getenv(VD_CTL_ENV_PATH);
	if (!shown || !shown[0])
		shown = VD_CTL_DEFAULT_PATH;

	struct stat_data d = { 0 };
	const char *why = NULL;
	int r = fetch(path, &d, &why);
	if (r < 0) {
		if (r == -ENOENT || r == -ECONNREFUSED)
			fprintf(stderr, "viaduct stat: no viaductd at %s: %s\n", shown, strerror(-r));
		else
			fprintf(stderr, "viaduct stat: %s: %s%s%s\n", shown, strerror(-r), why ? ": " : "",
				why ? why : "");
		return 1;
	}
	if (json)
		print_json(&d);
	else
		print_text(&d);
	free(d.eps);
	free(d.ports);
	return 0;
}
