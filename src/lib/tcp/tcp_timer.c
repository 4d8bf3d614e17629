/* SPDX-License-Identifier: MIT */
/*
 * Timers of a connection, as absolute deadlines on the nic clock (0 = off), visited through the layer's
 * heap (tcp.c): retransmission (RFC 6298), delayed ACK (RFC 1122 4.2.3.2), persist (RFC 9293 3.8.6.1),
 * keepalive (RFC 1122 4.2.3.6), TIME-WAIT / orphaned FIN-WAIT-2 (t_2msl). SYN and SYN-ACK retransmission
 * ride on the retransmission timer.
 */
#include "tcp_internal.h"

#include <errno.h>

#define SYN_RETRIES 7       /* 1 + 2 + ... + 128 s = 255 s: RFC 1122 4.2.3.5 wants R2 >= 3 min for a SYN */
#define SYNACK_RETRIES 5    /* Linux's tcp_synack_retries */
#define DATA_RETRIES 15     /* Linux's tcp_retries2 (RFC 1122 4.2.3.5 R2: at least 100 s) */
#define PERSIST_MAX_NS (60ull * NS_PER_S)
#define RTO_MAX_NS (120ull * NS_PER_S)

static inline uint64_t min_nz(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

uint64_t vd__tcp_next_deadline(const struct vd__tcb *c)
{
	return min_nz(min_nz(min_nz(c->t_rto, c->t_delack), min_nz(c->t_persist, c->t_keep)),
		      min_nz(c->t_2msl, c->t_tlp));
}

#define TLP_WCDELACK_NS (200ull * NS_PER_MS)   /* RFC 8985 7.2 WCDelAckT */
#define TLP_MIN_NS (2ull * NS_PER_MS)

/*
 * RFC 8985 7.2: schedule a tail loss probe PTO = 2 * SRTT after new data went out or new data was
 * acknowledged (plus the peer's worst-case delayed ACK when only one segment is in flight), not later
 * than the RTO; none while recovering, before an RTT sample, or while a probe is outstanding.
 */
void vd__tcp_arm_tlp(struct vd__tcb *c)
{
	uint32_t flight = c->snd_max - c->snd_una;
	/* RFC 8985 2: RACK-TLP needs SACK (the probe's ACK must tell what is missing) */
	if (!flight || !c->sack_ok || c->in_recovery || c->tlp_out || !c->srtt || c->backoff ||
	    c->state < TCPS_ESTABLISHED) {
		c->t_tlp = 0;
		return;
	}
	uint64_t pto = 2 * c->srtt;
	if (flight <= c->mss)
		pto += TLP_WCDELACK_NS;
	if (pto < TLP_MIN_NS)
		pto = TLP_MIN_NS;
	uint64_t at = c->t->now + pto;
	if (c->t_rto && at >= c->t_rto) {
		c->t_tlp = 0;   /* the RTO comes first anyway */
		return;
	}
	c->t_tlp = at;
	vd__tcp_timer_sched(c);
}

void vd__tcp_arm_rto(struct vd__tcb *c)
{
	c->t_rto = c->t->now + c->rto;
	vd__tcp_timer_sched(c);
}

void vd__tcp_arm_persist(struct vd__tcb *c)
{
	uint64_t d = c->rto << (c->persist_shift < 16 ? c->persist_shift : 16);
	if (d > PERSIST_MAX_NS)
		d = PERSIST_MAX_NS;
	c->t_persist = c->t->now + d;
	vd__tcp_timer_sched(c);
}

static int keep_states(const struct vd__tcb *c)
{
	return c->state == TCPS_ESTABLISHED || c->state == TCPS_CLOSE_WAIT || c->state == TCPS_FIN_WAIT_1 ||
	       c->state == TCPS_FIN_WAIT_2 || c->state == TCPS_CLOSING || c->state == TCPS_LAST_ACK;
}

/* RFC 1122 4.2.3.6: probe after keepidle of silence, then every keepintvl. */
void vd__tcp_arm_keepalive(struct vd__tcb *c)
{
	if (!c->keepalive || !keep_states(c)) {
		c->t_keep = 0;
		return;
	}
	if (c->keep_probes)
		c->t_keep = c->t->now + (uint64_t)c->keepintvl_s * NS_PER_S;
	else
		c->t_keep = c->last_rcv_ns + (uint64_t)c->keepidle_s * NS_PER_S;
	vd__tcp_timer_sched(c);
}

static void backoff_rto(struct vd__tcb *c)
{
	c->rto = c->rto * 2 > RTO_MAX_NS ? RTO_MAX_NS : c->rto * 2;   /* RFC 6298 5.5 */
	if (c->backoff < 255)
		c->backoff++;
}

/* Returns 1 if c was freed. */
static int rto_expired(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	switch (c->state) {
	case TCPS_SYN_SENT:
		t->st.rto_expired++;
		if (++c->syn_retries > SYN_RETRIES)
			return vd__tcp_drop(c, -ETIMEDOUT);
		backoff_rto(c);
		/* Karn for the SYN: no RTT sample from a retransmitted SYN; RFC 6298 5.7: after a lost SYN
		 * the RTO of the data phase starts at 3 s (handled at establishment) */
		vd__tcp_send_ctl(c, TH_SYN);
		t->st.retrans_segs++;
		vd__tcp_arm_rto(c);
		return 0;
	case TCPS_SYN_RCVD:
		t->st.rto_expired++;
		if (++c->syn_retries > SYNACK_RETRIES)
			return vd__tcp_drop(c, -ETIMEDOUT);
		backoff_rto(c);
		vd__tcp_send_ctl(c, TH_SYN | TH_ACK);
		t->st.retrans_segs++;
		vd__tcp_arm_rto(c);
		return 0;
	case TCPS_ESTABLISHED:
	case TCPS_CLOSE_WAIT:
	case TCPS_FIN_WAIT_1:
	case TCPS_CLOSING:
	case TCPS_LAST_ACK:
		break;
	default:
		return 0;
	}
	if (c->snd_max == c->snd_una)
		return 0;   /* everything acknowledged meanwhile (RFC 6298 5.2 would have stopped it) */
	t->st.rto_expired++;
	if (c->backoff >= DATA_RETRIES) {
		/* RFC 1122 4.2.3.5: give up (R2) and tell the user */
		vd__tcp_send_ctl(c, TH_RST | TH_ACK);
		t->st.rst_out++;
		return vd__tcp_drop(c, -ETIMEDOUT);
	}
	c->t_tlp = 0;
	c->tlp_out = 0;
	vd__cc_on_rto(c);               /* cwnd = 1 MSS, ssthresh, RTO doubled (RFC 6298 5.5) */
	c->snd_nxt = c->snd_una;        /* RFC 6298 5.4: retransmit the earliest unacknowledged segment */
	vd__tcp_arm_rto(c);             /* RFC 6298 5.6 */
	vd__tcp_mark_dirty(c);
	return 0;
}

static int keepalive_expired(struct vd__tcb *c)
{
	struct vd__tcp *t = c->t;
	if (!c->keepalive || !keep_states(c))
		return 0;
	uint64_t idle_ns = (uint64_t)c->keepidle_s * NS_PER_S;
	if (!c->keep_probes && t->now - c->last_rcv_ns < idle_ns) {
		vd__tcp_arm_keepalive(c);
		return 0;
	}
	if (c->snd_max != c->snd_una || c->snd.len) {
		/* data outstanding: the retransmission timer watches the peer (Linux probes only when idle) */
		c->keep_probes = 0;
		c->t_keep = t->now + idle_ns;
		return 0;
	}
	if (c->keep_probes >= c->keepcnt) {
		vd__tcp_send_ctl(c, TH_RST | TH_ACK);
		t->st.rst_out++;
		return vd__tcp_drop(c, -ETIMEDOUT);
	}
	vd__tcp_send_probe(c);
	c->keep_probes++;
	vd__tcp_arm_keepalive(c);
	return 0;
}

void vd__tcp_timers_run(struct vd__tcb *c, uint64_t now)
{
	if (c->t_2msl && c->t_2msl <= now) {
		c->t_2msl = 0;
		if (c->state == TCPS_TIME_WAIT || c->state == TCPS_FIN_WAIT_2) {
			/* RFC 9293 3.10.8: TIME-WAIT over; an orphaned FIN-WAIT-2 gives up waiting (Linux's
			 * tcp_fin_timeout): delete the TCB */
			if (vd__tcp_drop(c, 0))
				return;
		}
	}
	if (c->t_delack && c->t_delack <= now) {
		c->t_delack = 0;
		c->ack_now = 1;
		vd__tcp_mark_dirty(c);
	}
	if (c->t_rto && c->t_rto <= now) {
		c->t_rto = 0;
		if (rto_expired(c))
			return;
	}
	if (c->t_persist && c->t_persist <= now) {
		c->t_persist = 0;
		if (c->state >= TCPS_ESTABLISHED && c->snd_max == c->snd_una) {
			if (c->snd_wnd == 0) {
				vd__tcp_send_probe(c);   /* RFC 9293 3.8.6.1 */
			} else {
				c->sws_override = 1;     /* RFC 1122 4.2.3.4: the override timeout */
				vd__tcp_mark_dirty(c);
			}
			if (c->persist_shift < 16)
				c->persist_shift++;
			vd__tcp_arm_persist(c);
		}
	}
	if (c->t_tlp && c->t_tlp <= now) {
		c->t_tlp = 0;
		if (!c->in_recovery && !c->tlp_out && c->snd_max != c->snd_una && c->state >= TCPS_ESTABLISHED &&
		    c->state != TCPS_TIME_WAIT && c->state != TCPS_FIN_WAIT_2 && vd__tcp_send_tlp(c) == 0) {
			c->tlp_out = 1;
			c->tlp_high = c->snd_max;
			vd__tcp_arm_rto(c);   /* RFC 8985 7.3: the RTO runs again from the probe */
		}
	}
	if (c->t_keep && c->t_keep <= now) {
		c->t_keep = 0;
		if (keepalive_expired(c))
			return;
	}
	vd__tcp_timer_sched(c);
}
