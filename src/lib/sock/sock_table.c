/* SPDX-License-Identifier: MIT */
/*
 * The handle table: socket handles are small non-negative integers, indexes into st->slots. Free slots
 * form a LIFO list, so a closed handle is the next one handed out (as the lowest free fd often is).
 * Each slot counts its closes (gen): a thread that waited with the lock dropped checks that its handle
 * still names the same socket before touching it again.
 */
#include "sock_internal.h"

#include <errno.h>
#include <stdlib.h>

#include "ctl/proto.h"
#include "lib/nic/nic_internal.h"

#define MAX_SOCKETS (1 << 20)

void vd__sock_publish(struct vd_stack *st)
{
	if (!st->shared)
		return;
	/* Another process (viaduct stat) reads each counter on its own: relaxed stores suffice (proto.h). */
	__atomic_store_n(&st->shared->sock_tcp, st->tcp_sockets, __ATOMIC_RELAXED);
	__atomic_store_n(&st->shared->sock_udp, st->udp_sockets, __ATOMIC_RELAXED);
}

struct vd_sock *vd__sock_new(struct vd_stack *st)
{
	return vd__shm_calloc(st->heap, 1, sizeof(struct vd_sock));
}

void vd__sock_delete(struct vd_stack *st, struct vd_sock *sk)
{
	vd__shm_free(st->heap, sk);
}

int vd__sock_alloc(struct vd_stack *st, struct vd_sock *sk)
{
	/* The creating (or accepting) process holds the new socket, as its new fd. */
	uint64_t bit = vd__member_bit(st);
	if (!bit)
		return -EBADF; /* not a member: this process must not use the stack (socket.h, Processes) */
	sk->holders = bit;
	if (st->free_head < 0) {
		int n = st->n_slots ? st->n_slots * 2 : 64;
		if (n > MAX_SOCKETS)
			return -EMFILE;
		struct vd__sock_slot *ns = vd__shm_realloc(st->heap, st->slots, (size_t)n * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		/* New slots go on the free list highest first, so the lowest is handed out first. */
		for (int i = n - 1; i >= st->n_slots; i--) {
			ns[i].sk = NULL;
			ns[i].gen = 0;
			ns[i].next_free = st->free_head;
			st->free_head = i;
		}
		st->slots = ns;
		st->n_slots = n;
	}
	int s = st->free_head;
	st->free_head = st->slots[s].next_free;
	st->slots[s].sk = sk;
	if (sk->type == SOCK_STREAM)
		st->tcp_sockets++;
	else
		st->udp_sockets++;
	vd__sock_publish(st);
	return s;
}

struct vd_sock *vd__sock_get(struct vd_stack *st, int s)
{
	if (s < 0 || s >= st->n_slots)
		return NULL;
	return st->slots[s].sk;
}

uint32_t vd__sock_gen(struct vd_stack *st, int s)
{
	return st->slots[s].gen;
}

void vd__sock_free_slot(struct vd_stack *st, int s)
{
	struct vd_sock *sk = st->slots[s].sk;
	if (sk->type == SOCK_STREAM)
		st->tcp_sockets--;
	else
		st->udp_sockets--;
	vd__sock_publish(st);
	st->slots[s].sk = NULL;
	st->slots[s].gen++;
	st->slots[s].next_free = st->free_head;
	st->free_head = s;
	st->dirty = 1; /* a thread blocked on this handle must notice */
}

void vd__sock_destroy(struct vd_stack *st, struct vd_sock *sk)
{
	if (sk->type == SOCK_STREAM) {
		vd__tcb_set_user(sk->tcb, NULL);
		vd__tcb_close(sk->tcb); /* the engine frees the tcb when the connection is over */
		vd__stack_kick_tcp(st);
	} else {
		vd__udp_sock_release(st->udp, &sk->udp);
	}
	vd__sock_delete(st, sk);
}

int vd__sock_let_go(struct vd_stack *st, int s)
{
	struct vd_sock *sk = vd__sock_get(st, s);
	uint64_t bit = vd__member_bit(st);
	if (!sk || !(sk->holders & bit))
		return -EBADF;
	/* Like close(2) on one of several fds of a socket: only the last one closes it. */
	sk->holders &= ~bit;
	if (!sk->holders) {
		vd__sock_free_slot(st, s);
		vd__sock_destroy(st, sk);
	}
	return 0;
}
