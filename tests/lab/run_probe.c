/* SPDX-License-Identifier: MIT */
/*
 * A plain sockets program (no libviaduct calls) that tests/lab/test_run.sh runs under `viaduct run` to
 * check the interposer's semantics against a peer; run without viaduct it checks the kernel, which keeps
 * the checks honest.
 *   run_probe server PORT        epoll echo server: viaduct listener + accepted sockets + a kernel pipe in
 *                                one epoll set (the pipe's byte stops it); runs until that or 60 s. A
 *                                connection that sends "WATCH" is sent "EOF" whenever another ends.
 *   run_probe checks IP PORT     client checks against that server; prints "ok NAME"/"FAIL NAME ..."
 *   run_probe sink PORT [MS]     accepts one connection, (waits MS,) counts bytes to EOF, prints "sink N"
 *   run_probe blast IP PORT N    sends N bytes, closes and exits at once (the data still queued in
 *                                the process must arrive all the same)
 *   run_probe fork-blast IP PORT N   the same from a fork child, the parent exiting right after it
 *   run_probe fork-accept PORT   a forked child accepts and echoes the first connection on the inherited
 *                                listener, the parent the second; prints "fork-accept N"
 *   run_probe echo-client IP PORT LEN   connects, checks the echo of LEN bytes, closes
 *   run_probe udp-echo PORT N    echoes N UDP datagrams, then exits
 *   run_probe udp-client IP PORT N   sends N datagrams of varying size, checks each echo
 * Exit status: number of failed checks (client modes), 0/1 (server modes).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;

static void check(int cond, const char *name, const char *detail)
{
	if (cond) {
		printf("ok   %s\n", name);
	} else {
		printf("FAIL %s: %s (errno %s)\n", name, detail, strerror(errno));
		failures++;
	}
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in addr_of(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip ? ip : "0.0.0.0", &a.sin_addr);
	return a;
}

/* ---- server ---- */

static int server(int port)
{
	struct sockaddr_in a = addr_of(NULL, port);
	int one = 1, ls, ep, pfd[2], watch = -1;
	struct epoll_event ev, evs[16];
	double end = now_s() + 60;
	char buf[65536];

	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 64) < 0) {
		perror("run_probe server: listen");
		return 1;
	}
	if (pipe(pfd) < 0 || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return 1;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = ls };
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = pfd[0] };
	epoll_ctl(ep, EPOLL_CTL_ADD, pfd[0], &ev);
	printf("listening %d\n", port);
	fflush(stdout);
	while (now_s() < end) {
		int n = epoll_wait(ep, evs, 16, 1000);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == pfd[0])
				return 0;
			if (fd == ls) {
				int c;
				while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev = (struct epoll_event){ .events = EPOLLIN | EPOLLRDHUP, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			ssize_t r = recv(fd, buf, sizeof(buf), 0);
			if (r > 0) {
				if (r == 5 && memcmp(buf, "WATCH", 5) == 0) {
					watch = fd; /* told "EOF" when another connection ends */
					continue;
				}
				if (r >= 4 && memcmp(buf, "STOP", 4) == 0) {
					/* Through a pipe (kernel fd) in the same epoll set. */
					if (write(pfd[1], "x", 1) != 1)
						return 1;
					continue;
				}
				/* Echo everything, blocking-style (poll for room). */
				for (ssize_t off = 0; off < r;) {
					ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
					if (w > 0) {
						off += w;
					} else if (errno == EAGAIN) {
						struct pollfd p = { .fd = fd, .events = POLLOUT };
						poll(&p, 1, 1000);
					} else {
						break;
					}
				}
			} else if (r == 0 || errno != EAGAIN) {
				if (r == 0 && watch >= 0 && fd != watch)
					send(watch, "EOF", 3, MSG_NOSIGNAL);
				if (fd == watch)
					watch = -1;
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
			}
		}
	}
	return 0;
}

/* ---- client checks ---- */

static int connect_to(const char *ip, int port)
{
	struct sockaddr_in a = addr_of(ip, port);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	return s;
}

/*
 * Sends len bytes and reads their echo at the same time (poll + MSG_DONTWAIT): sending all first could
 * deadlock once len exceeds the buffers on the way (both ends' send and receive buffers).
 */
