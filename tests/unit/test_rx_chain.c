/* SPDX-License-Identifier: MIT */
/*
 * Multi-buffer RX (src/lib/nic/rx_chain.h, used by nic_xdp.c's xdp_rx_chain/xdp_rx_xsk) over an in-memory
 * RX ring and UMEM: the test plays the kernel, writing descriptors and moving the shared producer index.
 * Checked: a good chain is gathered in order into a bounce buffer; an incomplete one is left in the ring;
 * malformed chains (too many pieces, a piece outside the RX chunks or the UMEM, a piece crossing its chunk,
 * more bytes than a bounce buffer) and the no-bounce-buffer case are dropped and counted once, and every RX
 * chunk goes back to the fill stash exactly once, none that is not an RX chunk.
 */
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "lib/nic/rx_chain.h"
#include "fake_xsk_ring.h"

#define FS 4096u       /* chunk size */
#define HEAD 256u      /* copy-mode headroom: data starts here in each chunk */
#define RXF 16u        /* RX chunks; chunks RXF.. are TX chunks */
#define UMEM_CHUNKS 20u
#define SLOTS 32u      /* RX ring size (<= FAKE_RING_MAX_SLOTS) */
#define MAXF 3u        /* max_frags */
#define NBOUNCE 2u

/* Everything one test works on: static (the UMEM and bounce buffers are large for a stack). */
static struct env {
	struct fake_ring ring;
	struct vd__xsk_ring rx;
	uint8_t umem[UMEM_CHUNKS * FS];
	uint64_t stash[RXF];
	uint32_t stash_n;
	uint8_t bounce[NBOUNCE * 16384];
	uint32_t bounce_free[NBOUNCE];
	struct vd__rx_chains c;
	struct vd__rx_view v;
	struct vd_nic_stats st;
	uint32_t kernel_next; /* next RX chunk the fake kernel writes into (round robin, distinct per test) */
} e;

static void env_init(uint32_t start)
{
	memset(&e, 0, sizeof(e));
	e.ring.producer = e.ring.consumer = start;
	vd__xsk_ring_init(&e.rx, &e.ring, &fake_off, SLOTS);
	uint32_t size = vd__rx_bounce_size(MAXF, FS, HEAD);
	vd__rx_chains_init(&e.c, e.bounce, size, e.bounce_free, NBOUNCE);
	e.v = (struct vd__rx_view){ .umem = e.umem, .frame_size = FS, .rx_frames = RXF, .max_frags = MAXF,
				    .stash = e.stash, .stash_n = &e.stash_n };
}

/* The kernel writes one descriptor (not published until publish()). */
static uint32_t kernel_written;
static void kdesc(uint64_t addr, uint32_t len, uint32_t opts)
{
	struct xdp_desc *d = &e.ring.desc[(e.ring.producer + kernel_written++) & (SLOTS - 1)];
	d->addr = addr;
	d->len = len;
	d->options = opts;
}

static void publish(void)
{
	__atomic_store_n(&e.ring.producer, e.ring.producer + kernel_written, __ATOMIC_RELEASE);
	kernel_written = 0;
}

/* A well-formed piece in the next RX chunk, its bytes set to a pattern of (tag, offset). */
static uint64_t kpiece(uint32_t len, uint32_t opts, uint8_t tag)
{
	uint64_t addr = (uint64_t)(e.kernel_next++ % RXF) * FS + HEAD;
	for (uint32_t i = 0; i < len; i++)
		e.umem[addr + i] = (uint8_t)(tag + i * 7);
	kdesc(addr, len, opts);
	return addr;
}

/* The caller's burst, one frame: peek its first descriptor, take the chain from there (which moves the
 * consumer position past the whole chain), publish the consumer index. */
static uint32_t take(uint32_t *b, uint32_t *len)
{
	uint32_t idx;
	uint32_t got = vd__xsk_cons_peek(&e.rx, 1, &idx);
	if (got == 0)
		return 0;
	uint32_t used = vd__rx_chain_take(&e.c, &e.rx, &e.v, idx, &e.st, b, len);
	if (used == 0)
		e.rx.cached_cons = idx; /* incomplete: left for the next burst, as xdp_rx_xsk does */
	vd__xsk_cons_release(&e.rx);
	return used;
}

static bool stash_has(uint64_t base)
{
	for (uint32_t i = 0; i < e.stash_n; i++)
		if (e.stash[i] == base)
			return true;
	return false;
}

static bool stash_distinct_rx(void)
{
	for (uint32_t i = 0; i < e.stash_n; i++) {
		if (e.stash[i] % FS || e.stash[i] >= (uint64_t)RXF * FS)
			return false;
		for (uint32_t j = 0; j < i; j++)
			if (e.stash[j] == e.stash[i])
				return false;
	}
	return true;
}

