/* SPDX-License-Identifier: MIT */
/*
 * The control socket. Every connection is non-blocking and has bounded buffers, so one slow or hostile
 * client can never stall the daemon or the others:
 *   - input: at most one message (VD_CTL_MAX_MSG) is buffered; a header whose magic or length is wrong
 *     loses framing: an error reply is sent and the connection closed once the reply is out.
 *   - output: replies queue per connection; past VD_CTL_OUT_CAP bytes the daemon stops reading that
 *     connection's requests until the client reads its replies (back-pressure, nothing is dropped).
 *   - at most VD_CTL_MAX_CONNS connections; more are accepted and closed at once.
 * Each complete message goes through vd__ctl_check() before any field is read. Descriptors a client
 * might send are never accepted (plain recv(): the kernel discards SCM_RIGHTS it cannot deliver).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define VD_CTL_MAX_CONNS 128
#define VD_CTL_OUT_CAP (1u << 20)

struct vd_outmsg {
	struct vd_outmsg *next;
	size_t len, off;
	int fds[VD_CTL_MAX_FDS];
	unsigned nfds;
	unsigned char data[];
};

struct vd_conn {
	struct vd_evsrc src;      /* first: the loop hands back this pointer */
	uint64_t serial;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	unsigned char *in;        /* VD_CTL_MAX_MSG bytes */
	size_t in_len;
	struct vd_outmsg *out_head, *out_tail;
	size_t out_bytes;
	bool closing;             /* framing lost: close once the queued replies are out */
	uint32_t events;          /* as registered with the loop */
	struct vd_ep *eps;
	struct vd_port *ports;
	struct vd_conn *next;
};

static struct vd_evsrc listener = { .fd = -1 };
static struct vd_evsrc listen_pause = { .fd = -1 }; /* timerfd: re-arms the listener (listener_out_of_fds) */
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct vd_conn *conns;
static unsigned n_conns;
static uint64_t next_serial = 1;

static void conn_destroy(struct vd_conn *c);
static void conn_process(struct vd_conn *c);

struct vd_ep **vd__conn_eps(struct vd_conn *c)
{
	return &c->eps;
}

struct vd_port **vd__conn_ports(struct vd_conn *c)
{
	return &c->ports;
}

uint64_t vd__conn_serial(const struct vd_conn *c)
{
	return c->serial;
}

struct vd_conn *vd__conn_find(uint64_t serial)
{
	for (struct vd_conn *c = conns; c; c = c->next)
		if (c->serial == serial)
			return c;
	return NULL;
}

void vd__conn_cred(const struct vd_conn *c, pid_t *pid, uid_t *uid)
{
	*pid = c->pid;
	*uid = c->uid;
}

/* Registers interest: always input (unless paused or closing), output while replies are queued. */
static void conn_update_events(struct vd_conn *c)
{
	uint32_t ev = EPOLLRDHUP;

	if (!c->closing && c->out_bytes <= VD_CTL_OUT_CAP)
		ev |= EPOLLIN;
	if (c->out_head)
		ev |= EPOLLOUT;
	if (ev != c->events && vd__loop_mod(&c->src, ev) == 0)
		c->events = ev;
}

void vd__conn_kick(struct vd_conn *c)
{
	conn_update_events(c);
}

