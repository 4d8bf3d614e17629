/* SPDX-License-Identifier: MIT */
/*
 * The socket-facing calls of the engine (tcp.h "sockets"): bind, listen, accept, connect, send, recv,
 * shutdown, close, events and options, with the errors a BSD/Linux TCP socket gives.
 */
#include "tcp_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>

#define BUF_MIN_SND 4608u          /* Linux's SOCK_MIN_SNDBUF */
#define BUF_MIN_RCV 2304u          /* Linux's SOCK_MIN_RCVBUF */
#define BUF_MAX (64u << 20)
#define BACKLOG_MAX 4096u          /* Linux's default somaxconn */

int vd__tcb_new(struct vd__tcp *t, struct vd__tcb **out)
{
	struct vd__tcb *c = vd__tcp_alloc_tcb(t);
	if (!c)
		return -ENOBUFS;
	*out = c;
	return 0;
}

int vd__tcb_bind(struct vd__tcb *c, uint32_t ip_be, uint16_t port_be)
{
	struct vd__tcp *t = c->t;
	if (c->lport || c->state != TCPS_CLOSED)
		return -EINVAL;
	if (ip_be && ip_be != t->lip)
		return -EADDRNOTAVAIL;
	if (port_be && vd__tcp_bind_conflict(t, c, ip_be, port_be))
		return -EADDRINUSE;
	int eph = 0;
	int r = vd__tcp_port_get(t, &port_be, &eph);
	if (r < 0)
		return r;
	c->lip = ip_be;
	c->lport = port_be;
	c->owns_port = 1;
	c->ephemeral = (uint8_t)eph;
	vd__tcp_bind_add(c);
	return 0;
}

int vd__tcb_listen(struct vd__tcb *c, int backlog)
{
	if (c->state != TCPS_CLOSED && c->state != TCPS_LISTEN)
		return -EINVAL;
	if (c->ever_conn)
		return -EINVAL;
	if (!c->lport) {
		int r = vd__tcb_bind(c, 0, 0);
		if (r < 0)
			return r;
	}
	if (c->state == TCPS_CLOSED) {
		/* listening needs the port to ourselves unless both use SO_REUSEPORT (Linux's rule) */
		for (struct vd__tcb *o = c->t->all; o; o = o->all_next)
			if (o != c && o->state == TCPS_LISTEN && o->lport == c->lport &&
			    (!o->lip || !c->lip || o->lip == c->lip) && !(o->reuseport && c->reuseport))
				return -EADDRINUSE;
	}
	if (backlog < 0)
		backlog = 0;
	if ((uint32_t)backlog > BACKLOG_MAX)
		backlog = BACKLOG_MAX;
	c->backlog = (uint32_t)backlog + 1;   /* Linux admits backlog + 1 connections */
	c->state = TCPS_LISTEN;
	return 0;
}

int vd__tcb_accept(struct vd__tcb *l, struct vd__tcb **out)
{
	if (l->state != TCPS_LISTEN)
		return -EINVAL;
	struct vd__tcb *c = l->acq_head;
	if (!c)
		return -EAGAIN;
	l->acq_head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = NULL;
	else
		l->acq_tail = NULL;
	l->acq_len--;
	c->qnext = c->qprev = NULL;
	c->parent = NULL;
	c->in_acq = 0;
	*out = c;
	return 0;
}

