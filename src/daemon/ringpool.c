/* SPDX-License-Identifier: MIT */
/*
 * Steering rings installed ahead of EP_OPEN, and removed after an endpoint, off the event loop.
 *
 * vd_rings is a BPF map of maps (an array of ringbufs indexed by endpoint id). The kernel makes every
 * update and delete of a map-of-maps wait for an RCU grace period (kernel/bpf/syscall.c,
 * maybe_wait_bpf_programs: synchronize_rcu(), so that no running XDP program still uses the old inner
 * map once the call returns). On this 2-core VM that is 20-30 ms per call, measured with strace -T:
 * it was most of an EP_OPEN (~30 ms: the first connection of every `viaduct run` process), and the
 * delete at an endpoint's reclaim stalled every other client of the daemon for as long.
 *
 * So a worker thread does those calls, and the loop never waits for them:
 *   - each interface keeps RP_SPARES spare slots: an endpoint id reserved here, with a fresh ringbuf of
 *     the default size (never handed to anyone) already in vd_rings[id]. EP_OPEN takes one
 *     (vd__ringpool_take) and needs no map-of-maps call; the worker then prepares the next one;
 *   - an endpoint that goes leaves its ring in vd_rings[id] (no vd_ports entry points at the id any more,
 *     so the dispatcher never writes to it: endpoint.c removes those first). The id stays reserved
 *     until the worker has replaced that ring with a fresh one (it becomes a spare) or deleted it.
 *     A ring is never reused for another endpoint: the old owner may still have it mapped.
 * An EP_OPEN that finds no spare (a burst of opens, a non-default ring size) installs its ring itself,
 * as before, at an id the pool does not hold.
 *
 * The worker also keeps one spare UMEM per interface, of the size a default endpoint there needs: a
 * sealed memfd mapped with MAP_POPULATE, i.e. its pages allocated and zeroed ahead. XDP_UMEM_REG pins the
 * UMEM's pages; on fresh memory that faulted in and zeroed 8 MiB inside EP_OPEN (5-8 ms measured with
 * strace -T). The worker also does the XDP_UMEM_REG itself, on an AF_XDP socket that stays unbound until
 * an EP_OPEN binds it to its queue: pinning 8 MiB was the largest part (~0.5 ms) of what was left of
 * EP_OPEN. A spare memfd was never handed to anyone, so it carries no one's data.
 *
 * The worker also keeps RP_TAPS spare TX taps per interface (taptx.c) while the interface takes redirected
 * frames: making one costs ~0.25 ms but attaching XDP to it ~8 ms (measured), and deleting one (RTM_DELLINK,
 * an unregister_netdevice with its RCU waits) 30-40 ms, so an EP_OPEN takes a ready one and an endpoint's end
 * hands its tap back here to delete.
 *
 * Threading: only the loop thread touches slots[] and spare counts; the worker sees jobs only (ifc's map
 * fd, id, size), through a mutex-protected list, and hands them back on a done list, announced through an
 * eventfd that the loop watches. The worker does no logging (vd__log is the loop's): the loop logs
 * failures when it takes the jobs back. A job only ever names a reserved id, so the loop's own map calls
 * (other ids) never race with the worker on a key.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "daemon.h"

#define RP_SPARES 2u /* per interface: two processes started back to back both find one */
/*
 * A spare taken is replaced this much later, not at once: making one (a ring and an 8 MiB UMEM, zeroed,
 * and pinned) is 1-2 ms of CPU, and right after EP_OPEN it competed with the very process starting up
 * on a 2-core host (its ring mmap calls stretched to 0.5-0.7 ms under perf trace). A second process
 * started within the delay still finds the other spare.
 */
#define RP_REFILL_DELAY_NS 20000000ll
#define RP_TAPS 2u /* spare TX taps per interface, for the same reason as RP_SPARES */
#define RP_TAP_RETRY_NS 5000000000ll /* after a failed tap: not one tried per job finished */

enum slot_state { SLOT_FREE = 0, SLOT_WORKING, SLOT_SPARE };

struct slot {
	uint8_t state;
	struct vd_iface *ifc;  /* WORKING / SPARE: whose vd_rings[id] */
	int ring_fd;           /* SPARE: the fresh ring */
	uint32_t bytes;        /* SPARE: its size */
};

enum job_kind { JOB_RING, JOB_UMEM, JOB_TAP, JOB_TAP_DEL };

