/* SPDX-License-Identifier: MIT */
/*
 * jumbo_probe: checks the frame-size limits of an xdp nic (tests/lab/test_xdp_nic.sh, jumbo part).
 *
 *   jumbo_probe [--layer udp|ipv4] [--mode direct|steered] --expect N
 *
 * Opens an xdp endpoint on $VIADUCT_SOCKET's first interface and checks, printing one line per check:
 *   - vd_nic_max_payload() is N (the interface MTU less the headers the layer adds);
 *   - vd_nic_tx_alloc() lends a buffer of at least that capacity;
 *   - a frame of N + 1 bytes is refused at TX: vd_nic_send and vd_nic_tx_burst both return -EMSGSIZE, and
 *     the buffer is still the caller's (it goes back with vd_nic_tx_abort).
 * Nothing is sent (the destination is the nic's own address, never resolved). Exit 0 only if all hold.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <viaduct/nic.h>

static int failures;

static void check(int ok, const char *what, long got)
{
	printf("%s %s (%ld)\n", ok ? "ok  " : "FAIL", what, got);
	failures += !ok;
}

int main(int argc, char **argv)
{
	struct vd_nic_opts o = { .backend = VD_BACKEND_XDP, .rx_mode = VD_RX_DIRECT, .queue = -1 };
	long expect = -1;
	static const struct option lo[] = { { "layer", 1, 0, 'l' }, { "mode", 1, 0, 'm' }, { "expect", 1, 0, 'e' },
					    { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'l')
			o.layer = strcmp(optarg, "ipv4") ? VD_NIC_LAYER_UDP : VD_NIC_LAYER_IPV4;
		else if (c == 'm')
			o.rx_mode = strcmp(optarg, "steered") ? VD_RX_DIRECT : VD_RX_STEERED;
		else if (c == 'e')
			expect = strtol(optarg, NULL, 0);
		else
			return 2;
	}
	if (expect <= 0) {
		fprintf(stderr, "usage: jumbo_probe [--layer udp|ipv4] [--mode direct|steered] --expect N\n");
		return 2;
	}
	o.same_host_shm = -1;
	struct vd_nic *nic;
	int err = vd_nic_open(&nic, &o);
	if (err) {
		fprintf(stderr, "jumbo_probe: open: %s\n", strerror(-err));
		return 1;
	}
	uint32_t max = vd_nic_max_payload(nic);
	check(max == expect, "max payload is the expected one", (long)max);

	struct vd_addr self;
	vd_nic_local_addr(nic, &self);
	static char buf[70000];
	err = vd_nic_send(nic, &self, buf, (size_t)max + 1);
	check(err == -EMSGSIZE, "vd_nic_send of max + 1 bytes fails with EMSGSIZE", err);

	struct vd_frame f;
	int n = vd_nic_tx_alloc(nic, &f, 1);
	check(n == 1 && f.len >= max, "tx_alloc lends a buffer of the full payload", n == 1 ? (long)f.len : n);
	if (n == 1) {
		memset(f.data, 0xa5, max);            /* the whole capacity is writable */
		f.len = max + 1;
		f.peer = self;
		err = vd_nic_tx_burst(nic, &f, 1);
		check(err == -EMSGSIZE, "tx_burst of max + 1 bytes fails with EMSGSIZE", err);
		vd_nic_tx_abort(nic, &f, 1);
	}
	vd_nic_close(nic);
	printf("jumbo_probe: max payload %u, %d failure(s)\n", max, failures);
	return failures ? 1 : 0;
}
