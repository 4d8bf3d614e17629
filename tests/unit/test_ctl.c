/* SPDX-License-Identifier: MIT */
/* Control-protocol codec and client: every rule of vd__ctl_check, and a request/reply with fds. */
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl/client.h"
#include "ctl/proto.h"
#include "harness.h"

struct msg {
	struct vd_ctl_hdr h;
	union {
		struct vd_ctl_ep_open_req open;
		struct vd_ctl_ep_open_rep open_rep;
		struct vd_ctl_port_req port;
		char raw[512];
	} u;
};

static size_t mk(struct msg *m, uint16_t type, size_t plen)
{
	memset(m, 0, sizeof(*m));
	vd__ctl_hdr_init(&m->h, type, 7, 0, plen, 0);
	return sizeof(m->h) + plen;
}

TEST(valid_requests_pass)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open));
	strcpy(m.u.open.ifname, "eth0");
	m.u.open.queue = -1;
	m.u.open.ring_frames = 1024;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	n = mk(&m, VD_CTL_STAT, 0);
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
	n = mk(&m, VD_CTL_PORT_RESERVE, sizeof(m.u.port));
	m.u.port.proto = VD_CTL_PROTO_TCP;
	CHECK_EQ(vd__ctl_check(&m, n, 0), 0);
}

TEST(framing_errors)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_STAT, 0);
	CHECK_EQ(vd__ctl_check(&m, n - 1, 0), -EPROTO);      /* shorter than a header */
	m.h.magic ^= 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EPROTO);
	n = mk(&m, VD_CTL_STAT, 0);
	m.h.len = 1u << 30;                                    /* length disagrees with what arrived */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EPROTO);
	n = mk(&m, VD_CTL_STAT, 0);
	m.h.version = 99;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EPROTONOSUPPORT);
}

TEST(field_errors)
{
	struct msg m;
	size_t n = mk(&m, 0x77, 0);
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);          /* unknown type */
	n = mk(&m, VD_CTL_STAT | VD_CTL_REPLY, 0);
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);          /* a reply where a request belongs */
	n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open) - 1);
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);          /* short payload */
	n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open));
	memset(m.u.open.ifname, 'x', sizeof(m.u.open.ifname)); /* no NUL */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open));
	m.u.open.rx_mode = 9;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open));
	m.u.open.ring_frames = 1000;                           /* not a power of two */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	n = mk(&m, VD_CTL_EP_OPEN, sizeof(m.u.open));
	m.u.open.queue = -2;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	n = mk(&m, VD_CTL_PORT_RESERVE, sizeof(m.u.port));
	m.u.port.proto = 1;
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
	n = mk(&m, VD_CTL_STAT, 0);
	m.h.status = -1;                                       /* requests carry no status */
	CHECK_EQ(vd__ctl_check(&m, n, 0), -EBADMSG);
}

TEST(replies)
{
	struct msg m;
	size_t n = mk(&m, VD_CTL_EP_OPEN | VD_CTL_REPLY, 6);
	m.h.status = -EBUSY;
	memcpy(m.u.raw, "busy!", 6);
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
	m.u.raw[5] = 'x';                                      /* reason not terminated */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	n = mk(&m, VD_CTL_EP_OPEN | VD_CTL_REPLY, 0);
	m.h.status = 5;                                        /* positive status is meaningless */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);

	n = mk(&m, VD_CTL_EP_OPEN | VD_CTL_REPLY, sizeof(m.u.open_rep));
	m.h.nfds = 4;
	struct vd_ctl_ep_open_rep *r = &m.u.open_rep;
	strcpy(r->ifname, "eth0");
	r->rx_mode = VD_CTL_RX_DIRECT;
	r->frame_size = 4096;
	r->umem_frames = 4096;
	r->rx_frames = 2048;
	r->rx_ring = r->tx_ring = r->fill_ring = r->comp_ring = 2048;
	r->mtu = 1500;
	r->prefix_len = 24;
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
	r->tap_tx_max = 1514;                                  /* a TX tap: a fifth descriptor */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	m.h.nfds = 5;
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
	r->tap_tx_max = VD_CTL_TAP_TX_MAX + 1;                 /* frames tun's XDP path cannot take */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	r->tap_tx_max = 0;                                     /* no tap, yet five descriptors */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	m.h.nfds = 4;
	r->max_frags = 3;                                      /* multi-buffer: 3-chunk TX buffers */
	r->tx_frags = 3;
	r->umem_frames = 2048 + 3 * 682;
	CHECK_EQ(vd__ctl_check(&m, n, 1), 0);
	r->umem_frames = 4096;                                 /* 2048 TX chunks are no whole 3-chunk buffers */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	r->max_frags = 17;                                     /* above VD_CTL_MAX_FRAGS */
	r->tx_frags = 1;
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	r->max_frags = 2;                                      /* TX buffers larger than a frame */
	r->tx_frags = 4;
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	r->max_frags = r->tx_frags = 0;
	r->rx_frames = r->umem_frames;                         /* leaves no TX frames */
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
	r->rx_frames = 0;
	r->frame_size = 3000;
	CHECK_EQ(vd__ctl_check(&m, n, 1), -EBADMSG);
}

