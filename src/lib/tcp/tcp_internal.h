/* SPDX-License-Identifier: MIT */
/*
 * Internals of the TCP engine (contract: tcp.h).
 *
 * Layout (one job per file):
 *   tcp.c        the layer: tcb allocation, 4-tuple hash, bind table, ports, ISN (RFC 6528), timer heap,
 *                dirty list, poll, stats
 *   tcp_buf.c    byte rings for the send and receive buffers
 *   tcp_opt.c    option parsing (untrusted input, bounds-checked) and building
 *   tcp_in.c     segment arrival (RFC 9293 3.10.7)
 *   tcp_out.c    segment building into nic TX buffers, the output decision (windows, Nagle, SWS), RSTs
 *   tcp_timer.c  retransmission (RFC 6298), delayed ACK, persist, keepalive, TIME-WAIT / FIN-WAIT-2,
 *                tail loss probe (RFC 8985 7)
 *   tcp_cc.c     RTT estimation and congestion control (RFC 5681 slow start, RFC 9438 CUBIC, RFC 6582
 *                NewReno recovery with the RFC 6675 pipe, RFC 5827 early retransmit, D-SACK undo RFC 3708)
 *   tcp_sack.c   receiver reassembly ranges and SACK / D-SACK blocks, sender scoreboard (RFC 2018, 2883)
 *   tcp_cookie.c SYN cookies (RFC 4987 3.6) and the keyed hash (SipHash-2-4) behind ISNs and cookies
 *   tcp_sock.c   the vd__tcb_* calls and socket options
 *
 * Sequence numbers are uint32_t compared modulo 2^32 (RFC 9293 3.4). Time is ns from vd_nic_now_ns().
 *
 * Send buffer: a ring holding the bytes from SND.UNA on (once synchronized the SYN is acked, so the ring's
 * first byte is SND.UNA). Receive buffer: a ring whose readable part ends at RCV.NXT; out-of-order data is
 * written at its place beyond that (offset SEG.SEQ - RCV.NXT past the readable end) and described by the
 * reassembly ranges, so out-of-order data costs no allocation. The window we advertise never exceeds the
 * free part of the ring, so whatever is acceptable fits.
 */
#ifndef VD_TCP_INTERNAL_H
#define VD_TCP_INTERNAL_H

#include <stdint.h>

#include "lib/core/shmheap.h"
#include "tcp.h"

#define TCP_HLEN 20u
#define IP_HLEN 20u
#define TCP_MAX_OPTLEN 40u
#define TCP_RANGES 64u           /* reassembly ranges and scoreboard entries kept per connection */
#define TCP_TX_BATCH 32u         /* frames allocated from the nic at once */
#define TCP_MSL_DEFAULT_MS 60000u

/* Header flags (RFC 9293 3.1). */
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define TH_URG 0x20

#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) > 0)
#define SEQ_GEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) >= 0)
#define SEQ_MAX(a, b) (SEQ_GT(a, b) ? (a) : (b))
#define SEQ_MIN(a, b) (SEQ_LT(a, b) ? (a) : (b))

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

enum tcp_state {
	TCPS_CLOSED = 0,
	TCPS_LISTEN,
	TCPS_SYN_SENT,
	TCPS_SYN_RCVD,
	TCPS_ESTABLISHED,
	TCPS_FIN_WAIT_1,
	TCPS_FIN_WAIT_2,
	TCPS_CLOSE_WAIT,
	TCPS_CLOSING,
	TCPS_LAST_ACK,
	TCPS_TIME_WAIT,
};

struct tcp_zc;

struct tcp_ring {
	uint8_t *buf;
	struct vd__shmheap *heap;   /* where buf lives (NULL: malloc), from vd__ring_init */
	uint32_t cap;   /* bytes the memory holds */
	uint32_t head;  /* offset of the first byte */
	uint32_t len;   /* bytes held (readable / queued) */
	struct tcp_zc *zc;          /* send ring in lent nic TX memory (tcp_zc.c); NULL: buf, one piece */
};