struct job {
	struct job *next;
	uint8_t kind;
	struct vd_iface *ifc;
	size_t len;            /* JOB_UMEM: its size; result in umem_fd, umem, xsk_fd, tx_meta_len */
	int umem_fd, xsk_fd;
	void *umem;
	uint32_t tx_meta_len;
	int rings_fd;          /* copied: the worker reads nothing of ifc */
	int tap_prog_fd, tap_devs_fd; /* JOB_TAP: copied from ifc too */
	uint32_t out_ifindex;  /* JOB_TAP: ifc's ifindex */
	struct vd_tap tap;     /* JOB_TAP: the result; JOB_TAP_DEL: ifindex and keep_fd to delete */
	uint32_t id;
	uint32_t bytes;        /* 0: delete vd_rings[id]; else install a fresh ring of this size */
	int ring_fd;           /* result of an install */
	int err;               /* 0 or -errno */
};

static struct slot slots[VD_BPF_MAX_EPS];
/* One spare UMEM per interface (by vd__iface_at index). */
static struct umem_slot {
	uint8_t state;         /* SLOT_FREE, SLOT_WORKING or SLOT_SPARE */
	struct vd_umem_spare u;
} umems[VD_CTL_MAX_IFACES];
/* Spare TX taps per interface (by vd__iface_at index); a JOB_TAP names its slot in job.id. */
static struct tap_slot {
	uint8_t state;         /* SLOT_FREE, SLOT_WORKING or SLOT_SPARE */
	struct vd_tap t;
} taps[VD_CTL_MAX_IFACES][RP_TAPS];
static uint8_t install_pending[VD_BPF_MAX_EPS]; /* WORKING on an install (not a delete) */
static struct vd_evsrc done_src = { .fd = -1 };
static struct vd_evsrc refill_timer = { .fd = -1 };
static bool refill_armed;
static bool worker_up;      /* the pool is on (vd__ringpool_init succeeded) */
static bool worker_running; /* under mu: a worker thread (or an inline run) is taking jobs */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *todo, **todo_tail = &todo, *done;
static bool stopping;
static long long tap_retry_ns; /* CLOCK_MONOTONIC: no spare tap made before */

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void umem_make(struct job *j)
{
	j->umem_fd = vd__memfd_sealed("viaduct-umem", j->len);
	if (j->umem_fd < 0) {
		j->err = j->umem_fd;
		return;
	}
	/* MAP_POPULATE: the pages are allocated (and zeroed) now, not when XDP_UMEM_REG pins them. */
	j->umem = mmap(NULL, j->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, j->umem_fd, 0);
	if (j->umem == MAP_FAILED) {
		j->err = -errno;
		j->umem = NULL;
		close(j->umem_fd);
		j->umem_fd = -1;
		return;
	}
	/* Best effort: without it, the endpoint registers the UMEM itself. */
	j->xsk_fd = vd__xsk_on_umem(j->umem, j->len, &j->tx_meta_len);
}

static void umem_spare_free(struct vd_umem_spare *u)
{
	if (u->xsk_fd >= 0)
		close(u->xsk_fd);
	if (u->map)
		munmap(u->map, u->len);
	if (u->fd >= 0)
		close(u->fd);
}

static void job_run(struct job *j)
{
	j->ring_fd = -1;
	j->err = 0;
	if (j->kind == JOB_UMEM) {
		umem_make(j);
		return;
	}
	if (j->kind == JOB_TAP) {
		j->err = vd__tap_make(j->tap_prog_fd, j->tap_devs_fd, j->out_ifindex, &j->tap);
		return;
	}
	if (j->kind == JOB_TAP_DEL) {
		j->err = vd__tap_delete(j->tap.ifindex, j->tap.keep_fd);
		j->tap.keep_fd = -1;
		return;
	}
	if (!j->bytes) {
		if (bpf_map_delete_elem(j->rings_fd, &j->id) && errno != ENOENT)
			j->err = -errno;
		return;
	}
	j->ring_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "vd_steer", 0, 0, j->bytes, NULL);
	if (j->ring_fd < 0) {
		j->err = -errno;
		return;
	}
	if (bpf_map_update_elem(j->rings_fd, &j->id, &j->ring_fd, BPF_ANY)) {
		j->err = -errno;
		close(j->ring_fd);
		j->ring_fd = -1;
	}
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (todo && !stopping) {
		struct job *j = todo;
		todo = j->next;
		if (!todo)
			todo_tail = &todo;
		pthread_mutex_unlock(&mu);
		job_run(j); /* the slow part (an RCU grace period), unlocked */
		pthread_mutex_lock(&mu);
		j->next = done;
		done = j;
		uint64_t one = 1;
		if (write(done_src.fd, &one, sizeof(one)) < 0) {
			/* eventfd counter cannot overflow at one write per job; nothing to do */
		}
	}
	worker_running = false;
	pthread_cond_broadcast(&cv); /* vd__ringpool_fini may wait for this */
	pthread_mutex_unlock(&mu);
	return NULL;
}

