/* SPDX-License-Identifier: MIT */
/*
 * Wire format of the messaging protocol (docs/msg-protocol.md is the reference; keep both in step).
 *
 * Every frame is one UDP payload: a 36-byte header, then a body whose shape depends on the type. All
 * integers are big-endian (network order). The decoders below read untrusted bytes: they check every field
 * and never read outside [data, data + len); they are fuzzed by tests/fuzz/fuzz_msg_wire.c.
 *
 *   0  u16 magic 0x5644 ("VD")      2  u8 version (1)      3  u8 type      4  u8 flags      5  u8 zero
 *   6  u16 checksum (RFC 1071 over the whole frame, this field taken as zero)
 *   8  u32 src_session              12 u32 dst_session (0: not known yet)
 *   16 u32 seq (DATA; RESET: stale session; else 0)  20 u32 ack (cumulative: next seq expected)
 *   24 u16 wnd                      26 u16 zero            28 u64 sack bitmap
 */
#ifndef VD_MSG_WIRE_H
#define VD_MSG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define VD__W_MAGIC 0x5644
#define VD__W_VERSION 1
#define VD__W_HDR_LEN 36

enum vd__wtype {
	VD__W_DATA = 1,       /* sequenced, reliable: body is a list of records */
	VD__W_ACK = 2,        /* ack/window only, no body */
	VD__W_PULL_REQ = 3,   /* rendezvous: receiver asks for frames of a message */
	VD__W_PULL_REPLY = 4, /* rendezvous: one frame of message data */
	VD__W_RESET = 5,      /* "this association is dead"; seq holds the session the rejected frame was sent
	                       * to (0: not known), so a reset of an older incarnation is recognised */
};

enum {
	VD__WF_ACK = 1u << 0,     /* ack, wnd and sack are meaningful */
	VD__WF_ACK_REQ = 1u << 1, /* answer with an ack at once (zero-window probe, keepalive) */
	VD__WF_ALL = VD__WF_ACK | VD__WF_ACK_REQ,
};

struct vd__whdr {
	uint8_t type, flags;
	uint32_t src_session, dst_session;
	uint32_t seq, ack;
	uint16_t wnd;
	uint64_t sack; /* bit i: seq ack + 1 + i has been received */
};

/* Records inside a DATA body, one after another up to the end of the frame. Each starts with
 * u8 type, u8 flags, u16 data length, then the fixed fields of its type, then the data. */
enum vd__rtype {
	VD__R_EAGER = 1,   /* u32 send_id, u64 match, u32 msg_len, u32 offset; data = the fragment */
	VD__R_RNDV = 2,    /* u32 send_id, u64 match, u64 msg_len, u16 max_payload, u16 zero; no data */
	VD__R_DONE = 3,    /* u32 send_id: the receiver has pulled the whole rendezvous message */
	VD__R_MATCHED = 4, /* u32 send_id: a receive matched the synchronous eager message */
};
enum {
	VD__RF_SYNC = 1u << 0, /* EAGER: the sender wants MATCHED */
};

#define VD__R_HDR 4
#define VD__R_EAGER_LEN (VD__R_HDR + 20)
#define VD__R_RNDV_LEN (VD__R_HDR + 24)
#define VD__R_ID_LEN (VD__R_HDR + 4) /* DONE, MATCHED */
/* Largest msg_len an EAGER record may announce: bounds what a receiver buffers for one message. */
#define VD__W_EAGER_LIMIT (1u << 20)
/* Largest msg_len a RNDV record may announce (2^48: frame index times chunk never overflows 64 bits). */
#define VD__W_RNDV_LIMIT (1ull << 48)

struct vd__wrec {
	uint8_t type, flags;
	uint32_t send_id;
	uint64_t match;
	uint64_t msg_len;
	uint32_t offset;      /* EAGER */
	uint16_t max_payload; /* RNDV */
	const uint8_t *data;  /* EAGER: fragment */
	uint32_t data_len;
};

/* PULL_REQ body: u32 send_id, u32 pull_id, u32 first_frame, u16 chunk, u16 zero, u64 want. */
#define VD__W_PULL_REQ_LEN 24
/* PULL_REPLY body: u32 pull_id, u32 frame, then chunk data (the rest of the frame, at least 1 byte). */
#define VD__W_PULL_REPLY_HDR 8