/*
 * A send ring in memory lent by the nic (vd_nic_tx_lend), so segments go out with their data where the
 * user's write put it (tcp_zc.c). Ring byte b lives in chunk b / per at offset gap + b % per, chunk q
 * being chunk q % cpl of region q / cpl. In the stack's heap with the tcb (fork children send too).
 */
struct tcp_zc {
	struct vd__tcp *t;  /* whose TX queue may hold frames naming the ring (flushed before it goes) */
	struct vd__tcb *c;  /* whose send ring this is (woken when a busy chunk completes) */
	struct vd_nic *nic;
	uint32_t per;       /* ring bytes per chunk: stride - gap */
	uint32_t cpl;       /* chunks per lent region */
	uint32_t n;         /* regions */
	uint32_t want;      /* SO_SNDBUF it was lent for: another size moves the ring once it is empty */
	uint8_t waiting;    /* on t->zc_wait: a writer found the next chunk busy (vd__tcp_zc_poll) */
	struct tcp_zc *wnext, *wprev;
	struct vd_nic_lent lent[];
};

struct tcp_range {
	uint32_t start, end; /* [start, end) in sequence space */
};

/* Options of one received segment (RFC 9293 3.2, RFC 7323, RFC 2018). */
struct tcp_opts {
	uint8_t has_mss, has_ws, sack_ok, has_ts;
	uint8_t ws;
	uint8_t nsack;
	uint16_t mss;
	uint32_t tsval, tsecr;
	struct tcp_range sack[4];
};

/* A received segment, parsed. */
struct tcp_seg {
	uint32_t sip, dip;        /* network order */
	uint16_t sport, dport;    /* network order */
	uint32_t seq, ack;
	uint32_t wnd;             /* raw 16-bit field */
	uint8_t flags;
	uint32_t dlen;            /* data bytes */
	const uint8_t *data;
	struct tcp_opts opt;
};

struct vd__tcb {
	struct vd__tcp *t;
	struct vd__tcb *hnext;              /* 4-tuple hash chain */
	struct vd__tcb *bnext;              /* bind table chain (tcbs that own a local binding) */
	struct vd__tcb *all_next, *all_prev;
	struct vd__tcb *dnext, *dprev;      /* dirty list (output pending) */
	struct vd__tcb *parent;             /* the listener, until accepted */
	struct vd__tcb *qnext, *qprev;      /* in the listener's SYN or accept queue */
	/* listener */
	struct vd__tcb *synq, *acq_head, *acq_tail;
	uint32_t syn_len, acq_len, backlog;

	void *user;
	uint64_t timer_key;                 /* heap key (may be earlier than the real deadline: lazy) */
	uint32_t heap_idx;                  /* UINT32_MAX: not in the heap */

	uint8_t state;
	uint8_t in_hash, in_bind, in_dirty, ephemeral, owns_port;
	uint8_t closed_by_user;             /* vd__tcb_close() was called: no one will read or write */
	uint8_t closed_clean;               /* LAST-ACK ended by the ACK of our FIN: the port owes nothing */
	uint8_t shut_rd, shut_wr;
	uint8_t fin_queued;                 /* a FIN goes after the data: shutdown(SHUT_WR) or close */
	uint8_t rcv_fin;                    /* the peer's FIN has been received in order */
	uint8_t ooo_fin;                    /* a FIN beyond RCV.NXT is known at ooo_fin_seq */
	uint8_t was_reset;
	uint8_t ever_conn;                  /* reached ESTABLISHED once */
	uint8_t in_acq;                     /* in the listener's accept queue (else its SYN queue) */
	uint8_t reuseaddr, reuseport, keepalive, nodelay, cork, more, linger_on;
	uint8_t ws_ok, ts_ok, sack_ok;
	uint8_t snd_wscale, rcv_wscale;
	uint8_t ack_now, delack_armed;
	uint8_t quickack;                   /* segments still ACKed at once (Linux's quick-ACK start) */
	uint8_t in_recovery, rtx_force;
	uint8_t sws_override;               /* persist fired with a small window: send what fits */
	uint8_t backoff, syn_retries, persist_shift, keep_probes;
	uint8_t rtt_active;
	int err;                            /* pending SO_ERROR, negative errno */
	int linger_s;
	uint32_t keepidle_s, keepintvl_s, keepcnt;
	uint32_t user_mss;                  /* TCP_MAXSEG, 0: none */
	uint32_t sndbuf, rcvbuf;            /* sizes as set (SO_SNDBUF/SO_RCVBUF) */

