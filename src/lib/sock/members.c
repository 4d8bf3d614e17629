/* SPDX-License-Identifier: MIT */
/*
 * The processes sharing a stack (socket.h, "Processes"): the member table, which member holds which
 * socket, fork and exec hand-over, and the reaper that detaches members whose process is gone.
 *
 * Each member has a slot (0..VD_STACK_MAX_PROCS-1) in st->members and each socket a mask of the slots
 * holding it (struct vd_sock.holders): a socket is closed when its mask becomes empty, as a kernel socket
 * is closed with its last file descriptor. A process finds its slot by its pid (cached process-locally; a
 * pthread_atfork child handler drops the cache, so a fork child looks itself up afresh).
 *
 * A member is gone when /proc/PID/stat no longer exists or shows a zombie, when it shows another start
 * time (the pid was reused), or, for a member that announced an exec, when /proc/PID/maps no longer shows
 * the heap: the new image does not map the stack. The reaper runs from the progress pass, at most every
 * REAP_EVERY_NS and only while there is more than one member (then as a timer: sleepers wake for it), or
 * at once after the lock was taken over from a dead owner.
 */
#include "sock_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REAP_EVERY_NS 200000000ull

static _Atomic pid_t g_pid;          /* 0: not cached (at start, and in a fork child) */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
	atomic_store_explicit(&g_pid, 0, memory_order_relaxed);
}

static void register_atfork(void)
{
	(void)pthread_atfork(NULL, NULL, atfork_child);
}

pid_t vd__self_pid(void)
{
	pid_t p = atomic_load_explicit(&g_pid, memory_order_relaxed);
	if (!p) {
		p = getpid();
		atomic_store_explicit(&g_pid, p, memory_order_relaxed);
	}
	return p;
}

/*
 * Reads /proc/PID/stat: state (field 3) and start time (field 22, clock ticks since boot). The command
 * name (field 2) may hold spaces and parentheses: fields are counted from its last ')'. Returns 0, or -1
 * if the file cannot be read (the process is gone, or /proc is not mounted: see vd__proc_gone).
 */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -1;
	p += 2;
	*state = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -1;
		p++;
	}
	*start = strtoull(p, NULL, 10);
	return 0;
}

int vd__proc_gone(pid_t pid)
{
	char state;
	uint64_t start;
	if (proc_stat(pid, &state, &start) == 0)
		return state == 'Z' || state == 'X';
	/* No /proc entry: gone, unless /proc is not there at all; then only kill() can tell. */
	if (access("/proc/self/stat", R_OK) == 0)
		return 1;
	return kill(pid, 0) < 0 && errno == ESRCH;
}

