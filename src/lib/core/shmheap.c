/* SPDX-License-Identifier: MIT */
/*
 * The process-shared heap (shmheap.h): size classes, free lists and a bump pointer in one shared mapping.
 */
#include "shmheap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHM_MAGIC 0x76644850u            /* "vdHP" in a block header: catches frees of foreign pointers */
#define SHM_HDR 16u                       /* block header bytes; also the alignment */
#define SHM_NCLASS 140                    /* classes up to 2^40 bytes */
#define SHM_RELEASE_MIN (256u * 1024u)    /* freed blocks this large give their pages back... */
#define SHM_WARM_MAX (32u * 1024u * 1024u) /* ...once this many bytes of them keep theirs already */
#define SHM_MIN_BYTES (1u << 20)

struct blk_hdr {
	uint32_t magic;
	uint16_t cls;
	uint16_t zeroed;             /* large blocks: the pages past the header read as zero (fresh or released) */
	struct blk_hdr *next_free;   /* valid only while free */
};
_Static_assert(sizeof(struct blk_hdr) <= SHM_HDR, "block header fits its slot");

struct vd__shmheap {
	pthread_mutex_t lock;        /* process-shared, robust */
	size_t map_len;
	uintptr_t bump, end;         /* next never-used byte; end of the mapping */
	size_t used, peak;
	size_t warm;                 /* bytes in free large blocks that kept their pages (<= SHM_WARM_MAX) */
	struct blk_hdr *free_list[SHM_NCLASS];
};

/*
 * Class of a block of n bytes (header included): 32, 48, ..., 128 in 16-byte steps (classes 0-6), then
 * four steps per power of two: (2^p, 2^(p+1)] is cut at 2^p + k * 2^(p-2), k = 1..4.
 */
static int size_class(size_t n)
{
	if (n <= 32)
		return 0;
	if (n <= 128)
		return (int)((n + 15) / 16) - 2;
	unsigned p = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 2^p < n <= 2^(p+1) */
	size_t step = (size_t)1 << (p - 2);
	size_t k = (n - ((size_t)1 << p) + step - 1) / step;                      /* 1..4 */
	return 6 + (int)(p - 7) * 4 + (int)k;
}

static size_t class_size(int c)
{
	if (c <= 6)
		return 32u + 16u * (size_t)c;
	unsigned q = (unsigned)c - 7u, p = 7u + q / 4u;
	return ((size_t)1 << p) + (size_t)(q % 4u + 1u) * ((size_t)1 << (p - 2));
}

