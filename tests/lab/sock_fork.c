/* SPDX-License-Identifier: MIT */
/*
 * sock_fork: fork() and the sockets stack over the real xdp backend (tests/lab/test_sock_fork.sh; the
 * contract is include/viaduct/socket.h, "Processes"). The peer is the Linux kernel's stack on another host.
 *
 *   sock_fork share HOST:PORT   connect to a kernel echo server, then:
 *       1. a child sends and receives on the inherited socket, the parent too;
 *       2. the child closes it and leaves (vd_close, vd_stack_close): the connection still works for the
 *          parent;
 *       3. a child that _exit()s holding the socket is reaped (members_reaped; not waited for: a zombie
 *          counts as gone) and the parent's socket still works;
 *       4. a child killed with SIGKILL while it sleeps in the stack (the sleeper) and one killed while it
 *          runs progress passes in a loop: the parent's blocking calls go on (bounded by SO_RCVTIMEO),
 *          both are reaped;
 *       5. the parent's vd_close sends FIN: the echo server prints EOF (checked by the script).
 *   sock_fork listen PORT       listen, fork two children that each accept one connection and echo one
 *                               message; the parent closes its hold on the listener at once (the children
 *                               still hold it) and waits for both.
 * Output: "ok NAME" / "FAIL NAME" lines, then "RESULT passed N failed M"; exit 0 only if nothing failed.
 * Every wait is bounded: SIGALRM (--timeout-s, default 60) ends a stuck run with a failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <viaduct/socket.h>

static int passed, failed;

static void result(int ok, const char *name, long detail)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s %s (%ld)\n", ok ? "ok  " : "FAIL", name, detail);
	fflush(stdout);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "FAIL timeout: the run did not finish in time\n";
	ssize_t w = write(1, m, sizeof(m) - 1);
	(void)w;
	_exit(3);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *c = strrchr(s, ':');
	if (!c || (size_t)(c - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(c - s));
	host[c - s] = 0;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(c + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* A connected stream socket to "IP:PORT", or -1 (said on stderr). */
static int connect_to(struct vd_stack *st, const char *to)
{
	struct sockaddr_in a;
	if (parse_addr(to, &a) < 0)
		return -1;
	int s = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	int rc = s < 0 ? s : vd_connect(st, s, (struct sockaddr *)&a, sizeof(a));
	if (rc < 0) {
		fprintf(stderr, "connect: %s\n", strerror(-rc));
		return -1;
	}
	return s;
}

