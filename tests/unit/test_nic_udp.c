/* SPDX-License-Identifier: MIT */
/* The udp backend on 127.0.0.1: bursts between two nics, zero-copy views, pools, stats, kernel interop. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <viaduct/nic.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct vd_nic *open_udp(const char *local)
{
	struct vd_nic *n = NULL;
	struct vd_nic_opts o = { .backend = VD_BACKEND_UDP, .local = local };
	if (vd_nic_open(&n, &o) != 0)
		return NULL;
	return n;
}

/* Receives until `want` frames are held in f (not released) or 2 s pass; returns how many. */
static int recv_n(struct vd_nic *n, struct vd_frame *f, int want)
{
	int got = 0;
	uint64_t end = now_ms() + 2000;
	while (got < want && now_ms() < end) {
		int r = vd_nic_rx_burst(n, f + got, (unsigned)(want - got));
		if (r < 0)
			return r;
		got += r;
		if (got < want)
			vd_nic_wait(n, 50);
	}
	return got;
}

static int send_burst(struct vd_nic *n, const struct vd_addr *to, uint32_t first, unsigned count,
		      uint32_t len)
{
	struct vd_frame f[64];
	if (count > 64 || vd_nic_tx_alloc(n, f, count) != (int)count)
		return -1;
	for (unsigned i = 0; i < count; i++) {
		uint32_t seq = first + i;
		memset(f[i].data, (int)(seq & 0xff), len);
		memcpy(f[i].data, &seq, 4);
		f[i].len = len;
		f[i].peer = *to;
	}
	int r = vd_nic_tx_burst(n, f, count);
	if (r != (int)count) {
		vd_nic_tx_abort(n, f + (r > 0 ? r : 0), count - (unsigned)(r > 0 ? r : 0));
		return -1;
	}
	return vd_nic_flush(n);
}

static uint32_t seq_of(const struct vd_frame *f)
{
	uint32_t s;
	memcpy(&s, f->data, 4);
	return s;
}

TEST(open_and_addresses)
{
	struct vd_nic *a = open_udp("127.0.0.1:0");
	REQUIRE(a);
	struct vd_addr la;
	vd_nic_local_addr(a, &la);
	CHECK_EQ(la.ip, htonl(INADDR_LOOPBACK));
	CHECK(la.port != 0);
	CHECK(strcmp(vd_nic_backend_name(a), "udp") == 0);
	CHECK_EQ(vd_nic_max_payload(a), 1500 - 28);
	CHECK(vd_nic_fd(a) >= 0);
	/* The same port again is in use. */
	char text[VD_ADDR_STRLEN];
	vd_addr_format(&la, text, sizeof(text));
	struct vd_nic *b = NULL;
	struct vd_nic_opts o = { .backend = VD_BACKEND_UDP, .local = text };
	CHECK_EQ(vd_nic_open(&b, &o), -EADDRINUSE);
	o.local = "1.2.3.4:99999";
	CHECK_EQ(vd_nic_open(&b, &o), -EINVAL);
	/* No local address: any address, ephemeral port. */
	o.local = NULL;
	REQUIRE(vd_nic_open(&b, &o) == 0);
	struct vd_addr lb;
	vd_nic_local_addr(b, &lb);
	CHECK_EQ(lb.ip, 0);
	CHECK(lb.port != 0);
	vd_nic_close(b);
	/* AUTO without a daemon listening falls back to udp. */
	o.backend = VD_BACKEND_AUTO;
	o.ctl_path = "/nonexistent/viaductd.sock";
	REQUIRE(vd_nic_open(&b, &o) == 0);
	CHECK(strcmp(vd_nic_backend_name(b), "udp") == 0);
	vd_nic_close(b);
	vd_nic_close(a);
	/* The monotonic clock moves. */
	CHECK(vd_nic_now_ns(a = open_udp("127.0.0.1:0")) > 0);
	vd_nic_close(a);
}