	uint32_t lip, rip;                  /* network order */
	uint16_t lport, rport;              /* network order */

	/* send side (RFC 9293 3.3.1) */
	uint32_t iss, snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1, snd_wl2, max_sndwnd;
	uint32_t fin_seq;                   /* sequence number of our FIN, valid when fin_queued */
	uint32_t mss;                       /* data bytes per full segment (options excluded) */
	uint32_t peer_mss;                  /* what the peer announced (536 if nothing, RFC 9293 3.7.1) */
	struct tcp_ring snd;
	/* receive side */
	uint32_t irs, rcv_nxt, rcv_adv;     /* rcv_adv: right edge of the window we advertised */
	uint32_t ooo_fin_seq;
	uint32_t rcv_unacked;               /* bytes received since the last ACK we sent */
	uint32_t rcv_mss;                   /* largest segment seen from the peer (delayed-ACK heuristic) */
	struct tcp_ring rcv;
	struct tcp_range ooo[TCP_RANGES];   /* reassembly: received ranges beyond RCV.NXT, sorted */
	uint8_t ooo_n, ooo_last;            /* ooo_last: the range that got the latest segment (RFC 2018 4) */
	uint8_t dsack_on;                   /* dsack goes first in the next ACK's SACK option (RFC 2883) */
	struct tcp_range dsack;
	/* timestamps (RFC 7323) */
	uint32_t ts_recent, ts_off, last_ack_sent;
	uint64_t ts_recent_ns;
	/* congestion control and recovery */
	uint32_t cwnd, ssthresh, bytes_acked, dupacks, recover;
	uint8_t dupthresh;                  /* RFC 6675 DupThresh, raised when reordering shows (RFC 4653) */
	/* CUBIC (RFC 9438), in segments and seconds */
	double cub_wmax, cub_k, cub_west, cub_cwnd_epoch;
	uint64_t cub_epoch;                 /* start of the current congestion-avoidance epoch, 0: none */
	uint8_t undo_ok, reorder_seen;      /* this episode may still be undone / already raised dupthresh */
	uint32_t prior_cwnd, prior_ssthresh;/* before the last reduction, for the D-SACK undo (RFC 3708) */
	uint32_t ep_start, ep_end;          /* sequence range retransmitted in the last episode */
	uint32_t ep_rtx, ep_dsacked;        /* its retransmitted / D-SACKed bytes */
	uint8_t una_rtx_armed;              /* the segment at SND.UNA was retransmitted; watch for its loss */
	uint32_t una_rtx_seq, una_rtx_mark; /* its sequence number, and SND.MAX when it went out */
	uint32_t rtx_next;                  /* recovery: next sequence number to consider for retransmission */
	struct tcp_range sacked[TCP_RANGES];/* scoreboard: ranges the peer SACKed, sorted */
	uint8_t sacked_n;
	uint32_t sacked_bytes;
	/* RTT (RFC 6298), ns */
	uint64_t srtt, rttvar, rto;
	uint32_t rtt_seq;
	uint64_t rtt_start;
	/* timers: absolute ns, 0 = off */
	uint64_t t_rto, t_delack, t_persist, t_keep, t_2msl;
	uint64_t t_tlp;                     /* tail loss probe (RFC 8985 7) */
	uint8_t tlp_out;                    /* a probe is outstanding (one per flight) */
	uint32_t tlp_high;                  /* SND.MAX when it went out */
	uint64_t last_rcv_ns;
	uint64_t last_snd_ns;               /* last data segment sent (RFC 5681 4.1 idle restart) */
	/* TCP_INFO counters */
	uint32_t total_retrans;
};

struct tcp_txq {
	struct vd_frame avail[TCP_TX_BATCH];   /* lent by the nic, not yet filled */
	unsigned navail;
	struct vd_frame ready[TCP_TX_BATCH];   /* filled, not yet handed to tx_burst */
	unsigned nready;
};

#define VD__TCP_EPH_POOL 64u   /* see vd__tcp_port_put */