static uint64_t proc_start(pid_t pid)
{
	char state;
	uint64_t start;
	return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

/*
 * Does process pid still map address base (the heap's first byte) at the start of a mapping? When its
 * maps cannot be read (another uid, or a process made non-dumpable by setuid: ptrace access rules) we
 * cannot tell and say yes: such a member is detached only once its process is gone.
 */
static int proc_maps_has(pid_t pid, uintptr_t base)
{
	char path[64], line[512], want[32];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	snprintf(want, sizeof(want), "%" PRIxPTR "-", base);
	FILE *f = fopen(path, "re");
	if (!f)
		return 1;
	int found = 0, lines = 0;
	size_t wl = strlen(want);
	/* One line per mapping; a line longer than the buffer (a long path) is read in pieces, and only a
	 * piece that starts a line can match: track that. */
	int at_start = 1;
	while (!found && fgets(line, sizeof(line), f)) {
		lines++;
		if (at_start && strncmp(line, want, wl) == 0)
			found = 1;
		at_start = strchr(line, '\n') != NULL;
	}
	fclose(f);
	return found || lines == 0;
}

void vd__members_init(struct vd_stack *st)
{
	(void)pthread_once(&g_once, register_atfork);
	pid_t me = vd__self_pid();
	st->members[0] = (struct vd__member){ .state = VD__MEMBER_ACTIVE, .pid = me, .start = proc_start(me) };
	st->n_members = 1;
}

static int self_slot(struct vd_stack *st)
{
	pid_t me = vd__self_pid();
	for (int i = 0; i < VD_STACK_MAX_PROCS; i++)
		if (st->members[i].state != VD__MEMBER_FREE && st->members[i].pid == me)
			return i;
	return -1;
}

uint64_t vd__member_bit(struct vd_stack *st)
{
	int m = self_slot(st);
	return m < 0 ? 0 : 1ull << m;
}

void vd__member_detach(struct vd_stack *st, int m)
{
	uint64_t bit = 1ull << m;
	for (int s = 0; s < st->n_slots; s++) {
		struct vd_sock *sk = st->slots[s].sk;
		if (!sk || !(sk->holders & bit))
			continue;
		sk->holders &= ~bit;
		/* The kernel closes a dead process's last fd of a socket as close(2) would: gracefully (or
		 * with a reset when unread data is left), vd__sock_destroy does the same. */
		if (!sk->holders) {
			vd__sock_free_slot(st, s);
			vd__sock_destroy(st, sk);
		}
	}
	if (st->sleeper && st->members[m].pid && st->sleeper_pid == st->members[m].pid)
		st->sleeper = 0; /* it will never come back to clear it */
	memset(&st->members[m], 0, sizeof(st->members[m]));
	st->n_members--;
	st->dirty = 1;
}

static int member_gone(struct vd_stack *st, const struct vd__member *mb)
{
	if (mb->state == VD__MEMBER_RESERVED && mb->pid == 0)
		return 1; /* its fork_prepare's caller died holding the lock before fork_done (see below) */
	if (vd__proc_gone(mb->pid))
		return 1;
	if (mb->start && proc_start(mb->pid) != mb->start)
		return 1; /* the pid now names another process */
	if (mb->exec_leaving && st->heap && !proc_maps_has(mb->pid, vd__shm_base(st->heap)))
		return 1;
	return 0;
}

/*
 * A RESERVED slot with no pid exists only between vd_stack_fork_prepare and vd_stack_fork_done, which
 * hold the lock all along; whoever else sees one under the lock took the lock over from that caller's
 * dead process.
 */
void vd__members_check(struct vd_stack *st, int force)
{
	if (!force && !st->reap_now && st->n_members <= 1)
		return;
	uint64_t now = vd__stack_now(st);
	if (force || st->reap_now || now >= st->next_reap_ns) {
		st->next_reap_ns = now + REAP_EVERY_NS;
		st->reap_now = 0;
		pid_t me = vd__self_pid();
		for (int i = 0; i < VD_STACK_MAX_PROCS; i++) {
			struct vd__member *mb = &st->members[i];
			if (mb->state == VD__MEMBER_FREE || mb->pid == me)
				continue;
			if (member_gone(st, mb)) {
				vd__member_detach(st, i);
				st->members_reaped++;
			}
		}
	}
	/* The next check is a timer like the engine's: a member that sleeps (vd__stack_wait, or its own
	 * poll loop through vd_stack_prepare_wait) wakes for it, or a dead member's holds would stay until
	 * some frame arrived (a close waiting on an exited child would never send its FIN). */
	if (st->n_members > 1 && st->next_timer_ns > st->next_reap_ns)
		st->next_timer_ns = st->next_reap_ns;
}

/* ---- public: fork, exec, forget ----------------------------------------------------------------- */

VD_API int vd_stack_fork_prepare(struct vd_stack *st)
{
	if (st->is_sim || !st->heap)
		return -EOPNOTSUPP; /* sim links live in one process */
	vd__stack_lock(st);
	vd__members_check(st, 1); /* a slot of a dead member is free again */
	int me = self_slot(st);
	if (me < 0) {
		vd__stack_unlock(st);
		return -EBADF;
	}
	int slot = -1;
	for (int i = 0; i < VD_STACK_MAX_PROCS && slot < 0; i++)
		if (st->members[i].state == VD__MEMBER_FREE)
			slot = i;
	if (slot < 0) {
		vd__stack_unlock(st);
		return -EAGAIN;
	}
	st->members[slot] = (struct vd__member){ .state = VD__MEMBER_RESERVED };
	st->n_members++;
	/* The child inherits every descriptor: it holds whatever the caller holds. */
	uint64_t mine = 1ull << me, child = 1ull << slot;
	for (int s = 0; s < st->n_slots; s++) {
		struct vd_sock *sk = st->slots[s].sk;
		if (sk && (sk->holders & mine))
			sk->holders |= child;
	}
	return slot; /* with the lock held, until vd_stack_fork_done */
}

VD_API void vd_stack_fork_done(struct vd_stack *st, int slot, pid_t child)
{
	if (slot < 0 || slot >= VD_STACK_MAX_PROCS)
		return;
	struct vd__member *mb = &st->members[slot];
	if (child < 0) {
		vd__member_detach(st, slot); /* nobody reached 0: the caller still holds them all */
	} else {
		/* The child may have stored its pid already (vd_stack_fork_child): same value. */
		__atomic_store_n(&mb->pid, child, __ATOMIC_RELAXED);
		mb->start = proc_start(child); /* 0 if it is already gone: the reaper then goes by the pid */
		mb->state = VD__MEMBER_ACTIVE;
	}
	vd__stack_unlock(st);
}

VD_API void vd_stack_fork_child(struct vd_stack *st, int slot)
{
	atomic_store_explicit(&g_pid, 0, memory_order_relaxed); /* in case fork bypassed pthread_atfork */
	if (slot < 0 || slot >= VD_STACK_MAX_PROCS)
		return;
	/*
	 * The parent holds the lock until vd_stack_fork_done, which records our pid; we cannot take the lock
	 * meanwhile (its owner is the parent's thread). Storing our pid ourselves covers a parent that dies
	 * before fork_done: the slot is then still ours when the lock is taken over. A relaxed atomic store:
	 * the parent may store the same value at the same time, and the lock orders both before any reader.
	 */
	__atomic_store_n(&st->members[slot].pid, vd__self_pid(), __ATOMIC_RELAXED);
}

VD_API void vd_stack_exec_prepare(struct vd_stack *st)
{
	vd__stack_lock(st);
	int me = self_slot(st);
	if (me >= 0)
		st->members[me].exec_leaving = 1;
	vd__stack_unlock(st);
}

VD_API void vd_stack_exec_failed(struct vd_stack *st)
{
	vd__stack_lock(st);
	int me = self_slot(st);
	if (me >= 0)
		st->members[me].exec_leaving = 0;
	vd__stack_unlock(st);
}

VD_API void vd_stack_forget(struct vd_stack *st)
{
	/* Only the process-local view goes: the heap's mapping in this process. The nic's descriptors this
	 * process inherited stay open until it exits or execs (they are close-on-exec). */
	if (st && st->heap)
		vd__shm_destroy(st->heap);
}