static size_t page_size(void)
{
	static size_t ps;
	if (!ps)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

/* Takes the heap's lock; a dead previous owner leaves the heap as its last completed step did. */
static void heap_lock(struct vd__shmheap *h)
{
	if (pthread_mutex_lock(&h->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&h->lock);
}

int vd__shm_create(struct vd__shmheap **out, size_t bytes)
{
	size_t ps = page_size();
	if (bytes < SHM_MIN_BYTES)
		bytes = SHM_MIN_BYTES;
	if (bytes > ((size_t)1 << 40))
		return -EINVAL;
	bytes = (bytes + ps - 1) & ~(ps - 1);
	/* MAP_SHARED: a fork child sees the same pages; MAP_NORESERVE: only touched pages are charged. */
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	struct vd__shmheap *h = m; /* the pages are zero: every list empty, counters 0 */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&h->lock, &a);
	pthread_mutexattr_destroy(&a);
	if (rc) {
		munmap(m, bytes);
		return -rc;
	}
	h->map_len = bytes;
	h->bump = ((uintptr_t)m + sizeof(*h) + SHM_HDR - 1) & ~(uintptr_t)(SHM_HDR - 1);
	h->end = (uintptr_t)m + bytes;
	*out = h;
	return 0;
}

void vd__shm_destroy(struct vd__shmheap *h)
{
	/* No pthread_mutex_destroy: other processes may still map the heap and use the lock. */
	if (h)
		munmap(h, h->map_len);
}

void *vd__shm_alloc(struct vd__shmheap *h, size_t n)
{
	if (!h)
		return malloc(n ? n : 1);
	if (n > ((size_t)1 << 39))
		return NULL;
	int c = size_class(n + SHM_HDR);
	size_t sz = class_size(c);
	struct blk_hdr *b;
	heap_lock(h);
	b = h->free_list[c];
	if (b) {
		h->free_list[c] = b->next_free;
		if (sz >= SHM_RELEASE_MIN && !b->zeroed)
			h->warm -= sz;
	} else if (h->end - h->bump >= sz) {
		b = (struct blk_hdr *)h->bump;
		h->bump += sz;
		b->zeroed = 1; /* never used: the mapping's pages are zero */
	} else {
		pthread_mutex_unlock(&h->lock);
		return NULL;
	}
	b->magic = SHM_MAGIC;
	b->cls = (uint16_t)c;
	b->next_free = NULL;
	h->used += sz;
	if (h->used > h->peak)
		h->peak = h->used;
	pthread_mutex_unlock(&h->lock);
	return (uint8_t *)b + SHM_HDR;
}

/* The whole pages of a large block past its header: what vd__shm_free gives back. */
static void release_range(const struct blk_hdr *b, size_t sz, uintptr_t *from, uintptr_t *to)
{
	size_t ps = page_size();
	*from = ((uintptr_t)b + SHM_HDR + ps - 1) & ~(uintptr_t)(ps - 1);
	*to = ((uintptr_t)b + sz) & ~(uintptr_t)(ps - 1);
}

void *vd__shm_calloc(struct vd__shmheap *h, size_t nmemb, size_t size)
{
	if (!h)
		return calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	size_t n = nmemb * size;
	uint8_t *p = vd__shm_alloc(h, n);
	if (!p)
		return NULL;
	struct blk_hdr *b = (struct blk_hdr *)(p - SHM_HDR);
	size_t sz = class_size((int)b->cls);
	if (sz < SHM_RELEASE_MIN || !b->zeroed) {
		memset(p, 0, n); /* a reused block that kept its pages holds old data */
		return p;
	}
	/* A large block is zero except where vd__shm_free could not release whole pages: its first and last
	 * partial pages (a fresh block is zero throughout). Clearing only those keeps a big zeroed table
	 * (the UDP port table, 512 KiB) from being touched, i.e. from costing memory, until it is used. */
	uintptr_t from, to;
	release_range(b, sz, &from, &to);
	uintptr_t lo = (uintptr_t)p, hi = (uintptr_t)p + n;
	if (to <= from || hi <= from || lo >= to) {
		memset(p, 0, n);
		return p;
	}
	if (from > lo)
		memset(p, 0, from - lo);
	if (hi > to)
		memset((void *)to, 0, hi - to);
	return p;
}

static struct blk_hdr *hdr_of(const void *p)
{
	return (struct blk_hdr *)((uintptr_t)p - SHM_HDR);
}

size_t vd__shm_usable(struct vd__shmheap *h, const void *p)
{
	(void)h;
	return class_size((int)hdr_of(p)->cls) - SHM_HDR;
}

void vd__shm_free(struct vd__shmheap *h, void *p)
{
	if (!h) {
		free(p);
		return;
	}
	if (!p)
		return;
	struct blk_hdr *b = hdr_of(p);
	if ((uintptr_t)b < (uintptr_t)h || (uintptr_t)b >= h->end || b->magic != SHM_MAGIC || b->cls >= SHM_NCLASS)
		abort(); /* a foreign or doubly freed pointer: corrupting the shared heap would be worse */
	size_t sz = class_size((int)b->cls);
	b->zeroed = 0;
	if (sz >= SHM_RELEASE_MIN) {
		/*
		 * Up to SHM_WARM_MAX bytes of freed large blocks keep their pages: connection churn frees and
		 * allocates TCP buffers (320 KiB blocks) all the time, and giving them back costs an madvise per
		 * buffer at the free and page faults on shmem at the next use. Measured (fresh lab per run, `perf
		 * sockets --bench connrate`, 2 rounds each): connect+close p50 27/27 us with the pages kept,
		 * 35/44 us with every block released. Past the budget a block gives its pages back (its first
		 * page keeps the header): on shmem MADV_REMOVE frees the backing store, and the pages read as zero
		 * when the block is reused; done outside the lock: nobody else can touch a block that is not on
		 * a free list yet.
		 */
		heap_lock(h);
		int keep = h->warm + sz <= SHM_WARM_MAX;
		if (keep)
			h->warm += sz;
		pthread_mutex_unlock(&h->lock);
		uintptr_t from, to;
		release_range(b, sz, &from, &to);
		if (!keep && to > from && madvise((void *)from, to - from, MADV_REMOVE) == 0)
			b->zeroed = 1;
	}
	heap_lock(h);
	b->magic = 0;
	b->next_free = h->free_list[b->cls];
	h->free_list[b->cls] = b;
	h->used -= sz;
	pthread_mutex_unlock(&h->lock);
}

void *vd__shm_realloc(struct vd__shmheap *h, void *p, size_t n)
{
	if (!h)
		return realloc(p, n ? n : 1);
	if (!p)
		return vd__shm_alloc(h, n);
	size_t have = vd__shm_usable(h, p);
	if (n <= have && size_class(n + SHM_HDR) == (int)hdr_of(p)->cls)
		return p;
	void *q = vd__shm_alloc(h, n);
	if (!q)
		return NULL;
	memcpy(q, p, have < n ? have : n);
	vd__shm_free(h, p);
	return q;
}

uintptr_t vd__shm_base(const struct vd__shmheap *h)
{
	return (uintptr_t)h;
}

size_t vd__shm_size(const struct vd__shmheap *h)
{
	return h->map_len;
}

size_t vd__shm_used(struct vd__shmheap *h)
{
	if (!h)
		return 0;
	heap_lock(h);
	size_t u = h->used;
	pthread_mutex_unlock(&h->lock);
	return u;
}

size_t vd__shm_peak(struct vd__shmheap *h)
{
	if (!h)
		return 0;
	heap_lock(h);
	size_t u = h->peak;
	pthread_mutex_unlock(&h->lock);
	return u;
}