/*
 * The worker lives only while there are jobs: a thread per burst of jobs (about 50 us to start, a few
 * times per endpoint) rather than one for the daemon's life. Measured (`viaduct perf sockets --bench
 * connrate`, interleaved runs): with a thread always there the connection rate was ~20% lower than the
 * single-threaded daemon's (18.7-21.2k vs 23.6-25.5k/s); with the thread gone when idle it is the same
 * (22.5-23.8k vs 21.6-24.9k/s). The likely cause, not verified: a multi-threaded process loses the
 * kernel's single-threaded fast paths (fdget without refcounting, TLB flushes on one CPU) on every
 * syscall of the daemon's per-connection port work. Should the thread not start, the jobs run here, on
 * the loop, as before the pool.
 */
static void queue_job(struct job *j)
{
	pthread_attr_t attr;
	pthread_t t;
	bool inline_run = false;

	pthread_mutex_lock(&mu);
	if (j->kind == JOB_TAP) {
		/* Ahead of ring and UMEM jobs (a grace period each): see refill. */
		j->next = todo;
		todo = j;
		if (todo_tail == &todo)
			todo_tail = &j->next;
	} else {
		*todo_tail = j;
		todo_tail = &j->next;
	}
	if (!worker_running) {
		if (pthread_attr_init(&attr) == 0) {
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			worker_running = pthread_create(&t, &attr, worker_main, NULL) == 0;
			pthread_attr_destroy(&attr);
		}
		if (!worker_running)
			inline_run = worker_running = true; /* no thread: this loop thread takes the jobs now */
	}
	pthread_mutex_unlock(&mu);
	if (inline_run)
		worker_main(NULL);
}

static int submit(struct vd_iface *ifc, uint32_t id, uint32_t bytes)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->kind = JOB_RING;
	j->ifc = ifc;
	j->rings_fd = ifc->rings_fd;
	j->id = id;
	j->bytes = bytes;
	j->umem_fd = -1;
	slots[id].state = SLOT_WORKING;
	slots[id].ifc = ifc;
	install_pending[id] = bytes != 0;
	queue_job(j);
	return 0;
}

static int iface_ix(const struct vd_iface *ifc)
{
	for (unsigned i = 0; i < vd__iface_count() && i < VD_CTL_MAX_IFACES; i++)
		if (vd__iface_at(i) == ifc)
			return (int)i;
	return -1;
}

/* Ready spares of ifc. */
static unsigned spares_of(const struct vd_iface *ifc)
{
	unsigned n = 0;

	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++)
		n += slots[id].ifc == ifc && slots[id].state == SLOT_SPARE;
	return n;
}

/* Installs under way for ifc: counted so that refill does not ask twice. */
static unsigned installing(const struct vd_iface *ifc)
{
	unsigned n = 0;

	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++)
		n += slots[id].state == SLOT_WORKING && slots[id].ifc == ifc && install_pending[id];
	return n;
}

/* Tops every interface up to RP_SPARES, at ids nobody uses (highest first: endpoints that found no spare
 * take the lowest). */
