/* SPDX-License-Identifier: MIT */
/* Messaging over the udp backend on 127.0.0.1: two endpoints in this process, driven from one thread with
 * real time (every loop bounded by a deadline). */
#include "harness.h"
#include "msg_sim_util.h" /* fill_pattern / check_pattern */

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <arpa/inet.h>

#define ALL ~0ull

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int drive(struct vd_ep *a, struct vd_ep *b, struct vd_ep *who, struct vd_req **req, struct vd_status *st,
		 int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;
	while (mono_ms() < end) {
		int rc = vd_test(who, req, st);
		if (rc)
			return rc == 1;
		vd_ep_progress(a);
		vd_ep_progress(b);
	}
	return 0;
}

static int open_udp(struct vd_ep **ep)
{
	struct vd_ep_opts o;
	vd_ep_opts_init(&o);
	o.nic.backend = VD_BACKEND_UDP;
	o.nic.local = "127.0.0.1:0";
	return vd_ep_open(ep, &o);
}

TEST(udp_loopback)
{
	struct vd_ep *a, *b;
	REQUIRE(open_udp(&a) == 0);
	REQUIRE(open_udp(&b) == 0);
	CHECK(strcmp(vd_nic_backend_name(vd_ep_nic(a)), "udp") == 0);
	struct vd_addr aa, ba;
	char text[64];
	REQUIRE(vd_ep_addr(a, &aa) == 0);
	REQUIRE(vd_ep_addr(b, &ba) == 0);
	struct vd_peer *ab, *ba_peer;
	/* One by dotted quad, one by host name. */
	REQUIRE(vd_peer_resolve(a, vd_addr_format(&ba, text, sizeof(text)), &ab) == 0);
	snprintf(text, sizeof(text), "localhost:%u", (unsigned)ntohs(aa.port));
	REQUIRE(vd_peer_resolve(b, text, &ba_peer) == 0);

	size_t sizes[] = { 1, 1000, 30000, 4u << 20 };
	static uint8_t out[4u << 20], in[4u << 20];
	for (int i = 0; i < 4; i++) {
		for (int dir = 0; dir < 2; dir++) {
			struct vd_ep *src = dir ? b : a, *dst = dir ? a : b;
			struct vd_peer *to = dir ? ba_peer : ab;
			struct vd_req *s, *r;
			struct vd_status st;
			fill_pattern(out, sizes[i], (uint64_t)(i * 2 + dir));
			memset(in, 0, sizes[i]);
			REQUIRE(vd_irecv(dst, in, sizeof(in), 10 + (uint64_t)i, ALL, NULL, &r) == 0);
			REQUIRE((i == 2 ? vd_issend : vd_isend)(src, out, sizes[i], to, 10 + (uint64_t)i, NULL, &s) == 0);
			CHECK(drive(a, b, dst, &r, &st, 5000));
			CHECK_EQ(st.error, 0);
			CHECK_EQ(st.msg_len, sizes[i]);
			CHECK(memcmp(in, out, sizes[i]) == 0);
			CHECK(drive(a, b, src, &s, &st, 5000));
			CHECK_EQ(st.error, 0);
		}
	}
	/* vd_wait with a timeout on a receive nobody sends: returns 0 after about that long. */
	struct vd_req *r;
	REQUIRE(vd_irecv(b, in, 10, 999, ALL, NULL, &r) == 0);
	uint64_t t0 = mono_ms();
	CHECK_EQ(vd_wait(b, &r, NULL, 50), 0);
	uint64_t took = mono_ms() - t0;
	CHECK(took >= 45 && took < 1000);
	CHECK_EQ(vd_cancel(b, r), 0);
	CHECK_EQ(vd_wait(b, &r, NULL, 100), 1);
	CHECK(vd_ep_fd(a) >= 0);
	vd_ep_close(a);
	vd_ep_close(b);
}

TEST(udp_progress_thread)
{
	/* With the background thread, a receiver that never calls the library still acknowledges and
	 * serves pulls: the sender's requests complete by themselves. */
	struct vd_ep *a, *b;
	struct vd_ep_opts o;
	vd_ep_opts_init(&o);
	o.nic.backend = VD_BACKEND_UDP;
	o.nic.local = "127.0.0.1:0";
	o.flags = VD_EP_PROGRESS_THREAD;
	REQUIRE(vd_ep_open(&b, &o) == 0);
	REQUIRE(open_udp(&a) == 0);
	struct vd_addr ba;
	char text[64];
	REQUIRE(vd_ep_addr(b, &ba) == 0);
	struct vd_peer *ab;
	REQUIRE(vd_peer_resolve(a, vd_addr_format(&ba, text, sizeof(text)), &ab) == 0);
	static uint8_t buf[1u << 20], in[1u << 20];
	fill_pattern(buf, sizeof(buf), 77);
	struct vd_req *r, *s;
	struct vd_status st;
	REQUIRE(vd_irecv(b, in, sizeof(in), 1, ALL, NULL, &r) == 0);
	REQUIRE(vd_isend(a, buf, sizeof(buf), ab, 1, NULL, &s) == 0);
	CHECK_EQ(vd_wait(a, &s, &st, 5000), 1); /* only a's thread and b's background thread run */
	CHECK_EQ(st.error, 0);
	CHECK_EQ(vd_wait(b, &r, &st, 5000), 1);
	CHECK(check_pattern(in, sizeof(in), 77));
	vd_ep_close(a);
	vd_ep_close(b);
}

TEST_MAIN(T(udp_loopback), T(udp_progress_thread))
