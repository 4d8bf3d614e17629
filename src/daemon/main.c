/* SPDX-License-Identifier: MIT */
/*
 * viaductd: the root daemon of viaduct. Start-up order: log, interfaces (dispatcher attached), control
 * socket, pidfile; only then does `--daemon` let the parent exit 0, so a caller that waits for the parent
 * finds the socket ready. SIGTERM/SIGINT: every connection reclaimed, dispatchers detached, socket and
 * pidfile removed, exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "daemon.h"

struct opts {
	const char *ifaces[VD_CTL_MAX_IFACES];
	unsigned n_ifaces;
	const char *socket_path;
	const char *group;
	const char *pidfile;
	const char *log;
	int daemon;
	int verbose;
	enum vd_xdp_mode xdp_mode;
	uint32_t time_wait_s;
	uint32_t pool_idle_s;
	int no_tap_tx;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaductd --iface IF [--iface IF2...] [--socket PATH] [--group NAME] [--pidfile F]\n"
		"                [--daemon] [--log FILE] [--xdp-mode native|generic] [--time-wait SECONDS]\n"
		"                [--pool-idle-s SECONDS] [--no-tap-tx] [-v]\n"
		"\n"
		"The viaduct daemon (root, one per host or network namespace): attaches the XDP dispatcher to each\n"
		"--iface and hands applications their AF_XDP endpoints over a Unix control socket. Frames no\n"
		"endpoint owns pass to the kernel unchanged. An endpoint, its queue and its port are reclaimed when\n"
		"the application's control connection closes (exit, crash); on SIGTERM or SIGINT the daemon\n"
		"reclaims everything, detaches XDP and removes its socket and pidfile.\n"
		"\n"
		"  --iface IF          an interface to manage (repeatable, at least one); each endpoint owns one of\n"
		"                      its queues, so an interface holds as many endpoints as it has queues\n"
		"  --socket PATH       control socket (default " VD_CTL_DEFAULT_PATH ")\n"
		"  --group NAME        members may open endpoints: the socket is 0660 root:NAME (default root)\n"
		"  --pidfile F         write the daemon's pid here\n"
		"  --daemon            run in the background; returns 0 once the socket is listening\n"
		"  --log FILE          log here (default stderr)\n"
		"  --xdp-mode MODE     native (default; falls back to generic with a log line) or generic\n"
		"  --time-wait SECONDS how long the ephemeral TCP ports of an endpoint that closed or died stay\n"
		"                      reserved, their frames dropped (TCP TIME-WAIT; default 60, at most 600)\n"
		"  --pool-idle-s SECONDS\n"
		"                      the pool of TCP ports reserved ahead grows from 1024 up to 4096 while\n"
		"                      bursts of connections run it dry; after SECONDS with no burst needing more\n"
		"                      than 1024 it shrinks back, closing the surplus (default 30, 1 to 3600)\n"
		"  --no-tap-tx         no TX taps: by default each endpoint also gets a tap device of its own\n"
		"                      (vdtxN) whose XDP program sends the frames written to it out of the\n"
		"                      interface, cheaper than a copy-mode AF_XDP send; only while the interface\n"
		"                      takes redirected frames (a veth: while its peer has an XDP program)\n"
		"  -v                  debug logging\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "iface", required_argument, NULL, 'i' },   { "socket", required_argument, NULL, 's' },
		{ "group", required_argument, NULL, 'g' },   { "pidfile", required_argument, NULL, 'p' },
		{ "daemon", no_argument, NULL, 'd' },        { "log", required_argument, NULL, 'l' },
		{ "xdp-mode", required_argument, NULL, 'x' }, { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },          { "time-wait", required_argument, NULL, 't' },
		{ "pool-idle-s", required_argument, NULL, 'P' }, { "no-tap-tx", no_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->socket_path = VD_CTL_DEFAULT_PATH;
	o->time_wait_s = 60;
	o->pool_idle_s = 30;
	while ((c = getopt_long(argc, argv, "i:s:g:p:dl:x:vht:", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (o->n_ifaces == VD_CTL_MAX_IFACES) {
				fprintf(stderr, "viaductd: at most %d interfaces\n", VD_CTL_MAX_IFACES);
				return -1;
			}
			o->ifaces[o->n_ifaces++] = optarg;
			break;
		case 's': o->socket_path = optarg; break;
		case 'g': o->group = optarg; break;
		case 'p': o->pidfile = optarg; break;
		case 'd': o->daemon = 1; break;
		case 'l': o->log = optarg; break;
		case 'v': o->verbose = 1; break;
		case 'x':
			if (!strcmp(optarg, "native"))
				o->xdp_mode = VD_XDP_NATIVE;
			else if (!strcmp(optarg, "generic"))
				o->xdp_mode = VD_XDP_GENERIC;
			else {
				fprintf(stderr, "viaductd: --xdp-mode native|generic\n");
				return -1;
			}
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || optarg[0] == '-' || v > VD_CTL_HOLD_MAX_MS / 1000) {
				fprintf(stderr, "viaductd: --time-wait takes 0 to %u seconds\n",
					VD_CTL_HOLD_MAX_MS / 1000);
				return -1;
			}
			o->time_wait_s = (uint32_t)v;
			break;
		}
		case 'P': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || optarg[0] == '-' || v < 1 || v > 3600) {
				fprintf(stderr, "viaductd: --pool-idle-s takes 1 to 3600 seconds\n");
				return -1;
			}
			o->pool_idle_s = (uint32_t)v;
			break;
		}
		case 'T': o->no_tap_tx = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || !o->n_ifaces) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* libbpf's messages (verifier logs are multi-line) become log lines; its debug chatter is dropped. */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char *text, *line, *save = NULL;

	if (level == LIBBPF_DEBUG || vasprintf(&text, fmt, ap) < 0)
		return 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		vd__log(level == LIBBPF_WARN ? VD_LOG_WARN : VD_LOG_INFO, "%s", line);
	free(text);
	return 0;
}