TEST(desc_check_bounds)
{
	CHECK(vd__rx_desc_ok(0, FS, FS, RXF));
	CHECK(vd__rx_desc_ok(HEAD, FS - HEAD, FS, RXF));
	CHECK(vd__rx_desc_ok((uint64_t)(RXF - 1) * FS + HEAD, FS - HEAD, FS, RXF));
	CHECK(!vd__rx_desc_ok((uint64_t)RXF * FS, 1, FS, RXF));         /* first TX chunk */
	CHECK(!vd__rx_desc_ok(FS - 1, 2, FS, RXF));                      /* crosses into chunk 1 */
	CHECK(!vd__rx_desc_ok(HEAD, FS - HEAD + 1, FS, RXF));
	CHECK(!vd__rx_desc_ok(UINT64_MAX - 1, 4, FS, RXF));              /* addr + len would wrap */
	CHECK(!vd__rx_desc_ok((uint64_t)RXF * FS - 1, 2, FS, RXF));
}

TEST(good_chain_gathered_in_order_and_chunks_recycled)
{
	env_init(0);
	uint64_t a0 = kpiece(FS - HEAD, XDP_PKT_CONTD, 1);
	uint64_t a1 = kpiece(FS - HEAD, XDP_PKT_CONTD, 2);
	uint64_t a2 = kpiece(1262, 0, 3);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 3);
	REQUIRE(b != VD__RX_NO_FRAME);
	CHECK_EQ(len, 2 * (FS - HEAD) + 1262);
	const uint8_t *buf = vd__rx_bounce_buf(&e.c, b);
	CHECK(memcmp(buf, e.umem + a0, FS - HEAD) == 0);
	CHECK(memcmp(buf + FS - HEAD, e.umem + a1, FS - HEAD) == 0);
	CHECK(memcmp(buf + 2 * (FS - HEAD), e.umem + a2, 1262) == 0);
	CHECK_EQ(e.stash_n, 3);
	CHECK(stash_has(a0 - HEAD) && stash_has(a1 - HEAD) && stash_has(a2 - HEAD));
	CHECK_EQ(e.ring.consumer, 3);
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE - 1);
	CHECK_EQ(e.st.rx_malformed + e.st.rx_dropped, 0);
	vd__rx_bounce_put(&e.c, b);
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE);
}

TEST(incomplete_chain_left_in_ring_then_taken)
{
	env_init(0xfffffffe); /* indices wrap during the test */
	kpiece(100, XDP_PKT_CONTD, 1);
	kpiece(100, XDP_PKT_CONTD, 2);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 0);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.ring.consumer, 0xfffffffe); /* nothing consumed */
	CHECK_EQ(e.stash_n, 0);
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE);
	kpiece(50, 0, 3);
	publish();
	CHECK_EQ(take(&b, &len), 3);
	CHECK(b != VD__RX_NO_FRAME);
	CHECK_EQ(len, 250);
	CHECK_EQ(e.ring.consumer, 1);
	CHECK_EQ(e.stash_n, 3);
	CHECK_EQ(e.st.rx_malformed, 0);
}

/* The end is published while the chain is walked: the producer index is loaded afresh at the last known
 * descriptor, so the whole chain is taken in one call. */
TEST(chain_end_found_past_the_peeked_burst)
{
	env_init(0);
	kpiece(10, XDP_PKT_CONTD, 1);
	publish();
	uint32_t idx;
	CHECK_EQ(vd__xsk_cons_peek(&e.rx, 64, &idx), 1);
	kpiece(20, 0, 2);
	publish();
	uint32_t b, len;
	CHECK_EQ(vd__rx_chain_take(&e.c, &e.rx, &e.v, idx, &e.st, &b, &len), 2);
	CHECK(b != VD__RX_NO_FRAME);
	CHECK_EQ(len, 30);
	CHECK_EQ(e.rx.cached_cons, 2);
}

TEST(too_many_frags_is_malformed_once_and_skipped_to_its_end)
{
	env_init(0);
	for (uint32_t i = 0; i < MAXF; i++)
		kpiece(100, XDP_PKT_CONTD, (uint8_t)i);
	kpiece(100, 0, 9); /* piece MAXF + 1 */
	kpiece(64, 0, 10); /* the next frame: single-buffer, not touched */
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), MAXF + 1);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK(!e.c.skip);
	CHECK_EQ(e.stash_n, MAXF + 1);
	CHECK(stash_distinct_rx());
	CHECK_EQ(e.ring.consumer, MAXF + 1);
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE);
}