int vd__tcb_connect(struct vd__tcb *c, uint32_t ip_be, uint16_t port_be)
{
	struct vd__tcp *t = c->t;
	switch (c->state) {
	case TCPS_CLOSED:
		break;
	case TCPS_SYN_SENT:
	case TCPS_SYN_RCVD:
		return -EALREADY;
	case TCPS_LISTEN:
		return -EINVAL;
	default:
		return -EISCONN;
	}
	if (c->ever_conn)
		return -EISCONN;   /* a finished connection is not reopened on the same socket (Linux: EISCONN) */
	if (!ip_be || ip_be == 0xffffffffu)
		return -ENETUNREACH;
	if (!port_be)
		return -ECONNREFUSED;
	vd__tcp_clock(t);
	if (!c->lport) {
		int eph = 0;
		uint16_t p = 0;
		int r = vd__tcp_port_get(t, &p, &eph);
		if (r < 0)
			return r == -EADDRINUSE ? -EADDRNOTAVAIL : r;
		c->lport = p;
		c->owns_port = 1;
		c->ephemeral = (uint8_t)eph;
	}
	c->lip = t->lip;
	if (vd__tcp_lookup(t, c->lip, c->lport, ip_be, port_be))
		return -EADDRNOTAVAIL;   /* that 4-tuple is taken (Linux's answer) */
	c->rip = ip_be;
	c->rport = port_be;
	int r = vd__tcb_init_conn(c);
	if (r < 0)
		return r;
	c->err = 0;
	c->iss = vd__tcp_isn(t, c->lip, c->lport, c->rip, c->rport);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->ts_off = vd__tcp_ts_off(t, c->lip, c->lport, c->rip, c->rport);
	/* offer everything; the SYN-ACK decides (RFC 7323 2.2 / 3.2, RFC 2018 2) */
	c->ws_ok = c->ts_ok = c->sack_ok = 1;
	c->rtt_start = t->now;
	c->state = TCPS_SYN_SENT;
	vd__tcp_hash_add(c);
	t->st.active_opens++;
	vd__tcp_send_ctl(c, TH_SYN);
	vd__tcp_arm_rto(c);
	vd__tcp_tx_flush(t);
	return -EINPROGRESS;
}

static int can_send(const struct vd__tcb *c)
{
	return c->state == TCPS_ESTABLISHED || c->state == TCPS_CLOSE_WAIT;
}

ssize_t vd__tcb_send(struct vd__tcb *c, const struct iovec *iov, int iovcnt, int flags)
{
	struct vd__tcp *t = c->t;
	if (c->err) {
		int e = c->err;
		c->err = 0;
		return e;
	}
	if (c->shut_wr || (c->state == TCPS_CLOSED && c->ever_conn) || c->state > TCPS_CLOSE_WAIT ||
	    (c->state >= TCPS_FIN_WAIT_1 && c->state != TCPS_CLOSE_WAIT))
		return -EPIPE;
	if (!can_send(c))
		return -ENOTCONN;
	size_t want = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	if (!want)
		return 0;
	/*
	 * A large write on an empty ring moves the ring into TX memory the nic lends, where segments are sent
	 * from without a second copy (tcp_zc.c); small writes never pay for it (connection loops,
	 * request/response). A nic that cannot lend is not asked again. A lent ring lent for another
	 * SO_SNDBUF than now goes back first, once empty (tcp_zc.c vd__ring_zc_resize).
	 */
	if (c->snd.zc && !c->snd.len)
		(void)vd__ring_zc_resize(&c->snd, c->sndbuf); /* -ENOMEM: the lent ring serves meanwhile */
	if (!c->snd.zc && !c->snd.len && want >= TCP_ZC_MIN_WRITE && !t->zc_off && c->snd.buf) {
		if (vd__ring_zc_take(&c->snd, c, c->sndbuf) == -EOPNOTSUPP)
			t->zc_off = 1;
	}
	uint32_t space = c->sndbuf > c->snd.len ? c->sndbuf - c->snd.len : 0;
	if (space > c->snd.cap - c->snd.len)
		space = c->snd.cap - c->snd.len;
	if (!space)
		return -EAGAIN;
	vd__tcp_clock(t);
	uint32_t n = vd__ring_from_iov(&c->snd, iov, iovcnt, space);
	if (!n) {
		/* lent memory still being sent (tcp_zc.c): ring the doorbell (it takes completions), look
		 * again, else as a full ring - POLLOUT is off meanwhile and vd__tcp_poll wakes the writer
		 * when the chunk completes */
		vd_nic_flush(t->nic);
		n = vd__ring_from_iov(&c->snd, iov, iovcnt, space);
		if (!n)
			return -EAGAIN;
	}
	c->more = (flags & MSG_MORE) != 0;
	vd__tcp_output(c);
	vd__tcp_tx_flush(t);
	return n;
}

