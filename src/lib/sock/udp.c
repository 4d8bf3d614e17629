/* SPDX-License-Identifier: MIT */
/*
 * UDP (RFC 768) for the stack: a port table, per-socket datagram queues bounded by SO_RCVBUF, and the send
 * path, which writes the IPv4 header (RFC 791) and the UDP header with its checksum straight into the nic's
 * TX buffer. No IP fragmentation: a datagram that does not fit the IP MTU is refused with EMSGSIZE, as
 * Linux does for a socket with IP_PMTUDISC_DO.
 */
#include "sock_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "lib/core/frame.h"

#define NPORTS 65536u
#define UDP_MAX_PAYLOAD 65507u   /* 65535 - 20 (IPv4) - 8 (UDP) */
#define IP_TTL_DEFAULT 64u       /* RFC 1700 / Linux's ip_default_ttl */
#define IP_FLAG_DF 0x4000u       /* RFC 791 3.1: Don't Fragment */
#define UDP_MIN_RCVBUF 2304u     /* Linux's SOCK_MIN_RCVBUF */
#define UDP_MIN_SNDBUF 4608u     /* Linux's SOCK_MIN_SNDBUF */
#define UDP_MAX_BUF (64u << 20)

struct vd__udp {
	struct vd_stack *st;
	struct vd__udp_sock **ports;   /* by local port, host order; one socket per port */
	uint64_t rx, tx, rx_dropped, malformed;
};