/* A chain found bad before its end is published keeps being discarded in the next burst. */
TEST(bad_chain_end_in_a_later_burst_still_discarded)
{
	env_init(0);
	for (uint32_t i = 0; i < MAXF + 2; i++)
		kpiece(100, XDP_PKT_CONTD, (uint8_t)i);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), MAXF + 2);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK(e.c.skip);
	kpiece(100, XDP_PKT_CONTD, 20); /* the rest of the bad chain */
	kpiece(100, 0, 21);
	kpiece(64, XDP_PKT_CONTD, 22); /* then a good chain */
	kpiece(64, 0, 23);
	publish();
	CHECK_EQ(take(&b, &len), 2);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK(!e.c.skip);
	CHECK_EQ(e.st.rx_malformed, 1); /* counted once per chain */
	CHECK_EQ(take(&b, &len), 2);
	CHECK(b != VD__RX_NO_FRAME);
	CHECK_EQ(len, 128);
	CHECK_EQ(e.stash_n, MAXF + 6);
	CHECK(stash_distinct_rx());
}

TEST(piece_in_a_tx_chunk_is_malformed_and_not_recycled)
{
	env_init(0);
	uint64_t a0 = kpiece(100, XDP_PKT_CONTD, 1);
	kdesc((uint64_t)(RXF + 1) * FS + HEAD, 100, XDP_PKT_CONTD); /* a TX chunk */
	uint64_t a2 = kpiece(100, 0, 3);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 3);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK_EQ(e.stash_n, 2);
	CHECK(stash_has(a0 - HEAD) && stash_has(a2 - HEAD));
	CHECK(stash_distinct_rx());
	CHECK(!e.c.skip);
}

TEST(piece_beyond_the_umem_is_malformed_and_not_recycled)
{
	env_init(0);
	kpiece(100, XDP_PKT_CONTD, 1);
	kdesc(UINT64_MAX - 8, 64, 0); /* addr + len wraps to a small address */
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 2);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK_EQ(e.stash_n, 1);
	CHECK(stash_distinct_rx());
}

/* A piece whose data runs into the next chunk: inside the RX chunks and shorter than a chunk, but it
 * would read a chunk the kernel may be writing. */
TEST(piece_crossing_its_chunk_is_malformed)
{
	env_init(0);
	kpiece(100, XDP_PKT_CONTD, 1);
	kdesc(5 * FS + HEAD, FS - HEAD + 1, 0);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 2);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK_EQ(e.stash_n, 2);
	CHECK(stash_has(5 * FS));
	CHECK(stash_distinct_rx());
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE);
}

TEST(chain_longer_than_a_bounce_buffer_is_malformed)
{
	env_init(0);
	/* Whole chunks from offset 0: each piece is valid, but MAXF of them exceed MAXF * (FS - HEAD). */
	for (uint32_t i = 0; i < MAXF; i++)
		kdesc((uint64_t)(7 + i) * FS, FS, i + 1 < MAXF ? XDP_PKT_CONTD : 0);
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), MAXF);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_malformed, 1);
	CHECK_EQ(e.stash_n, MAXF);
	CHECK(stash_distinct_rx());
}

TEST(no_bounce_buffer_drops_and_counts_then_recovers)
{
	env_init(0);
	uint32_t held[NBOUNCE], b, len;
	for (uint32_t i = 0; i < NBOUNCE; i++) {
		kpiece(100, XDP_PKT_CONTD, 1);
		kpiece(100, 0, 2);
		publish();
		CHECK_EQ(take(&held[i], &len), 2);
		CHECK(held[i] != VD__RX_NO_FRAME);
	}
	kpiece(100, XDP_PKT_CONTD, 3);
	kpiece(100, XDP_PKT_CONTD, 4);
	kpiece(100, 0, 5);
	publish();
	CHECK_EQ(take(&b, &len), 3);
	CHECK_EQ(b, VD__RX_NO_FRAME);
	CHECK_EQ(e.st.rx_dropped, 1);
	CHECK_EQ(e.c.nobounce, 1);
	CHECK_EQ(e.st.rx_malformed, 0);
	CHECK(!e.c.skip);
	CHECK_EQ(e.stash_n, 2 * NBOUNCE + 3); /* the dropped frame's chunks came back too */
	CHECK(stash_distinct_rx());
	vd__rx_bounce_put(&e.c, 12345); /* an index out of range is not a buffer */
	CHECK_EQ(e.c.bounce_free_n, 0);
	vd__rx_bounce_put(&e.c, held[0]);
	CHECK_EQ(e.c.bounce_free_n, 1);
	kpiece(100, XDP_PKT_CONTD, 6);
	kpiece(100, 0, 7);
	publish();
	CHECK_EQ(take(&b, &len), 2);
	CHECK_EQ(b, held[0]);
	CHECK_EQ(e.c.nobounce, 1);
}