ssize_t vd__tcb_recv(struct vd__tcb *c, const struct iovec *iov, int iovcnt, int flags)
{
	struct vd__tcp *t = c->t;
	if (c->state == TCPS_LISTEN)
		return -ENOTCONN;
	if (c->shut_rd)
		return 0;
	if (c->rcv.len) {
		size_t want = 0;
		for (int i = 0; i < iovcnt; i++)
			want += iov[i].iov_len;
		uint32_t n = vd__ring_to_iov(&c->rcv, iov, iovcnt, want > UINT32_MAX ? UINT32_MAX : (uint32_t)want);
		if (!(flags & MSG_PEEK) && n) {
			vd__ring_consume(&c->rcv, n);
			vd__tcp_clock(t);
			vd__tcp_after_read(c);
			if (c->in_dirty) {
				vd__tcp_output(c);
				vd__tcp_tx_flush(t);
			}
		}
		return n;
	}
	/* Linux's order: once the peer's FIN was read, end of stream even if a later reset left an error
	 * (SO_ERROR and send report it) */
	if (c->rcv_fin)
		return 0;
	if (c->err) {
		int e = c->err;
		c->err = 0;
		return e;
	}
	if (c->state == TCPS_CLOSED && c->ever_conn)
		return 0;
	if (c->state == TCPS_CLOSED)
		return -ENOTCONN;
	return -EAGAIN;
}

/* Queues our FIN after the data (RFC 9293 3.10.4 CLOSE in ESTABLISHED / CLOSE-WAIT). */
static void queue_fin(struct vd__tcb *c)
{
	c->shut_wr = 1;
	if (c->fin_queued)
		return;
	if (c->state == TCPS_ESTABLISHED)
		c->state = TCPS_FIN_WAIT_1;
	else if (c->state == TCPS_CLOSE_WAIT)
		c->state = TCPS_LAST_ACK;
	else
		return;   /* SYN-RECEIVED: sent once established (tcp_in.c established()) */
	c->fin_queued = 1;
	c->fin_seq = c->snd_una + c->snd.len;
	c->more = c->cork = 0;   /* nothing more is coming: no reason to hold a partial segment */
	vd__tcp_output(c);
	vd__tcp_tx_flush(c->t);
}

int vd__tcb_shutdown(struct vd__tcb *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (c->state == TCPS_CLOSED || c->state == TCPS_LISTEN || c->state == TCPS_SYN_SENT)
		return -ENOTCONN;
	vd__tcp_clock(c->t);
	if (how != SHUT_WR)
		c->shut_rd = 1;
	if (how != SHUT_RD)
		queue_fin(c);
	vd__tcp_notify(c);
	return 0;
}

void vd__tcb_close(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	vd__tcp_clock(t);
	c->closed_by_user = 1;
	c->user = NULL;
	int unread = c->rcv.len != 0;
	switch (c->state) {
	case TCPS_CLOSED:
	case TCPS_LISTEN:
	case TCPS_SYN_SENT:
		vd__tcp_free_tcb(c);
		break;
	case TCPS_SYN_RCVD:
	case TCPS_ESTABLISHED:
	case TCPS_CLOSE_WAIT:
	case TCPS_FIN_WAIT_1:
	case TCPS_FIN_WAIT_2:
	case TCPS_CLOSING:
	case TCPS_LAST_ACK:
		if (unread || (c->linger_on && c->linger_s == 0) || c->state == TCPS_SYN_RCVD) {
			/* RFC 9293 3.10.4 ABORT: unread data (RFC 2525 2.17) or SO_LINGER 0 */
			vd__tcp_send_ctl(c, TH_RST | TH_ACK);
			t->st.rst_out++;
			vd__tcp_drop(c, 0);
			break;
		}
		if (c->state == TCPS_ESTABLISHED || c->state == TCPS_CLOSE_WAIT) {
			queue_fin(c);
		} else if (c->state == TCPS_FIN_WAIT_2) {
			c->t_2msl = t->now + (uint64_t)t->cfg.time_wait_ms * NS_PER_MS;
			vd__tcp_timer_sched(c);
		}
		break;
	case TCPS_TIME_WAIT:
		if (vd__tcp_tw_handoff(c))
			vd__tcp_free_tcb(c);
		else
			vd__tcp_tw_trim(c);
		break;
	default:
		break;
	}
	vd__tcp_tx_flush(t);
}

