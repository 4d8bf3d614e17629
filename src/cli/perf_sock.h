/* SPDX-License-Identifier: MIT */
/* `viaduct perf sockets` (perf_sock.c) and its connection-rate sides (perf_sock_conn.c). */
#ifndef VD_CLI_PERF_SOCK_H
#define VD_CLI_PERF_SOCK_H

/* argv[0] is "sockets". */
int vd__perf_sock_main(int argc, char **argv);
/* argv[0] is "conn-server" or "conn-client". */
int vd__perf_conn_main(int argc, char **argv);

#endif
