/* SPDX-License-Identifier: MIT */
/*
 * Same-host shared memory under the nic API: two processes (fork) on 127.0.0.1 with the udp primary.
 * A child echoes every frame back; the parent checks that the channel comes up by itself, that frames then
 * flow through it (the shm counters), that nothing is lost while a peer switches from the primary to the
 * channel, that blocking waits wake up for channel frames on both sides, and that a killed peer's address
 * goes back to the primary. Every loop is bounded in time.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/nic.h>

#include "lib/nic/shm_ring.h"

enum { MSG_ECHO = 0, MSG_LATE = 1, MSG_QUIT = 2 };

struct msg {
	uint32_t type, seq;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int open_nic(struct vd_nic **n, const char *local, int shm)
{
	struct vd_nic_opts o = { .backend = VD_BACKEND_UDP, .queue = -1, .local = local, .same_host_shm = shm };
	return vd_nic_open(n, &o);
}

/* Echo server: answers every frame to its source; MSG_LATE after 50 ms; sleeps in vd_nic_wait when idle
 * (so channel wakeups are exercised on this side too). Exits 0 on MSG_QUIT, 1 on error or after 10 s. */
static int child_echo(int port_fd, const char *local, int shm)
{
	struct vd_nic *n;
	if (open_nic(&n, local, shm) < 0)
		return 1;
	struct vd_addr me;
	vd_nic_local_addr(n, &me);
	if (write(port_fd, &me, sizeof(me)) != (ssize_t)sizeof(me))
		return 1;
	uint64_t end = mono_ms() + 10000;
	while (mono_ms() < end) {
		struct vd_frame f[32];
		int k = vd_nic_rx_burst(n, f, 32);
		if (k < 0)
			return 1;
		if (k == 0) {
			vd_nic_wait(n, 100);
			continue;
		}
		int quit = 0;
		for (int i = 0; i < k; i++) {
			struct msg m;
			if (f[i].len != sizeof(m))
				continue;
			memcpy(&m, f[i].data, sizeof(m));
			if (m.type == MSG_QUIT)
				quit = 1;
			if (m.type == MSG_LATE)
				usleep(50000);
			for (int t = 0; t < 1000 && vd_nic_send(n, &f[i].peer, &m, sizeof(m)) == -EAGAIN; t++)
				usleep(100);
		}
		vd_nic_rx_release(n, f, (unsigned)k);
		if (quit) {
			vd_nic_close(n);
			return 0;
		}
	}
	return 1;
}

static pid_t spawn_echo(struct vd_addr *addr, const char *local, int shm)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(child_echo(p[1], local, shm));
	}
	close(p[1]);
	ssize_t r = read(p[0], addr, sizeof(*addr));
	close(p[0]);
	return r == (ssize_t)sizeof(*addr) ? pid : -1;
}

/* Sends seq first..first+count-1 to peer with at most `window` unanswered, collecting echoes in seen[].
 * Returns how many distinct echoes came back within ms. */
static unsigned ping_range(struct vd_nic *n, const struct vd_addr *peer, uint32_t first, uint32_t count,
			   uint8_t *seen, unsigned window, int ms)
{
	uint32_t next = first, got = 0;
	uint64_t end = mono_ms() + (uint64_t)ms;
	while (got < count && mono_ms() < end) {
		while (next < first + count && next - first - got < window) {
			struct msg m = { MSG_ECHO, next };
			if (vd_nic_send(n, peer, &m, sizeof(m)) != 0)
				break;
			next++;
		}
		struct vd_frame f[32];
		int k = vd_nic_rx_burst(n, f, 32);
		for (int i = 0; i < k; i++) {
			struct msg m;
			if (f[i].len != sizeof(m))
				continue;
			memcpy(&m, f[i].data, sizeof(m));
			if (m.type == MSG_ECHO && m.seq >= first && m.seq < first + count && !seen[m.seq - first]) {
				seen[m.seq - first] = 1;
				got++;
			}
		}
		if (k > 0)
			vd_nic_rx_release(n, f, (unsigned)k);
	}
	return got;
}

