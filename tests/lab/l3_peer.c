/* SPDX-License-Identifier: MIT */
/*
 * l3_peer: an xdp endpoint in the nic's IPv4 layer, driven line by line from stdin by a lab test
 * (tests/lab/test_nic_l3.sh), so that the script can act on the kernel side between steps.
 *
 *   l3_peer [--local IP] [--mode auto|direct|steered] [--backend xdp|sim]
 * prints "ready IP mtu MTU pid PID" once open, then answers each command with one line:
 *   add tcp|udp PORT          -> "added PROTO PORT" | "err ERRNO"      (PORT 0: ephemeral)
 *   del tcp|udp PORT HOLD_MS  -> "deleted" | "err ERRNO"
 *   recv N MS                 -> up to N lines "pkt proto=P src=IP sport=S dport=D tcpflags=0xF len=L
 *                                payload=TEXT" (TEXT: printable bytes, '.' for the others) received
 *                                within MS ms, then "done K"
 *   sendudp IP SPORT DPORT TEXT -> a UDP/IPv4 packet built here, checksums computed here: "sent" | "err"
 *   sendudpp IP SPORT DPORT TEXT -> the same with only the pseudo-header sum in the UDP checksum field,
 *                               sent with peer.port = VD_NIC_TX_L4_CSUM (the nic completes it)
 *   quit
 * ERRNO is the positive errno number. Every output line is flushed at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/nic.h>

#define MAX_LINE 512

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* RFC 1071 one's-complement sum, big-endian words. */
static uint32_t sum16(const uint8_t *p, size_t len, uint32_t s)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static int parse_proto(const char *s)
{
	return !strcmp(s, "tcp") ? IPPROTO_TCP : !strcmp(s, "udp") ? IPPROTO_UDP : -1;
}

/* A UDP/IPv4 packet (RFC 791, RFC 768) from src to dst. Returns its length. */
static size_t build_udp(uint8_t *p, uint32_t src_be, uint32_t dst_be, uint16_t sport, uint16_t dport,
			const char *text, int partial)
{
	size_t plen = strlen(text), ulen = 8 + plen, tot = 20 + ulen;
	memset(p, 0, 28);
	p[0] = 0x45;
	p[2] = (uint8_t)(tot >> 8);
	p[3] = (uint8_t)tot;
	p[6] = 0x40; /* DF */
	p[8] = 64;
	p[9] = IPPROTO_UDP;
	memcpy(p + 12, &src_be, 4);
	memcpy(p + 16, &dst_be, 4);
	uint16_t c = fold(sum16(p, 20, 0));
	p[10] = (uint8_t)(c >> 8);
	p[11] = (uint8_t)c;
	uint8_t *u = p + 20;
	u[0] = (uint8_t)(sport >> 8);
	u[1] = (uint8_t)sport;
	u[2] = (uint8_t)(dport >> 8);
	u[3] = (uint8_t)dport;
	u[4] = (uint8_t)(ulen >> 8);
	u[5] = (uint8_t)ulen;
	memcpy(u + 8, text, plen);
	/* pseudo-header: source, destination, zero, protocol, UDP length */
	uint32_t s = sum16(p + 12, 8, 0) + IPPROTO_UDP + (uint32_t)ulen;
	/* CHECKSUM_PARTIAL: the folded pseudo-header sum, not complemented, for the nic to complete. */
	c = partial ? (uint16_t)~fold(s) : fold(sum16(u, ulen, s));
	if (c == 0 && !partial)
		c = 0xffff;
	u[6] = (uint8_t)(c >> 8);
	u[7] = (uint8_t)c;
	return tot;
}

static void print_pkt(const struct vd_frame *f)
{
	const uint8_t *p = f->data;
	char src[INET_ADDRSTRLEN], text[128];
	unsigned ihl = (p[0] & 15u) * 4, l4h = p[9] == IPPROTO_TCP ? ((p[ihl + 12] >> 4) * 4u) : 8u;
	unsigned sport = (unsigned)p[ihl] << 8 | p[ihl + 1], dport = (unsigned)p[ihl + 2] << 8 | p[ihl + 3];
	unsigned flags = p[9] == IPPROTO_TCP ? p[ihl + 13] : 0;
	size_t n = 0;

	inet_ntop(AF_INET, &f->peer.ip, src, sizeof(src));
	for (unsigned i = ihl + l4h; i < f->len && n + 1 < sizeof(text); i++)
		text[n++] = p[i] >= 0x21 && p[i] < 0x7f ? (char)p[i] : '.';
	text[n] = '\0';
	printf("pkt proto=%u src=%s sport=%u dport=%u tcpflags=0x%02x len=%u payload=%s\n", p[9], src, sport,
	       dport, flags, f->len, text);
}

