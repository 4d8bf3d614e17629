/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the TCP engine's input path (vd__tcp_input) with the state around it.
 *
 * Each input starts from the same deterministic state (tests/unit/tcp_harness.h over the sim backend,
 * fixed seed and secret): an engine at 10.0.0.1 with a listener on port 80, an accepted connection from
 * 10.0.0.2:40000 and an actively opened one to 10.0.0.2:5000, both with MSS, WS, SACK and timestamps.
 * The input is then a script of operations:
 *
 *   packet  the next bytes are a TCP segment (header, options, data: anything), wrapped in a valid IPv4
 *           header (what the nic guarantees: version, IHL, lengths, header checksum, no fragment), sent
 *           as is or steered by mode bits: ports of one of the connections / the listener / a closed port,
 *           sequence and acknowledgment numbers near the ones the connection expects, the checksum
 *           repaired, IPv4 options in front. Steering is what lets random bytes reach past the checksum
 *           and the window checks into the state machine.
 *   clock   the virtual clock moves (timers fire: retransmission, delayed ACK, persist, keepalive,
 *           TIME-WAIT, SYN-RECEIVED expiry).
 *   app     send, recv, shutdown, close, accept, setsockopt on the sockets.
 *   ack     a well-formed ACK of one connection (SACK blocks, window, data, FIN) from numbers the peer
 *           tracks: duplicate ACKs, SACK recovery, zero windows.
 *   flood   a burst of SYNs to the listener (SYN queue full: cookies or drops); complete: the ACK of the
 *           last SYN-ACK seen (a cookie), right or wrong.
 *
 * Oracles: ASan/UBSan (no out-of-bounds, no use-after-free, no UB), libFuzzer's leak check (everything is
 * freed by vd__tcp_free), and the harness's check of every packet the engine sends (valid IPv4 and TCP
 * checksums, well-formed options, SYN-only options only on SYNs): a malformed output aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/tcp_harness.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	struct th h;
	struct th_conn *c[2];     /* [0] passive (accepted), [1] active */
	uint32_t acked[2];        /* the highest ACK the peer sent on each (its SND.UNA view of the engine) */
	struct vd__tcb *l;
	int closed[2];
	int l_closed;
	int have_sa;
	struct th_seg sa;         /* the last SYN-ACK the engine sent (a cookie, under a flood) */
};

#define FLOOD_PORT 41000      /* peer ports 41000..41031 send SYN bursts */
#define FLOOD_N 32

static void check(int cond)
{
	if (!cond)
		abort();
}

static int setup(struct fz *f)
{
	struct th_synopt o = th_synopt_all();
	memset(f->closed, 0, sizeof(f->closed));
	f->l_closed = 0;
	if (th_open(&f->h, NULL, 77))
		return -1;
	f->h.allow_unroutable = 1; /* segments from made-up addresses and ports get answers nobody takes */
	f->l = th_listen(&f->h, 80, 4);
	if (!f->l)
		return -1;
	if (th_passive_open(&f->h, f->c[0], f->l, 80, 40000, &o) || th_active_open(&f->h, f->c[1], 5000, &o))
		return -1;
	for (uint16_t p = 40001; p < 40004; p++)
		if (th_peer_port(&f->h, p))
			return -1;
	for (uint16_t p = FLOOD_PORT; p < FLOOD_PORT + FLOOD_N; p++)
		if (th_peer_port(&f->h, p))
			return -1;
	for (int i = 0; i < 2; i++)
		f->acked[i] = f->c[i]->rcv_nxt;
	f->have_sa = 0;
	return 0;
}

/* A cursor over the input. */
struct rd {
	const uint8_t *p;
	size_t n;
};

static uint8_t rd8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static uint32_t rd32(struct rd *r)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | rd8(r);
	return v;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Takes in the engine's output (checked by the harness) so the peer's view stays current. */
static void drain(struct fz *f)
{
	static struct th_seg s;
	while (th_recv(&f->h, &s)) {
		for (int i = 0; i < 2; i++)
			th_conn_note(f->c[i], &s);
		if (s.flags == (TH_SYN | TH_ACK) && s.sport == 80) {
			f->sa = s;
			f->have_sa = 1;
		}
	}
	check(f->h.errors == 0);
}