static void outmsg_free(struct vd_outmsg *m)
{
	for (unsigned i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	free(m);
}

/* Writes queued replies until the socket is full. Returns -1 if the connection must be dropped. */
static int conn_flush(struct vd_conn *c)
{
	while (c->out_head) {
		struct vd_outmsg *m = c->out_head;
		struct iovec iov = { m->data + m->off, m->len - m->off };
		union {
			char buf[CMSG_SPACE(sizeof(int) * VD_CTL_MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		/* Descriptors ride on the reply's first byte (proto.h). */
		if (m->off == 0 && m->nfds) {
			struct cmsghdr *cm;

			memset(&u, 0, sizeof(u));
			mh.msg_control = u.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
			memcpy(CMSG_DATA(cm), m->fds, sizeof(int) * m->nfds);
		}
		n = sendmsg(c->src.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -1;
		}
		if (m->off == 0 && m->nfds) {
			/* The kernel holds its own references to the files in flight: our copies can go. */
			for (unsigned i = 0; i < m->nfds; i++)
				close(m->fds[i]);
			m->nfds = 0;
		}
		m->off += (size_t)n;
		c->out_bytes -= (size_t)n;
		if (m->off == m->len) {
			c->out_head = m->next;
			if (!c->out_head)
				c->out_tail = NULL;
			free(m);
		}
	}
	return 0;
}

int vd__conn_reply(struct vd_conn *c, uint16_t type, uint32_t seq, int32_t status, const void *payload,
		   size_t len, const int *fds, unsigned nfds, const char *reason)
{
	struct vd_outmsg *m;
	struct vd_ctl_hdr h;

	if (status < 0) {
		/* Error replies carry a bounded, NUL-terminated reason and no descriptors. */
		payload = reason ? reason : "";
		len = strnlen(payload, VD_CTL_REASON_MAX - 1) + 1;
		nfds = 0;
	}
	if (sizeof(h) + len > VD_CTL_MAX_MSG || nfds > VD_CTL_MAX_FDS)
		return -EMSGSIZE;
	m = calloc(1, sizeof(*m) + sizeof(h) + len);
	if (!m)
		return -ENOMEM;
	for (unsigned i = 0; i < nfds; i++) {
		m->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (m->fds[i] < 0) {
			int err = -errno;
			m->nfds = i;
			outmsg_free(m);
			return err;
		}
	}
	m->nfds = nfds;
	vd__ctl_hdr_init(&h, (uint16_t)(type | VD_CTL_REPLY), seq, status, len, nfds);
	memcpy(m->data, &h, sizeof(h));
	if (len) {
		if (status < 0) {
			memcpy(m->data + sizeof(h), payload, len - 1);
			m->data[sizeof(h) + len - 1] = '\0';
		} else {
			memcpy(m->data + sizeof(h), payload, len);
		}
	}
	m->len = sizeof(h) + len;
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_bytes += m->len;
	return 0;
}

/* One complete, framed message: validate, then hand to its part. */
static void conn_handle(struct vd_conn *c, const unsigned char *buf, size_t len)
{
	struct vd_ctl_hdr h;
	int err;

	memcpy(&h, buf, sizeof(h));
	err = vd__ctl_check(buf, len, 0);
	if (err) {
		const char *why = err == -EPROTONOSUPPORT ? "unsupported protocol version" :
				  err == -EPROTO ? "bad framing" : "malformed request";

		vd__dbg("conn %llu (pid %d): rejected %s message: %s", (unsigned long long)c->serial, (int)c->pid,
			vd__ctl_type_name(h.type), why);
		vd__conn_reply(c, h.type & (uint16_t)~VD_CTL_REPLY, h.seq, err, NULL, 0, NULL, 0, why);
		if (err == -EPROTO)
			c->closing = true;
		return;
	}
	const void *p = buf + sizeof(h);
	switch (h.type) {
	case VD_CTL_EP_OPEN: {
		struct vd_ctl_ep_open_req r;
		memcpy(&r, p, sizeof(r));
		vd__ep_open(c, h.seq, &r);
		break;
	}
	case VD_CTL_EP_CLOSE: {
		struct vd_ctl_ep_close_req r;
		memcpy(&r, p, sizeof(r));
		vd__ep_close_req(c, h.seq, &r);
		break;
	}
	case VD_CTL_NEIGH: {
		struct vd_ctl_neigh_req r;
		memcpy(&r, p, sizeof(r));
		vd__neigh_req(c, h.seq, &r);
		break;
	}
	case VD_CTL_STAT:
		vd__stat_req(c, h.seq);
		break;
	case VD_CTL_PORT_RESERVE:
	case VD_CTL_PORT_RELEASE: {
		struct vd_ctl_port_req r;
		memcpy(&r, p, sizeof(r));
		if (h.type == VD_CTL_PORT_RESERVE)
			vd__port_reserve_req(c, h.seq, &r);
		else
			vd__port_release_req(c, h.seq, &r);
		break;
	}
	case VD_CTL_EP_PORT_ADD:
	case VD_CTL_EP_PORT_DEL: {
		struct vd_ctl_ep_port_req r;
		memcpy(&r, p, sizeof(r));
		if (h.type == VD_CTL_EP_PORT_ADD)
			vd__ep_port_add_req(c, h.seq, &r);
		else
			vd__ep_port_del_req(c, h.seq, &r);
		break;
	}
	case VD_CTL_EP_PORTS_ADD:
	case VD_CTL_EP_PORTS_DEL: {
		struct vd_ctl_ep_ports_req r;
		memcpy(&r, p, sizeof(r));
		if (h.type == VD_CTL_EP_PORTS_ADD)
			vd__ep_ports_add_req(c, h.seq, &r);
		else
			vd__ep_ports_del_req(c, h.seq, &r);
		break;
	}
	default:
		/* vd__ctl_check() accepted only known types. */
		vd__conn_reply(c, h.type, h.seq, -EBADMSG, NULL, 0, NULL, 0, "unknown type");
	}
}

/* Handles every complete message in the input buffer, as long as output has room. */
static void conn_process(struct vd_conn *c)
{
	while (!c->closing && c->out_bytes <= VD_CTL_OUT_CAP && c->in_len >= sizeof(struct vd_ctl_hdr)) {
		struct vd_ctl_hdr h;

		memcpy(&h, c->in, sizeof(h));
		/* Framing: without the magic and a sane length the next message's start is unknown. */
		if (h.magic != VD_CTL_MAGIC || h.len < sizeof(h) || h.len > VD_CTL_MAX_MSG) {
			vd__dbg("conn %llu: bad framing (magic %#x len %u)", (unsigned long long)c->serial, h.magic, h.len);
			vd__conn_reply(c, h.type & (uint16_t)~VD_CTL_REPLY, h.seq, -EPROTO, NULL, 0, NULL, 0,
				       "bad framing");
			c->closing = true;
			break;
		}
		if (c->in_len < h.len)
			break;
		conn_handle(c, c->in, h.len);
		memmove(c->in, c->in + h.len, c->in_len - h.len);
		c->in_len -= h.len;
	}
}

static void conn_event(struct vd_evsrc *src, uint32_t events)
{
	struct vd_conn *c = (struct vd_conn *)src;

	if (events & EPOLLIN) {
		/* Read what fits; a full buffer holds at least one complete message (len <= MAX_MSG). */
		while (!c->closing && c->in_len < VD_CTL_MAX_MSG) {
			ssize_t n = recv(c->src.fd, c->in + c->in_len, VD_CTL_MAX_MSG - c->in_len, MSG_DONTWAIT);

			if (n > 0) {
				c->in_len += (size_t)n;
				conn_process(c);
				if (c->out_bytes > VD_CTL_OUT_CAP)
					break;
				continue;
			}
			if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				/* EOF or error: the client is gone; reclaim everything now. */
				conn_destroy(c);
				return;
			}
			if (errno == EAGAIN)
				break;
		}
	} else if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
		/* Hang-up while input is paused or closing: nobody will read the replies. */
		conn_destroy(c);
		return;
	}
	if (conn_flush(c) < 0) {
		conn_destroy(c);
		return;
	}
	/* Output drained below the cap: requests held back by back-pressure can now be served. */
	if (!c->closing && c->in_len && c->out_bytes <= VD_CTL_OUT_CAP) {
		conn_process(c);
		if (conn_flush(c) < 0) {
			conn_destroy(c);
			return;
		}
	}
	if (c->closing && !c->out_head) {
		conn_destroy(c);
		return;
	}
	conn_update_events(c);
}

static void conn_destroy(struct vd_conn *c)
{
	struct vd_conn **pp;

	vd__info("conn %llu (pid %d uid %u) closed: reclaiming", (unsigned long long)c->serial, (int)c->pid,
		 (unsigned)c->uid);
	vd__neigh_reclaim_conn(c);
	vd__ep_reclaim_conn(c);
	vd__port_reclaim_conn(c);
	vd__loop_del(&c->src);
	close(c->src.fd);
	while (c->out_head) {
		struct vd_outmsg *m = c->out_head;
		c->out_head = m->next;
		outmsg_free(m);
	}
	for (pp = &conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	n_conns--;
	free(c->in);
	free(c);
}

/*
 * Out of descriptors with a client waiting: the listener stays readable, so returning would bring the
 * event straight back and spin the loop at 100% CPU, starving every client already connected. The
 * listener is taken out of the loop for LISTEN_PAUSE_MS instead (the timerfd was made at start-up, when
 * a descriptor could still be had); waiting clients stay in the backlog and are served once descriptors
 * are free again. Said at most once a second.
 */
#define LISTEN_PAUSE_MS 100

static void listener_out_of_fds(void)
{
	static time_t said;
	static unsigned long pauses;
	time_t now = time(NULL);
	struct itimerspec its = { .it_value.tv_nsec = LISTEN_PAUSE_MS * 1000000L };

	pauses++;
	if (now != said) {
		said = now;
		vd__warn("out of file descriptors: not accepting control connections for %d ms (%lu times so far)",
			 LISTEN_PAUSE_MS, pauses);
	}
	/* Without the timer (it could not be made) the listener stays in: the next event retries. */
	if (listen_pause.fd >= 0 && timerfd_settime(listen_pause.fd, 0, &its, NULL) == 0)
		vd__loop_mod(&listener, 0);
}

static void listen_pause_event(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vd__warn("listener pause timer: %s", strerror(errno));
	vd__loop_mod(&listener, EPOLLIN);
}

static void listener_event(struct vd_evsrc *src, uint32_t events)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		struct vd_conn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				listener_out_of_fds();
			return; /* EAGAIN, or a transient error: retried on the next event */
		}
		if (n_conns >= VD_CTL_MAX_CONNS) {
			vd__warn("too many control connections (%u): refusing one", n_conns);
			close(fd);
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl)) {
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(VD_CTL_MAX_MSG);
		if (!c || !c->in) {
			if (c)
				free(c);
			close(fd);
			continue;
		}
		c->src.fd = fd;
		c->src.cb = conn_event;
		c->serial = next_serial++;
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
		c->events = EPOLLIN | EPOLLRDHUP;
		if (vd__loop_add(&c->src, c->events)) {
			close(fd);
			free(c->in);
			free(c);
			continue;
		}
		c->next = conns;
		conns = c;
		n_conns++;
		vd__dbg("conn %llu from pid %d uid %u", (unsigned long long)c->serial, (int)c->pid, (unsigned)c->uid);
	}
}

