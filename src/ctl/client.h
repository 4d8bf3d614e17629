/* SPDX-License-Identifier: MIT */
/* Client side of the control protocol: connect to viaductd and make one request/reply exchange. */
#ifndef VD_CTL_CLIENT_H
#define VD_CTL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Connects to viaductd at path (NULL: $VIADUCT_SOCKET, else VD_CTL_DEFAULT_PATH). Returns an fd or -errno. */
int vd__ctl_connect(const char *path);

struct vd_ctl_reply {
	struct vd_ctl_hdr hdr;
	void *payload;            /* points into buf; on error, the reason text (may be "") */
	size_t payload_len;
	int fds[VD_CTL_MAX_FDS];  /* received descriptors (caller owns them); -1 past nfds */
	unsigned nfds;
};

/*
 * Sends one request and waits (timeout_ms, -1 forever) for its reply, which is checked with
 * vd__ctl_check(). buf (cap bytes, at least VD_CTL_MAX_MSG is always enough) holds the reply. Returns
 * the reply's status (0 or -errno from the daemon), or -errno for local and transport failures; on any
 * return other than a transport failure, rep is filled and fds received are the caller's to close.
 */
int vd__ctl_call(int fd, uint16_t type, const void *req, size_t req_len, void *buf, size_t cap,
		 struct vd_ctl_reply *rep, int timeout_ms);

#endif
