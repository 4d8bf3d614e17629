/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the messaging frame decoder and the engine behind it.
 *
 * Each input is checked twice: as is, through the header and record decoders (which must reject garbage
 * without reading outside the input); then with its checksum fixed up, fed to a real endpoint's receive path
 * (vd__rx_frame) followed by a progress pass, so the fuzzer reaches the session, sequence, matching and
 * pull logic instead of stopping at the checksum. The endpoint lives on a sim link for the whole run, so
 * state builds up across inputs as it would under a hostile peer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "lib/msg/msg_internal.h"

static struct vd_sim_link *link_;
static struct vd_ep *ep_;

static void setup(void)
{
	struct vd_sim_params sp;
	struct vd_ep_opts o;

	memset(&sp, 0, sizeof(sp));
	sp.seed = 1;
	if (vd_sim_link_new(&link_, &sp))
		abort();
	vd_ep_opts_init(&o);
	o.nic.backend = VD_BACKEND_SIM;
	o.nic.sim = link_;
	o.nic.local = "10.0.0.1:5000";
	o.unexpected_max = 1 << 20;
	o.max_peers = 64;
	if (vd_ep_open(&ep_, &o))
		abort();
	/* A posted receive, so matching paths run too. */
	static uint8_t rbuf[4096];
	struct vd_req *r;
	vd_irecv(ep_, rbuf, sizeof(rbuf), 0, 0, NULL, &r);
}

/* Sessions the synthesized frames use: the endpoint's own, an unknown one, and 0 ("not known yet"). */
static uint32_t pick_session(uint8_t b)
{
	switch (b % 3) {
	case 0:
		return ep_->session;
	case 1:
		return 0x1234567u;
	default:
		return 0;
	}
}

/*
 * Structured mode: the input drives the fields of a well-formed frame (valid magic, version and checksum,
 * plausible sessions and sequence numbers, records with consistent lengths), so inputs reach the engine's
 * logic even though the library itself is not coverage-instrumented. Returns the frame length.
 */
static size_t synthesize(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	if (n < 12)
		return 0;
	struct vd__whdr h = {
		.type = (uint8_t)(1 + in[0] % 5),
		.flags = (uint8_t)(in[1] & VD__WF_ALL),
		.src_session = 0xabc000u + (in[2] & 1), /* two incarnations of the remote */
		.dst_session = pick_session(in[3]),
		.seq = in[4] % 96,
		.ack = in[5] % 96,
		.wnd = in[6] % 80,
		.sack = (uint64_t)in[7] << (in[8] % 57),
	};
	if (h.type != VD__W_DATA && h.type != VD__W_RESET)
		h.seq = 0;
	if (h.type == VD__W_RESET)
		h.flags = 0;
	size_t pos = vd__wire_put_hdr(out, &h);
	in += 9;
	n -= 9;
	if (h.type == VD__W_PULL_REQ) {
		struct vd__wpull_req q = { in[0] % 8, in[1] % 8, in[2], (uint16_t)(1 + in[2] * 7), (uint64_t)in[1] << 3 | 1 };
		pos += vd__wire_put_pull_req(out + pos, &q);
	} else if (h.type == VD__W_PULL_REPLY) {
		size_t len = n > 8 ? n - 3 : 1;
		if (pos + 8 + len > cap)
			len = cap - pos - 8;
		pos += vd__wire_put_pull_reply(out + pos, in[0] % 8, in[1]);
		memset(out + pos, in[2], len);
		pos += len;
	} else if (h.type == VD__W_DATA) {
		/* Records: 6 input bytes each drive type, ids, match bits, lengths and offsets. */
		while (n >= 6 && pos + VD__R_RNDV_LEN + 64 < cap) {
			uint8_t t = (uint8_t)(1 + in[0] % 4);
			if (t == VD__R_EAGER) {
				uint32_t msg_len = (uint32_t)in[1] * 40;
				uint32_t off = msg_len ? (uint32_t)(in[2] * 40u) % (msg_len + 1) : 0;
				uint16_t dl = (uint16_t)(msg_len - off < 64 ? msg_len - off : 64);
				pos += vd__wire_put_eager(out + pos, in[3] & 1, in[4] % 8, in[5] % 4, msg_len, off, dl);
				memset(out + pos, in[5], dl);
				pos += dl;
			} else if (t == VD__R_RNDV) {
				pos += vd__wire_put_rndv(out + pos, in[4] % 8, in[5] % 4, (uint64_t)in[1] << in[2] % 24,
							 (uint16_t)(256 + in[3] * 8));
			} else {
				pos += vd__wire_put_id(out + pos, t, in[4] % 8);
			}
			in += 6;
			n -= 6;
		}
		if (pos == VD__W_HDR_LEN)
			pos += vd__wire_put_id(out + pos, VD__R_DONE, 0);
	}
	vd__wire_seal(out, pos);
	return pos;
}

static void feed(uint8_t *frame, size_t len, uint8_t who)
{
	/* Two source addresses, so peer creation and replacement are exercised. */
	struct vd_addr from = { .ip = htonl(0x0a000002u + (who & 1)), .port = htons(5000) };
	ep_->now = vd_nic_now_ns(ep_->nic);
	vd__rx_frame(ep_, frame, len, &from);
	vd_sim_advance(link_, 1000000); /* 1 ms per input: timers, probes and peer timeouts fire */
	vd_ep_progress(ep_);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vd__whdr h;
	const uint8_t *body;
	size_t blen;
	static uint8_t frame[1472];

	if (!ep_)
		setup();
	/* Raw mode: the decoders on the bytes as they are. */
	if (vd__wire_decode_hdr(data, size, &h, &body, &blen) == 0) {
		if (h.type == VD__W_DATA) {
			size_t pos = 0;
			struct vd__wrec r;
			while (vd__wire_next_rec(body, blen, &pos, &r) == 1)
				;
		} else if (h.type == VD__W_PULL_REQ) {
			struct vd__wpull_req q;
			vd__wire_decode_pull_req(body, blen, &q);
		} else if (h.type == VD__W_PULL_REPLY) {
			struct vd__wpull_reply q;
			vd__wire_decode_pull_reply(body, blen, &q);
		}
	}
	if (size < 1)
		return 0;
	/* Raw bytes with the checksum fixed up, into the engine. */
	if (size >= VD__W_HDR_LEN && size <= sizeof(frame)) {
		memcpy(frame, data, size);
		vd__wire_seal(frame, size);
		feed(frame, size, data[size - 1]);
	}
	/* Structured frames. */
	size_t n = synthesize(data, size, frame, sizeof(frame));
	if (n)
		feed(frame, n, data[0] >> 7);
	return 0;
}