static void refill(void)
{
	if (!worker_up)
		return;
	for (unsigned i = 0; i < vd__iface_count(); i++) {
		struct vd_iface *ifc = vd__iface_at(i);
		unsigned have = spares_of(ifc) + installing(ifc);

		/*
		 * Taps first: an endpoint that finds no spare ring installs one itself (a grace period longer),
		 * but one that finds no tap goes without for life, and the first endpoints come right after the
		 * daemon starts or the interface starts taking redirected frames.
		 */
		bool tap_wanted = vd__taptx_wanted(ifc) && now_ns() >= tap_retry_ns;
		for (unsigned k = 0; i < VD_CTL_MAX_IFACES && k < RP_TAPS && tap_wanted; k++) {
			if (taps[i][k].state != SLOT_FREE)
				continue;
			struct job *j = calloc(1, sizeof(*j));
			if (!j)
				return;
			j->kind = JOB_TAP;
			j->ifc = ifc;
			j->id = k;
			j->umem_fd = j->xsk_fd = -1;
			j->tap_prog_fd = ifc->tap_prog_fd;
			j->tap_devs_fd = ifc->tap_devs_fd;
			j->out_ifindex = ifc->ifindex;
			taps[i][k].state = SLOT_WORKING;
			queue_job(j);
		}
		for (unsigned id = VD_BPF_MAX_EPS; id-- > 0 && have < RP_SPARES;) {
			if (slots[id].state != SLOT_FREE || vd__ep_at(id))
				continue;
			if (submit(ifc, id, vd__ep_steer_bytes(ifc, 0)))
				return;
			have++;
		}
		if (i < VD_CTL_MAX_IFACES && umems[i].state == SLOT_FREE) {
			struct job *j = calloc(1, sizeof(*j));
			if (!j)
				return;
			j->kind = JOB_UMEM;
			j->ifc = ifc;
			j->len = vd__ep_default_umem_len(ifc);
			j->umem_fd = j->xsk_fd = -1;
			umems[i].state = SLOT_WORKING;
			queue_job(j);
		}
	}
}