static void quit_child(struct vd_nic *n, const struct vd_addr *peer, pid_t pid)
{
	struct msg m = { MSG_QUIT, 0 };
	int status = -1;
	vd_nic_send(n, peer, &m, sizeof(m));
	for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++) {
		struct vd_frame f[32];
		int k = vd_nic_rx_burst(n, f, 32);
		if (k > 0)
			vd_nic_rx_release(n, f, (unsigned)k);
		usleep(10000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(channel_up_and_fallback)
{
	struct vd_addr b;
	pid_t pid = spawn_echo(&b, "127.0.0.1:0", 1);
	REQUIRE(pid > 0);
	struct vd_nic *a;
	REQUIRE(open_nic(&a, "127.0.0.1:0", 1) == 0);
	CHECK(strcmp(vd_nic_backend_name(a), "udp") == 0);

	/* 1. From the first frame on: the first ones take udp while the channel comes up, the rest the
	 * channel; every frame's echo arrives exactly once. */
	static uint8_t seen[20000];
	uint32_t n1 = 20000;
	memset(seen, 0, sizeof(seen));
	CHECK_EQ(ping_range(a, &b, 0, n1, seen, 64, 5000), n1);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	/* One channel, or two when both sides connected at once (both then send on the same one). */
	CHECK(st.shm_channels == 1 || st.shm_channels == 2);
	CHECK(st.shm_tx_frames > n1 / 2);
	CHECK(st.shm_rx_frames > n1 / 2);
	CHECK(st.tx_frames >= n1);
	CHECK_EQ(st.shm_errors, 0);
	printf("     switch: %llu of %u frames through shm\n", (unsigned long long)st.shm_tx_frames, n1);

	/* 2. Blocking waits: the child sleeps in vd_nic_wait; it answers MSG_LATE after 50 ms while we
	 * sleep in ours. Both wakeups come through the channels' eventfds. */
	struct msg m = { MSG_LATE, 7 };
	uint64_t shm_rx = st.shm_rx_frames;
	usleep(200000); /* the child is asleep by now */
	REQUIRE(vd_nic_send(a, &b, &m, sizeof(m)) == 0);
	uint64_t t0 = mono_ms();
	int woke = 0;
	struct vd_frame f[4];
	int k = 0;
	while (!k && mono_ms() - t0 < 2000) {
		woke = vd_nic_wait(a, 2000);
		k = vd_nic_rx_burst(a, f, 4);
	}
	uint64_t took = mono_ms() - t0;
	CHECK_EQ(woke, 1);
	CHECK_EQ(k, 1);
	CHECK(took >= 45 && took < 1000);
	if (k > 0)
		vd_nic_rx_release(a, f, (unsigned)k);
	vd_nic_stats(a, &st);
	CHECK_EQ(st.shm_rx_frames, shm_rx + 1);

	/* 3. The peer is killed: its channel ends, its address goes back to udp. A new process with shm off
	 * takes the same port and gets every frame through udp. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	t0 = mono_ms();
	while (mono_ms() - t0 < 2000) {
		vd_nic_wait(a, 10);
		k = vd_nic_rx_burst(a, f, 4);
		if (k > 0)
			vd_nic_rx_release(a, f, (unsigned)k);
		vd_nic_stats(a, &st);
		if (st.shm_channels == 0)
			break;
	}
	CHECK_EQ(st.shm_channels, 0);
	char text[VD_ADDR_STRLEN];
	struct vd_addr b2;
	pid = spawn_echo(&b2, vd_addr_format(&b, text, sizeof(text)), -1);
	REQUIRE(pid > 0);
	CHECK(b2.port == b.port);
	uint64_t shm_tx = st.shm_tx_frames, tx = st.tx_frames;
	uint32_t n2 = 2000;
	memset(seen, 0, sizeof(seen));
	CHECK_EQ(ping_range(a, &b, 100000, n2, seen, 64, 5000), n2);
	vd_nic_stats(a, &st);
	CHECK_EQ(st.shm_tx_frames, shm_tx);
	CHECK(st.tx_frames >= tx + n2);
	quit_child(a, &b, pid);
	vd_nic_close(a);
}

TEST(shm_off_stays_on_udp)
{
	/* A peer with shm: the other side has it off, so no channel, and everything still works. */
	struct vd_addr b;
	pid_t pid = spawn_echo(&b, "127.0.0.1:0", 1);
	REQUIRE(pid > 0);
	struct vd_nic *a;
	REQUIRE(open_nic(&a, "127.0.0.1:0", 0) == 0);
	static uint8_t seen[500];
	memset(seen, 0, sizeof(seen));
	CHECK_EQ(ping_range(a, &b, 0, 500, seen, 32, 3000), 500);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	CHECK_EQ(st.shm_channels, 0);
	CHECK_EQ(st.shm_tx_frames, 0);
	quit_child(a, &b, pid);
	vd_nic_close(a);
}

/* ---- a hostile peer speaking the rendezvous by hand (the format of src/lib/nic/nic_shm.c) ----------- */

#define H_MAGIC 0x76647368u
#define H_HDR 4096u
#define H_SLOTS 8u
#define H_SLOT_BYTES 1536u /* payload 1528: at least the nic's max_payload, so it lends slots */

struct h_hdr {
	uint32_t magic, version, nslots, slot_bytes;
	uint64_t ring_off[2];
	uint64_t total;
};
struct h_msg {
	uint32_t magic;
	uint16_t version, type;
	struct vd_addr from, to;
	uint32_t nslots, slot_bytes;
	uint64_t total;
};

struct hostile {
	int sock, memfd, efd[2];
	uint8_t *mem;
	size_t bytes;
	struct vd__shm_ctl *r0; /* ring 0: we produce, the nic consumes */
};

/* Connects to nic's name and sends a hello claiming address `from`; seal = 0 leaves the memfd unsealed. */
static int hostile_open(struct hostile *h, const struct vd_addr *nic_addr, const struct vd_addr *from, int seal)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char text[VD_ADDR_STRLEN];
	int n = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "viaduct-shm/%s",
			 vd_addr_format(nic_addr, text, sizeof(text)));
	h->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (connect(h->sock, (struct sockaddr *)&sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)))
		return -1;
	size_t ring = VD__SHM_CTL_BYTES + (size_t)H_SLOTS * H_SLOT_BYTES;
	h->bytes = H_HDR + 2 * ring;
	h->memfd = memfd_create("hostile", MFD_ALLOW_SEALING);
	if (ftruncate(h->memfd, (off_t)h->bytes) < 0)
		return -1;
	if (seal && fcntl(h->memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		return -1;
	h->mem = mmap(NULL, h->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, h->memfd, 0);
	if (h->mem == MAP_FAILED)
		return -1;
	struct h_hdr hd = { H_MAGIC, 1, H_SLOTS, H_SLOT_BYTES, { H_HDR, H_HDR + ring }, h->bytes };
	memcpy(h->mem, &hd, sizeof(hd));
	h->r0 = (struct vd__shm_ctl *)(void *)(h->mem + H_HDR);
	h->efd[0] = eventfd(0, EFD_NONBLOCK);
	h->efd[1] = eventfd(0, EFD_NONBLOCK);
	struct h_msg m = { H_MAGIC, 1, 1, *from, *nic_addr, H_SLOTS, H_SLOT_BYTES, h->bytes };
	int fds[3] = { h->memfd, h->efd[0], h->efd[1] };
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
			     .msg_controllen = sizeof(ctrl.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	return sendmsg(h->sock, &mh, 0) == (ssize_t)sizeof(m) ? 0 : -1;
}

static void hostile_close(struct hostile *h)
{
	munmap(h->mem, h->bytes);
	close(h->sock);
	close(h->memfd);
	close(h->efd[0]);
	close(h->efd[1]);
}

/* The nic's answer to our hello: 1 ack, 0 refused (closed), -1 nothing within 1 s. */
static int hostile_answer(struct hostile *h, struct vd_nic *n)
{
	uint64_t end = mono_ms() + 1000;
	while (mono_ms() < end) {
		vd_nic_wait(n, 5); /* the nic does its control work */
		struct h_msg m;
		ssize_t r = recv(h->sock, &m, sizeof(m), MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r == (ssize_t)sizeof(m))
			return m.type == 2;
	}
	return -1;
}

static void hostile_put(struct hostile *h, uint32_t idx, uint32_t len, uint8_t fill)
{
	uint8_t *slot = h->mem + H_HDR + VD__SHM_CTL_BYTES + (size_t)(idx % H_SLOTS) * H_SLOT_BYTES;
	memcpy(slot, &len, 4);
	memset(slot + 8, fill, H_SLOT_BYTES - 8);
}

TEST(hostile_peer)
{
	struct vd_nic *a;
	REQUIRE(open_nic(&a, "127.0.0.1:0", 1) == 0);
	struct vd_addr aa, from;
	vd_nic_local_addr(a, &aa);
	/* The address the hostile peer claims: a real udp socket of ours, to see the fallback arrive. */
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	REQUIRE(bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 && getsockname(u, (struct sockaddr *)&sin, &sl) == 0);
	from.ip = sin.sin_addr.s_addr;
	from.port = sin.sin_port;
	from._pad = 0;

	/* Refused: a memfd that could be shrunk under the mapping (SIGBUS). */
	struct hostile h;
	REQUIRE(hostile_open(&h, &aa, &from, 0) == 0);
	CHECK_EQ(hostile_answer(&h, a), 0);
	hostile_close(&h);
	/* Refused: a claimed address that is not local. */
	struct vd_addr far = { htonl(0x08080808), from.port, 0 };
	REQUIRE(hostile_open(&h, &aa, &far, 1) == 0);
	CHECK_EQ(hostile_answer(&h, a), 0);
	hostile_close(&h);

	REQUIRE(hostile_open(&h, &aa, &from, 1) == 0);
	REQUIRE(hostile_answer(&h, a) == 1);
	struct vd_nic_stats st;
	vd_nic_stats(a, &st);
	CHECK_EQ(st.shm_channels, 1);
	CHECK_EQ(st.shm_errors, 2);

	/* A slot length beyond the slot: dropped and counted; the next frame arrives. */
	hostile_put(&h, 0, 0xfffffff0u, 1);
	hostile_put(&h, 1, 8, 2);
	__atomic_store_n(&h.r0->prod, 2, __ATOMIC_RELEASE);
	struct vd_frame f[4];
	int k = 0;
	for (int i = 0; i < 1000 && k == 0; i++)
		k = vd_nic_rx_burst(a, f, 4);
	CHECK_EQ(k, 1);
	if (k == 1) {
		CHECK_EQ(f[0].len, 8);
		CHECK(f[0].peer.ip == from.ip && f[0].peer.port == from.port);
		CHECK_EQ(((uint8_t *)f[0].data)[7], 2);
		vd_nic_rx_release(a, f, 1);
	}
	vd_nic_stats(a, &st);
	CHECK_EQ(st.rx_malformed, 1);
	CHECK_EQ(st.shm_rx_frames, 1);
	/* The nic sends to that address through the channel. */
	REQUIRE(vd_nic_send(a, &from, "hello", 5) == 0);
	CHECK_EQ(__atomic_load_n((uint32_t *)(void *)(h.mem + H_HDR + VD__SHM_CTL_BYTES + H_SLOTS * H_SLOT_BYTES +
						   VD__SHM_CTL_BYTES), __ATOMIC_ACQUIRE), 5);

	/* Lent TX slots: the last frame went to the channel, so tx_alloc lends its slots. One goes to the
	 * channel (in place), one elsewhere (copied to udp, its slot padded), one is aborted (padded). */
	int u2 = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sin2 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	sl = sizeof(sin2);
	REQUIRE(bind(u2, (struct sockaddr *)&sin2, sizeof(sin2)) == 0 &&
		getsockname(u2, (struct sockaddr *)&sin2, &sl) == 0);
	struct vd_frame t[3];
	REQUIRE(vd_nic_tx_alloc(a, t, 3) == 3);
	memcpy(t[0].data, "in-place", 8);
	t[0].len = 8;
	t[0].peer = from;
	memcpy(t[1].data, "elsewhere", 9);
	t[1].len = 9;
	t[1].peer.ip = sin2.sin_addr.s_addr;
	t[1].peer.port = sin2.sin_port;
	t[1].peer._pad = 0;
	CHECK_EQ(vd_nic_tx_burst(a, t, 2), 2);
	vd_nic_tx_abort(a, t + 2, 1);
	CHECK_EQ(vd_nic_flush(a), 0);
	uint8_t *r1 = h.mem + H_HDR + VD__SHM_CTL_BYTES + H_SLOTS * H_SLOT_BYTES; /* ring 1: the nic produces */
	uint32_t lens[4];
	for (int i = 0; i < 4; i++)
		memcpy(&lens[i], r1 + VD__SHM_CTL_BYTES + (size_t)i * H_SLOT_BYTES, 4);
	CHECK_EQ(__atomic_load_n((uint32_t *)(void *)r1, __ATOMIC_ACQUIRE), 4); /* prod */
	CHECK_EQ(lens[0], 5);
	CHECK_EQ(lens[1], 8);
	CHECK(memcmp(r1 + VD__SHM_CTL_BYTES + H_SLOT_BYTES + 8, "in-place", 8) == 0);
	CHECK_EQ(lens[2], VD__SHM_PAD);
	CHECK_EQ(lens[3], VD__SHM_PAD);
	char buf2[16];
	ssize_t r2 = -1;
	for (int i = 0; i < 100 && r2 < 0; i++) {
		r2 = recv(u2, buf2, sizeof(buf2), 0);
		if (r2 < 0)
			usleep(1000);
	}
	CHECK(r2 == 9 && memcmp(buf2, "elsewhere", 9) == 0);
	close(u2);

	/* An impossible producer index: the channel is abandoned, the address goes back to udp. */
	__atomic_store_n(&h.r0->prod, 2 + 1000, __ATOMIC_RELEASE);
	for (int i = 0; i < 100; i++)
		CHECK(vd_nic_rx_burst(a, f, 4) == 0);
	vd_nic_stats(a, &st);
	CHECK_EQ(st.shm_channels, 0);
	CHECK_EQ(st.shm_errors, 3);
	REQUIRE(vd_nic_send(a, &from, "again", 5) == 0);
	char buf[16];
	ssize_t r = -1;
	for (int i = 0; i < 100 && r < 0; i++) {
		r = recv(u, buf, sizeof(buf), 0);
		if (r < 0)
			usleep(1000);
	}
	CHECK_EQ(r, 5);
	CHECK(r == 5 && memcmp(buf, "again", 5) == 0);
	hostile_close(&h);
	close(u);
	vd_nic_close(a);
}

TEST_MAIN(T(channel_up_and_fallback), T(shm_off_stays_on_udp), T(hostile_peer))