TEST(bursts_between_two_nics)
{
	struct vd_nic *a = open_udp("127.0.0.1:0"), *b = open_udp("127.0.0.1:0");
	REQUIRE(a && b);
	struct vd_addr la, lb;
	vd_nic_local_addr(a, &la);
	vd_nic_local_addr(b, &lb);

	static struct vd_frame f[256];
	for (uint32_t k = 0; k < 4; k++)
		REQUIRE(send_burst(a, &lb, k * 64, 64, 1000) == 0);
	int n = recv_n(b, f, 256);
	REQUIRE(n == 256);
	for (int i = 0; i < n; i++) {
		CHECK_EQ(seq_of(&f[i]), (uint32_t)i); /* loopback keeps order */
		CHECK_EQ(f[i].len, 1000);
		CHECK_EQ(f[i].peer.ip, la.ip);
		CHECK_EQ(f[i].peer.port, la.port);
		CHECK_EQ(((uint8_t *)f[i].data)[999], i & 0xff);
	}
	vd_nic_rx_release(b, f, (unsigned)n);

	struct vd_nic_stats sa, sb;
	vd_nic_stats(a, &sa);
	vd_nic_stats(b, &sb);
	CHECK_EQ(sa.tx_frames, 256);
	CHECK_EQ(sa.tx_bytes, 256 * 1000);
	CHECK_EQ(sb.rx_frames, 256);
	CHECK_EQ(sb.rx_bytes, 256 * 1000);
	CHECK_EQ(sb.rx_malformed, 0);
	CHECK_EQ(sb.rx_dropped, 0);

	/* Replies the other way with the copying helper; an empty datagram is delivered too. */
	CHECK_EQ(vd_nic_send(b, &la, "pong", 4), 0);
	CHECK_EQ(vd_nic_send(b, &la, "", 0), 0);
	REQUIRE(recv_n(a, f, 2) == 2);
	CHECK_EQ(f[0].len, 4);
	CHECK(memcmp(f[0].data, "pong", 4) == 0);
	CHECK_EQ(f[1].len, 0);
	vd_nic_rx_release(a, f, 2);
	vd_nic_close(a);
	vd_nic_close(b);
}

TEST(rx_views_are_zero_copy_and_stable)
{
	struct vd_nic *a = open_udp("127.0.0.1:0"), *b = open_udp("127.0.0.1:0");
	REQUIRE(a && b);
	struct vd_addr lb;
	vd_nic_local_addr(b, &lb);
	/* Hold all 512 pool buffers across bursts: held data must not change, then the pool is dry. */
	static struct vd_frame held[512];
	int total = 0;
	for (uint32_t k = 0; k < 8; k++) {
		REQUIRE(send_burst(a, &lb, k * 64, 64, 200) == 0);
		int n = recv_n(b, held + total, 64);
		REQUIRE(n == 64);
		total += n;
	}
	for (int i = 0; i < total; i++) {
		CHECK_EQ(seq_of(&held[i]), (uint32_t)i);
		CHECK_EQ(((uint8_t *)held[i].data)[199], i & 0xff);
		if (i)
			CHECK(held[i].data != held[i - 1].data);
	}
	REQUIRE(send_burst(a, &lb, 512, 64, 200) == 0);
	vd_nic_wait(b, 1000);
	struct vd_frame more[64];
	CHECK_EQ(vd_nic_rx_burst(b, more, 64), 0); /* no free receive buffer */
	/* Release the oldest half: exactly that many buffers come back. */
	vd_nic_rx_release(b, held, 256);
	int n = recv_n(b, more, 64);
	CHECK_EQ(n, 64);
	for (int i = 0; i < n; i++)
		CHECK_EQ(seq_of(&more[i]), 512u + (uint32_t)i);
	/* The second half held still reads right after the ring wrapped into the first half. */
	for (int i = 256; i < 512; i++)
		CHECK_EQ(seq_of(&held[i]), (uint32_t)i);
	vd_nic_rx_release(b, held + 256, 256);
	vd_nic_rx_release(b, more, (unsigned)n);
	vd_nic_close(a);
	vd_nic_close(b);
}

TEST(tx_pool_and_size_limits)
{
	struct vd_nic *a = open_udp("127.0.0.1:0");
	REQUIRE(a);
	struct vd_addr la;
	vd_nic_local_addr(a, &la);
	static struct vd_frame f[600];
	int got = vd_nic_tx_alloc(a, f, 600);
	CHECK_EQ(got, 512);
	CHECK_EQ(vd_nic_send(a, &la, "x", 1), -EAGAIN);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	CHECK_EQ(st.tx_busy, 2);
	vd_nic_tx_abort(a, f, (unsigned)got);
	uint8_t big[1473] = { 0 };
	CHECK_EQ(vd_nic_send(a, &la, big, sizeof(big)), -EMSGSIZE);
	REQUIRE(vd_nic_tx_alloc(a, f, 2) == 2);
	f[0].len = 10;
	f[0].peer = la;
	f[1].len = 1473;
	f[1].peer = la;
	CHECK_EQ(vd_nic_tx_burst(a, f, 2), 1);
	CHECK_EQ(vd_nic_tx_burst(a, f + 1, 1), -EMSGSIZE);
	vd_nic_tx_abort(a, f + 1, 1);
	struct vd_frame r;
	CHECK_EQ(recv_n(a, &r, 1), 1); /* to itself */
	CHECK_EQ(r.len, 10);
	vd_nic_rx_release(a, &r, 1);
	vd_nic_close(a);
}