static void done_event(struct vd_evsrc *src, uint32_t events)
{
	uint64_t n;

	(void)events;
	if (read(src->fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&mu);
	struct job *list = done;
	done = NULL;
	pthread_mutex_unlock(&mu);
	while (list) {
		struct job *j = list;
		struct slot *s = &slots[j->id];

		list = j->next;
		if (j->kind == JOB_TAP_DEL) {
			if (j->err)
				vd__warn("deleting TX tap ifindex %u: %s", j->tap.ifindex, strerror(-j->err));
			free(j);
			continue;
		}
		if (j->kind == JOB_TAP) {
			int i = iface_ix(j->ifc);
			if (j->err) {
				vd__warn("%s: preparing a spare TX tap: %s", j->ifc->name, strerror(-j->err));
				/* Not tried again at once (a refill follows every job), but a few seconds on. */
				tap_retry_ns = now_ns() + RP_TAP_RETRY_NS;
			}
			if (i >= 0 && !j->err) {
				taps[i][j->id] = (struct tap_slot){ .state = SLOT_SPARE, .t = j->tap };
				vd__dbg("%s: spare TX tap %s ready", j->ifc->name, j->tap.name);
			} else if (i >= 0) {
				taps[i][j->id].state = SLOT_FREE;
			}
			free(j);
			continue;
		}
		if (j->kind == JOB_UMEM) {
			int i = iface_ix(j->ifc);
			if (j->err)
				vd__warn("%s: preparing a spare UMEM: %s", j->ifc->name, strerror(-j->err));
			if (i >= 0 && !j->err)
				umems[i] = (struct umem_slot){ .state = SLOT_SPARE,
							       .u = { .fd = j->umem_fd, .xsk_fd = j->xsk_fd,
								      .map = j->umem, .len = j->len,
								      .tx_meta_len = j->tx_meta_len } };
			else if (i >= 0)
				umems[i].state = SLOT_FREE; /* tried again at the next refill */
			free(j);
			continue;
		}
		install_pending[j->id] = 0;
		if (j->err)
			vd__warn("%s: steering ring slot %u: %s %s", j->ifc->name, j->id,
				 j->bytes ? "preparing a spare:" : "removing the old ring:", strerror(-j->err));
		if (j->bytes && !j->err) {
			s->state = SLOT_SPARE;
			s->ring_fd = j->ring_fd;
			s->bytes = j->bytes;
		} else {
			/* A failed install may leave the old ring in the map: harmless (no port points at the
			 * id), and the id's next owner overwrites it with BPF_ANY. */
			s->state = SLOT_FREE;
			s->ifc = NULL;
		}
		free(j);
	}
	refill();
}

static void refill_timer_event(struct vd_evsrc *src, uint32_t events)
{
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		vd__warn("ring pool timer: %s", strerror(errno));
	refill_armed = false;
	refill();
}

/* Refill later, from the loop (RP_REFILL_DELAY_NS): the id just taken is not the endpoint's yet (eps[] is
 * set by the caller after this returns), and a refill now could pick it again and replace the ring under
 * the endpoint. */
static void refill_soon(void)
{
	struct itimerspec its = { .it_value = { .tv_sec = 0, .tv_nsec = RP_REFILL_DELAY_NS } };

	if (refill_timer.fd < 0 || refill_armed)
		return;
	if (timerfd_settime(refill_timer.fd, 0, &its, NULL))
		vd__warn("ring pool timer: %s", strerror(errno));
	else
		refill_armed = true;
}

int vd__ringpool_take(struct vd_iface *ifc, uint32_t bytes, uint32_t *id, int *ring_fd)
{
	for (uint32_t i = 0; i < VD_BPF_MAX_EPS; i++) {
		struct slot *s = &slots[i];

		if (s->state != SLOT_SPARE || s->ifc != ifc || s->bytes != bytes || vd__ep_at(i))
			continue;
		*id = i;
		*ring_fd = s->ring_fd;
		*s = (struct slot){ .state = SLOT_FREE, .ring_fd = -1 };
		refill_soon();
		return 0;
	}
	return -ENOENT;
}

int vd__ringpool_take_umem(const struct vd_iface *ifc, size_t len, struct vd_umem_spare *out)
{
	int i = iface_ix(ifc);

	if (i < 0 || umems[i].state != SLOT_SPARE || umems[i].u.len != len)
		return -ENOENT;
	*out = umems[i].u;
	umems[i] = (struct umem_slot){ .state = SLOT_FREE };
	refill_soon();
	return 0;
}

int vd__ringpool_take_tap(const struct vd_iface *ifc, struct vd_tap *out)
{
	int i = iface_ix(ifc);

	for (unsigned k = 0; i >= 0 && k < RP_TAPS; k++) {
		if (taps[i][k].state != SLOT_SPARE)
			continue;
		*out = taps[i][k].t;
		taps[i][k] = (struct tap_slot){ .state = SLOT_FREE };
		refill_soon();
		return 0;
	}
	return -ENOENT;
}

void vd__ringpool_tap_del(uint32_t ifindex, int keep_fd)
{
	struct job *j = worker_up ? calloc(1, sizeof(*j)) : NULL;

	if (!j) {
		/* No pool (or no memory): on the loop, 30-40 ms. */
		int err = vd__tap_delete(ifindex, keep_fd);
		if (err)
			vd__warn("deleting TX tap ifindex %u: %s", ifindex, strerror(-err));
		return;
	}
	j->kind = JOB_TAP_DEL;
	j->umem_fd = j->xsk_fd = -1;
	j->tap = (struct vd_tap){ .keep_fd = keep_fd, .app_fd = -1, .ifindex = ifindex };
	queue_job(j);
}

void vd__ringpool_kick(void)
{
	/* A refill already on its way (RP_REFILL_DELAY_NS after a take) is left to come: not sooner. */
	if (!refill_armed)
		refill();
}

bool vd__ringpool_reserved(uint32_t id)
{
	return id < VD_BPF_MAX_EPS && slots[id].state != SLOT_FREE;
}

void vd__ringpool_stat(const struct vd_iface *ifc, struct vd_ctl_stat_spares *out)
{
	int i = iface_ix(ifc);

	out->spare_eps = spares_of(ifc);
	out->ring_jobs = 0;
	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++)
		out->ring_jobs += slots[id].state == SLOT_WORKING && slots[id].ifc == ifc;
	out->spare_umems = i >= 0 && umems[i].state == SLOT_SPARE;
	out->spare_umem_bytes = out->spare_umems ? umems[i].u.len : 0;
}

bool vd__ringpool_release(struct vd_iface *ifc, uint32_t id)
{
	if (!worker_up || id >= VD_BPF_MAX_EPS || slots[id].state != SLOT_FREE)
		return false;
	/* Replacing the old ring with a fresh one costs one grace period and makes a spare; deleting it
	 * costs as much. Replace while the interface is short of spares. */
	bool install = spares_of(ifc) + installing(ifc) < RP_SPARES;
	return submit(ifc, id, install ? vd__ep_steer_bytes(ifc, 0) : 0) == 0;
}

/*
 * The first spare taps are made here, before the daemon says it is ready (~9 ms each, attaching XDP most
 * of it): an application started right after the daemon would otherwise find none and go without a tap
 * for its endpoint's life. Later ones come from the worker.
 */
