/* SPDX-License-Identifier: MIT */
/*
 * SACK (RFC 2018) both ways.
 *
 * Receiver: the reassembly ranges (c->ooo, sorted, disjoint, none touching RCV.NXT) describe the
 * out-of-order data already placed in the receive ring; they are what the SACK blocks report.
 *
 * Sender: a scoreboard of SACKed ranges above SND.UNA (c->sacked, sorted, disjoint), from which loss
 * recovery takes the holes to retransmit and the RFC 6675 "pipe" estimate.
 */
#include "tcp_internal.h"

#include <string.h>

/* Inserts [start, end) into a sorted disjoint range set, merging what overlaps or touches. Returns the
 * index of the range now containing it, or -1 when the set is full and it merged with nothing. */
static int range_insert(struct tcp_range *r, uint8_t *n, uint32_t start, uint32_t end)
{
	uint32_t i = 0;
	while (i < *n && SEQ_LT(r[i].end, start))
		i++;
	/* r[i] is the first range that ends at or after start: merge all that begin at or before end */
	uint32_t j = i;
	while (j < *n && SEQ_LEQ(r[j].start, end)) {
		start = SEQ_MIN(start, r[j].start);
		end = SEQ_MAX(end, r[j].end);
		j++;
	}
	if (j == i) { /* nothing merged: insert at i */
		if (*n >= TCP_RANGES)
			return -1;
		memmove(&r[i + 1], &r[i], (*n - i) * sizeof(r[0]));
		(*n)++;
	} else if (j > i + 1) { /* several merged into r[i] */
		memmove(&r[i + 1], &r[j], (*n - j) * sizeof(r[0]));
		*n = (uint8_t)(*n - (j - i - 1));
	}
	r[i].start = start;
	r[i].end = end;
	return (int)i;
}

/* ---- receiver ----------------------------------------------------------------------------------- */

void vd__sack_rcv_add(struct vd__tcb *c, uint32_t start, uint32_t end)
{
	int i = range_insert(c->ooo, &c->ooo_n, start, end);
	if (i >= 0)
		c->ooo_last = (uint8_t)i;
}

/* After RCV.NXT moved: ranges it reached become in-order data. Returns the bytes RCV.NXT advanced. */
uint32_t vd__sack_rcv_advance(struct vd__tcb *c)
{
	uint32_t adv = 0, k = 0;
	while (k < c->ooo_n && SEQ_LEQ(c->ooo[k].start, c->rcv_nxt)) {
		if (SEQ_GT(c->ooo[k].end, c->rcv_nxt)) {
			adv += c->ooo[k].end - c->rcv_nxt;
			c->rcv_nxt = c->ooo[k].end;
		}
		k++;
	}
	if (k) {
		memmove(&c->ooo[0], &c->ooo[k], (c->ooo_n - k) * sizeof(c->ooo[0]));
		c->ooo_n = (uint8_t)(c->ooo_n - k);
		c->ooo_last = c->ooo_last >= k ? (uint8_t)(c->ooo_last - k) : 0;
	}
	return adv;
}

/*
 * SACK blocks to send (RFC 2018 4): the first is the range holding the most recently received segment;
 * then the others, highest first (in a loss episode the highest are the most recent), up to max.
 */
uint32_t vd__sack_rcv_blocks(const struct vd__tcb *c, struct tcp_range *out, uint32_t max)
{
	uint32_t n = 0;
	if (!c->ooo_n || !max)
		return 0;
	uint32_t last = c->ooo_last < c->ooo_n ? c->ooo_last : c->ooo_n - 1u;
	out[n++] = c->ooo[last];
	for (int i = (int)c->ooo_n - 1; i >= 0 && n < max; i--)
		if ((uint32_t)i != last)
			out[n++] = c->ooo[i];
	return n;
}

/* ---- sender ------------------------------------------------------------------------------------- */

static void recount(struct vd__tcb *c)
{
	uint32_t s = 0;
	for (uint32_t i = 0; i < c->sacked_n; i++)
		s += c->sacked[i].end - c->sacked[i].start;
	c->sacked_bytes = s;
}

/* Returns 1 when the scoreboard learned something new (RFC 6675 counts such ACKs as duplicates). */
int vd__sack_snd_update(struct vd__tcb *c, const struct tcp_opts *o, uint32_t ack, struct tcp_range *dsack)
{
	uint32_t before = c->sacked_bytes;
	int changed = 0;
	dsack->start = dsack->end = 0;
	/* RFC 2883 4: a D-SACK is the first block, below the cumulative ACK or inside the second block */
	if (o->nsack && SEQ_LT(o->sack[0].start, o->sack[0].end) &&
	    (SEQ_LEQ(o->sack[0].end, ack) ||
	     (o->nsack > 1 && SEQ_GEQ(o->sack[0].start, o->sack[1].start) &&
	      SEQ_LEQ(o->sack[0].end, o->sack[1].end))))
		*dsack = o->sack[0];
	for (uint32_t k = dsack->end ? 1 : 0; k < o->nsack; k++) {
		uint32_t s = o->sack[k].start, e = o->sack[k].end;
		/* RFC 2018 / RFC 2883: a block at or below SND.UNA is a D-SACK (ignored here); one beyond what
		 * we sent or empty is bogus (RFC 6675 5.1 ignores it too) */
		if (!SEQ_LT(s, e) || SEQ_LEQ(e, c->snd_una) || SEQ_GT(e, c->snd_max))
			continue;
		if (SEQ_LT(s, c->snd_una))
			s = c->snd_una;
		if (range_insert(c->sacked, &c->sacked_n, s, e) >= 0)
			changed = 1;
	}
	if (changed)
		recount(c);
	return c->sacked_bytes != before;
}

