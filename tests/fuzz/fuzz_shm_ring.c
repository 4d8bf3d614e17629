/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the shared-memory ring (src/lib/nic/shm_ring.h) as seen by a consumer and a
 * producer whose peer is hostile: the input chooses the geometry, the initial contents of the shared
 * memory, and a script of operations interleaving our ring operations with arbitrary writes of the peer
 * into the indices and slot lengths. The ring lives in a buffer of exactly its size, so AddressSanitizer
 * flags any access outside it. Every frame handed to us is read in full (len bytes) and every slot we fill
 * is written to its full capacity. Invariants (abort on violation): an accepted frame lies inside the ring
 * and its length is at most the slot capacity; our view never has more frames ready than slots.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/nic/shm_ring.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t g = (uint8_t)fuzz_take(&in, 1);
	uint32_t nslots = 2u << (g & 3);                    /* 2..16 */
	uint32_t slot_bytes = VD__SHM_CL * (1 + (g >> 4 & 3)); /* 64..256 */
	size_t bytes = vd__shm_ring_bytes(nslots, slot_bytes);
	uint8_t *mem = malloc(bytes);
	if (!mem)
		return 0;
	/* Initial shared contents: from the input, then zeroes. */
	size_t k = in.n < bytes ? in.n : bytes / 4;
	memset(mem, 0, bytes);
	memcpy(mem, in.p, k);
	in.p += k;
	in.n -= k;

	struct vd__shm_ring c, p;
	struct vd__shm_ctl *ctl = (struct vd__shm_ctl *)(void *)mem;
	int have_c = vd__shm_ring_attach(&c, mem, nslots, slot_bytes, 0) == 0;
	int have_p = vd__shm_ring_attach(&p, mem, nslots, slot_bytes, 1) == 0;
	unsigned sum = 0;

	for (int step = 0; step < 256 && in.n; step++) {
		uint8_t op = (uint8_t)fuzz_take(&in, 1);
		switch (op % 8) {
		case 0: /* the peer writes prod */
			ctl->prod = (uint32_t)fuzz_take(&in, 4);
			break;
		case 1: /* the peer writes cons */
			ctl->cons = (uint32_t)fuzz_take(&in, 4);
			break;
		case 2: { /* the peer writes a slot length */
			uint32_t idx = (uint32_t)fuzz_take(&in, 4), len = (uint32_t)fuzz_take(&in, 4);
			memcpy(vd__shm_slot(&c, idx), &len, 4);
			break;
		}
		case 3:
		case 4: { /* we consume up to op/8 frames */
			if (!have_c)
				break;
			int avail = vd__shm_cons_avail(&c);
			if (avail < 0) {
				have_c = 0; /* a real user abandons the ring here */
				break;
			}
			fuzz_check((uint32_t)avail <= nslots);
			for (int i = 0; i < avail && i < op / 8; i++) {
				uint32_t idx, len;
				uint8_t *d;
				if (vd__shm_cons_take(&c, &idx, &d, &len) != 0)
					continue; /* bad length or pad: no frame */
				fuzz_check(len <= c.cap);
				fuzz_check(d >= mem && d + len <= mem + bytes);
				for (uint32_t j = 0; j < len; j++)
					sum += d[j];
			}
			break;
		}
		case 5: /* we release everything taken */
			if (have_c)
				vd__shm_cons_release(&c, c.head);
			break;
		case 6: { /* we produce a frame of the full capacity */
			if (!have_p)
				break;
			int room = vd__shm_prod_free(&p);
			if (room < 0) {
				have_p = 0;
				break;
			}
			fuzz_check((uint32_t)room <= nslots);
			if (room == 0)
				break;
			uint32_t idx = vd__shm_prod_reserve(&p);
			uint8_t *d = vd__shm_prod_data(&p, idx);
			fuzz_check(d >= mem && d + p.cap <= mem + bytes);
			memset(d, op, p.cap);
			vd__shm_prod_fill(&p, idx, op & 8 ? VD__SHM_PAD : p.cap);
			vd__shm_prod_publish(&p);
			(void)vd__shm_prod_need_wakeup(&p);
			break;
		}
		case 7: /* we arm and disarm the wakeup */
			if (have_c && vd__shm_cons_arm(&c) < 0)
				have_c = 0;
			vd__shm_cons_disarm(&c);
			break;
		}
	}
	free(mem);
	return (int)(sum & 0);
}