struct vd__tcp {
	struct vd_nic *nic;
	struct vd__tcp_cfg cfg;
	uint32_t lip;                       /* the nic's address, network order */
	uint32_t ip_mtu;
	uint64_t k0, k1;                    /* SipHash key (from cfg.secret) */
	struct vd__tcb **hash;              /* 4-tuple table */
	uint32_t hash_mask;
	struct vd__tcb **bind;              /* bind table, by local port */
	uint32_t bind_mask;
	struct vd__tcb *all;                /* every tcb */
	struct vd__tcb *dirty;              /* tcbs with output to consider */
	struct vd__tcb **heap;              /* timer min-heap by timer_key */
	uint32_t heap_n, heap_cap;
	uint32_t *port_ref;                 /* [65536]: tcbs using each local port (host order index) */
	uint8_t *port_eph;                  /* [65536/8]: the port was picked by the nic */
	/* Ephemeral ports that ended without TIME-WAIT, kept for the next active opens (tcp.c port pool) */
	uint16_t eph_pool[VD__TCP_EPH_POOL];   /* FIFO ring of port_be: the oldest is reused first */
	uint32_t eph_head, eph_n;
	uint16_t ip_id;
	uint64_t now;                       /* cached clock for the current call */
	uint8_t now_held;                   /* now is this lock hold's clock (vd__tcp_clock_hold) */
	uint8_t hold_clock;                 /* the caller asked for one clock read per lock hold */
	uint8_t zc_off;                     /* the nic lends no TX memory: send rings stay in the heap */
	struct tcp_zc *zc_wait;             /* lent send rings whose writer waits for completions */
	uint64_t chal_sec;                  /* challenge ACK rate limit (RFC 5961 7) */
	uint32_t chal_count;
	struct tcp_txq tx;
	struct vd__tcp_stats st;
	void (*notify)(void *ctx, struct vd__tcb *c);
	void *notify_ctx;
};

