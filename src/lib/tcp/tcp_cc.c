/* SPDX-License-Identifier: MIT */
/*
 * RTT estimation (RFC 6298) and congestion control: RFC 5681 slow start with appropriate byte counting
 * (RFC 3465), CUBIC congestion avoidance and multiplicative decrease (RFC 9438, as Linux's default), fast
 * retransmit / fast recovery per RFC 6582 (NewReno) using the SACK scoreboard when there is one (RFC 6675),
 * loss window after a timeout (RFC 5681 3.1).
 */
#include "tcp_internal.h"

#define RTO_INITIAL_NS (1000ull * NS_PER_MS)   /* RFC 6298 2.1 */
#define RTO_MAX_NS (120ull * NS_PER_S)         /* RFC 6298 2.5 allows a maximum of at least 60 s */
#define CLOCK_G_NS (1ull * NS_PER_MS)          /* timestamp clock granularity (RFC 6298 2.3 "G") */
#define CUBIC_C 0.4                            /* RFC 9438 4.1 */
#define CUBIC_BETA 0.7                         /* RFC 9438 4.6 */

/* Cube root by Newton's method (no libm in the data path's dependencies); x >= 0. */
static double cbrt_pos(double x)
{
	if (x <= 0)
		return 0;
	double r = x > 1 ? x / 3 : 1;
	for (int i = 0; i < 100; i++) {
		double n = (2 * r + x / (r * r)) / 3;
		if (n >= r * 0.999999999 && n <= r * 1.000000001)
			return n;
		r = n;
	}
	return r;
}

/* RFC 9438 4.6 / 4.7: remember where the window was at the congestion event (fast convergence: a
 * flow whose window shrank releases bandwidth by aiming lower), and start a new epoch. */
static void cubic_on_loss(struct vd__tcb *c)
{
	double w = (double)c->cwnd / c->mss;
	if (w < c->cub_wmax)
		c->cub_wmax = w * (1 + CUBIC_BETA) / 2;
	else
		c->cub_wmax = w;
	c->cub_epoch = 0;
}

/* RFC 9438 4.2-4.4: the congestion-avoidance increase for acked bytes. */
static void cubic_ca(struct vd__tcb *c, uint32_t acked)
{
	double mss = c->mss, cwnd = c->cwnd / mss;
	uint64_t now = c->t->now;
	if (!c->cub_epoch) {
		c->cub_epoch = now;
		c->cub_cwnd_epoch = cwnd;
		if (c->cub_wmax < cwnd)
			c->cub_wmax = cwnd;
		c->cub_k = cbrt_pos((c->cub_wmax - cwnd) / CUBIC_C);   /* eq. 2 */
		c->cub_west = cwnd;
	}
	double rtt = c->srtt ? (double)c->srtt / 1e9 : 0.001;
	double t = (double)(now - c->cub_epoch) / 1e9 + rtt;
	double d = t - c->cub_k;
	double target = CUBIC_C * d * d * d + c->cub_wmax;                     /* eq. 1 at t + RTT */
	if (target < cwnd)
		target = cwnd;
	if (target > 1.5 * cwnd)
		target = 1.5 * cwnd;                                             /* 4.4 */
	/* 4.3 Reno-friendly region: W_est grows like Reno with alpha = 3 (1 - beta) / (1 + beta) */
	c->cub_west += 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA) * (acked / mss) / cwnd;
	double inc;
	if (c->cub_west > target)
		inc = (c->cub_west - cwnd) * mss;
	else
		inc = (target - cwnd) / cwnd * acked;   /* 4.4: (target - cwnd) / cwnd per segment acked */
	if (inc > 0)
		c->cwnd += (uint32_t)inc;
}

uint32_t vd__cc_flight(const struct vd__tcb *c)
{
	return c->snd_max - c->snd_una;
}

/* RFC 6928: IW = min(10 * MSS, max(2 * MSS, 14600)) */
static uint32_t initial_window(const struct vd__tcb *c)
{
	uint32_t iw = 14600 > 2 * c->mss ? 14600 : 2 * c->mss;
	return iw > 10 * c->mss ? 10 * c->mss : iw;
}

/* RFC 5681 4.1: after an idle period longer than the RTO, restart from at most the initial window (the
 * ACK clock is gone; Linux's tcp_slow_start_after_idle). */
void vd__cc_idle_restart(struct vd__tcb *c)
{
	if (c->snd_max != c->snd_una || !c->last_snd_ns || c->t->now - c->last_snd_ns <= c->rto)
		return;
	uint32_t iw = initial_window(c);
	if (c->cwnd > iw)
		c->cwnd = iw;
	c->cub_epoch = 0;
}

void vd__cc_init(struct vd__tcb *c)
{
	c->cwnd = initial_window(c);
	c->ssthresh = UINT32_MAX;   /* RFC 5681 3.1: arbitrarily high */
	c->bytes_acked = 0;
	c->dupacks = 0;
	c->in_recovery = 0;
	c->recover = c->snd_una - 1;
	c->dupthresh = 3;   /* RFC 5681 3.2 / RFC 6675 2 */
	c->cub_wmax = 0;
	c->cub_epoch = 0;
}