TEST(stat_reply_bounds)
{
	char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_stat_rep) + sizeof(struct vd_ctl_stat_iface) +
		 sizeof(struct vd_ctl_stat_ep)] = { 0 };
	struct vd_ctl_hdr h;
	struct vd_ctl_stat_rep s = { .n_ifaces = 1, .n_eps = 1 };
	vd__ctl_hdr_init(&h, VD_CTL_STAT | VD_CTL_REPLY, 1, 0, sizeof(buf) - sizeof(h), 0);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &s, sizeof(s));
	CHECK_EQ(vd__ctl_check(buf, sizeof(buf), 1), 0);
	s.n_eps = 2;                                            /* claims more records than were sent */
	memcpy(buf + sizeof(h), &s, sizeof(s));
	CHECK_EQ(vd__ctl_check(buf, sizeof(buf), 1), -EBADMSG);
	s.n_eps = 1;
	memcpy(buf + sizeof(h), &s, sizeof(s));
	memset(buf + sizeof(h) + sizeof(s), 'a', VD_CTL_IFNAMSIZ); /* interface name not terminated */
	CHECK_EQ(vd__ctl_check(buf, sizeof(buf), 1), -EBADMSG);
}

/*
 * The endpoint record's layout, which readers outside C spell out (tests/lab/daemon_probe.py STAT_EP): the
 * library's page is copied whole into it, so a field added there moves n_ports. A reply one old record
 * long is refused.
 */
TEST(stat_ep_layout)
{
	CHECK_EQ(offsetof(struct vd_ctl_stat_ep, lib), 104);
	CHECK_EQ(sizeof(struct vd_ctl_ep_shared), 14 * sizeof(uint64_t));
	CHECK_EQ(offsetof(struct vd_ctl_ep_shared, tx_lent), 9 * sizeof(uint64_t));
	CHECK_EQ(offsetof(struct vd_ctl_ep_shared, tx_att_pieces), 12 * sizeof(uint64_t));
	CHECK_EQ(offsetof(struct vd_ctl_ep_shared, tx_tap), 13 * sizeof(uint64_t));
	CHECK_EQ(offsetof(struct vd_ctl_stat_ep, n_ports), 104 + 14 * sizeof(uint64_t));
	CHECK_EQ(sizeof(struct vd_ctl_stat_ep), 224);
	/* the layout before the TX tap counter (8 bytes shorter) no longer passes */
	char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_stat_rep) + 224 - 8] = { 0 };
	struct vd_ctl_hdr h;
	struct vd_ctl_stat_rep s = { .n_eps = 1 };
	vd__ctl_hdr_init(&h, VD_CTL_STAT | VD_CTL_REPLY, 1, 0, sizeof(buf) - sizeof(h), 0);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &s, sizeof(s));
	CHECK_EQ(vd__ctl_check(buf, sizeof(buf), 1), -EBADMSG);
}

