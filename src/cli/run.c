/* SPDX-License-Identifier: MIT */
/*
 * `viaduct run [options] -- CMD [ARGS...]`: runs an unmodified program with libviaduct-preload.so in
 * LD_PRELOAD, so that its IPv4 TCP and UDP sockets go over viaduct (docs/design.md, "Sockets under viaduct
 * run"). The options become environment variables the preloaded library reads; then CMD replaces this
 * process (exec), so its exit status and signals are the program's own.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define PRELOAD_NAME "libviaduct-preload.so"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: viaduct run [options] [--] CMD [ARGS...]\n"
		"\n"
		"Runs CMD with its IPv4 TCP and UDP sockets over viaduct (LD_PRELOAD of " PRELOAD_NAME ").\n"
		"A socket whose address viaduct does not own or reach (127.0.0.0/8, another interface's address,\n"
		"a destination the kernel routes out of another interface), and every other kind of socket\n"
		"(AF_UNIX, IPv6, raw), stays a kernel socket. If no viaductd answers, every socket stays a kernel\n"
		"socket, with one warning. A fork() child keeps the viaduct sockets it inherited (as with kernel\n"
		"sockets); they do not survive exec(): the new program sees an unconnected kernel socket there.\n"
		"\n"
		"options:\n"
		"  --socket PATH   viaductd's control socket (sets VIADUCT_SOCKET; default: $VIADUCT_SOCKET,\n"
		"                  else the daemon's default path)\n"
		"  --iface IF      the interface to use (VIADUCT_IFACE; default: the daemon's first)\n"
		"  --no-fallback   IPv4 TCP/UDP sockets must go over viaduct: socket() fails with ENETDOWN when no\n"
		"                  viaductd answers, bind/connect to an address viaduct does not handle fail\n"
		"                  (VIADUCT_NO_FALLBACK=1)\n"
		"  --spin-us N     blocking calls busy-poll N microseconds before sleeping; -1: never sleep\n"
		"                  (VIADUCT_SPIN_US; default 100)\n"
		"  --quiet         no warnings from the interposer (VIADUCT_QUIET=1)\n"
		"  --preload LIB   the interposer library (VIADUCT_PRELOAD; default: found next to this program:\n"
		"                  ../" VD_LIBDIR "/, ../lib/, then " VD_FULL_LIBDIR "/)\n"
		"  -h, --help      this text\n"
		"\n"
		"At exit() the program waits up to VIADUCT_LINGER_MS (default 5000) for its closed connections to\n"
		"deliver their data (a killed program cannot: its peers see the connections stall).\n"
		"\n"
		"Exit status: CMD's; 127 if CMD cannot be run, 2 on a usage error.\n");
}

/* The interposer: explicit, else next to this executable (build tree and install), else the install dir. */
static int find_preload(const char *explicit_path, char *out, size_t len)
{
	char self[PATH_MAX], cand[PATH_MAX + 64];
	const char *env = getenv("VIADUCT_PRELOAD");

	if (explicit_path || (env && *env)) {
		const char *p = explicit_path ? explicit_path : env;
		if (!realpath(p, out) || access(out, R_OK) != 0) {
			fprintf(stderr, "viaduct run: %s: %s\n", p, strerror(errno));
			return -1;
		}
		return 0;
	}
	snprintf(self, sizeof(self), "%s", vd__cli_self());
	const char *dir = dirname(self);
	const char *rel[] = { "../" VD_LIBDIR, "../lib" };
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(cand, sizeof(cand), "%s/%s/" PRELOAD_NAME, dir, rel[i]);
		if (realpath(cand, out) && access(out, R_OK) == 0)
			return 0;
	}
	snprintf(cand, sizeof(cand), "%s/" PRELOAD_NAME, VD_FULL_LIBDIR);
	if (realpath(cand, out) && access(out, R_OK) == 0)
		return 0;
	(void)len;
	fprintf(stderr, "viaduct run: cannot find " PRELOAD_NAME " (looked in %s/../" VD_LIBDIR ", %s/../lib, "
		VD_FULL_LIBDIR "); use --preload or VIADUCT_PRELOAD\n", dir, dir);
	return -1;
}

int vd__cli_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "iface", required_argument, NULL, 'i' },
		{ "no-fallback", no_argument, NULL, 'F' },
		{ "spin-us", required_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "preload", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *preload = NULL;
	char lib[PATH_MAX];
	int c;

	/* "+": stop at CMD, whose own options are not ours. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			setenv("VIADUCT_SOCKET", optarg, 1);
			break;
		case 'i':
			setenv("VIADUCT_IFACE", optarg, 1);
			break;
		case 'F':
			setenv("VIADUCT_NO_FALLBACK", "1", 1);
			break;
		case 'S': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || v < -1 || v > 10000000) {
				fprintf(stderr, "viaduct run: --spin-us: not a number in -1..10000000: %s\n", optarg);
				return 2;
			}
			setenv("VIADUCT_SPIN_US", optarg, 1);
			break;
		}
		case 'q':
			setenv("VIADUCT_QUIET", "1", 1);
			break;
		case 'P':
			preload = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "viaduct run: no command\n");
		usage(stderr);
		return 2;
	}
	if (find_preload(preload, lib, sizeof(lib)) < 0)
		return 127;

	/* Ours first: the dynamic linker searches LD_PRELOAD in order, and our socket() must win. */
	const char *old = getenv("LD_PRELOAD");
	size_t n = strlen(lib) + (old ? strlen(old) : 0) + 2;
	char *val = malloc(n);
	if (!val) {
		fprintf(stderr, "viaduct run: out of memory\n");
		return 127;
	}
	snprintf(val, n, "%s%s%s", lib, old && *old ? ":" : "", old && *old ? old : "");
	setenv("LD_PRELOAD", val, 1);
	free(val);

	execvp(argv[optind], argv + optind);
	fprintf(stderr, "viaduct run: %s: %s\n", argv[optind], strerror(errno));
	return 127;
}