int vd__udp_new(struct vd__udp **out, struct vd_stack *st)
{
	struct vd__udp *u = vd__shm_calloc(st->heap, 1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	/* 512 KiB of pointers, zero pages until a port is used: cheaper than a hash on every datagram. */
	u->ports = vd__shm_calloc(st->heap, NPORTS, sizeof(*u->ports));
	if (!u->ports) {
		vd__shm_free(st->heap, u);
		return -ENOMEM;
	}
	u->st = st;
	*out = u;
	return 0;
}

void vd__udp_free(struct vd__udp *u)
{
	if (!u)
		return;
	vd__shm_free(u->st->heap, u->ports);
	vd__shm_free(u->st->heap, u);
}

void vd__udp_stats(const struct vd__udp *u, struct vd_stack_stats *out)
{
	out->udp_rx_datagrams = u->rx;
	out->udp_tx_datagrams = u->tx;
	out->udp_rx_dropped = u->rx_dropped;
	out->udp_malformed = u->malformed;
}

void vd__udp_sock_init(struct vd__udp_sock *us)
{
	memset(us, 0, sizeof(*us));
	us->rcvbuf = VD_UDP_DEFAULT_RCVBUF;
	us->sndbuf = VD_UDP_DEFAULT_SNDBUF;
}

static uint32_t charge(uint32_t len)
{
	return len + VD_UDP_DGRAM_OVERHEAD;
}

static void queue_drop_all(struct vd__udp *u, struct vd__udp_sock *us)
{
	struct vd__udp_dgram *d = us->q_head;
	while (d) {
		struct vd__udp_dgram *n = d->next;
		vd__shm_free(u->st->heap, d);
		d = n;
	}
	us->q_head = us->q_tail = NULL;
	us->q_bytes = us->q_count = 0;
}

void vd__udp_sock_release(struct vd__udp *u, struct vd__udp_sock *us)
{
	queue_drop_all(u, us);
	if (us->local_port) {
		uint16_t p = ntohs(us->local_port);
		if (u->ports[p] == us)
			u->ports[p] = NULL;
		(void)vd_nic_port_del(u->st->nic, IPPROTO_UDP, us->local_port, 0);
		us->local_port = 0;
	}
}

int vd__udp_bind(struct vd__udp *u, struct vd__udp_sock *us, uint32_t ip, uint16_t port)
{
	if (us->local_port)
		return -EINVAL;
	if (ip != htonl(INADDR_ANY) && ip != u->st->ip)
		return -EADDRNOTAVAIL;
	if (port && u->ports[ntohs(port)])
		return -EADDRINUSE;
	int rc = vd_nic_port_add(u->st->nic, IPPROTO_UDP, &port);
	if (rc < 0)
		return rc;
	if (u->ports[ntohs(port)]) { /* an ephemeral port we already hold cannot come back, but be sure */
		(void)vd_nic_port_del(u->st->nic, IPPROTO_UDP, port, 0);
		return -EADDRINUSE;
	}
	us->local_ip = ip;
	us->local_port = port;
	u->ports[ntohs(port)] = us;
	return 0;
}

int vd__udp_connect(struct vd__udp *u, struct vd__udp_sock *us, uint32_t ip, uint16_t port, int unspec)
{
	if (unspec) {
		/* connect(AF_UNSPEC) dissolves the association (POSIX connect(), Linux udp_disconnect). */
		us->connected = 0;
		us->peer_ip = 0;
		us->peer_port = 0;
		return 0;
	}
	if (port == 0)
		return -EINVAL;
	if (!us->local_port) {
		int rc = vd__udp_bind(u, us, htonl(INADDR_ANY), 0);
		if (rc < 0)
			return rc;
	}
	/* Linux connects INADDR_ANY to the local host; here that is our own address. */
	us->peer_ip = ip == htonl(INADDR_ANY) ? u->st->ip : ip;
	us->peer_port = port;
	us->connected = 1;
	/* A connected socket receives only from its peer: queued datagrams from others stay (as on Linux). */
	return 0;
}

static inline uint16_t rd_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t pseudo_sum(uint32_t src_be, uint32_t dst_be, uint16_t udp_len)
{
	/* RFC 768 pseudo-header: source, destination, zero, protocol, UDP length (summed in network order
	 * as they lie in memory, which the one's-complement sum allows: RFC 1071 2.B). */
	uint64_t s = (uint64_t)src_be + dst_be + htons(IPPROTO_UDP) + htons(udp_len);
	s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

void vd__udp_input(struct vd__udp *u, const uint8_t *ip, uint32_t len)
{
	uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4u;
	if (len < ihl + VD_UDP_HLEN) {
		u->malformed++;
		return;
	}
	const uint8_t *udp = ip + ihl;
	uint32_t ulen = rd_be16(udp + 4);
	/* RFC 768: the length covers header and data; it may not exceed what the IP packet carries. */
	if (ulen < VD_UDP_HLEN || ulen > len - ihl) {
		u->malformed++;
		return;
	}
	uint32_t src, dst;
	memcpy(&src, ip + 12, 4);
	memcpy(&dst, ip + 16, 4);
	uint16_t csum;
	memcpy(&csum, udp + 6, 2);
	if (csum != 0) { /* RFC 768: zero means the sender computed none */
		uint32_t ps = pseudo_sum(src, dst, (uint16_t)ulen);
		/* A Linux sender behind a veth with TX checksum offload leaves only the pseudo-header sum
		 * (CHECKSUM_PARTIAL, never completed on a virtual link): accepted as frame.c does. */
		uint16_t partial = (uint16_t)~vd__csum_fold(ps);
		if (csum != partial && vd__csum_fold(vd__csum_partial(udp, ulen, ps)) != 0) {
			u->malformed++;
			return;
		}
	}
	uint16_t sport, dport;
	memcpy(&sport, udp, 2);
	memcpy(&dport, udp + 2, 2);
	struct vd__udp_sock *us = u->ports[ntohs(dport)];
	if (!us || (us->local_ip && us->local_ip != dst) ||
	    (us->connected && (us->peer_ip != src || us->peer_port != sport))) {
		u->st->rx_not_ours++;
		return;
	}
	uint32_t plen = ulen - VD_UDP_HLEN;
	/* Bounded by SO_RCVBUF; like Linux, an empty queue takes one datagram whatever its size. */
	if (us->shut_rd || (us->q_count && us->q_bytes + charge(plen) > us->rcvbuf)) {
		u->rx_dropped++;
		return;
	}
	struct vd__udp_dgram *d = vd__shm_alloc(u->st->heap, sizeof(*d) + plen);
	if (!d) {
		u->rx_dropped++;
		return;
	}
	d->next = NULL;
	d->src_ip = src;
	d->src_port = sport;
	d->len = plen;
	memcpy(d->data, udp + VD_UDP_HLEN, plen);
	if (us->q_tail)
		us->q_tail->next = d;
	else
		us->q_head = d;
	us->q_tail = d;
	us->q_count++;
	us->q_bytes += charge(plen);
	u->rx++;
	u->st->dirty = 1;
}

ssize_t vd__udp_send(struct vd__udp *u, struct vd__udp_sock *us, const struct iovec *iov, int iovcnt,
		     const struct sockaddr_in *dst)
{
	struct vd_stack *st = u->st;
	uint32_t dip;
	uint16_t dport;

	if (dst) {
		dip = dst->sin_addr.s_addr;
		dport = dst->sin_port;
		if (dport == 0)
			return -EINVAL;
		if (dip == htonl(INADDR_ANY))
			dip = st->ip;
	} else if (us->connected) {
		dip = us->peer_ip;
		dport = us->peer_port;
	} else {
		return -EDESTADDRREQ;
	}
	if (us->shut_wr)
		return -EPIPE;
	if (dip == htonl(INADDR_BROADCAST) && !us->broadcast)
		return -EACCES;

	size_t total = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UDP_MAX_PAYLOAD || total + iov[i].iov_len > UDP_MAX_PAYLOAD)
			return -EMSGSIZE;
		total += iov[i].iov_len;
	}
	/* No IP fragmentation: the datagram must fit one IPv4 packet on this link. */
	if (total + VD_IPV4_HLEN + VD_UDP_HLEN > st->mtu)
		return -EMSGSIZE;
	if (!us->local_port) { /* first send on an unbound socket: an ephemeral port (RFC 768 "source port") */
		int rc = vd__udp_bind(u, us, htonl(INADDR_ANY), 0);
		if (rc < 0)
			return rc;
	}

	struct vd_frame f;
	int rc = vd_nic_tx_alloc(st->nic, &f, 1);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -EAGAIN;
	uint32_t ulen = (uint32_t)total + VD_UDP_HLEN;
	uint32_t plen = ulen + VD_IPV4_HLEN;
	if (plen > f.len) {
		vd_nic_tx_abort(st->nic, &f, 1);
		return -EMSGSIZE;
	}
	uint8_t *ip = f.data;
	uint32_t src = us->local_ip ? us->local_ip : st->ip;
	/* RFC 791 3.1 header: version 4, IHL 5, TOS 0, total length, identification, DF, TTL, protocol. */
	uint16_t w;
	ip[0] = 0x45;
	ip[1] = 0;
	w = htons((uint16_t)plen);
	memcpy(ip + 2, &w, 2);
	w = htons(st->ip_id++);
	memcpy(ip + 4, &w, 2);
	w = htons(IP_FLAG_DF);
	memcpy(ip + 6, &w, 2);
	ip[8] = IP_TTL_DEFAULT;
	ip[9] = IPPROTO_UDP;
	ip[10] = ip[11] = 0;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dip, 4);
	w = vd__csum_fold(vd__csum_partial(ip, VD_IPV4_HLEN, 0));
	memcpy(ip + 10, &w, 2);

	uint8_t *udp = ip + VD_IPV4_HLEN;
	memcpy(udp, &us->local_port, 2);
	memcpy(udp + 2, &dport, 2);
	w = htons((uint16_t)ulen);
	memcpy(udp + 4, &w, 2);
	udp[6] = udp[7] = 0;
	uint8_t *p = udp + VD_UDP_HLEN;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	/*
	 * RFC 768 checksum over pseudo-header, header and data. Left to the nic (VD_NIC_TX_L4_CSUM: device
	 * offload on xdp, software on sim) with the folded pseudo-header sum in the field, as Linux's
	 * CHECKSUM_PARTIAL; the completing side sends a computed zero as all ones.
	 */
	w = (uint16_t)~vd__csum_fold(pseudo_sum(src, dip, (uint16_t)ulen));
	memcpy(udp + 6, &w, 2);

	f.len = plen;
	f.peer.ip = dip;
	f.peer.port = VD_NIC_TX_L4_CSUM;
	rc = vd_nic_tx_burst(st->nic, &f, 1);
	if (rc <= 0) {
		vd_nic_tx_abort(st->nic, &f, 1);
		return rc < 0 ? rc : -EAGAIN;
	}
	(void)vd_nic_flush(st->nic);
	u->tx++;
	return (ssize_t)total;
}

