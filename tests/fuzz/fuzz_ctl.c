/* SPDX-License-Identifier: MIT */
/* Fuzzes the control-message checker with arbitrary bytes as requests and as replies. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Fix up the framing half the time, so the fuzzer reaches the per-type checks quickly. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (size >= sizeof(struct vd_ctl_hdr) && (data[0] & 1)) {
		struct vd_ctl_hdr h;
		memcpy(&h, buf, sizeof(h));
		h.magic = VD_CTL_MAGIC;
		h.version = VD_CTL_VERSION;
		h.len = (uint32_t)size;
		memcpy(buf, &h, sizeof(h));
	}
	for (int reply = 0; reply <= 1; reply++) {
		int rc = vd__ctl_check(buf, size, reply);
		/* Invariant: anything accepted is at least a header whose length is what arrived. */
		if (rc == 0) {
			struct vd_ctl_hdr h;
			if (size < sizeof(h))
				abort();
			memcpy(&h, buf, sizeof(h));
			if (h.len != size || h.magic != VD_CTL_MAGIC)
				abort();
		}
	}
	free(buf);
	return 0;
}