struct vd__wpull_req {
	uint32_t send_id, pull_id, first;
	uint16_t chunk;
	uint64_t want; /* bit i: frame first + i is wanted; never 0 */
};

struct vd__wpull_reply {
	uint32_t pull_id, frame;
	const uint8_t *data;
	uint32_t data_len;
};

/*
 * Checks a frame and decodes its header: magic, version, known type, known flags, zero reserved fields,
 * nonzero src_session, checksum, and the body length the type requires (ACK and RESET: none; DATA: at
 * least one record header; PULL_REQ: exactly its body; PULL_REPLY: its header plus >= 1 byte).
 * Returns 0 and the body in (*body, *body_len), or -EBADMSG.
 */
int vd__wire_decode_hdr(const void *frame, size_t len, struct vd__whdr *h, const uint8_t **body,
			size_t *body_len);

/*
 * Decodes the record at body[*pos] and advances *pos past it. Returns 1 with a record, 0 at the end of the
 * body, -EBADMSG if the record is malformed (unknown type or flag, nonzero padding, truncated, data length
 * wrong for the type, EAGER fragment outside its message or message above VD__W_EAGER_LIMIT, RNDV length
 * above VD__W_RNDV_LIMIT or max_payload too small to carry data).
 */
/*
 * vd__wire_decode_hdr for the receive path: the same checks, except that a PULL_REPLY's checksum is not
 * verified (returns 1 then, 0 for any other frame checked in full). The pull receive path verifies it
 * while copying the data (vd__wire_copy_sum, vd__wire_sum_body_ok) and acts on nothing of the frame
 * before that: one pass over the bulk data instead of two.
 */
int vd__wire_decode_hdr_lazy(const void *frame, size_t len, struct vd__whdr *h, const uint8_t **body,
			     size_t *body_len);
/* Whether a whole frame's checksum is right; the same for a frame whose bytes from the even offset hdr_len
 * on sum to body_sum (vd__wire_copy_sum's). */
int vd__wire_sum_ok(const void *frame, size_t len);
int vd__wire_sum_body_ok(const void *frame, size_t hdr_len, uint32_t body_sum);

int vd__wire_next_rec(const uint8_t *body, size_t body_len, size_t *pos, struct vd__wrec *r);

int vd__wire_decode_pull_req(const uint8_t *body, size_t body_len, struct vd__wpull_req *p);
int vd__wire_decode_pull_reply(const uint8_t *body, size_t body_len, struct vd__wpull_reply *p);

/* Encoders: write into buf (which has room, the caller sizes frames) and return the bytes written. */
size_t vd__wire_put_hdr(uint8_t *buf, const struct vd__whdr *h);
/* Computes and stores the checksum once the whole frame (header + body, len bytes) is written. */
void vd__wire_seal(uint8_t *frame, size_t len);
/* Copies len bytes to dst and returns their partial sum (vd__csum_partial's), for vd__wire_seal_body. */
uint32_t vd__wire_copy_sum(void *dst, const void *src, size_t len);
/* vd__wire_seal for a frame whose body, from the even offset hdr_len on, sums to body_sum. */
void vd__wire_seal_body(uint8_t *frame, size_t hdr_len, uint32_t body_sum);
size_t vd__wire_put_eager(uint8_t *buf, uint8_t flags, uint32_t send_id, uint64_t match, uint32_t msg_len,
			  uint32_t offset, uint16_t data_len); /* header only: data follows */
size_t vd__wire_put_rndv(uint8_t *buf, uint32_t send_id, uint64_t match, uint64_t msg_len,
			 uint16_t max_payload);
size_t vd__wire_put_id(uint8_t *buf, uint8_t type, uint32_t send_id); /* DONE, MATCHED */
size_t vd__wire_put_pull_req(uint8_t *buf, const struct vd__wpull_req *p);
size_t vd__wire_put_pull_reply(uint8_t *buf, uint32_t pull_id, uint32_t frame); /* header: data follows */

/* Smallest max_payload the protocol runs on: header + an EAGER record + some data; also what RNDV's
 * max_payload must be at least so a pull reply carries data. */
#define VD__W_MIN_PAYLOAD 256

#endif
