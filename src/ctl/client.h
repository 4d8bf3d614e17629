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

/*
 * Requests without waiting. vd__ctl_send sends one request and returns (0 or -errno for the transport)
 * without reading a reply: use it only for requests that reply on failure only (EP_PORTS_DEL with
 * VD_CTL_PORTS_QUIET). Such a reply arrives later, ahead of the replies to later requests: vd__ctl_call
 * skips every reply that is not its own (by seq) and vd__ctl_drain reads those already there without
 * blocking; both count skipped error replies in vd__ctl_async_failed() (per process) and close any
 * descriptors they carried. vd__ctl_drain returns the replies read, or -errno (transport or framing).
 * One thread at a time per fd, as for vd__ctl_call.
 */
int vd__ctl_send(int fd, uint16_t type, const void *req, size_t req_len);
/*
 * vd__ctl_call in two halves, for a request whose reply is collected later: vd__ctl_request sends it
 * and gives its seq; vd__ctl_wait reads replies until that seq's (skipping and counting others, as
 * vd__ctl_call does) and returns as vd__ctl_call. timeout_ms 0: -EAGAIN at once unless the reply (or an
 * earlier one) has arrived. While such a request is outstanding, a vd__ctl_call or vd__ctl_drain on the
 * fd would skip its reply: the caller collects it first.
 */
int vd__ctl_request(int fd, uint16_t type, const void *req, size_t req_len, uint32_t *seq);
int vd__ctl_wait(int fd, uint32_t seq, uint16_t type, void *buf, size_t cap, struct vd_ctl_reply *rep,
		 int timeout_ms);
int vd__ctl_drain(int fd);
uint64_t vd__ctl_async_failed(void);

#endif