/* The spares section after the ports: one record per interface, or none (a daemon before it). */
TEST(stat_reply_spares_section)
{
	char buf[sizeof(struct vd_ctl_hdr) + sizeof(struct vd_ctl_stat_rep) + 2 * sizeof(struct vd_ctl_stat_iface) +
		 sizeof(struct vd_ctl_stat_port) + 2 * sizeof(struct vd_ctl_stat_spares)] = { 0 };
	struct vd_ctl_hdr h;
	struct vd_ctl_stat_rep s = { .n_ifaces = 2, .n_ports = 1 };
	struct vd_ctl_stat_port sp = { .proto = VD_CTL_PROTO_TCP, .flags = VD_CTL_STAT_PORT_HELD };
	size_t base = sizeof(h) + sizeof(s) + 2 * sizeof(struct vd_ctl_stat_iface);
	memcpy(buf + sizeof(h), &s, sizeof(s));
	memcpy(buf + base, &sp, sizeof(sp));
	size_t lens[] = { base + sizeof(sp), base + sizeof(sp) + 2 * sizeof(struct vd_ctl_stat_spares),
			  base + sizeof(sp) + sizeof(struct vd_ctl_stat_spares), /* one record for two interfaces */
			  base + sizeof(sp) + 2 * sizeof(struct vd_ctl_stat_spares) - 8 };
	int want[] = { 0, 0, -EBADMSG, -EBADMSG };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		vd__ctl_hdr_init(&h, VD_CTL_STAT | VD_CTL_REPLY, 1, 0, lens[i] - sizeof(h), 0);
		memcpy(buf, &h, sizeof(h));
		CHECK_EQ(vd__ctl_check(buf, lens[i], 1), want[i]);
	}
}

/* A fake daemon on a socketpair answers one NEIGH request, passing one fd, as the real one does. */
TEST(client_call_roundtrip)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct msg in;
		ssize_t n = recv(sv[1], &in, sizeof(in), 0);
		if (n <= 0 || vd__ctl_check(&in, (size_t)n, 0) != 0)
			_exit(1);
		struct {
			struct vd_ctl_hdr h;
			struct vd_ctl_neigh_rep r;
		} out = { .r = { .mac = { 1, 2, 3, 4, 5, 6 } } };
		vd__ctl_hdr_init(&out.h, VD_CTL_NEIGH | VD_CTL_REPLY, in.h.seq, 0, sizeof(out.r), 0);
		send(sv[1], &out, sizeof(out), 0);
		/* Second request: answer with an error and a reason. */
		n = recv(sv[1], &in, sizeof(in), 0);
		struct {
			struct vd_ctl_hdr h;
			char why[8];
		} err = { .why = "no way" };
		vd__ctl_hdr_init(&err.h, VD_CTL_NEIGH | VD_CTL_REPLY, in.h.seq, -EHOSTUNREACH, sizeof(err.why), 0);
		send(sv[1], &err, sizeof(err), 0);
		_exit(0);
	}
	close(sv[1]);
	char buf[VD_CTL_MAX_MSG];
	struct vd_ctl_reply rep;
	struct vd_ctl_neigh_req q = { .ifindex = 1, .ip_be = 0x0100000a };
	CHECK_EQ(vd__ctl_call(sv[0], VD_CTL_NEIGH, &q, sizeof(q), buf, sizeof(buf), &rep, 2000), 0);
	CHECK_EQ(rep.payload_len, sizeof(struct vd_ctl_neigh_rep));
	CHECK_EQ(((struct vd_ctl_neigh_rep *)rep.payload)->mac[5], 6);
	CHECK_EQ(vd__ctl_call(sv[0], VD_CTL_NEIGH, &q, sizeof(q), buf, sizeof(buf), &rep, 2000), -EHOSTUNREACH);
	CHECK(strcmp(rep.payload, "no way") == 0);
	/* The peer is gone now: a further call fails cleanly instead of hanging. */
	CHECK(vd__ctl_call(sv[0], VD_CTL_NEIGH, &q, sizeof(q), buf, sizeof(buf), &rep, 2000) < 0);
	close(sv[0]);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_MAIN(T(valid_requests_pass), T(framing_errors), T(field_errors), T(replies), T(stat_reply_bounds),
	  T(stat_ep_layout), T(stat_reply_spares_section), T(client_call_roundtrip))