/* tcp.c */
uint64_t vd__tcp_clock(struct vd__tcp *t);
struct vd__tcb *vd__tcp_alloc_tcb(struct vd__tcp *t);
void vd__tcp_free_tcb(struct vd__tcb *c);
struct vd__tcb *vd__tcp_lookup(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
struct vd__tcb *vd__tcp_find_listener(struct vd__tcp *t, uint32_t lip, uint16_t lport);
void vd__tcp_hash_add(struct vd__tcb *c);
void vd__tcp_hash_del(struct vd__tcb *c);
void vd__tcp_bind_add(struct vd__tcb *c);
void vd__tcp_bind_del(struct vd__tcb *c);
int vd__tcp_bind_conflict(struct vd__tcp *t, const struct vd__tcb *c, uint32_t lip, uint16_t lport);
int vd__tcp_port_get(struct vd__tcp *t, uint16_t *port_be, int *ephemeral);
void vd__tcp_port_ref(struct vd__tcp *t, uint16_t port_be);
void vd__tcp_port_put(struct vd__tcp *t, uint16_t port_be, uint32_t hold_ms);
/* vd__tcp_port_put(t, port_be, 0) for the port of a connection that closed cleanly (closed_clean): an
 * ephemeral one may stay ours for the next active opens (tcp.c, the port pool). */
void vd__tcp_port_recycle(struct vd__tcp *t, uint16_t port_be);
uint32_t vd__tcp_port_refs(const struct vd__tcp *t, uint16_t port_be);
void vd__tcp_mark_dirty(struct vd__tcb *c);
void vd__tcp_timer_sched(struct vd__tcb *c);   /* call after arming a timer */
void vd__tcp_notify(struct vd__tcb *c);
void vd__tcp_set_state(struct vd__tcb *c, int state);
/* Tears the connection down: state CLOSED, error err (0: none), out of the tables; frees the tcb when the
 * user has closed it or it never was the user's (not yet accepted). Returns 1 if freed. */
int vd__tcp_drop(struct vd__tcb *c, int err);
/* TIME-WAIT entry (RFC 9293 3.10.7.4): hands an ephemeral port to viaductd when the user has closed. */
int vd__tcp_enter_time_wait(struct vd__tcb *c);   /* 1: freed */
/* A TIME-WAIT connection's ephemeral port that only it uses goes to viaductd with a hold for the rest of
 * its 2 MSL (contract: tcp.h); 1 if it did (the port is no longer c's). */
int vd__tcp_tw_handoff(struct vd__tcb *c);
/* Gives a TIME-WAIT connection's buffers back (nobody holds it any more; see tcp.c). */
void vd__tcp_tw_trim(struct vd__tcb *c);
uint32_t vd__tcp_isn(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
uint32_t vd__tcp_ts_off(struct vd__tcp *t, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
uint32_t vd__tcp_ts_now(struct vd__tcp *t);   /* ms clock for TSval (RFC 7323 5.4) */
/* Initialises a fresh connection tcb's buffers and defaults from the layer / the listener. */
int vd__tcb_init_conn(struct vd__tcb *c);
uint8_t vd__tcp_wscale_for(uint32_t rcvbuf);
/* Effective send MSS from the peer's MSS, our MTU, TCP_MAXSEG and the timestamp option (RFC 6691). */
void vd__tcp_set_mss(struct vd__tcb *c);

/* tcp_buf.c */
int vd__ring_init(struct tcp_ring *r, struct vd__shmheap *heap, uint32_t cap);
void vd__ring_free(struct tcp_ring *r);
int vd__ring_resize(struct tcp_ring *r, uint32_t cap);
void vd__ring_write(struct tcp_ring *r, uint32_t off, const void *src, uint32_t n);
void vd__ring_read(const struct tcp_ring *r, uint32_t off, void *dst, uint32_t n);
void vd__ring_consume(struct tcp_ring *r, uint32_t n);
uint32_t vd__ring_from_iov(struct tcp_ring *r, const struct iovec *iov, int iovcnt, uint32_t max);
uint32_t vd__ring_to_iov(const struct tcp_ring *r, const struct iovec *iov, int iovcnt, uint32_t max);
/* tcp_zc.c: send rings in lent nic memory (large sends without a copy into TX buffers) */
#define TCP_ZC_MIN_WRITE 16384u   /* a write at least this large on an empty ring moves it into nic memory */
#define TCP_ZC_POLL_NS 100000u   /* a writer waiting for completions: look again this often (tcp.c poll) */
int vd__ring_zc_take(struct tcp_ring *r, struct vd__tcb *c, uint32_t want);
void vd__ring_zc_free(struct tcp_ring *r);
int vd__ring_zc_resize(struct tcp_ring *r, uint32_t want);
uint32_t vd__ring_zc_room(struct tcp_ring *r, uint32_t max);
int vd__ring_zc_writable(const struct tcp_ring *r, uint32_t sndbuf);
uint64_t vd__tcp_zc_poll(struct vd__tcp *t, uint64_t now);
void vd__ring_zc_write(struct tcp_ring *r, uint32_t off, const void *src, uint32_t n);
void vd__ring_zc_read(const struct tcp_ring *r, uint32_t off, void *dst, uint32_t n);
int vd__ring_zc_pieces(const struct tcp_ring *r, uint32_t off, uint32_t n, struct iovec *iov, unsigned max);
uint32_t vd__ring_zc_fit(const struct tcp_ring *r, uint32_t off, uint32_t n, unsigned max);

/* tcp_opt.c */
int vd__tcp_opt_parse(const uint8_t *p, uint32_t len, int syn, struct tcp_opts *o);
uint32_t vd__tcp_opt_syn(const struct vd__tcb *c, uint8_t *p, uint32_t tsval, int synack);
uint32_t vd__tcp_opt_data(const struct vd__tcb *c, uint8_t *p, uint32_t tsval);

/* tcp_sack.c */
void vd__sack_rcv_add(struct vd__tcb *c, uint32_t start, uint32_t end);
uint32_t vd__sack_rcv_advance(struct vd__tcb *c);   /* merges ranges now at RCV.NXT; returns bytes */
uint32_t vd__sack_rcv_blocks(const struct vd__tcb *c, struct tcp_range *out, uint32_t max);
int vd__sack_snd_update(struct vd__tcb *c, const struct tcp_opts *o, uint32_t ack, struct tcp_range *dsack);
void vd__sack_snd_trim(struct vd__tcb *c);          /* after SND.UNA moved */
void vd__sack_snd_clear(struct vd__tcb *c);
int vd__sack_next_hole(const struct vd__tcb *c, uint32_t from, int any_hole, struct tcp_range *out);
uint32_t vd__sack_pipe(const struct vd__tcb *c);
uint32_t vd__sack_above(const struct vd__tcb *c, uint32_t seq);

/*
 * The DupThresh in force: the learned one (raised by reordering), but never more than half the segments
 * in flight - with more than that SACKed above a hole it is lost, whatever the reordering (the bound
 * RFC 4653 derives from the window); never below RFC 5681's 3.
 */
static inline uint32_t vd__tcp_dupthresh(const struct vd__tcb *c)
{
	uint32_t half = (c->snd_max - c->snd_una) / (2 * c->mss);
	uint32_t t = c->dupthresh < half ? c->dupthresh : half;
	return t < 3 ? 3 : t;
}

/* tcp_cc.c */
void vd__cc_init(struct vd__tcb *c);
void vd__cc_rtt_sample(struct vd__tcb *c, uint64_t rtt_ns);
void vd__cc_on_ack(struct vd__tcb *c, uint32_t acked, uint32_t flight_before);
void vd__cc_on_dupack(struct vd__tcb *c);
void vd__cc_on_rto(struct vd__tcb *c);
void vd__cc_on_dsack(struct vd__tcb *c, const struct tcp_range *d);
uint64_t vd__tcp_initial_rto(void);
void vd__cc_idle_restart(struct vd__tcb *c);
uint32_t vd__cc_flight(const struct vd__tcb *c);

/* tcp_cookie.c */
void vd__siphash_key(struct vd__tcp *t, uint64_t secret);
uint64_t vd__siphash(const struct vd__tcp *t, const void *data, size_t len);
uint32_t vd__cookie_make(struct vd__tcp *t, const struct tcp_seg *s, uint16_t mss, uint32_t *mss_out);
/* Checks the ACK of a cookie SYN-ACK; returns the MSS it encoded or 0 when invalid. */
uint32_t vd__cookie_check(struct vd__tcp *t, const struct tcp_seg *s);
uint32_t vd__cookie_tsval(uint32_t ts_now, const struct tcp_opts *o);
int vd__cookie_ts_decode(uint32_t tsecr, int *ws, int *sack);

/* tcp_out.c */
int vd__tcp_output(struct vd__tcb *c);             /* sends what the rules allow; <0: no TX buffer */
int vd__tcp_send_ctl(struct vd__tcb *c, uint8_t flags);   /* SYN, SYN-ACK, ACK, RST, FIN alone */
void vd__tcp_send_probe(struct vd__tcb *c);        /* zero-window / keepalive probe */
void vd__tcp_send_challenge_ack(struct vd__tcb *c);
void vd__tcp_send_rst_for(struct vd__tcp *t, const struct tcp_seg *s);
void vd__tcp_send_cookie_synack(struct vd__tcp *t, const struct tcp_seg *s, uint32_t isn, uint32_t mss,
				uint8_t rcv_wscale);
void vd__tcp_tx_flush(struct vd__tcp *t);
uint32_t vd__tcp_rcv_wnd(struct vd__tcb *c);       /* window to advertise (unscaled bytes) */
void vd__tcp_after_read(struct vd__tcb *c);        /* window update decision after the user read */

/* tcp_in.c */
void vd__tcp_input_seg(struct vd__tcp *t, struct tcp_seg *s);

/* tcp_timer.c */
void vd__tcp_timers_run(struct vd__tcb *c, uint64_t now);
void vd__tcp_arm_rto(struct vd__tcb *c);
void vd__tcp_arm_keepalive(struct vd__tcb *c);
void vd__tcp_arm_persist(struct vd__tcb *c);
void vd__tcp_arm_tlp(struct vd__tcb *c);
int vd__tcp_send_tlp(struct vd__tcb *c);   /* tcp_out.c */
uint64_t vd__tcp_next_deadline(const struct vd__tcb *c);

#endif /* VD_TCP_INTERNAL_H */
