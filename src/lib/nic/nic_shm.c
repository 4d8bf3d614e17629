/* SPDX-License-Identifier: MIT */
/*
 * Same-host shared-memory channels: rendezvous, validation and mapping (see nic_shm.h; the rings are in
 * shm_ring.h, the routing of frames in nic_mux.c).
 *
 * Rendezvous. Every shm-enabled nic listens on the abstract Unix socket "\0viaduct-shm/A.B.C.D:PORT" named
 * after its address. Abstract names live in the network namespace, so exactly the nics of this host (or
 * namespace) can find each other, and a name vanishes with its socket: nothing to clean up after a crash.
 *
 *   connector                                                acceptor
 *   connect(name of the peer's address, else of 0.0.0.0:PORT)
 *   memfd (sealed: no shrinking) holding header + ring 0 + ring 1,
 *   eventfd 0, eventfd 1
 *   HELLO {our address, its address, geometry} + SCM_RIGHTS [memfd, efd0, efd1]  ->
 *                                                             checks: same uid (SO_PEERCRED); claimed
 *                                                             address local; memfd sealed against shrinking
 *                                                             and exactly the size the geometry gives; header
 *                                                             = HELLO's geometry; the two fds are eventfds
 *                                                             mmap, attach rings
 *                                                        <-  ACK {its address}
 *   channel up                                               channel up (it may send at once)
 *
 * The seal matters: a file shrunk under a mapping turns the next access into SIGBUS, which a peer could
 * otherwise inflict on us at will. Everything in the shared memory after this point is treated as hostile
 * input (shm_ring.h). Only the geometry agreed here, kept in private memory, decides where we read.
 *
 * Trust: only a peer running under our effective uid gets a channel (it could ptrace us anyway); any other
 * peer is refused and keeps talking to us through the primary path, with the same semantics.
 */
#include "nic_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SHM_MAGIC 0x76647368u /* "vdsh" */
#define SHM_VERSION 1u
#define SHM_HDR_BYTES 4096u   /* the header page: the rings start page-aligned */
#define MSG_HELLO 1u
#define MSG_ACK 2u
#define NAME_PREFIX "viaduct-shm/"

/* Page 0 of the shared file. */
struct shm_hdr {
	uint32_t magic, version;
	uint32_t nslots, slot_bytes;
	uint64_t ring_off[2];
	uint64_t total;
};

/* HELLO and ACK on the Unix socket. */
struct shm_msg {
	uint32_t magic;
	uint16_t version, type;
	struct vd_addr from, to;
	uint32_t nslots, slot_bytes;
	uint64_t total;
};

static size_t total_bytes(uint32_t nslots, uint32_t slot_bytes)
{
	return SHM_HDR_BYTES + 2 * vd__shm_ring_bytes(nslots, slot_bytes);
}

static socklen_t shm_name(struct sockaddr_un *sun, const struct vd_addr *a)
{
	char text[VD_ADDR_STRLEN];
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	/* sun_path[0] stays 0: the abstract namespace (unix(7)); the name is not NUL-terminated. */
	int n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, NAME_PREFIX "%s",
			 vd_addr_format(a, text, sizeof(text)));
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int same_uid(int sock)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	return cr.uid == geteuid() ? 0 : -EPERM;
}

int vd__shm_listen(const struct vd_addr *addr)
{
	struct sockaddr_un sun;
	socklen_t len = shm_name(&sun, addr);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, 64) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void chan_reset(struct vd__shm_chan *c)
{
	uint32_t id = c->id, gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->gen = gen;
	c->sock = c->efd_tx = c->efd_rx = -1;
}

void vd__shm_chan_close_fds(struct vd__shm_chan *c)
{
	if (c->sock >= 0)
		close(c->sock);
	if (c->efd_tx >= 0)
		close(c->efd_tx);
	if (c->efd_rx >= 0)
		close(c->efd_rx);
	c->sock = c->efd_tx = c->efd_rx = -1;
}

void vd__shm_chan_unmap(struct vd__shm_chan *c)
{
	if (c->mem)
		munmap(c->mem, c->mem_bytes);
	c->mem = NULL;
	c->mem_bytes = 0;
}

void vd__shm_chan_kick(struct vd__shm_chan *c)
{
	uint64_t one = 1;
	/* EAGAIN only if the counter is near 2^64: the consumer has a wakeup pending anyway. */
	ssize_t r = write(c->efd_tx, &one, sizeof(one));
	(void)r;
}