static void op_packet(struct fz *f, struct rd *r, uint8_t op)
{
	uint8_t mode = rd8(r);
	uint8_t ipopt = (op & 0x10) ? (uint8_t)(4 * (1 + (rd8(r) % 10))) : 0;
	uint32_t len = rd8(r);
	len |= (uint32_t)(rd8(r) & 7) << 8; /* up to 2047 bytes of TCP */
	if (len > r->n)
		len = (uint32_t)r->n;
	uint32_t tlen = len < 20 && (mode & 0x80) ? 20 : len;
	size_t plen = 20u + ipopt + tlen;
	uint8_t *pkt = calloc(1, plen);
	if (!pkt)
		return;
	uint8_t *t = pkt + 20 + ipopt;
	memcpy(t, r->p, len);
	r->p += len;
	r->n -= len;

	uint32_t src = TH_PEER_IP;
	if (tlen >= 20) {
		/* Steering: which socket the segment is for. */
		struct th_conn *c = NULL;
		switch (mode & 7) {
		case 0:
		case 1:
			c = f->c[mode & 1];
			put16(t, c->pport);
			put16(t + 2, c->eport);
			break;
		case 2: /* the listener, from a fresh port */
			put16(t, (uint16_t)(40001 + (t[0] % 3)));
			put16(t + 2, 80);
			break;
		case 3: /* a closed port */
			put16(t + 2, 81);
			break;
		case 4: /* another source address */
			src = TH_PEER_IP + 1 + (t[4] & 3);
			put16(t + 2, 80);
			break;
		default: /* raw */
			break;
		}
		if (c && (mode & 0x08)) {
			/* Numbers near the expected ones: seq = peer's SND.NXT + small delta, ack = peer's RCV.NXT
			 * (the engine's SND.NXT) + small delta. */
			int8_t ds = (int8_t)t[4], da = (int8_t)t[8];
			put32(t + 4, c->snd_nxt + (uint32_t)(int32_t)ds * ((mode & 0x40) ? 1000u : 1u));
			put32(t + 8, c->rcv_nxt + (uint32_t)(int32_t)da);
		}
		if (mode & 0x80) {
			/* A header length that fits the segment. */
			uint8_t doff = (uint8_t)(t[12] >> 4);
			if (doff < 5 || doff * 4u > tlen)
				t[12] = (uint8_t)((t[12] & 0x0f) | 0x50);
		}
	}
	/* IPv4 header: valid, as the nic would have checked it. */
	pkt[0] = (uint8_t)(0x40 | ((20 + ipopt) / 4));
	put16(pkt + 2, (uint16_t)plen);
	put16(pkt + 4, 1);
	put16(pkt + 6, 0x4000);
	pkt[8] = 64;
	pkt[9] = IPPROTO_TCP;
	put32(pkt + 12, src);
	put32(pkt + 16, TH_ENG_IP);
	for (int i = 0; i < ipopt; i++)
		pkt[20 + i] = 1; /* NOP */
	if (ipopt)
		pkt[20 + ipopt - 1] = 0; /* EOL */
	put16(pkt + 10, th_fold(th_sum(pkt, 20u + ipopt, 0)));
	if ((mode & 0x30) != 0x30 && tlen >= 18) {
		/* Mostly with a correct TCP checksum, so the input reaches past it. */
		put16(t + 16, 0);
		put16(t + 16, th_tcp_csum(src, TH_ENG_IP, t, tlen));
	}
	vd__tcp_input(f->h.tcp, pkt, (uint32_t)plen);
	free(pkt);
	th_pump(&f->h);
	drain(f);
}

