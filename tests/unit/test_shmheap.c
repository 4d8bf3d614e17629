/* SPDX-License-Identifier: MIT */
/* The process-shared heap (src/lib/core/shmheap.h): classes, reuse, exhaustion, release, fork. */
#include "harness.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/core/shmheap.h"

TEST(classes_waste_at_most_a_quarter)
{
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 64u << 20) == 0);
	size_t sizes[] = { 1, 16, 17, 100, 129, 1000, 4096, 65536, 100000, 4u << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t before = vd__shm_used(h);
		uint8_t *p = vd__shm_alloc(h, sizes[i]);
		REQUIRE(p != NULL);
		CHECK(((uintptr_t)p & 15) == 0);
		size_t got = vd__shm_usable(h, p);
		CHECK(got >= sizes[i]);
		size_t charged = vd__shm_used(h) - before;
		CHECK(charged >= 32);
		/* 4 steps per power of two: a block is at most 1.25x (header included) above 128 bytes */
		if (sizes[i] + 16 > 128)
			CHECK(charged * 4 <= (sizes[i] + 16) * 5);
		memset(p, 0xa5, sizes[i]);
		vd__shm_free(h, p);
		CHECK_EQ(vd__shm_used(h), before);
	}
	/* a 4 MiB buffer takes 4 MiB + one step, not 8 MiB */
	uint8_t *big = vd__shm_alloc(h, 4u << 20);
	REQUIRE(big != NULL);
	CHECK(vd__shm_used(h) <= (5u << 20));
	vd__shm_free(h, big);
	vd__shm_destroy(h);
}

TEST(freed_blocks_are_reused_and_zeroed_by_calloc)
{
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 0) == 0);
	void *a = vd__shm_alloc(h, 200);
	memset(a, 0xff, 200);
	vd__shm_free(h, a);
	uint8_t *b = vd__shm_calloc(h, 1, 190); /* same class */
	CHECK(b == a);
	int zero = 1;
	for (int i = 0; i < 190; i++)
		zero &= b[i] == 0;
	CHECK(zero);
	/* realloc keeps the data */
	for (int i = 0; i < 190; i++)
		b[i] = (uint8_t)i;
	uint8_t *c = vd__shm_realloc(h, b, 5000);
	REQUIRE(c != NULL);
	int same = 1;
	for (int i = 0; i < 190; i++)
		same &= c[i] == (uint8_t)i;
	CHECK(same);
	CHECK(vd__shm_peak(h) >= vd__shm_used(h));
	vd__shm_free(h, c);
	CHECK_EQ(vd__shm_used(h), 0);
	vd__shm_destroy(h);
}

TEST(exhaustion_returns_null_then_recovers)
{
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 1u << 20) == 0);
	void *blocks[64];
	int n = 0;
	while (n < 64 && (blocks[n] = vd__shm_alloc(h, 100000)) != NULL)
		n++;
	CHECK(n > 4 && n < 64);          /* 1 MiB holds about 8 of them */
	CHECK(vd__shm_alloc(h, 100000) == NULL);
	CHECK(vd__shm_alloc(h, (size_t)1 << 50) == NULL);
	vd__shm_free(h, blocks[0]);
	CHECK(vd__shm_alloc(h, 100000) == blocks[0]);
	vd__shm_destroy(h);
}