static void cmd_recv(struct vd_nic *nic, unsigned want, int ms)
{
	struct vd_frame f[16];
	unsigned got = 0;
	uint64_t end = now_ms() + (uint64_t)ms;
	while (got < want && now_ms() < end) {
		int n = vd_nic_rx_burst(nic, f, 16);
		if (n <= 0) {
			vd_nic_wait(nic, 20);
			continue;
		}
		for (int i = 0; i < n; i++, got++)
			print_pkt(&f[i]);
		vd_nic_rx_release(nic, f, (unsigned)n);
	}
	printf("done %u\n", got);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "local", 1, 0, 'l' }, { "mode", 1, 0, 'm' }, { "backend", 1, 0, 'b' }, { 0, 0, 0, 0 },
	};
	struct vd_nic_opts o = { .backend = VD_BACKEND_XDP, .queue = -1, .layer = VD_NIC_LAYER_IPV4 };
	int c;
	while ((c = getopt_long(argc, argv, "l:m:b:", lo, NULL)) != -1) {
		switch (c) {
		case 'l': o.local = optarg; break;
		case 'm':
			o.rx_mode = !strcmp(optarg, "direct") ? VD_RX_DIRECT :
				    !strcmp(optarg, "steered") ? VD_RX_STEERED : VD_RX_AUTO;
			break;
		case 'b': o.backend = !strcmp(optarg, "xdp") ? VD_BACKEND_XDP : VD_BACKEND_AUTO; break;
		default:
			fprintf(stderr, "usage: l3_peer [--local IP] [--mode M] [--backend xdp]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct vd_nic *nic;
	int rc = vd_nic_open(&nic, &o);
	if (rc < 0) {
		printf("open failed: %s\n", strerror(-rc));
		return 1;
	}
	struct vd_addr me;
	vd_nic_local_addr(nic, &me);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &me.ip, ip, sizeof(ip));
	printf("ready %s mtu %u pid %d\n", ip, vd_nic_max_payload(nic), (int)getpid());

	char line[MAX_LINE];
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[16], a1[32], a2[32], a3[32], text[256];
		unsigned u1, u2;
		if (sscanf(line, "add %31s %u", a1, &u1) == 2) {
			int proto = parse_proto(a1);
			uint16_t port = htons((uint16_t)u1);
			rc = proto < 0 ? -EINVAL : vd_nic_port_add(nic, proto, &port);
			if (rc < 0)
				printf("err %d\n", -rc);
			else
				printf("added %s %u\n", a1, ntohs(port));
		} else if (sscanf(line, "del %31s %u %u", a1, &u1, &u2) == 3) {
			int proto = parse_proto(a1);
			rc = proto < 0 ? -EINVAL : vd_nic_port_del(nic, proto, htons((uint16_t)u1), u2);
			if (rc < 0)
				printf("err %d\n", -rc);
			else
				printf("deleted\n");
		} else if (sscanf(line, "recv %u %u", &u1, &u2) == 2) {
			cmd_recv(nic, u1, (int)u2);
		} else if (sscanf(line, "%15s %31s %31s %31s %255s", cmd, a1, a2, a3, text) == 5 &&
			   (!strcmp(cmd, "sendudp") || !strcmp(cmd, "sendudpp"))) {
			int partial = cmd[7] == 'p';
			struct vd_addr to = { .port = partial ? VD_NIC_TX_L4_CSUM : 0 };
			uint8_t pkt[600];
			if (inet_pton(AF_INET, a1, &to.ip) != 1) {
				printf("err %d\n", EINVAL);
				continue;
			}
			size_t len = build_udp(pkt, me.ip, to.ip, (uint16_t)atoi(a2), (uint16_t)atoi(a3), text,
					       partial);
			rc = vd_nic_send(nic, &to, pkt, len);
			if (rc < 0)
				printf("err %d\n", -rc);
			else
				printf("sent\n");
		} else if (!strncmp(line, "quit", 4)) {
			break;
		} else {
			printf("err %d\n", EINVAL);
		}
	}
	vd_nic_close(nic);
	return 0;
}
