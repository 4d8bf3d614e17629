/* SPDX-License-Identifier: MIT */
/* viaductd log lines: "TIME LEVEL message" to stderr, or appended to a file (--log). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

static FILE *log_fp;
static int log_level = VD_LOG_INFO;

int vd__log_open(const char *path, int verbose)
{
	log_level = verbose ? VD_LOG_DEBUG : VD_LOG_INFO;
	if (!path)
		return 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	log_fp = fdopen(fd, "a");
	if (!log_fp) {
		int err = -errno;
		close(fd);
		return err;
	}
	/* Line buffered: a line is complete in the file as soon as it is logged (tests read it). */
	setvbuf(log_fp, NULL, _IOLBF, 0);
	return 0;
}

void vd__log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	FILE *fp = log_fp ? log_fp : stderr;
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(fp, "%s.%03ld viaductd %s: ", when, ts.tv_nsec / 1000000, names[level]);
	va_start(ap, fmt);
	vfprintf(fp, fmt, ap);
	va_end(ap);
	fputc('\n', fp);
}