void vd__shm_chan_drain_efd(struct vd__shm_chan *c)
{
	uint64_t v;
	ssize_t r = read(c->efd_rx, &v, sizeof(v)); /* non-blocking: EAGAIN when empty */
	(void)r;
}

static int attach_rings(struct vd__shm_chan *c, uint32_t nslots, uint32_t slot_bytes, int connector)
{
	size_t rb = vd__shm_ring_bytes(nslots, slot_bytes);
	uint8_t *r0 = (uint8_t *)c->mem + SHM_HDR_BYTES, *r1 = r0 + rb;
	/* Ring 0 carries connector -> acceptor, ring 1 the other way. */
	int rc = vd__shm_ring_attach(&c->tx, connector ? r0 : r1, nslots, slot_bytes, 1);
	if (rc == 0)
		rc = vd__shm_ring_attach(&c->rx, connector ? r1 : r0, nslots, slot_bytes, 0);
	return rc;
}

static int connect_name(const struct vd_addr *a)
{
	struct sockaddr_un sun;
	socklen_t len = shm_name(&sun, a);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A Unix connect never stays in progress: it is queued on the listener at once, or fails (EAGAIN when
	 * the listener's backlog is full). */
	if (connect(fd, (struct sockaddr *)&sun, len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int vd__shm_connect(struct vd__shm_chan *c, const struct vd_addr *self, const struct vd_addr *to,
		    uint32_t max_payload, uint64_t deadline_ns)
{
	struct vd_addr wild = { .ip = 0, .port = to->port };
	uint32_t slot_bytes = (VD__SHM_SLOT_HDR + max_payload + VD__SHM_CL - 1) & ~(VD__SHM_CL - 1);
	uint32_t nslots = VD__SHM_SLOTS_MAX;
	while (nslots > VD__SHM_SLOTS_MIN && (size_t)nslots * slot_bytes > VD__SHM_RING_TARGET)
		nslots /= 2;
	int rc, memfd = -1;

	chan_reset(c);
	if (!vd__shm_geometry_ok(nslots, slot_bytes))
		return -EINVAL;
	c->sock = connect_name(to);
	if (c->sock < 0 && to->ip != 0)
		c->sock = connect_name(&wild);
	if (c->sock < 0) {
		rc = c->sock;
		goto fail;
	}
	rc = same_uid(c->sock);
	if (rc < 0)
		goto fail;

	c->mem_bytes = total_bytes(nslots, slot_bytes);
	memfd = memfd_create("viaduct-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, (off_t)c->mem_bytes) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = -errno;
		goto fail;
	}
	void *mem = mmap(NULL, c->mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
	if (mem == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	c->mem = mem;
	struct shm_hdr *h = mem;
	h->magic = SHM_MAGIC;
	h->version = SHM_VERSION;
	h->nslots = nslots;
	h->slot_bytes = slot_bytes;
	h->ring_off[0] = SHM_HDR_BYTES;
	h->ring_off[1] = SHM_HDR_BYTES + vd__shm_ring_bytes(nslots, slot_bytes);
	h->total = c->mem_bytes;
	rc = attach_rings(c, nslots, slot_bytes, 1); /* fresh zeroed memory: cannot fail */
	if (rc < 0)
		goto fail;

	/* efd[0] wakes the consumer of ring 0 (the acceptor), efd[1] the consumer of ring 1 (us). */
	c->efd_tx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->efd_rx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd_tx < 0 || c->efd_rx < 0) {
		rc = -errno;
		goto fail;
	}

	struct shm_msg m = {
		.magic = SHM_MAGIC, .version = SHM_VERSION, .type = MSG_HELLO,
		.from = *self, .to = *to, .nslots = nslots, .slot_bytes = slot_bytes, .total = c->mem_bytes,
	};
	if (m.from.ip == 0)
		/* Bound to the wildcard: the kernel sends to a local address from that same address (the local
		 * routing table's routes carry it as their source), so that is how the peer sees us. */
		m.from.ip = to->ip;
	int fds[3] = { memfd, c->efd_tx, c->efd_rx };
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
			     .msg_controllen = sizeof(ctrl.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(c->sock, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(m)) {
		rc = -errno;
		goto fail;
	}
	close(memfd); /* the mapping and the peer's copy keep the file */
	c->peer = *to;
	c->state = VD__SHM_CONNECTING;
	c->deadline_ns = deadline_ns;
	return 0;
fail:
	if (memfd >= 0)
		close(memfd);
	vd__shm_chan_close_fds(c);
	vd__shm_chan_unmap(c);
	return rc < 0 ? rc : -EIO;
}

int vd__shm_connect_finish(struct vd__shm_chan *c)
{
	struct shm_msg m;
	ssize_t r = recv(c->sock, &m, sizeof(m), MSG_DONTWAIT);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	if (r == 0)
		return -ECONNREFUSED; /* the acceptor refused our hello and closed */
	if (r != (ssize_t)sizeof(m) || m.magic != SHM_MAGIC || m.version != SHM_VERSION || m.type != MSG_ACK ||
	    m.to.ip != 0 || m.to.port != 0 || m.from.port != c->peer.port)
		return -EPROTO;
	c->state = VD__SHM_UP;
	return 1;
}

int vd__shm_accept(struct vd__shm_chan *c, int listen_fd, uint64_t deadline_ns)
{
	chan_reset(c);
	c->sock = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c->sock < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	int rc = same_uid(c->sock);
	if (rc < 0) {
		vd__shm_chan_close_fds(c);
		return rc;
	}
	c->state = VD__SHM_ACCEPTING;
	c->deadline_ns = deadline_ns;
	return 0;
}

/* Whether fd is an eventfd: its /proc link names the anonymous inode. */
static int is_eventfd(int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return 0;
	link[n] = 0;
	return strcmp(link, "anon_inode:[eventfd]") == 0;
}

/* The checks on the memfd before and after mapping it (see the top of the file). */
static int map_checked(struct vd__shm_chan *c, int memfd, const struct shm_msg *m)
{
	struct stat st;
	if (!vd__shm_geometry_ok(m->nslots, m->slot_bytes))
		return -EBADMSG;
	size_t want = total_bytes(m->nslots, m->slot_bytes);
	if (m->total != want || fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != want)
		return -EBADMSG;
	int seals = fcntl(memfd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EBADMSG;
	void *mem = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
	if (mem == MAP_FAILED)
		return -errno;
	c->mem = mem;
	c->mem_bytes = want;
	/* The header is shared too: read it once into private memory, then compare. */
	struct shm_hdr h;
	memcpy(&h, mem, sizeof(h));
	if (h.magic != SHM_MAGIC || h.version != SHM_VERSION || h.nslots != m->nslots ||
	    h.slot_bytes != m->slot_bytes || h.total != want || h.ring_off[0] != SHM_HDR_BYTES ||
	    h.ring_off[1] != SHM_HDR_BYTES + vd__shm_ring_bytes(m->nslots, m->slot_bytes))
		return -EBADMSG;
	return attach_rings(c, m->nslots, m->slot_bytes, 0);
}

int vd__shm_accept_finish(struct vd__shm_chan *c, const struct vd_addr *self,
			  int (*is_local)(void *ctx, uint32_t ip_be), void *ctx)
{
	struct shm_msg m;
	int fds[3] = { -1, -1, -1 }, nfds = 0, rc;
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
			     .msg_controllen = sizeof(ctrl.buf) };

	ssize_t r = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	/* Collect every fd that came, whatever else is wrong, so that none leaks. */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (nfds < 3)
				fds[nfds] = fd;
			else
				close(fd);
			nfds++;
		}
	}
	rc = -EBADMSG;
	if (r != (ssize_t)sizeof(m) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds != 3 ||
	    m.magic != SHM_MAGIC || m.version != SHM_VERSION || m.type != MSG_HELLO)
		goto fail;
	/* It must be talking to us, from an address of this host: the frames it sends will carry it. */
	if (m.to.port != self->port || (self->ip != 0 && m.to.ip != self->ip) || m.from.port == 0 ||
	    !is_local(ctx, m.from.ip))
		goto fail;
	if (!is_eventfd(fds[1]) || !is_eventfd(fds[2]))
		goto fail;
	rc = map_checked(c, fds[0], &m);
	if (rc < 0)
		goto fail;
	close(fds[0]);
	c->efd_rx = fds[1]; /* ring 0: it produces, we consume and sleep on efd 0 */
	c->efd_tx = fds[2];
	c->peer = m.from;
	c->peer._pad = 0;

	struct shm_msg ack = { .magic = SHM_MAGIC, .version = SHM_VERSION, .type = MSG_ACK, .from = *self };
	if (ack.from.ip == 0)
		ack.from.ip = m.to.ip;
	if (send(c->sock, &ack, sizeof(ack), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(ack)) {
		rc = -errno;
		vd__shm_chan_close_fds(c);
		vd__shm_chan_unmap(c);
		return rc < 0 ? rc : -EIO;
	}
	c->state = VD__SHM_UP;
	return 1;
fail:
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	vd__shm_chan_unmap(c);
	return rc;
}
