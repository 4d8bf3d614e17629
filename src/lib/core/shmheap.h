/* SPDX-License-Identifier: MIT */
/*
 * A process-shared heap: one MAP_SHARED | MAP_ANONYMOUS mapping, made before any fork() so it sits at the
 * same address in every descendant and raw pointers into it stay valid in all of them. The sockets stack
 * keeps everything it owns here (socket.h, "Processes").
 *
 * Layout: a header (lock, free lists, bump pointer, counters) at the start of the mapping, then blocks.
 * Every block starts with a 16-byte header (its size class) and is 16-byte aligned. Size classes have
 * four steps per power of two from 128 bytes up (16-byte steps below), so a request wastes at most 25 %
 * (a 4 MiB buffer does not take 8 MiB); the smallest class is 32 bytes. Freed blocks go on their class's
 * free list (no coalescing: the stack's sizes repeat); freed blocks of 256 KiB and more give their pages
 * back (MADV_REMOVE on shmem), so idle big buffers cost address space only, except the first 32 MiB of
 * them, which stay warm for the next connection's buffers. The mapping is
 * MAP_NORESERVE: memory is used only as touched.
 *
 * The heap has its own lock (process-shared, robust: a member that dies inside an allocation does not
 * wedge the others; the heap is then as consistent as its last completed step).
 *
 * Every call accepts h == NULL and then uses malloc/free: code that runs both inside a shared stack and on
 * its own (the TCP engine's unit tests, fuzzers) needs no second path.
 */
#ifndef VD_CORE_SHMHEAP_H
#define VD_CORE_SHMHEAP_H

#include <stddef.h>
#include <stdint.h>

struct vd__shmheap;

/* Maps bytes of address space (rounded up to pages; at least 1 MiB). Returns 0 or a negative errno. */
int vd__shm_create(struct vd__shmheap **out, size_t bytes);
/* Unmaps the whole heap in the calling process (other processes keep their mapping). */
void vd__shm_destroy(struct vd__shmheap *h);

/* NULL when the heap is exhausted (or n is absurd). Memory is 16-byte aligned; calloc zeroes it. */
void *vd__shm_alloc(struct vd__shmheap *h, size_t n);
void *vd__shm_calloc(struct vd__shmheap *h, size_t nmemb, size_t size);
/* realloc semantics: p NULL allocates; on failure p is untouched and NULL returned. n 0 is treated as 1. */
void *vd__shm_realloc(struct vd__shmheap *h, void *p, size_t n);
void vd__shm_free(struct vd__shmheap *h, void *p);

/* Where the mapping starts and how long it is (what /proc/PID/maps shows for it). */
uintptr_t vd__shm_base(const struct vd__shmheap *h);
size_t vd__shm_size(const struct vd__shmheap *h);
/* Bytes in allocated blocks now (block headers and class rounding included), and the most ever. */
size_t vd__shm_used(struct vd__shmheap *h);
size_t vd__shm_peak(struct vd__shmheap *h);
/* Usable bytes of the block p (>= what was asked). */
size_t vd__shm_usable(struct vd__shmheap *h, const void *p);

#endif
