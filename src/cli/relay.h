/* SPDX-License-Identifier: MIT */
/*
 * `viaduct lab relay`: the impairment relay `viaduct lab up --netem` starts inside NAME-sw (internal; see
 * relay.c). argv[0] is "relay". Returns a process exit code.
 */
#ifndef VD_CLI_RELAY_H
#define VD_CLI_RELAY_H

int vd__lab_relay(int argc, char **argv);

#endif
