// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * XDP program of the bare-afxdp reference: UDP/IPv4 frames to the benchmark port go to the AF_XDP socket
 * of the queue they arrived on; everything else (ARP, ICMP, other ports) goes to the kernel.
 *
 * "xdp.frags" (BPF_F_XDP_HAS_FRAGS): the program accepts frames in several buffers, which a veth requires
 * for native XDP above an MTU of about 3500, and which lets an XSK bound with XDP_USE_SG receive a frame
 * larger than one UMEM chunk as a chain of descriptors. ctx->data..data_end covers the first buffer only;
 * the headers read here always lie in it (a first buffer holds far more than 14 + 60 + 8 bytes).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} bare_xsks SEC(".maps");

/* Set by the loader before load (read-only afterwards): the benchmark's UDP port, network order. */
const volatile __u16 bare_port_be = 0;

SEC("xdp.frags")
int bare_afxdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end || udp->dest != bare_port_be)
		return XDP_PASS;
	/* No socket on this queue: the flags argument (XDP_PASS) is the action returned instead. */
	return bpf_redirect_map(&bare_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
