/* SPDX-License-Identifier: MIT */
/*
 * Messaging between two processes (fork) on 127.0.0.1 with the udp backend: vd_ep_open turns same-host
 * shared memory on by default, so after the first frames the traffic moves through a channel. Messages of
 * 1 B to 4 MiB (eager and rendezvous) go to the child, which checks them and sends them back; the parent
 * checks the echoes, and that the frames went through shared memory.
 */
#include "harness.h"
#include "msg_sim_util.h" /* fill_pattern / check_pattern */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ALL ~0ull
#define QUIT 0xdeadull
#define MAXMSG (4u << 20)

static const size_t sizes[] = { 1, 8, 64, 1000, 1471, 1472, 1473, 4000, 32768, 32769, 65536, 300000,
				1u << 20, MAXMSG };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define ROUNDS 3

static int open_ep(struct vd_ep **ep, int shm)
{
	struct vd_ep_opts o;
	vd_ep_opts_init(&o);
	o.nic.backend = VD_BACKEND_UDP;
	o.nic.local = "127.0.0.1:0";
	o.nic.same_host_shm = shm;
	return vd_ep_open(ep, &o);
}

/* Receives messages and sends each back with the same match bits, checking its contents (seed = match).
 * Exit status: 0 all good, 2 a bad message, 1 any other failure. */
static int child(int to_parent, int from_parent)
{
	struct vd_ep *ep;
	struct vd_addr me, pa;
	if (open_ep(&ep, 0) < 0)
		return 1;
	vd_ep_addr(ep, &me);
	if (write(to_parent, &me, sizeof(me)) != (ssize_t)sizeof(me) ||
	    read(from_parent, &pa, sizeof(pa)) != (ssize_t)sizeof(pa))
		return 1;
	struct vd_peer *peer;
	if (vd_peer_from_addr(ep, &pa, &peer) < 0)
		return 1;
	uint8_t *buf = malloc(MAXMSG);
	int bad = 0;
	for (int i = 0; i < (int)(NSIZES * ROUNDS) + 1; i++) {
		struct vd_req *r, *s;
		struct vd_status st;
		if (vd_irecv(ep, buf, MAXMSG, 0, 0, NULL, &r) < 0 || vd_wait(ep, &r, &st, 10000) != 1 || st.error)
			return 1;
		if (st.match == QUIT)
			break;
		if (!check_pattern(buf, st.xfer_len, st.match))
			bad = 1;
		if (vd_isend(ep, buf, st.xfer_len, peer, st.match, NULL, &s) < 0 || vd_wait(ep, &s, &st, 10000) != 1 ||
		    st.error)
			return 1;
	}
	free(buf);
	vd_ep_close(ep);
	return bad ? 2 : 0;
}

TEST(mixed_sizes_through_shm)
{
	int up[2], down[2];
	REQUIRE(pipe(up) == 0 && pipe(down) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		_exit(child(up[1], down[0]));
	}
	close(up[1]);
	close(down[0]);

	struct vd_ep *a;
	struct vd_addr ca, me;
	REQUIRE(open_ep(&a, 0) == 0); /* 0: the endpoint's default, which is on */
	vd_ep_addr(a, &me);
	REQUIRE(read(up[0], &ca, sizeof(ca)) == (ssize_t)sizeof(ca));
	REQUIRE(write(down[1], &me, sizeof(me)) == (ssize_t)sizeof(me));
	struct vd_peer *peer;
	REQUIRE(vd_peer_from_addr(a, &ca, &peer) == 0);

	uint8_t *out = malloc(MAXMSG), *in = malloc(MAXMSG);
	REQUIRE(out && in);
	size_t total = 0;
	for (int round = 0; round < ROUNDS; round++) {
		for (size_t i = 0; i < NSIZES; i++) {
			uint64_t match = (uint64_t)round * 100 + i + 1;
			struct vd_req *s, *r;
			struct vd_status st;
			fill_pattern(out, sizes[i], match);
			memset(in, 0, sizes[i]);
			REQUIRE(vd_irecv(a, in, MAXMSG, match, ALL, NULL, &r) == 0);
			REQUIRE(vd_isend(a, out, sizes[i], peer, match, NULL, &s) == 0);
			CHECK_EQ(vd_wait(a, &s, &st, 10000), 1);
			CHECK_EQ(st.error, 0);
			CHECK_EQ(vd_wait(a, &r, &st, 10000), 1);
			CHECK_EQ(st.error, 0);
			CHECK_EQ(st.msg_len, sizes[i]);
			CHECK(memcmp(in, out, sizes[i]) == 0);
			total += 2 * sizes[i];
		}
	}
	struct vd_req *q;
	struct vd_status st;
	REQUIRE(vd_isend(a, NULL, 0, peer, QUIT, NULL, &q) == 0);
	CHECK_EQ(vd_wait(a, &q, &st, 10000), 1);

	struct vd_nic_stats ns;
	vd_nic_stats(vd_ep_nic(a), &ns);
	printf("     %zu bytes; frames tx %llu (shm %llu), rx %llu (shm %llu)\n", total,
	       (unsigned long long)ns.tx_frames, (unsigned long long)ns.shm_tx_frames,
	       (unsigned long long)ns.rx_frames, (unsigned long long)ns.shm_rx_frames);
	/* All but the first few frames (while the channel came up) through shared memory. */
	CHECK(ns.shm_tx_frames * 100 >= ns.tx_frames * 95);
	CHECK(ns.shm_rx_frames * 100 >= ns.rx_frames * 95);
	CHECK_EQ(ns.shm_errors, 0);

	int status = -1;
	for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++) {
		vd_ep_progress(a);
		usleep(10000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	vd_ep_close(a);
	free(out);
	free(in);
}

TEST_MAIN(T(mixed_sizes_through_shm))