uint32_t vd__tcb_events(const struct vd__tcb *c)
{
	uint32_t ev = 0;
	if (c->state == TCPS_LISTEN)
		return c->acq_head ? POLLIN : 0;
	if (c->err)
		ev |= POLLERR;
	int rd_done = c->rcv_fin || c->shut_rd;
	if (c->rcv.len || rd_done)
		ev |= POLLIN;
	if (rd_done)
		ev |= POLLRDHUP;
	if (c->state == TCPS_CLOSED) {
		/* Linux: a never-connected socket polls POLLOUT | POLLHUP; a finished or failed one POLLHUP with
		 * POLLIN (reads return 0 or the error) */
		if (c->ever_conn || c->was_reset || c->err)   /* Linux adds POLLOUT: writes fail at once */
			return ev | POLLHUP | POLLIN | POLLRDHUP | POLLOUT;
		return ev | POLLOUT | POLLHUP;
	}
	if (rd_done && c->shut_wr)
		ev |= POLLHUP;
	if (c->shut_wr) {
		ev |= POLLOUT;   /* Linux: writing would not block (it fails with EPIPE) */
	} else if (c->state == TCPS_ESTABLISHED || c->state == TCPS_CLOSE_WAIT) {
		/* Linux's sk_stream_is_writeable: free space at least half of what is queued */
		/* (a ring in lent nic memory may hold less than SO_SNDBUF, and a write there stops at a chunk
		 * still being sent: writable only when a write would take something, tcp_zc.c) */
		uint32_t lim = c->snd.cap < c->sndbuf ? c->snd.cap : c->sndbuf;
		uint32_t used = c->snd.len, free = lim > used ? lim - used : 0;
		if (free && free >= used / 2 && (!c->snd.zc || vd__ring_zc_writable(&c->snd, c->sndbuf)))
			ev |= POLLOUT;
	}
	return ev;
}

int vd__tcb_error(struct vd__tcb *c)
{
	int e = c->err;
	c->err = 0;
	return e;
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
	uint64_t d = v < 0 ? 0 : (uint64_t)v * 2;   /* Linux doubles the value (bookkeeping overhead) */
	if (d < min)
		d = min;
	if (d > BUF_MAX)
		d = BUF_MAX;
	return (uint32_t)d;
}

