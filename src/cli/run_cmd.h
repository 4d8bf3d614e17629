/* SPDX-License-Identifier: MIT */
/*
 * Running helper programs (ip, tc, viaductd) from the CLI: fork + execvp with an argv array, never a
 * shell, so no argument is ever re-parsed or expanded.
 */
#ifndef VD_CLI_RUN_CMD_H
#define VD_CLI_RUN_CMD_H

#include <stddef.h>

struct vd__run_opts {
	int timeout_ms;     /* kill the child (SIGKILL) after this long; <= 0: wait forever */
	int quiet;          /* child's stdout and stderr go to /dev/null */
	int stderr_fd;      /* >= 0: child's stdout and stderr go to this fd instead (quiet ignored) */
	char *capture;      /* non-NULL: child's stdout and stderr are collected here instead (NUL-terminated, */
	size_t capture_cap; /* cut at capture_cap - 1 bytes; stderr_fd and quiet ignored) */
};

/*
 * Runs argv (argv[0] looked up in PATH, NULL-terminated) and waits for it. Returns its exit status
 * (0..255), 128 + signal if a signal ended it, or -errno: -ENOENT (or another exec error) if it could not
 * be started, -ETIMEDOUT if it was killed after opts->timeout_ms. opts may be NULL (defaults: 10 s, not
 * quiet, no redirection).
 */
int vd__run(char *const argv[], const struct vd__run_opts *opts);

/* Writes argv joined by spaces (arguments with spaces quoted) into buf for messages; returns buf. */
const char *vd__run_format(char *const argv[], char *buf, size_t cap);

#endif