static int echo_once(int s, size_t len)
{
	static char out[1 << 20], in[1 << 20];
	size_t sent = 0, got = 0;
	double end = now_s() + 20;

	for (size_t i = 0; i < len; i++)
		out[i] = (char)(i * 7 + len);
	while (got < len && now_s() < end) {
		struct pollfd p = { .fd = s, .events = (short)(POLLIN | (sent < len ? POLLOUT : 0)) };
		if (poll(&p, 1, 1000) < 0)
			return -1;
		if (sent < len && (p.revents & POLLOUT)) {
			ssize_t w = send(s, out + sent, len - sent, MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN)
				return -1;
			sent += w > 0 ? (size_t)w : 0;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = recv(s, in + got, len - got, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN))
				return -1;
			got += r > 0 ? (size_t)r : 0;
		}
	}
	return got == len && memcmp(in, out, len) == 0 ? 0 : -1;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static int late_fd;
static void *late_send(void *arg)
{
	(void)arg;
	usleep(600000);
	send(late_fd, "late", 4, 0);
	return NULL;
}

static int checks(const char *ip, int port)
{
	char buf[256];
	int s = connect_to(ip, port), r;

	check(s >= 0, "connect (blocking)", "connect failed");
	if (s < 0)
		return failures;

	struct sockaddr_in me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	check(getsockname(s, (struct sockaddr *)&me, &ml) == 0 && me.sin_port != 0, "getsockname", "no port");
	check(getpeername(s, (struct sockaddr *)&peer, &pl) == 0 && peer.sin_port == htons((uint16_t)port),
	      "getpeername", "wrong peer");

	int ok = 1;
	for (size_t len = 1; len <= (1 << 20) && ok; len *= 4)
		ok = echo_once(s, len) == 0;
	check(ok, "echo 1 B .. 1 MiB", "mismatch");

	int one = 1;
	check(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "setsockopt TCP_NODELAY", "");
	int type = 0;
	socklen_t tl = sizeof(type);
	check(getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM, "getsockopt SO_TYPE", "");

	/* O_NONBLOCK through fcntl, read back; EAGAIN on an empty socket. */
	int fl = fcntl(s, F_GETFL);
	check(fcntl(s, F_SETFL, fl | O_NONBLOCK) == 0 && (fcntl(s, F_GETFL) & O_NONBLOCK), "fcntl O_NONBLOCK", "");
	errno = 0;
	r = (int)recv(s, buf, sizeof(buf), 0);
	check(r < 0 && errno == EAGAIN, "recv EAGAIN when non-blocking", "not EAGAIN");
	int off = 0;
	check(ioctl(s, FIONBIO, &off) == 0 && !(fcntl(s, F_GETFL) & O_NONBLOCK), "ioctl FIONBIO off", "");

	/* FIONREAD after the echo of 100 bytes arrived. */
	memset(buf, 'a', 100);
	send(s, buf, 100, 0);
	struct pollfd p = { .fd = s, .events = POLLIN };
	check(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN), "poll POLLIN", "no event");
	int avail = 0;
	double t0 = now_s();
	while (avail < 100 && now_s() - t0 < 5) {
		ioctl(s, FIONREAD, &avail);
		if (avail < 100)
			poll(&p, 1, 10);
	}
	check(avail == 100, "ioctl FIONREAD", "wrong count");
	check(recv(s, buf, sizeof(buf), 0) == 100, "recv after FIONREAD", "");

	/* select with a kernel pipe in the same set. */
	int pfd[2];
	if (pipe(pfd) == 0) {
		fd_set rs;
		FD_ZERO(&rs);
		FD_SET(s, &rs);
		FD_SET(pfd[0], &rs);
		if (write(pfd[1], "x", 1) != 1)
			errno = EIO;
		struct timeval tv = { 2, 0 };
		r = select((s > pfd[0] ? s : pfd[0]) + 1, &rs, NULL, NULL, &tv);
		check(r == 1 && FD_ISSET(pfd[0], &rs) && !FD_ISSET(s, &rs), "select: kernel fd ready, socket not", "");
		close(pfd[0]);
		close(pfd[1]);
	}

	/* SO_RCVTIMEO: a blocking recv with nothing to read ends with EAGAIN after about the timeout. */
	struct timeval tv = { 0, 300000 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	t0 = now_s();
	errno = 0;
	r = (int)recv(s, buf, sizeof(buf), 0);
	double dt = now_s() - t0;
	check(r < 0 && errno == EAGAIN && dt > 0.25 && dt < 2, "SO_RCVTIMEO", "wrong result or time");
	tv = (struct timeval){ 0, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	/* A handler without SA_RESTART interrupts a blocking recv with EINTR (signal(7)). */
	struct sigaction sa = { .sa_handler = on_alarm };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { .it_value = { 0, 200000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	errno = 0;
	r = (int)recv(s, buf, sizeof(buf), 0);
	check(r < 0 && errno == EINTR && alarms == 1, "EINTR from blocking recv", "not EINTR");
	/* ... and poll with a timeout returns EINTR too. */
	setitimer(ITIMER_REAL, &it, NULL);
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	errno = 0;
	r = poll(&p, 1, 3000);
	check(r < 0 && errno == EINTR && alarms == 2, "EINTR from poll", "not EINTR");
	/* With SA_RESTART and no timeout the recv keeps waiting (signal(7)); another thread sends at
	 * 0.6 s and the echo ends the wait. (With SO_RCVTIMEO set, the kernel fails it with EINTR anyway.) */
	struct sigaction old;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, &old);
	check(old.sa_handler == on_alarm && !(old.sa_flags & SA_RESTART), "sigaction reads back the handler", "");
	pthread_t th;
	late_fd = s;
	pthread_create(&th, NULL, late_send, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	t0 = now_s();
	errno = 0;
	r = (int)recv(s, buf, 4, MSG_WAITALL);
	dt = now_s() - t0;
	pthread_join(th, NULL);
	check(r == 4 && memcmp(buf, "late", 4) == 0 && alarms == 3 && dt > 0.5,
	      "SA_RESTART: recv keeps waiting, another thread's send ends it", "");
	/* SO_RCVTIMEO set: even an SA_RESTART handler interrupts (signal(7)). */
	tv = (struct timeval){ 2, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setitimer(ITIMER_REAL, &it, NULL);
	errno = 0;
	r = (int)recv(s, buf, sizeof(buf), 0);
	check(r < 0 && errno == EINTR && alarms == 4, "SA_RESTART with SO_RCVTIMEO: EINTR", "");
	tv = (struct timeval){ 0, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	signal(SIGALRM, SIG_DFL);

	/* dup: the copy works after the original is closed. */
	int d = dup(s);
	close(s);
	check(d >= 0 && echo_once(d, 1000) == 0, "dup, close original, echo on the copy", "");
	int d2 = 100;
	check(dup2(d, d2) == d2 && echo_once(d2, 1000) == 0, "dup2 echo", "");
	close(d);

	/*
	 * fork: as with kernel sockets, the child uses the inherited socket (echo), its close and exit do not
	 * close the parent's connection (the server, watching for EOFs on a second connection, reports
	 * none), and the parent's close after that is the socket's last: the server sees EOF.
	 */
	int w = connect_to(ip, port);
	check(w >= 0 && send(w, "WATCH", 5, 0) == 5, "fork: watcher connection", "");
	usleep(100000); /* the server takes WATCH before the EOFs it is about */
	int ac = connect_to(ip, port);
	pid_t pid = fork();
	if (pid == 0) {
		int e = echo_once(ac, 5000);
		close(ac);
		exit(e == 0 ? 0 : 3); /* exit(): the interposer's destructor leaves the stack */
	}
	int st = 0;
	waitpid(pid, &st, 0);
	check(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork: child echoes over the inherited socket",
	      "child failed");
	pid = fork();
	if (pid == 0)
		_exit(echo_once(ac, 3000) == 0 ? 0 : 3); /* _exit: no destructor; the stack detaches it */
	waitpid(pid, &st, 0);
	check(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork: second child echoes, leaves by _exit", "");
	p = (struct pollfd){ .fd = w, .events = POLLIN };
	check(poll(&p, 1, 1500) == 0, "fork: children's close/exit do not close the parent's connection",
	      "the server saw EOF");
	check(echo_once(ac, 5000) == 0, "fork: parent's socket still works", "");
	/* exec in a child: a failed exec keeps the child a user of the socket; a successful one leaves. */
	pid = fork();
	if (pid == 0) {
		execl("/nonexistent/viaduct-probe", "x", (char *)NULL);
		_exit(echo_once(ac, 2000) == 0 ? 0 : 3);
	}
	waitpid(pid, &st, 0);
	check(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec: failed exec, child echoes after", "");
	pid = fork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(4);
	}
	waitpid(pid, &st, 0);
	check(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec: child runs another program", "");
	check(echo_once(ac, 5000) == 0, "exec: parent's socket still works after the child's exec", "");
	/* vfork: the child closes its copy of the fd and execs; the parent's socket is untouched. */
	pid = vfork();
	if (pid == 0) {
		close(ac);
		execl("/bin/true", "true", (char *)NULL);
		_exit(4);
	}
	waitpid(pid, &st, 0);
	check(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "vfork: child closes its fd, execs", "");
	check(echo_once(ac, 5000) == 0, "vfork: parent's socket still works", "");
	close(ac);
	char eb[8] = "";
	p = (struct pollfd){ .fd = w, .events = POLLIN };
	check(poll(&p, 1, 5000) == 1 && recv(w, eb, 3, MSG_WAITALL) == 3 && memcmp(eb, "EOF", 3) == 0,
	      "fork: parent's close (the last holder) -> the server sees EOF", "no EOF report");
	close(w);

	/* Non-blocking connect + poll for POLLOUT. */
	struct sockaddr_in a = addr_of(ip, port);
	int nb = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	r = connect(nb, (struct sockaddr *)&a, sizeof(a));
	check(r == 0 || errno == EINPROGRESS, "non-blocking connect", "");
	p = (struct pollfd){ .fd = nb, .events = POLLOUT };
	int err = -1;
	socklen_t el = sizeof(err);
	check(poll(&p, 1, 5000) == 1 && getsockopt(nb, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0,
	      "non-blocking connect completes", "");
	/* epoll on the client side too, with EPOLLET. */
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 77 }, out[4];
	epoll_ctl(ep, EPOLL_CTL_ADD, nb, &ev);
	fcntl(nb, F_SETFL, 0);
	check(echo_once(nb, 3000) == 0, "echo on second connection", "");
	send(nb, "ping", 4, 0);
	r = epoll_wait(ep, out, 4, 5000);
	check(r == 1 && out[0].data.u64 == 77 && (out[0].events & EPOLLIN), "epoll_wait EPOLLET in", "");
	recv(nb, buf, 4, MSG_WAITALL);
	fcntl(nb, F_SETFL, O_NONBLOCK);
	errno = 0;
	check(recv(nb, buf, 4, 0) < 0 && errno == EAGAIN, "EAGAIN after draining", "");
	r = epoll_wait(ep, out, 4, 200);
	check(r == 0, "epoll_wait EPOLLET: no event after drain", "spurious event");
	close(ep);

	/* shutdown(SHUT_WR): the server closes; we then read EOF. */
	shutdown(nb, SHUT_WR);
	fcntl(nb, F_SETFL, 0);
	tv = (struct timeval){ 5, 0 };
	setsockopt(nb, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	check(recv(nb, buf, sizeof(buf), 0) == 0, "EOF after shutdown(SHUT_WR)", "");
	close(nb);

	/* Stop the server through its kernel pipe in the same epoll set. */
	send(d2, "STOP", 4, 0);
	close(d2);
	return failures;
}

/* ---- close, then exit ---- */

static int sink(int port, int delay_ms)
{
	struct sockaddr_in a = addr_of(NULL, port);
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0), c;
	static char buf[1 << 16];
	long long total = 0;
	ssize_t r;

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0 ||
	    (c = accept(ls, NULL, NULL)) < 0) {
		perror("run_probe sink");
		return 1;
	}
	struct timeval tv = { 30, 0 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	usleep((useconds_t)delay_ms * 1000); /* a slow reader: the sender's data waits in its buffers */
	while ((r = recv(c, buf, sizeof(buf), 0)) > 0)
		total += r;
	printf("sink %lld%s\n", total, r < 0 ? " (error)" : "");
	return r < 0;
}

static int blast_on(int s, long long n)
{
	static char buf[1 << 16];

	memset(buf, 'b', sizeof(buf));
	for (long long left = n; left > 0;) {
		ssize_t w = send(s, buf, left < (long long)sizeof(buf) ? (size_t)left : sizeof(buf), 0);
		if (w <= 0)
			return 1;
		left -= w;
	}
	close(s);
	return 0; /* exit() at once: whatever is still queued is the interposer's to deliver */
}

static int blast(const char *ip, int port, long long n)
{
	int s = connect_to(ip, port);

	if (s < 0) {
		perror("run_probe blast");
		return 1;
	}
	return blast_on(s, n);
}

/*
 * The same from a fork child: the parent closes its copy at once, the child sends n bytes, closes (the last
 * holder) and exits while the parent still runs; then the parent exits too, the last process of the stack,
 * with the child's close perhaps unfinished: the data must all arrive all the same.
 */
static int fork_blast(const char *ip, int port, long long n)
{
	int s = connect_to(ip, port), st = 0;

	if (s < 0) {
		perror("run_probe fork-blast");
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0)
		exit(blast_on(s, n));
	close(s);
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ---- fork and accept ---- */

/* Echoes one accepted connection until EOF; 0 if anything was echoed. */
static int echo_conn(int c)
{
	static char buf[1 << 16];
	long long total = 0;
	ssize_t r;

	while ((r = recv(c, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t off = 0; off < r;) {
			ssize_t w = send(c, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
			if (w <= 0)
				return 1;
			off += w;
		}
		total += r;
	}
	close(c);
	return r == 0 && total > 0 ? 0 : 1;
}

/*
 * A listening socket used across fork: a child accepts and echoes the first connection on the socket it
 * inherited, then exits; the parent then accepts and echoes the second itself. Prints "fork-accept N"
 * (connections echoed) and exits 0 if both were.
 */
static int fork_accept(int port)
{
	struct sockaddr_in a = addr_of(NULL, port);
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0), st = 0, good = 0;
	struct timeval tv = { 30, 0 };

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* bounds accept (Linux applies it) */
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0) {
		perror("run_probe fork-accept");
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int c = accept(ls, NULL, NULL);
		exit(c >= 0 && echo_conn(c) == 0 ? 0 : 3);
	}
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		good++;
	int c = accept(ls, NULL, NULL);
	if (c >= 0 && echo_conn(c) == 0)
		good++;
	printf("fork-accept %d\n", good);
	return good == 2 ? 0 : 1;
}

/* Connects, echoes len bytes, closes. */
static int echo_client(const char *ip, int port, int len)
{
	int s = connect_to(ip, port);

	check(s >= 0 && len <= (1 << 20) && echo_once(s, (size_t)len) == 0, "echo-client", "connect or echo failed");
	if (s >= 0)
		close(s);
	return failures;
}

/* ---- UDP ---- */

static int udp_echo(int port, int n)
{
	struct sockaddr_in a = addr_of(NULL, port), from;
	char buf[65536];
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("run_probe udp-echo");
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);
	struct timeval tv = { 30, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < n; i++) {
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (r < 0)
			return 1;
		sendto(s, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
	}
	return 0;
}

static int udp_client(const char *ip, int port, int n)
{
	struct sockaddr_in a = addr_of(ip, port);
	char out[1400], in[2048];
	int s = socket(AF_INET, SOCK_DGRAM, 0), good = 0;
	struct timeval tv = { 0, 300000 };

	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < n; i++) {
		size_t len = 1 + (size_t)(i * 37) % sizeof(out);
		memset(out, i, len);
		memcpy(out, &i, len < sizeof(i) ? len : sizeof(i));
		sendto(s, out, len, 0, (struct sockaddr *)&a, sizeof(a));
		ssize_t r = recv(s, in, sizeof(in), 0);
		good += r == (ssize_t)len && memcmp(in, out, len) == 0;
	}
	/* Loss is possible in principle; on a clean lab none is expected. */
	check(good == n, "udp echo", "lost or wrong datagrams");
	printf("udp %d/%d\n", good, n);
	return failures;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && strcmp(argv[1], "server") == 0)
		return server(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "checks") == 0)
		return checks(argv[2], atoi(argv[3]));
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "sink") == 0)
		return sink(atoi(argv[2]), argc == 4 ? atoi(argv[3]) : 0);
	if (argc == 5 && strcmp(argv[1], "blast") == 0)
		return blast(argv[2], atoi(argv[3]), atoll(argv[4]));
	if (argc == 5 && strcmp(argv[1], "fork-blast") == 0)
		return fork_blast(argv[2], atoi(argv[3]), atoll(argv[4]));
	if (argc == 3 && strcmp(argv[1], "fork-accept") == 0)
		return fork_accept(atoi(argv[2]));
	if (argc == 5 && strcmp(argv[1], "echo-client") == 0)
		return echo_client(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 4 && strcmp(argv[1], "udp-echo") == 0)
		return udp_echo(atoi(argv[2]), atoi(argv[3]));
	if (argc == 5 && strcmp(argv[1], "udp-client") == 0)
		return udp_client(argv[2], atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: run_probe server PORT | checks IP PORT | sink PORT [MS] | blast IP PORT N | fork-blast IP PORT N | fork-accept PORT | "
		"echo-client IP PORT LEN | udp-echo PORT N | udp-client IP PORT N\n");
	return 2;
}