int vd__tcb_setopt(struct vd__tcb *c, int level, int name, const void *val, socklen_t len)
{
	int v = 0, r;
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_LINGER: {
			struct linger lg;
			if (!val || len < sizeof(lg))
				return -EINVAL;
			memcpy(&lg, val, sizeof(lg));
			c->linger_on = lg.l_onoff != 0;
			c->linger_s = lg.l_linger < 0 ? 0 : lg.l_linger;
			return 0;
		}
		case SO_REUSEADDR:
		case SO_REUSEPORT:
		case SO_RCVBUF:
		case SO_SNDBUF:
		case SO_KEEPALIVE:
			break;
		default:
			return -ENOPROTOOPT;
		}
		if ((r = get_int(val, len, &v)) < 0)
			return r;
		switch (name) {
		case SO_REUSEADDR:
			c->reuseaddr = v != 0;
			return 0;
		case SO_REUSEPORT:
			c->reuseport = v != 0;
			return 0;
		case SO_RCVBUF: {
			uint32_t b = clamp_buf(v, BUF_MIN_RCV);
			if (c->rcv.buf && b + (1u << 14) > c->rcv.cap &&
			    vd__ring_resize(&c->rcv, b + (1u << 14)) < 0)
				return -ENOMEM;
			c->rcvbuf = b;
			if (c->state >= TCPS_ESTABLISHED)
				vd__tcp_after_read(c);   /* a bigger buffer may open the window */
			return 0;
		}
		case SO_SNDBUF: {
			uint32_t b = clamp_buf(v, BUF_MIN_SND);
			if (c->snd.buf && b > c->snd.cap && vd__ring_resize(&c->snd, b) < 0)
				return -ENOMEM;
			c->sndbuf = b;
			/* a ring in lent memory, lent for the old size: for the new one once empty (tcp_zc.c;
			 * not now, or -ENOMEM: the next send does it) */
			if (c->snd.zc)
				(void)vd__ring_zc_resize(&c->snd, b);
			return 0;
		}
		case SO_KEEPALIVE:
			c->keepalive = v != 0;
			vd__tcp_clock(c->t);
			vd__tcp_arm_keepalive(c);
			return 0;
		}
		return -ENOPROTOOPT;
	}
	if (level != IPPROTO_TCP)
		return -ENOPROTOOPT;
	switch (name) {
	case TCP_NODELAY:
	case TCP_CORK:
	case TCP_MAXSEG:
	case TCP_KEEPIDLE:
	case TCP_KEEPINTVL:
	case TCP_KEEPCNT:
		break;
	default:
		return -ENOPROTOOPT;
	}
	if ((r = get_int(val, len, &v)) < 0)
		return r;
	switch (name) {
	case TCP_NODELAY:
		c->nodelay = v != 0;
		if (c->nodelay && c->state >= TCPS_ESTABLISHED) {
			vd__tcp_clock(c->t);
			vd__tcp_output(c);   /* Linux pushes pending data when Nagle goes off */
			vd__tcp_tx_flush(c->t);
		}
		return 0;
	case TCP_CORK:
		c->cork = v != 0;
		if (!c->cork && c->state >= TCPS_ESTABLISHED) {
			c->more = 0;
			vd__tcp_clock(c->t);
			vd__tcp_output(c);   /* uncorking sends the partial segment */
			vd__tcp_tx_flush(c->t);
		}
		return 0;
	case TCP_MAXSEG:
		if (v < 0 || (v && (v < 88 || v > 65535)))
			return -EINVAL;   /* Linux's bounds (TCP_MIN_MSS 88, MAX_TCP_WINDOW) */
		c->user_mss = (uint32_t)v;
		return 0;
	case TCP_KEEPIDLE:
	case TCP_KEEPINTVL:
		if (v < 1 || v > 32767)
			return -EINVAL;   /* Linux's MAX_TCP_KEEPIDLE / MAX_TCP_KEEPINTVL */
		if (name == TCP_KEEPIDLE)
			c->keepidle_s = (uint32_t)v;
		else
			c->keepintvl_s = (uint32_t)v;
		vd__tcp_clock(c->t);
		vd__tcp_arm_keepalive(c);
		return 0;
	case TCP_KEEPCNT:
		if (v < 1 || v > 127)
			return -EINVAL;   /* Linux's MAX_TCP_KEEPCNT */
		c->keepcnt = (uint32_t)v;
		return 0;
	}
	return -ENOPROTOOPT;
}

static int put_int(void *val, socklen_t *len, int v)
{
	if (!val || !len || *len < sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(int));
	*len = sizeof(int);
	return 0;
}

/* Linux's TCP state numbers (include/net/tcp_states.h), as TCP_INFO reports them. */
static uint8_t linux_state(int s)
{
	static const uint8_t map[] = {
		[TCPS_CLOSED] = 7, [TCPS_LISTEN] = 10, [TCPS_SYN_SENT] = 2, [TCPS_SYN_RCVD] = 3,
		[TCPS_ESTABLISHED] = 1, [TCPS_FIN_WAIT_1] = 4, [TCPS_FIN_WAIT_2] = 5, [TCPS_CLOSE_WAIT] = 8,
		[TCPS_CLOSING] = 11, [TCPS_LAST_ACK] = 9, [TCPS_TIME_WAIT] = 6,
	};
	return map[s];
}