static void set_rcvtimeo(struct vd_stack *st, int s, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	(void)vd_setsockopt(st, s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Sends msg and reads until it came back (the echo may carry other bytes before it: a killed child's). */
static int echo_once(struct vd_stack *st, int s, const char *msg)
{
	size_t n = strlen(msg);
	if (vd_send(st, s, msg, n, 0) != (ssize_t)n)
		return -1;
	char buf[4096];
	size_t have = 0;
	for (int rounds = 0; rounds < 1000; rounds++) {
		ssize_t r = vd_recv(st, s, buf + have, sizeof(buf) - 1 - have, 0);
		if (r <= 0)
			return -2;
		have += (size_t)r;
		buf[have] = 0;
		if (memmem(buf, have, msg, n))
			return 0;
		if (have > sizeof(buf) / 2) { /* keep the tail: the marker may straddle */
			memmove(buf, buf + have - n, n);
			have = n;
		}
	}
	return -3;
}

static struct vd_stack_stats stats(struct vd_stack *st)
{
	struct vd_stack_stats s;
	vd_stack_stats(st, &s);
	return s;
}

/* fork() as `viaduct run` does it; returns the child's pid in the parent, 0 in the child. */
static pid_t fork_stack(struct vd_stack *st)
{
	int slot = vd_stack_fork_prepare(st);
	if (slot < 0) {
		fprintf(stderr, "fork_prepare: %s\n", strerror(-slot));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		vd_stack_fork_child(st, slot);
		return 0;
	}
	vd_stack_fork_done(st, slot, pid);
	return pid;
}

static int wait_child(pid_t pid)
{
	int status = 0;
	for (int i = 0; i < 1000; i++) { /* 10 s */
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* Progress until stats.members_reaped reaches want (the reaper runs from progress passes). */
static int wait_reaped(struct vd_stack *st, uint64_t want, uint64_t *took_ms)
{
	uint64_t t0 = now_ms();
	while (now_ms() - t0 < 5000) {
		(void)vd_stack_progress(st);
		if (stats(st).members_reaped >= want) {
			*took_ms = now_ms() - t0;
			return 1;
		}
		usleep(5000);
	}
	*took_ms = now_ms() - t0;
	return 0;
}

/* Progresses until every closed connection's FIN is acknowledged (stats.tcp_closing 0), as the last
 * member must before it leaves (leaving resets what is left); 1 if that happened within ms. */
static int linger(struct vd_stack *st, int ms)
{
	uint64_t t0 = now_ms();
	while (now_ms() - t0 < (uint64_t)ms) {
		(void)vd_stack_progress(st);
		if (stats(st).tcp_closing == 0)
			return 1;
		usleep(1000);
	}
	return 0;
}

static int run_share(struct vd_stack *st, const char *to)
{
	int s = connect_to(st, to);
	if (s < 0)
		return 2;
	int one = 1;
	(void)vd_setsockopt(st, s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_rcvtimeo(st, s, 3000);
	result(echo_once(st, s, "parent-before-fork") == 0, "parent echo before any fork", 0);

	/* 1 + 2: child uses the socket, closes it and leaves; the parent keeps it */
	pid_t pid = fork_stack(st);
	if (pid == 0) {
		int ok = echo_once(st, s, "child-1-echo") == 0;
		ok &= vd_close(st, s) == 0;
		ok &= vd_close(st, s) == -EBADF; /* this process no longer holds it */
		vd_stack_close(st);
		_exit(ok ? 0 : 1);
	}
	result(pid > 0, "fork with a member slot for the child", (long)pid);
	int crc = wait_child(pid);
	result(crc == 0, "child echoed on the inherited socket, closed it and left", crc);
	result(stats(st).members == 1, "child left: one member", (long)stats(st).members);
	result(echo_once(st, s, "parent-after-child-close") == 0, "connection still open for the parent", 0);

	/* 3: a child that _exit()s holding the socket */
	pid = fork_stack(st);
	if (pid == 0)
		_exit(echo_once(st, s, "child-2-echo") == 0 ? 0 : 1);
	uint64_t took = 0;
	int reaped = wait_reaped(st, 1, &took); /* not waited for yet: the child may be a zombie */
	result(reaped, "child that _exit()ed holding the socket was reaped (ms)", (long)took);
	crc = wait_child(pid);
	result(crc == 0, "that child echoed first", crc);
	result(echo_once(st, s, "parent-after-reap") == 0, "parent's socket works after the reap", 0);

	/* 4a: a child killed while it sleeps in the stack (a blocking recv on a quiet UDP socket) */
	pid = fork_stack(st);
	if (pid == 0) {
		int u = vd_socket(st, AF_INET, SOCK_DGRAM, 0);
		char b[16];
		for (int i = 0; i < 100; i++)
			(void)vd_recv(st, u, b, sizeof(b), 0);
		_exit(1);
	}
	usleep(200000);
	kill(pid, SIGKILL);
	(void)wait_child(pid);
	uint64_t t0 = now_ms();
	int ok = echo_once(st, s, "parent-after-kill-sleeper") == 0;
	result(ok, "parent's blocking echo after its sleeper was killed (ms)", (long)(now_ms() - t0));
	result(wait_reaped(st, 2, &took), "killed sleeper reaped (ms)", (long)took);

	/* 4b: a child killed while it runs progress passes and uses the socket in a loop */
	pid = fork_stack(st);
	if (pid == 0) {
		for (int i = 0; i < 1000000; i++) {
			(void)vd_stack_progress(st);
			if (i % 64 == 0)
				(void)vd_send(st, s, "k", 1, MSG_DONTWAIT);
		}
		_exit(1);
	}
	usleep(200000);
	kill(pid, SIGKILL);
	(void)wait_child(pid);
	t0 = now_ms();
	ok = echo_once(st, s, "parent-after-kill-busy") == 0;
	result(ok, "parent's blocking echo after a busy child was killed (ms)", (long)(now_ms() - t0));
	result(wait_reaped(st, 3, &took), "killed busy child reaped (ms)", (long)took);
	struct vd_stack_stats ss = stats(st);
	printf("     members %llu reaped %llu lock_owner_died %llu heap_bytes_used %llu\n",
	       (unsigned long long)ss.members, (unsigned long long)ss.members_reaped,
	       (unsigned long long)ss.lock_owner_died, (unsigned long long)ss.heap_bytes_used);
	result(ss.members == 1, "one member left", (long)ss.members);

	/* 5: the parent's close is the last hold: FIN to the kernel peer (the script checks its EOF) */
	result(vd_close(st, s) == 0, "parent closes", 0);
	result(stats(st).tcp_closing == 1, "its close is under way (tcp_closing)", (long)stats(st).tcp_closing);
	t0 = now_ms();
	result(linger(st, 3000), "the kernel acknowledged our FIN (tcp_closing 0, ms)", (long)(now_ms() - t0));
	return 0;
}

/*
 * exec: a child leaves by exit() (vd_close, vd_stack_close), a second child, given the first one's freed
 * member slot, execs /bin/true after vd_stack_exec_prepare; the parent's close then is the last hold (the
 * exec'd child is reaped: it no longer maps the stack) and the kernel sees EOF.
 */
static int run_exec(struct vd_stack *st, const char *to)
{
	int s = connect_to(st, to);
	if (s < 0)
		return 2;
	set_rcvtimeo(st, s, 3000);
	pid_t pid = fork_stack(st);
	if (pid == 0) {
		int ok = echo_once(st, s, "child-1-before-exit") == 0 && vd_close(st, s) == 0;
		vd_stack_close(st);
		exit(ok ? 0 : 1);
	}
	result(wait_child(pid) == 0, "child 1 echoed, closed, left and exited", 0);
	result(stats(st).members == 1, "one member", (long)stats(st).members);
	pid = fork_stack(st);
	if (pid == 0) {
		vd_stack_exec_prepare(st);
		execl("/bin/true", "true", (char *)NULL);
		vd_stack_exec_failed(st);
		_exit(127);
	}
	result(wait_child(pid) == 0, "child 2 exec'd /bin/true", 0);
	result(echo_once(st, s, "parent-after-exec") == 0, "parent's socket works", 0);
	result(vd_close(st, s) == 0, "parent closes (the exec'd child may still count as a holder)", 0);
	/* Sleep in the stack, no progress loop of ours: the reaper must run as a timer, detach the exec'd
	 * child and so let the close go out (the script checks the kernel's EOF). */
	int u = vd_socket(st, AF_INET, SOCK_DGRAM, 0);
	struct pollfd pf = { .fd = u, .events = POLLIN };
	uint64_t t0 = now_ms();
	int pr = vd_poll(st, &pf, 1, 1000);
	result(pr == 0 && now_ms() - t0 >= 900, "parent slept in vd_poll (ms)", (long)(now_ms() - t0));
	result(stats(st).members_reaped == 1 && stats(st).members == 1, "the exec'd child was reaped meanwhile",
	       (long)stats(st).members_reaped);
	vd_close(st, u);
	result(linger(st, 3000), "its close completed (tcp_closing 0)", 0);
	return 0;
}

static int run_listen(struct vd_stack *st, int port)
{
	int l = vd_socket(st, AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;
	(void)vd_setsockopt(st, l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || vd_bind(st, l, (struct sockaddr *)&a, sizeof(a)) < 0 || vd_listen(st, l, 8) < 0) {
		fprintf(stderr, "listen failed\n");
		return 2;
	}
	printf("LISTENING\n");
	fflush(stdout);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork_stack(st);
		if (kids[k] == 0) {
			set_rcvtimeo(st, l, 20000);
			int c = vd_accept4(st, l, NULL, NULL, 0);
			if (c < 0)
				_exit(2);
			set_rcvtimeo(st, c, 5000);
			char buf[64];
			ssize_t n = vd_recv(st, c, buf, sizeof(buf), 0);
			int ok = n > 0 && vd_send(st, c, buf, (size_t)n, 0) == n;
			ok &= vd_close(st, c) == 0 && vd_close(st, l) == 0;
			/* stay until the FIN is acknowledged: the last member leaving resets what is left */
			ok &= linger(st, 3000);
			vd_stack_close(st);
			_exit(ok ? 0 : 1);
		}
	}
	result(kids[0] > 0 && kids[1] > 0, "two children forked", 0);
	result(vd_close(st, l) == 0, "parent let go of the listener (children still hold it)", 0);
	result(vd_sock_type(st, l) == SOCK_STREAM, "listener still open for the children", 0);
	for (int k = 0; k < 2; k++) {
		int crc = kids[k] > 0 ? wait_child(kids[k]) : -1;
		result(crc == 0, k == 0 ? "child 1 accepted and echoed" : "child 2 accepted and echoed", crc);
	}
	result(vd_sock_type(st, l) == -EBADF, "listener closed after every holder closed it", 0);
	return 0;
}

int main(int argc, char **argv)
{
	int timeout_s = 60;
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "--timeout-s") == 0)
			timeout_s = atoi(argv[i + 1]);
	if (argc < 3) {
		fprintf(stderr, "usage: sock_fork share HOST:PORT | listen PORT [--timeout-s S]\n");
		return 2;
	}
	signal(SIGALRM, on_alarm);
	alarm((unsigned)timeout_s);
	struct vd_stack *st;
	struct vd_stack_opts o = { .backend = VD_BACKEND_XDP };
	int rc = vd_stack_open(&st, &o);
	if (rc < 0) {
		fprintf(stderr, "vd_stack_open: %s\n", strerror(-rc));
		return 2;
	}
	if (strcmp(argv[1], "share") == 0)
		rc = run_share(st, argv[2]);
	else if (strcmp(argv[1], "exec") == 0)
		rc = run_exec(st, argv[2]);
	else if (strcmp(argv[1], "listen") == 0)
		rc = run_listen(st, atoi(argv[2]));
	else
		rc = 2;
	vd_stack_close(st);
	printf("RESULT passed %d failed %d\n", passed, failed);
	return rc ? rc : failed ? 1 : 0;
}