TEST(large_blocks_give_their_pages_back)
{
	/* larger than the warm budget (32 MiB of freed large blocks keep their pages): released at once */
	const size_t BIG = 40u << 20;
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 128u << 20) == 0);
	uint8_t *big = vd__shm_alloc(h, BIG);
	REQUIRE(big != NULL);
	memset(big, 0x5a, BIG);
	vd__shm_free(h, big);
	/* released with MADV_REMOVE: reused, it reads as zero past its header's page */
	uint8_t *again = vd__shm_alloc(h, BIG);
	CHECK(again == big);
	CHECK(again[8192] == 0 && again[BIG - 1] == 0);
	memset(again, 0x5a, BIG);
	vd__shm_free(h, again);
	/* calloc clears the partial first page it could not release: all zero */
	uint8_t *z = vd__shm_calloc(h, 1, BIG);
	CHECK(z == big);
	int zero = 1;
	for (size_t i = 0; i < BIG; i += 512)
		zero &= z[i] == 0;
	CHECK(zero && z[BIG - 1] == 0);
	vd__shm_free(h, z);
	/* small blocks keep their pages; calloc clears them */
	uint8_t *sm = vd__shm_alloc(h, 1000);
	memset(sm, 0x77, 1000);
	vd__shm_free(h, sm);
	uint8_t *sz = vd__shm_calloc(h, 1, 1000);
	CHECK(sz == sm && sz[0] == 0 && sz[999] == 0);
	vd__shm_free(h, sz);
	vd__shm_destroy(h);
}

TEST(null_heap_is_malloc)
{
	void *p = vd__shm_calloc(NULL, 3, 10);
	REQUIRE(p != NULL);
	p = vd__shm_realloc(NULL, p, 100);
	REQUIRE(p != NULL);
	vd__shm_free(NULL, p);
	CHECK_EQ(vd__shm_used(NULL), 0);
}

TEST(fork_child_allocates_parent_reads_and_frees)
{
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 4u << 20) == 0);
	int pfd[2];
	REQUIRE(pipe(pfd) == 0);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char *p = vd__shm_alloc(h, 5000);
		if (p)
			strcpy(p, "written by the child");
		uintptr_t v = (uintptr_t)p;
		_exit(write(pfd[1], &v, sizeof(v)) == sizeof(v) && p ? 0 : 1);
	}
	uintptr_t v = 0;
	CHECK(read(pfd[0], &v, sizeof(v)) == sizeof(v));
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	REQUIRE(v != 0);
	CHECK(strcmp((char *)v, "written by the child") == 0);
	CHECK(vd__shm_used(h) >= 5000);
	vd__shm_free(h, (void *)v);
	CHECK_EQ(vd__shm_used(h), 0);
	close(pfd[0]);
	close(pfd[1]);
	vd__shm_destroy(h);
}

TEST(freed_large_blocks_stay_warm_up_to_a_budget)
{
	/* 40 blocks of 1 MiB (1.25 MiB class): the first 32 MiB freed keep their pages (connection churn
	 * reuses them without faults), the rest are released and read as zero when reused */
	struct vd__shmheap *h;
	REQUIRE(vd__shm_create(&h, 128u << 20) == 0);
	uint8_t *b[40];
	for (int i = 0; i < 40; i++) {
		b[i] = vd__shm_alloc(h, 1u << 20);
		REQUIRE(b[i] != NULL);
		memset(b[i], 0x5a, 1u << 20);
	}
	for (int i = 0; i < 40; i++)
		vd__shm_free(h, b[i]);
	int warm = 0, released = 0;
	for (int i = 0; i < 40; i++) {
		uint8_t *p = vd__shm_alloc(h, 1u << 20);
		REQUIRE(p != NULL);
		if (p[8192] == 0x5a)
			warm++;
		else if (p[8192] == 0 && p[(1u << 20) - 1] == 0)
			released++;
	}
	CHECK(warm == 25);     /* 25 x 1.25 MiB = 31.25 MiB <= 32 MiB */
	CHECK(released == 15);
	vd__shm_destroy(h);
}

TEST_MAIN(T(classes_waste_at_most_a_quarter), T(freed_blocks_are_reused_and_zeroed_by_calloc),
	  T(exhaustion_returns_null_then_recovers), T(large_blocks_give_their_pages_back),
	  T(freed_large_blocks_stay_warm_up_to_a_budget), T(null_heap_is_malloc),
	  T(fork_child_allocates_parent_reads_and_frees))