ssize_t vd__udp_recv(struct vd__udp *u, struct vd__udp_sock *us, const struct iovec *iov, int iovcnt, int flags,
		     struct sockaddr_in *from, int *msg_flags)
{
	(void)u;
	struct vd__udp_dgram *d = us->q_head;
	if (!d)
		return -EAGAIN;
	uint32_t off = 0;
	for (int i = 0; i < iovcnt && off < d->len; i++) {
		size_t n = iov[i].iov_len;
		if (n > d->len - off)
			n = d->len - off;
		if (n)
			memcpy(iov[i].iov_base, d->data + off, n);
		off += (uint32_t)n;
	}
	if (off < d->len && msg_flags)
		*msg_flags |= MSG_TRUNC;
	if (from) {
		memset(from, 0, sizeof(*from));
		from->sin_family = AF_INET;
		from->sin_addr.s_addr = d->src_ip;
		from->sin_port = d->src_port;
	}
	/* recv(2): with MSG_TRUNC the real length of the datagram is returned, even if it was longer. */
	ssize_t ret = (flags & MSG_TRUNC) ? (ssize_t)d->len : (ssize_t)off;
	if (!(flags & MSG_PEEK)) {
		us->q_head = d->next;
		if (!us->q_head)
			us->q_tail = NULL;
		us->q_count--;
		us->q_bytes -= charge(d->len);
		vd__shm_free(u->st->heap, d);
	}
	return ret;
}