static void op_app(struct fz *f, struct rd *r)
{
	uint8_t a = rd8(r), arg = rd8(r);
	int which = a & 1;
	struct vd__tcb *c = f->closed[which] ? NULL : f->c[which]->tcb;
	static uint8_t buf[8192];
	switch ((a >> 1) % 9) {
	case 0:
		if (c) {
			th_fill(buf, 0, sizeof(buf));
			ssize_t n = th_app_send(c, buf, 1u + arg * 31u);
			check(n > 0 || n == -EAGAIN || n == -EPIPE || n == -ENOTCONN || n == -ECONNRESET ||
			      n == -ETIMEDOUT);
		}
		break;
	case 1:
		if (c) {
			struct iovec iov = { .iov_base = buf, .iov_len = 1u + arg * 31u };
			ssize_t n = vd__tcb_recv(c, &iov, 1, (arg & 1) ? MSG_PEEK : 0);
			check(n >= -4095 && n <= (ssize_t)iov.iov_len);
		}
		break;
	case 2:
		if (c)
			(void)vd__tcb_shutdown(c, (arg % 3 == 0) ? SHUT_RD : (arg % 3 == 1) ? SHUT_WR : SHUT_RDWR);
		break;
	case 3:
		if (c) {
			vd__tcb_close(c);
			f->closed[which] = 1;
		}
		break;
	case 4:
		if (!f->l_closed) {
			struct vd__tcb *n = NULL;
			if (vd__tcb_accept(f->l, &n) == 0) {
				check(n != NULL);
				if (arg & 1)
					vd__tcb_close(n); /* the rest are freed with the engine */
			}
		}
		break;
	case 5:
		if (c)
			(void)th_setopt_int(c, IPPROTO_TCP, TCP_NODELAY, arg & 1);
		break;
	case 6:
		if (c) {
			(void)th_setopt_int(c, SOL_SOCKET, SO_KEEPALIVE, 1);
			(void)th_setopt_int(c, IPPROTO_TCP, TCP_KEEPIDLE, 1 + arg % 8);
			(void)th_setopt_int(c, IPPROTO_TCP, TCP_KEEPINTVL, 1);
			(void)th_setopt_int(c, IPPROTO_TCP, TCP_KEEPCNT, 1 + arg % 3);
		}
		break;
	case 7:
		if (c) {
			(void)vd__tcb_events(c);
			(void)vd__tcb_error(c);
			(void)vd__tcb_readable(c);
			check(vd__tcb_state_name(c) != NULL);
		}
		break;
	default:
		if (!f->l_closed && (arg & 0x80)) {
			vd__tcb_close(f->l);
			f->l_closed = 1;
		}
		break;
	}
	th_pump(&f->h);
	drain(f);
}

static void op_clock(struct fz *f, struct rd *r)
{
	uint8_t v = rd8(r);
	uint64_t ns;
	if (v < 128)
		ns = (uint64_t)v * TH_MS;          /* up to 127 ms: delayed ACK, RTO */
	else if (v < 240)
		ns = (uint64_t)(v - 127) * TH_SEC; /* up to 112 s: backoff, keepalive */
	else
		ns = (uint64_t)(v - 239) * 600 * TH_SEC; /* TIME-WAIT, give-up */
	th_advance(&f->h, ns);
	drain(f);
}

/*
 * A well-formed segment of one connection from the peer: ACK somewhere between what it acknowledged so
 * far and what it has received, SACK blocks above it, a window (sometimes 0), some data, maybe FIN. This is
 * what drives duplicate ACKs, SACK recovery, window updates and persist.
 */
static void op_ack(struct fz *f, struct rd *r, uint8_t op)
{
	int i = (op >> 3) & 1;
	struct th_conn *c = f->c[i];
	static struct th_seg s;
	uint8_t a = rd8(r), b = rd8(r), w = rd8(r), d = rd8(r);
	uint32_t span = c->rcv_nxt - f->acked[i];
	uint32_t ack = f->acked[i] + (span > 0x1000000u ? 0 : (uint32_t)(((uint64_t)span * a) / 255));
	th_seg_init(c, &s, TH_ACK | ((d & 0x80) ? TH_FIN : 0));
	s.ack = ack;
	s.win = w < 16 ? 0 : (uint16_t)(w << 8);
	s.nsack = (uint8_t)(b & 3);
	uint32_t mss = c->eng_mss ? c->eng_mss : 536;
	for (unsigned k = 0; k < s.nsack; k++) {
		uint32_t lo = ack + (uint32_t)rd8(r) * mss / 4, len = 1 + (uint32_t)rd8(r) * mss / 8;
		s.sack[k][0] = lo;
		s.sack[k][1] = lo + len;
	}
	s.len = (d & 0x7f) < 100 ? 0 : (uint32_t)(d & 0x7f) * 8;
	th_fill(s.data, 0, s.len);
	c->snd_nxt += s.len + ((d & 0x80) ? 1u : 0u);
	c->win = s.win;
	th_conn_send(&f->h, c, &s);
	if (th_lt(f->acked[i], ack))
		f->acked[i] = ack;
	drain(f);
}

