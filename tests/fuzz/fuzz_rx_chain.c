/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for multi-buffer RX gathering (src/lib/nic/rx_chain.h) under a hostile kernel: the input
 * is a script that publishes arbitrary RX descriptors (addresses near and inside the UMEM's chunks or raw
 * 64-bit values, any length, any options), runs receive bursts the way nic_xdp.c's xdp_rx_xsk does, and
 * gives bounce buffers back. The UMEM and the bounce buffers are allocations of exactly their size, so
 * AddressSanitizer flags any copy outside them. Invariants (abort on violation): the fill stash holds only
 * RX chunk addresses, never more than the RX chunks; a frame lies in a free-able bounce buffer and is at
 * most its size; the consumer position never passes the producer's; bounce indices stay in range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/nic/rx_chain.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FS 4096u
#define RXF 8u
#define UMEM_CHUNKS 12u
#define SLOTS 16u
#define NBOUNCE 3u


struct fake_ring {
	uint32_t producer, consumer, flags;
	uint32_t _pad;
	struct xdp_desc desc[SLOTS];
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint32_t max_frags = 1 + (uint32_t)fuzz_take(&in, 1) % 5;
	static const struct xdp_ring_offset off = {
		.producer = offsetof(struct fake_ring, producer),
		.consumer = offsetof(struct fake_ring, consumer),
		.flags = offsetof(struct fake_ring, flags),
		.desc = offsetof(struct fake_ring, desc),
	};
	struct fake_ring ring;
	memset(&ring, 0, sizeof(ring));
	ring.producer = ring.consumer = (uint32_t)fuzz_take(&in, 4);
	struct vd__xsk_ring rx;
	vd__xsk_ring_init(&rx, &ring, &off, SLOTS);

	uint32_t bsize = vd__rx_bounce_size(max_frags, FS, 256);
	uint8_t *umem = malloc((size_t)UMEM_CHUNKS * FS);
	uint8_t *bounce = malloc((size_t)NBOUNCE * bsize);
	uint32_t bfree[NBOUNCE], held[NBOUNCE], held_n = 0;
	uint64_t stash[RXF];
	uint32_t stash_n = 0;
	if (!umem || !bounce) {
		free(umem);
		free(bounce);
		return 0;
	}
	memset(umem, 0xa5, (size_t)UMEM_CHUNKS * FS);
	struct vd__rx_chains c;
	vd__rx_chains_init(&c, bounce, bsize, bfree, NBOUNCE);
	struct vd__rx_view v = { .umem = umem, .frame_size = FS, .rx_frames = RXF, .max_frags = max_frags,
				 .stash = stash, .stash_n = &stash_n };
	struct vd_nic_stats st;
	memset(&st, 0, sizeof(st));

	for (int op = 0; op < 256 && in.n; op++) {
		uint8_t kind = (uint8_t)fuzz_take(&in, 1);
		if (kind < 128) { /* the kernel publishes 1..4 descriptors, if the ring has room */
			uint32_t k = 1 + (kind & 3);
			if (ring.producer - ring.consumer + k > SLOTS)
				continue;
			for (uint32_t i = 0; i < k; i++) {
				struct xdp_desc *d = &ring.desc[(ring.producer + i) & (SLOTS - 1)];
				uint8_t m = (uint8_t)fuzz_take(&in, 1);
				if (m & 0x80) /* raw 64-bit address */
					d->addr = fuzz_take(&in, 8);
				else /* a chunk (some beyond the RX or the UMEM's) and an offset near its end */
					d->addr = (uint64_t)(m % (UMEM_CHUNKS + 2)) * FS + fuzz_take(&in, 2) % (FS + 16);
				d->len = (uint32_t)fuzz_take(&in, 2) | ((m & 0x40) ? (uint32_t)fuzz_take(&in, 2) << 16 : 0);
				d->options = (uint32_t)fuzz_take(&in, 1) & 3;
			}
			ring.producer += k;
		} else if (kind < 224) { /* a burst, as xdp_rx_xsk */
			uint32_t idx, got = vd__xsk_cons_peek(&rx, 1 + (kind & 7), &idx);
			for (uint32_t i = 0; i < got; i++) {
				const struct xdp_desc *d = vd__xsk_ring_desc(&rx, idx + i);
				if ((d->options & XDP_PKT_CONTD) || c.skip) {
					uint32_t b, len, used = vd__rx_chain_take(&c, &rx, &v, idx + i, &st, &b, &len);
					if (used == 0) {
						rx.cached_cons = idx + i;
						break;
					}
					if (b != VD__RX_NO_FRAME) {
						fuzz_check(b < NBOUNCE && len <= bsize && held_n < NBOUNCE);
						const uint8_t *p = vd__rx_bounce_buf(&c, b);
						/* ASan: the frame lies inside the buffer */
						volatile uint8_t sink = len ? p[len - 1] : 0;
						(void)sink;
						held[held_n++] = b;
					}
					i += used - 1;
					continue;
				}
				if (!vd__rx_desc_ok(d->addr, d->len, FS, RXF)) {
					vd__rx_recycle(&v, d->addr);
					continue;
				}
				volatile uint8_t sink = d->len ? umem[d->addr + d->len - 1] : 0;
				(void)sink;
				fuzz_check(vd__rx_recycle(&v, d->addr) || stash_n == RXF);
			}
			fuzz_check((int32_t)(rx.cached_prod - rx.cached_cons) >= 0);
			vd__xsk_cons_release(&rx);
			fuzz_check((int32_t)(ring.producer - ring.consumer) >= 0);
		} else if (held_n) { /* the caller releases a frame */
			uint32_t k = kind % held_n;
			vd__rx_bounce_put(&c, held[k]);
			held[k] = held[--held_n];
		}
		if (stash_n > RXF / 2) /* the fill ring takes some */
			stash_n = (uint32_t)fuzz_take(&in, 1) % (stash_n + 1);
		fuzz_check(stash_n <= RXF && c.bounce_free_n + held_n == NBOUNCE);
		for (uint32_t i = 0; i < stash_n; i++)
			fuzz_check(stash[i] % FS == 0 && stash[i] < (uint64_t)RXF * FS);
	}
	free(umem);
	free(bounce);
	return 0;
}
