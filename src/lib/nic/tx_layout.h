/* SPDX-License-Identifier: MIT */
/*
 * Where the bytes of a multi-chunk TX buffer go once it becomes descriptors (vd_nic_tx_pieces, nic.h).
 *
 * AF_XDP rules (see xdp_tx_descs in nic_xdp.c): a descriptor may not cross its 4 KiB chunk, and with TX
 * metadata registered the kernel wants tx_gap bytes before every descriptor inside its chunk. So a frame
 * of a buffer of several chunks is: the first chunk from the packet's offset on (first bytes), then every
 * further chunk k from gap on (per = stride - gap bytes each). A caller that writes its bytes at these
 * places spares the backend moving them there (VD_NIC_TX_PLACED).
 * Kept apart from nic_xdp.c, header-only, so that a unit test checks the arithmetic without a daemon.
 */
#ifndef VD_NIC_TX_LAYOUT_H
#define VD_NIC_TX_LAYOUT_H

#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>

struct vd__tx_layout {
	uint8_t *base;   /* the frame's first byte (the link header, in the buffer's first chunk) */
	uint8_t *chunk0; /* the buffer's first chunk */
	uint32_t first;  /* frame bytes in the first chunk */
	uint32_t stride; /* chunk size */
	uint32_t gap;    /* room left before the data of every further chunk */
	uint32_t cap;    /* frame bytes the buffer holds in all */
};

/*
 * Fills iov with the pieces holding frame bytes [off, off + len); returns how many (0 for len 0), -ENOSPC
 * when more than max would be needed, -EMSGSIZE when the range goes past the buffer.
 */
static inline int vd__tx_layout_pieces(const struct vd__tx_layout *l, uint32_t off, uint32_t len,
				       struct iovec *iov, unsigned max)
{
	if (off > l->cap || len > l->cap - off)
		return -EMSGSIZE;
	unsigned n = 0;
	uint32_t per = l->stride - l->gap;
	while (len) {
		uint8_t *at;
		uint32_t room;
		if (off < l->first) {
			at = l->base + off;
			room = l->first - off;
		} else {
			uint32_t j = off - l->first, k = 1 + j / per, in = j % per;
			at = l->chunk0 + (uint64_t)k * l->stride + l->gap + in;
			room = per - in;
		}
		if (n == max)
			return -ENOSPC;
		uint32_t take = room < len ? room : len;
		iov[n].iov_base = at;
		iov[n].iov_len = take;
		n++;
		off += take;
		len -= take;
	}
	return (int)n;
}

#endif
