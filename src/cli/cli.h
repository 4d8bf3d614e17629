/* SPDX-License-Identifier: MIT */
/* The `viaduct` command's subcommands; main.c dispatches on argv[1]. Each returns a process exit code. */
#ifndef VD_CLI_H
#define VD_CLI_H

int vd__cli_lab(int argc, char **argv);    /* lab.c:   viaduct lab up|down|exec|list */
int vd__cli_stat(int argc, char **argv);   /* stat.c:  viaduct stat */
int vd__cli_perf(int argc, char **argv);   /* perf.c:  viaduct perf frames */
int vd__cli_run(int argc, char **argv);    /* run.c:   viaduct run -- CMD (LD_PRELOAD interposer) */

/* Path of the running `viaduct` executable (for re-running itself inside a lab host). */
const char *vd__cli_self(void);

#endif