TEST(wait_times_out_and_wakes)
{
	struct vd_nic *a = open_udp("127.0.0.1:0");
	REQUIRE(a);
	struct vd_addr la;
	vd_nic_local_addr(a, &la);
	uint64_t t0 = now_ms();
	CHECK_EQ(vd_nic_wait(a, 30), 0);
	CHECK(now_ms() - t0 >= 25);
	CHECK_EQ(vd_nic_send(a, &la, "hi", 2), 0);
	CHECK_EQ(vd_nic_wait(a, 1000), 1);
	struct pollfd p = { .fd = vd_nic_fd(a), .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 0), 1);
	struct vd_frame f;
	CHECK_EQ(vd_nic_rx_burst(a, &f, 1), 1);
	vd_nic_rx_release(a, &f, 1);
	CHECK_EQ(poll(&p, 1, 0), 0);
	vd_nic_close(a);
}

static int kernel_socket(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = { htonl(INADDR_LOOPBACK) } };
	socklen_t len = sizeof(sin);
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	*addr = sin;
	return fd;
}

TEST(interop_with_plain_kernel_socket)
{
	struct vd_nic *a = open_udp("127.0.0.1:0");
	REQUIRE(a);
	struct vd_addr la;
	vd_nic_local_addr(a, &la);
	struct sockaddr_in ks;
	int fd = kernel_socket(&ks);
	REQUIRE(fd >= 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = la.port, .sin_addr = { la.ip } };

	/* kernel -> nic */
	REQUIRE(sendto(fd, "hello", 5, 0, (struct sockaddr *)&to, sizeof(to)) == 5);
	struct vd_frame f;
	REQUIRE(recv_n(a, &f, 1) == 1);
	CHECK_EQ(f.len, 5);
	CHECK(memcmp(f.data, "hello", 5) == 0);
	CHECK_EQ(f.peer.ip, ks.sin_addr.s_addr);
	CHECK_EQ(f.peer.port, ks.sin_port);
	struct vd_addr back = f.peer;
	vd_nic_rx_release(a, &f, 1);

	/* nic -> kernel, answering the address the frame came from */
	REQUIRE(vd_nic_send(a, &back, "world!", 6) == 0);
	char buf[64];
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	CHECK_EQ(recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 6);
	CHECK(memcmp(buf, "world!", 6) == 0);
	CHECK_EQ(from.sin_port, la.port);

	/* A datagram larger than max_payload is dropped and counted, and does not block the next one. */
	static char huge[3000];
	ssize_t sent = sendto(fd, huge, sizeof(huge), 0, (struct sockaddr *)&to, sizeof(to));
	REQUIRE(sent == (ssize_t)sizeof(huge));
	REQUIRE(sendto(fd, "after", 5, 0, (struct sockaddr *)&to, sizeof(to)) == 5);
	REQUIRE(recv_n(a, &f, 1) == 1);
	CHECK_EQ(f.len, 5);
	CHECK(memcmp(f.data, "after", 5) == 0);
	vd_nic_rx_release(a, &f, 1);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	CHECK_EQ(st.rx_malformed, 1);
	CHECK_EQ(st.rx_frames, 2);
	/* The skipped slot is reclaimed: a full pool's worth still arrives afterwards. */
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 60; i++)
			REQUIRE(sendto(fd, "z", 1, 0, (struct sockaddr *)&to, sizeof(to)) == 1);
		static struct vd_frame fr[60];
		int n = recv_n(a, fr, 60);
		CHECK_EQ(n, 60);
		if (n > 0)
			vd_nic_rx_release(a, fr, (unsigned)n);
	}
	close(fd);
	vd_nic_close(a);
}

TEST_MAIN(T(open_and_addresses), T(bursts_between_two_nics), T(rx_views_are_zero_copy_and_stable),
	  T(tx_pool_and_size_limits), T(wait_times_out_and_wakes), T(interop_with_plain_kernel_socket))
