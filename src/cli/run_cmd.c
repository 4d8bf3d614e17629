/* SPDX-License-Identifier: MIT */
/* fork + execvp with an argv array and a time limit (see run_cmd.h). */
#include "cli/run_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VD_RUN_DEFAULT_TIMEOUT_MS 10000

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
}

/* In the child, between fork and exec: only async-signal-safe calls. Never returns. */
static void child_exec(char *const argv[], const struct vd__run_opts *o, int err_pipe, int capture_fd)
{
	int out = -1;

	if (capture_fd >= 0)
		out = capture_fd;
	else if (o->stderr_fd >= 0)
		out = o->stderr_fd;
	else if (o->quiet)
		out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (out >= 0) {
		dup2(out, STDOUT_FILENO);
		dup2(out, STDERR_FILENO);
	}
	/* Helpers never read our stdin: a daemon keeping it would hold a terminal or a test's pipe. */
	int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in >= 0)
		dup2(in, STDIN_FILENO);
	execvp(argv[0], argv);
	/* Tell the parent why exec failed through the close-on-exec pipe (nothing is written on success). */
	int e = errno;
	(void)!write(err_pipe, &e, sizeof(e));
	_exit(127);
}

/* Appends what the capture pipe holds to o->capture; returns 0 at EOF, 1 otherwise. */
static int drain(int fd, const struct vd__run_opts *o, size_t *have)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
		return 0;
	if (n > 0 && *have + 1 < o->capture_cap) {
		size_t take = (size_t)n < o->capture_cap - 1 - *have ? (size_t)n : o->capture_cap - 1 - *have;

		memcpy(o->capture + *have, tmp, take);
		*have += take;
		o->capture[*have] = '\0';
	}
	return 1;
}

/*
 * Waits for the child through its pidfd, at most timeout_ms (<= 0: forever), collecting its output from
 * out_fd (-1: none) meanwhile so a chatty child never blocks on a full pipe. Returns 0 or -ETIMEDOUT.
 */
static int wait_exit(int pidfd, int out_fd, const struct vd__run_opts *o)
{
	struct timespec start, now;
	size_t have = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int left = -1;
		if (o->timeout_ms > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			long el = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
			if (el >= o->timeout_ms)
				return -ETIMEDOUT;
			left = (int)(o->timeout_ms - el);
		}
		struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN }, { .fd = out_fd, .events = POLLIN } };
		int r = poll(p, out_fd >= 0 ? 2 : 1, left);
		if (r > 0 && (p[1].revents & (POLLIN | POLLHUP)) && !drain(out_fd, o, &have))
			out_fd = -1;
		if (r > 0 && (p[0].revents & POLLIN)) {
			/* Exited: what it wrote last is still in the pipe (unless a grandchild holds it open). */
			while (out_fd >= 0 && poll(&p[1], 1, 0) > 0 && drain(out_fd, o, &have))
				;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int vd__run(char *const argv[], const struct vd__run_opts *opts)
{
	static const struct vd__run_opts defaults = { .timeout_ms = VD_RUN_DEFAULT_TIMEOUT_MS, .stderr_fd = -1 };
	const struct vd__run_opts *o = opts ? opts : &defaults;
	int pipefd[2], outfd[2] = { -1, -1 };

	if (o->capture && o->capture_cap) {
		o->capture[0] = '\0';
		if (pipe2(outfd, O_CLOEXEC) < 0)
			return -errno;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		int e = errno;
		close_pair(outfd);
		return -e;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close_pair(pipefd);
		close_pair(outfd);
		return -e;
	}
	if (pid == 0) {
		close(pipefd[0]);
		child_exec(argv, o, pipefd[1], outfd[1]);
	}
	close(pipefd[1]);
	if (outfd[1] >= 0)
		close(outfd[1]);

	/* The pipe reaches EOF at exec (close-on-exec) or carries errno if exec failed. */
	int exec_err = 0;
	ssize_t n;
	do
		n = read(pipefd[0], &exec_err, sizeof(exec_err));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);

	int pidfd = (int)pidfd_open(pid, 0);
	int timed_out = 0;
	if (pidfd >= 0 && n != (ssize_t)sizeof(exec_err)) {
		if (wait_exit(pidfd, outfd[0], o) == -ETIMEDOUT) {
			kill(pid, SIGKILL);
			timed_out = 1;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (outfd[0] >= 0)
		close(outfd[0]);

	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (n == (ssize_t)sizeof(exec_err))
		return exec_err ? -exec_err : -ENOEXEC;
	if (timed_out)
		return -ETIMEDOUT;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

const char *vd__run_format(char *const argv[], char *buf, size_t cap)
{
	size_t off = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; argv[i] && off < cap; i++) {
		const char *q = strpbrk(argv[i], " \t") || !argv[i][0] ? "\"" : "";
		int w = snprintf(buf + off, cap - off, "%s%s%s%s", i ? " " : "", q, argv[i], q);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return buf;
}
