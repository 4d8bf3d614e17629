/* SPDX-License-Identifier: MIT */
/*
 * The `viaduct` command: dispatches argv[1] to a subcommand. Each subcommand gets argc - 1 / argv + 1, so
 * its own argv[0] is the subcommand's name and getopt() works on it as on a program of its own.
 * Exit codes: the subcommand's; 2 for a usage error.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "lab", vd__cli_lab, "test hosts on this machine: network namespaces joined by veth" },
	{ "stat", vd__cli_stat, "interfaces and endpoints of a running viaductd, with counters" },
	{ "run", vd__cli_run, "run an unmodified program with its TCP/UDP sockets over viaduct" },
	{ "perf", vd__cli_perf, "frame and messaging benchmarks against kernel UDP/TCP, bare AF_XDP, libfabric" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: viaduct <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-8s %s\n", "version", "print the version");
	fprintf(f, "  %-8s %s\n", "help", "this text, or `viaduct help <command>` for a command's options");
	fprintf(f, "\n`viaduct <command> --help` describes each command.\n");
}

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

const char *vd__cli_self(void)
{
	static char path[PATH_MAX];

	if (!path[0]) {
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
		if (n <= 0)
			return "viaduct"; /* no /proc: let PATH find it */
		path[n] = '\0';
	}
	return path;
}

/* `viaduct help [command]`: a command's help is its own --help. */
static int help(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const struct command *c = find(argv[1]);
	if (!c) {
		fprintf(stderr, "viaduct: no command '%s'\n", argv[1]);
		return 2;
	}
	char *hargv[] = { (char *)c->name, (char *)"--help", NULL };
	return c->run(2, hargv);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
		return help(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("viaduct %s\n", VD_VERSION);
		return 0;
	}
	const struct command *c = find(cmd);
	if (!c) {
		fprintf(stderr, "viaduct: unknown command '%s'\n\n", cmd);
		usage(stderr);
		return 2;
	}
	return c->run(argc - 1, argv + 1);
}