/* mkdir -p for the socket's directory; existing directories are left as they are. */
static int make_dirs(const char *path)
{
	char tmp[sizeof(sock_path)];
	char *dir;

	snprintf(tmp, sizeof(tmp), "%s", path);
	dir = dirname(tmp);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

int vd__server_start(const struct vd_server_opts *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, err;

	if (strlen(o->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, o->path);
	err = make_dirs(o->path);
	if (err) {
		vd__err("cannot create the directory of %s: %s", o->path, strerror(-err));
		return err;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a dead daemon is removed; one a live daemon answers on is not. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN) {
		vd__err("%s: another viaductd is listening there", o->path);
		close(fd);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(o->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Created 0600, then opened to the group: never briefly world-accessible. */
	old = umask(0177);
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	umask(old);
	if (!err && (chown(o->path, 0, o->gid) || chmod(o->path, 0660)))
		err = -errno;
	if (!err && listen(fd, 64))
		err = -errno;
	if (err) {
		vd__err("%s: %s", o->path, strerror(-err));
		close(fd);
		unlink(o->path);
		return err;
	}
	strcpy(sock_path, o->path);
	listener.fd = fd;
	listener.cb = listener_event;
	err = vd__loop_add(&listener, EPOLLIN);
	listen_pause.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	listen_pause.cb = listen_pause_event;
	if (!err)
		err = listen_pause.fd < 0 ? -errno : vd__loop_add(&listen_pause, EPOLLIN);
	if (err) {
		vd__server_stop();
		return err;
	}
	vd__info("listening on %s (mode 0660, gid %u)", o->path, (unsigned)o->gid);
	return 0;
}

void vd__server_stop(void)
{
	while (conns)
		conn_destroy(conns);
	if (listener.fd >= 0) {
		vd__loop_del(&listener);
		close(listener.fd);
		listener.fd = -1;
		unlink(sock_path);
	}
	if (listen_pause.fd >= 0) {
		vd__loop_del(&listen_pause);
		close(listen_pause.fd);
		listen_pause.fd = -1;
	}
}