static void initial_taps(void)
{
	for (unsigned i = 0; i < vd__iface_count() && i < VD_CTL_MAX_IFACES; i++) {
		struct vd_iface *ifc = vd__iface_at(i);

		for (unsigned k = 0; k < RP_TAPS && vd__taptx_wanted(ifc); k++) {
			struct vd_tap t;
			int err = vd__tap_make(ifc->tap_prog_fd, ifc->tap_devs_fd, ifc->ifindex, &t);
			if (err) {
				vd__warn("%s: preparing a spare TX tap: %s", ifc->name, strerror(-err));
				tap_retry_ns = now_ns() + RP_TAP_RETRY_NS;
				return;
			}
			taps[i][k] = (struct tap_slot){ .state = SLOT_SPARE, .t = t };
		}
	}
}

int vd__ringpool_init(void)
{
	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++)
		slots[id] = (struct slot){ .state = SLOT_FREE, .ring_fd = -1 };
	done_src.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (done_src.fd < 0)
		return -errno;
	done_src.cb = done_event;
	int err = vd__loop_add(&done_src, EPOLLIN);
	if (err)
		goto fail;
	refill_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	refill_timer.cb = refill_timer_event;
	refill_armed = false;
	if (refill_timer.fd < 0 || (err = vd__loop_add(&refill_timer, EPOLLIN))) {
		err = refill_timer.fd < 0 ? -errno : err;
		vd__loop_del(&done_src);
		goto fail;
	}
	worker_up = true;
	stopping = false;
	initial_taps();
	refill();
	return 0;
fail:
	if (refill_timer.fd >= 0)
		close(refill_timer.fd);
	refill_timer.fd = -1;
	close(done_src.fd);
	done_src.fd = -1;
	return err;
}

void vd__ringpool_fini(void)
{
	if (!worker_up)
		return;
	/* The worker finishes the job in hand (at most one grace period); queued ones are dropped: the maps
	 * go with the interfaces right after. */
	pthread_mutex_lock(&mu);
	stopping = true;
	while (worker_running)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	worker_up = false;
	/* Taps are devices: every one is deleted here, whatever its state (nothing may outlive the daemon
	 * while an application holds its queue). 30-40 ms each, on the way out. */
	for (struct job *l = todo, *n; l; l = n) {
		n = l->next;
		if (l->kind == JOB_TAP_DEL)
			vd__tap_delete(l->tap.ifindex, l->tap.keep_fd);
		free(l);
	}
	for (struct job *l = done, *n; l; l = n) {
		n = l->next;
		if (l->kind == JOB_TAP && !l->err) {
			close(l->tap.app_fd);
			vd__tap_delete(l->tap.ifindex, l->tap.keep_fd);
		}
		if (l->ring_fd >= 0)
			close(l->ring_fd);
		if (l->kind == JOB_UMEM)
			umem_spare_free(&(struct vd_umem_spare){ .fd = l->umem_fd, .xsk_fd = l->xsk_fd,
								 .map = l->umem, .len = l->len });
		free(l);
	}
	todo = done = NULL;
	todo_tail = &todo;
	for (unsigned id = 0; id < VD_BPF_MAX_EPS; id++) {
		if (slots[id].state == SLOT_SPARE)
			close(slots[id].ring_fd);
		slots[id] = (struct slot){ .state = SLOT_FREE, .ring_fd = -1 };
		install_pending[id] = 0;
	}
	for (unsigned i = 0; i < VD_CTL_MAX_IFACES; i++) {
		if (umems[i].state == SLOT_SPARE)
			umem_spare_free(&umems[i].u);
		umems[i] = (struct umem_slot){ .state = SLOT_FREE };
		for (unsigned k = 0; k < RP_TAPS; k++) {
			if (taps[i][k].state == SLOT_SPARE) {
				close(taps[i][k].t.app_fd);
				vd__tap_delete(taps[i][k].t.ifindex, taps[i][k].t.keep_fd);
			}
			taps[i][k] = (struct tap_slot){ .state = SLOT_FREE };
		}
	}
	vd__loop_del(&done_src);
	close(done_src.fd);
	done_src.fd = -1;
	vd__loop_del(&refill_timer);
	close(refill_timer.fd);
	refill_timer.fd = -1;
	refill_armed = false;
}