void vd__sack_snd_trim(struct vd__tcb *c)
{
	uint32_t k = 0;
	while (k < c->sacked_n && SEQ_LEQ(c->sacked[k].end, c->snd_una))
		k++;
	if (k) {
		memmove(&c->sacked[0], &c->sacked[k], (c->sacked_n - k) * sizeof(c->sacked[0]));
		c->sacked_n = (uint8_t)(c->sacked_n - k);
	}
	if (c->sacked_n && SEQ_LT(c->sacked[0].start, c->snd_una))
		c->sacked[0].start = c->snd_una;
	recount(c);
}

void vd__sack_snd_clear(struct vd__tcb *c)
{
	c->sacked_n = 0;
	c->sacked_bytes = 0;
}

/* SACKed bytes at or above seq (RFC 6675 IsLost counts what lies above a hole). */
static uint32_t sacked_above(const struct vd__tcb *c, uint32_t i)
{
	uint32_t b = 0;
	for (; i < c->sacked_n; i++)
		b += c->sacked[i].end - c->sacked[i].start;
	return b;
}

/* RFC 6675 4 IsLost for a hole just below sacked[i]: more than (DupThresh - 1) * SMSS bytes SACKed above
 * it. DupThresh grows when reordering is detected (tcp_cc.c), which keeps reordered data from being
 * taken for lost. */
static int hole_lost(const struct vd__tcb *c, uint32_t i)
{
	return sacked_above(c, i) > (vd__tcp_dupthresh(c) - 1) * c->mss;
}

/*
 * The next range to retransmit at or after from, at most one MSS: RFC 6675 4 NextSeg rule 1 (an
 * un-SACKed range below the highest SACK that IsLost), or with any_hole rule 3 (any un-SACKed range below
 * the highest SACK: the retransmission that starts a recovery). Without SACK information, the one
 * segment at SND.UNA (RFC 6582: NewReno retransmits the first unacknowledged segment). Returns 1 if found.
 */
int vd__sack_next_hole(const struct vd__tcb *c, uint32_t from, int any_hole, struct tcp_range *out)
{
	if (SEQ_LT(from, c->snd_una))
		from = c->snd_una;
	if (!c->sacked_n) {
		if (from != c->snd_una || c->snd_una == c->snd_max)
			return 0;
		out->start = c->snd_una;
		out->end = c->snd_una + (c->snd_max - c->snd_una < c->mss ? c->snd_max - c->snd_una : c->mss);
		return 1;
	}
	for (uint32_t i = 0; i < c->sacked_n; i++) {
		if (SEQ_LT(from, c->sacked[i].start)) {
			if (!any_hole && !hole_lost(c, i))
				return 0;   /* holes further up have even less SACKed above them */
			uint32_t len = c->sacked[i].start - from;
			out->start = from;
			out->end = from + (len < c->mss ? len : c->mss);
			return 1;
		}
		if (SEQ_LT(from, c->sacked[i].end))
			from = c->sacked[i].end;
	}
	return 0;
}

/*
 * RFC 6675 4 SetPipe, with ranges: what was sent, minus what was SACKed, minus the holes that IsLost and
 * have not been retransmitted (at or above rtx_next); holes below rtx_next were retransmitted and count as
 * in flight again. Without SACK blocks (NewReno), each duplicate ACK stands for one segment that left the
 * network (the RFC 6582 window inflation expressed as pipe).
 */
uint32_t vd__sack_pipe(const struct vd__tcb *c)
{
	uint32_t flight = c->snd_max - c->snd_una;
	if (!c->sacked_n) {
		uint64_t gone = (uint64_t)c->dupacks * c->mss;
		return gone >= flight ? 0 : flight - (uint32_t)gone;
	}
	uint32_t lost = 0;
	uint32_t from = SEQ_MAX(c->rtx_next, c->snd_una);
	for (uint32_t i = 0; i < c->sacked_n; i++) {
		if (SEQ_LT(from, c->sacked[i].start) && hole_lost(c, i))
			lost += c->sacked[i].start - from;
		if (SEQ_LT(from, c->sacked[i].end))
			from = c->sacked[i].end;
	}
	uint32_t out = c->sacked_bytes + lost;
	return out >= flight ? 0 : flight - out;
}

/* SACKed bytes above seq. */
uint32_t vd__sack_above(const struct vd__tcb *c, uint32_t seq)
{
	uint32_t b = 0;
	for (uint32_t i = 0; i < c->sacked_n; i++) {
		uint32_t st = SEQ_MAX(c->sacked[i].start, seq);
		if (SEQ_LT(st, c->sacked[i].end))
			b += c->sacked[i].end - st;
	}
	return b;
}