uint32_t vd__udp_events(const struct vd__udp_sock *us)
{
	/* As Linux's udp_poll: always writable (TX room is found or waited for at send), readable with a
	 * datagram queued; SHUT_RD reads as end of stream, both directions shut as a hang-up. */
	uint32_t ev = 0;
	if (!us->shut_wr)
		ev |= POLLOUT;
	if (us->q_head)
		ev |= POLLIN;
	if (us->shut_rd)
		ev |= POLLIN | POLLRDHUP;
	if (us->shut_rd && us->shut_wr)
		ev |= POLLHUP;
	return ev;
}

static int get_int(const void *val, socklen_t len, int *out)
{
	if (!val || len < sizeof(int))
		return -EINVAL;
	memcpy(out, val, sizeof(int));
	return 0;
}

static uint32_t clamp_buf(int v, uint32_t min)
{
	/* Linux doubles the value asked for (bookkeeping overhead) and getsockopt reports the double. */
	uint64_t d = v < 0 ? 0 : (uint64_t)v * 2u;
	if (d < min)
		d = min;
	if (d > UDP_MAX_BUF)
		d = UDP_MAX_BUF;
	return (uint32_t)d;
}

int vd__udp_setopt(struct vd__udp_sock *us, int level, int name, const void *val, socklen_t len)
{
	int v, rc;
	if (level != SOL_SOCKET)
		return -ENOPROTOOPT; /* IPPROTO_UDP options (UDP_CORK, ...) and IP-level ones: not here */
	switch (name) {
	case SO_REUSEADDR:
	case SO_REUSEPORT:
	case SO_BROADCAST:
	case SO_KEEPALIVE:
	case SO_RCVBUF:
	case SO_SNDBUF:
		break;
	default:
		return -ENOPROTOOPT;
	}
	if ((rc = get_int(val, len, &v)) < 0)
		return rc;
	switch (name) {
	case SO_REUSEADDR:
		us->reuse_addr = v != 0;
		break;
	case SO_REUSEPORT:
		us->reuse_port = v != 0;
		break;
	case SO_BROADCAST:
		us->broadcast = v != 0;
		break;
	case SO_KEEPALIVE:
		break; /* meaningless for UDP; Linux accepts it too */
	case SO_RCVBUF:
		us->rcvbuf = clamp_buf(v, UDP_MIN_RCVBUF);
		break;
	case SO_SNDBUF:
		us->sndbuf = clamp_buf(v, UDP_MIN_SNDBUF);
		break;
	}
	return 0;
}

int vd__udp_getopt(struct vd__udp_sock *us, int level, int name, void *val, socklen_t *len)
{
	int v;
	if (level != SOL_SOCKET)
		return -ENOPROTOOPT;
	switch (name) {
	case SO_REUSEADDR:
		v = us->reuse_addr;
		break;
	case SO_REUSEPORT:
		v = us->reuse_port;
		break;
	case SO_BROADCAST:
		v = us->broadcast;
		break;
	case SO_KEEPALIVE:
	case SO_ERROR:        /* no ICMP, so never an asynchronous error */
	case SO_ACCEPTCONN:
		v = 0;
		break;
	case SO_RCVBUF:
		v = (int)us->rcvbuf;
		break;
	case SO_SNDBUF:
		v = (int)us->sndbuf;
		break;
	default:
		return -ENOPROTOOPT;
	}
	if (!val || !len || *len < sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(int));
	*len = sizeof(int);
	return 0;
}