static uint64_t rto_min(const struct vd__tcb *c)
{
	return (uint64_t)c->t->cfg.rto_min_ms * NS_PER_MS;
}

/* RFC 6298 2.2 / 2.3 (alpha 1/8, beta 1/4, K 4), clamped by 2.4 / 2.5 to [rto_min, RTO_MAX]. */
void vd__cc_rtt_sample(struct vd__tcb *c, uint64_t r)
{
	if (c->srtt == 0) {
		c->srtt = r ? r : 1;
		c->rttvar = r / 2;
	} else {
		uint64_t d = c->srtt > r ? c->srtt - r : r - c->srtt;
		c->rttvar = (3 * c->rttvar + d) / 4;
		c->srtt = (7 * c->srtt + r) / 8;
		if (!c->srtt)
			c->srtt = 1;
	}
	uint64_t k = 4 * c->rttvar > CLOCK_G_NS ? 4 * c->rttvar : CLOCK_G_NS;
	uint64_t rto = c->srtt + k;
	if (rto < rto_min(c))
		rto = rto_min(c);
	if (rto > RTO_MAX_NS)
		rto = RTO_MAX_NS;
	c->rto = rto;
	/* RFC 6298 5.7 / Karn: a valid sample ends the backoff */
	c->backoff = 0;
}

uint64_t vd__tcp_initial_rto(void)
{
	return RTO_INITIAL_NS;
}

/*
 * A cumulative ACK advanced SND.UNA by acked bytes (SND.UNA already moved). flight_before: the flight
 * size before it.
 */
void vd__cc_on_ack(struct vd__tcb *c, uint32_t acked, uint32_t flight_before)
{
	if (c->in_recovery) {
		if (SEQ_GEQ(c->snd_una, c->recover)) {
			/* RFC 6582 3.2 step 3 (full acknowledgment), option 2: cwnd = ssthresh. Option 1
			 * (min(ssthresh, FlightSize + SMSS)) leaves a window shrunk to whatever the pipe rule let
			 * out during recovery, and with frequent losses it ratchets down; ssthresh is also what
			 * Linux's PRR ends a recovery with. The burst it may allow is bounded by ssthresh. */
			c->cwnd = c->ssthresh;
			c->in_recovery = 0;
			c->dupacks = 0;
			c->bytes_acked = 0;
			c->cub_epoch = 0;
			/* the RFC 6582 4.1 ambiguity concerns a timeout's retransmissions; after a fast
			 * recovery a new loss at SND.UNA may start the next one at once */
			c->recover = c->snd_una - 1;
		} else {
			/* RFC 6582 3.2 step 4 (partial acknowledgment): retransmit the first unacknowledged
			 * segment now; the RTO is reset by the caller. With SACK the scoreboard drives further
			 * retransmissions (RFC 6675 5 step C). */
			if (SEQ_LT(c->rtx_next, c->snd_una))
				c->rtx_next = c->snd_una;
			if (!c->sacked_n)
				c->rtx_next = c->snd_una;
			c->rtx_force = 1;
		}
		return;
	}
	c->dupacks = 0;
	/* RFC 5681 3.1 / RFC 7661 spirit: grow only while the window was actually used */
	if (flight_before + c->mss < c->cwnd && c->cwnd >= c->ssthresh)
		return;
	if (c->cwnd < c->ssthresh) {
		/*
		 * Slow start by bytes acknowledged (RFC 3465 2.2). No per-ACK limit L: the receive side
		 * batches (a whole burst arrives in one poll and gets one ACK), and with L = 2 SMSS such
		 * stretch ACKs would turn slow start linear; Linux counts all acked bytes the same way.
		 */
		c->cwnd += acked;
	} else {
		cubic_ca(c, acked);
	}
	/* keep cwnd bounded by what could ever be in flight (no overflow with huge windows) */
	uint32_t cap = c->snd.cap + c->mss * 4;
	if (c->cwnd > cap && cap > c->mss)
		c->cwnd = cap;
}

/*
 * A duplicate ACK (RFC 5681 2 definition, checked by the caller) or a SACK that reveals loss.
 * Fast retransmit (RFC 5681 3.2 step 2/3, RFC 6582 3.2 step 1-2): on the third, or as soon as the
 * scoreboard shows more than DupThresh - 1 segments SACKed (RFC 6675 5 IsLost(SND.UNA)), unless SND.UNA
 * has not passed the end of the last recovery (RFC 6582 3.2 step 2: avoids a second reduction for the
 * same loss after a timeout).
 */