/* A chain arriving while the previous one is being discarded is not swallowed: skip ends at the
 * discarded chain's last piece, even when that is a single descriptor right at the burst's start. */
TEST(skip_stops_at_the_discarded_chains_end)
{
	env_init(0);
	kpiece(100, XDP_PKT_CONTD, 1);
	kdesc(UINT64_MAX, 1, XDP_PKT_CONTD); /* bad, and the chain goes on */
	publish();
	uint32_t b, len;
	CHECK_EQ(take(&b, &len), 2);
	CHECK(e.c.skip);
	kpiece(10, 0, 2); /* its end */
	publish();
	CHECK_EQ(take(&b, &len), 1);
	CHECK(!e.c.skip);
	CHECK_EQ(e.ring.consumer, 3);
	CHECK_EQ(e.stash_n, 2);
}

/*
 * Many frames through a small chunk set: the fake kernel takes chunks only from the stash (its fill ring)
 * and writes chains of 1..MAXF+1 pieces, some corrupted; the caller gives every bounce buffer back. No
 * chunk may be lost or duplicated: at the end the stash holds every RX chunk once.
 */
TEST(no_chunk_lost_over_many_chains)
{
	env_init(0x7ffffff0);
	for (uint32_t i = RXF; i > 0; i--) /* all RX chunks start on the "fill ring" */
		e.stash[e.stash_n++] = (uint64_t)(i - 1) * FS;
	uint32_t seed = 12345, frames = 0, bad = 0;
	for (int round = 0; round < 2000; round++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t pieces = 1 + (seed >> 16) % (MAXF + 1);
		uint32_t kind = (seed >> 8) % 8; /* 0: a piece crossing its chunk, 1: a TX chunk, else good */
		if (pieces > e.stash_n)
			continue;
		bool expect_bad = pieces > MAXF || (kind < 2 && pieces > 1);
		for (uint32_t p = 0; p < pieces; p++) {
			uint64_t base = e.stash[--e.stash_n];
			uint32_t opts = p + 1 < pieces ? XDP_PKT_CONTD : 0;
			if (pieces > 1 && p == 1 && kind == 0)
				kdesc(base + HEAD, FS, opts);
			else if (pieces > 1 && p == 1 && kind == 1) {
				e.stash[e.stash_n++] = base; /* this chunk stays unused */
				kdesc((uint64_t)(RXF + 2) * FS, 64, opts);
			} else
				kdesc(base + HEAD, 1 + (seed % (FS - HEAD)), opts);
		}
		publish();
		uint32_t idx, b, len;
		REQUIRE(vd__xsk_cons_peek(&e.rx, 64, &idx) == pieces);
		if (pieces == 1) { /* single buffer: the caller's own path; here it just recycles */
			REQUIRE(vd__rx_recycle(&e.v, vd__xsk_ring_desc(&e.rx, idx)->addr));
			vd__xsk_cons_release(&e.rx);
			continue;
		}
		uint64_t malformed = e.st.rx_malformed;
		REQUIRE(vd__rx_chain_take(&e.c, &e.rx, &e.v, idx, &e.st, &b, &len) == pieces);
		vd__xsk_cons_release(&e.rx);
		CHECK_EQ(e.st.rx_malformed - malformed, expect_bad);
		CHECK_EQ(b == VD__RX_NO_FRAME, expect_bad);
		if (b != VD__RX_NO_FRAME) {
			frames++;
			vd__rx_bounce_put(&e.c, b);
		} else {
			bad++;
		}
	}
	CHECK(frames > 100 && bad > 100);
	CHECK_EQ(e.stash_n, RXF);
	CHECK(stash_distinct_rx());
	CHECK_EQ(e.c.bounce_free_n, NBOUNCE);
	CHECK_EQ(e.ring.consumer, e.ring.producer);
}

TEST_MAIN(T(desc_check_bounds), T(good_chain_gathered_in_order_and_chunks_recycled),
	  T(incomplete_chain_left_in_ring_then_taken), T(chain_end_found_past_the_peeked_burst),
	  T(too_many_frags_is_malformed_once_and_skipped_to_its_end), T(bad_chain_end_in_a_later_burst_still_discarded),
	  T(piece_in_a_tx_chunk_is_malformed_and_not_recycled), T(piece_beyond_the_umem_is_malformed_and_not_recycled),
	  T(piece_crossing_its_chunk_is_malformed), T(chain_longer_than_a_bounce_buffer_is_malformed),
	  T(no_bounce_buffer_drops_and_counts_then_recovers), T(skip_stops_at_the_discarded_chains_end),
	  T(no_chunk_lost_over_many_chains))
