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
			/* A STAT reply accepted holds exactly its records, with or without the spares
			 * section: what `viaduct stat` copies out relies on it. */
			if (reply && h.type == (VD_CTL_STAT | VD_CTL_REPLY) && h.status == 0) {
				struct vd_ctl_stat_rep s;
				if (size < sizeof(h) + sizeof(s))
					abort();
				memcpy(&s, buf + sizeof(h), sizeof(s));
				size_t want = sizeof(h) + sizeof(s) +
					      (size_t)s.n_ifaces * sizeof(struct vd_ctl_stat_iface) +
					      (size_t)s.n_eps * sizeof(struct vd_ctl_stat_ep) +
					      (size_t)s.n_ports * sizeof(struct vd_ctl_stat_port);
				if (s.n_ifaces > VD_CTL_MAX_IFACES ||
				    (size != want && size != want + s.n_ifaces * sizeof(struct vd_ctl_stat_spares)))
					abort();
			}
		}
	}
	free(buf);
	return 0;
}