void vd__cc_on_dupack(struct vd__tcb *c)
{
	c->dupacks++;
	if (c->in_recovery)
		return;
	uint32_t thresh = vd__tcp_dupthresh(c);
	/*
	 * Early retransmit (RFC 5827 3.1 / 3.2): with fewer than four segments outstanding and no new data
	 * that could go out (none queued, or the windows are full), the threshold is the outstanding
	 * segments minus one, so a small flight can recover without a timeout. Not once reordering was seen.
	 */
	uint32_t fl = vd__cc_flight(c), mss = c->mss;
	uint32_t oseg = (fl + mss - 1) / mss;
	if (c->dupthresh == 3 && oseg > 1 && oseg < 4) {
		uint32_t unsent = c->snd_una + c->snd.len - c->snd_max;
		uint32_t wroom = c->snd_wnd > fl ? c->snd_wnd - fl : 0;
		int can_send = SEQ_GT(c->snd_una + c->snd.len, c->snd_max) && unsent &&
			       c->cwnd >= fl + mss && wroom >= mss;
		if (!can_send)
			thresh = oseg - 1;
	}
	int lost = c->dupacks >= thresh || (c->sacked_n && c->sacked_bytes > (thresh - 1) * mss);
	if (!lost)
		return;
	if (!SEQ_GT(c->snd_una, c->recover))
		return; /* still inside the window of an earlier timeout: no new reduction */
	c->prior_cwnd = c->cwnd;
	c->prior_ssthresh = c->ssthresh;
	c->undo_ok = 1;
	c->reorder_seen = 0;
	c->ep_rtx = c->ep_dsacked = 0;
	cubic_on_loss(c);
	uint32_t red = (uint32_t)(fl * CUBIC_BETA);
	c->ssthresh = red > 2 * c->mss ? red : 2 * c->mss;   /* RFC 9438 4.6 (RFC 5681 eq. 4 with beta 0.7) */
	c->cwnd = c->ssthresh;
	c->recover = c->snd_max;
	c->in_recovery = 1;
	c->t_tlp = 0;   /* RFC 8985 7.2: no probes while recovering */
	c->rtx_next = c->snd_una;
	c->rtx_force = 1;
	c->bytes_acked = 0;
	c->t->st.fast_retrans++;
}

/* RTO expired (RFC 5681 3.1 eq. 4 and "loss window", RFC 6298 5.5-5.6, RFC 6582 3.2 step 2's recover). */
void vd__cc_on_rto(struct vd__tcb *c)
{
	if (c->backoff == 0) {
		/* only the first timeout of a series reduces (the later ones see no new flight size) */
		cubic_on_loss(c);
		uint32_t red = (uint32_t)(vd__cc_flight(c) * CUBIC_BETA);
		c->ssthresh = red > 2 * c->mss ? red : 2 * c->mss;   /* RFC 9438 4.8 */
	}
	c->cwnd = c->mss;
	c->bytes_acked = 0;
	c->in_recovery = 0;
	c->dupacks = 0;
	c->recover = c->snd_max;
	c->undo_ok = 0;   /* undo covers fast recovery only */
	c->ep_rtx = c->ep_dsacked = 0;
	/*
	 * RFC 6675 5.1: keep the scoreboard over a timeout, so the go-back-N resend skips what the peer
	 * SACKed; but RFC 2018 8 lets a receiver renege on SACKed data, so a second timeout in a row
	 * starts over from nothing.
	 */
	if (c->backoff)
		vd__sack_snd_clear(c);
	c->rtt_active = 0;   /* Karn: no sample from retransmitted data */
	c->rto = c->rto * 2 > RTO_MAX_NS ? RTO_MAX_NS : c->rto * 2;   /* RFC 6298 5.5 */
	if (c->backoff < 255)
		c->backoff++;
}

/*
 * A D-SACK (RFC 2883) for data we retransmitted in the last fast-recovery episode: the original arrived
 * too, so the retransmission was spurious - the path reorders (or duplicates). Raise DupThresh so the same
 * reordering is not taken for loss again (the RFC 4653 / RFC 3708 idea; Linux keeps a reordering degree
 * the same way), once per episode; and once every retransmission of the episode has been D-SACKed, undo
 * the window reduction (RFC 3708 3.2 "restore cwnd and ssthresh").
 */
void vd__cc_on_dsack(struct vd__tcb *c, const struct tcp_range *d)
{
	if (!c->ep_rtx || SEQ_LT(d->start, c->ep_start) || SEQ_GT(d->end, c->ep_end))
		return;   /* not ours to judge: a duplicate made by the network */
	c->ep_dsacked += d->end - d->start;
	if (!c->reorder_seen) {
		c->reorder_seen = 1;
		uint32_t dt = (uint32_t)c->dupthresh * 2;
		c->dupthresh = (uint8_t)(dt > 64 ? 64 : dt);
	}
	if (c->undo_ok && c->ep_dsacked >= c->ep_rtx) {
		c->undo_ok = 0;
		if (c->cwnd < c->prior_cwnd)
			c->cwnd = c->prior_cwnd;
		if (c->ssthresh < c->prior_ssthresh)
			c->ssthresh = c->prior_ssthresh;
		c->cub_epoch = 0;   /* CUBIC restarts its curve from the restored window */
		if (c->in_recovery) {
			c->in_recovery = 0;
			c->dupacks = 0;
			c->recover = c->snd_una - 1;
		}
	}
}