/* A burst of SYNs to the listener from the flood ports (fills its queue: SYN cookies or drops). */
static void op_flood(struct fz *f, struct rd *r)
{
	uint8_t n = (uint8_t)(1 + rd8(r) % FLOOD_N), optbits = rd8(r);
	static struct th_seg s;
	for (uint8_t k = 0; k < n; k++) {
		memset(&s, 0, offsetof(struct th_seg, data));
		s.src_ip = TH_PEER_IP;
		s.dst_ip = TH_ENG_IP;
		s.sport = (uint16_t)(FLOOD_PORT + k);
		s.dport = 80;
		s.seq = th_piss(s.sport) + optbits;
		s.flags = TH_SYN;
		s.win = 65535;
		s.has_mss = optbits & 1, s.mss = (uint16_t)(100 + optbits * 5);
		s.has_ws = (optbits >> 1) & 1, s.ws = (uint8_t)(optbits >> 4);
		s.sack_ok = (optbits >> 2) & 1;
		s.has_ts = (optbits >> 3) & 1, s.tsval = 1000u + k;
		th_send(&f->h, &s);
	}
	drain(f);
}

/* Completes the handshake of the last SYN-ACK seen (a SYN cookie's, after a flood), maybe with data. */
static void op_complete(struct fz *f, struct rd *r)
{
	if (!f->have_sa)
		return;
	uint8_t v = rd8(r);
	static struct th_seg s;
	memset(&s, 0, offsetof(struct th_seg, data));
	s.src_ip = TH_PEER_IP;
	s.dst_ip = TH_ENG_IP;
	s.sport = f->sa.dport;
	s.dport = 80;
	s.seq = f->sa.ack;
	s.ack = f->sa.seq + 1 + ((v & 0x80) ? v : 0); /* sometimes a wrong cookie */
	s.flags = TH_ACK | ((v & 0x40) ? TH_PSH : 0);
	s.win = 1000;
	if (f->sa.has_ts && (v & 1))
		s.has_ts = 1, s.tsval = 5000, s.tsecr = f->sa.tsval;
	s.len = (v & 0x40) ? 100 : 0;
	th_fill(s.data, 0, s.len);
	th_send(&f->h, &s);
	drain(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct th_conn conns[2];
	struct fz f;
	memset(&f, 0, sizeof(f));
	f.c[0] = &conns[0];
	f.c[1] = &conns[1];
	check(setup(&f) == 0);
	check(f.h.errors == 0);

	struct rd r = { .p = data, .n = size };
	for (int ops = 0; r.n && ops < 256; ops++) {
		uint8_t op = rd8(&r);
		switch (op & 7) {
		case 0:
		case 1:
		case 2:
			op_packet(&f, &r, op);
			break;
		case 3:
			op_clock(&f, &r);
			break;
		case 4:
			op_app(&f, &r);
			break;
		case 5:
			op_ack(&f, &r, op);
			break;
		case 6:
			op_flood(&f, &r);
			break;
		default:
			op_complete(&f, &r);
			break;
		}
		if ((op & 0x70) == 0x70) {
			/* A seq number from the input: moves the peer's idea of its own numbers (old and new
			 * duplicates become reachable). */
			f.c[op >> 7]->snd_nxt += rd32(&r) & 0xffff;
		}
	}
	th_advance(&f.h, 1000 * TH_SEC);
	drain(&f);
	struct vd__tcp_stats st;
	vd__tcp_stats(f.h.tcp, &st);
	check(st.conns <= 4096);
	check(th_close(&f.h) == 0);
	return 0;
}