static void fill_info(const struct vd__tcb *c, struct tcp_info *ti)
{
	memset(ti, 0, sizeof(*ti));
	ti->tcpi_state = linux_state(c->state);
	ti->tcpi_backoff = c->backoff;
	if (c->ts_ok)
		ti->tcpi_options |= TCPI_OPT_TIMESTAMPS;
	if (c->sack_ok)
		ti->tcpi_options |= TCPI_OPT_SACK;
	if (c->ws_ok) {
		ti->tcpi_options |= TCPI_OPT_WSCALE;
		ti->tcpi_snd_wscale = c->snd_wscale & 15;
		ti->tcpi_rcv_wscale = c->rcv_wscale & 15;
	}
	ti->tcpi_rto = (uint32_t)(c->rto / 1000);
	ti->tcpi_snd_mss = c->mss;
	ti->tcpi_rcv_mss = c->rcv_mss ? c->rcv_mss : c->mss;
	uint32_t mss = c->mss ? c->mss : 1;
	ti->tcpi_unacked = (c->snd_max - c->snd_una + mss - 1) / mss;
	ti->tcpi_rtt = (uint32_t)(c->srtt / 1000);
	ti->tcpi_rttvar = (uint32_t)(c->rttvar / 1000);
	ti->tcpi_snd_ssthresh = c->ssthresh == UINT32_MAX ? 0x7fffffffu : c->ssthresh / mss;
	ti->tcpi_snd_cwnd = c->cwnd / mss;
	ti->tcpi_total_retrans = c->total_retrans;
	ti->tcpi_advmss = c->t->ip_mtu - IP_HLEN - TCP_HLEN;
	ti->tcpi_rcv_space = c->rcvbuf;
}

int vd__tcb_getopt(struct vd__tcb *c, int level, int name, void *val, socklen_t *len)
{
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_REUSEADDR:
			return put_int(val, len, c->reuseaddr);
		case SO_REUSEPORT:
			return put_int(val, len, c->reuseport);
		case SO_RCVBUF:
			return put_int(val, len, (int)c->rcvbuf);
		case SO_SNDBUF:
			return put_int(val, len, (int)c->sndbuf);
		case SO_KEEPALIVE:
			return put_int(val, len, c->keepalive);
		case SO_ERROR: {
			if (!val || !len || *len < sizeof(int))
				return -EINVAL;
			return put_int(val, len, -vd__tcb_error(c));
		}
		case SO_TYPE:
			return put_int(val, len, SOCK_STREAM);
		case SO_ACCEPTCONN:
			return put_int(val, len, c->state == TCPS_LISTEN);
		case SO_LINGER: {
			struct linger lg = { .l_onoff = c->linger_on, .l_linger = c->linger_s };
			if (!val || !len || *len < sizeof(lg))
				return -EINVAL;
			memcpy(val, &lg, sizeof(lg));
			*len = sizeof(lg);
			return 0;
		}
		default:
			return -ENOPROTOOPT;
		}
	}
	if (level != IPPROTO_TCP)
		return -ENOPROTOOPT;
	switch (name) {
	case TCP_NODELAY:
		return put_int(val, len, c->nodelay);
	case TCP_CORK:
		return put_int(val, len, c->cork);
	case TCP_MAXSEG:
		return put_int(val, len, (int)(c->state >= TCPS_ESTABLISHED ? c->mss
					      : c->user_mss ? c->user_mss : 536));
	case TCP_KEEPIDLE:
		return put_int(val, len, (int)c->keepidle_s);
	case TCP_KEEPINTVL:
		return put_int(val, len, (int)c->keepintvl_s);
	case TCP_KEEPCNT:
		return put_int(val, len, (int)c->keepcnt);
	case TCP_INFO: {
		if (!val || !len)
			return -EINVAL;
		struct tcp_info ti;
		fill_info(c, &ti);
		socklen_t n = *len < sizeof(ti) ? *len : (socklen_t)sizeof(ti);
		memcpy(val, &ti, n);
		*len = n;
		return 0;
	}
	default:
		return -ENOPROTOOPT;
	}
}

int vd__tcb_local(const struct vd__tcb *c, struct vd_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->ip = c->lip;
	out->port = c->lport;
	return 0;
}

int vd__tcb_peer(const struct vd__tcb *c, struct vd_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->rport || c->state == TCPS_LISTEN || (c->state == TCPS_CLOSED && !c->ever_conn))
		return -ENOTCONN;
	out->ip = c->rip;
	out->port = c->rport;
	return 0;
}

uint32_t vd__tcb_readable(const struct vd__tcb *c)
{
	return c->rcv.len;
}

const char *vd__tcb_state_name(const struct vd__tcb *c)
{
	static const char *const names[] = {
		"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
		"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
	};
	return c->state < sizeof(names) / sizeof(names[0]) ? names[c->state] : "?";
}

void vd__tcb_set_user(struct vd__tcb *c, void *user)
{
	c->user = user;
}

void *vd__tcb_user(const struct vd__tcb *c)
{
	return c->user;
}