/*
 * Pidfile locked with flock(): a second daemon with the same pidfile fails to lock it, a stale file
 * left by a killed daemon is simply taken over. The fd stays open (and locked) while we run.
 */
static int pidfile_fd = -1;
static int pidfile_write(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno == EWOULDBLOCK ? -EEXIST : -errno;
		close(fd);
		return err;
	}
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) || write(fd, buf, (size_t)n) != n) {
		int err = -errno;
		close(fd);
		return err;
	}
	pidfile_fd = fd;
	return 0;
}

static struct vd_evsrc sigsrc = { .fd = -1 };
static void signal_event(struct vd_evsrc *src, uint32_t events)
{
	struct signalfd_siginfo si;

	if (read(src->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		vd__info("signal %u: shutting down", si.ssi_signo);
		vd__loop_stop();
	}
}

/*
 * --daemon: fork; the child reports start-up success (one byte 0) or failure (1) through a pipe. The
 * parent exits with that status, so `viaductd --daemon && use-it` is race-free.
 */
static int daemonize(int *notify_fd)
{
	int p[2];
	pid_t pid;
	char st = 1;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &st, 1) != 1)
			st = 1;
		_exit(st ? 1 : 0);
	}
	close(p[0]);
	setsid();
	*notify_fd = p[1];
	return 0;
}

static void daemon_detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	struct opts o = {};
	struct vd_server_opts so = {};
	int notify_fd = -1, err, rc = 1;
	sigset_t mask;

	if (parse_args(argc, argv, &o))
		return 2;
	/*
	 * daemon(7): a daemon closes what it inherited beyond stdio. Kept open, a descriptor of its starter
	 * stays held for the daemon's whole life: a lock taken around the start (flock FILE viaductd
	 * --daemon) is never released, a pipe never sees EOF.
	 */
	if (o.daemon)
		close_range(3, ~0u, 0);
	if (geteuid() != 0) {
		fprintf(stderr, "viaductd: must run as root\n");
		return 1;
	}
	if (o.group) {
		struct group *gr = getgrnam(o.group);
		if (!gr) {
			fprintf(stderr, "viaductd: no group %s\n", o.group);
			return 1;
		}
		so.gid = gr->gr_gid;
	}
	so.path = o.socket_path;
	if (o.log) {
		/* Relative paths would break after chdir("/") below. */
		err = vd__log_open(o.log, o.verbose);
		if (err) {
			fprintf(stderr, "viaductd: %s: %s\n", o.log, strerror(-err));
			return 1;
		}
	} else {
		vd__log_open(NULL, o.verbose);
	}
	if (o.daemon && daemonize(&notify_fd)) {
		perror("viaductd: fork");
		return 1;
	}

	/* Signals become events in the loop; SIGPIPE is irrelevant (MSG_NOSIGNAL) but ignored anyway. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	libbpf_set_print(libbpf_log);
	umask(022);

	if ((err = vd__loop_init())) {
		vd__err("epoll: %s", strerror(-err));
		goto out;
	}
	sigsrc.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	sigsrc.cb = signal_event;
	if (sigsrc.fd < 0 || vd__loop_add(&sigsrc, EPOLLIN)) {
		vd__err("signalfd: %s", strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < o.n_ifaces; i++)
		if (vd__iface_add(o.ifaces[i], o.xdp_mode))
			goto out_ifaces;
	if (vd__neigh_init())
		goto out_ifaces;
	vd__taptx_init(!o.no_tap_tx); /* after the interfaces (it asks what each takes), before the pool */
	if ((err = vd__ringpool_init())) /* after the interfaces: it prepares their spare rings */
		vd__warn("steering ring pool: %s (endpoints install their rings themselves)", strerror(-err));
	if ((err = vd__port_init(o.time_wait_s, o.pool_idle_s))) {
		vd__err("port hold timer: %s", strerror(-err));
		goto out_neigh;
	}
	if (vd__server_start(&so))
		goto out_neigh;
	if (o.pidfile && (err = pidfile_write(o.pidfile))) {
		vd__err("pidfile %s: %s", o.pidfile, err == -EEXIST ? "locked by another viaductd" : strerror(-err));
		goto out_server;
	}
	vd__info("viaductd %s ready (pid %d)", VD_VERSION, (int)getpid());
	if (notify_fd >= 0) {
		char ok = 0;
		if (write(notify_fd, &ok, 1) != 1)
			vd__warn("could not notify the parent");
		close(notify_fd);
		notify_fd = -1;
		if (chdir("/"))
			vd__warn("chdir /: %s", strerror(errno));
		daemon_detach_stdio();
	}

	err = vd__loop_run();
	rc = err ? 1 : 0;
	if (err)
		vd__err("event loop: %s", strerror(-err));

	if (o.pidfile) {
		unlink(o.pidfile);
		close(pidfile_fd);
	}
out_server:
	vd__server_stop();
out_neigh:
	vd__port_fini(); /* after the server: closing connections turns ports into holds */
	vd__ringpool_fini(); /* after the server: reclaimed endpoints hand it their rings and taps */
	vd__taptx_fini();
	vd__neigh_fini();
out_ifaces:
	vd__iface_fini();
out:
	if (sigsrc.fd >= 0)
		close(sigsrc.fd);
	vd__loop_fini();
	if (notify_fd >= 0) {
		char fail = 1;
		if (write(notify_fd, &fail, 1) != 1)
			rc = 1;
	}
	vd__info("viaductd exits (%d)", rc);
	return rc;
}
