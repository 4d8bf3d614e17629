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

/* In the child, between fork and exec: only async-signal-safe calls. Never returns. */
static void child_exec(char *const argv[], const struct vd__run_opts *o, int err_pipe)
{
	int out = -1;

	if (o->stderr_fd >= 0)
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

/* Waits for the child through its pidfd, at most timeout_ms (<= 0: forever). Returns 0 or -ETIMEDOUT. */
static int wait_exit(int pidfd, int timeout_ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int left = -1;
		if (timeout_ms > 0) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			long el = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
			if (el >= timeout_ms)
				return -ETIMEDOUT;
			left = (int)(timeout_ms - el);
		}
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		int r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int vd__run(char *const argv[], const struct vd__run_opts *opts)
{
	static const struct vd__run_opts defaults = { .timeout_ms = VD_RUN_DEFAULT_TIMEOUT_MS, .stderr_fd = -1 };
	const struct vd__run_opts *o = opts ? opts : &defaults;
	int pipefd[2];

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return -e;
	}
	if (pid == 0) {
		close(pipefd[0]);
		child_exec(argv, o, pipefd[1]);
	}
	close(pipefd[1]);

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
		if (wait_exit(pidfd, o->timeout_ms) == -ETIMEDOUT) {
			kill(pid, SIGKILL);
			timed_out = 1;
		}
	}
	if (pidfd >= 0)
		close(pidfd);

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
